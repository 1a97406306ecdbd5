//! Build → apply: the objects a TfsNameserver owns that do not depend on who is master (config,
//! RBAC, Services, network policy, claims, certificates) and its pods, built by build.rs and written
//! with server-side apply under the operator's one field manager (pods and claims: created when
//! missing, never updated in place).
//!
//! Invariant: the static objects are applied at first, on a new generation and every 30 s to repair
//! them, but that repair waits (5 s at most) while the Lease is released, so that a failover's
//! reconcile reaches the promotion first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use crate::crd::{DeletePolicy, TfsNameserver};
use crate::error::{Error, Result};
use crate::lease::LeaseView;
use crate::names::*;
use crate::{build, names, storage};

use super::events::event;
use super::{Context, certmanager, certs, key};

/// Server-side apply with the operator's one field manager.
pub(super) async fn ssa<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    Ok(api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?)
}

/// Creates the object unless it exists (pods and claims are not updated in place).
pub(super) async fn create_missing<K>(api: &Api<K>, obj: &K) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The static objects are applied again this often, to repair them.
pub(super) const REPAIR_EVERY: Duration = Duration::from_secs(30);

/// How long that repair may wait behind a failover under way.
pub(super) const REPAIR_WAITS_AT_MOST: Duration = Duration::from_secs(5);

/// Whether this reconcile applies the static objects, given when (at which generation, how long
/// ago) this process last did: at first, on a new generation, and every [`REPAIR_EVERY`] — but the
/// repair waits, for [`REPAIR_WAITS_AT_MOST`] at most, while the Lease is released (a failover
/// under way: its reconcile goes straight to the promotion).
pub fn repair_due(applied: Option<(Option<i64>, Duration)>, generation: Option<i64>, released: bool) -> bool {
    match applied {
        None => true,
        Some((g, _)) if g != generation => true,
        Some((_, ago)) => ago > REPAIR_EVERY && !(released && ago <= REPAIR_EVERY + REPAIR_WAITS_AT_MOST),
    }
}

/// The cert-manager issuer of a resource with TLS on, if it takes its certificates from there.
pub(super) fn cert_manager_issuer(t: &TfsNameserver) -> Option<&crate::crd::IssuerRef> {
    t.spec.tls.issuer_ref.as_ref().filter(|_| t.spec.tls.enabled)
}

/// spec.tls.issuerRef: applies (when `apply`) and reads the resource's cert-manager Certificates
/// (certmanager.rs), and keeps where they stand and, once issued, the client certificate the
/// operator probes the pods with (until then, or while it is being renewed, the previous one).
pub(super) async fn issue_with_cert_manager(
    t: &TfsNameserver,
    ctx: &Context,
    services: &Api<Service>,
    issuer: &crate::crd::IssuerRef,
    replicas: usize,
    apply: bool,
) -> Result<()> {
    let vip_ip = vip_ip(t, services).await?;
    let (issuance, material) = certmanager::ensure(t, &ctx.client, issuer, replicas, vip_ip, apply).await;
    if let Some(m) = material {
        ctx.tls.lock().insert(key(t), Arc::new(m));
    }
    let before = ctx.issuance.lock().insert(key(t), issuance.clone());
    if issuance.complete() && before.as_ref().is_none_or(|b| !b.complete()) {
        info!(name = %t.name_any(), issuer = %issuance.issuer, "cert-manager issued every certificate");
    }
    Ok(())
}

/// The VIP Service's cluster IP, which the certificates name. The Service is made first if it is
/// missing, selecting no pod (the promotion points it at the master, `ensure_vip`): certificates
/// issued before it existed would lack its IP, and be issued again at the next repair — or at once
/// by a new operator leader, in the middle of the failover it came for.
///
/// Invariant (the VIP moves only forward in epochs, master.rs `ensure_vip`): this creation never
/// moves the VIP. It happens only while no VIP exists (a 409 leaves the existing one alone), and
/// what it makes selects no pod and serves no epoch, so `ensure_vip` points it at the master of
/// any epoch (build tests: `vip_service(t, None)` selects `NO_MASTER`).
async fn vip_ip(t: &TfsNameserver, services: &Api<Service>) -> Result<Option<std::net::IpAddr>> {
    let name = names::vip(&t.name_any());
    let vip = match services.get_opt(&name).await? {
        Some(s) => Some(s),
        None => {
            create_missing(services, &build::vip_service(t, None)).await?;
            services.get_opt(&name).await?
        }
    };
    Ok(vip.and_then(|s| s.spec?.cluster_ip?.parse().ok()))
}

