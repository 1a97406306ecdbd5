//! The failover decision, pure: given the Lease, how long it has been unchanged on the operator's
//! clock, and what each instance reports, who should be master.
//!
//! Invariant (no acknowledged write lost): in sync mode only a slave in the sync set the master
//! last *published* on the Lease, or the old master itself, may be promoted. A master stops
//! waiting for a slave only after publishing that the slave left the set, so every slave in the
//! published set holds every acknowledged write.
//!
//! Invariant (no split brain): a Lease is taken from a holder only when it released it (after
//! fencing its nameserver or seeing it dead) or when it has not changed for the full lease
//! duration; the holder's nameserver stops accepting writes renewDeadline (< duration) after the
//! start of its last successful renew.

use std::time::Duration;

use tfs_nameserver::epoch::Epoch;

use crate::crd::ReplicationMode;
use crate::instance::Instance;
use crate::lease::LeaseView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No master ever: the first one is chosen.
    Initial,
    /// The holder's heart released the Lease (its nameserver died or was fenced).
    Released { by: Option<String>, why: Option<String> },
    /// The holder stopped renewing.
    Expired { holder: String },
    /// The Lease's epoch is below what instances run at: it was deleted and recreated, or
    /// restored from an old copy, and its published sync set is lost with it.
    LeaseLost { lease_epoch: Epoch, highest: Epoch },
}

