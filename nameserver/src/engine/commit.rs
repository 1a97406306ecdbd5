//! The commit rule. A seq is committed when it is durable on this node and, in sync mode, acked
//! as durable by every slave in the sync set. Only committed records are acknowledged to clients
//! or shown to readers.
//!
//! Invariants:
//! - `committed` never decreases and never exceeds `durable`;
//! - in sync mode, while a slave is in the sync set, nothing beyond its acked seq is committed;
//! - a removed slave keeps holding commits back until the removal is *published* where promotions
//!   are decided (with `publish_removals`, the heart writes the set on the Lease and reports the
//!   version it wrote). So every slave in the last published sync set holds every acknowledged
//!   write: whoever promotes one of them loses nothing.
//! - a waiter for seq s is released only once `committed` >= s, and exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::config::ReplicationMode;

/// A registered wait: its id (to take it out if given up) and how to wake it.
type Waiter = (u64, oneshot::Sender<()>);

/// One consistent reading of the sync set, for publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSetView {
    pub members: Vec<String>,
    pub version: u64,
    pub pending: Vec<String>,
}

pub struct Commit {
    durable: AtomicU64,
    committed: AtomicU64,
    inner: Mutex<Inner>,
    /// Requests waiting for their seq to commit, by seq. Each advance releases just the waiters it
    /// satisfies, once each (a broadcast would wake every in-flight request on every advance).
    waiters: Mutex<BTreeMap<u64, Vec<Waiter>>>,
    next_waiter: AtomicU64,
}

struct Inner {
    mode: ReplicationMode,
    /// Sync set: slave node name → highest seq it acked as durable.
    sync_set: BTreeMap<String, u64>,
    /// Removed from the sync set at version v, not yet published: still waited for.
    pending: BTreeMap<String, (u64, u64)>,
    version: u64,
    published: u64,
    publish_removals: bool,
    /// Incarnation of each member and pending removal: only that process may resume the place.
    incarnations: BTreeMap<String, u64>,
}

