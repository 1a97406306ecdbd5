//! Expiry on the observer's own clock: when a Lease last changed as this process saw it, and the
//! sightings a standby hands to its controller when it leads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::runtime::watcher;

/// Tracks when a Lease last changed, on this process's monotonic clock.
#[derive(Debug, Default, Clone)]
pub struct LeaseClock {
    seen: Option<(String, Instant)>,
}

impl LeaseClock {
    /// A clock that first saw `resource_version` at `since` (a sighting made while standing by).
    pub fn seen(resource_version: &str, since: Instant) -> Self {
        LeaseClock { seen: Some((resource_version.to_string(), since)) }
    }

    /// The version last seen, and since when (on this process's clock).
    pub fn sighting(&self) -> Option<(&str, Instant)> {
        self.seen.as_ref().map(|(rv, since)| (rv.as_str(), *since))
    }

    /// Records an observation; returns how long the Lease has been unchanged as far as we know.
    /// A process that just started has seen no change yet: it waits a full duration.
    pub fn observe(&mut self, resource_version: &str, now: Instant) -> Duration {
        match &self.seen {
            Some((rv, since)) if rv == resource_version => now.saturating_duration_since(*since),
            _ => {
                self.seen = Some((resource_version.to_string(), now));
                Duration::ZERO
            }
        }
    }
}

/// What a standby operator saw of the heartbeat Leases before it led: per Lease
/// (`namespace/name`), its version and the instant this process first saw that version, on its own
/// monotonic clock — exactly what the controller's [`LeaseClock`] records, and handed to it when
/// this process becomes leader, so that a Lease the standby watched go silent is not judged from
/// zero again.
///
/// Invariant (a sighting never promotes early): a sighting says only "version V, unchanged since my
/// instant T". T is no earlier than the write that made V (the watch shows a version after it was
/// written), so the holder's renew that made V started before T and its nameserver's validity ends
/// before T + renewDeadline < T + lease duration. A Lease renewed meanwhile has another version,
/// and a clock meeting another version starts again from zero: a stale sighting can only make the
/// new leader wait longer, never promote earlier. A watch that fails or lists again may have
/// missed changes: every sighting is then dropped and made again from what the new list shows —
/// reset, never extended.
#[derive(Debug, Default, Clone)]
pub struct Sightings {
    clocks: HashMap<String, LeaseClock>,
}

impl Sightings {
    /// The key of a Lease (and of the controller's clock for it).
    pub fn key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }

    /// A Lease as watched at `now`: the same version keeps its first instant, another starts anew.
    pub fn saw(&mut self, l: &Lease, now: Instant) {
        let rv = l.metadata.resource_version.as_deref().unwrap_or_default();
        let key = Sightings::key(&l.namespace().unwrap_or_default(), &l.name_any());
        self.clocks.entry(key).or_default().observe(rv, now);
    }

    /// Applies one event of the watch at `now` (an error: the watch failed and restarts).
    pub fn apply(&mut self, ev: &Result<watcher::Event<Lease>, watcher::Error>, now: Instant) {
        match ev {
            // A (re)list begins, or the watch failed: what we saw may have gaps.
            Ok(watcher::Event::Init) | Err(_) => self.clocks.clear(),
            Ok(watcher::Event::InitApply(l) | watcher::Event::Apply(l)) => self.saw(l, now),
            Ok(watcher::Event::Delete(l)) => {
                self.clocks.remove(&Sightings::key(&l.namespace().unwrap_or_default(), &l.name_any()));
            }
            Ok(watcher::Event::InitDone) => {}
        }
    }

    /// How many Leases are being watched.
    pub fn len(&self) -> usize {
        self.clocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clocks.is_empty()
    }

    /// The controller's clocks, seeded with these sightings (keyed as [`Sightings::key`]).
    pub fn into_clocks(self) -> HashMap<String, LeaseClock> {
        self.clocks
    }
}
