//! The disk format's bytes do not change: oplog records and checkpoints written by an earlier build
//! decode to the same records and the same state. The golden bytes below were written by the build
//! in which the disk messages still shared the API's package (`tfs.v1`); they must stay as they
//! are (a change of the format is a new record version or a new field, with golden bytes of its
//! own beside these).

use bytes::Bytes;
use prost::Message;
use tfs_nameserver::checkpoint::Snapshot;
use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::mutation::Mutation;
use tfs_nameserver::oplog::format as disk;
use tfs_nameserver::oplog::record;
use tfs_nameserver::state::State;

const EPOCH: u64 = 3;
const TIME_MS: u64 = 1_700_000_000_000;

/// One record of every type, each field set (a request id on the records that carry one).
fn mutations() -> Vec<Mutation> {
    let key = |seq| Some(disk::RequestId { client: 0x1234_5678_9abc, seq });
    let join = |id: u32, lease_id| disk::DataserverJoin {
        id,
        addr: format!("10.0.0.{id}:8200"),
        capacity: 1 << 40,
        used: 1 << 30,
        lease_id,
    };
    vec![
        Mutation::EpochStart(disk::EpochStart { epoch: EPOCH, node: "ns-0".into() }),
        Mutation::DataserverJoin(join(1, 7)),
        Mutation::DataserverJoin(join(2, 8)),
        Mutation::BlockCreate(disk::BlockCreate { block_id: 100, dataservers: vec![1], request: key(1) }),
        Mutation::BlockCommit(disk::BlockCommit {
            block_id: 100,
            version: 2,
            size: 4096,
            file_count: 3,
            del_size: 512,
            del_file_count: 1,
            request: key(2),
        }),
        Mutation::TaskCreate(disk::TaskCreate {
            task_id: 9,
            kind: disk::TaskKind::Replicate as i32,
            block_id: 100,
            source: 1,
            target: 2,
            epoch: EPOCH,
            version: 2,
        }),
        Mutation::TaskDone(disk::TaskDone {
            task_id: 9,
            success: true,
            epoch: EPOCH,
            size: Some(4000),
            file_count: Some(2),
        }),
        Mutation::BlockCreate(disk::BlockCreate { block_id: 101, dataservers: vec![2], request: None }),
        Mutation::ReplicaAdd(disk::ReplicaAdd { block_id: 101, dataserver: 1 }),
        Mutation::BlockCreate(disk::BlockCreate { block_id: 102, dataservers: vec![1, 2], request: key(3) }),
        Mutation::BlockRemove(disk::BlockRemove { block_id: 102, request: key(4) }),
        // Left pending: the checkpoint holds a task.
        Mutation::TaskCreate(disk::TaskCreate {
            task_id: 10,
            kind: disk::TaskKind::Compact as i32,
            block_id: 100,
            source: 1,
            target: 1,
            epoch: EPOCH,
            version: 2,
        }),
        Mutation::DataserverLeave(disk::DataserverLeave { id: 2, expired: true }),
    ]
}

/// Every record of [`mutations`], at seq 1, 2, … of [`EPOCH`].
fn encode_records() -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in mutations().iter().enumerate() {
        let seq = i as u64 + 1;
        let mut payload = Vec::new();
        m.encode_payload(&mut payload);
        record::encode(&mut out, m.rtype(), Epoch(EPOCH), seq, TIME_MS + seq, &payload);
    }
    out
}

/// A chunk of every kind of entry, the ones a small state leaves empty included.
fn chunk() -> disk::SnapshotChunk {
    disk::SnapshotChunk {
        blocks: vec![disk::SnapshotBlock {
            id: 100,
            version: 2,
            size: 4096,
            file_count: 3,
            del_size: 512,
            del_file_count: 1,
            dataservers: vec![1, 2],
            want: 2,
        }],
        dataservers: vec![disk::SnapshotDataserver {
            id: 1,
            addr: "10.0.0.1:8200".into(),
            capacity: 1 << 40,
            used: 1 << 30,
            lease_id: 7,
            alive: true,
        }],
        tasks: vec![disk::TaskCreate {
            task_id: 10,
            kind: disk::TaskKind::Move as i32,
            block_id: 100,
            source: 1,
            target: 2,
            epoch: EPOCH,
            version: 0,
        }],
        requests: vec![disk::SnapshotRequest { client: 5, seq: 6, kind: 2, block_id: 100, record_seq: 5, body: 77 }],
        request_clients: vec![disk::SnapshotRequestClient { client: 4, floor: 9, forgotten: 1 }],
    }
}

