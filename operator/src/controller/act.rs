//! Act, the fifth stage: the decision carried out. A steady master keeps the VIP and the budgets
//! (and, all healthy, the rolling update goes on, or a cordoned node switches over); a promotion
//! writes the Lease, then moves the VIP and the budgets to the new master and is counted in the
//! status; a blocked promotion is said (an Event).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;

use crate::build::VipTarget;
use crate::crd::{Phase, TfsNameserver, TfsNameserverStatus};
use crate::error::Result;
use crate::failover::{Decision, Reason};
use crate::names::LABEL_INCARNATION;
use crate::nodes::Cordon;

use super::decide::Decided;
use super::events::event;
use super::master::{ensure_pdbs, ensure_vip, promote};
use super::operations::{cordon_switchover, roll};
use super::{Context, Observed};

/// What acting on the decision did: the phase to report, when to look again, and the Lease as a
/// promotion wrote it (None: not written).
pub(super) struct Acted {
    pub phase: Phase,
    pub requeue: Duration,
    pub written: Option<Lease>,
}

/// Carries out the decision: a steady master keeps the VIP and the budgets (and, when all is
/// healthy, the rolling update goes on; a cordoned node switches over); a promotion writes the
/// Lease, then moves the VIP and the budgets, and is counted in `status`; a blocked one is said.
pub(super) async fn act(
    t: &TfsNameserver,
    ctx: &Context,
    o: &Observed,
    d: &Decided,
    handled: &[String],
    status: &mut TfsNameserverStatus,
) -> Result<Acted> {
    let ns = t.namespace().unwrap_or_default();
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let leases = Api::<Lease>::namespaced(ctx.client.clone(), &ns);
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let replicas = t.spec.instances();
    let (lv, instances, lease) = (&o.lv, &o.instances, &o.lease);
    let mut written = None;
    let (phase, requeue) = match &d.decision {
        Decision::Steady { master, recheck } => {
            ensure_vip(t, &services, vip_target(&o.pods, master), lv.epoch).await?;
            ensure_pdbs(t, ctx, master).await?;
            let healthy = instances.len() == replicas && instances.iter().all(|i| i.ready && i.status.is_some());
            if let Cordon::Switch { node, target } = &d.cordon {
                cordon_switchover(t, ctx, node, target, handled).await?;
                (Phase::SwitchingOver, Duration::from_millis(200))
            } else {
                if healthy {
                    roll(t, ctx, &pods_api, &leases, lease, lv, &o.pods, master, replicas).await?;
                }
                (if healthy { Phase::Healthy } else { Phase::Degraded }, (*recheck).min(Duration::from_secs(2)))
            }
        }
        Decision::Promote { pod, reason, epoch } => {
            // Since the failure was noticed (failover_seconds): an expiry is noticed once the Lease
            // has been unchanged for its duration.
            let expired = matches!(reason, Reason::Expired { .. });
            let noticed_for =
                o.unchanged_for.saturating_sub(if expired { o.judgement.lease_duration } else { Duration::ZERO });
            // The VIP moves right after the Lease (the promotion's Events go out on their own).
            written = Some(promote(t, ctx, &leases, lease, (pod, *epoch), reason, noticed_for).await?);
            ensure_vip(t, &services, vip_target(&o.pods, pod), *epoch).await?;
            ensure_pdbs(t, ctx, pod).await?;
            if !matches!(reason, Reason::Initial) {
                status.failovers += 1;
                status.last_failover_time = Some(Time(Timestamp::now()));
                status.last_failover_reason = Some(reason.describe());
            }
            (Phase::FailingOver, Duration::from_millis(200))
        }
        Decision::Blocked { why, reason } => {
            if !matches!(reason, Reason::Initial) {
                event(ctx, t, EventType::Warning, "PromotionBlocked", "Promote", why).await;
            }
            (if matches!(reason, Reason::Initial) { Phase::Creating } else { Phase::Degraded }, Duration::from_secs(1))
        }
    };
    Ok(Acted { phase, requeue, written })
}

/// The VIP's target for `master`: its pod as observed (the one the decision was made on), with that
/// pod's incarnation if it carries one (pods made by an operator before the label: by name only).
///
/// Invariant relied on: the observed pod of a master is the live incarnation. A promotion is
/// decided only for an instance whose status was just read at that pod's address, and a steady
/// master's holder is a process that took the Lease at this epoch — a pod made again under its
/// name cannot (it refuses an epoch whose records it already holds, and releases). A stale pick
/// here would pin the VIP to no pod until the next epoch, since the pin is not rewritten within one.
fn vip_target<'a>(pods: &'a [Pod], master: &'a str) -> VipTarget<'a> {
    let incarnation = pods.iter().find(|p| p.name_any() == master).and_then(|p| p.labels().get(LABEL_INCARNATION));
    VipTarget { pod: master, incarnation: incarnation.map(String::as_str) }
}
