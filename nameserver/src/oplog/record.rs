//! One oplog record: a fixed 40-byte little-endian header and a protobuf payload.
//!
//! ```text
//! offset size field
//!  0     4   magic        0x4F53_4654 ("TFSO" as bytes)
//!  4     2   version      1
//!  6     1   type         RecordType
//!  7     1   flags        0 (reserved)
//!  8     8   epoch        epoch of the master that wrote it
//! 16     8   seq          1, 2, 3, ... without gaps
//! 24     8   time         unix milliseconds at the master
//! 32     4   length       payload bytes, <= MAX_PAYLOAD
//! 36     4   crc32c       over bytes 0..36 and the payload
//! ```
//! Invariant: a record whose crc does not match is never decoded into a mutation, so a flipped bit
//! can never be applied to the state.

use bytes::{BufMut, Bytes};
use thiserror::Error;

use crate::epoch::Epoch;

pub const MAGIC: u32 = 0x4F53_4654;
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 40;
/// Bounds the allocation a corrupt length field can cause.
pub const MAX_PAYLOAD: u32 = 1 << 20;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    EpochStart = 1,
    BlockCreate = 2,
    BlockCommit = 3,
    BlockRemove = 4,
    DataserverJoin = 5,
    DataserverLeave = 6,
    ReplicaAdd = 7,
    TaskCreate = 8,
    TaskDone = 9,
}

impl RecordType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use RecordType::*;
        Some(match v {
            1 => EpochStart,
            2 => BlockCreate,
            3 => BlockCommit,
            4 => BlockRemove,
            5 => DataserverJoin,
            6 => DataserverLeave,
            7 => ReplicaAdd,
            8 => TaskCreate,
            9 => TaskDone,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub rtype: RecordType,
    pub epoch: Epoch,
    pub seq: u64,
    pub time_ms: u64,
    pub len: u32,
    pub crc: u32,
}

/// A decoded, crc-checked record whose payload is still protobuf bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: Header,
    pub payload: Bytes,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than a whole record: a torn tail, or more data to come on a stream.
    #[error("incomplete record: need {need} bytes, have {have}")]
    Incomplete { need: usize, have: usize },
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported record format version {0}")]
    BadVersion(u16),
    #[error("unknown record type {0}")]
    BadType(u8),
    #[error("payload length {0} exceeds the limit of {MAX_PAYLOAD}")]
    TooLong(u32),
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x} (seq {seq})")]
    BadCrc { stored: u32, computed: u32, seq: u64 },
}

impl RecordError {
    pub fn is_incomplete(&self) -> bool {
        matches!(self, RecordError::Incomplete { .. })
    }
}

