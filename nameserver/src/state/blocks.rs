//! The block table, kept in copy-on-write chunks so that a snapshot of it costs one reference
//! count per chunk, not a copy of every block.
//!
//! Block ids are handed out densely, so the table is cut by id into chunks of [`SLOTS`] slots:
//! a chunk is an array indexed by the id's low bits (48 bytes a block, no key, no tree node), and
//! the chunks sit in a map behind `Arc`s. A writer changes a chunk through `Arc::make_mut`, which
//! copies it only while a snapshot still shares it (48 KiB at most); a snapshot ([`Clone`]) clones
//! the map of `Arc`s, about 10,000 of them for 10M blocks.
//!
//! Invariant (a snapshot is the state at exactly its seq): a chunk shared by two tables is never
//! changed in place, so a clone keeps the blocks as they were when it was taken, whatever the
//! writer does after.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::BlockMeta;

/// Slots a chunk: ids `k * SLOTS .. (k + 1) * SLOTS` share chunk `k`.
const SHIFT: u32 = 10;
const SLOTS: usize = 1 << SHIFT;
const WORDS: usize = SLOTS / 64;

#[derive(Clone)]
struct Chunk {
    /// Which slots hold a block.
    present: [u64; WORDS],
    len: u16,
    /// Grown up to the highest slot in use: dense allocation fills a chunk from its start.
    slots: Vec<BlockMeta>,
}

impl Chunk {
    fn new() -> Self {
        Chunk { present: [0; WORDS], len: 0, slots: Vec::new() }
    }

    fn has(&self, slot: usize) -> bool {
        self.present[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn get(&self, slot: usize) -> Option<&BlockMeta> {
        self.has(slot).then(|| &self.slots[slot])
    }

    fn get_mut(&mut self, slot: usize) -> Option<&mut BlockMeta> {
        if self.has(slot) { Some(&mut self.slots[slot]) } else { None }
    }

    fn insert(&mut self, slot: usize, b: BlockMeta) -> Option<BlockMeta> {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, BlockMeta::default());
        }
        let old = self.get(slot).copied();
        if old.is_none() {
            self.present[slot / 64] |= 1 << (slot % 64);
            self.len += 1;
        }
        self.slots[slot] = b;
        old
    }

    fn remove(&mut self, slot: usize) -> Option<BlockMeta> {
        let old = self.get(slot).copied()?;
        self.present[slot / 64] &= !(1 << (slot % 64));
        self.len -= 1;
        Some(old)
    }

    /// Occupied slots from `from` on, in order.
    fn iter_from(&self, from: usize) -> impl Iterator<Item = (usize, &BlockMeta)> {
        (from..self.slots.len()).filter(|&s| self.has(s)).map(|s| (s, &self.slots[s]))
    }
}

fn split(id: u64) -> (u64, usize) {
    (id >> SHIFT, (id as usize) & (SLOTS - 1))
}

fn join(key: u64, slot: usize) -> u64 {
    (key << SHIFT) | slot as u64
}

/// The blocks by id. `clone` is the snapshot: O(chunks), sharing every block with the original.
#[derive(Clone, Default)]
pub struct Blocks {
    chunks: BTreeMap<u64, Arc<Chunk>>,
    len: usize,
}

impl Blocks {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &u64) -> Option<&BlockMeta> {
        let (key, slot) = split(*id);
        self.chunks.get(&key)?.get(slot)
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    /// The block to change; its chunk is copied first if a snapshot shares it.
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut BlockMeta> {
        let (key, slot) = split(*id);
        let chunk = self.chunks.get_mut(&key)?;
        if !chunk.has(slot) {
            return None;
        }
        Arc::make_mut(chunk).get_mut(slot)
    }

    pub fn insert(&mut self, id: u64, b: BlockMeta) -> Option<BlockMeta> {
        let (key, slot) = split(id);
        let old = Arc::make_mut(self.chunks.entry(key).or_insert_with(|| Arc::new(Chunk::new()))).insert(slot, b);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: &u64) -> Option<BlockMeta> {
        let (key, slot) = split(*id);
        let chunk = self.chunks.get_mut(&key)?;
        if !chunk.has(slot) {
            return None;
        }
        let chunk = Arc::make_mut(chunk);
        let old = chunk.remove(slot);
        if chunk.len == 0 {
            self.chunks.remove(&key);
        }
        self.len -= 1;
        old
    }

