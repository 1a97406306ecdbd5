//! Events about a TfsNameserver: published inline, or from a task of their own when they must not
//! stand between a promotion and the VIP's move; Warnings about nodes published once while they last.
//!
//! The recorder folds an Event into an earlier one of the same type, reason, action and objects for
//! 6 minutes: an Event naming a second object (a pod, a node) keeps two instances' Events apart.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::warn;

use crate::crd::TfsNameserver;

use super::{Context, key};

pub(super) async fn event(ctx: &Context, t: &TfsNameserver, type_: EventType, reason: &str, action: &str, note: &str) {
    publish(
        ctx,
        t,
        Event { type_, reason: reason.into(), note: Some(note.into()), action: action.into(), secondary: None },
    )
    .await
}

/// An Event about `t` naming a second object (the instance's pod, a node). The recorder folds an
/// Event into an earlier one of the same type, reason, action and objects for 6 minutes (a count
/// rises, the first note stays): naming the object keeps two instances' or two nodes' Events apart.
pub(super) async fn event_about(
    ctx: &Context,
    t: &TfsNameserver,
    type_: EventType,
    (reason, action): (&str, &str),
    related: ObjectReference,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: Some(related),
    };
    publish(ctx, t, ev).await
}

/// What a pod or node Event names as its second object.
pub(super) fn reference(kind: &str, name: &str, namespace: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace,
        ..Default::default()
    }
}

pub(super) fn pod_ref(t: &TfsNameserver, pod: &str) -> ObjectReference {
    reference("Pod", pod, t.namespace())
}

pub(super) fn node_ref(node: &str) -> ObjectReference {
    reference("Node", node, None)
}

pub(super) async fn publish(ctx: &Context, t: &TfsNameserver, ev: Event) {
    let reason = ev.reason.clone();
    if let Err(e) = ctx.recorder.publish(&ev, &t.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish event");
    }
}

/// Publishes `events` about `t`, in this order, from a task of their own (best effort, as every
/// Event: a failure is logged).
pub(super) fn publish_in_background(ctx: &Context, t: &TfsNameserver, events: Vec<Event>) {
    let recorder = ctx.recorder.clone();
    let reference = t.object_ref(&());
    tokio::spawn(async move {
        for ev in events {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                warn!(error = %e, reason = ev.reason, "cannot publish event");
            }
        }
    });
}

/// Publishes each Warning about nodes once while it lasts (the reconcile runs every second or two).
pub(super) async fn warn_once(t: &TfsNameserver, ctx: &Context, warnings: &[(&str, ObjectReference, String)]) {
    let now: BTreeSet<String> = warnings.iter().map(|(_, _, m)| m.clone()).collect();
    let before = ctx.reported.lock().insert(key(t), now).unwrap_or_default();
    for (reason, related, note) in warnings.iter().filter(|(_, _, m)| !before.contains(m)) {
        warn!(name = %t.name_any(), reason, %note, "instance or node problem");
        event_about(ctx, t, EventType::Warning, (reason, "Diagnose"), related.clone(), note).await;
    }
}
