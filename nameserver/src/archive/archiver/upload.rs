//! What a session uploads: committed records read from the feed or the segments, in wal objects;
//! checkpoints.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::info;

use super::{CHUNK, Session};
use crate::archive::ArchiveError;
use crate::archive::layout::{CheckpointName, ObjectName, WalName};
use crate::checkpoint::Snapshot;
use crate::engine::now_ms;
use crate::oplog::feed::FeedRead;
use crate::oplog::record;
use crate::oplog::segment::Cursor;

impl Session {
    /// Reads committed records after the buffer into it, up to [`CHUNK`] bytes.
    pub(super) async fn read(&mut self) -> Result<(), ArchiveError> {
        let sh = self.engine.clone();
        loop {
            let committed = sh.commit().committed();
            let next = if self.buf.data.is_empty() { self.archived + 1 } else { self.buf.last + 1 };
            if next > committed || self.buf.data.len() >= CHUNK {
                break;
            }
            let room = CHUNK - self.buf.data.len();
            let data = match sh.feed().read(next, room) {
                FeedRead::Records { data, .. } => {
                    self.cursor = None;
                    data
                }
                FeedRead::NotYet => break,
                FeedRead::TooOld => {
                    let dir = sh.cfg().oplog_dir();
                    let c = self.cursor.take();
                    let (c, chunk) = tokio::task::spawn_blocking(move || -> Result<_, String> {
                        let mut c = match c {
                            Some(c) if c.next_seq() == next => c,
                            _ => Cursor::seek(&dir, next)
                                .map_err(|e| e.to_string())?
                                .ok_or_else(|| format!("seq {next} is no longer in the local oplog"))?,
                        };
                        let chunk = c.next_chunk(room)?;
                        Ok((c, chunk))
                    })
                    .await
                    .map_err(|e| ArchiveError::Other(e.to_string()))?
                    .map_err(|e| ArchiveError::Other(format!("reading the oplog for the archive: {e}")))?;
                    self.cursor = Some(c);
                    match chunk {
                        Some((d, _, _)) => d,
                        None => break,
                    }
                }
            };
            if !self.take(&data, next, committed)? {
                break;
            }
        }
        let oldest = if self.buf.data.is_empty() { 0 } else { self.buf.first_ms };
        self.shared().oldest_unarchived_ms.store(oldest, Ordering::Relaxed);
        let lag = crate::archive::lag_seconds(oldest, now_ms());
        self.engine.metrics().archive.lag_seconds.set(lag);
        Ok(())
    }

    /// Appends the records of `data` (starting at `first`) through `committed` to the buffer;
    /// false when it took none.
    pub(super) fn take(&mut self, data: &Bytes, first: u64, committed: u64) -> Result<bool, ArchiveError> {
        let mut off = 0;
        let mut seq = first;
        let start = off;
        while off < data.len() && seq <= committed {
            let h = record::decode_header(&data[off..])
                .map_err(|e| ArchiveError::Other(format!("local oplog at seq {seq}: {e}")))?;
            if h.seq != seq {
                return Err(ArchiveError::Other(format!("local oplog: seq {} where {seq} was expected", h.seq)));
            }
            let b = &mut self.buf;
            if b.data.is_empty() && off == start {
                b.first = seq;
                b.first_ms = h.time_ms;
            }
            b.last = seq;
            b.last_ms = h.time_ms;
            b.epoch = h.epoch.get();
            off += record::HEADER_LEN + h.len as usize;
            seq += 1;
        }
        self.buf.data.extend_from_slice(&data[start..off]);
        Ok(off > start)
    }

    /// Uploads the buffer as one wal object.
    pub(super) async fn upload(&mut self) -> Result<(), ArchiveError> {
        let b = std::mem::take(&mut self.buf);
        let body = Bytes::from(b.data);
        let name = WalName {
            first: b.first,
            last: b.last,
            epoch: b.epoch,
            first_ms: b.first_ms,
            last_ms: b.last_ms,
            crc: crc32c::crc32c(&body),
        };
        let obj = ObjectName::Wal(name);
        let put = self.retry("wal upload", || self.store.put(&obj, body.clone())).await;
        if let Err(e) = put {
            // Read again from the log next time (the floor keeps it there).
            self.cursor = None;
            return Err(e);
        }
        let m = &self.engine.metrics().archive;
        m.uploads.get_or_create(&crate::metrics::Kind { kind: "wal" }).inc();
        m.upload_bytes.inc_by(body.len() as u64);
        self.shared().status.lock().last_error.clear();
        self.set_archived(b.last);
        self.shared().oldest_unarchived_ms.store(0, Ordering::Relaxed);
        tracing::debug!(object = %self.store.key(&obj), records = b.last - b.first + 1, bytes = body.len(), "archived");
        self.answer_backups();
        Ok(())
    }

    /// Takes a snapshot of the state, waits until its seq is committed, uploads it.
    pub(super) async fn checkpoint(&mut self) -> Result<(CheckpointName, u64), ArchiveError> {
        let sh = self.engine.clone();
        let snap = Snapshot::of(&sh.state().read());
        let (seq, epoch) = (snap.meta.seq, snap.meta.epoch);
        self.wait_committed(seq).await?;
        let body = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            snap.write_to(&mut v).map(|_| Bytes::from(v))
        })
        .await
        .map_err(|e| ArchiveError::Other(e.to_string()))?
        .map_err(|e| ArchiveError::Other(format!("encoding the checkpoint at seq {seq}: {e}")))?;
        let time_ms = self.record_time(seq).await;
        let name = CheckpointName { seq, epoch, time_ms, crc: crc32c::crc32c(&body) };
        let obj = ObjectName::Checkpoint(name);
        self.retry("checkpoint upload", || self.store.put(&obj, body.clone())).await?;
        let m = &sh.metrics().archive;
        m.uploads.get_or_create(&crate::metrics::Kind { kind: "checkpoint" }).inc();
        m.upload_bytes.inc_by(body.len() as u64);
        let key = self.store.key(&obj);
        info!(seq, object = %key, bytes = body.len(), "archive: checkpoint uploaded");
        let mut s = self.shared().status.lock();
        s.last_checkpoint_seq = seq;
        s.last_checkpoint_object = key;
        s.last_checkpoint_unix_ms = now_ms() as i64;
        s.last_error.clear();
        Ok((name, body.len() as u64))
    }

    /// The header time of the record at `seq` (0 if it cannot be read).
    pub(super) async fn record_time(&self, seq: u64) -> u64 {
        if seq == 0 {
            return 0;
        }
        let sh = self.engine.clone();
        if let FeedRead::Records { data, .. } = sh.feed().read(seq, 1) {
            return record::decode_header(&data).map(|h| h.time_ms).unwrap_or(0);
        }
        let dir = sh.cfg().oplog_dir();
        tokio::task::spawn_blocking(move || {
            let mut c = Cursor::seek(&dir, seq).ok()??;
            let (d, _, _) = c.next_chunk(1).ok()??;
            record::decode_header(&d).ok().map(|h| h.time_ms)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
    }
}
