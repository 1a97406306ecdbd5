//! Planned operations, asked for with annotations or by a change of spec: a switchover
//! (`tfs.io/switchover-to`, or the master's node cordoned), a rolling update, the replacement of a
//! lost instance (`tfs.io/replace-instance`). The operator validates and asks; the master's heart
//! drains and hands over, so no acknowledged write is in flight when the target takes over.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use crate::crd::{Phase, ReplicationMode, TfsNameserver};
use crate::error::Result;
use crate::instance::Instance;
use crate::lease::{LeaseView, split_set};
use crate::metrics::FailoverLabels;
use crate::names::*;
use crate::nodes::Nodes;
use crate::settings::Settings;
use crate::{build, names, nodes};

use super::decide::scale_down_target;
use super::events::{event, event_about, node_ref, pod_ref};
use super::master::ask_handover;
use super::observe::Targets;
use super::status::write;
use super::{Context, key};

/// Planned switchover, asked for with the `tfs.io/switchover-to` annotation. The operator only
/// validates and asks; the master's heart drains its nameserver and hands the Lease over itself,
/// so no acknowledged write is in flight when the target takes over. Returns an action when the
/// reconcile should stop here.
pub(super) async fn switchover(
    t: &TfsNameserver,
    ctx: &Context,
    leases: &Api<Lease>,
    lease: &Lease,
    lv: &LeaseView,
    instances: &[Instance],
) -> Result<Option<Action>> {
    let Some(target) = t.annotations().get(ANN_SWITCHOVER_TO).filter(|s| !s.is_empty()).cloned() else {
        return Ok(None);
    };
    let clear = serde_json::json!({ ANN_SWITCHOVER_TO: null });
    if lv.holder == target {
        annotate(t, ctx, &clear).await?;
        if lv.release_reason.as_deref() == Some(crate::lease::SWITCHOVER) || lv.handover_to.is_none() {
            let note = format!("{target} is master at epoch {}", lv.epoch);
            event(ctx, t, EventType::Normal, "SwitchedOver", "Switchover", &note).await;
            ctx.metrics.failovers.get_or_create(&FailoverLabels { kind: "switchover" }).inc();
        }
        return Ok(None);
    }
    let inst = instances.iter().find(|i| i.pod == target);
    let problem = if lv.released() {
        Some("there is no master to switch over from".to_string())
    } else if inst.is_none() {
        Some(format!("{target} is not an instance of {}", t.name_any()))
    } else if !inst.is_some_and(|i| i.ready && i.status.is_some()) {
        Some(format!("{target} is not ready"))
    } else if t.spec.replication.mode == ReplicationMode::Sync && !lv.sync_set.contains(&target) {
        // Also where a request the master's heart refused ends: its renewal published the set.
        let refused = lv.handover_refused.as_ref().map(|w| format!("; the master refused: {w}")).unwrap_or_default();
        Some(format!("{target} is not in the published sync set [{}]{refused}", lv.sync_set.join(", ")))
    } else {
        None
    };
    if let Some(p) = problem {
        event(ctx, t, EventType::Warning, "SwitchoverRejected", "Switchover", &p).await;
        annotate(t, ctx, &clear).await?;
        return Ok(None);
    }
    if lv.handover_to.as_deref() != Some(&target) {
        ask_handover(t, leases, lease, &target).await?;
        let note = format!("asked {} to hand over to {target}", lv.holder);
        event(ctx, t, EventType::Normal, "SwitchingOver", "Switchover", &note).await;
        let mut status = t.status.clone().unwrap_or_default();
        status.phase = Some(Phase::SwitchingOver);
        write(t, ctx, &status).await?;
    }
    Ok(Some(Action::requeue(Duration::from_millis(200))))
}

/// The master's node is cordoned: ask for a planned switchover to `target` through the
/// `tfs.io/switchover-to` path (validated again, drained by the master's heart, `SwitchedOver`),
/// and record the node in `tfs.io/cordon-switchover` in the same write, so that this cordon
/// never makes a second switchover, whatever becomes of this one.
pub(super) async fn cordon_switchover(
    t: &TfsNameserver,
    ctx: &Context,
    node: &str,
    target: &str,
    handled: &[String],
) -> Result<()> {
    let record: Vec<&str> = handled.iter().map(String::as_str).chain([node]).collect();
    annotate(t, ctx, &serde_json::json!({ ANN_SWITCHOVER_TO: target, ANN_CORDON_SWITCHOVER: record.join(",") }))
        .await?;
    let note = format!("master's node {node} is cordoned: switching over to {target}");
    info!(name = %t.name_any(), %note, "cordon switchover");
    event_about(ctx, t, EventType::Normal, ("CordonSwitchover", "Switchover"), node_ref(node), &note).await;
    Ok(())
}