/// Raises the claims to `spec.storage.size` when their class expands, and keeps what the
/// `StorageResized` condition will say (see storage.rs).
pub(super) async fn resize_volumes(t: &TfsNameserver, ctx: &Context, pvcs: &Api<PersistentVolumeClaim>) {
    // Never fails the reconcile: a resize that cannot happen must not hold up what follows
    // (pods, the Lease, a failover). Problems become the StorageResized condition.
    let plan = match plan_resize(t, ctx, pvcs).await {
        Ok(plan) => plan,
        Err(e) => storage::Plan::failed(format!("cannot expand the volumes: {e}")),
    };
    let before = ctx.storage.lock().get(&key(t)).map(|p| p.reason);
    if !plan.expand.is_empty() {
        event(ctx, t, EventType::Normal, "ExpandingVolumes", "Resize", &plan.message).await;
    }
    if !plan.resized && plan.reason != "Expanding" && before != Some(plan.reason) {
        event(ctx, t, EventType::Warning, plan.reason, "Resize", &plan.message).await;
    }
    ctx.storage.lock().insert(key(t), plan);
}

pub(super) async fn plan_resize(
    t: &TfsNameserver,
    ctx: &Context,
    pvcs: &Api<PersistentVolumeClaim>,
) -> Result<storage::Plan> {
    let replicas = t.spec.instances();
    let name = t.name_any();
    // Claims of instances that exist: a retained claim of a removed ordinal is never mounted, so
    // a driver that grows volumes on the node would never finish it.
    let claims: Vec<PersistentVolumeClaim> = pvcs
        .list(&ListParams::default().labels(&selector_string(&name)))
        .await?
        .items
        .into_iter()
        .filter(|c| (0..replicas).any(|i| c.metadata.name.as_deref() == Some(names::pvc(&name, i).as_str())))
        .collect();
    let class_name = claims.iter().find_map(|c| c.spec.as_ref()?.storage_class_name.clone());
    let class = match &class_name {
        // A namespace-scoped install may not read classes: the plan then says so.
        Some(n) => match Api::<StorageClass>::all(ctx.client.clone()).get_opt(n).await {
            Ok(Some(c)) => storage::Class::Read(Box::new(c)),
            Ok(None) => storage::Class::Unreadable(format!("StorageClass {n} does not exist")),
            Err(e) => storage::Class::Unreadable(format!("cannot read StorageClass {n}: {e}")),
        },
        None => storage::Class::Unreadable("the claims name no StorageClass".into()),
    };
    let mut plan = storage::plan(&t.spec.storage.size, &claims, &class);
    for c in &plan.expand {
        let patch = serde_json::json!({ "spec": { "resources": { "requests": { "storage": t.spec.storage.size } } } });
        if let Err(e) = pvcs.patch(c, &PatchParams::default(), &Patch::Merge(&patch)).await {
            plan = storage::Plan::failed(format!("cannot expand {c}: {e}"));
            break;
        }
    }
    Ok(plan)
}

