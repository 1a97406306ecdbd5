//! Planning: which tasks the dataservers get. A pure function of the state (plus a cursor that only
//! says where the compaction scan resumes): [`plan`] returns the tasks; the server logs each as a
//! TaskCreate, so a new master holds exactly the tasks planned and nothing is planned twice.
//!
//! One round, in this order, each stage seeing what the earlier ones chose:
//! [`replicate`] (blocks that lost a replica), [`surplus`] (blocks with more replicas than they
//! want: a DELETE on the fullest holder), [`compact`] (blocks past `--compact-ratio` of deleted
//! data), [`balance`] (MOVE copies from the fullest to the emptiest dataserver). [`safe_mode`]
//! decides whether a round may run at all (not on a new master until its dataservers reported).
//!
//! Invariants of a round (tested in tests.rs by proptest over random states and histories):
//! - a block gets at most one task: blocks with a task are skipped, and one round never chooses
//!   a block twice (the state refuses a second task anyway: `BlockBusy`);
//! - no dataserver takes part in more than `per_ds` tasks, nor compacts more than
//!   `max_compact_per_ds` blocks at once; no more than `max_moves` MOVEs run at once;
//! - no task of ours takes a block below the replicas it wants: only DELETE drops a replica, and
//!   it is planned only for a block with more than it wants (the leave that ends a surplus cancels
//!   it, state `leave`);
//! - cost: bounded by `max` tasks and a budget of blocks looked at per stage, never a scan of all
//!   blocks (the stages walk the index's sets: needs-copy, surplus, with-deletes, a dataserver's).

pub mod balance;
pub mod compact;
pub mod replicate;
pub mod safe_mode;
pub mod surplus;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::format::{self, TaskKind};
use crate::state::State;
pub use safe_mode::SafeMode;

/// Most tasks one round (one transaction) plans: a leave of a dataserver holding millions of
/// blocks spreads over many transactions instead of one of millions of records.
pub const MAX_PLANNED_PER_TXN: usize = 1024;

/// TFS's `compact_delete_ratio` default (15 %): a block with at least this share of its bytes or
/// of its files deleted is compacted.
pub const DEFAULT_COMPACT_RATIO: f64 = 0.15;

/// The bounds and thresholds of planning (flags of tfs-nameserver, docs/PLANNING.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Most tasks of any kind a dataserver takes part in at once (`--max-replicate-tasks`).
    pub per_ds: usize,
    /// Most tasks one round plans.
    pub max: usize,
    /// Share (0..=1) of deleted bytes or files from which a block is compacted (`--compact-ratio`).
    pub compact_ratio: f64,
    /// Most compactions a dataserver runs at once (`--max-compact-tasks`).
    pub max_compact_per_ds: usize,
    /// Used ratios of the fullest and the emptiest dataserver further apart than this are
    /// balanced (`--balance-threshold`).
    pub balance_threshold: f64,
    /// Most MOVEs in flight in the whole cluster (`--max-balance-tasks`): balance's rate limit.
    pub max_moves: usize,
    /// Bytes a block counts for in a dataserver's used ratio (`EngineConfig::block_size_estimate`).
    pub block_bytes: u64,
}

impl Params {
    pub fn of(cfg: &crate::config::EngineConfig) -> Self {
        Params {
            per_ds: cfg.max_replicate_tasks,
            max: MAX_PLANNED_PER_TXN,
            compact_ratio: cfg.compact_ratio,
            max_compact_per_ds: cfg.max_compact_tasks,
            balance_threshold: cfg.balance_threshold,
            max_moves: cfg.max_balance_tasks,
            block_bytes: cfg.block_size_estimate.max(1),
        }
    }
}

/// Where the compaction scan resumes: soft, per node (a new master starts from 0, which only
/// changes the order in which blocks are looked at, never which tasks are valid).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub compact_from: u64,
}

/// One task chosen by a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: TaskKind,
    pub block_id: u64,
    pub source: u32,
    pub target: u32,
    /// COMPACT: the block's version it compacts.
    pub version: u32,
}

impl Planned {
    /// The record that plans it, as task `task_id` of `epoch`.
    pub fn to_mutation(&self, task_id: u64, epoch: Epoch) -> Mutation {
        Mutation::TaskCreate(format::TaskCreate {
            task_id,
            kind: self.kind as i32,
            block_id: self.block_id,
            source: self.source,
            target: self.target,
            epoch: epoch.get(),
            version: self.version,
        })
    }
}

/// A round in progress: the state, the bounds, and what the round chose so far.
pub struct Round<'a> {
    pub s: &'a State,
    pub p: &'a Params,
    /// Tasks each live dataserver takes part in, this round's included.
    load: HashMap<u32, usize>,
    /// Live dataservers below `per_ds`.
    with_room: usize,
    compacts: HashMap<u32, usize>,
    /// Replicas each live dataserver will hold once its tasks are done (MOVE: +1 target, −1
    /// source, whose copy the following DELETE drops; DELETE: −1).
    projected: HashMap<u32, i64>,
    taken: HashSet<u64>,
    pub out: Vec<Planned>,
}

