//! The reconcile loop: dereference (read the resource and what it owns) → build (pure) → apply
//! (server-side apply, one field manager) → decide failover (pure) → act on the Lease and the VIP
//! → status. Wrapped in a finalizer so that deletion is observed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::build;
use crate::crd::{DeletePolicy, InstanceStatus, Phase, ReplicationMode, TfsNameserver, TfsNameserverStatus};
use crate::error::{Error, Result};
use crate::failover::{self, Decision, Reason};
use crate::instance::{self, Instance};
use crate::lease::{LeaseClock, LeaseView};
use crate::metrics::{ErrorLabels, FailoverLabels, Metrics};
use crate::names::{self, *};
use crate::settings::{self, Settings};
use crate::storage;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Per resource: when its Lease last changed, on this process's clock.
    pub clocks: Mutex<HashMap<String, LeaseClock>>,
    /// Per resource: the generation whose static objects were last applied, and when. Failover
    /// reconciles skip re-applying them, which keeps the path to a promotion short.
    pub applied: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    /// Per resource with TLS: the CA and the operator's client certificate for probing its pods.
    pub tls: Mutex<HashMap<String, Arc<certs::Material>>>,
    /// The operator's own namespace (POD_NAMESPACE), admitted to the instances' client port by
    /// their NetworkPolicy so that the operator's probes pass.
    pub operator_namespace: Option<String>,
    /// Per resource: where growing its volumes stands (the `StorageResized` condition).
    pub storage: Mutex<HashMap<String, storage::Plan>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() },
        );
        Context {
            client,
            recorder,
            metrics,
            clocks: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            tls: Mutex::new(HashMap::new()),
            operator_namespace: std::env::var("POD_NAMESPACE").ok(),
            storage: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the controller until a shutdown signal: over every namespace, or only over `namespace`
/// (a namespace-scoped install, whose RBAC is a Role there).
///
/// Called by the leader alone, once it leads (leader.rs), and at most once per process. It starts
/// from nothing — a new Context (no Lease clock, nothing applied, no storage plan) and new watches
/// — so a new leader never acts on what a predecessor, or this process as a standby, saw: every
/// heartbeat Lease is read again, and its expiry judged on this process's clock from its first
/// sighting (a full duration, unless the holder released it).
pub async fn run(client: Client, metrics: Arc<Metrics>, namespace: Option<String>) {
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let tfs = api::<TfsNameserver>(&client, ns);
    let ctx = Arc::new(Context::new(client.clone(), metrics));
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    Controller::new(tfs, watcher::Config::default())
        .owns(api::<Pod>(&client, ns), owned.clone())
        .owns(api::<Lease>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

pub fn error_policy(t: Arc<TfsNameserver>, e: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { category: e.category() }).inc();
    warn!(name = %t.name_any(), category = e.category(), error = %e, "reconcile error");
    Action::requeue(if e.category() == "conflict" { Duration::from_millis(50) } else { Duration::from_secs(2) })
}

pub async fn reconcile(t: Arc<TfsNameserver>, ctx: Arc<Context>) -> Result<Action> {
    let t0 = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = t.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<TfsNameserver> = Api::namespaced(ctx.client.clone(), &ns);
    let r = finalizer(&api, FINALIZER, t, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconcile_seconds.observe(t0.elapsed().as_secs_f64());
    r
}

/// Deletion: everything is owned by the resource and goes with it; forget our clock and say so.
async fn cleanup(t: &TfsNameserver, ctx: &Context) -> Result<Action> {
    ctx.clocks.lock().remove(&key(t));
    ctx.applied.lock().remove(&key(t));
    ctx.tls.lock().remove(&key(t));
    ctx.storage.lock().remove(&key(t));
    ctx.metrics.forget(&t.namespace().unwrap_or_default(), &t.name_any());
    event(
        ctx,
        t,
        EventType::Normal,
        "Deleting",
        "Deleting",
        "owned pods, volumes, services and the Lease are garbage-collected",
    )
    .await;
    Ok(Action::await_change())
}

fn key(t: &TfsNameserver) -> String {
    format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any())
}

async fn event(ctx: &Context, t: &TfsNameserver, type_: EventType, reason: &str, action: &str, note: &str) {
    let ev = Event { type_, reason: reason.into(), note: Some(note.into()), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &t.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish event");
    }
}

/// Server-side apply with the operator's one field manager.
async fn ssa<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    Ok(api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?)
}

/// Creates the object unless it exists (pods and claims are not updated in place).
async fn create_missing<K>(api: &Api<K>, obj: &K) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn observe(pods: &[Pod], name: &str, tls: Option<&certs::Material>) -> Vec<Instance> {
    let futs = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| {
        let pod = p.name_any();
        let ordinal = names::ordinal(name, &pod)?;
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let ready = pod_ready(p);
        Some(async move {
            // Over TLS the pod proves its own name (SNI asks for the pod's certificate).
            let cfg = tls.map(|m| {
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&m.ca))
                    .identity(tonic::transport::Identity::from_pem(&m.client.cert, &m.client.key))
                    .domain_name(pod.clone())
            });
            let status = match ip {
                Some(ip) => instance::probe(&ip, CLIENT_PORT, cfg).await,
                None => None,
            };
            Instance { pod, ordinal, ready, status }
        })
    });
    let mut v = futures::future::join_all(futs).await;
    v.sort_by_key(|i| i.ordinal);
    v
}

