//! Status, the last stage: the TfsNameserver's status computed from what the reconcile observed and
//! did (pure but for the transition times it keeps), its conditions, and the one writer of it.
//!
//! Invariant: only [`write`] writes the status, and only when it changed; a condition keeps its
//! transition time while its status stays.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use tfs_nameserver::epoch::Epoch;
use tracing::warn;

use crate::crd::{InstanceStatus, Phase, TfsNameserver, TfsNameserverStatus};
use crate::error::Result;
use crate::instance::Instance;
use crate::lease::LeaseView;
use crate::names::*;
use crate::nodes::{Cordon, Trouble};
use crate::settings::Settings;
use crate::{names, settings};

use super::act::Acted;
use super::events::{event, node_ref, pod_ref, warn_once};
use super::{Context, Observed, backup_status, certmanager, key};

/// Status from what was observed (pure but for the transition times it keeps).
pub fn compute_status(
    t: &TfsNameserver,
    prev: &TfsNameserverStatus,
    phase: Phase,
    lv: &LeaseView,
    instances: &[Instance],
    replicas: usize,
) -> TfsNameserverStatus {
    let master_durable = instances
        .iter()
        .find(|i| i.pod == lv.holder)
        .and_then(|i| i.status.as_ref())
        .map(|s| s.durable_seq)
        .unwrap_or(0);
    let ready = instances.iter().filter(|i| i.ready).count();
    let generation = t.metadata.generation;
    let master = (!lv.holder.is_empty()).then(|| lv.holder.clone());
    let serving = instances.iter().any(|i| i.pod == lv.holder && i.status.as_ref().is_some_and(|s| s.writable));
    TfsNameserverStatus {
        phase: Some(phase),
        master: master.clone(),
        epoch: Some(status_epoch(lv.epoch)),
        ready: Some(format!("{ready}/{replicas}")),
        instances: instances
            .iter()
            .map(|i| InstanceStatus {
                name: i.pod.clone(),
                role: match &i.status {
                    Some(s) if s.master => "master".into(),
                    Some(_) => "slave".into(),
                    None => "unknown".into(),
                },
                ready: i.ready,
                durable_seq: i.status.as_ref().map(|s| s.durable_seq as i64).unwrap_or(0),
                lag: i.status.as_ref().map(|s| master_durable.saturating_sub(s.durable_seq) as i64).unwrap_or(0),
                in_sync_set: lv.sync_set.contains(&i.pod),
            })
            .collect(),
        failovers: prev.failovers,
        last_failover_time: prev.last_failover_time.clone(),
        last_failover_reason: prev.last_failover_reason.clone(),
        conditions: vec![
            condition(
                &prev.conditions,
                "Ready",
                phase == Phase::Healthy,
                &phase.to_string(),
                format!("{ready}/{replicas} instances ready"),
                generation,
            ),
            condition(
                &prev.conditions,
                "Available",
                serving,
                if serving { "MasterServing" } else { "NoMaster" },
                format!("master: {}", master.as_deref().unwrap_or("none")),
                generation,
            ),
            condition(
                &prev.conditions,
                "FailingOver",
                matches!(phase, Phase::FailingOver | Phase::SwitchingOver),
                &phase.to_string(),
                match phase {
                    Phase::FailingOver => format!("promoting a new master at epoch {}", lv.epoch),
                    Phase::SwitchingOver => format!("{} is handing the Lease over", lv.holder),
                    _ => format!("no master change in progress (epoch {})", lv.epoch),
                },
                generation,
            ),
            condition(
                &prev.conditions,
                "Degraded",
                phase == Phase::Degraded,
                &phase.to_string(),
                match phase {
                    Phase::Degraded => {
                        let missing: Vec<&str> = instances
                            .iter()
                            .filter(|i| !i.ready || i.status.is_none())
                            .map(|i| i.pod.as_str())
                            .collect();
                        format!(
                            "{ready}/{replicas} instances ready; not ready or not answering: [{}]",
                            missing.join(", ")
                        )
                    }
                    _ => format!("{ready}/{replicas} instances ready"),
                },
                generation,
            ),
        ],
        replicas: instances.len() as i32,
        label_selector: Some(selector_string(&t.name_any())),
        observed_generation: generation,
        backup: None,
    }
}