impl<'a> Round<'a> {
    pub fn new(s: &'a State, p: &'a Params) -> Self {
        let load: HashMap<u32, usize> = s.live_dataservers().map(|d| (d.id, s.tasks().load(d.id))).collect();
        let with_room = load.values().filter(|&&n| n < p.per_ds).count();
        let mut compacts = HashMap::new();
        let mut projected: HashMap<u32, i64> =
            s.live_dataservers().map(|d| (d.id, s.index().count_of(d.id) as i64)).collect();
        for d in s.live_dataservers() {
            for t in s.tasks().of_dataserver(d.id) {
                match t.kind {
                    TaskKind::Compact => *compacts.entry(d.id).or_insert(0) += 1,
                    TaskKind::Move if t.target == d.id => *projected.entry(d.id).or_insert(0) += 1,
                    TaskKind::Move | TaskKind::Delete => *projected.entry(d.id).or_insert(0) -= 1,
                    _ => {}
                }
            }
        }
        Round { s, p, load, with_room, compacts, projected, taken: HashSet::new(), out: Vec::new() }
    }

    /// The round planned all it may.
    pub fn full(&self) -> bool {
        self.out.len() >= self.p.max
    }

    /// Live dataservers with room for one more task.
    pub fn with_room(&self) -> usize {
        self.with_room
    }

    /// The block has a task, or this round chose one for it.
    pub fn busy(&self, block_id: u64) -> bool {
        self.taken.contains(&block_id) || self.s.tasks().of_block(block_id).is_some()
    }

    /// A live dataserver with room for one more task.
    pub fn has_room(&self, ds: u32) -> bool {
        self.load.get(&ds).is_some_and(|&n| n < self.p.per_ds)
    }

    pub fn compacts(&self, ds: u32) -> usize {
        self.compacts.get(&ds).copied().unwrap_or(0)
    }

    pub fn load(&self, ds: u32) -> usize {
        self.load.get(&ds).copied().unwrap_or(0)
    }

    /// The share of its capacity a live dataserver will use once its tasks are done, counting
    /// each replica as `block_bytes`; `delta` more replicas. The nameserver's own logged view, the
    /// same on every node, and moved at once by the tasks planned (the reported `used` arrives
    /// only with the next renew).
    pub fn ratio(&self, ds: u32, delta: i64) -> f64 {
        let cap = self.s.dataservers.get(&ds).map_or(0, |d| d.capacity);
        if cap == 0 {
            return f64::INFINITY;
        }
        let n = self.projected.get(&ds).copied().unwrap_or(0) + delta;
        n.max(0) as f64 * self.p.block_bytes as f64 / cap as f64
    }

    /// Moves planned or in flight (balance's rate limit).
    pub fn moves(&self) -> usize {
        let planned = self.out.iter().filter(|t| t.kind == TaskKind::Move).count();
        let running = self.s.tasks().by_kind().find(|(k, _)| *k == TaskKind::Move).map_or(0, |(_, n)| n as usize);
        planned + running
    }

    /// Records a choice. The caller checked that the block is not busy and its dataservers have room.
    pub fn push(&mut self, t: Planned) {
        debug_assert!(!self.busy(t.block_id));
        self.taken.insert(t.block_id);
        let ds: &[u32] = if t.source == t.target { &[t.source] } else { &[t.source, t.target] };
        for d in ds {
            let n = self.load.entry(*d).or_insert(0);
            *n += 1;
            if *n == self.p.per_ds {
                self.with_room -= 1;
            }
        }
        match t.kind {
            TaskKind::Compact => *self.compacts.entry(t.source).or_insert(0) += 1,
            TaskKind::Move => {
                *self.projected.entry(t.target).or_insert(0) += 1;
                *self.projected.entry(t.source).or_insert(0) -= 1;
            }
            TaskKind::Delete => *self.projected.entry(t.source).or_insert(0) -= 1,
            _ => {}
        }
        self.out.push(t);
    }
}

/// Blocks a stage may look at in one round: enough to fill a round past blocks skipped for
/// their tasks, never all blocks.
pub fn budget(s: &State, p: &Params) -> usize {
    4 * p.max + s.tasks().len()
}

/// One planning round over `s`: the tasks to log, in order. See the module's invariants.
pub fn plan(s: &State, p: &Params, cursor: &mut Cursor) -> Vec<Planned> {
    let mut r = Round::new(s, p);
    replicate::plan(&mut r);
    surplus::plan(&mut r);
    compact::plan(&mut r, cursor);
    balance::plan(&mut r);
    r.out
}
