//! Reading the heartbeat Lease, and judging its expiry the way client-go does: on the observer's
//! own clock, from when it last saw the Lease change, never from renewTime against wall time
//! (clocks of different machines disagree; elapsed time on one clock does not).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

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
