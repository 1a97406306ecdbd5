//! The settings a TfsNameserver's processes run with, and how a change reaches them safely.
//!
//! A pod's processes read these settings once, from environment values written into the pod's own
//! spec (not from the ConfigMap, which a restarted container would re-read with newer values), and
//! the pod records them in an annotation: what a pod's annotation says is what its heart and
//! nameserver use. A change in the resource makes pods outdated; they are rolled like an image
//! upgrade (slaves first, then a switchover). Until every pod runs the new settings, the operator
//! judges with the most conservative of all running settings.
//!
//! Invariant: the operator never declares a Lease expired sooner than any running heart may still
//! extend its master's validity (the longest lease duration of any running pod, each pod's being
//! above its own renew deadline), and it applies the sync-mode promotion rule while any running
//! nameserver acknowledges writes in sync mode.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::crd::{ReplicationMode, TfsNameserver};

/// Pod annotation holding the settings its processes were started with.
pub const ANN_SETTINGS: &str = "tfs.io/settings";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub mode: ReplicationMode,
    pub block_replicas: i32,
    pub lease_duration_seconds: i32,
    pub renew_deadline_seconds: i32,
    pub retry_period_seconds: i32,
}

impl Settings {
    pub fn of(t: &TfsNameserver) -> Self {
        let s = &t.spec;
        Settings {
            mode: s.replication.mode,
            block_replicas: s.block_replicas,
            lease_duration_seconds: s.lease.duration_seconds,
            renew_deadline_seconds: s.lease.renew_deadline_seconds,
            retry_period_seconds: s.lease.retry_period_seconds,
        }
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            ReplicationMode::Sync => "sync",
            ReplicationMode::Async => "async",
        }
    }

    /// The environment of a pod's containers (the nameserver and the heart read these names).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TFS_REPLICATION_MODE", self.mode_name().to_string()),
            ("TFS_BLOCK_REPLICAS", self.block_replicas.to_string()),
            ("TFS_LEASE_DURATION_SECONDS", self.lease_duration_seconds.to_string()),
            ("TFS_RENEW_DEADLINE_SECONDS", self.renew_deadline_seconds.to_string()),
            ("TFS_RETRY_PERIOD_SECONDS", self.retry_period_seconds.to_string()),
        ]
    }

    /// The annotation's text: `mode=sync,blockReplicas=2,lease=5/3/1`.
    pub fn encode(&self) -> String {
        format!(
            "mode={},blockReplicas={},lease={}/{}/{}",
            self.mode_name(),
            self.block_replicas,
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds
        )
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut mode = None;
        let (mut replicas, mut lease) = (None, None);
        for part in s.split(',') {
            match part.split_once('=')? {
                ("mode", "sync") => mode = Some(ReplicationMode::Sync),
                ("mode", "async") => mode = Some(ReplicationMode::Async),
                ("blockReplicas", v) => replicas = v.parse().ok(),
                ("lease", v) => {
                    let mut it = v.split('/').map(|x| x.parse::<i32>().ok());
                    lease = Some((it.next()??, it.next()??, it.next()??));
                }
                _ => return None,
            }
        }
        let (d, r, p) = lease?;
        Some(Settings {
            mode: mode?,
            block_replicas: replicas?,
            lease_duration_seconds: d,
            renew_deadline_seconds: r,
            retry_period_seconds: p,
        })
    }

    /// What a pod says it runs with; None for a pod that does not say (made before settings were
    /// recorded), which is treated as outdated.
    pub fn of_pod(p: &Pod) -> Option<Self> {
        Self::decode(p.metadata.annotations.as_ref()?.get(ANN_SETTINGS)?)
    }
}

/// How the operator judges while settings roll out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The longest lease duration any running pod or the resource uses.
    pub lease_duration: Duration,
    /// Sync if the resource or any running pod says sync.
    pub mode: ReplicationMode,
    /// Pods running the resource's current settings, of all pods.
    pub current: usize,
    pub total: usize,
}

/// The most conservative judgement over the resource's settings and those of running `pods`.
pub fn judgement(want: &Settings, pods: &[Option<Settings>]) -> Judgement {
    let all = pods.iter().flatten().chain(std::iter::once(want));
    let longest = all.clone().map(|s| s.lease_duration_seconds).max().unwrap_or(want.lease_duration_seconds);
    let sync = all.clone().any(|s| s.mode == ReplicationMode::Sync);
    Judgement {
        lease_duration: Duration::from_secs(longest.max(1) as u64),
        mode: if sync { ReplicationMode::Sync } else { ReplicationMode::Async },
        current: pods.iter().filter(|p| p.as_ref() == Some(want)).count(),
        total: pods.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mode: ReplicationMode, d: i32, r: i32) -> Settings {
        Settings {
            mode,
            block_replicas: 2,
            lease_duration_seconds: d,
            renew_deadline_seconds: r,
            retry_period_seconds: 1,
        }
    }

    #[test]
    fn the_annotation_round_trips_and_garbage_is_refused() {
        let x = s(ReplicationMode::Async, 7, 4);
        assert_eq!(Settings::decode(&x.encode()), Some(x));
        assert_eq!(x.encode(), "mode=async,blockReplicas=2,lease=7/4/1");
        for bad in ["", "mode=sync", "mode=fast,blockReplicas=2,lease=5/3/1", "mode=sync,blockReplicas=2,lease=5/3"] {
            assert_eq!(Settings::decode(bad), None, "{bad:?}");
        }
    }

    /// Shortening the lease (5s/3s → 2s/1s): while any heart may still grant 3 s of validity, the
    /// operator waits the old 5 s before declaring expiry; once every pod runs 2s/1s, 2 s.
    #[test]
    fn judging_uses_the_longest_lease_and_sync_while_any_pod_runs_it() {
        let want = s(ReplicationMode::Async, 2, 1);
        let old = s(ReplicationMode::Sync, 5, 3);
        let j = judgement(&want, &[Some(old), Some(want)]);
        assert_eq!(
            (j.lease_duration, j.mode, j.current, j.total),
            (Duration::from_secs(5), ReplicationMode::Sync, 1, 2)
        );
        let j = judgement(&want, &[Some(want), Some(want)]);
        assert_eq!((j.lease_duration, j.mode, j.current), (Duration::from_secs(2), ReplicationMode::Async, 2));
        // Lengthening takes effect at once: the resource's own value is always included.
        let j = judgement(&s(ReplicationMode::Sync, 9, 5), &[Some(old)]);
        assert_eq!(j.lease_duration, Duration::from_secs(9));
        // A pod that does not say what it runs is outdated, and judged by the resource's value.
        let j = judgement(&want, &[None, Some(want)]);
        assert_eq!((j.current, j.total), (1, 2));
    }
}
