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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::ReplicationMode;

pub struct Commit {
    durable: AtomicU64,
    committed: watch::Sender<u64>,
    inner: Mutex<Inner>,
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
}

impl Commit {
    pub fn new(durable: u64, mode: ReplicationMode) -> Self {
        // Whatever was durable at start was committed before the restart or is about to be
        // re-replicated; as a standalone/master with an empty sync set it is committed.
        Commit {
            durable: AtomicU64::new(durable),
            committed: watch::Sender::new(durable),
            inner: Mutex::new(Inner {
                mode,
                sync_set: BTreeMap::new(),
                pending: BTreeMap::new(),
                version: 0,
                published: 0,
                publish_removals: false,
            }),
        }
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn mode(&self) -> ReplicationMode {
        self.inner.lock().mode
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    pub fn set_durable(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::AcqRel);
        self.recompute();
    }

    /// Resets after a snapshot install or log reset on a slave (seqs may move backwards there).
    pub fn reset(&self, seq: u64) {
        self.durable.store(seq, Ordering::Release);
        self.committed.send_replace(seq);
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

    pub fn add_to_sync_set(&self, node: &str, acked: u64) {
        let mut g = self.inner.lock();
        g.pending.remove(node);
        g.sync_set.insert(node.to_string(), acked);
        g.version += 1;
        drop(g);
        self.recompute();
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
        g.pending.retain(|_, (_, v)| *v > p);
        drop(g);
        self.recompute();
    }

    pub fn sync_set(&self) -> Vec<(String, u64)> {
        self.inner.lock().sync_set.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn sync_set_version(&self) -> u64 {
        self.inner.lock().version
    }

    pub fn pending_removals(&self) -> Vec<String> {
        self.inner.lock().pending.keys().cloned().collect()
    }

    pub fn in_sync_set(&self, node: &str) -> bool {
        self.inner.lock().sync_set.contains_key(node)
    }

    fn recompute(&self) {
        let durable = self.durable();
        let g = self.inner.lock();
        let floor = match g.mode {
            ReplicationMode::Sync => {
                g.sync_set.values().chain(g.pending.values().map(|(a, _)| a)).copied().fold(durable, u64::min)
            }
            ReplicationMode::Async => durable,
        };
        drop(g);
        self.committed.send_if_modified(|c| {
            if floor > *c {
                *c = floor;
                true
            } else {
                false
            }
        });
    }

    /// Resolves once `seq` is committed.
    pub async fn wait(&self, seq: u64) {
        if self.committed() >= seq {
            return;
        }
        let mut rx = self.committed.subscribe();
        // The sender lives as long as self, so wait_for cannot fail while we borrow self.
        let _ = rx.wait_for(|c| *c >= seq).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_set_holds_commit_back() {
        let c = Commit::new(0, ReplicationMode::Sync);
        c.add_to_sync_set("b", 0);
        c.set_durable(10);
        assert_eq!(c.committed(), 0);
        c.ack("b", 7);
        assert_eq!(c.committed(), 7);
        c.ack("stranger", 10);
        assert_eq!(c.committed(), 7);
        c.ack("b", 12);
        assert_eq!(c.committed(), 10, "never beyond the local durable seq");
        c.remove_from_sync_set("b");
        c.set_durable(15);
        assert_eq!(c.committed(), 15);
    }

    #[test]
    fn removal_holds_commits_back_until_published() {
        let c = Commit::new(0, ReplicationMode::Sync);
        c.set_publish_removals(true);
        c.add_to_sync_set("b", 0);
        c.set_durable(10);
        c.ack("b", 4);
        c.remove_from_sync_set("b");
        assert!(c.sync_set().is_empty());
        assert_eq!(c.pending_removals(), vec!["b".to_string()]);
        c.set_durable(20);
        assert_eq!(c.committed(), 4, "an unpublished removal still holds commits back");
        c.published(c.sync_set_version() - 1);
        assert_eq!(c.committed(), 4, "publishing an older version is not enough");
        c.published(c.sync_set_version());
        assert_eq!(c.committed(), 20);
        assert!(c.pending_removals().is_empty());
        // Rejoining cancels a pending removal.
        c.add_to_sync_set("b", 20);
        c.remove_from_sync_set("b");
        c.add_to_sync_set("b", 20);
        assert!(c.pending_removals().is_empty());
    }

    #[test]
    fn async_mode_ignores_slaves_and_commit_never_decreases() {
        let c = Commit::new(5, ReplicationMode::Async);
        c.add_to_sync_set("b", 0);
        c.set_durable(9);
        assert_eq!(c.committed(), 9);
        c.set_durable(3);
        assert_eq!(c.committed(), 9);
    }
}
