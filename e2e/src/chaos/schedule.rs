//! The fault schedule, drawn up front from the seed alone: the same seed, count, kinds and lease
//! give the same faults in the same order with the same durations, so a run can be replayed.

use std::time::Duration;

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 of the master's nameserver process.
    Kill9Master,
    /// kill -9 of the master's heart container.
    KillHeart,
    /// Force-delete of the master pod.
    DeleteMasterPod,
    /// SIGSTOP of the master's nameserver for longer than the lease, then SIGCONT.
    FreezeMaster,
    /// The master pod cut from the API server (iptables in its network namespace), then healed.
    CutMasterFromApiserver,
    /// The master pod cut from its slave, then healed.
    CutMasterFromSlave,
    /// The slave frozen, the master killed while it is frozen, then the slave thawed.
    FreezeSlaveKillMaster,
    /// kill -9 of the master's nameserver, then the operator pod force-deleted mid-failover.
    KillOperatorMidFailover,
    /// kube-apiserver SIGSTOPped for 20 s, then SIGCONT.
    StopApiserver,
    /// The master's node lost for longer than the lease (every process of it frozen, its traffic
    /// dropped), then brought back.
    LoseMasterNode,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill9Master,
        FaultKind::KillHeart,
        FaultKind::DeleteMasterPod,
        FaultKind::FreezeMaster,
        FaultKind::CutMasterFromApiserver,
        FaultKind::CutMasterFromSlave,
        FaultKind::FreezeSlaveKillMaster,
        FaultKind::KillOperatorMidFailover,
        FaultKind::StopApiserver,
        FaultKind::LoseMasterNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill9Master => "kill9-master",
            FaultKind::KillHeart => "kill-master-heart",
            FaultKind::DeleteMasterPod => "delete-master-pod",
            FaultKind::FreezeMaster => "freeze-master",
            FaultKind::CutMasterFromApiserver => "cut-master-from-apiserver",
            FaultKind::CutMasterFromSlave => "cut-master-from-slave",
            FaultKind::FreezeSlaveKillMaster => "freeze-slave-kill-master",
            FaultKind::KillOperatorMidFailover => "kill-operator-mid-failover",
            FaultKind::StopApiserver => "stop-apiserver",
            FaultKind::LoseMasterNode => "lose-master-node",
        }
    }

    pub fn parse(s: &str) -> Result<FaultKind> {
        match FaultKind::ALL.into_iter().find(|k| k.name() == s) {
            Some(k) => Ok(k),
            None => {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                bail!("unknown fault kind {s:?}; kinds: {}", names.join(", "))
            }
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub kind: FaultKind,
    /// How long the fault stays in effect, from its injection, before it is healed (0: it heals
    /// itself).
    pub hold: Duration,
    /// A second delay inside the fault: freeze-slave-kill-master waits this long between freezing
    /// the slave and killing the master; kill-operator-mid-failover between the kill and the
    /// operator's deletion.
    pub delay: Duration,
    /// Pause after the system converged, before the next fault.
    pub pause: Duration,
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

/// `n` faults from `kinds` (each kind at least once when `n` allows, the rest drawn uniformly,
/// in a shuffled order), with their durations. `lease` is the TfsNameserver's lease duration.
pub fn plan(seed: u64, n: usize, kinds: &[FaultKind], lease: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds: Vec<FaultKind> = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<FaultKind> = kinds.clone();
    order.shuffle(&mut rng);
    order.truncate(n);
    while order.len() < n {
        order.push(kinds[rng.random_range(0..kinds.len())]);
    }
    order.shuffle(&mut rng);
    order
        .into_iter()
        .map(|kind| {
            // Every step draws the same numbers whatever its kind, so that a change of one kind's
            // durations does not reshuffle the rest of a replayed schedule.
            let (cut, freeze_for, thaw_after, operator_after, pause) = (
                ms(&mut rng, 2000, 8000),
                ms(&mut rng, 1000, 4000),
                ms(&mut rng, 2000, 5000),
                ms(&mut rng, 0, 800),
                ms(&mut rng, 2000, 8000),
            );
            let (hold, delay) = match kind {
                FaultKind::Kill9Master | FaultKind::KillHeart | FaultKind::DeleteMasterPod => {
                    (Duration::ZERO, Duration::ZERO)
                }
                FaultKind::FreezeMaster => (lease + Duration::from_secs(3), Duration::ZERO),
                FaultKind::CutMasterFromApiserver => (lease + Duration::from_secs(5), Duration::ZERO),
                FaultKind::CutMasterFromSlave => (cut, Duration::ZERO),
                FaultKind::FreezeSlaveKillMaster => (freeze_for + thaw_after, freeze_for),
                FaultKind::KillOperatorMidFailover => (Duration::ZERO, operator_after),
                FaultKind::StopApiserver => (Duration::from_secs(20), Duration::ZERO),
                FaultKind::LoseMasterNode => (lease + Duration::from_secs(5), Duration::ZERO),
            };
            Step { kind, hold, delay, pause }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(5);

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = plan(42, 30, &FaultKind::ALL, LEASE);
        assert_eq!(a, plan(42, 30, &FaultKind::ALL, LEASE));
        assert_ne!(a, plan(43, 30, &FaultKind::ALL, LEASE));
        assert_eq!(a.len(), 30);
    }

    #[test]
    fn every_kind_appears_when_there_are_enough_faults() {
        for seed in 0..20 {
            let p = plan(seed, FaultKind::ALL.len(), &FaultKind::ALL, LEASE);
            let mut kinds: Vec<FaultKind> = p.iter().map(|s| s.kind).collect();
            kinds.sort();
            assert_eq!(kinds, FaultKind::ALL.to_vec(), "seed {seed}");
        }
        let few = plan(7, 3, &FaultKind::ALL, LEASE);
        let mut kinds: Vec<FaultKind> = few.iter().map(|s| s.kind).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 3, "fewer faults than kinds: all different");
        assert!(plan(7, 5, &[], LEASE).is_empty());
    }

    #[test]
    fn durations_follow_the_kind_and_the_lease() {
        let p = plan(1, 60, &FaultKind::ALL, LEASE);
        for s in &p {
            assert!(s.pause >= Duration::from_secs(2) && s.pause <= Duration::from_secs(8));
            match s.kind {
                FaultKind::FreezeMaster => assert_eq!(s.hold, Duration::from_secs(8)),
                FaultKind::CutMasterFromApiserver | FaultKind::LoseMasterNode => {
                    assert_eq!(s.hold, Duration::from_secs(10))
                }
                FaultKind::StopApiserver => assert_eq!(s.hold, Duration::from_secs(20)),
                FaultKind::CutMasterFromSlave => assert!(s.hold >= Duration::from_secs(2)),
                FaultKind::FreezeSlaveKillMaster => {
                    // The slave stays frozen 2-5 s after the master is killed.
                    assert!(s.delay >= Duration::from_secs(1) && s.hold >= s.delay + Duration::from_secs(2))
                }
                FaultKind::KillOperatorMidFailover => assert!(s.delay <= Duration::from_millis(800)),
                _ => assert_eq!((s.hold, s.delay), (Duration::ZERO, Duration::ZERO)),
            }
        }
        let only = plan(3, 4, &[FaultKind::KillHeart], LEASE);
        assert!(only.iter().all(|s| s.kind == FaultKind::KillHeart));
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.name()).unwrap(), k);
        }
        assert!(FaultKind::parse("nope").is_err());
    }
}
