//! Restore and verification: download objects, check each body against the crc in its name and
//! every record (crc, seq continuity, epochs agreeing where objects overlap), and write a data
//! directory that `tfs-nameserver --data-dir` opens at exactly the restored seq.
//!
//! Layout written: `<dir>/checkpoints/checkpoint-<seq:020>.ckpt` (the archived checkpoint's bytes,
//! unless the restore starts from the empty state) and `<dir>/oplog/<seq+1:020>.seg` holding the
//! records after it through the target — the layout `Engine::open` recovers from.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::ArchiveError;
use super::layout::{CheckpointName, ObjectName, WalName};
use super::plan::{self, Base, EpochRuns, Target};
use super::store::Store;
use crate::checkpoint::Snapshot;
use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::record;
use crate::state::State;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub seq: u64,
    pub epoch: u64,
    pub time_ms: u64,
    /// The checkpoint's key, or `None` when restored from the empty state.
    pub checkpoint: Option<String>,
    pub records: u64,
    pub objects: usize,
    pub bytes: u64,
    pub blocks: u64,
}

/// Checks a body against the crc its name carries.
fn check_crc(store: &Store, name: &ObjectName, body: &[u8]) -> Result<(), ArchiveError> {
    let computed = crc32c::crc32c(body);
    if computed != name.crc() {
        return Err(ArchiveError::Crc { object: store.key(name), stored: name.crc(), computed });
    }
    Ok(())
}

/// Decodes a wal body and checks it against its name: seqs `first..=last` in order, each
/// record's crc, the last record's epoch, the first and last times.
pub fn decode_wal(store: &Store, w: &WalName, body: &Bytes) -> Result<Vec<record::Record>, ArchiveError> {
    let key = store.key(&ObjectName::Wal(*w));
    let bad = |seq: u64, reason: String| ArchiveError::Corrupt { object: key.clone(), seq, reason };
    let mut out = Vec::with_capacity((w.last - w.first + 1) as usize);
    let mut off = 0;
    let mut expected = w.first;
    while off < body.len() {
        let (r, n) = record::decode(&body.slice(off..)).map_err(|e| bad(expected, e.to_string()))?;
        if r.header.seq != expected {
            return Err(bad(expected, format!("record of seq {} where {expected} was expected", r.header.seq)));
        }
        if expected > w.last {
            return Err(bad(expected, format!("records past the last seq {} of the name", w.last)));
        }
        off += n;
        expected += 1;
        out.push(r);
    }
    if expected != w.last + 1 {
        return Err(bad(expected, format!("the body ends before seq {} of the name", w.last)));
    }
    let (first, last) = (out.first().expect("non-empty"), out.last().expect("non-empty"));
    if last.header.epoch != Epoch(w.epoch) || first.header.time_ms != w.first_ms || last.header.time_ms != w.last_ms {
        return Err(bad(
            w.last,
            format!(
                "records say epoch {} times {}..{}, the name says epoch {} times {}..{}",
                last.header.epoch, first.header.time_ms, last.header.time_ms, w.epoch, w.first_ms, w.last_ms
            ),
        ));
    }
    Ok(out)
}

/// Decodes a checkpoint body and checks it against its name.
pub fn decode_checkpoint(store: &Store, c: &CheckpointName, body: &Bytes) -> Result<Snapshot, ArchiveError> {
    let key = store.key(&ObjectName::Checkpoint(*c));
    let snap = Snapshot::read_from(&mut &body[..]).map_err(|e| ArchiveError::Corrupt {
        object: key.clone(),
        seq: c.seq,
        reason: e.to_string(),
    })?;
    if snap.meta.seq != c.seq || snap.meta.epoch != c.epoch {
        return Err(ArchiveError::Corrupt {
            object: key,
            seq: c.seq,
            reason: format!(
                "the checkpoint is at seq {} epoch {}, its name says {} {}",
                snap.meta.seq, snap.meta.epoch, c.seq, c.epoch
            ),
        });
    }
    Ok(snap)
}

