//! Replication frames: a 12-byte little-endian header and a payload.
//!
//! ```text
//! 0 type u8 | 1 flags u8 (0) | 2 reserved u16 (0) | 4 length u32 | 8 crc32c(payload) u32
//! ```
//! Invariant: a frame whose crc does not match, whose type is unknown or whose length exceeds
//! [`MAX_FRAME`] ends the connection; nothing in it is used.

use bytes::{Bytes, BytesMut};
use prost::Message;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const HEADER_LEN: usize = 12;
pub const MAX_FRAME: u32 = 16 << 20;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Login = 1,
    LoginOk = 2,
    Refused = 3,
    Renew = 4,
    Ack = 5,
    Records = 6,
    SnapshotChunk = 7,
    SnapshotEnd = 8,
    Logout = 9,
    Heartbeat = 10,
}

impl FrameType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use FrameType::*;
        Some(match v {
            1 => Login,
            2 => LoginOk,
            3 => Refused,
            4 => Renew,
            5 => Ack,
            6 => Records,
            7 => SnapshotChunk,
            8 => SnapshotEnd,
            9 => Logout,
            10 => Heartbeat,
            _ => return None,
        })
    }
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown frame type {0}")]
    BadType(u8),
    #[error("frame flags or reserved bytes are not zero")]
    Reserved,
    #[error("frame length {0} exceeds {MAX_FRAME}")]
    TooLong(u32),
    #[error("frame crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
    #[error("bad {0:?} frame: {1}")]
    Decode(FrameType, prost::DecodeError),
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: FrameType, got: FrameType },
}

pub fn encode_header(t: FrameType, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = t as u8;
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    h
}

pub async fn write_frame(w: &mut (impl AsyncWrite + Unpin), t: FrameType, payload: &[u8]) -> std::io::Result<()> {
    let header = encode_header(t, payload);
    // A small frame (ACK, RENEW, HEARTBEAT) goes out in one write: one segment, and over TLS one
    // record instead of two.
    if payload.len() <= SMALL_FRAME {
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        return w.write_all(&buf).await;
    }
    w.write_all(&header).await?;
    w.write_all(payload).await
}

/// Frames up to this payload are copied to be written at once.
const SMALL_FRAME: usize = 16 << 10;

pub async fn write_msg(w: &mut (impl AsyncWrite + Unpin), t: FrameType, m: &impl Message) -> std::io::Result<()> {
    write_frame(w, t, &m.encode_to_vec()).await
}

/// Checks a frame header; returns its type, payload length and crc.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<(FrameType, u32, u32), FrameError> {
    let t = FrameType::from_u8(h[0]).ok_or(FrameError::BadType(h[0]))?;
    if h[1..4] != [0, 0, 0] {
        return Err(FrameError::Reserved);
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4"));
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    Ok((t, len, u32::from_le_bytes(h[8..12].try_into().expect("4"))))
}

pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<(FrameType, Bytes), FrameError> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).await?;
    let (t, len, crc) = decode_header(&h)?;
    let mut buf = BytesMut::zeroed(len as usize);
    r.read_exact(&mut buf).await?;
    let computed = crc32c::crc32c(&buf);
    if computed != crc {
        return Err(FrameError::BadCrc { stored: crc, computed });
    }
    Ok((t, buf.freeze()))
}

pub fn decode<M: Message + Default>(t: FrameType, payload: Bytes) -> Result<M, FrameError> {
    M::decode(payload).map_err(|e| FrameError::Decode(t, e))
}

/// Reads a frame that must be of type `expected` and decodes it.
pub async fn read_msg<M: Message + Default>(
    r: &mut (impl AsyncRead + Unpin),
    expected: FrameType,
) -> Result<M, FrameError> {
    let (t, p) = read_frame(r).await?;
    if t != expected {
        return Err(FrameError::Unexpected { expected, got: t });
    }
    decode(t, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[tokio::test]
    async fn frames_round_trip_and_damage_is_refused() {
        let mut buf = Vec::new();
        write_msg(&mut buf, FrameType::Ack, &proto::ReplAck { durable_seq: 77 }).await.unwrap();
        let m: proto::ReplAck = read_msg(&mut &buf[..], FrameType::Ack).await.unwrap();
        assert_eq!(m.durable_seq, 77);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x04;
            let r: Result<proto::ReplAck, _> = read_msg(&mut &bad[..], FrameType::Ack).await;
            assert!(r.is_err(), "flip at {i} accepted");
        }
        let mut huge = buf.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_frame(&mut &huge[..]).await, Err(FrameError::TooLong(_))));
    }
}
