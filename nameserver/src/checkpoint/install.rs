//! The atomic install of a snapshot received from the master (docs/PROTOCOL.md section 4).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::Path;

use super::{CheckpointError, Snapshot, file_name, list};

/// Name of a snapshot install in progress (not a `checkpoint-*.ckpt`: `list` never sees it).
const INSTALL: &str = "install.ckpt";

/// Stages a snapshot received from the master: written, fsynced and renamed to [`INSTALL`].
///
/// Invariant (a snapshot install is atomic): the rename of the staged file is the install's commit
/// point. Before it, recovery ignores the snapshot and finds the node's own history whole; after
/// it, recovery finishes the install ([`pending_install`], then [`finish_install`]) whatever step
/// a crash interrupted, before reading any checkpoint or segment. So a node never recovers a mix
/// of its old log and the master's snapshot, nor a checkpoint of its own newer than the snapshot.
pub fn stage_install(dir: &Path, snap: &Snapshot) -> Result<(), CheckpointError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(INSTALL);
    let tmp = path.with_extension("tmp");
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        snap.write_to(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// A staged install whose commit point passed (see [`stage_install`]). An unrenamed temporary is
/// an install that never committed: it is removed.
pub fn pending_install(dir: &Path) -> Result<Option<Snapshot>, CheckpointError> {
    let path = dir.join(INSTALL);
    let _ = fs::remove_file(path.with_extension("tmp"));
    if !path.exists() {
        return Ok(None);
    }
    let mut r = BufReader::with_capacity(1 << 20, File::open(&path)?);
    Snapshot::read_from(&mut r).map(Some).map_err(|e| {
        CheckpointError::Header(format!(
            "a snapshot install was committed in {} but its file does not read back ({e}); the log it replaced is \
             gone: empty the data directory so that this node resynchronises from its master",
            path.display()
        ))
    })
}

/// Completes a staged install at `seq` once the log was reset after it: every other checkpoint is
/// removed (older ones belong to the replaced history, newer ones to a divergent tail), then the
/// staged snapshot becomes the only checkpoint. Each step can be repeated after a crash.
pub fn finish_install(dir: &Path, seq: u64) -> Result<(), CheckpointError> {
    for (_, old) in list(dir)? {
        if old.file_name().and_then(|n| n.to_str()) != Some(file_name(seq).as_str()) {
            fs::remove_file(old)?;
        }
    }
    fs::rename(dir.join(INSTALL), dir.join(file_name(seq)))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}
