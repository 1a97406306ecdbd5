//! Checkpoints: a snapshot of the state at a seq, so that recovery replays only the log after it
//! and older segments can be deleted. The same framing carries a snapshot to a slave that is too
//! far behind for the log.
//!
//! ```text
//! header 32 bytes: magic "TFSC" u32 | version u16 | 0 u16 | seq u64 | epoch u64 | 0 u64
//! frames:          length u32 | crc32c u32 | payload      (length <= MAX_FRAME)
//!   first  SnapshotMeta, then SnapshotChunk*, then an end frame of length 0 and crc 0
//! ```
//! Invariant: a checkpoint is only used if every frame's crc matches, the end frame is present and
//! the block count matches the meta; it is written to a temporary name, fsynced and renamed, so a
//! crash leaves either the old or the new one, never half of one under the final name.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use thiserror::Error;
use tracing::{info, warn};

use crate::epoch::Epoch;
use crate::oplog::format;
use crate::state::dedup::{DedupView, Entry as RequestEntry};
use crate::state::{BlockMeta, Blocks, Dataserver, Dedup, EpochMark, State, Task};

pub const MAGIC: u32 = 0x4353_4654; // "TFSC"
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
pub const MAX_FRAME: u32 = 64 << 20;
const BLOCKS_PER_CHUNK: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O: {0}")]
    Io(#[from] io::Error),
    #[error("bad checkpoint header: {0}")]
    Header(String),
    #[error("checkpoint frame {index}: {reason}")]
    Frame { index: usize, reason: String },
}

/// The state at `meta.seq`, detached from the live state so it can be encoded elsewhere.
///
/// Invariant (a snapshot is the state at exactly its seq): `blocks` shares the live table's
/// chunks, which the writer copies before changing (see [`Blocks`]); so the writer may go on
/// applying while this is written, and what is written is still the state at `meta.seq`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub meta: format::SnapshotMeta,
    pub blocks: Blocks,
    pub dataservers: Vec<format::SnapshotDataserver>,
    pub tasks: Vec<format::TaskCreate>,
    /// The dedup window of request ids (shares its chunks like `blocks`).
    pub requests: DedupView,
}

impl Snapshot {
    /// Takes the state's view: O(chunks of blocks + dataservers + tasks), no block copied, so it
    /// runs under the state's lock (on the writer thread) without stalling writes; the encoding
    /// happens later, on another thread.
    pub fn of(state: &State) -> Self {
        Snapshot {
            meta: format::SnapshotMeta {
                seq: state.applied_seq,
                epoch: state.epoch.get(),
                next_block_id: state.next_block_id,
                next_task_id: state.next_task_id,
                next_lease_id: state.next_lease_id,
                block_count: state.blocks().len() as u64,
                epochs: state
                    .epochs
                    .iter()
                    .map(|e| format::EpochMark { epoch: e.epoch.get(), start_seq: e.start_seq })
                    .collect(),
            },
            blocks: state.blocks().clone(),
            dataservers: state
                .dataservers
                .values()
                .map(|d| format::SnapshotDataserver {
                    id: d.id,
                    addr: d.addr.clone(),
                    capacity: d.capacity,
                    used: d.used,
                    lease_id: d.lease_id,
                    alive: d.alive,
                })
                .collect(),
            tasks: state.tasks().values().map(|t| t.to_record()).collect(),
            requests: state.requests().view(),
        }
    }

    pub fn into_state(self) -> Result<State, CheckpointError> {
        let m = self.meta;
        let mut s = State::new();
        s.next_block_id = m.next_block_id;
        s.next_task_id = m.next_task_id;
        s.next_lease_id = m.next_lease_id;
        s.applied_seq = m.seq;
        s.epoch = Epoch(m.epoch);
        s.epochs = m.epochs.iter().map(|e| EpochMark { epoch: Epoch(e.epoch), start_seq: e.start_seq }).collect();
        for d in self.dataservers {
            s.dataservers.insert(
                d.id,
                Dataserver {
                    id: d.id,
                    addr: d.addr,
                    capacity: d.capacity,
                    used: d.used,
                    alive: d.alive,
                    lease_id: d.lease_id,
                    last_heartbeat_ms: 0,
                    reserved: 0,
                },
            );
        }
        // Tasks of snapshots written before `TaskCreate.epoch` keep epoch 0: their results are
        // not checked against an epoch (state `check`, TaskDone).
        let tasks = self.tasks.iter().map(|t| Task::from_record(t, Epoch::ZERO));
        s.restore(self.blocks, tasks);
        s.restore_requests(Dedup::from_view(&self.requests));
        Ok(s)
    }

