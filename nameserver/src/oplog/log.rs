//! The durable oplog: open with recovery, append, group-commit sync, read back, truncate.
//!
//! Invariants:
//! - seqs in the log are contiguous: every record is exactly one more than the one before it;
//! - a record is never applied unless its crc matched and its seq was the one expected;
//! - only the torn tail of the *last* segment is ever cut off on open, since only it can hold
//!   bytes that were never made durable (and so never acknowledged); a bad record anywhere else
//!   stops the open with the file, offset and seq.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;
use tracing::{info, warn};

use super::record::Record;
use super::segment::{self, ScanEnd, ScanStop, Segment};
use crate::epoch::Epoch;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone)]
pub struct OplogOptions {
    /// A new segment is started once the active one is this large.
    pub segment_bytes: u64,
    /// fdatasync on sync(); off only for benchmarks that measure everything but the disk.
    pub fsync: bool,
}

impl Default for OplogOptions {
    fn default() -> Self {
        Self { segment_bytes: 64 << 20, fsync: true }
    }
}

#[derive(Debug, Error)]
pub enum OplogError {
    #[error("oplog I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt oplog record in {path} at offset {offset} (expected seq {expected_seq}): {reason}")]
    Corrupt { path: PathBuf, offset: usize, expected_seq: u64, reason: String },
    #[error("oplog gap: records after seq {after} are missing (next segment starts at {found} in {path})")]
    Gap { after: u64, found: u64, path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OplogError + '_ {
    move |source| OplogError::Io { path: path.to_path_buf(), source }
}

/// What recovery found, for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    pub segments: usize,
    pub replayed: u64,
    pub torn_bytes: u64,
}

pub struct Oplog {
    dir: PathBuf,
    opts: OplogOptions,
    segments: Vec<Segment>,
    active: File,
    active_len: u64,
    last_seq: u64,
    last_epoch: Epoch,
    dirty: bool,
}

impl Oplog {
    /// Opens (creating if needed) the log in `dir`. Records with seq <= `after_seq` are covered by a
    /// checkpoint: checked but not visited. Every later record is passed to `visit` in order.
    pub fn open(
        dir: &Path,
        opts: OplogOptions,
        after_seq: u64,
        mut visit: impl FnMut(&Record) -> Result<(), String>,
    ) -> Result<(Self, Recovered), OplogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = segment::list(dir).map_err(io_err(dir))?;
        // Segments entirely covered by the checkpoint are not needed for recovery.
        let first_needed = segments.iter().rposition(|s| s.first_seq <= after_seq + 1).unwrap_or(0);
        let mut rec = Recovered { segments: segments.len(), ..Default::default() };
        let mut last_seq = after_seq;
        let mut last_epoch = Epoch::ZERO;
        let n = segments.len();
        for (i, seg) in segments.iter().enumerate().skip(first_needed) {
            let seg = seg.clone();
            if seg.first_seq > last_seq + 1 {
                return Err(OplogError::Gap { after: last_seq, found: seg.first_seq, path: seg.path });
            }
            let data = Bytes::from(fs::read(&seg.path).map_err(io_err(&seg.path))?);
            let mut expected = seg.first_seq;
            let end = segment::scan(&data, |r, offset| {
                if r.header.seq != expected {
                    return Err(ScanStop(format!(
                        "at offset {offset}: seq {} where {expected} was expected",
                        r.header.seq
                    )));
                }
                expected += 1;
                if r.header.seq > last_seq {
                    visit(&r).map_err(|e| ScanStop(format!("at offset {offset}: {e}")))?;
                    last_seq = r.header.seq;
                    rec.replayed += 1;
                }
                last_epoch = last_epoch.max(r.header.epoch);
                Ok(())
            })
            .map_err(|ScanStop(reason)| OplogError::Corrupt {
                path: seg.path.clone(),
                offset: 0,
                expected_seq: expected,
                reason,
            })?;
            if let ScanEnd::Bad { offset, error } = end {
                if i + 1 == n && segment::is_torn_tail(&data, offset, &error) {
                    let torn = data.len() - offset;
                    warn!(file = %seg.path.display(), offset, torn_bytes = torn, %error, "truncating torn tail of the oplog");
                    let f = OpenOptions::new().write(true).open(&seg.path).map_err(io_err(&seg.path))?;
                    f.set_len(offset as u64).map_err(io_err(&seg.path))?;
                    f.sync_all().map_err(io_err(&seg.path))?;
                    rec.torn_bytes = torn as u64;
                } else {
                    return Err(OplogError::Corrupt {
                        path: seg.path.clone(),
                        offset,
                        expected_seq: expected,
                        reason: error.to_string(),
                    });
                }
            }
        }
        let (active, active_len) = match segments.last() {
            Some(seg) if seg.first_seq <= last_seq + 1 => {
                let f = OpenOptions::new().append(true).open(&seg.path).map_err(io_err(&seg.path))?;
                let len = f.metadata().map_err(io_err(&seg.path))?.len();
                (f, len)
            }
            _ => {
                // No segment, or all of them older than the checkpoint: start one after it.
                let seg = Segment { first_seq: last_seq + 1, path: dir.join(segment::file_name(last_seq + 1)) };
                let f = create_segment(dir, &seg.path)?;
                segments.push(seg);
                (f, 0)
            }
        };
        info!(dir = %dir.display(), last_seq, segments = segments.len(), replayed = rec.replayed, "oplog open");
        Ok((
            Oplog { dir: dir.to_path_buf(), opts, segments, active, active_len, last_seq, last_epoch, dirty: false },
            rec,
        ))
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn last_epoch(&self) -> Epoch {
        self.last_epoch
    }