fn meta() -> disk::SnapshotMeta {
    disk::SnapshotMeta {
        seq: 13,
        epoch: EPOCH,
        next_block_id: 103,
        next_task_id: 11,
        next_lease_id: 9,
        block_count: 2,
        epochs: vec![disk::EpochMark { epoch: 1, start_seq: 1 }, disk::EpochMark { epoch: EPOCH, start_seq: 1 }],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const RECORDS: &str = concat!(
    "5446534f01000100030000000000000001000000000000000168e5cf8b0100000800000055456161080312046e732d30",
    "5446534f01000500030000000000000002000000000000000268e5cf8b0100002000000088f1b68e0801120d31302e30",
    "2e302e313a383230301880808080802020808080800428075446534f0100050003000000000000000300000000000000",
    "0368e5cf8b01000020000000993a6d8a0802120d31302e302e302e323a38323030188080808080202080808080042808",
    "5446534f01000200030000000000000004000000000000000468e5cf8b010000110000006e4013fe08641201011a0a08",
    "bcb5e2b3c5c60410015446534f01000300030000000000000005000000000000000568e5cf8b0100001a00000069de82",
    "4008641002188020200328800430013a0a08bcb5e2b3c5c60410025446534f0100080003000000000000000600000000",
    "0000000668e5cf8b0100000e0000004b305c8808091001186420012802300338025446534f0100090003000000000000",
    "0007000000000000000768e5cf8b0100000b000000e8a4c3ab08091001180320a01f28025446534f0100020003000000",
    "0000000008000000000000000868e5cf8b0100000500000056e5bcb508651201025446534f0100070003000000000000",
    "0009000000000000000968e5cf8b01000004000000fb965f40086510015446534f0100020003000000000000000a0000",
    "00000000000a68e5cf8b010000120000008e516d040866120201021a0a08bcb5e2b3c5c60410035446534f0100040003",
    "000000000000000b000000000000000b68e5cf8b0100000e000000e13a4ccc0866120a08bcb5e2b3c5c6041004544653",
    "4f0100080003000000000000000c000000000000000c68e5cf8b0100000e0000000c2adb1a080a100218642001280130",
    "0338025446534f0100060003000000000000000d000000000000000d68e5cf8b01000004000000bf49994808021001",
);
const CHECKPOINT: &str = concat!(
    "54465343010000000d0000000000000003000000000000000000000000000000120000000b15bb1c080d10031867200b",
    "280930023a04080310017400000090a93cc00a1308641002188020200328800430013a010140010a0708653a01014001",
    "12220801120d31302e302e302e313a38323030188080808080202080808080042807300112200802120d31302e302e30",
    "2e323a383230301880808080802020808080800428081a0e080a1002186420012801300338025200000089f4bf1f2212",
    "08bcb5e2b3c5c60410011801206428043001221608bcb5e2b3c5c604100218022064280530bbaaf4ce03221208bcb5e2",
    "b3c5c604100318012066280a3002221008bcb5e2b3c5c604100418032066280b0000000000000000",
);
const CHUNK: &str = concat!(
    "0a1408641002188020200328800430013a020102400212220801120d31302e302e302e313a3832303018808080808020",
    "208080808004280730011a0c080a10041864200128023003220c08051006180220642805304d2a06080410091801",
);
const META: &str = "080d10031867200b280930023a04080110013a0408031001";

#[test]
fn records_encode_to_the_golden_bytes_and_decode_back() {
    assert_eq!(hex(&encode_records()), RECORDS);
    let buf = Bytes::from(unhex(RECORDS));
    let mut at = 0;
    for (i, want) in mutations().into_iter().enumerate() {
        let (r, n) = record::decode(&buf.slice(at..)).unwrap();
        at += n;
        let seq = i as u64 + 1;
        assert_eq!((r.header.epoch, r.header.seq, r.header.time_ms), (Epoch(EPOCH), seq, TIME_MS + seq));
        assert_eq!(r.header.rtype, want.rtype());
        assert_eq!(Mutation::decode(r.header.rtype, r.payload).unwrap(), want);
    }
    assert_eq!(at, buf.len());
}

#[test]
fn snapshot_messages_encode_to_the_golden_bytes_and_decode_back() {
    assert_eq!(hex(&chunk().encode_to_vec()), CHUNK);
    assert_eq!(disk::SnapshotChunk::decode(&unhex(CHUNK)[..]).unwrap(), chunk());
    assert_eq!(hex(&meta().encode_to_vec()), META);
    assert_eq!(disk::SnapshotMeta::decode(&unhex(META)[..]).unwrap(), meta());
}

#[test]
fn a_checkpoint_of_the_golden_records_is_the_golden_checkpoint() {
    let buf = Bytes::from(unhex(RECORDS));
    let mut state = State::new();
    let mut at = 0;
    while at < buf.len() {
        let (r, n) = record::decode(&buf.slice(at..)).unwrap();
        at += n;
        state.apply(&r.header, &Mutation::decode(r.header.rtype, r.payload).unwrap()).unwrap();
    }
    let mut written = Vec::new();
    Snapshot::of(&state).write_to(&mut written).unwrap();
    assert_eq!(hex(&written), CHECKPOINT);

    // Read back, the golden checkpoint is the same snapshot: it writes the same bytes again.
    let read = Snapshot::read_from(&mut &unhex(CHECKPOINT)[..]).unwrap();
    assert_eq!(read.meta, Snapshot::of(&state).meta);
    assert_eq!(read.tasks, Snapshot::of(&state).tasks);
    let mut again = Vec::new();
    read.write_to(&mut again).unwrap();
    assert_eq!(hex(&again), CHECKPOINT);
}
