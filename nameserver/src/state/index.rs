//! Derived views of the block table that let a leave and replication planning work on the blocks
//! they concern instead of scanning every block: the blocks each dataserver holds a replica of,
//! and the blocks that need a copy.
//!
//! Neither is logged nor in a snapshot: both are a function of the blocks, kept up to date by
//! [`super::State`] on every change of a block's replicas, and rebuilt when a snapshot is loaded.
//! Ids are allocated densely, so a compressed bitmap ([`RoaringTreemap`]) holds them in about two
//! bytes per replica (measured in `memory_per_replica`).
//!
//! Invariant: `by_dataserver[d]` is exactly the set of blocks whose replica list names `d`, and
//! `needs_copy` exactly the blocks with at least one replica and fewer than they want
//! ([`BlockMeta::needs_copy`]): what [`Index::of`] derives by a full scan.

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
        match (old.is_some_and(BlockMeta::needs_copy), new.is_some_and(BlockMeta::needs_copy)) {
            (false, true) => {
                self.needs_copy.insert(id);
            }
            (true, false) => {
                self.needs_copy.remove(id);
            }
            _ => {}
        }
    }

    /// Removes dataserver `ds` from the index and returns the blocks it held. The caller takes
    /// the replica off each of them and reports their new state with [`Index::after_leave`].
    pub fn take_dataserver(&mut self, ds: u32) -> RoaringTreemap {
        self.by_dataserver.remove(&ds).unwrap_or_default()
    }

    /// Of the blocks a departed dataserver `held`, exactly `now_need_copy` need a copy.
    pub fn after_leave(&mut self, held: &RoaringTreemap, now_need_copy: RoaringTreemap) {
        self.needs_copy -= held;
        self.needs_copy |= now_need_copy;
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

    /// Replicas indexed, and the bytes the bitmaps take in their serialized form (close to their
    /// heap size: the same containers, without allocator slack).
    pub fn footprint(&self) -> (u64, u64) {
        let sets = self.by_dataserver.values().chain([&self.needs_copy]);
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
