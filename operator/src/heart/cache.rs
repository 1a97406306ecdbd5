//! Knowing the Lease without reading it at every step: the watch, the heart's own writes, reads.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher;

/// A Lease known from the watch is read again when nothing (event, write, read) confirmed it for
/// this long: a watch that stalls without failing costs at most this much, never correctness.
const RESYNC: Duration = Duration::from_secs(2);

/// The heart's Lease as its watch, its own last write or its last read showed it.
///
/// Used only while the watch is up and something confirmed it within [`RESYNC`]; otherwise the
/// step reads the Lease as it always did. What the heart decides on it is written conditioned on
/// its resourceVersion, so a stale entry only makes a write fail (then `forget`, read, decide again).
#[derive(Debug, Default)]
pub struct LeaseCache {
    lease: Option<Lease>,
    /// The objects of a (re)list in progress.
    listing: Option<Option<Lease>>,
    /// The watch is established and has not failed since.
    watching: bool,
    confirmed: Option<Instant>,
    /// The version our last write replaced: a watch that shows it later is behind that write.
    superseded: Option<String>,
}

impl LeaseCache {
    /// Applies one watch event at `now`; true when the Lease changed (or became known): the heart
    /// should look now.
    pub fn on_event(&mut self, ev: Result<watcher::Event<Lease>, watcher::Error>, now: Instant) -> bool {
        let lease = match ev {
            Ok(watcher::Event::Init) => {
                self.listing = Some(None);
                return false;
            }
            Ok(watcher::Event::InitApply(l)) => {
                self.listing = Some(Some(l));
                return false;
            }
            Ok(watcher::Event::InitDone) => self.listing.take().flatten(),
            Ok(watcher::Event::Apply(l)) => Some(l),
            Ok(watcher::Event::Delete(_)) => None,
            Err(_) => {
                *self = LeaseCache::default();
                return false;
            }
        };
        let behind =
            |l: &Lease| l.metadata.resource_version.is_some() && l.metadata.resource_version == self.superseded;
        if !lease.as_ref().is_some_and(behind) {
            self.lease = lease;
        }
        self.watching = true;
        self.confirmed = Some(now);
        true
    }

    /// The Lease to act on without reading it, if the watch vouches for it at `now`.
    pub fn current(&self, now: Instant) -> Option<&Lease> {
        let fresh = self.confirmed.is_some_and(|c| now.saturating_duration_since(c) < RESYNC);
        if self.watching && fresh { self.lease.as_ref() } else { None }
    }

    /// What a read returned at `now`.
    pub fn saw(&mut self, l: Lease, now: Instant) {
        self.lease = Some(l);
        self.confirmed = Some(now);
    }

    /// What our write, conditioned on version `replaced`, wrote at `now`: newer than anything
    /// watched so far, and than `replaced` if the watch shows it afterwards.
    pub fn wrote(&mut self, replaced: Option<String>, l: Lease, now: Instant) {
        self.superseded = replaced;
        self.saw(l, now);
    }

    /// A write conditioned on the Lease as known was refused (409): read it before acting again.
    pub fn forget(&mut self) {
        self.lease = None;
        self.confirmed = None;
    }
}

#[cfg(test)]
mod tests;
