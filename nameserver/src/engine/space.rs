//! The data volume's free space, and the reserve below which writes are refused.
//!
//! Invariant: a client's write to a writable master is refused (RESOURCE_EXHAUSTED, nothing
//! logged) rather than admitted when the volume has less than `min_free_bytes` free. Not bounded
//! by it: dataservers' reports and the tasks they lead to, epoch marks (`Engine::write_unmetered`),
//! and a slave's appends of the master's records; they use the reserve. The reserve is a brake on
//! clients, not a guarantee that the volume never fills. Without it a full volume fails an oplog
//! append, and the writer must then stop the process (the state already holds records it cannot
//! make durable), over and over as the pod restarts. With it, reads, Status and replication go
//! on, and space can be made (a checkpoint drops old segments; a larger volume).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How long a measurement is trusted: statvfs is cheap, but not for every write.
const FRESH_MS: u64 = 500;

pub struct Space {
    free: AtomicU64,
    /// Size of the newest checkpoint written: the next one needs about as much room.
    checkpoint_bytes: AtomicU64,
    /// When `free` was measured, in ms since `since` (u64::MAX: never).
    measured_ms: AtomicU64,
    since: Instant,
}

impl Default for Space {
    fn default() -> Self {
        Space {
            free: AtomicU64::new(u64::MAX),
            checkpoint_bytes: AtomicU64::new(0),
            measured_ms: AtomicU64::new(u64::MAX),
            since: Instant::now(),
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

impl Space {
    /// Records the size of a checkpoint just written (or found at start).
    pub fn note_checkpoint(&self, bytes: u64) {
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The free space writes must leave: the configured minimum, or room for the next checkpoint
    /// (the last one's size and a quarter more) when that is larger — a checkpoint is what lets
    /// old oplog segments go, so the reserve must never be too small to write one.
    pub fn reserve(&self, min_free_bytes: u64) -> u64 {
        let ckpt = self.checkpoint_bytes.load(Ordering::Relaxed);
        min_free_bytes.max(ckpt.saturating_add(ckpt / 4))
    }

    /// Free bytes of the volume of `dir`, measured again when the last measure is stale. A
    /// failed measure counts as plenty (u64::MAX): the reserve must never refuse writes by mistake.
    pub fn free(&self, dir: &Path) -> u64 {
        let now = self.since.elapsed().as_millis() as u64;
        let at = self.measured_ms.load(Ordering::Relaxed);
        if at == u64::MAX || now.saturating_sub(at) >= FRESH_MS {
            let free = free_bytes(dir).unwrap_or(u64::MAX);
            self.free.store(free, Ordering::Relaxed);
            self.measured_ms.store(now, Ordering::Relaxed);
        }
        self.free.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_real_directory_is_measured_and_cached() {
        let d = tempfile::tempdir().unwrap();
        let s = Space::default();
        let first = s.free(d.path());
        assert!(first > 0 && first < u64::MAX, "{first}");
        assert_eq!(s.free(d.path()), first, "within 500 ms the measure is reused");
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }

    #[test]
    fn the_reserve_grows_with_the_checkpoint() {
        let s = Space::default();
        assert_eq!(s.reserve(64 << 20), 64 << 20);
        s.note_checkpoint(480 << 20);
        assert_eq!(s.reserve(64 << 20), 600 << 20);
    }
}