    pub fn first_seq(&self) -> u64 {
        self.segments.first().map(|s| s.first_seq).unwrap_or(self.last_seq + 1)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends already-encoded records `first_seq..=last_seq` (the caller guarantees contiguity and
    /// that `first_seq == self.last_seq() + 1`). Not durable until [`Oplog::sync`].
    pub fn append(&mut self, encoded: &[u8], first_seq: u64, last_seq: u64, epoch: Epoch) -> Result<(), OplogError> {
        assert_eq!(first_seq, self.last_seq + 1, "oplog append must continue the log without a gap");
        if self.active_len >= self.opts.segment_bytes {
            self.roll(first_seq)?;
        }
        let path = &self.segments.last().expect("active segment").path;
        self.active.write_all(encoded).map_err(io_err(path))?;
        self.active_len += encoded.len() as u64;
        self.last_seq = last_seq;
        self.last_epoch = self.last_epoch.max(epoch);
        self.dirty = true;
        Ok(())
    }

    /// Makes everything appended so far durable: one fdatasync for the whole group.
    pub fn sync(&mut self) -> Result<(), OplogError> {
        if self.dirty && self.opts.fsync {
            let path = &self.segments.last().expect("active segment").path;
            self.active.sync_data().map_err(io_err(path))?;
        }
        self.dirty = false;
        Ok(())
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), OplogError> {
        self.sync()?;
        let seg = Segment { first_seq, path: self.dir.join(segment::file_name(first_seq)) };
        self.active = create_segment(&self.dir, &seg.path)?;
        self.active_len = 0;
        self.segments.push(seg);
        Ok(())
    }

    /// Deletes the segments whose records all have seq <= `seq` (covered by a checkpoint).
    /// The active segment is never deleted.
    pub fn remove_through(&mut self, seq: u64) -> Result<usize, OplogError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].first_seq <= seq + 1 {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Drops the whole log and restarts it after `seq` (a slave installing a snapshot).
    pub fn reset_after(&mut self, seq: u64) -> Result<(), OplogError> {
        self.segments.clear();
        remove_all(&self.dir)?;
        let seg = Segment { first_seq: seq + 1, path: self.dir.join(segment::file_name(seq + 1)) };
        self.active = create_segment(&self.dir, &seg.path)?;
        self.active_len = 0;
        self.segments.push(seg);
        self.last_seq = seq;
        self.dirty = false;
        Ok(())
    }

    /// Reads records with seq in `from..` from the segments, up to about `max_bytes` of them.
    /// Returns `None` when `from` is older than the oldest segment (a snapshot is needed instead).
    pub fn read_from(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Record>>, OplogError> {
        if from < self.first_seq() {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let start = self.segments.iter().rposition(|s| s.first_seq <= from).unwrap_or(0);
        for seg in &self.segments[start..] {
            let data = Bytes::from(fs::read(&seg.path).map_err(io_err(&seg.path))?);
            let mut done = false;
            let end = segment::scan(&data, |r, _| {
                if r.header.seq >= from && r.header.seq <= self.last_seq && !done {
                    bytes += r.encoded_len();
                    out.push(r);
                    done = bytes >= max_bytes;
                }
                Ok(())
            })
            .map_err(|ScanStop(reason)| OplogError::Corrupt {
                path: seg.path.clone(),
                offset: 0,
                expected_seq: from,
                reason,
            })?;
            if let ScanEnd::Bad { offset, error } = end {
                // The tail of the active segment may hold a half-written batch; anything else is bad.
                if seg.path != self.segments.last().expect("active").path {
                    return Err(OplogError::Corrupt {
                        path: seg.path.clone(),
                        offset,
                        expected_seq: from,
                        reason: error.to_string(),
                    });
                }
            }
            if done {
                break;
            }
        }
        Ok(Some(out))
    }
}

/// Removes every segment in `dir` (durably): the log of a history a snapshot install replaces.
/// Only called past the install's commit point, which recovery completes (checkpoint.rs).
pub fn remove_all(dir: &Path) -> Result<usize, OplogError> {
    let segs = segment::list(dir).map_err(io_err(dir))?;
    for (i, seg) in segs.iter().enumerate() {
        fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        if i == 0 {
            crate::crashpoint::reached("install:first-segment-removed");
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(segs.len())
}

fn create_segment(dir: &Path, path: &Path) -> Result<File, OplogError> {
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    // The new name must survive a crash before any record in it is acknowledged.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(f)
}