pub(super) fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    condition_of(prev, type_, if ok { "True" } else { "False" }, reason, message, generation)
}

/// A condition of any status (True, False, Unknown), keeping its transition time while the
/// status stays.
pub(super) fn condition_of(
    prev: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = status.to_string();
    let last = prev.iter().find(|c| c.type_ == type_ && c.status == status).map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: last.unwrap_or(Time(Timestamp::now())),
    }
}

/// `SettingsApplied`: whether every pod runs the resource's settings, and while not, how the
/// operator judges meanwhile.
pub(super) fn settings_condition(t: &TfsNameserver, prev: &TfsNameserverStatus, j: &settings::Judgement) -> Condition {
    let done = j.current == j.total;
    let message = if done {
        format!("every instance runs {}", Settings::of(t).encode())
    } else {
        format!(
            "{} of {} instances run {}; until all do, failover is judged with lease {}s and {:?} mode",
            j.current,
            j.total,
            Settings::of(t).encode(),
            j.lease_duration.as_secs(),
            j.mode
        )
    };
    let reason = if done { "Applied" } else { "RollingOut" };
    condition(&prev.conditions, "SettingsApplied", done, reason, message, t.metadata.generation)
}

/// `CertificatesReady` (only with spec.tls.issuerRef): whether cert-manager issued every
/// Certificate, and if not, which are awaited and why.
pub(super) fn certificates_condition(
    t: &TfsNameserver,
    prev: &TfsNameserverStatus,
    x: &certmanager::Issuance,
) -> Condition {
    let (ok, reason, message) = x.condition();
    condition(&prev.conditions, "CertificatesReady", ok, reason, message, t.metadata.generation)
}

/// What the `MasterNodeCordoned` condition (and the `CordonSwitchoverBlocked` Event) says.
pub(super) fn cordon_message(c: &Cordon, name: &str) -> String {
    match c {
        Cordon::NotCordoned { node } => format!("the master's node {node} is not cordoned"),
        Cordon::Unknown(why) => why.clone(),
        Cordon::Switch { node, target } => format!("master's node {node} is cordoned: switching over to {target}"),
        Cordon::Blocked { node, why } => format!(
            "master's node {node} is cordoned, but no slave of the sync set is ready on a schedulable node ({why}): \
             the master stays, and a drain waits on PodDisruptionBudget {}",
            names::master_pdb(name)
        ),
        Cordon::AlreadyDone { node } => format!(
            "master's node {node} is cordoned, and the operator already switched over once for this cordon \
             (annotation {ANN_CORDON_SWITCHOVER}): it does not again; move the master with kubectl tfs switchover \
             {name} <slave>, or remove {node} from the annotation"
        ),
    }
}

pub(super) fn cordon_condition(t: &TfsNameserver, prev: &TfsNameserverStatus, c: &Cordon) -> Condition {
    let (status, reason) = match c {
        Cordon::NotCordoned { .. } => ("False", "NotCordoned"),
        Cordon::Unknown(_) => ("Unknown", "Unknown"),
        Cordon::Switch { .. } => ("True", "SwitchingOver"),
        Cordon::Blocked { .. } => ("True", "NoSwitchoverTarget"),
        Cordon::AlreadyDone { .. } => ("True", "AlreadySwitchedOver"),
    };
    condition_of(
        &prev.conditions,
        "MasterNodeCordoned",
        status,
        reason,
        cordon_message(c, &t.name_any()),
        t.metadata.generation,
    )
}

/// The Degraded condition names the lost instances, their nodes, and the action.
pub(super) fn explain_degraded(st: &mut TfsNameserverStatus, troubles: &[Trouble]) {
    if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == "Degraded") {
        c.reason = if troubles.iter().any(|x| x.lost) { "InstanceLost" } else { "InstanceUnschedulable" }.into();
        c.message = troubles.iter().map(|x| x.message.as_str()).collect::<Vec<_>>().join("; ");
    }
}

