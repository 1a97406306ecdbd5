//! Decide, pure: who is master (failover.rs `decide`, judged with the settings any running pod may
//! still use) and whether the master's node being cordoned asks for a switchover (nodes.rs
//! `cordon`), and to whom a master hands over before a scale-down removes its ordinal. What a
//! reconcile decides, master.rs and operations.rs carry out.

use crate::crd::TfsNameserver;
use crate::failover::Decision;
use crate::instance::Instance;
use crate::lease::LeaseView;
use crate::nodes::Cordon;
use crate::{failover, names, nodes};

use super::{Observed, backup_status};

pub(super) struct Decided {
    pub decision: Decision,
    pub cordon: Cordon,
}

/// `handled`: the nodes whose cordon already made a switchover (`tfs.io/cordon-switchover`).
pub(super) fn decide(t: &TfsNameserver, o: &Observed, handled: &[String]) -> Decided {
    let lv = &o.lv;
    let decision = failover::decide(&failover::Input {
        lease: lv,
        unchanged_for: o.unchanged_for,
        lease_duration: o.judgement.lease_duration,
        instances: &o.instances,
        mode: o.judgement.mode,
        restore: backup_status::restore_first(t, &o.pods, lv),
    });
    // The master's node cordoned (a drain begins): a planned switchover first, once per cordon.
    let cordon = match (&decision, &lv.handover_to) {
        (Decision::Steady { master, .. }, None) => nodes::cordon(&nodes::CordonInput {
            master,
            instances: &o.instances,
            placed: &o.placed,
            nodes: &o.nodes,
            lease: lv,
            mode: o.judgement.mode,
            handled,
        }),
        (Decision::Steady { .. }, Some(to)) => Cordon::Unknown(format!("{} is handing over to {to}", lv.holder)),
        _ => Cordon::Unknown("no master serving: a failover decides".into()),
    };
    Decided { decision, cordon }
}

/// The pod the master must hand over to before a scale-down removes its ordinal: a ready slave
/// that stays and is in the published sync set (so the handover loses nothing). None when the
/// master stays, or no such slave exists yet (then the scale-down waits).
pub fn scale_down_target(name: &str, lv: &LeaseView, replicas: usize, instances: &[Instance]) -> Option<String> {
    let holder = names::ordinal(name, &lv.holder)?;
    if holder < replicas {
        return None;
    }
    instances
        .iter()
        .filter(|i| i.ordinal < replicas && i.ready && i.status.is_some() && lv.sync_set.contains(&i.pod))
        .map(|i| i.pod.clone())
        .next()
}