    /// Writes header and frames.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(&MAGIC.to_le_bytes());
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&self.meta.seq.to_le_bytes());
        h.extend_from_slice(&self.meta.epoch.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes());
        w.write_all(&h)?;
        let mut buf = Vec::new();
        self.meta.encode(&mut buf).expect("vec");
        write_frame(w, &buf)?;
        let mut blocks = self.blocks.iter().peekable();
        let mut first = true;
        while first || blocks.peek().is_some() {
            let mut c = format::SnapshotChunk::default();
            if first {
                c.dataservers = self.dataservers.clone();
                c.tasks = self.tasks.clone();
                first = false;
            }
            for (id, b) in blocks.by_ref().take(BLOCKS_PER_CHUNK) {
                c.blocks.push(format::SnapshotBlock {
                    id,
                    version: b.version,
                    size: b.size,
                    file_count: b.file_count,
                    del_size: b.del_size,
                    del_file_count: b.del_file_count,
                    dataservers: b.replicas().to_vec(),
                    want: b.want as u32,
                });
            }
            buf.clear();
            c.encode(&mut buf).expect("vec");
            write_frame(w, &buf)?;
        }
        // The dedup window after the blocks (absent from older checkpoints: an empty window).
        let mut requests = self.requests.entries().peekable();
        let mut clients = Some(&self.requests.clients).filter(|c| !c.is_empty());
        while clients.is_some() || requests.peek().is_some() {
            let c = format::SnapshotChunk {
                requests: requests.by_ref().take(BLOCKS_PER_CHUNK).map(RequestEntry::to_record).collect(),
                request_clients: clients
                    .take()
                    .into_iter()
                    .flatten()
                    .map(|&(client, floor, forgotten)| format::SnapshotRequestClient { client, floor, forgotten })
                    .collect(),
                ..Default::default()
            };
            buf.clear();
            c.encode(&mut buf).expect("vec");
            write_frame(w, &buf)?;
        }
        w.write_all(&[0u8; 8])
    }

    /// Reads and checks a whole snapshot.
    pub fn read_from(r: &mut impl Read) -> Result<Self, CheckpointError> {
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h).map_err(|e| CheckpointError::Header(e.to_string()))?;
        let magic = u32::from_le_bytes(h[0..4].try_into().expect("4"));
        let version = u16::from_le_bytes(h[4..6].try_into().expect("2"));
        if magic != MAGIC || version != VERSION {
            return Err(CheckpointError::Header(format!("magic {magic:#010x} version {version}")));
        }
        let seq = u64::from_le_bytes(h[8..16].try_into().expect("8"));
        let mut snap = Snapshot::default();
        let mut buf = Vec::new();
        let mut last_id = None;
        for index in 0.. {
            let frame_err = |reason: String| CheckpointError::Frame { index, reason };
            let len = read_frame(r, &mut buf).map_err(frame_err)?;
            if len == 0 {
                if index == 0 {
                    return Err(frame_err("end frame before the meta".into()));
                }
                break;
            }
            if index == 0 {
                snap.meta = format::SnapshotMeta::decode(&buf[..]).map_err(|e| frame_err(e.to_string()))?;
                if snap.meta.seq != seq {
                    return Err(frame_err(format!("meta seq {} != header seq {seq}", snap.meta.seq)));
                }
                continue;
            }
            let c = format::SnapshotChunk::decode(&buf[..]).map_err(|e| frame_err(e.to_string()))?;
            snap.dataservers.extend(c.dataservers);
            snap.tasks.extend(c.tasks);
            snap.requests.clients.extend(c.request_clients.iter().map(|r| (r.client, r.floor, r.forgotten)));
            for r in &c.requests {
                let e = DedupView::entry_of(r).ok_or_else(|| frame_err(format!("request kind {}", r.kind)))?;
                snap.requests.push(e);
            }
            // The table grows with the blocks that actually arrive, never with the meta's count:
            // a corrupt or hostile count costs nothing.
            for b in c.blocks {
                if last_id.is_some_and(|l| b.id <= l) {
                    return Err(frame_err(format!("block ids not strictly increasing at {}", b.id)));
                }
                last_id = Some(b.id);
                let mut meta = BlockMeta::new(&b.dataservers).map_err(|e| frame_err(format!("block {}: {e}", b.id)))?;
                meta.want = b.want.min(u8::MAX as u32) as u8;
                meta.version = b.version;
                meta.size = b.size;
                meta.file_count = b.file_count;
                meta.del_size = b.del_size;
                meta.del_file_count = b.del_file_count;
                snap.blocks.insert(b.id, meta);
            }
        }
        if snap.blocks.len() as u64 != snap.meta.block_count {
            return Err(CheckpointError::Frame {
                index: 0,
                reason: format!("{} blocks read, meta says {}", snap.blocks.len(), snap.meta.block_count),
            });
        }
        Ok(snap)
    }
}

fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(&crc32c::crc32c(payload).to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one frame into `buf`; returns its length (0 = the end frame).
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).map_err(|e| format!("frame header: {e}"))?;
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4"));
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4"));
    if len > MAX_FRAME {
        return Err(format!("frame length {len} exceeds {MAX_FRAME}"));
    }
    if len == 0 {
        return if crc == 0 { Ok(0) } else { Err("bad end frame".into()) };
    }
    // Filled as bytes arrive rather than sized from the length field: a damaged length costs no
    // more memory than the bytes actually there.
    buf.clear();
    let got = r.take(len.into()).read_to_end(buf).map_err(|e| format!("frame body: {e}"))?;
    if got != len as usize {
        return Err(format!("frame body: {got} of {len} bytes"));
    }
    let computed = crc32c::crc32c(buf);
    if computed != crc {
        return Err(format!("crc mismatch: stored {crc:#010x}, computed {computed:#010x}"));
    }
    Ok(len as usize)
}

pub fn file_name(seq: u64) -> String {
    format!("checkpoint-{seq:020}.ckpt")
}

/// Checkpoints in `dir`, newest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) =
            name.strip_prefix("checkpoint-").and_then(|s| s.strip_suffix(".ckpt")).and_then(|s| s.parse().ok())
        {
            out.push((seq, e.path()));
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

/// Writes a checkpoint durably and keeps only the newest `keep` of them.
pub fn write(dir: &Path, snap: &Snapshot, keep: usize) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(file_name(snap.meta.seq));
    let tmp = path.with_extension("tmp");
    let written = (|| -> Result<(), CheckpointError> {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        snap.write_to(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        // A checkpoint that failed (a full volume) must not keep the space it took: the next
        // one has a new name, and leftovers would eat the reserve the oplog appends need.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    for (_, old) in list(dir)?.into_iter().skip(keep) {
        fs::remove_file(old)?;
    }
    Ok(path)
}

/// Loads the newest checkpoint that reads back whole; a damaged one is reported and passed over.
pub fn load_newest(dir: &Path) -> Result<Option<Snapshot>, CheckpointError> {
    for (seq, path) in list(dir)? {
        let mut r = BufReader::with_capacity(1 << 20, File::open(&path)?);
        match Snapshot::read_from(&mut r) {
            Ok(s) => {
                info!(file = %path.display(), seq, blocks = s.blocks.len(), "checkpoint loaded");
                return Ok(Some(s));
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "checkpoint unreadable, trying an older one")
            }
        }
    }
    Ok(None)
}

mod install;
pub use install::{finish_install, pending_install, stage_install};

#[cfg(test)]
mod tests;
