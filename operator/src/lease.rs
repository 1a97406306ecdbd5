//! Reading the heartbeat Lease, and judging its expiry the way client-go does: on the observer's
//! own clock, from when it last saw the Lease change, never from renewTime against wall time
//! (clocks of different machines disagree; elapsed time on one clock does not).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::names;

/// What the operator and the heart need from a Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Empty when released.
    pub holder: String,
    /// The epoch: leaseTransitions.
    pub transitions: i32,
    pub resource_version: String,
    /// The master's sync set as its heart last published it.
    pub sync_set: Vec<String>,
    pub sync_set_version: u64,
    pub handover_to: Option<String>,
    /// A handover the master's heart refused, and why.
    pub handover_refused: Option<String>,
    pub release_reason: Option<String>,
    pub released_by: Option<String>,
}

impl LeaseView {
    pub fn of(l: &Lease) -> Self {
        let spec = l.spec.clone().unwrap_or_default();
        let ann = l.metadata.annotations.clone().unwrap_or_default();
        LeaseView {
            holder: spec.holder_identity.unwrap_or_default(),
            transitions: spec.lease_transitions.unwrap_or(0),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
            sync_set: ann.get(names::ANN_SYNC_SET).map(|s| split_set(s)).unwrap_or_default(),
            sync_set_version: ann.get(names::ANN_SYNC_SET_VERSION).and_then(|v| v.parse().ok()).unwrap_or(0),
            handover_to: ann.get(names::ANN_HANDOVER_TO).filter(|s| !s.is_empty()).cloned(),
            handover_refused: ann.get(names::ANN_HANDOVER_REFUSED).filter(|s| !s.is_empty()).cloned(),
            release_reason: ann.get(names::ANN_RELEASE_REASON).filter(|s| !s.is_empty()).cloned(),
            released_by: ann.get(names::ANN_RELEASED_BY).filter(|s| !s.is_empty()).cloned(),
        }
    }

    pub fn released(&self) -> bool {
        self.holder.is_empty()
    }
}

pub fn split_set(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_last_change_seen() {
        let t0 = Instant::now();
        let mut c = LeaseClock::default();
        assert_eq!(c.observe("1", t0), Duration::ZERO);
        assert_eq!(c.observe("1", t0 + Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(c.observe("2", t0 + Duration::from_secs(4)), Duration::ZERO, "a renew restarts the count");
        assert_eq!(c.observe("2", t0 + Duration::from_secs(10)), Duration::from_secs(6));
    }

    #[test]
    fn sets_parse_leniently() {
        assert_eq!(split_set(" a, b,,c "), vec!["a", "b", "c"]);
        assert!(split_set("").is_empty());
    }
}
