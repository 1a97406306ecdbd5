//! One replication frame as a peer sends it: `frame::decode_header`, the payload crc, then
//! `frame::decode::<M>` for the frame's message type, the records of a Records frame as a slave
//! checks them, or a snapshot chunk as a whole snapshot.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tfs_nameserver::checkpoint::Snapshot;
use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::oplog::record;
use tfs_nameserver::proto;
use tfs_nameserver::replication::frame::{self, FrameType};
use tfs_nameserver::replication::slave;

/// Whatever decodes as `M` encodes and decodes back to itself.
fn msg<M: Message + Default + PartialEq + std::fmt::Debug>(t: FrameType, payload: Bytes) {
    let Ok(m) = frame::decode::<M>(t, payload) else { return };
    let back: M = frame::decode(t, m.encode_to_vec().into()).expect("a re-encoded message decodes");
    assert_eq!(back, m);
}

fn check(data: &[u8]) {
    let Some(h) = data.first_chunk::<{ frame::HEADER_LEN }>() else { return };
    let Ok((t, len, crc)) = frame::decode_header(h) else { return };
    assert!(len <= frame::MAX_FRAME);
    // `read_frame` reads exactly `len` bytes, then refuses a payload whose crc differs.
    let Some(payload) = data[frame::HEADER_LEN..].get(..len as usize) else { return };
    if crc32c::crc32c(payload) != crc {
        return;
    }
    assert_eq!(&frame::encode_header(t, payload), h);
    let p = Bytes::copy_from_slice(payload);
    match t {
        FrameType::Login => msg::<proto::ReplLogin>(t, p),
        FrameType::LoginOk => msg::<proto::ReplLoginOk>(t, p),
        FrameType::Refused => msg::<proto::ReplRefused>(t, p),
        FrameType::Renew => msg::<proto::ReplRenew>(t, p),
        FrameType::Ack => msg::<proto::ReplAck>(t, p),
        FrameType::Logout => msg::<proto::ReplLogout>(t, p),
        FrameType::Heartbeat => msg::<proto::ReplHeartbeat>(t, p),
        FrameType::Records => {
            // A slave expects its last seq + 1; take the first record's seq, at a realistic height.
            let expected = record::decode_header(&p).map_or(1, |h| h.seq).min(1 << 62);
            if let Ok(rs) = slave::check_records(&p, expected, Epoch::ZERO, Epoch(u64::MAX)) {
                assert_eq!(rs.iter().map(|r| r.encoded_len()).sum::<usize>(), p.len());
                for (i, r) in rs.into_iter().enumerate() {
                    assert_eq!(r.header.seq, expected + i as u64);
                    tfs_fuzz::check_mutation(r.header.rtype, r.payload);
                }
            }
        }
        FrameType::SnapshotChunk => {
            let _ = Snapshot::read_from(&mut &p[..]);
        }
        FrameType::SnapshotEnd => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    tfs_fuzz::fix_frame_crc(&mut fixed);
    check(&fixed);
});