/// Whether `dir` already holds a nameserver's data: a checkpoint, or an oplog segment with bytes
/// (a nameserver started on an empty directory leaves an empty first segment: not data).
pub fn holds_data(dir: &Path) -> Result<bool, ArchiveError> {
    let io = |e: std::io::Error| ArchiveError::DataDir { dir: dir.display().to_string(), reason: e.to_string() };
    if !crate::checkpoint::list(&dir.join("checkpoints")).map_err(io)?.is_empty() {
        return Ok(true);
    }
    let oplog = dir.join("oplog");
    if !oplog.exists() {
        return Ok(false);
    }
    for s in crate::oplog::segment::list(&oplog).map_err(io)? {
        if fs::metadata(&s.path).map_err(io)?.len() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Restores `target` from `store` into `dir`, which must hold no data (see [`holds_data`]).
/// `progress` gets one line per object.
pub async fn restore(
    store: &Store,
    target: Target,
    dir: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<Restored, ArchiveError> {
    let listing = store.list().await?;
    let p = plan::plan(&listing, target).map_err(ArchiveError::NotRestorable)?;
    let restorable = || plan::describe_restorable(&listing);
    let dir_err = |reason: String| ArchiveError::DataDir { dir: dir.display().to_string(), reason };
    if holds_data(dir)? {
        return Err(dir_err("already holds data (a checkpoint or oplog records): refusing to overwrite it".into()));
    }
    let mut out =
        Restored { seq: 0, epoch: 0, time_ms: 0, checkpoint: None, records: 0, objects: 0, bytes: 0, blocks: 0 };
    let mut runs = EpochRuns::default();
    let (mut state, ckpt_body, marks) = match p.base {
        Base::Empty => (State::new(), None, Vec::new()),
        Base::Checkpoint(c) => {
            let name = ObjectName::Checkpoint(c);
            let body = store.get(&name).await?;
            check_crc(store, &name, &body)?;
            let snap = decode_checkpoint(store, &c, &body)?;
            // The checkpoint's epoch marks say the epoch of every seq it covers: overlapping wal
            // records must agree.
            let marks: Vec<crate::state::EpochMark> = snap
                .meta
                .epochs
                .iter()
                .map(|m| crate::state::EpochMark { epoch: Epoch(m.epoch), start_seq: m.start_seq })
                .collect();
            out.checkpoint = Some(store.key(&name));
            out.objects += 1;
            out.bytes += body.len() as u64;
            out.epoch = c.epoch;
            out.time_ms = c.time_ms;
            progress(format!(
                "checkpoint {} ({:.1} MB, {} blocks)",
                store.key(&name),
                mb(body.len()),
                snap.meta.block_count
            ));
            let state = snap.into_state().map_err(|e| ArchiveError::Corrupt {
                object: store.key(&name),
                seq: c.seq,
                reason: e.to_string(),
            })?;
            (state, Some((c.seq, body)), marks)
        }
    };
    let base_seq = p.base.seq();
    out.seq = base_seq;
    let mut seg = Vec::new();
    'objects: for w in &p.wal {
        let name = ObjectName::Wal(*w);
        let body = store.get(&name).await?;
        check_crc(store, &name, &body)?;
        let recs = decode_wal(store, w, &body)?;
        out.objects += 1;
        out.bytes += body.len() as u64;
        for r in recs {
            let h = r.header;
            let two_histories = |holder: String| ArchiveError::Corrupt {
                object: store.key(&name),
                seq: h.seq,
                reason: format!("epoch {} where {holder}: two histories in one archive", h.epoch),
            };
            if let Err(seen) = runs.check_or_add(h.seq, h.epoch.get()) {
                return Err(two_histories(format!("another object holds epoch {seen}")));
            }
            if h.seq <= base_seq {
                let own = crate::state::epoch_at(&marks, h.seq);
                if own != Epoch::ZERO && own != h.epoch {
                    return Err(two_histories(format!("the checkpoint says epoch {own}")));
                }
            }
            if h.seq <= out.seq {
                continue; // covered by the checkpoint, or an overlap already applied (checked above)
            }
            if h.seq > p.through || p.stop_after_ms.is_some_and(|t| h.time_ms > t) {
                break 'objects;
            }
            if h.seq != out.seq + 1 {
                return Err(ArchiveError::Corrupt {
                    object: store.key(&name),
                    seq: out.seq + 1,
                    reason: format!("seq {} follows seq {}; {}", h.seq, out.seq, restorable()),
                });
            }
            let m = Mutation::decode(h.rtype, r.payload.clone()).map_err(|e| ArchiveError::Corrupt {
                object: store.key(&name),
                seq: h.seq,
                reason: format!("undecodable payload: {e}"),
            })?;
            state.apply(&h, &m).map_err(|e| ArchiveError::Corrupt {
                object: store.key(&name),
                seq: h.seq,
                reason: format!("does not apply: {e}"),
            })?;
            r.encode_into(&mut seg);
            out.seq = h.seq;
            out.epoch = h.epoch.get();
            out.time_ms = h.time_ms;
            out.records += 1;
        }
        progress(format!(
            "{} ({:.1} MB): through seq {}, {} records so far",
            store.key(&name),
            mb(body.len()),
            out.seq,
            out.records
        ));
    }
    if p.stop_after_ms.is_none() && out.seq != p.through {
        return Err(ArchiveError::NotRestorable(format!(
            "the archive's records end at seq {}, before the target {}; {}",
            out.seq,
            p.through,
            restorable()
        )));
    }
    out.blocks = state.blocks().len() as u64;
    write_data_dir(dir, ckpt_body.as_ref().map(|(s, b)| (*s, b)), base_seq, &seg)
        .map_err(|e| dir_err(e.to_string()))?;
    Ok(out)
}

fn mb(n: usize) -> f64 {
    n as f64 / 1e6
}

/// Writes the checkpoint and the segment into a staging directory, fsynced, then moves them into
/// place: a failed restore leaves no partial data under the names recovery reads.
fn write_data_dir(dir: &Path, ckpt: Option<(u64, &Bytes)>, base_seq: u64, seg: &[u8]) -> std::io::Result<()> {
    let stage = dir.join(".restore-staging");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage)?;
    let write = |name: &str, body: &[u8]| -> std::io::Result<PathBuf> {
        let p = stage.join(name);
        let mut f = fs::File::create(&p)?;
        f.write_all(body)?;
        f.sync_all()?;
        Ok(p)
    };
    let seg_name = crate::oplog::segment::file_name(base_seq + 1);
    let staged_seg = write(&seg_name, seg)?;
    let staged_ckpt = match ckpt {
        Some((seq, body)) => Some((crate::checkpoint::file_name(seq), write("ckpt", body)?)),
        None => None,
    };
    let (oplog, ckpts) = (dir.join("oplog"), dir.join("checkpoints"));
    fs::create_dir_all(&oplog)?;
    fs::create_dir_all(&ckpts)?;
    // Empty segments a nameserver left on an empty directory do not continue this history.
    for s in crate::oplog::segment::list(&oplog)? {
        fs::remove_file(&s.path)?;
    }
    fs::rename(&staged_seg, oplog.join(&seg_name))?;
    fs::File::open(&oplog)?.sync_all()?;
    // The checkpoint last: with it, recovery reads the segment after it.
    if let Some((name, p)) = staged_ckpt {
        fs::rename(p, ckpts.join(name))?;
        fs::File::open(&ckpts)?.sync_all()?;
    }
    fs::remove_dir_all(&stage)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub objects: usize,
    pub checkpoints: usize,
    pub records: u64,
    pub bytes: u64,
}

/// Downloads and checks every object of the archive: each body's crc against its name, every
/// record (crc, seq continuity inside the object and from one object to the next unless a
/// checkpoint bridges the gap, epochs equal wherever objects overlap), every checkpoint decodes
/// and agrees with the epochs of the records it covers. Stops at the first problem.
pub async fn verify(store: &Store, progress: &mut dyn FnMut(String)) -> Result<Verified, ArchiveError> {
    let listing = store.list().await?;
    let ckpt_seqs: Vec<u64> = listing
        .iter()
        .filter_map(|l| match l.name {
            ObjectName::Checkpoint(c) => Some(c.seq),
            _ => None,
        })
        .collect();
    let mut runs = EpochRuns::default();
    let mut v = Verified::default();
    let mut reach: Option<u64> = None;
    let mut checkpoints = Vec::new();
    for l in &listing {
        let body = store.get(&l.name).await?;
        check_crc(store, &l.name, &body)?;
        v.objects += 1;
        v.bytes += body.len() as u64;
        match &l.name {
            ObjectName::Checkpoint(c) => {
                let snap = decode_checkpoint(store, c, &body)?;
                checkpoints.push((*c, snap.meta.epochs));
                v.checkpoints += 1;
            }
            ObjectName::Wal(w) => {
                if let Some(r) = reach
                    && w.first > r + 1
                    && !ckpt_seqs.iter().any(|&c| c + 1 >= w.first && c <= w.last)
                {
                    return Err(ArchiveError::Corrupt {
                        object: store.key(&l.name),
                        seq: r + 1,
                        reason: format!(
                            "seqs {}..={} are in no object and no checkpoint bridges them; {}",
                            r + 1,
                            w.first - 1,
                            plan::describe_restorable(&listing)
                        ),
                    });
                }
                for rec in decode_wal(store, w, &body)? {
                    if let Err(seen) = runs.check_or_add(rec.header.seq, rec.header.epoch.get()) {
                        return Err(ArchiveError::Corrupt {
                            object: store.key(&l.name),
                            seq: rec.header.seq,
                            reason: format!("epoch {} where an earlier object holds epoch {seen}", rec.header.epoch),
                        });
                    }
                    v.records += 1;
                }
                reach = Some(reach.map_or(w.last, |r| r.max(w.last)));
            }
        }
        if v.objects % 50 == 0 {
            progress(format!("{} objects, {:.1} MB, {} records checked", v.objects, mb(v.bytes as usize), v.records));
        }
    }
    // A checkpoint's epoch marks against the records the archive holds at or below its seq.
    for (c, marks) in checkpoints {
        let marks: Vec<crate::state::EpochMark> =
            marks.iter().map(|m| crate::state::EpochMark { epoch: Epoch(m.epoch), start_seq: m.start_seq }).collect();
        if c.seq > 0
            && let Some(e) = runs.get(c.seq)
        {
            let own = crate::state::epoch_at(&marks, c.seq);
            if own != Epoch(e) {
                return Err(ArchiveError::Corrupt {
                    object: store.key(&ObjectName::Checkpoint(c)),
                    seq: c.seq,
                    reason: format!("the checkpoint says epoch {own} at its seq, the wal holds epoch {e}"),
                });
            }
        }
    }
    Ok(v)
}
