//! Tasks, by id and indexed by dataserver and by block, so that a leave, a renew and planning
//! touch only the tasks they concern instead of scanning them all.
//!
//! Invariant: `by_dataserver` and `by_block` hold exactly what a scan of `by_id` derives (each
//! task under its source and its target, each block under its one task); only the methods here
//! change the three, together.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Task;
use crate::oplog::format;

#[derive(Debug, Default, Clone)]
pub struct Tasks {
    by_id: BTreeMap<u64, Task>,
    by_dataserver: HashMap<u32, BTreeSet<u64>>,
    by_block: HashMap<u64, u64>,
    /// Tasks of each kind (indexed by the kind's number), for Status.
    by_kind: [u64; KINDS],
}

/// Task kinds, 0 (unspecified) included.
const KINDS: usize = 5;

fn kind_slot(t: &Task) -> usize {
    (t.kind as usize).min(KINDS - 1)
}

impl Tasks {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: &u64) -> Option<&Task> {
        self.by_id.get(id)
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Task> {
        self.by_id.values()
    }

    /// The task of a block, if it has one.
    pub fn of_block(&self, block_id: u64) -> Option<&Task> {
        self.by_block.get(&block_id).and_then(|id| self.by_id.get(id))
    }

    /// Tasks a dataserver is the source or the target of.
    pub fn of_dataserver(&self, ds: u32) -> impl Iterator<Item = &Task> {
        self.by_dataserver.get(&ds).into_iter().flatten().filter_map(|id| self.by_id.get(id))
    }

    /// How many tasks of each kind there are: (kind, count), kinds with none left out.
    pub fn by_kind(&self) -> impl Iterator<Item = (format::TaskKind, u64)> + '_ {
        self.by_kind
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (format::TaskKind::try_from(k as i32).unwrap_or(format::TaskKind::Unspecified), *n))
    }

    /// How many tasks a dataserver takes part in.
    pub fn load(&self, ds: u32) -> usize {
        self.by_dataserver.get(&ds).map_or(0, |s| s.len())
    }

    pub fn insert(&mut self, t: Task) {
        if let Some(old) = self.by_id.get(&t.id).cloned() {
            self.unindex(&old);
        }
        for ds in [t.source, t.target] {
            self.by_dataserver.entry(ds).or_default().insert(t.id);
        }
        self.by_block.insert(t.block_id, t.id);
        self.by_kind[kind_slot(&t)] += 1;
        self.by_id.insert(t.id, t);
    }

    pub fn remove(&mut self, id: &u64) -> Option<Task> {
        let t = self.by_id.remove(id)?;
        self.unindex(&t);
        Some(t)
    }

    /// Drops every task a dataserver takes part in: O(its tasks).
    pub fn remove_dataserver(&mut self, ds: u32) {
        for id in self.by_dataserver.remove(&ds).unwrap_or_default() {
            self.remove(&id);
        }
    }

    fn unindex(&mut self, t: &Task) {
        self.by_kind[kind_slot(t)] -= 1;
        for ds in [t.source, t.target] {
            if let Some(s) = self.by_dataserver.get_mut(&ds) {
                s.remove(&t.id);
                if s.is_empty() {
                    self.by_dataserver.remove(&ds);
                }
            }
        }
        if self.by_block.get(&t.block_id) == Some(&t.id) {
            self.by_block.remove(&t.block_id);
        }
    }

    /// What a scan derives, for tests: (dataserver → task ids, block → task id).
    #[cfg(test)]
    pub(crate) fn check_index(&self) -> Result<(), String> {
        let mut by_ds: HashMap<u32, BTreeSet<u64>> = HashMap::new();
        let mut by_block = HashMap::new();
        let mut by_kind = [0u64; KINDS];
        for t in self.by_id.values() {
            by_kind[kind_slot(t)] += 1;
            by_ds.entry(t.source).or_default().insert(t.id);
            by_ds.entry(t.target).or_default().insert(t.id);
            if by_block.insert(t.block_id, t.id).is_some() {
                return Err(format!("block {} has two tasks", t.block_id));
            }
        }
        if by_ds != self.by_dataserver || by_block != self.by_block || by_kind != self.by_kind {
            return Err(format!(
                "task index {:?} / {:?} != scan {by_ds:?} / {by_block:?}",
                self.by_dataserver, self.by_block
            ));
        }
        Ok(())
    }
}