/// Rolling image update, one step per healthy reconcile: slaves on an old image are replaced one
/// at a time (each must be back, ready and in the published sync set before the next goes); then
/// the master hands over to an updated slave (the switchover path: drained, nothing lost); the
/// old master, now a slave, is replaced last.
#[allow(clippy::too_many_arguments)]
pub(super) async fn roll(
    t: &TfsNameserver,
    ctx: &Context,
    pods_api: &Api<Pod>,
    leases: &Api<Lease>,
    lease: &Lease,
    lv: &LeaseView,
    pods: &[Pod],
    master: &str,
    replicas: usize,
) -> Result<()> {
    let outdated: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && build::pod_outdated(t, p).is_some())
        .collect();
    if outdated.is_empty() || lv.handover_to.is_some() {
        return Ok(());
    }
    let in_sync = t.spec.replication.mode == ReplicationMode::Async || lv.sync_set.len() + 1 >= replicas;
    if !in_sync {
        return Ok(()); // a replaced slave is still catching up
    }
    if let Some(slave) = outdated.iter().find(|p| p.name_any() != master) {
        let name = slave.name_any();
        let what = build::pod_outdated(t, slave).unwrap_or("image");
        event(
            ctx,
            t,
            EventType::Normal,
            "Upgrading",
            "Upgrade",
            &format!("replacing slave {name} for its {what} (image {}, {})", t.spec.image, Settings::of(t).encode()),
        )
        .await;
        pods_api.delete(&name, &DeleteParams::default()).await?;
        return Ok(());
    }
    let target = pods
        .iter()
        .map(|p| p.name_any())
        .find(|n| n != master && (lv.sync_set.contains(n) || t.spec.replication.mode == ReplicationMode::Async));
    if let Some(target) = target {
        ask_handover(t, leases, lease, &target).await?;
        event(
            ctx,
            t,
            EventType::Normal,
            "Upgrading",
            "Upgrade",
            &format!("master {master} hands over to updated {target} before its own replacement"),
        )
        .await;
    }
    Ok(())
}

