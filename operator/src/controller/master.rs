//! The writes that follow the master: the Lease handed to a promoted instance (lease.rs `take`)
//! or a handover asked of the master's heart (lease.rs `ask_handover`), the VIP Service and the
//! PodDisruptionBudgets pointed at the master.
//!
//! Invariant: every Lease write is conditioned on the version decided on (a 409 decides again), and
//! the VIP moves only forward in epochs.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use tfs_nameserver::epoch::Epoch;
use tracing::{info, warn};

use crate::crd::TfsNameserver;
use crate::error::Result;
use crate::failover::Reason;
use crate::lease::Taken;
use crate::metrics::FailoverLabels;
use crate::names::*;
use crate::{build, names};

use super::events::publish_in_background;
use super::resources::ssa;
use super::{Context, key};

/// Asks the master's heart to hand the Lease to `target` (conditioned on the version read).
pub(super) async fn ask_handover(t: &TfsNameserver, leases: &Api<Lease>, lease: &Lease, target: &str) -> Result<()> {
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    leases.replace(&names::lease(&t.name_any()), &pp, &crate::lease::ask_handover(lease, target)).await?;
    Ok(())
}

/// Points the VIP Service at `master`, the master of `epoch` (only the operator writes this selector).
///
/// Invariant: the VIP selects the pod incarnation that holds the mastership. A move names the
/// promoted pod's incarnation, and within one epoch the VIP is never written again: a pod made
/// again under the master's name (its pod lost, the Lease not yet taken over) is a new incarnation
/// and is not selected until it is promoted itself, at a later epoch.
///
/// Invariant: the VIP moves only forward in epochs. It carries the epoch it serves (`tfs.io/epoch`);
/// a write for an older epoch is never made, and a write is conditioned on the resourceVersion it
/// was decided from, so a stale operator process (a deposed leader's request still in flight, or
/// one run with `--leader-elect=false` beside a leader) cannot move it back to a deposed master.
pub(super) async fn ensure_vip(
    t: &TfsNameserver,
    services: &Api<Service>,
    target: build::VipTarget<'_>,
    epoch: Epoch,
) -> Result<()> {
    let master = target.pod;
    let current = services.get_opt(&names::vip(&t.name_any())).await?;
    let selected = current.as_ref().and_then(|s| s.spec.as_ref()?.selector.as_ref()?.get(LABEL_POD).cloned());
    let served: Option<Epoch> =
        current.as_ref().and_then(|s| s.metadata.annotations.as_ref()?.get(ANN_EPOCH)?.parse().ok()).map(Epoch);
    if served.is_some_and(|e| e > epoch) {
        warn!(name = %t.name_any(), master, %epoch, ?served, "the VIP already serves a newer epoch; not moving it back");
        return Ok(());
    }
    // Within an epoch the selection stands, incarnation included (see above).
    if selected.as_deref() == Some(master) && served == Some(epoch) {
        return Ok(());
    }
    let mut svc = build::vip_service(t, Some(target));
    svc.metadata.annotations.get_or_insert_default().insert(ANN_EPOCH.into(), epoch.to_string());
    svc.metadata.resource_version = current.and_then(|c| c.metadata.resource_version);
    ssa(services, &svc).await?;
    if selected.as_deref() != Some(master) {
        info!(name = %t.name_any(), master, incarnation = ?target.incarnation, %epoch, "VIP moved");
    }
    Ok(())
}

/// Hands the Lease to `pod` at the next epoch, conditioned on the version we decided on: if
/// anyone changed the Lease meanwhile, the update fails (409) and we decide again. Returns the
/// Lease as written. The Events (MasterElected, or FailingOver then FailedOver) are published by
/// a task of their own, so that they do not stand between the promotion and the VIP's move.
pub(super) async fn promote(
    t: &TfsNameserver,
    ctx: &Context,
    leases: &Api<Lease>,
    lease: &Lease,
    (pod, epoch): (&str, Epoch),
    reason: &Reason,
    noticed_for: Duration,
) -> Result<Lease> {
    let how = Taken::Promoted { duration_seconds: t.spec.lease.duration_seconds };
    let l = crate::lease::take(lease, pod, epoch, how, MicroTime(Timestamp::now()));
    let written = leases
        .replace(
            &names::lease(&t.name_any()),
            &PostParams { field_manager: Some(MANAGER.into()), ..Default::default() },
            &l,
        )
        .await?;
    let kind = match reason {
        Reason::Initial => "initial",
        Reason::Released { .. } => "released",
        Reason::Expired { .. } => "expired",
        Reason::LeaseLost { .. } => "lease_lost",
    };
    ctx.metrics.failovers.get_or_create(&FailoverLabels { kind }).inc();
    let note = format!("{pod} is master at epoch {epoch}: {}", reason.describe());
    info!(name = %t.name_any(), %note, "lease handed over");
    let ev = |type_, reason: &str, note: String| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Promote".into(),
        secondary: None,
    };
    let events = if matches!(reason, Reason::Initial) {
        vec![ev(EventType::Normal, "MasterElected", note)]
    } else {
        ctx.metrics.failover_seconds.observe(noticed_for.as_secs_f64());
        vec![
            ev(EventType::Warning, "FailingOver", format!("{}; promoting {pod}", reason.describe())),
            ev(EventType::Normal, "FailedOver", note),
        ]
    };
    publish_in_background(ctx, t, events);
    Ok(written)
}

/// Applies the two PodDisruptionBudgets for `master` (build.rs `pdb`, `master_pdb`) when the
/// master or the generation changed since they were last applied, and every 30 s to repair.
pub(super) async fn ensure_pdbs(t: &TfsNameserver, ctx: &Context, master: &str) -> Result<()> {
    let k = key(t);
    let fresh =
        ctx.pdbs.lock().get(&k).is_some_and(|(m, g, at)| {
            m == master && *g == t.metadata.generation && at.elapsed() < Duration::from_secs(30)
        });
    if fresh {
        return Ok(());
    }
    let api = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    // The master's first. Between the two writes the new master is under both budgets (its
    // eviction would fail; it is not the one being drained) and the old master, the pod a drain
    // is waiting on, under none: its next eviction attempt goes through rather than failing the
    // drain with "more than one PodDisruptionBudget".
    ssa(&api, &build::master_pdb(t, Some(master))).await?;
    ssa(&api, &build::pdb(t, Some(master))).await?;
    ctx.pdbs.lock().insert(k, (master.to_string(), t.metadata.generation, Instant::now()));
    Ok(())
}
