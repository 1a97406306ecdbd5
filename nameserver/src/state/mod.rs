//! The nameserver's state machine: what the oplog describes. `apply` is deterministic: the same
//! records in the same order give the same state on every node, which is what makes a promoted
//! slave equal to the master it replaces.

pub mod block;
pub mod blocks;
pub mod dedup;
pub mod epochs;
pub mod index;
mod place;
pub mod tasks;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::Header;
use crate::oplog::format;
pub use block::{BlockMeta, MAX_REPLICAS};
pub use blocks::Blocks;
pub use dedup::Dedup;
pub use epochs::{EpochMark, epoch_at};
pub use index::Index;
pub use tasks::Tasks;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataserver {
    pub id: u32,
    pub addr: String,
    pub capacity: u64,
    pub used: u64,
    pub alive: bool,
    pub lease_id: u64,
    /// Soft state, not logged: unix ms of the last renew seen by this node.
    pub last_heartbeat_ms: u64,
    /// Soft state: bytes promised to blocks placed since the last renew reported `used`.
    pub reserved: u64,
}

impl Dataserver {
    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used).saturating_sub(self.reserved)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    pub kind: format::TaskKind,
    pub block_id: u64,
    pub source: u32,
    pub target: u32,
    /// The epoch of the master that planned it; 0 if unknown (a snapshot of an older version).
    /// A result naming another epoch is refused (see `check`, TaskDone).
    pub epoch: Epoch,
    /// COMPACT: the block's version when planned; a result for another version is stale.
    pub version: u32,
}

impl Task {
    /// The task as logged and checkpointed (ops `convert::task`: as handed to a dataserver).
    pub fn to_record(&self) -> format::TaskCreate {
        format::TaskCreate {
            task_id: self.id,
            kind: self.kind as i32,
            block_id: self.block_id,
            source: self.source,
            target: self.target,
            epoch: self.epoch.get(),
            version: self.version,
        }
    }

    /// The task a TaskCreate describes; `record_epoch` stands in for an epoch the record does not
    /// carry (records written before the field: the epoch of the master that logged it).
    pub fn from_record(t: &format::TaskCreate, record_epoch: Epoch) -> Self {
        Task {
            id: t.task_id,
            kind: t.kind(),
            block_id: t.block_id,
            source: t.source,
            target: t.target,
            epoch: if t.epoch != 0 { Epoch(t.epoch) } else { record_epoch },
            version: t.version,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("record seq {got} does not follow applied seq {applied}")]
    OutOfOrder { applied: u64, got: u64 },
    #[error("record epoch {got} is lower than epoch {current} already applied")]
    StaleEpoch { current: Epoch, got: Epoch },
    #[error("block {0} already exists")]
    BlockExists(u64),
    #[error("block {0} does not exist")]
    NoBlock(u64),
    #[error("dataserver {0} is unknown")]
    NoDataserver(u32),
    #[error("task {0} is unknown")]
    NoTask(u64),
    /// The planner gives a block one task at a time; the index of tasks by block relies on it.
    #[error("block {0} already has a task")]
    BlockBusy(u64),
    #[error("block {0}: {1}")]
    Replicas(u64, block::TooManyReplicas),
    /// A result for a task planned in another epoch: the id may name another task now (a task of
    /// a lost tail, its id given again by a later master), so it is refused.
    #[error("task {task} is of epoch {task_epoch}, not {got}")]
    StaleTask { task: u64, task_epoch: Epoch, got: Epoch },
    /// The allocators keep "every id logged is below next": the largest id would leave no next.
    #[error("{0} id {1} is out of range")]
    IdOutOfRange(&'static str, u64),
}

/// Cloning a state is cheap in blocks (copy-on-write chunks, see [`Blocks`]) but copies the
/// derived index; a snapshot takes only what it writes ([`crate::checkpoint::Snapshot::of`]).
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Changed only through `apply`, which keeps `index` equal to what the blocks derive.
    blocks: Blocks,
    index: Index,
    pub dataservers: BTreeMap<u32, Dataserver>,
    tasks: Tasks,
    /// Recent request ids and their outcomes; changed only by `apply` (dedup.rs).
    requests: Dedup,
    /// Every block id ever logged is below this: the allocator never hands one out twice.
    pub next_block_id: u64,
    pub next_task_id: u64,
    pub next_lease_id: u64,
    pub epochs: Vec<EpochMark>,
    pub applied_seq: u64,
    pub epoch: Epoch,
}

impl State {
    pub fn new() -> Self {
        State { next_block_id: 1, next_task_id: 1, next_lease_id: 1, ..Default::default() }
    }

