//! Derived views of the block table that let a leave and replication planning work on the blocks
//! they concern instead of scanning every block: the blocks each dataserver holds a replica of,
//! and the blocks that need a copy.
//!
//! Neither is logged nor in a snapshot: both are a function of the blocks, kept up to date by
//! [`super::State`] on every change of a block's replicas, and rebuilt when a snapshot is loaded.
//! Ids are allocated densely, so a compressed bitmap ([`RoaringTreemap`]) holds them in about two
//! bytes per replica (measured in `memory_per_replica`).
//!
//! Invariant: `by_dataserver[d]` is exactly the set of blocks whose replica list names `d`,
//! `needs_copy` exactly the blocks with at least one replica and fewer than they want
//! ([`BlockMeta::needs_copy`]), `surplus` the blocks with more than they want
//! ([`BlockMeta::surplus`]), `deletes` the blocks holding deleted data
//! ([`BlockMeta::has_deletes`]): what [`Index::of`] derives by a full scan. Planning
//! (crate::planning) reads these sets, so it never scans all blocks.

use std::collections::BTreeMap;

use roaring::RoaringTreemap;

use super::{BlockMeta, Blocks};

/// Adds `id`, above every id in `set`, without a search.
pub(super) fn append(set: &mut RoaringTreemap, id: u64) {
    set.try_push(id).expect("ids are appended in ascending order");
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Index {
    by_dataserver: BTreeMap<u32, RoaringTreemap>,
    needs_copy: RoaringTreemap,
    surplus: RoaringTreemap,
    deletes: RoaringTreemap,
}

/// Keeps `set` holding `id` exactly when `now` says so, given whether it did (`was`).
fn flag(set: &mut RoaringTreemap, id: u64, was: bool, now: bool) {
    match (was, now) {
        (false, true) => {
            set.insert(id);
        }
        (true, false) => {
            set.remove(id);
        }
        _ => {}
    }
}

impl Index {
    /// The index of `blocks`, by a full scan (loading a snapshot; the reference in tests).
    pub fn of(blocks: &Blocks) -> Self {
        let mut ix = Index::default();
        for (id, b) in blocks.iter() {
            for &d in b.replicas() {
                append(ix.by_dataserver.entry(d).or_default(), id);
            }
            if b.needs_copy() {
                append(&mut ix.needs_copy, id);
            }
            if b.surplus() {
                append(&mut ix.surplus, id);
            }
            if b.has_deletes() {
                append(&mut ix.deletes, id);
            }
        }
        ix
    }

    /// Block `id` changes from `old` to `new` (`None`: absent).
    pub fn update(&mut self, id: u64, old: Option<&BlockMeta>, new: Option<&BlockMeta>) {
        let (was, now) = (old.map_or(&[][..], |b| b.replicas()), new.map_or(&[][..], |b| b.replicas()));
        for d in was.iter().filter(|d| !now.contains(d)) {
            if let Some(set) = self.by_dataserver.get_mut(d) {
                set.remove(id);
                if set.is_empty() {
                    self.by_dataserver.remove(d);
                }
            }
        }
        for d in now.iter().filter(|d| !was.contains(d)) {
            self.by_dataserver.entry(*d).or_default().insert(id);
        }
        let has = |f: fn(&BlockMeta) -> bool| (old.is_some_and(f), new.is_some_and(f));
        let (was, now) = has(BlockMeta::needs_copy);
        flag(&mut self.needs_copy, id, was, now);
        let (was, now) = has(BlockMeta::surplus);
        flag(&mut self.surplus, id, was, now);
        let (was, now) = has(BlockMeta::has_deletes);
        flag(&mut self.deletes, id, was, now);
    }

    /// Removes dataserver `ds` from the index and returns the blocks it held. The caller takes
    /// the replica off each of them and reports their new state with [`Index::after_leave`].
    pub fn take_dataserver(&mut self, ds: u32) -> RoaringTreemap {
        self.by_dataserver.remove(&ds).unwrap_or_default()
    }

    /// Of the blocks a departed dataserver `held`, exactly `now_need_copy` need a copy and
    /// `now_surplus` still have a surplus (a leave changes no block's deleted data).
    pub fn after_leave(&mut self, held: &RoaringTreemap, now_need_copy: RoaringTreemap, now_surplus: RoaringTreemap) {
        self.needs_copy -= held;
        self.needs_copy |= now_need_copy;
        self.surplus -= held;
        self.surplus |= now_surplus;
    }

    pub fn blocks_of(&self, ds: u32) -> impl Iterator<Item = u64> + '_ {
        self.by_dataserver.get(&ds).into_iter().flat_map(|s| s.iter())
    }

    /// Blocks needing a copy, ascending.
    pub fn needs_copy(&self) -> impl Iterator<Item = u64> + '_ {
        self.needs_copy.iter()
    }

    pub fn needs_copy_count(&self) -> u64 {
        self.needs_copy.len()
    }

    /// How many blocks dataserver `ds` holds a replica of: O(its bitmap's containers).
    pub fn count_of(&self, ds: u32) -> u64 {
        self.by_dataserver.get(&ds).map_or(0, |s| s.len())
    }

    /// Blocks with more replicas than they want, ascending.
    pub fn surplus(&self) -> impl Iterator<Item = u64> + '_ {
        self.surplus.iter()
    }

    /// Blocks holding deleted data, ascending from `from` (compaction planning's cursor).
    pub fn with_deletes_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let mut it = self.deletes.iter();
        it.advance_to(from);
        it
    }

    /// Blocks holding deleted data, ascending.
    pub fn with_deletes(&self) -> impl Iterator<Item = u64> + '_ {
        self.deletes.iter()
    }

    /// Replicas indexed, and the bytes the bitmaps take in their serialized form (close to their
    /// heap size: the same containers, without allocator slack).
    pub fn footprint(&self) -> (u64, u64) {
        let sets = self.by_dataserver.values().chain([&self.needs_copy, &self.surplus, &self.deletes]);
        let replicas = self.by_dataserver.values().map(|s| s.len()).sum();
        (replicas, sets.map(|s| s.serialized_size() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10M blocks, 2 replicas each spread over 30 dataservers as placement does (every pair), as
    /// in bench/leave.sh. Run with `--ignored --nocapture` to print the figure.
    #[test]
    #[ignore = "builds 10M blocks; a measurement, not a check"]
    fn memory_per_replica() {
        let mut blocks = Blocks::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for id in 1..=10_000_000u64 {
            let a = rng.u32(1..=30);
            let b = (a + rng.u32(1..30) - 1) % 30 + 1;
            blocks.insert(id, BlockMeta::new(&[a, b]).unwrap());
        }
        let t = std::time::Instant::now();
        let ix = Index::of(&blocks);
        let (replicas, bytes) = ix.footprint();
        println!(
            "index of {} blocks: {replicas} replicas in {bytes} bytes = {:.2} bytes a replica (built in {:?})",
            blocks.len(),
            bytes as f64 / replicas as f64,
            t.elapsed()
        );
        assert!(bytes < replicas * 4);
    }
}
