//! Opening a data directory: recovery (an interrupted install completed, the newest checkpoint,
//! the oplog replayed), the writer thread started, the directory locked for this process.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tracing::info;

use super::fence::spawn_fence;
use super::{Commit, Engine, Shared, StartError, writer};
use crate::archive::ArchiveShared;
use crate::checkpoint;
use crate::config::{EngineConfig, ReplicationConfig};
use crate::metrics::Metrics;
use crate::mutation::Mutation;
use crate::oplog::feed::Feed;
use crate::oplog::{Oplog, OplogOptions};
use crate::role::RoleState;
use crate::state::State;

impl Engine {
    /// Recovers the state (newest valid checkpoint + oplog replay) and starts the writer thread.
    pub fn open(cfg: EngineConfig) -> Result<Self, StartError> {
        Self::open_with(cfg, ReplicationConfig::default())
    }

    pub fn open_with(cfg: EngineConfig, repl: ReplicationConfig) -> Result<Self, StartError> {
        let lock = lock_data_dir(&cfg.data_dir).map_err(StartError::Lock)?;
        let t0 = Instant::now();
        if let Some(staged) = checkpoint::pending_install(&cfg.checkpoint_dir())? {
            // A crash interrupted a snapshot install past its commit point: finish it first.
            let seq = staged.meta.seq;
            let removed = crate::oplog::log::remove_all(&cfg.oplog_dir())?;
            checkpoint::finish_install(&cfg.checkpoint_dir(), seq)?;
            info!(seq, removed_segments = removed, "interrupted snapshot install completed");
        }
        let snap = checkpoint::load_newest(&cfg.checkpoint_dir())?;
        let mut state = match snap {
            Some(s) => s.into_state()?,
            None => State::new(),
        };
        let ckpt_seq = state.applied_seq;
        let opts = OplogOptions { segment_bytes: cfg.segment_bytes, fsync: cfg.fsync };
        let (oplog, rec) = Oplog::open(&cfg.oplog_dir(), opts, ckpt_seq, |r| {
            let m = Mutation::decode(r.header.rtype, r.payload.clone()).map_err(|e| e.to_string())?;
            state.apply(&r.header, &m).map_err(|e| e.to_string())
        })?;
        let elapsed = t0.elapsed();
        info!(
            checkpoint_seq = ckpt_seq,
            replayed = rec.replayed,
            torn_bytes = rec.torn_bytes,
            blocks = state.blocks().len(),
            seq = state.applied_seq,
            epoch = %state.epoch,
            elapsed_ms = elapsed.as_millis() as u64,
            "state recovered"
        );
        let durable = oplog.last_seq();
        let role = if cfg.standalone { RoleState::standalone() } else { RoleState::slave_unknown_master() };
        let metrics = Metrics::new();
        metrics.recovery_seconds.set(elapsed.as_secs_f64());
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            role: Mutex::new(role),
            commit: Commit::new(durable, cfg.replication_mode),
            metrics,
            checkpoint_seq: AtomicU64::new(ckpt_seq),
            first_log_seq: AtomicU64::new(oplog.first_seq()),
            ds_leases: Mutex::new(Default::default()),
            feed: Feed::new(repl.feed_bytes, durable),
            repl,
            admission: tokio::sync::Semaphore::new(cfg.max_inflight_records as usize),
            refused_not_master: AtomicU64::new(0),
            space: Default::default(),
            planner: Default::default(),
            archive: ArchiveShared::new(cfg.archive.clone(), cfg.standalone),
            cfg,
            _lock: lock,
        });
        let (tx, rx) = mpsc::channel(1 << 16);
        let engine = Engine { shared: shared.clone(), tx: tx.clone() };
        // The newest checkpoint on disk sizes the reserve until the next one is written.
        if let Some((_, newest)) =
            crate::checkpoint::list(&shared.cfg.checkpoint_dir()).ok().and_then(|l| l.into_iter().next())
            && let Ok(m) = std::fs::metadata(&newest)
        {
            shared.space.note_checkpoint(m.len());
        }
        spawn_fence(&shared).map_err(StartError::Thread)?;
        writer::spawn(shared, oplog, rx, tx).map_err(StartError::Thread)?;
        if engine.shared.cfg.standalone {
            engine.shared.role.lock().valid_until = None;
        }
        Ok(engine)
    }
}

/// Takes an exclusive lock on the data directory, waiting while another process holds it.
///
/// Invariant: two processes never write one oplog. This happens in Kubernetes when a pod is
/// force-deleted: its replacement mounts the same volume while the old container may still run.
fn lock_data_dir(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
    let started = Instant::now();
    let mut warned = false;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !warned && started.elapsed() > Duration::from_secs(2) {
                    tracing::warn!(dir = %dir.display(), "data directory locked by another nameserver process; waiting for it to exit");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}