impl Commit {
    pub fn new(durable: u64, mode: ReplicationMode) -> Self {
        // Whatever was durable at start was committed before the restart or is about to be
        // re-replicated; as a standalone/master with an empty sync set it is committed.
        Commit {
            durable: AtomicU64::new(durable),
            committed: AtomicU64::new(durable),
            waiters: Mutex::new(BTreeMap::new()),
            next_waiter: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                mode,
                sync_set: BTreeMap::new(),
                pending: BTreeMap::new(),
                version: 0,
                published: 0,
                publish_removals: false,
                incarnations: BTreeMap::new(),
            }),
        }
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub fn mode(&self) -> ReplicationMode {
        self.inner.lock().mode
    }

    pub fn set_durable(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::AcqRel);
        self.recompute();
    }

    /// Resets after a snapshot install or log reset on a slave (seqs may move backwards there).
    pub fn reset(&self, seq: u64) {
        self.durable.store(seq, Ordering::Release);
        self.committed.store(seq, Ordering::Release);
        self.release(seq);
    }

    /// Whether removals wait for publication (on when a heart publishes the set on a Lease).
    pub fn set_publish_removals(&self, on: bool) {
        self.inner.lock().publish_removals = on;
        self.recompute();
    }

    /// Records a slave's durable ack; it counts only if the slave is (or is still held) in the set.
    pub fn ack(&self, node: &str, seq: u64) {
        let mut g = self.inner.lock();
        let mut changed = false;
        if let Some(a) = g.sync_set.get_mut(node) {
            *a = (*a).max(seq);
            changed = true;
        }
        if let Some((a, _)) = g.pending.get_mut(node) {
            *a = (*a).max(seq);
            changed = true;
        }
        drop(g);
        if changed {
            self.recompute();
        }
    }

    /// Takes a slave out of the sync set. It still holds commits back until the removal is
    /// published (see the module invariant), unless publication is not required.
    pub fn remove_from_sync_set(&self, node: &str) {
        let mut g = self.inner.lock();
        if let Some(acked) = g.sync_set.remove(node) {
            g.version += 1;
            if g.publish_removals {
                let v = g.version;
                g.pending.insert(node.to_string(), (acked, v));
            } else {
                g.incarnations.remove(node);
            }
        }
        drop(g);
        self.recompute();
    }

    /// The sync set of `version` was published: removals up to it take effect.
    pub fn published(&self, version: u64) {
        let mut g = self.inner.lock();
        g.published = g.published.max(version.min(g.version));
        let p = g.published;
        let released: Vec<String> = g.pending.iter().filter(|(_, (_, v))| *v <= p).map(|(n, _)| n.clone()).collect();
        for n in released {
            g.pending.remove(&n);
            g.incarnations.remove(&n);
        }
        drop(g);
        self.recompute();
    }

    /// Adds a slave to the sync set if it acked everything already committed; returns whether it
    /// joined just now (false: not caught up, or a member already).
    ///
    /// Invariant: the check and the insert are one step under `inner`, the lock under which
    /// `committed` is raised (see `recompute`): no commit can pass `acked` between them, so a member
    /// always holds every committed seq.
    pub fn join_if_caught_up(&self, node: &str, acked: u64, incarnation: u64) -> bool {
        let mut g = self.inner.lock();
        if g.sync_set.contains_key(node) || acked < self.committed() {
            return false;
        }
        g.pending.remove(node);
        g.sync_set.insert(node.to_string(), acked);
        g.incarnations.insert(node.to_string(), incarnation);
        g.version += 1;
        true
    }

    /// The incarnation whose acks count for `node` (a member, or a removal not yet published).
    pub fn counted_incarnation(&self, node: &str) -> Option<u64> {
        let g = self.inner.lock();
        (g.sync_set.contains_key(node) || g.pending.contains_key(node))
            .then(|| g.incarnations.get(node).copied())
            .flatten()
    }

    /// The sync set as it is published: members, the version they are at, removals pending.
    ///
    /// Invariant: read under one lock, so the members are exactly the set of that version. The heart
    /// writes the members on the Lease and reports the version back ([`Commit::published`]), which
    /// releases pending removals up to it: a version newer than its members would release a slave
    /// that the Lease still lists as promotable.
    pub fn view(&self) -> SyncSetView {
        let g = self.inner.lock();
        SyncSetView {
            members: g.sync_set.keys().cloned().collect(),
            version: g.version,
            pending: g.pending.keys().cloned().collect(),
        }
    }

    pub fn sync_set(&self) -> Vec<(String, u64)> {
        self.inner.lock().sync_set.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn in_sync_set(&self, node: &str) -> bool {
        self.inner.lock().sync_set.contains_key(node)
    }

    /// Raises `committed` to what the set allows. The raise happens under `inner`, so that a
    /// membership change (a join) sees either the raised value or is counted in the floor.
    fn recompute(&self) {
        let durable = self.durable();
        let raised = {
            let g = self.inner.lock();
            let floor = match g.mode {
                ReplicationMode::Sync => {
                    g.sync_set.values().chain(g.pending.values().map(|(a, _)| a)).copied().fold(durable, u64::min)
                }
                ReplicationMode::Async => durable,
            };
            self.committed.fetch_max(floor, Ordering::AcqRel) < floor
        }
        .then(|| self.committed());
        if let Some(upto) = raised {
            self.release(upto);
        }
    }

    /// Wakes the waiters of every seq <= `upto`. Called after `committed` was raised to `upto`.
    fn release(&self, upto: u64) {
        let ready = {
            let mut w = self.waiters.lock();
            match upto.checked_add(1) {
                Some(next) => {
                    let later = w.split_off(&next);
                    std::mem::replace(&mut *w, later)
                }
                None => std::mem::take(&mut *w),
            }
        };
        for (_, tx) in ready.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// Wakes every waiter, committed or not: they look at the role again (the engine's fence, when
    /// this node stops being a writable master).
    pub fn release_all(&self) {
        self.release(u64::MAX);
    }

    /// Resolves once `seq` is committed, or [`Commit::release_all`] is called.
    ///
    /// Invariant: no waiter outlives its request. A wait given up (a timeout, a client gone, a read
    /// past its master's validity) takes its entry out when dropped, so a node whose tail never
    /// commits (a deposed master) does not accumulate one per request.
    pub async fn wait(&self, seq: u64) {
        let (rx, id) = {
            let mut w = self.waiters.lock();
            // Checked under the waiters' lock: an advance stores `committed` before it takes this
            // lock to release waiters, so a new waiter either sees the advance here or is released
            // by it — never missed.
            if self.committed() >= seq {
                return;
            }
            let (tx, rx) = oneshot::channel();
            let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
            w.entry(seq).or_default().push((id, tx));
            (rx, id)
        };
        let mut entry = WaiterEntry { commit: self, seq, id, released: false };
        // Dropped unsent only with the Commit itself (the engine is gone): return, the caller
        // re-checks its role before acknowledging anything.
        let _ = rx.await;
        entry.released = true; // `release` took it out already
    }

    /// Requests waiting for a seq to commit.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().values().map(Vec::len).sum()
    }
}

/// A registered wait; takes its entry out of the waiters if the wait is given up.
struct WaiterEntry<'a> {
    commit: &'a Commit,
    seq: u64,
    id: u64,
    released: bool,
}

impl Drop for WaiterEntry<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let mut w = self.commit.waiters.lock();
        if let Some(v) = w.get_mut(&self.seq) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                w.remove(&self.seq);
            }
        }
    }
}

#[cfg(test)]
mod tests;