    pub fn blocks(&self) -> &Blocks {
        &self.blocks
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn requests(&self) -> &Dedup {
        &self.requests
    }

    /// Sets the dedup window a snapshot holds.
    pub fn restore_requests(&mut self, requests: Dedup) {
        self.requests = requests;
    }

    /// Sets the blocks and tasks a snapshot holds, and derives the index from them.
    pub fn restore(&mut self, blocks: Blocks, tasks: impl IntoIterator<Item = Task>) {
        self.index = Index::of(&blocks);
        self.blocks = blocks;
        self.tasks = Tasks::default();
        for t in tasks {
            self.tasks.insert(t);
        }
    }

    /// Replaces (or creates, or with `None` removes) block `id`, keeping the index in step.
    fn put_block(&mut self, id: u64, new: Option<BlockMeta>) {
        let old = match new {
            Some(b) => self.blocks.insert(id, b),
            None => self.blocks.remove(&id),
        };
        self.index.update(id, old.as_ref(), new.as_ref());
    }

    /// Changes block `id` with `f`, keeping the index in step.
    fn change_block<R>(&mut self, id: u64, f: impl FnOnce(&mut BlockMeta) -> R) -> Option<R> {
        let b = self.blocks.get_mut(&id)?;
        let old = *b;
        let r = f(b);
        let new = *b;
        if old.replicas() != new.replicas() || old.want != new.want || old.has_deletes() != new.has_deletes() {
            self.index.update(id, Some(&old), Some(&new));
        }
        Some(r)
    }

    /// Applies one record. Invariant: records are applied exactly once, in seq order, and never
    /// from an epoch lower than one already applied.
    pub fn apply(&mut self, h: &Header, m: &Mutation) -> Result<(), ApplyError> {
        if h.seq != self.applied_seq + 1 {
            return Err(ApplyError::OutOfOrder { applied: self.applied_seq, got: h.seq });
        }
        if h.epoch < self.epoch {
            return Err(ApplyError::StaleEpoch { current: self.epoch, got: h.epoch });
        }
        self.apply_mutation(h, m)?;
        self.applied_seq = h.seq;
        self.epoch = h.epoch;
        Ok(())
    }

    /// Checks that `m` would apply, without changing anything (the master validates before logging).
    pub fn check(&self, m: &Mutation) -> Result<(), ApplyError> {
        match m {
            Mutation::BlockCreate(c) if self.blocks.contains_key(&c.block_id) => {
                Err(ApplyError::BlockExists(c.block_id))
            }
            Mutation::BlockCreate(c) if c.block_id == u64::MAX => Err(ApplyError::IdOutOfRange("block", c.block_id)),
            Mutation::DataserverJoin(j) if j.lease_id == u64::MAX => Err(ApplyError::IdOutOfRange("lease", j.lease_id)),
            Mutation::TaskCreate(t) if t.task_id == u64::MAX => Err(ApplyError::IdOutOfRange("task", t.task_id)),
            Mutation::BlockCreate(c) if c.dataservers.len() > MAX_REPLICAS => {
                Err(ApplyError::Replicas(c.block_id, block::TooManyReplicas))
            }
            Mutation::BlockCommit(format::BlockCommit { block_id, .. })
            | Mutation::BlockRemove(format::BlockRemove { block_id, .. })
            | Mutation::ReplicaAdd(format::ReplicaAdd { block_id, .. })
                if !self.blocks.contains_key(block_id) =>
            {
                Err(ApplyError::NoBlock(*block_id))
            }
            Mutation::DataserverLeave(l) if !self.dataservers.contains_key(&l.id) => {
                Err(ApplyError::NoDataserver(l.id))
            }
            Mutation::TaskDone(d) if !self.tasks.contains_key(&d.task_id) => Err(ApplyError::NoTask(d.task_id)),
            // Invariant: a result is applied only to the task it was given for: same id, same
            // epoch (0 on either side: a record or snapshot older than the field, not checked).
            Mutation::TaskDone(d)
                if self
                    .tasks
                    .get(&d.task_id)
                    .is_some_and(|t| t.epoch != Epoch::ZERO && d.epoch != 0 && t.epoch != Epoch(d.epoch)) =>
            {
                let t = &self.tasks.get(&d.task_id).expect("guarded");
                Err(ApplyError::StaleTask { task: d.task_id, task_epoch: t.epoch, got: Epoch(d.epoch) })
            }
            Mutation::TaskCreate(t) if self.tasks.of_block(t.block_id).is_some_and(|o| o.id != t.task_id) => {
                Err(ApplyError::BlockBusy(t.block_id))
            }
            _ => Ok(()),
        }
    }

    fn apply_mutation(&mut self, h: &Header, m: &Mutation) -> Result<(), ApplyError> {
        self.check(m)?;
        match m {
            Mutation::EpochStart(e) => self.epochs.push(EpochMark { epoch: Epoch(e.epoch), start_seq: h.seq }),
            Mutation::BlockCreate(c) => {
                let meta = BlockMeta::new(&c.dataservers).map_err(|e| ApplyError::Replicas(c.block_id, e))?;
                self.put_block(c.block_id, Some(meta));
                self.next_block_id = self.next_block_id.max(c.block_id + 1);
            }
            Mutation::BlockCommit(c) => {
                self.change_block(c.block_id, |b| {
                    b.version = c.version;
                    b.size = c.size;
                    b.file_count = c.file_count;
                    b.del_size = c.del_size;
                    b.del_file_count = c.del_file_count;
                })
                .expect("checked");
            }
            Mutation::BlockRemove(r) => self.put_block(r.block_id, None),
            Mutation::DataserverJoin(j) => {
                let ds = self.dataservers.entry(j.id).or_insert_with(|| Dataserver {
                    id: j.id,
                    addr: String::new(),
                    capacity: 0,
                    used: 0,
                    alive: false,
                    lease_id: 0,
                    last_heartbeat_ms: 0,
                    reserved: 0,
                });
                ds.addr.clone_from(&j.addr);
                ds.capacity = j.capacity;
                ds.used = j.used;
                ds.alive = true;
                ds.lease_id = j.lease_id;
                ds.last_heartbeat_ms = h.time_ms;
                ds.reserved = 0;
                self.next_lease_id = self.next_lease_id.max(j.lease_id + 1);
            }
            Mutation::DataserverLeave(l) => {
                self.dataservers.get_mut(&l.id).expect("checked").alive = false;
                self.leave(l.id);
            }
            Mutation::ReplicaAdd(r) => {
                self.change_block(r.block_id, |b| b.add_replica(r.dataserver))
                    .expect("checked")
                    .map_err(|e| ApplyError::Replicas(r.block_id, e))?;
            }
            Mutation::TaskCreate(t) => {
                self.tasks.insert(Task::from_record(t, h.epoch));
                self.next_task_id = self.next_task_id.max(t.task_id + 1);
            }
            Mutation::TaskDone(d) => {
                let t = self.tasks.remove(&d.task_id).expect("checked");
                if d.success {
                    self.task_succeeded(&t, d);
                }
            }
        }
        if let Some((id, outcome)) = dedup::of_record(h.seq, m) {
            self.requests.insert(id, outcome);
        }
        Ok(())
    }

    /// What a successful task does to its block (a block removed since is left alone).
    fn task_succeeded(&mut self, t: &Task, d: &format::TaskDone) {
        use format::TaskKind::*;
        match t.kind {
            Replicate | Move => {
                // A full replica list means the copy is surplus; ignore it rather than fail.
                let _ = self.change_block(t.block_id, |b| b.add_replica(t.target));
            }
            Delete => {
                self.change_block(t.block_id, |b| b.remove_replica(t.source));
            }
            Compact => {
                // Invariant: a compaction result applies only to the version it compacted; a
                // commit in between makes it stale (the block is planned again if still needed).
                self.change_block(t.block_id, |b| {
                    if b.version == t.version {
                        b.size = d.size.unwrap_or(b.size.saturating_sub(b.del_size));
                        b.file_count = d.file_count.unwrap_or(b.file_count.saturating_sub(b.del_file_count));
                        b.del_size = 0;
                        b.del_file_count = 0;
                    }
                });
            }
            Unspecified => {}
        }
    }

    /// A dead dataserver holds nothing we can count on: its replicas and tasks go. Costs
    /// O(its blocks + its tasks), found through the index, never a scan of all blocks.
    ///
    /// Invariant: a DELETE never takes a block below the replicas it wants. Planned only on a
    /// surplus, one task a block; a leave that ends a block's surplus cancels its DELETE here.
    fn leave(&mut self, ds: u32) {
        let held = self.index.take_dataserver(ds);
        let mut now_need_copy = roaring::RoaringTreemap::new();
        let mut now_surplus = roaring::RoaringTreemap::new();
        let mut no_longer_surplus = Vec::new();
        self.blocks.update_sorted(held.iter(), |id, b| {
            let was = b.surplus();
            b.remove_replica(ds);
            if b.needs_copy() {
                index::append(&mut now_need_copy, id);
            }
            if b.surplus() {
                index::append(&mut now_surplus, id);
            } else if was {
                no_longer_surplus.push(id);
            }
        });
        self.index.after_leave(&held, now_need_copy, now_surplus);
        self.tasks.remove_dataserver(ds);
        for id in no_longer_surplus {
            if let Some(t) = self.tasks.of_block(id).filter(|t| t.kind == format::TaskKind::Delete) {
                let tid = t.id;
                self.tasks.remove(&tid);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
