//! Shared by the fuzz targets and the seed generator (`examples/seeds.rs`): the layout of each
//! target's input, the crc fix-ups that let mutated inputs past the crc checks, and the seeds.
//!
//! Each target decodes its input twice: as it is (what a damaged file or a hostile peer sends),
//! and with its crcs recomputed (what a bug on the writing side could produce), so that the
//! decoding behind each crc is fuzzed too, not only the crc check.

use tfs_nameserver::oplog::record::{self, HEADER_LEN, MAX_PAYLOAD};
use tfs_nameserver::{checkpoint, replication::frame};

pub mod seeds;

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Recomputes the crc of each whole record from the start of `data` (a segment, or the payload
/// of a Records frame); stops at the first record whose length does not fit.
pub fn fix_record_crcs(data: &mut [u8]) {
    let mut off = 0;
    while data.len() - off >= HEADER_LEN {
        let len = le_u32(data, off + 32);
        let end = off + HEADER_LEN + len as usize;
        if len > MAX_PAYLOAD || end > data.len() {
            break;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&data[off..off + 36]), &data[off + HEADER_LEN..end]);
        data[off + 36..off + 40].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// A replication frame input: the 12-byte header, then the payload (extra bytes are ignored).
/// Recomputes the payload crc in the header (after the record crcs of a Records frame).
pub fn fix_frame_crc(data: &mut [u8]) {
    if data.len() < frame::HEADER_LEN {
        return;
    }
    let (h, payload) = data.split_at_mut(frame::HEADER_LEN);
    let len = le_u32(h, 4) as usize;
    if len > payload.len() {
        return;
    }
    if h[0] == frame::FrameType::Records as u8 {
        fix_record_crcs(&mut payload[..len]);
    }
    h[8..12].copy_from_slice(&crc32c::crc32c(&payload[..len]).to_le_bytes());
}

/// A checkpoint input: recomputes the crc of each whole frame after the header.
pub fn fix_checkpoint_crcs(data: &mut [u8]) {
    let mut off = checkpoint::HEADER_LEN;
    while data.len().saturating_sub(off) >= 8 {
        let len = le_u32(data, off);
        if len == 0 {
            break;
        }
        let end = off + 8 + len as usize;
        if len > checkpoint::MAX_FRAME || end > data.len() {
            break;
        }
        let crc = crc32c::crc32c(&data[off + 8..end]);
        data[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// The request types of the `grpc_validate` target, chosen by the input's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    CreateBlock,
    BatchCreateBlocks,
    GetBlock,
    BatchGetBlocks,
    CommitBlock,
    RemoveBlock,
    ListBlocks,
    Echo,
    Status,
}

impl Request {
    pub const ALL: [Request; 9] = [
        Request::CreateBlock,
        Request::BatchCreateBlocks,
        Request::GetBlock,
        Request::BatchGetBlocks,
        Request::CommitBlock,
        Request::RemoveBlock,
        Request::ListBlocks,
        Request::Echo,
        Request::Status,
    ];

    pub fn from_byte(b: u8) -> Request {
        Self::ALL[b as usize % Self::ALL.len()]
    }
}

/// A `grpc_validate` input: request type, the server's default replica count (1 + byte % 4, as
/// `--block-replicas` allows), then the request's protobuf bytes.
pub fn grpc_input(r: Request, default_replicas: u8, msg: &impl prost::Message) -> Vec<u8> {
    let mut v = vec![r as u8, default_replicas];
    msg.encode(&mut v).expect("vec");
    v
}

/// A record's encoded bytes, for seeds and tests.
pub fn encode_record(m: &tfs_nameserver::mutation::Mutation, epoch: u64, seq: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    m.encode_payload(&mut payload);
    let mut v = Vec::new();
    record::encode(&mut v, m.rtype(), tfs_nameserver::epoch::Epoch(epoch), seq, 1_700_000_000_000 + seq, &payload);
    v
}

/// Decodes a record payload; whatever decodes must encode and decode back to itself.
pub fn check_mutation(rtype: record::RecordType, payload: bytes::Bytes) {
    use tfs_nameserver::mutation::Mutation;
    let Ok(m) = Mutation::decode(rtype, payload) else { return };
    assert_eq!(m.rtype(), rtype);
    let mut again = Vec::new();
    m.encode_payload(&mut again);
    assert_eq!(Mutation::decode(rtype, again.into()).expect("a re-encoded mutation decodes"), m);
}