    /// Changes the blocks `ids` (ascending) names, looking each chunk up once for all its ids; an
    /// id with no block is skipped.
    pub fn update_sorted(&mut self, ids: impl IntoIterator<Item = u64>, mut f: impl FnMut(u64, &mut BlockMeta)) {
        let mut cur: Option<(u64, &mut Chunk)> = None;
        for id in ids {
            let (key, slot) = split(id);
            if cur.as_ref().is_none_or(|(k, _)| *k != key) {
                cur = self.chunks.get_mut(&key).map(|c| (key, Arc::make_mut(c)));
            }
            if let Some((_, chunk)) = cur.as_mut()
                && let Some(b) = chunk.get_mut(slot)
            {
                f(id, b);
            }
        }
    }

    /// Every block, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &BlockMeta)> {
        self.range_from(0)
    }

    /// The blocks with an id of `from` or more, by ascending id.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (u64, &BlockMeta)> {
        let (first, first_slot) = split(from);
        self.chunks.range(first..).flat_map(move |(&key, c)| {
            let start = if key == first { first_slot } else { 0 };
            c.iter_from(start).map(move |(slot, b)| (join(key, slot), b))
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(id, _)| id)
    }

    /// Chunks `self` and `other` share (not copied since one was cloned from the other).
    #[cfg(test)]
    pub(crate) fn shared_chunks(&self, other: &Blocks) -> usize {
        self.chunks.iter().filter(|(k, c)| other.chunks.get(k).is_some_and(|o| Arc::ptr_eq(c, o))).count()
    }
}

impl std::ops::Index<&u64> for Blocks {
    type Output = BlockMeta;

    fn index(&self, id: &u64) -> &BlockMeta {
        self.get(id).unwrap_or_else(|| panic!("no block {id}"))
    }
}

impl PartialEq for Blocks {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Blocks {}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(u64, BlockMeta)> for Blocks {
    fn from_iter<I: IntoIterator<Item = (u64, BlockMeta)>>(iter: I) -> Self {
        let mut b = Blocks::default();
        for (id, m) in iter {
            b.insert(id, m);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(v: u32) -> BlockMeta {
        let mut b = BlockMeta::new(&[1, 2]).unwrap();
        b.version = v;
        b
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Change(u64, u32),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Ids around chunk edges and far apart, so ops cross chunks and leave some empty.
        let id = prop_oneof![0u64..3000, Just(u64::MAX - 1), (0u64..4).prop_map(|k| (k << SHIFT) + 1023)];
        prop_oneof![
            (id.clone(), any::<u32>()).prop_map(|(i, v)| Op::Insert(i, v)),
            id.clone().prop_map(Op::Remove),
            (id, any::<u32>()).prop_map(|(i, v)| Op::Change(i, v)),
            Just(Op::Snapshot),
        ]
    }

    proptest! {
        /// The table behaves as an ordered map, and every snapshot keeps what it saw.
        #[test]
        fn behaves_as_a_map_and_snapshots_keep_their_view(ops in proptest::collection::vec(op(), 1..300)) {
            let mut b = Blocks::default();
            let mut model = BTreeMap::new();
            let mut snaps: Vec<(Blocks, BTreeMap<u64, BlockMeta>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(id, v) => prop_assert_eq!(b.insert(id, meta(v)), model.insert(id, meta(v))),
                    Op::Remove(id) => prop_assert_eq!(b.remove(&id), model.remove(&id)),
                    Op::Change(id, v) => {
                        let got = b.get_mut(&id).map(|m| { m.version = v; });
                        let want = model.get_mut(&id).map(|m: &mut BlockMeta| { m.version = v; });
                        prop_assert_eq!(got, want);
                    }
                    Op::Snapshot => snaps.push((b.clone(), model.clone())),
                }
                prop_assert_eq!(b.len(), model.len());
            }
            let all: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(b.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(), all);
            for from in [0, 5, 1023, 1024, 2500, u64::MAX - 1, u64::MAX] {
                let want: Vec<_> = model.range(from..).map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(b.range_from(from).map(|(k, v)| (k, *v)).collect::<Vec<_>>(), want);
            }
            for (snap, seen) in snaps {
                prop_assert_eq!(snap.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(),
                    seen.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn update_sorted_changes_the_named_blocks_only() {
        let mut b: Blocks = (1..5000).map(|i| (i, meta(0))).collect();
        let snap = b.clone();
        b.update_sorted([3, 1500, 1501, 4999, 7000], |id, m| m.version = id as u32);
        assert_eq!(
            b.iter().filter(|(_, m)| m.version != 0).map(|(id, _)| id).collect::<Vec<_>>(),
            [3, 1500, 1501, 4999]
        );
        assert!(snap.iter().all(|(_, m)| m.version == 0), "the snapshot kept its view");
    }
}