/// The objects that do not depend on who is master: applied at first, on a new generation, or
/// every 30 s to repair ([`repair_due`]); with cert-manager, its Certificates looked at until issued.
/// Returns where cert-manager's issuance stands (spec.tls.issuerRef only).
pub(super) async fn apply_owned(
    t: &TfsNameserver,
    ctx: &Context,
    lv: &LeaseView,
    replicas: usize,
) -> Result<Option<certmanager::Issuance>> {
    // Apply what does not depend on who is master: at first, on a new generation, or every 30 s to
    // repair. A released Lease is a failover under way: the repair waits (a few seconds at most)
    // so that this reconcile reaches the promotion first.
    let client = ctx.client.clone();
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let applied = ctx.applied.lock().get(&key(t)).copied();
    let due = repair_due(applied.map(|(g, at)| (g, at.elapsed())), t.metadata.generation, lv.released());
    if due {
        ssa(&Api::<ConfigMap>::namespaced(client.clone(), &ns), &build::config_map(t)).await?;
        ssa(&Api::<ServiceAccount>::namespaced(client.clone(), &ns), &build::service_account(t)).await?;
        ssa(&Api::<Role>::namespaced(client.clone(), &ns), &build::role(t)).await?;
        ssa(&Api::<RoleBinding>::namespaced(client.clone(), &ns), &build::role_binding(t)).await?;
        ssa(&services, &build::peers_service(t)).await?;
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
        if t.spec.network_policy.enabled {
            ssa(&policies, &build::network_policy(t, ctx.operator_namespace.as_deref())).await?;
        } else if policies
            .get_opt(&name)
            .await?
            .is_some_and(|p| p.owner_references().iter().any(|o| Some(&o.uid) == t.metadata.uid.as_ref()))
        {
            policies.delete(&name, &Default::default()).await?;
        }
        for i in 0..replicas {
            create_missing(&pvcs, &build::pvc(t, i)).await?;
        }
        resize_volumes(t, ctx, &pvcs).await;
        if let Some(issuer) = cert_manager_issuer(t) {
            issue_with_cert_manager(t, ctx, &services, issuer, replicas, true).await?;
        } else if t.spec.tls.enabled {
            let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
            let m = certs::ensure(t, &secrets, replicas, vip_ip(t, &services).await?).await?;
            ctx.tls.lock().insert(key(t), Arc::new(m));
        } else {
            ctx.tls.lock().remove(&key(t));
        }
        // The delete policy may change: every claim of this resource follows the current one.
        let owners = build::pvc_owners(t);
        for c in pvcs.list(&ListParams::default().labels(&selector_string(&name))).await?.items {
            if c.metadata.owner_references.as_ref().filter(|o| !o.is_empty()) != owners.as_ref() {
                let patch = serde_json::json!({ "metadata": { "ownerReferences": owners } });
                pvcs.patch(&c.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        ctx.applied.lock().insert(key(t), (t.metadata.generation, Instant::now()));
    } else if let Some(issuer) = cert_manager_issuer(t) {
        // Until every Certificate is issued, look again at each reconcile (applying them again
        // only after a failure: cert-manager absent, no permission).
        let last = ctx.issuance.lock().get(&key(t)).map(|i| (i.complete(), i.problem.is_some()));
        if last.is_none_or(|(complete, _)| !complete) {
            let apply = last.is_none_or(|(_, problem)| problem);
            issue_with_cert_manager(t, ctx, &services, issuer, replicas, apply).await?;
        }
    }
    Ok(cert_manager_issuer(t).map(|_| ctx.issuance.lock().get(&key(t)).cloned().unwrap_or_default()))
}

/// The pods as listed, after making the missing ones (one per ordinal, each after its claim) and
/// deleting the ended ones and those beyond `replicas` (scale down: the master last of all).
pub(super) async fn apply_pods(
    t: &TfsNameserver,
    ctx: &Context,
    lv: &LeaseView,
    issuance: Option<&certmanager::Issuance>,
    replicas: usize,
) -> Result<Vec<Pod>> {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    // Pods: one per ordinal; extra ones (scale down) go, the master last of all.
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default().labels(&selector_string(&name))).await?.items;
    let present: BTreeMap<usize, &Pod> =
        pods.iter().filter_map(|p| Some((names::ordinal(&name, &p.name_any())?, p))).collect();
    for i in 0..replicas {
        match present.get(&i) {
            // With cert-manager, a pod waits for its Secrets (the status says which).
            None if issuance.is_some_and(|x| !x.has(&certmanager::pod_needs(t, i))) => {
                debug!(pod = %names::pod(&name, i), "waiting for cert-manager to issue its certificates");
            }
            // The claim first: a replaced instance's claim was deleted, and may still be going
            // (its protection finalizer outlives the pod by a moment): then the pod waits, for
            // a pod made now would name the claim on its way out.
            None => match pvcs.get_opt(&names::pvc(&name, i)).await? {
                Some(c) if c.metadata.deletion_timestamp.is_some() => {
                    info!(claim = %names::pvc(&name, i), "waiting for the old claim to go before creating the pod")
                }
                claim => {
                    if claim.is_none() && create_missing(&pvcs, &build::pvc(t, i)).await? {
                        info!(claim = %names::pvc(&name, i), "claim created");
                    }
                    // Each creation a new incarnation (names.rs LABEL_INCARNATION: what the VIP pins).
                    let mut pod = build::pod(t, i);
                    pod.labels_mut().insert(LABEL_INCARNATION.into(), names::new_incarnation());
                    if create_missing(&pods_api, &pod).await? {
                        info!(pod = %names::pod(&name, i), "pod created")
                    }
                }
            },
            Some(p) if matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded")) => {
                pods_api.delete(&p.name_any(), &DeleteParams::default()).await?;
            }
            _ => {}
        }
    }
    for (&i, p) in present.iter().filter(|(i, _)| **i >= replicas) {
        if p.name_any() != lv.holder && p.metadata.deletion_timestamp.is_none() {
            info!(pod = %p.name_any(), policy = ?t.spec.storage.delete_policy, "scaling down");
            pods_api.delete(&p.name_any(), &DeleteParams::default()).await?;
            if t.spec.storage.delete_policy == DeletePolicy::Delete {
                let _ = pvcs.delete(&names::pvc(&name, i), &DeleteParams::default()).await;
            }
        }
    }
    Ok(pods)
}