/// Appends one encoded record to `out`.
pub fn encode(out: &mut Vec<u8>, rtype: RecordType, epoch: Epoch, seq: u64, time_ms: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let start = out.len();
    out.reserve(HEADER_LEN + payload.len());
    out.put_u32_le(MAGIC);
    out.put_u16_le(VERSION);
    out.put_u8(rtype as u8);
    out.put_u8(0);
    out.put_u64_le(epoch.get());
    out.put_u64_le(seq);
    out.put_u64_le(time_ms);
    out.put_u32_le(payload.len() as u32);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 36]), payload);
    out.put_u32_le(crc);
    out.extend_from_slice(payload);
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and checks the header at the start of `buf` (the crc is checked by [`decode`]).
pub fn decode_header(buf: &[u8]) -> Result<Header, RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::Incomplete { need: HEADER_LEN, have: buf.len() });
    }
    let magic = le_u32(buf, 0);
    if magic != MAGIC {
        return Err(RecordError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != VERSION {
        return Err(RecordError::BadVersion(version));
    }
    let rtype = RecordType::from_u8(buf[6]).ok_or(RecordError::BadType(buf[6]))?;
    let len = le_u32(buf, 32);
    if len > MAX_PAYLOAD {
        return Err(RecordError::TooLong(len));
    }
    Ok(Header {
        rtype,
        epoch: Epoch(le_u64(buf, 8)),
        seq: le_u64(buf, 16),
        time_ms: le_u64(buf, 24),
        len,
        crc: le_u32(buf, 36),
    })
}

/// Decodes the record at the start of `buf`; returns it and its encoded length.
pub fn decode(buf: &Bytes) -> Result<(Record, usize), RecordError> {
    let header = decode_header(buf)?;
    let total = HEADER_LEN + header.len as usize;
    if buf.len() < total {
        return Err(RecordError::Incomplete { need: total, have: buf.len() });
    }
    let computed = crc32c::crc32c_append(crc32c::crc32c(&buf[..36]), &buf[HEADER_LEN..total]);
    if computed != header.crc {
        return Err(RecordError::BadCrc { stored: header.crc, computed, seq: header.seq });
    }
    Ok((Record { header, payload: buf.slice(HEADER_LEN..total) }, total))
}

impl Record {
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        encode(out, h.rtype, h.epoch, h.seq, h.time_ms, &self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(payload: &[u8]) -> Bytes {
        let mut v = Vec::new();
        encode(&mut v, RecordType::BlockCommit, Epoch(3), 42, 1_700_000_000_000, payload);
        Bytes::from(v)
    }

    #[test]
    fn round_trip() {
        let b = one(b"hello");
        let (r, n) = decode(&b).unwrap();
        assert_eq!(n, HEADER_LEN + 5);
        assert_eq!(r.header.epoch, Epoch(3));
        assert_eq!(r.header.seq, 42);
        assert_eq!(r.header.rtype, RecordType::BlockCommit);
        assert_eq!(&r.payload[..], b"hello");
    }

    #[test]
    fn header_layout_is_fixed() {
        let b = one(b"");
        assert_eq!(&b[0..4], b"TFSO");
        assert_eq!(b[6], RecordType::BlockCommit as u8);
        assert_eq!(le_u64(&b, 16), 42);
        assert_eq!(b.len(), HEADER_LEN);
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut v = one(b"x").to_vec();
        v[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&Bytes::from(v)), Err(RecordError::TooLong(u32::MAX)));
    }

    #[test]
    fn unknown_type_and_version_are_refused() {
        let mut v = one(b"x").to_vec();
        v[6] = 200;
        assert_eq!(decode(&Bytes::from(v.clone())), Err(RecordError::BadType(200)));
        v[6] = 2;
        v[4] = 9;
        assert_eq!(decode(&Bytes::from(v)), Err(RecordError::BadVersion(9)));
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..512),
                                   epoch: u64, seq: u64, t: u64) {
            let mut v = Vec::new();
            encode(&mut v, RecordType::BlockCreate, Epoch(epoch), seq, t, &payload);
            let (r, n) = decode(&Bytes::from(v.clone())).unwrap();
            prop_assert_eq!(n, v.len());
            prop_assert_eq!((r.header.epoch, r.header.seq, r.header.time_ms), (Epoch(epoch), seq, t));
            prop_assert_eq!(&r.payload[..], &payload[..]);
        }

        /// Any single flipped bit is detected: never decoded as a valid record.
        #[test]
        fn any_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..128),
                                    bit in 0usize..(8 * (HEADER_LEN + 128))) {
            let mut v = Vec::new();
            encode(&mut v, RecordType::BlockCreate, Epoch(1), 7, 9, &payload);
            let bit = bit % (8 * v.len());
            v[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&Bytes::from(v)).is_err());
        }

        /// Every strict prefix is incomplete (or, once the header is cut, a header error), never Ok.
        #[test]
        fn prefixes_are_incomplete(payload in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..104) {
            let mut v = Vec::new();
            encode(&mut v, RecordType::BlockCreate, Epoch(1), 7, 9, &payload);
            let cut = cut % v.len();
            let e = decode(&Bytes::copy_from_slice(&v[..cut])).unwrap_err();
            prop_assert!(e.is_incomplete());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&Bytes::from(data));
        }
    }
}