/// Replacement of a lost instance, asked for with `tfs.io/replace-instance` (`kubectl tfs
/// replace`): if `nodes::replace_check` allows it, deletes the instance's claim and force-deletes
/// its pod (grace 0, conditioned on the uid judged: a pod on a lost node stays Terminating
/// otherwise), then removes the annotation; the reconciles that follow make a new claim (bound
/// where the new pod is scheduled) and pod, which joins as a slave and is seeded by the master.
/// A refusal is an Event `ReplaceRejected`, and the annotation goes too.
pub(super) async fn replace(
    t: &TfsNameserver,
    ctx: &Context,
    at: &Targets<'_>,
    lv: &LeaseView,
    instances: &[Instance],
    replicas: usize,
) -> Result<Option<Action>> {
    let Some(target) = t.annotations().get(ANN_REPLACE_INSTANCE).filter(|s| !s.is_empty()).cloned() else {
        return Ok(None);
    };
    let name = t.name_any();
    let clear = serde_json::json!({ ANN_REPLACE_INSTANCE: null });
    let pod = at.pods.iter().find(|p| p.name_any() == target);
    let checked = nodes::replace_check(&nodes::ReplaceInput {
        name: &name,
        target: &target,
        replicas,
        lease: lv,
        instances,
        pod,
        placed: at.placed,
        nodes: at.nodes,
        placement: t.spec.placement,
        node_selector: &t.spec.pod.node_selector,
    });
    let checked = checked.and_then(|plan| {
        let ordinal = names::ordinal(&name, &target).ok_or_else(|| format!("{target} is not an instance of {name}"))?;
        Ok((plan, ordinal))
    });
    let (plan, ordinal) = match checked {
        Ok(accepted) => accepted,
        Err(why) => {
            let note = format!("{target} is not replaced: {why}");
            event_about(ctx, t, EventType::Warning, ("ReplaceRejected", "Replace"), pod_ref(t, &target), &note).await;
            annotate(t, ctx, &clear).await?;
            return Ok(None);
        }
    };
    let claim = names::pvc(&name, ordinal);
    let note = format!(
        "replacing {target} ({}): deleting its claim {claim} and its pod; a new instance is made on a new volume and \
         seeded from the master {}",
        plan.why, lv.holder
    );
    info!(name = %name, %note, "replacing an instance");
    let about = pod_ref(t, &target);
    event_about(ctx, t, EventType::Normal, ("ReplacingInstance", "Replace"), about.clone(), &note).await;
    match at.pvcs.delete(&claim, &DeleteParams::default()).await {
        Ok(_) => {
            let note = format!("deleted claim {claim} of {target} (it goes once no pod uses it)");
            event_about(ctx, t, EventType::Normal, ("ReplacingInstance", "DeleteClaim"), about.clone(), &note).await;
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    if let Some((pod, uid)) = &plan.pod {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions { uid: uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match at.pods_api.delete(pod, &dp).await {
            Ok(_) => {
                let note = format!("deleted pod {pod} at once (grace period 0: no kubelet will confirm its end)");
                event_about(ctx, t, EventType::Normal, ("ReplacingInstance", "DeletePod"), about.clone(), &note).await;
            }
            // Gone already, or another pod by now (the uid precondition).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.replacing.lock().entry(key(t)).or_default().insert(target);
    annotate(t, ctx, &clear).await?;
    Ok(Some(Action::requeue(Duration::from_millis(500))))
}

/// `InstanceReplaced`, once a replaced instance is back: ready, a slave, in the published sync
/// set (Sync mode). Known only to the operator process that made the replacement.
pub(super) async fn announce_replaced(
    t: &TfsNameserver,
    ctx: &Context,
    lv: &LeaseView,
    instances: &[Instance],
    placed: &BTreeMap<String, String>,
) {
    let waiting: Vec<String> =
        ctx.replacing.lock().get(&key(t)).map(|s| s.iter().cloned().collect()).unwrap_or_default();
    for pod in waiting {
        let sync = t.spec.replication.mode == ReplicationMode::Sync;
        let back = instances.iter().any(|x| {
            x.pod == pod
                && x.ready
                && x.status.as_ref().is_some_and(|s| !s.master)
                && (!sync || lv.sync_set.contains(&pod))
        });
        if back {
            let node = placed.get(&pod).map(String::as_str).unwrap_or("?");
            let note = format!(
                "{pod} is back on node {node}, on a new volume seeded from the master {}{}",
                lv.holder,
                if sync { ", in the sync set" } else { "" }
            );
            event_about(ctx, t, EventType::Normal, ("InstanceReplaced", "Replace"), pod_ref(t, &pod), &note).await;
            if let Some(s) = ctx.replacing.lock().get_mut(&key(t)) {
                s.remove(&pod);
            }
        }
    }
}

/// Scaling down the master's ordinal: a planned switchover to a kept, in-sync slave first
/// (nothing lost, no failover); the old master is then an extra slave and goes like the others.
/// Returns an action when the reconcile should stop here.
pub(super) async fn scale_down(
    t: &TfsNameserver,
    ctx: &Context,
    leases: &Api<Lease>,
    lease: &Lease,
    lv: &LeaseView,
    instances: &[Instance],
    replicas: usize,
) -> Result<Option<Action>> {
    let Some(target) = scale_down_target(&t.name_any(), lv, replicas, instances) else { return Ok(None) };
    if lv.handover_to.as_deref() == Some(target.as_str()) {
        return Ok(None);
    }
    ask_handover(t, leases, lease, &target).await?;
    let why = format!("scaling down to {replicas}: the master {} hands over to {target}", lv.holder);
    event(ctx, t, EventType::Normal, "SwitchingOver", "ScaleDown", &why).await;
    Ok(Some(Action::requeue(Duration::from_millis(200))))
}

/// The nodes whose cordon already made a switchover (`tfs.io/cordon-switchover`), the uncordoned
/// ones dropped from the annotation (a new cordon of the node may switch over again).
pub(super) async fn cordons_handled(t: &TfsNameserver, ctx: &Context, node_view: &Nodes) -> Result<Vec<String>> {
    let recorded = split_set(t.annotations().get(ANN_CORDON_SWITCHOVER).map(String::as_str).unwrap_or(""));
    let handled = nodes::still_cordoned(&recorded, node_view);
    if handled != recorded {
        let value = (!handled.is_empty()).then(|| handled.join(","));
        annotate(t, ctx, &serde_json::json!({ ANN_CORDON_SWITCHOVER: value })).await?;
    }
    Ok(handled)
}

/// Sets (a string) or removes (null) annotations of the resource: a merge patch of
/// `metadata.annotations`.
async fn annotate(t: &TfsNameserver, ctx: &Context, annotations: &serde_json::Value) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
    Api::<TfsNameserver>::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default())
        .patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
