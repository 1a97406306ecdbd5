//! The engine: one writer thread owns the oplog and is the only mutator of the state. Requests
//! reach it as closures over a [`Txn`]; it groups everything that queued up while the previous
//! fdatasync ran into one batch (group commit), then publishes the durable seq. A request is
//! answered only once its records are *committed* (see [`commit`]).

pub mod commit;
mod error;
mod fence;
mod open;
pub mod space;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};

use crate::archive::ArchiveShared;
use crate::checkpoint::Snapshot;
use crate::config::{EngineConfig, ReplicationConfig};
use crate::epoch::Epoch;
use crate::metrics::Metrics;
use crate::oplog::Record;
use crate::oplog::feed::Feed;
use crate::role::RoleState;
use crate::state::State;
pub use commit::Commit;
pub use error::{StartError, WriteError};
pub use fence::FENCE_TICK;
pub use writer::{Txn, now_ms};

/// How a read is served (see [`Engine::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Stale,
}

impl Consistency {
    pub fn stale_if(stale: bool) -> Self {
        if stale { Consistency::Stale } else { Consistency::Linearizable }
    }
}

/// What a read was served from.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt {
    pub applied_seq: u64,
    pub epoch: Epoch,
    pub stale: bool,
}

/// A queued write; returns false if it did not run because its requester had gone.
type WriteFn = Box<dyn FnOnce(Result<&mut Txn<'_>, WriteError>) -> bool + Send>;

pub(crate) enum Command {
    /// A write and the records it is expected to log (for the writer's group bound).
    Write(WriteFn, u64),
    /// Records received from the master (slave side), already crc-checked.
    Append {
        records: Vec<Record>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    InstallSnapshot {
        snapshot: Box<Snapshot>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    SetRole {
        role: RoleState,
        reply: oneshot::Sender<Result<RoleState, String>>,
    },
    /// A background checkpoint finished: `Some(seq)` written, `None` failed; started in
    /// `generation` (see writer `install`).
    CheckpointDone {
        seq: Option<u64>,
        generation: u64,
    },
}

/// What every part of the node shares: private to the engine (its writer thread included), read
/// elsewhere through [`Engine`]'s methods; writes go through the writer.
pub(crate) struct Shared {
    cfg: EngineConfig,
    state: RwLock<State>,
    role: Mutex<RoleState>,
    commit: Commit,
    metrics: Metrics,
    checkpoint_seq: AtomicU64,
    first_log_seq: AtomicU64,
    /// Soft state: dataserver id → (lease id, deadline). Not logged; rebuilt from renews.
    ds_leases: Mutex<HashMap<u32, (u64, Instant)>>,
    /// Recent appended batches, for slaves and the archiver (oplog::feed).
    feed: Feed,
    repl: ReplicationConfig,
    /// Records of admitted writes not yet answered (see `EngineConfig::max_inflight_records`).
    admission: tokio::sync::Semaphore,
    /// Requests refused because this node is not a writable master: a client still on this node
    /// (the client server cuts its connections soon after one, see serve.rs).
    refused_not_master: AtomicU64,
    /// The data volume's free space (see space.rs: writes are refused below the reserve).
    space: space::Space,
    /// Soft planning state: safe mode after a promotion, the compaction scan's cursor
    /// (crate::planning). Lock order: `state` before `planner`.
    planner: Mutex<Planner>,
    /// The archive to object storage: its status, and the seq below which segments may go.
    archive: ArchiveShared,
    /// Held for the life of the process: one nameserver per data directory.
    _lock: std::fs::File,
}

impl Shared {
    /// Records of admitted writes not yet answered.
    fn inflight_records(&self) -> usize {
        self.cfg.max_inflight_records as usize - self.admission.available_permits()
    }
}

/// What planning keeps between rounds on this node (not logged: see crate::planning).
#[derive(Debug, Default)]
pub struct Planner {
    pub safe_mode: crate::planning::SafeMode,
    pub cursor: crate::planning::Cursor,
}

#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
}

impl Engine {
    async fn send(&self, cmd: Command) -> Result<(), WriteError> {
        self.tx.send(cmd).await.map_err(|_| WriteError::Unavailable("the nameserver is shutting down".into()))
    }

    /// Runs `f` on the writer thread and waits until what it logged is committed. `f` must
    /// validate before it logs: whatever it logged stays logged, even if it then returns an error.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, WriteError> + Send + 'static,
    ) -> Result<(R, u64), WriteError> {
        self.write_records(1, f).await
    }

    /// [`Engine::write`] outside the admission budget, for dataservers' keepalives and reports:
    /// refusing those under client load would declare live dataservers dead and add work.
    pub async fn write_unmetered<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, WriteError> + Send + 'static,
    ) -> Result<(R, u64), WriteError> {
        self.write_records(0, f).await
    }

    /// [`Engine::write`] for a write expected to log about `records` records.
    ///
    /// Invariants (overload brakes): a write is admitted only while the records of admitted,
    /// unanswered writes stay within `max_inflight_records` — otherwise it is refused at once,
    /// having done nothing; and a write whose requester has gone (its call cancelled or timed out)
    /// before the writer reached it is never executed, so a client's retry cannot double it.
    pub async fn write_records<R: Send + 'static>(
        &self,
        records: u32,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, WriteError> + Send + 'static,
    ) -> Result<(R, u64), WriteError> {
        let _admitted = self.admit(records)?;
        let (tx, rx) = oneshot::channel();
        let job: WriteFn = Box::new(move |txn| {
            if tx.is_closed() {
                return false;
            }
            // What `f` saw includes every record applied before it, committed or not: its answer
            // waits for all of them — a write that logs nothing (a dataserver renew returning its
            // tasks) and a refusal ("older than", "does not exist") are answers about that state
            // too, and must not show what the next master may never have.
            let out = txn.map(|t| {
                let r = f(t);
                (r, t.last_seq(), t.state().applied_seq)
            });
            let _ = tx.send(out);
            true
        });
        self.send(Command::Write(job, records.into())).await?;
        // `seen` >= `seq`: the applied seq after `f` covers its own records and all before them.
        let (r, seq, seen) =
            rx.await.map_err(|_| WriteError::Unavailable("the writer stopped".into()))?.inspect_err(|e| {
                if matches!(e, WriteError::NotWritable(_)) {
                    self.refused_as_not_master();
                }
            })?;
        self.wait_committed(seen).await?;
        Ok((r?, seq))
    }

    fn refused_as_not_master(&self) {
        self.shared.refused_not_master.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared.metrics.refused_not_master.inc();
    }

    fn admit(&self, records: u32) -> Result<tokio::sync::SemaphorePermit<'_>, WriteError> {
        let cfg = &self.shared.cfg;
        // Clients' writes to a writable master only: a slave or lapsed master refuses as such
        // (naming the master) in the writer; dataservers' reports and epoch marks (unmetered)
        // go on inside the reserve, so no dataserver is declared dead for a full volume.
        // The role is looked at only when the volume is low: the common write pays two atomic
        // loads (the cached measure), not the role's lock.
        let free = if records > 0 { self.shared.space.free(&cfg.data_dir) } else { u64::MAX };
        let reserve = self.shared.space.reserve(cfg.min_free_bytes);
        if free < reserve && self.shared.role.lock().check_writable(Instant::now()).is_ok() {
            self.shared.metrics.refused_low_space.inc();
            return Err(WriteError::NoSpace(format!(
                "the data volume has {} MiB free, below the reserve of {} MiB (--min-free-bytes, or room for the next \
                 checkpoint): writes are refused and nothing was executed; reads go on. Make room: a larger volume \
                 (spec.storage.size)",
                free >> 20,
                reserve >> 20
            )));
        }
        let limit = self.shared.cfg.max_inflight_records;
        // A write larger than the whole budget still runs, alone.
        self.shared.admission.try_acquire_many(records.min(limit)).map_err(|_| {
            self.shared.metrics.overloaded.inc();
            let busy = self.shared.inflight_records();
            WriteError::Overloaded {
                reason: format!(
                    "nameserver busy: {busy} records of admitted writes in flight (limit {limit}); this write of \
                     {records} was not executed, retry shortly"
                ),
                // About one group commit: by then, some of what is in flight has been answered.
                retry_after: Duration::from_millis(20),
            }
        })
    }

    /// Waits until `seq` is committed while this node is a writable master; false if it stopped
    /// being one first.
    ///
    /// Invariant (no request outlives the mastership it was accepted under): the role is looked at
    /// before each wait, and a wait ends when its seq commits or when the fence (fence.rs)
    /// releases every waiter, which it does every [`FENCE_TICK`] while this node is not a writable
    /// master (a validity ended, a demotion, a drain) and anyone waits — also one that registered
    /// just after the role changed. So a wait outlives its mastership by at most a tick, with no
    /// timer of its own (one per request cost more than the wait). What is acknowledged is checked
    /// again after the wait ([`Engine::wait_committed`], [`Engine::read`]): the fence bounds how
    /// long a lapsed master's callers wait, never what they are told.
    async fn committed_while_master(&self, seq: u64) -> bool {
        loop {
            if self.shared.role.lock().check_writable(Instant::now()).is_err() {
                return false;
            }
            self.shared.commit.wait(seq).await;
            if self.shared.commit.committed() >= seq {
                return true;
            }
        }
    }

    /// Waits until `seq` is committed, and refuses to acknowledge it if mastership lapsed first.
    pub async fn wait_committed(&self, seq: u64) -> Result<(), WriteError> {
        if self.shared.commit.committed() < seq && !self.committed_while_master(seq).await {
            return Err(WriteError::Unknown(format!("seq {seq} not committed before mastership lapsed")));
        }
        // Invariant: a write is acknowledged only once committed (durable on the master and on
        // every slave of the published sync set) and while mastership is valid. A wait can also
        // end without a commit (a log reset after a demotion releases its waiters, a dropped
        // Commit drops them): check both here rather than trust how the wait ended.
        if self.shared.commit.committed() < seq {
            return Err(WriteError::Unknown(format!("seq {seq} was not committed")));
        }
        self.shared.role.lock().check_writable(Instant::now()).map_err(|e| WriteError::Unknown(e.to_string()))
    }

    /// Runs a read against the state.
    ///
    /// Invariant (linearizable reads): a `Linearizable` read is answered only by a master inside
    /// its validity (so no other master can have acknowledged anything since), from state whose
    /// every record is committed (it waits for them, at most until the validity ends, and fails
    /// rather than show a write that could be lost), and the validity is checked again after. A
    /// read at a committed seq does not wait at all. `Stale` reads serve whatever this node has
    /// applied, on any node, and say so.
    pub async fn read<R>(&self, c: Consistency, f: impl FnOnce(&State) -> R) -> Result<(R, ReadAt), WriteError> {
        if c == Consistency::Stale {
            let s = self.shared.state.read();
            let at = ReadAt { applied_seq: s.applied_seq, epoch: s.epoch, stale: true };
            return Ok((f(&s), at));
        }
        let role = self.shared.role.lock().clone();
        role.check_writable(Instant::now()).inspect_err(|_| self.refused_as_not_master())?;
        let (r, applied) = {
            let s = self.shared.state.read();
            (f(&s), s.applied_seq)
        };
        if self.shared.commit.committed() < applied {
            let done = self.committed_while_master(applied).await;
            if !done || self.shared.commit.committed() < applied {
                return Err(WriteError::Unavailable(format!(
                    "the state holds seq {applied}, not committed before this master's validity ended; retry"
                )));
            }
        }
        self.shared.role.lock().check_writable(Instant::now())?;
        Ok((r, ReadAt { applied_seq: applied, epoch: role.epoch, stale: false }))
    }

    pub async fn append_replicated(&self, records: Vec<Record>) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Append { records, reply }).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|_| "writer stopped".to_string())?
    }

    pub async fn install_snapshot(&self, snapshot: Snapshot) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::InstallSnapshot { snapshot: Box::new(snapshot), reply }).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|_| "writer stopped".to_string())?
    }

    /// Changes the role on the writer thread, in order with writes (see writer::set_role).
    pub async fn set_role(&self, role: RoleState) -> Result<RoleState, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::SetRole { role, reply }).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|_| "writer stopped".to_string())?
    }

    pub fn durable_seq(&self) -> u64 {
        self.shared.commit.durable()
    }

    pub fn committed_seq(&self) -> u64 {
        self.shared.commit.committed()
    }

    pub fn epoch(&self) -> Epoch {
        self.shared.role.lock().epoch
    }

    pub fn checkpoint_seq(&self) -> u64 {
        self.shared.checkpoint_seq.load(Ordering::Relaxed)
    }

    pub fn cfg(&self) -> &EngineConfig {
        &self.shared.cfg
    }

    /// The state as applied (committed or not: see [`Engine::read`] for what a read may show).
    pub fn state(&self) -> &RwLock<State> {
        &self.shared.state
    }

    pub(crate) fn role(&self) -> &Mutex<RoleState> {
        &self.shared.role
    }

    pub fn commit(&self) -> &Commit {
        &self.shared.commit
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub(crate) fn first_log_seq(&self) -> u64 {
        self.shared.first_log_seq.load(Ordering::Relaxed)
    }

    /// Dataservers' leases (soft state, see [`Shared`]).
    pub(crate) fn ds_leases(&self) -> &Mutex<HashMap<u32, (u64, Instant)>> {
        &self.shared.ds_leases
    }

    pub(crate) fn feed(&self) -> &Feed {
        &self.shared.feed
    }

    pub(crate) fn repl(&self) -> &ReplicationConfig {
        &self.shared.repl
    }

    pub(crate) fn refused_not_master(&self) -> u64 {
        self.shared.refused_not_master.load(Ordering::Relaxed)
    }

    pub(crate) fn space(&self) -> &space::Space {
        &self.shared.space
    }

    pub(crate) fn planner(&self) -> &Mutex<Planner> {
        &self.shared.planner
    }

    pub(crate) fn archive(&self) -> &ArchiveShared {
        &self.shared.archive
    }
}