/// The status from what the reconcile observed (`o`) and did (`acted`), the Warnings about
/// instances and nodes published once, then written. `prev`: the status as read, with failovers
/// counted since.
pub(super) async fn report(
    t: &TfsNameserver,
    ctx: &Context,
    o: &Observed,
    cordon: &Cordon,
    prev: &TfsNameserverStatus,
    acted: &Acted,
) -> Result<()> {
    let (ns, name) = (t.namespace().unwrap_or_default(), t.name_any());
    let replicas = t.spec.instances();
    // The status shows the Lease as this reconcile left it: as the promotion wrote it, if it did.
    let lease_now = acted.written.as_ref().map(LeaseView::of).unwrap_or_else(|| o.lv.clone());
    let mut new_status = compute_status(t, prev, acted.phase, &lease_now, &o.instances, replicas);
    if acted.phase == Phase::Degraded && !o.troubles.is_empty() {
        explain_degraded(&mut new_status, &o.troubles);
    }
    new_status.conditions.push(settings_condition(t, prev, &o.judgement));
    new_status.conditions.push(cordon_condition(t, prev, cordon));
    let mut warnings: Vec<(&str, ObjectReference, String)> = o
        .troubles
        .iter()
        .map(|x| {
            let reason = if x.lost { "InstanceLost" } else { "InstanceUnschedulable" };
            (reason, pod_ref(t, &x.pod), x.message.clone())
        })
        .collect();
    if let Cordon::Blocked { node, .. } = cordon {
        warnings.push(("CordonSwitchoverBlocked", node_ref(node), cordon_message(cordon, &name)));
    }
    warn_once(t, ctx, &warnings).await;
    if let Some(p) = ctx.storage.lock().get(&key(t)) {
        let c = condition(
            &prev.conditions,
            "StorageResized",
            p.resized,
            p.reason,
            p.message.clone(),
            t.metadata.generation,
        );
        new_status.conditions.push(c);
    }
    if let Some(x) = &o.issuance {
        let c = certificates_condition(t, prev, x);
        let before = prev.conditions.iter().find(|p| p.type_ == c.type_).map(|p| p.reason.clone());
        if c.status == "False" && x.problem.is_some() && before.as_deref() != Some(c.reason.as_str()) {
            warn!(name = %name, reason = %c.reason, message = %c.message, "certificates");
            event(ctx, t, EventType::Warning, &c.reason, "Certificates", &c.message).await;
        }
        new_status.conditions.push(c);
    }
    backup_status::report(t, ctx, prev, &mut new_status, &lease_now, &o.instances, &o.pods).await;
    ctx.metrics.observe(&ns, &name, &new_status, t.spec.replicas, lease_now.sync_set.len());
    write(t, ctx, &new_status).await
}

/// The one writer of the status: a merge patch of `new_status`, made only when it differs from
/// the status read.
pub(super) async fn write(t: &TfsNameserver, ctx: &Context, new_status: &TfsNameserverStatus) -> Result<()> {
    if t.status.as_ref() == Some(new_status) {
        return Ok(());
    }
    let api: Api<TfsNameserver> = Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let mut patch = serde_json::json!({ "status": new_status });
    // A merge patch keeps what it does not name: a report of an archive no longer asked for goes.
    if new_status.backup.is_none() {
        patch["status"]["backup"] = serde_json::Value::Null;
    }
    api.patch_status(&t.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// The status's epoch (an i64 in the CRD); an epoch beyond it saturates (never reached).
fn status_epoch(e: Epoch) -> i64 {
    i64::try_from(e.get()).unwrap_or(i64::MAX)
}

/// Counts epoch changes the status has not recorded yet (an operator that handed the Lease over
/// and died before writing its status), except planned switchovers. The status's epoch is
/// written together with the count, so each change is counted once.
pub fn count_unrecorded_failovers(status: &mut TfsNameserverStatus, lv: &LeaseView) {
    let recorded = status.epoch.unwrap_or(0);
    let now = status_epoch(lv.epoch);
    if recorded >= 1 && now > recorded && lv.release_reason.as_deref() != Some(crate::lease::SWITCHOVER) {
        status.failovers += now - recorded;
        status.last_failover_time = Some(Time(Timestamp::now()));
        status.last_failover_reason = Some(format!("epoch {recorded} -> {now} ({})", lv.holder));
        status.epoch = Some(now);
    }
}