impl Reason {
    pub fn describe(&self) -> String {
        match self {
            Reason::Initial => "first master".into(),
            Reason::Released { by, why } => format!(
                "{} released the lease{}",
                by.as_deref().unwrap_or("the master"),
                why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            Reason::Expired { holder } => format!("{holder} stopped renewing the lease"),
            Reason::LeaseLost { lease_epoch, highest } => {
                format!(
                    "the lease is at epoch {lease_epoch} but instances run at epoch {highest} (deleted or restored)"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The holder is master; look again before its lease could expire.
    Steady { master: String, recheck: Duration },
    /// Hand the Lease to `pod` at `epoch`: above the Lease's and every instance's epoch.
    Promote { pod: String, reason: Reason, epoch: Epoch },
    /// A master is needed but no instance is safe to promote.
    Blocked { why: String, reason: Reason },
}

pub struct Input<'a> {
    pub lease: &'a LeaseView,
    pub unchanged_for: Duration,
    pub lease_duration: Duration,
    pub instances: &'a [Instance],
    pub mode: ReplicationMode,
    /// A restore from backup not done yet (bootstrap.fromBackup): the first master.
    pub restore: Option<RestoreFirst>,
}

/// While a restore is pending, only the restored instance may be made master — an empty one
/// would start a new history beside it — at an epoch above any its restored log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFirst {
    /// Instance 0's pod, whose volume the archive was restored into.
    pub pod: String,
    /// The highest epoch known to be in its log (from the restore's message, or from a refused
    /// promotion: "records of epoch N are already logged"); 0 when none is known.
    pub epoch_floor: u64,
}

/// Invariant (epochs only rise): a promotion's epoch is above the Lease's and above every epoch an
/// instance reports, so a Lease that lost its history (deleted, restored) never hands out an epoch
/// again; and such a Lease is no first election: only the instance still master at the highest
/// epoch is known to hold what it acknowledged (the published sync set is lost with the Lease).
pub fn decide(i: &Input<'_>) -> Decision {
    let l = i.lease;
    if !l.released() && i.unchanged_for < i.lease_duration {
        return Decision::Steady {
            master: l.holder.clone(),
            recheck: i.lease_duration - i.unchanged_for + Duration::from_millis(50),
        };
    }
    let highest =
        i.instances.iter().filter_map(|x| x.status.as_ref().map(|s| Epoch(s.epoch))).max().unwrap_or(Epoch::ZERO);
    let lease_epoch = l.epoch;
    // Invariant (epochs only rise): a new master's epoch is above the Lease's and every instance's.
    let epoch = lease_epoch.max(highest).next();
    let usable = |x: &&Instance| x.ready && x.status.is_some();
    if let Some(r) = &i.restore {
        return restore_first(i, r, highest.max(lease_epoch));
    }
    if lease_epoch < highest {
        let reason = Reason::LeaseLost { lease_epoch, highest };
        let master = |x: &&Instance| x.status.as_ref().is_some_and(|s| s.master && Epoch(s.epoch) == highest);
        let pick = match i.mode {
            ReplicationMode::Sync => i.instances.iter().filter(usable).find(master),
            ReplicationMode::Async => {
                i.instances.iter().filter(usable).max_by_key(|x| x.status.as_ref().map(|s| s.durable_seq))
            }
        };
        return match pick {
            Some(x) => Decision::Promote { pod: x.pod.clone(), reason, epoch },
            None => Decision::Blocked {
                why: format!(
                    "{}; the published sync set is lost with it and no ready instance reports being master at epoch \
                     {highest}: bring that instance back (or recreate the resource from a backup)",
                    reason.describe()
                ),
                reason,
            },
        };
    }
    let (reason, old) = if l.released() && l.epoch == Epoch::ZERO {
        (Reason::Initial, None)
    } else if l.released() {
        (Reason::Released { by: l.released_by.clone(), why: l.release_reason.clone() }, l.released_by.clone())
    } else {
        (Reason::Expired { holder: l.holder.clone() }, Some(l.holder.clone()))
    };
    let safe = |x: &&Instance| match (&reason, i.mode) {
        (Reason::Initial, _) | (_, ReplicationMode::Async) => true,
        (_, ReplicationMode::Sync) => l.sync_set.contains(&x.pod),
    };
    let best =
        i.instances.iter().filter(usable).filter(|x| Some(&x.pod) != old.as_ref()).filter(safe).max_by(|a, b| {
            let (da, db) = (a.status.as_ref().map(|s| s.durable_seq), b.status.as_ref().map(|s| s.durable_seq));
            da.cmp(&db).then(b.ordinal.cmp(&a.ordinal))
        });
    if let Some(b) = best {
        return Decision::Promote { pod: b.pod.clone(), reason, epoch };
    }
    // The old master holds everything it acknowledged: it is always safe to give it back.
    if let Some(o) = old.as_ref().and_then(|o| i.instances.iter().filter(usable).find(|x| &x.pod == o)) {
        return Decision::Promote { pod: o.pod.clone(), reason, epoch };
    }
    let why = match (&reason, i.mode) {
        (Reason::Initial, _) => "no instance is ready yet".to_string(),
        (_, ReplicationMode::Sync) => format!(
            "no ready instance is safe to promote: published sync set [{}], old master {} not ready ({})",
            l.sync_set.join(", "),
            old.as_deref().unwrap_or("unknown"),
            unusable(i.instances, l.sync_set.iter().chain(old.as_ref()))
        ),
        (_, ReplicationMode::Async) => "no ready instance".to_string(),
    };
    debug_assert!(!matches!(reason, Reason::LeaseLost { .. }), "handled above");
    Decision::Blocked { why, reason }
}

/// Why each of `pods` cannot be promoted now (its pod not Ready, its Status unanswered), so that
/// a blocked failover says what it waits for.
fn unusable<'a>(instances: &[Instance], pods: impl Iterator<Item = &'a String>) -> String {
    let why = |pod: &String| match instances.iter().find(|x| &x.pod == pod) {
        None => format!("{pod}: no pod"),
        Some(x) => match (x.ready, x.status.is_some()) {
            (false, false) => format!("{pod}: pod not Ready, Status unanswered"),
            (false, true) => format!("{pod}: pod not Ready"),
            (true, false) => format!("{pod}: Status unanswered"),
            (true, true) => format!("{pod}: usable"),
        },
    };
    pods.map(why).collect::<Vec<_>>().join("; ")
}

/// The first master of a restored resource: its restored instance alone, once it serves Status,
/// at an epoch above the Lease's, every instance's, and every epoch its log is known to hold.
/// Reason Initial (no history of this resource's own yet: no failover is counted).
/// Invariant (a restore is never lost to an empty instance): another instance promoted first would
/// start an empty history at a new epoch, and the restored instance would then follow it, dropping
/// what it restored; so nothing else may be promoted while the restore is pending.
fn restore_first(i: &Input<'_>, r: &RestoreFirst, highest: Epoch) -> Decision {
    let epoch = highest.max(Epoch(r.epoch_floor)).next();
    match i.instances.iter().find(|x| x.pod == r.pod) {
        Some(x) if x.ready && x.status.is_some() => {
            Decision::Promote { pod: r.pod.clone(), reason: Reason::Initial, epoch }
        }
        _ => Decision::Blocked {
            why: format!(
                "waiting for {} to restore the backup and serve: only the restored instance may be the first master",
                r.pod
            ),
            reason: Reason::Initial,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::NsStatus;

    fn inst(pod: &str, ordinal: usize, ready: bool, durable: Option<u64>) -> Instance {
        Instance {
            pod: pod.into(),
            ordinal,
            ready,
            status: durable.map(|d| NsStatus { durable_seq: d, ..Default::default() }),
        }
    }

    fn lease(holder: &str, epoch: u64, sync: &[&str]) -> LeaseView {
        LeaseView {
            holder: holder.into(),
            epoch: Epoch(epoch),
            resource_version: "1".into(),
            sync_set: sync.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn run(l: &LeaseView, unchanged: u64, xs: &[Instance], mode: ReplicationMode) -> Decision {
        decide(&Input {
            lease: l,
            unchanged_for: Duration::from_secs(unchanged),
            lease_duration: Duration::from_secs(5),
            instances: xs,
            mode,
            restore: None,
        })
    }

    #[test]
    fn a_renewed_lease_is_left_alone() {
        let xs = [inst("d-0", 0, true, Some(10)), inst("d-1", 1, true, Some(10))];
        match run(&lease("d-0", 1, &["d-1"]), 2, &xs, ReplicationMode::Sync) {
            Decision::Steady { master, recheck } => {
                assert_eq!(master, "d-0");
                assert!(recheck > Duration::from_secs(3) && recheck < Duration::from_secs(4));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn first_master_is_the_lowest_ready_ordinal() {
        let xs = [inst("d-1", 1, true, Some(0)), inst("d-0", 0, true, Some(0)), inst("d-2", 2, false, Some(0))];
        assert_eq!(
            run(&lease("", 0, &[]), 0, &xs, ReplicationMode::Sync),
            Decision::Promote { pod: "d-0".into(), reason: Reason::Initial, epoch: Epoch(1) }
        );
        let none = [inst("d-0", 0, false, None)];
        assert!(matches!(run(&lease("", 0, &[]), 0, &none, ReplicationMode::Sync), Decision::Blocked { .. }));
    }

    #[test]
    fn expiry_promotes_the_most_advanced_slave_in_the_published_sync_set() {
        let xs = [inst("d-0", 0, false, None), inst("d-1", 1, true, Some(90)), inst("d-2", 2, true, Some(100))];
        let d = run(&lease("d-0", 3, &["d-1", "d-2"]), 5, &xs, ReplicationMode::Sync);
        assert_eq!(
            d,
            Decision::Promote { pod: "d-2".into(), reason: Reason::Expired { holder: "d-0".into() }, epoch: Epoch(4) }
        );
        // d-2 is more advanced but was not published in the sync set: it may lack acknowledged writes.
        let d = run(&lease("d-0", 3, &["d-1"]), 5, &xs, ReplicationMode::Sync);
        assert_eq!(
            d,
            Decision::Promote { pod: "d-1".into(), reason: Reason::Expired { holder: "d-0".into() }, epoch: Epoch(4) }
        );
    }

    #[test]
    fn a_blocked_failover_says_why_each_candidate_waits() {
        let xs = [inst("d-0", 0, false, None), inst("d-1", 1, false, Some(100)), inst("d-2", 2, true, None)];
        match run(&lease("d-0", 2, &["d-1", "d-2"]), 6, &xs, ReplicationMode::Sync) {
            Decision::Blocked { why, .. } => assert!(
                why.ends_with("(d-1: pod not Ready; d-2: Status unanswered; d-0: pod not Ready, Status unanswered)"),
                "{why}"
            ),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn nobody_outside_the_sync_set_is_promoted_in_sync_mode() {
        let xs = [inst("d-0", 0, false, None), inst("d-1", 1, true, Some(100))];
        match run(&lease("d-0", 2, &[]), 6, &xs, ReplicationMode::Sync) {
            Decision::Blocked { why, .. } => assert!(why.contains("sync set"), "{why}"),
            d => panic!("{d:?}"),
        }
        // Async mode takes the most advanced ready slave.
        assert!(matches!(run(&lease("d-0", 2, &[]), 6, &xs, ReplicationMode::Async), Decision::Promote { .. }));
    }

    #[test]
    fn release_is_acted_on_at_once_and_prefers_a_slave_over_the_old_master() {
        let mut l = lease("", 4, &["d-1"]);
        l.released_by = Some("d-0".into());
        l.release_reason = Some("nameserver down".into());
        let xs = [inst("d-0", 0, true, Some(200)), inst("d-1", 1, true, Some(200))];
        match run(&l, 0, &xs, ReplicationMode::Sync) {
            Decision::Promote { pod, reason, epoch } => {
                assert_eq!((pod.as_str(), epoch), ("d-1", Epoch(5)));
                assert_eq!(reason.describe(), "d-0 released the lease (nameserver down)");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn the_old_master_comes_back_when_no_slave_is_safe() {
        let xs = [inst("d-0", 0, true, Some(50)), inst("d-1", 1, true, Some(40))];
        let d = run(&lease("d-0", 2, &[]), 9, &xs, ReplicationMode::Sync);
        assert_eq!(
            d,
            Decision::Promote { pod: "d-0".into(), reason: Reason::Expired { holder: "d-0".into() }, epoch: Epoch(3) }
        );
    }

    /// An instance at `epoch`, master or not.
    fn at(pod: &str, ordinal: usize, ready: bool, durable: u64, epoch: u64, master: bool) -> Instance {
        Instance {
            pod: pod.into(),
            ordinal,
            ready,
            status: Some(NsStatus { durable_seq: durable, epoch, master, ..Default::default() }),
        }
    }

    /// A Lease deleted and recreated (or restored from an old backup) starts again at epoch 0:
    /// that is no first election. The published sync set is gone with it, so only the instance
    /// still master at the highest epoch is known to hold every write it acknowledged; a lagging
    /// slave must not win.
    #[test]
    fn a_lost_lease_is_not_a_first_election() {
        let xs = [at("d-0", 0, false, 100, 3, true), at("d-1", 1, true, 50, 3, false)];
        let d = run(&lease("", 0, &[]), 0, &xs, ReplicationMode::Sync);
        assert!(matches!(d, Decision::Blocked { .. }), "a lagging slave won a recreated Lease: {d:?}");
        let xs = [at("d-0", 0, true, 100, 3, true), at("d-1", 1, true, 50, 3, false)];
        let d = run(&lease("", 0, &[]), 0, &xs, ReplicationMode::Sync);
        assert!(matches!(&d, Decision::Promote { pod, epoch: Epoch(4), .. } if pod == "d-0"), "{d:?}");
        // A Lease restored at an older epoch with its holder gone: the epoch still rises above all.
        let d = run(&lease("d-1", 2, &["d-1"]), 9, &xs, ReplicationMode::Sync);
        assert!(matches!(&d, Decision::Promote { pod, epoch: Epoch(4), .. } if pod == "d-0"), "{d:?}");
    }

    #[test]
    fn unreachable_or_unready_instances_are_never_promoted() {
        let xs = [inst("d-1", 1, true, None), inst("d-2", 2, false, Some(500))];
        assert!(matches!(
            run(&lease("d-0", 1, &["d-1", "d-2"]), 5, &xs, ReplicationMode::Sync),
            Decision::Blocked { .. }
        ));
    }

    /// A restored resource: an empty instance is never the first master, however ready; the
    /// restored one is, once it serves, above every epoch its log is known to hold.
    #[test]
    fn a_restore_makes_only_the_restored_instance_master_above_its_epoch() {
        let decide_with = |l: &LeaseView, xs: &[Instance], floor: u64, mode| {
            decide(&Input {
                lease: l,
                unchanged_for: Duration::ZERO,
                lease_duration: Duration::from_secs(5),
                instances: xs,
                mode,
                restore: Some(RestoreFirst { pod: "d-0".into(), epoch_floor: floor }),
            })
        };
        let restoring = [inst("d-0", 0, false, None), inst("d-1", 1, true, Some(0)), inst("d-2", 2, true, Some(0))];
        for mode in [ReplicationMode::Sync, ReplicationMode::Async] {
            match decide_with(&lease("", 0, &[]), &restoring, 0, mode) {
                Decision::Blocked { reason: Reason::Initial, why } => assert!(why.contains("d-0"), "{why}"),
                d => panic!("an empty instance must not be the first master: {d:?}"),
            }
        }
        // Restored at epoch 7 (reported in its Status): the first master's epoch is 8.
        let mut restored = restoring.clone();
        restored[0] = Instance {
            pod: "d-0".into(),
            ordinal: 0,
            ready: true,
            status: Some(NsStatus { durable_seq: 500, epoch: 7, ..Default::default() }),
        };
        assert_eq!(
            decide_with(&lease("", 0, &[]), &restored, 0, ReplicationMode::Sync),
            Decision::Promote { pod: "d-0".into(), reason: Reason::Initial, epoch: Epoch(8) }
        );
        // It reports epoch 0 (a nameserver reports its role's epoch) but a refused promotion
        // named epoch 7 in its log: above it; and never below the Lease's.
        restored[0].status.as_mut().unwrap().epoch = 0;
        assert_eq!(
            decide_with(&lease("", 1, &[]), &restored, 7, ReplicationMode::Async),
            Decision::Promote { pod: "d-0".into(), reason: Reason::Initial, epoch: Epoch(8) }
        );
        assert_eq!(
            decide_with(&lease("", 9, &[]), &restored, 7, ReplicationMode::Async),
            Decision::Promote { pod: "d-0".into(), reason: Reason::Initial, epoch: Epoch(10) }
        );
        // A Lease held and renewed is left alone, as ever.
        assert!(matches!(
            decide_with(&lease("d-0", 8, &[]), &restored, 7, ReplicationMode::Sync),
            Decision::Steady { .. }
        ));
    }
}