async fn apply(t: &TfsNameserver, ctx: &Context) -> Result<Action> {
    let client = ctx.client.clone();
    let ns = t.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = t.name_any();
    let replicas = t.spec.replicas.clamp(2, 5) as usize;

    // Apply what does not depend on who is master: on a new generation, or every 30 s to repair.
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let due = ctx
        .applied
        .lock()
        .get(&key(t))
        .is_none_or(|(g, at)| *g != t.metadata.generation || at.elapsed() > Duration::from_secs(30));
    if due {
        ssa(&Api::<ConfigMap>::namespaced(client.clone(), &ns), &build::config_map(t)).await?;
        ssa(&Api::<ServiceAccount>::namespaced(client.clone(), &ns), &build::service_account(t)).await?;
        ssa(&Api::<Role>::namespaced(client.clone(), &ns), &build::role(t)).await?;
        ssa(&Api::<RoleBinding>::namespaced(client.clone(), &ns), &build::role_binding(t)).await?;
        ssa(&services, &build::peers_service(t)).await?;
        ssa(&Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns), &build::pdb(t)).await?;
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
        if t.spec.tls.enabled {
            let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
            let vip_ip = services
                .get_opt(&names::vip(&name))
                .await?
                .and_then(|s| s.spec?.cluster_ip?.parse::<std::net::IpAddr>().ok());
            let m = certs::ensure(t, &secrets, replicas, vip_ip).await?;
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
    }
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let lease = match leases.get_opt(&names::lease(&name)).await? {
        Some(l) => l,
        None => {
            create_missing(&leases, &build::lease_object(t)).await?;
            leases.get(&names::lease(&name)).await?
        }
    };
    let lv = LeaseView::of(&lease);

    // Pods: one per ordinal; extra ones (scale down) go, the master last of all.
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default().labels(&selector_string(&name))).await?.items;
    let present: BTreeMap<usize, &Pod> =
        pods.iter().filter_map(|p| Some((names::ordinal(&name, &p.name_any())?, p))).collect();
    for i in 0..replicas {
        match present.get(&i) {
            None if create_missing(&pods_api, &build::pod(t, i)).await? => {
                info!(pod = %names::pod(&name, i), "pod created")
            }
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

    let tls = ctx.tls.lock().get(&key(t)).cloned();
    let instances = observe(&pods, &name, tls.as_deref()).await;
    // Scaling down the master's ordinal: a planned switchover to a kept, in-sync slave first
    // (nothing lost, no failover); the old master is then an extra slave and goes like the others.
    if let Some(target) = scale_down_target(&name, &lv, replicas, &instances)
        && lv.handover_to.as_deref() != Some(target.as_str())
    {
        ask_handover(t, &leases, &lease, &target).await?;
        let why = format!("scaling down to {replicas}: the master {} hands over to {target}", lv.holder);
        event(ctx, t, EventType::Normal, "SwitchingOver", "ScaleDown", &why).await;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let unchanged_for = ctx.clocks.lock().entry(key(t)).or_default().observe(&lv.resource_version, Instant::now());
    // Judge with the most conservative settings any running pod may still use (settings.rs).
    let running: Vec<Option<Settings>> =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(Settings::of_pod).collect();
    let judgement = settings::judgement(&Settings::of(t), &running);
    let lease_duration = judgement.lease_duration;
    let mut status = t.status.clone().unwrap_or_default();
    count_unrecorded_failovers(&mut status, &lv);

    if let Some(done) = switchover(t, ctx, &leases, &lease, &lv, &instances).await? {
        return Ok(done);
    }

    let decision = failover::decide(&failover::Input {
        lease: &lv,
        unchanged_for,
        lease_duration,
        instances: &instances,
        mode: judgement.mode,
    });
    let (phase, requeue) = match &decision {
        Decision::Steady { master, recheck } => {
            ensure_vip(t, &services, master, lv.transitions).await?;
            let healthy = instances.len() == replicas && instances.iter().all(|i| i.ready && i.status.is_some());
            if healthy {
                roll(t, ctx, &pods_api, &leases, &lease, &lv, &pods, master, replicas).await?;
            }
            (if healthy { Phase::Healthy } else { Phase::Degraded }, (*recheck).min(Duration::from_secs(2)))
        }
        Decision::Promote { pod, reason, epoch } => {
            promote(
                t,
                ctx,
                &leases,
                &lease,
                (pod, *epoch),
                reason,
                unchanged_for.saturating_sub(if matches!(reason, Reason::Expired { .. }) {
                    lease_duration
                } else {
                    Duration::ZERO
                }),
            )
            .await?;
            ensure_vip(t, &services, pod, *epoch).await?;
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
    // The status shows the Lease as this reconcile left it: read again only if it was changed.
    let lease_now = match decision {
        Decision::Promote { .. } => leases.get(&names::lease(&name)).await.map(|l| LeaseView::of(&l)).unwrap_or(lv),
        _ => lv,
    };
    let mut new_status = compute_status(t, &status, phase, &lease_now, &instances, replicas);
    new_status.conditions.push(settings_condition(t, &status, &judgement));
    if let Some(p) = ctx.storage.lock().get(&key(t)) {
        let c = condition(
            &status.conditions,
            "StorageResized",
            p.resized,
            p.reason,
            p.message.clone(),
            t.metadata.generation,
        );
        new_status.conditions.push(c);
    }
    ctx.metrics.observe(&ns, &name, &new_status, t.spec.replicas, lease_now.sync_set.len());
    if t.status.as_ref() != Some(&new_status) {
        let api: Api<TfsNameserver> = Api::namespaced(client, &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": new_status })))
            .await?;
    }
    Ok(Action::requeue(requeue))
}

/// Rolling image update, one step per healthy reconcile: slaves on an old image are replaced one
/// at a time (each must be back, ready and in the published sync set before the next goes); then
/// the master hands over to an updated slave (the switchover path: drained, nothing lost); the
/// old master, now a slave, is replaced last.
#[allow(clippy::too_many_arguments)]
async fn roll(
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

/// Counts epoch changes the status has not recorded yet (an operator that handed the Lease over
/// and died before writing its status), except planned switchovers. The status's epoch is
/// written together with the count, so each change is counted once.
pub fn count_unrecorded_failovers(status: &mut TfsNameserverStatus, lv: &LeaseView) {
    let recorded = status.epoch.unwrap_or(0);
    let now = lv.transitions as i64;
    if recorded >= 1 && now > recorded && lv.release_reason.as_deref() != Some("switchover") {
        status.failovers += now - recorded;
        status.last_failover_time = Some(Time(Timestamp::now()));
        status.last_failover_reason = Some(format!("epoch {recorded} -> {now} ({})", lv.holder));
        status.epoch = Some(now);
    }
}

/// Asks the master's heart to hand the Lease to `target` (conditioned on the version read).
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

async fn ask_handover(t: &TfsNameserver, leases: &Api<Lease>, lease: &Lease, target: &str) -> Result<()> {
    let mut l = lease.clone();
    let ann = l.metadata.annotations.get_or_insert_default();
    ann.insert(ANN_HANDOVER_TO.into(), target.to_string());
    ann.remove(ANN_HANDOVER_REFUSED);
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    leases.replace(&names::lease(&t.name_any()), &pp, &l).await?;
    Ok(())
}

/// Points the VIP Service at `master`, the master of `epoch` (only the operator writes this selector).
///
/// Invariant: the VIP moves only forward in epochs. It carries the epoch it serves (`tfs.io/epoch`);
/// a write for an older epoch is never made, and a write is conditioned on the resourceVersion it
/// was decided from, so a stale operator process (a deposed leader's request still in flight, or
/// one run with `--leader-elect=false` beside a leader) cannot move it back to a deposed master.
async fn ensure_vip(t: &TfsNameserver, services: &Api<Service>, master: &str, epoch: i32) -> Result<()> {
    let current = services.get_opt(&names::vip(&t.name_any())).await?;
    let selected = current.as_ref().and_then(|s| s.spec.as_ref()?.selector.as_ref()?.get(LABEL_POD).cloned());
    let served: Option<i32> =
        current.as_ref().and_then(|s| s.metadata.annotations.as_ref()?.get(ANN_EPOCH)?.parse().ok());
    if served.is_some_and(|e| e > epoch) {
        warn!(name = %t.name_any(), master, epoch, served, "the VIP already serves a newer epoch; not moving it back");
        return Ok(());
    }
    if selected.as_deref() == Some(master) && served == Some(epoch) {
        return Ok(());
    }
    let mut svc = build::vip_service(t, Some(master));
    svc.metadata.annotations.get_or_insert_default().insert(ANN_EPOCH.into(), epoch.to_string());
    svc.metadata.resource_version = current.and_then(|c| c.metadata.resource_version);
    ssa(services, &svc).await?;
    if selected.as_deref() != Some(master) {
        info!(name = %t.name_any(), master, epoch, "VIP moved");
    }
    Ok(())
}

/// Hands the Lease to `pod` at the next epoch, conditioned on the version we decided on: if
/// anyone changed the Lease meanwhile, the update fails (409) and we decide again.
async fn promote(
    t: &TfsNameserver,
    ctx: &Context,
    leases: &Api<Lease>,
    lease: &Lease,
    (pod, epoch): (&str, i32),
    reason: &Reason,
    noticed_for: Duration,
) -> Result<()> {
    let mut l = lease.clone();
    let spec = l.spec.get_or_insert_default();
    let now = MicroTime(Timestamp::now());
    spec.holder_identity = Some(pod.into());
    spec.lease_transitions = Some(epoch);
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(t.spec.lease.duration_seconds);
    let ann = l.metadata.annotations.get_or_insert_default();
    ann.insert(ANN_SYNC_SET.into(), String::new());
    ann.insert(ANN_SYNC_SET_VERSION.into(), "0".into());
    for k in [ANN_HANDOVER_TO, ANN_HANDOVER_REFUSED, ANN_RELEASE_REASON, ANN_RELEASED_BY] {
        ann.remove(k);
    }
    leases
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
    if matches!(reason, Reason::Initial) {
        event(ctx, t, EventType::Normal, "MasterElected", "Promote", &note).await;
    } else {
        ctx.metrics.failover_seconds.observe(noticed_for.as_secs_f64());
        event(ctx, t, EventType::Warning, "FailingOver", "Promote", &format!("{}; promoting {pod}", reason.describe()))
            .await;
        event(ctx, t, EventType::Normal, "FailedOver", "Promote", &note).await;
    }
    Ok(())
}

/// Planned switchover, asked for with the `tfs.io/switchover-to` annotation. The operator only
/// validates and asks; the master's heart drains its nameserver and hands the Lease over itself,
/// so no acknowledged write is in flight when the target takes over. Returns an action when the
/// reconcile should stop here.
async fn switchover(
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
    let api: Api<TfsNameserver> = Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let clear = serde_json::json!({ "metadata": { "annotations": { ANN_SWITCHOVER_TO: null } } });
    if lv.holder == target {
        api.patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&clear)).await?;
        if lv.release_reason.as_deref() == Some("switchover") || lv.handover_to.is_none() {
            event(
                ctx,
                t,
                EventType::Normal,
                "SwitchedOver",
                "Switchover",
                &format!("{target} is master at epoch {}", lv.transitions),
            )
            .await;
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
        api.patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&clear)).await?;
        return Ok(None);
    }
    if lv.handover_to.as_deref() != Some(&target) {
        ask_handover(t, leases, lease, &target).await?;
        event(
            ctx,
            t,
            EventType::Normal,
            "SwitchingOver",
            "Switchover",
            &format!("asked {} to hand over to {target}", lv.holder),
        )
        .await;
        let mut status = t.status.clone().unwrap_or_default();
        status.phase = Some(Phase::SwitchingOver);
        api.patch_status(
            &t.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    }
    Ok(Some(Action::requeue(Duration::from_millis(200))))
}

/// Raises the claims to `spec.storage.size` when their class expands, and keeps what the
/// `StorageResized` condition will say (see storage.rs).
async fn resize_volumes(t: &TfsNameserver, ctx: &Context, pvcs: &Api<PersistentVolumeClaim>) {
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

async fn plan_resize(t: &TfsNameserver, ctx: &Context, pvcs: &Api<PersistentVolumeClaim>) -> Result<storage::Plan> {
    let replicas = t.spec.replicas.clamp(2, 5) as usize;
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

/// `SettingsApplied`: whether every pod runs the resource's settings, and while not, how the
/// operator judges meanwhile.
fn settings_condition(t: &TfsNameserver, prev: &TfsNameserverStatus, j: &settings::Judgement) -> Condition {
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

fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
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
        epoch: Some(lv.transitions as i64),
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
                    Phase::FailingOver => format!("promoting a new master at epoch {}", lv.transitions),
                    Phase::SwitchingOver => format!("{} is handing the Lease over", lv.holder),
                    _ => format!("no master change in progress (epoch {})", lv.transitions),
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
    }
}

mod certs;
#[cfg(test)]
mod tests;
