//! Meaningful seeds: valid records, segments, frames, checkpoints and requests as the nameserver
//! itself writes them, plus a few of the damaged shapes recovery must handle (torn tail, zero fill).

use bytes::Bytes;
use prost::Message;
use tfs_nameserver::checkpoint::Snapshot;
use tfs_nameserver::mutation::Mutation;
use tfs_nameserver::oplog::{format, record};
use tfs_nameserver::proto;
use tfs_nameserver::replication::frame::{self, FrameType};
use tfs_nameserver::server::limits::*;
use tfs_nameserver::state::State;

use crate::{Request, encode_record, grpc_input};

/// One seed: the target it belongs to, a file name, the bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// A short history touching every record type, in an order the state accepts.
pub fn history() -> Vec<Mutation> {
    use format::*;
    vec![
        Mutation::EpochStart(EpochStart { epoch: 1, node: "demo-0".into() }),
        Mutation::DataserverJoin(DataserverJoin {
            id: 1,
            addr: "10.0.0.1:9000".into(),
            capacity: 1 << 40,
            used: 1 << 30,
            lease_id: 1,
        }),
        Mutation::DataserverJoin(DataserverJoin {
            id: 2,
            addr: "10.0.0.2:9000".into(),
            capacity: 1 << 40,
            used: 0,
            lease_id: 2,
        }),
        Mutation::DataserverJoin(DataserverJoin {
            id: 3,
            addr: "10.0.0.3:9000".into(),
            capacity: 1 << 40,
            used: 0,
            lease_id: 3,
        }),
        Mutation::BlockCreate(BlockCreate { block_id: 1, dataservers: vec![1, 2], request: None }),
        Mutation::BlockCreate(BlockCreate { block_id: 2, dataservers: vec![2, 3], request: None }),
        Mutation::BlockCreate(BlockCreate { block_id: 3, dataservers: vec![1, 2, 3], request: None }),
        Mutation::BlockCommit(BlockCommit {
            block_id: 1,
            version: 2,
            size: 64 << 20,
            file_count: 1_000,
            del_size: 1 << 20,
            del_file_count: 10,
            request: None,
        }),
        Mutation::ReplicaAdd(ReplicaAdd { block_id: 2, dataserver: 1 }),
        Mutation::TaskCreate(TaskCreate {
            task_id: 1,
            kind: TaskKind::Replicate as i32,
            block_id: 1,
            source: 1,
            target: 3,
            epoch: 1,
            version: 0,
        }),
        Mutation::TaskCreate(TaskCreate {
            task_id: 2,
            kind: TaskKind::Compact as i32,
            block_id: 3,
            source: 2,
            target: 2,
            epoch: 1,
            version: 1,
        }),
        Mutation::TaskDone(TaskDone { task_id: 1, success: true, epoch: 1, size: None, file_count: None }),
        Mutation::BlockRemove(BlockRemove { block_id: 2, request: None }),
        Mutation::DataserverLeave(DataserverLeave { id: 3, expired: true }),
    ]
}

/// The history as a segment: records seq 1.. at epoch 1.
pub fn segment() -> Vec<u8> {
    history().iter().zip(1..).flat_map(|(m, seq)| encode_record(m, 1, seq)).collect()
}

/// The state the history leaves, snapshotted as a checkpoint writes it.
pub fn checkpoint_of(ms: &[Mutation]) -> Vec<u8> {
    let seg = Bytes::from(ms.iter().zip(1..).flat_map(|(m, seq)| encode_record(m, 1, seq)).collect::<Vec<_>>());
    let mut state = State::new();
    let mut off = 0;
    while off < seg.len() {
        let (r, n) = record::decode(&seg.slice(off..)).expect("valid record");
        let m = Mutation::decode(r.header.rtype, r.payload).expect("valid payload");
        state.apply(&r.header, &m).expect("the history applies");
        off += n;
    }
    let mut out = Vec::new();
    Snapshot::of(&state).write_to(&mut out).expect("vec");
    out
}

fn frame_of(t: FrameType, payload: &[u8]) -> Vec<u8> {
    let mut v = frame::encode_header(t, payload).to_vec();
    v.extend_from_slice(payload);
    v
}

pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        out.push(Seed { target, name: name.to_string(), data });
    };
    let hist = history();
    let seg = segment();

    for (i, m) in hist.iter().enumerate() {
        let name = format!("{i:02}-{:?}", m.rtype());
        add("oplog_record", &name, encode_record(m, 1, i as u64 + 1));
        let mut payload = vec![m.rtype() as u8];
        m.encode_payload(&mut payload);
        add("oplog_mutation", &name, payload);
    }
    let mut empty = Vec::new();
    record::encode(&mut empty, record::RecordType::BlockRemove, tfs_nameserver::epoch::Epoch(7), 99, 0, &[]);
    add("oplog_record", "empty-payload", empty);

    add("oplog_segment", "clean", seg.clone());
    add("oplog_segment", "torn-tail", seg[..seg.len() - 7].to_vec());
    let mut zero_fill = seg.clone();
    zero_fill.resize(seg.len() + 4096, 0);
    add("oplog_segment", "zero-fill", zero_fill);

    let ckpt = checkpoint_of(&hist);
    add("checkpoint", "history", ckpt.clone());
    add("checkpoint", "empty", checkpoint_of(&hist[..1]));

    let login = proto::ReplLogin {
        cluster_id: "tfs".into(),
        node: "demo-1".into(),
        epoch: 2,
        last_seq: 14,
        last_epoch: 1,
        incarnation: 7,
    };
    add("repl_frame", "login", frame_of(FrameType::Login, &login.encode_to_vec()));
    let ok = proto::ReplLoginOk { lease_id: 5, lease_ms: 1500, epoch: 2, start_seq: 15, snapshot: true };
    add("repl_frame", "login-ok", frame_of(FrameType::LoginOk, &ok.encode_to_vec()));
    let refused = proto::ReplRefused { reason: "cluster id differs".into() };
    add("repl_frame", "refused", frame_of(FrameType::Refused, &refused.encode_to_vec()));
    add("repl_frame", "renew", frame_of(FrameType::Renew, &proto::ReplRenew { lease_id: 5 }.encode_to_vec()));
    add("repl_frame", "ack", frame_of(FrameType::Ack, &proto::ReplAck { durable_seq: 14 }.encode_to_vec()));
    add("repl_frame", "logout", frame_of(FrameType::Logout, &proto::ReplLogout { lease_id: 5 }.encode_to_vec()));
    let hb = proto::ReplHeartbeat { epoch: 2, last_seq: 14, committed_seq: 14 };
    add("repl_frame", "heartbeat", frame_of(FrameType::Heartbeat, &hb.encode_to_vec()));
    add("repl_frame", "records", frame_of(FrameType::Records, &seg));
    add("repl_frame", "snapshot-chunk", frame_of(FrameType::SnapshotChunk, &ckpt));
    add("repl_frame", "snapshot-end", frame_of(FrameType::SnapshotEnd, &[]));

    let g = "grpc_validate";
    add(g, "create", grpc_input(Request::CreateBlock, 1, &proto::CreateBlockRequest { replicas: 0, request_id: None }));
    add(g, "create-5", grpc_input(Request::CreateBlock, 1, &proto::CreateBlockRequest { replicas: 5, request_id: None }));
    let batch = proto::BatchCreateBlocksRequest { count: MAX_BATCH_CREATE, replicas: 3, request_id: None };
    add(g, "batch-create", grpc_input(Request::BatchCreateBlocks, 1, &batch));
    let batch = proto::BatchCreateBlocksRequest { count: MAX_BATCH_CREATE + 1, replicas: 0, request_id: None };
    add(g, "batch-create-over", grpc_input(Request::BatchCreateBlocks, 1, &batch));
    add(g, "get", grpc_input(Request::GetBlock, 1, &proto::GetBlockRequest { block_id: 42, stale: false }));
    let ids = proto::BatchGetBlocksRequest { block_ids: (1..=64).collect(), stale: false };
    add(g, "batch-get", grpc_input(Request::BatchGetBlocks, 1, &ids));
    let commit = proto::CommitBlockRequest {
        block_id: 1,
        version: 3,
        size: 64 << 20,
        file_count: 100,
        del_size: 1 << 20,
        del_file_count: 2,
        request_id: None,
    };
    add(g, "commit", grpc_input(Request::CommitBlock, 1, &commit));
    let bad = proto::CommitBlockRequest { del_file_count: 101, ..commit };
    add(g, "commit-bad", grpc_input(Request::CommitBlock, 1, &bad));
    add(g, "remove", grpc_input(Request::RemoveBlock, 1, &proto::RemoveBlockRequest { block_id: 7, request_id: None }));
    add(
        g,
        "list",
        grpc_input(Request::ListBlocks, 1, &proto::ListBlocksRequest { after: 100, limit: 0, stale: false }),
    );
    let list = proto::ListBlocksRequest { after: 0, limit: MAX_LIST + 1, stale: false };
    add(g, "list-over", grpc_input(Request::ListBlocks, 1, &list));
    add(g, "echo", grpc_input(Request::Echo, 1, &proto::EchoRequest { payload: b"ping".to_vec() }));
    add(g, "status", grpc_input(Request::Status, 1, &proto::StatusRequest {}));
    out
}
