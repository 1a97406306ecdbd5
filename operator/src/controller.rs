//! The reconcile loop: dereference (read the resource and what it owns) → build (pure) → apply
//! (server-side apply, one field manager) → decide failover (pure) → act on the Lease and the VIP
//! → status. Wrapped in a finalizer so that deletion is observed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, ObjectReference, PersistentVolumeClaim, Pod, Service, ServiceAccount,
};
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
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::build;
use crate::crd::{DeletePolicy, InstanceStatus, Phase, ReplicationMode, TfsNameserver, TfsNameserverStatus};
use crate::error::{Error, Result};
use crate::failover::{self, Decision, Reason};
use crate::instance::{self, Instance};
use crate::lease::split_set;
use crate::lease::{LeaseClock, LeaseView, Sightings, Taken};
use crate::metrics::{ErrorLabels, FailoverLabels, Metrics};
use crate::names::{self, *};
use crate::nodes::{self, Cordon, Nodes, Trouble};
use crate::settings::{self, Settings};
use crate::storage;

/// The master the PodDisruptionBudgets were applied for, the generation, when.
pub type PdbsApplied = (String, Option<i64>, Instant);

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Per heartbeat Lease (`namespace/name`, [`Sightings::key`]): when it last changed, on this
    /// process's clock — from this process's own sightings only, those it made as a standby
    /// included (standby.rs).
    pub clocks: Mutex<HashMap<String, LeaseClock>>,
    /// Per resource: the generation whose static objects were last applied, and when. Failover
    /// reconciles skip re-applying them, which keeps the path to a promotion short.
    pub applied: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    /// Per resource with TLS: the CA and the operator's client certificate for probing its pods.
    pub tls: Mutex<HashMap<String, Arc<certs::Material>>>,
    /// Per resource with spec.tls.issuerRef: where its cert-manager Certificates stand.
    pub issuance: Mutex<HashMap<String, certmanager::Issuance>>,
    /// The operator's own namespace (POD_NAMESPACE), admitted to the instances' client port by
    /// their NetworkPolicy so that the operator's probes pass.
    pub operator_namespace: Option<String>,
    /// Per resource: where growing its volumes stands (the `StorageResized` condition).
    pub storage: Mutex<HashMap<String, storage::Plan>>,
    /// Every Node, as watched (None: the operator may not read Nodes; then it neither switches
    /// over before a drain nor explains lost instances, and says so).
    pub nodes: Option<Store<Node>>,
    /// Per resource: the master its two PodDisruptionBudgets were last applied for, at which
    /// generation, and when (applied again when any changes, and every 30 s to repair).
    pub pdbs: Mutex<HashMap<String, PdbsApplied>>,
    /// Per resource: the Warning messages about nodes (lost instances, a blocked cordon
    /// switchover) already published, so that each is published once while it lasts.
    pub reported: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Per resource: instances replaced (`tfs.io/replace-instance`) and not back yet, for the
    /// `InstanceReplaced` Event.
    pub replacing: Mutex<HashMap<String, BTreeSet<String>>>,
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
            issuance: Mutex::new(HashMap::new()),
            operator_namespace: std::env::var("POD_NAMESPACE").ok(),
            storage: Mutex::new(HashMap::new()),
            nodes: None,
            pdbs: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            replacing: Mutex::new(HashMap::new()),
        }
    }

    /// The nodes as watched; unknown until the first list completed (a node missing from an
    /// empty cache must not read as deleted).
    fn nodes(&self) -> Nodes {
        match &self.nodes {
            Some(s) if s.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok()) => {
                Nodes::of(s.state().iter().map(|n| n.as_ref()))
            }
            _ => Nodes::unknown(),
        }
    }
}

/// Runs the controller until a shutdown signal: over every namespace, or only over `namespace`
/// (a namespace-scoped install, whose RBAC is a Role there).
///
/// Called by the leader alone, once it leads (leader.rs), and at most once per process. It starts
/// from nothing a predecessor saw — a new Context (nothing applied, no storage plan) and new
/// watches: every heartbeat Lease is read again. Its expiry is judged on this process's clock from
/// this process's own sightings: `sightings`, what it watched while standing by (standby.rs: "version V
/// unchanged since my instant T", each reset by a watch restart), seed the Lease clocks; a Lease
/// read at another version than seen starts from zero (a full duration, unless the holder released
/// it). Without sightings (no election, or none made) every Lease starts from zero.
pub async fn run(client: Client, metrics: Arc<Metrics>, namespace: Option<String>, sightings: Sightings) {
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
    let mut ctx = Context::new(client.clone(), metrics);
    if !sightings.is_empty() {
        info!(leases = sightings.len(), "heartbeat Leases are judged from the sightings made while standing by");
    }
    ctx.clocks = Mutex::new(sightings.into_clocks());
    // Nodes, read-only and cluster-scoped (the chart grants it, also with watchNamespace, unless
    // rbac.readNodes is false): without them the operator runs as before, minus what needs them.
    let node_api = Api::<Node>::all(client.clone());
    let node_triggers = match node_api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => {
            let (store, writer) = reflector::store();
            ctx.nodes = Some(store);
            Some(node_changes(node_api, writer))
        }
        Err(e) => {
            warn!(error = %e, "cannot read Nodes: no switchover before a drain of the master's node, no diagnosis of lost instances");
            None
        }
    };
    let ctx = Arc::new(ctx);
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let mut controller = Controller::new(tfs, watcher::Config::default())
        .owns(api::<Pod>(&client, ns), owned.clone())
        .owns(api::<Lease>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned);
    if let Some(changes) = node_triggers {
        // Few resources, rare node changes: every resource looks again.
        controller = controller.reconcile_all_on(changes);
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Watches the Nodes into `writer` (the Context's cache) and yields once each time a node is
/// cordoned or uncordoned, changes readiness, appears or goes, and when a (re)list completes.
/// Other changes (status heartbeats, images) trigger nothing. What is kept of a node is what
/// the decisions read: the image list and managed fields are dropped.
fn node_changes(api: Api<Node>, writer: reflector::store::Writer<Node>) -> impl Stream<Item = ()> + Send + 'static {
    let mut seen: HashMap<String, (bool, Option<String>)> = HashMap::new();
    let signature = |n: &Node| {
        let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        (cordoned, ready)
    };
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|n: &mut Node| {
            n.metadata.managed_fields = None;
            if let Some(s) = n.status.as_mut() {
                s.images = None;
            }
        })
        .reflect(writer)
        .filter_map(move |ev| {
            let fire = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                    let sig = signature(&n);
                    seen.insert(n.name_any(), sig.clone()) != Some(sig)
                }
                Ok(watcher::Event::Delete(n)) => {
                    seen.remove(&n.name_any());
                    true
                }
                Ok(watcher::Event::InitDone) => true,
                Ok(watcher::Event::Init) => false,
                Err(e) => {
                    warn!(error = %e, "watching Nodes");
                    false
                }
            };
            futures::future::ready(fire.then_some(()))
        })
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
    ctx.clocks.lock().remove(&lease_key(t));
    ctx.applied.lock().remove(&key(t));
    ctx.tls.lock().remove(&key(t));
    ctx.issuance.lock().remove(&key(t));
    ctx.storage.lock().remove(&key(t));
    ctx.pdbs.lock().remove(&key(t));
    ctx.reported.lock().remove(&key(t));
    ctx.replacing.lock().remove(&key(t));
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

/// The key of the resource's heartbeat Lease in `Context::clocks` (as a standby's sightings key it).
fn lease_key(t: &TfsNameserver) -> String {
    Sightings::key(&t.namespace().unwrap_or_default(), &names::lease(&t.name_any()))
}

async fn event(ctx: &Context, t: &TfsNameserver, type_: EventType, reason: &str, action: &str, note: &str) {
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
async fn event_about(
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
fn reference(kind: &str, name: &str, namespace: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace,
        ..Default::default()
    }
}

fn pod_ref(t: &TfsNameserver, pod: &str) -> ObjectReference {
    reference("Pod", pod, t.namespace())
}

fn node_ref(node: &str) -> ObjectReference {
    reference("Node", node, None)
}

async fn publish(ctx: &Context, t: &TfsNameserver, ev: Event) {
    let reason = ev.reason.clone();
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

/// The static objects are applied again this often, to repair them.
const REPAIR_EVERY: Duration = Duration::from_secs(30);
/// How long that repair may wait behind a failover under way.
const REPAIR_WAITS_AT_MOST: Duration = Duration::from_secs(5);

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

async fn apply(t: &TfsNameserver, ctx: &Context) -> Result<Action> {
    let client = ctx.client.clone();
    let ns = t.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = t.name_any();
    let replicas = t.spec.replicas.clamp(2, 5) as usize;

    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let lease = match leases.get_opt(&names::lease(&name)).await? {
        Some(l) => l,
        None => {
            create_missing(&leases, &build::lease_object(t)).await?;
            leases.get(&names::lease(&name)).await?
        }
    };
    let lv = LeaseView::of(&lease);

    // Apply what does not depend on who is master: at first, on a new generation, or every 30 s to
    // repair. A released Lease is a failover under way: the repair waits (a few seconds at most)
    // so that this reconcile reaches the promotion first.
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
    } else if let Some(issuer) = cert_manager_issuer(t) {
        // Until every Certificate is issued, look again at each reconcile (applying them again
        // only after a failure: cert-manager absent, no permission).
        let last = ctx.issuance.lock().get(&key(t)).map(|i| (i.complete(), i.problem.is_some()));
        if last.is_none_or(|(complete, _)| !complete) {
            let apply = last.is_none_or(|(_, problem)| problem);
            issue_with_cert_manager(t, ctx, &services, issuer, replicas, apply).await?;
        }
    }
    let issuance = cert_manager_issuer(t).map(|_| ctx.issuance.lock().get(&key(t)).cloned().unwrap_or_default());

    // Pods: one per ordinal; extra ones (scale down) go, the master last of all.
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default().labels(&selector_string(&name))).await?.items;
    let present: BTreeMap<usize, &Pod> =
        pods.iter().filter_map(|p| Some((names::ordinal(&name, &p.name_any())?, p))).collect();
    for i in 0..replicas {
        match present.get(&i) {
            // With cert-manager, a pod waits for its Secrets (the status says which).
            None if issuance.as_ref().is_some_and(|x| !x.has(&certmanager::pod_needs(t, i))) => {
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
                    if create_missing(&pods_api, &build::pod(t, i)).await? {
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
    let unchanged_for =
        ctx.clocks.lock().entry(lease_key(t)).or_default().observe(&lv.resource_version, Instant::now());
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

    let node_view = ctx.nodes();
    let placed: BTreeMap<String, String> =
        pods.iter().filter_map(|p| Some((p.name_any(), nodes::pod_node(p)?.to_string()))).collect();
    let at = Targets { pods: &pods, pods_api: &pods_api, pvcs: &pvcs, placed: &placed, nodes: &node_view };
    if let Some(done) = replace(t, ctx, &at, &lv, &instances, replicas).await? {
        return Ok(done);
    }
    let troubles = diagnose(t, &at, &present, &instances, replicas).await?;
    announce_replaced(t, ctx, &lv, &instances, &placed).await;

    let decision = failover::decide(&failover::Input {
        lease: &lv,
        unchanged_for,
        lease_duration,
        instances: &instances,
        mode: judgement.mode,
        restore: backup_status::restore_first(t, &pods, &lv),
    });
    // The master's node cordoned (a drain begins): a planned switchover first, once per cordon.
    let recorded = split_set(t.annotations().get(ANN_CORDON_SWITCHOVER).map(String::as_str).unwrap_or(""));
    let handled = nodes::still_cordoned(&recorded, &node_view);
    if handled != recorded {
        let value = (!handled.is_empty()).then(|| handled.join(","));
        let patch = serde_json::json!({ "metadata": { "annotations": { ANN_CORDON_SWITCHOVER: value } } });
        Api::<TfsNameserver>::namespaced(client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let cordon = match (&decision, &lv.handover_to) {
        (Decision::Steady { master, .. }, None) => nodes::cordon(&nodes::CordonInput {
            master,
            instances: &instances,
            placed: &placed,
            nodes: &node_view,
            lease: &lv,
            mode: judgement.mode,
            handled: &handled,
        }),
        (Decision::Steady { .. }, Some(to)) => Cordon::Unknown(format!("{} is handing over to {to}", lv.holder)),
        _ => Cordon::Unknown("no master serving: a failover decides".into()),
    };
    let mut written = None;
    let (phase, requeue) = match &decision {
        Decision::Steady { master, recheck } => {
            ensure_vip(t, &services, master, lv.transitions).await?;
            ensure_pdbs(t, ctx, master).await?;
            let healthy = instances.len() == replicas && instances.iter().all(|i| i.ready && i.status.is_some());
            if let Cordon::Switch { node, target } = &cordon {
                cordon_switchover(t, ctx, node, target, &handled).await?;
                (Phase::SwitchingOver, Duration::from_millis(200))
            } else {
                if healthy {
                    roll(t, ctx, &pods_api, &leases, &lease, &lv, &pods, master, replicas).await?;
                }
                (if healthy { Phase::Healthy } else { Phase::Degraded }, (*recheck).min(Duration::from_secs(2)))
            }
        }
        Decision::Promote { pod, reason, epoch } => {
            // The VIP moves right after the Lease (the promotion's Events go out on their own).
            written = Some(
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
                .await?,
            );
            ensure_vip(t, &services, pod, *epoch).await?;
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
    // The status shows the Lease as this reconcile left it: as the promotion wrote it, if it did.
    let lease_now = written.as_ref().map(LeaseView::of).unwrap_or(lv);
    let mut new_status = compute_status(t, &status, phase, &lease_now, &instances, replicas);
    if phase == Phase::Degraded && !troubles.is_empty() {
        explain_degraded(&mut new_status, &troubles);
    }
    new_status.conditions.push(settings_condition(t, &status, &judgement));
    new_status.conditions.push(cordon_condition(t, &status, &cordon));
    let mut warnings: Vec<(&str, ObjectReference, String)> = troubles
        .iter()
        .map(|x| {
            let reason = if x.lost { "InstanceLost" } else { "InstanceUnschedulable" };
            (reason, pod_ref(t, &x.pod), x.message.clone())
        })
        .collect();
    if let Cordon::Blocked { node, .. } = &cordon {
        warnings.push(("CordonSwitchoverBlocked", node_ref(node), cordon_message(&cordon, &name)));
    }
    warn_once(t, ctx, &warnings).await;
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
    if let Some(x) = &issuance {
        let c = certificates_condition(t, &status, x);
        let before = status.conditions.iter().find(|p| p.type_ == c.type_).map(|p| p.reason.clone());
        if c.status == "False" && x.problem.is_some() && before.as_deref() != Some(c.reason.as_str()) {
            warn!(name = %name, reason = %c.reason, message = %c.message, "certificates");
            event(ctx, t, EventType::Warning, &c.reason, "Certificates", &c.message).await;
        }
        new_status.conditions.push(c);
    }
    backup_status::report(t, ctx, &status, &mut new_status, &lease_now, &instances, &pods).await;
    ctx.metrics.observe(&ns, &name, &new_status, t.spec.replicas, lease_now.sync_set.len());
    if t.status.as_ref() != Some(&new_status) {
        let api: Api<TfsNameserver> = Api::namespaced(client, &ns);
        let mut patch = serde_json::json!({ "status": new_status });
        // A merge patch keeps what it does not name: a report of an archive no longer asked for goes.
        if new_status.backup.is_none() {
            patch["status"]["backup"] = serde_json::Value::Null;
        }
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(Action::requeue(requeue))
}

/// The cert-manager issuer of a resource with TLS on, if it takes its certificates from there.
fn cert_manager_issuer(t: &TfsNameserver) -> Option<&crate::crd::IssuerRef> {
    t.spec.tls.issuer_ref.as_ref().filter(|_| t.spec.tls.enabled)
}

/// spec.tls.issuerRef: applies (when `apply`) and reads the resource's cert-manager Certificates
/// (certmanager.rs), and keeps where they stand and, once issued, the client certificate the
/// operator probes the pods with (until then, or while it is being renewed, the previous one).
async fn issue_with_cert_manager(
    t: &TfsNameserver,
    ctx: &Context,
    services: &Api<Service>,
    issuer: &crate::crd::IssuerRef,
    replicas: usize,
    apply: bool,
) -> Result<()> {
    let vip_ip = services
        .get_opt(&names::vip(&t.name_any()))
        .await?
        .and_then(|s| s.spec?.cluster_ip?.parse::<std::net::IpAddr>().ok());
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

/// `CertificatesReady` (only with spec.tls.issuerRef): whether cert-manager issued every
/// Certificate, and if not, which are awaited and why.
fn certificates_condition(t: &TfsNameserver, prev: &TfsNameserverStatus, x: &certmanager::Issuance) -> Condition {
    let (ok, reason, message) = x.condition();
    condition(&prev.conditions, "CertificatesReady", ok, reason, message, t.metadata.generation)
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
    if recorded >= 1 && now > recorded && lv.release_reason.as_deref() != Some(crate::lease::SWITCHOVER) {
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
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    leases.replace(&names::lease(&t.name_any()), &pp, &crate::lease::ask_handover(lease, target)).await?;
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
/// anyone changed the Lease meanwhile, the update fails (409) and we decide again. Returns the
/// Lease as written. The Events (MasterElected, or FailingOver then FailedOver) are published by
/// a task of their own, so that they do not stand between the promotion and the VIP's move.
async fn promote(
    t: &TfsNameserver,
    ctx: &Context,
    leases: &Api<Lease>,
    lease: &Lease,
    (pod, epoch): (&str, i32),
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

/// Publishes `events` about `t`, in this order, from a task of their own (best effort, as every
/// Event: a failure is logged).
fn publish_in_background(ctx: &Context, t: &TfsNameserver, events: Vec<Event>) {
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
        if lv.release_reason.as_deref() == Some(crate::lease::SWITCHOVER) || lv.handover_to.is_none() {
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

/// What the node-related steps read (the pods and where they run, the nodes) and act through.
struct Targets<'a> {
    pods: &'a [Pod],
    pods_api: &'a Api<Pod>,
    pvcs: &'a Api<PersistentVolumeClaim>,
    /// Pod name → the node it is bound to.
    placed: &'a BTreeMap<String, String>,
    nodes: &'a Nodes,
}

/// Applies the two PodDisruptionBudgets for `master` (build.rs `pdb`, `master_pdb`) when the
/// master or the generation changed since they were last applied, and every 30 s to repair.
async fn ensure_pdbs(t: &TfsNameserver, ctx: &Context, master: &str) -> Result<()> {
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

/// The master's node is cordoned: ask for a planned switchover to `target` through the
/// `tfs.io/switchover-to` path (validated again, drained by the master's heart, `SwitchedOver`),
/// and record the node in `tfs.io/cordon-switchover` in the same write, so that this cordon
/// never makes a second switchover, whatever becomes of this one.
async fn cordon_switchover(
    t: &TfsNameserver,
    ctx: &Context,
    node: &str,
    target: &str,
    handled: &[String],
) -> Result<()> {
    let record: Vec<&str> = handled.iter().map(String::as_str).chain([node]).collect();
    let patch = serde_json::json!({ "metadata": { "annotations": {
        ANN_SWITCHOVER_TO: target,
        ANN_CORDON_SWITCHOVER: record.join(","),
    } } });
    Api::<TfsNameserver>::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default())
        .patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let note = format!("master's node {node} is cordoned: switching over to {target}");
    info!(name = %t.name_any(), %note, "cordon switchover");
    event_about(ctx, t, EventType::Normal, ("CordonSwitchover", "Switchover"), node_ref(node), &note).await;
    Ok(())
}

/// What the `MasterNodeCordoned` condition (and the `CordonSwitchoverBlocked` Event) says.
fn cordon_message(c: &Cordon, name: &str) -> String {
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

fn cordon_condition(t: &TfsNameserver, prev: &TfsNameserverStatus, c: &Cordon) -> Condition {
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

/// Instances that are not serving and whose node (or volume's node) says why (nodes.rs `diagnose`).
async fn diagnose(
    t: &TfsNameserver,
    at: &Targets<'_>,
    present: &BTreeMap<usize, &Pod>,
    instances: &[Instance],
    replicas: usize,
) -> Result<Vec<Trouble>> {
    if !at.nodes.known() {
        return Ok(Vec::new());
    }
    let name = t.name_any();
    let mut out = Vec::new();
    for i in 0..replicas {
        let pod_name = names::pod(&name, i);
        if instances.iter().any(|x| x.pod == pod_name && x.ready && x.status.is_some()) {
            continue;
        }
        let pod = present.get(&i).copied();
        // Only an unbound pod is explained by its volume's node; a claim on its way out (a
        // replacement) explains nothing any more.
        let claim = match pod.and_then(nodes::pod_node) {
            None => at.pvcs.get_opt(&names::pvc(&name, i)).await?.filter(|c| c.metadata.deletion_timestamp.is_none()),
            Some(_) => None,
        };
        out.extend(nodes::diagnose(&name, &pod_name, pod, claim.as_ref(), at.nodes));
    }
    Ok(out)
}

/// The Degraded condition names the lost instances, their nodes, and the action.
fn explain_degraded(st: &mut TfsNameserverStatus, troubles: &[Trouble]) {
    if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == "Degraded") {
        c.reason = if troubles.iter().any(|x| x.lost) { "InstanceLost" } else { "InstanceUnschedulable" }.into();
        c.message = troubles.iter().map(|x| x.message.as_str()).collect::<Vec<_>>().join("; ");
    }
}

/// Publishes each Warning about nodes once while it lasts (the reconcile runs every second or two).
async fn warn_once(t: &TfsNameserver, ctx: &Context, warnings: &[(&str, ObjectReference, String)]) {
    let now: BTreeSet<String> = warnings.iter().map(|(_, _, m)| m.clone()).collect();
    let before = ctx.reported.lock().insert(key(t), now).unwrap_or_default();
    for (reason, related, note) in warnings.iter().filter(|(_, _, m)| !before.contains(m)) {
        warn!(name = %t.name_any(), reason, %note, "instance or node problem");
        event_about(ctx, t, EventType::Warning, (reason, "Diagnose"), related.clone(), note).await;
    }
}

/// Replacement of a lost instance, asked for with `tfs.io/replace-instance` (`kubectl tfs
/// replace`): if `nodes::replace_check` allows it, deletes the instance's claim and force-deletes
/// its pod (grace 0, conditioned on the uid judged: a pod on a lost node stays Terminating
/// otherwise), then removes the annotation; the reconciles that follow make a new claim (bound
/// where the new pod is scheduled) and pod, which joins as a slave and is seeded by the master.
/// A refusal is an Event `ReplaceRejected`, and the annotation goes too.
async fn replace(
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
    let api: Api<TfsNameserver> = Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let clear = serde_json::json!({ "metadata": { "annotations": { ANN_REPLACE_INSTANCE: null } } });
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
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await?;
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
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await?;
    Ok(Some(Action::requeue(Duration::from_millis(500))))
}

/// `InstanceReplaced`, once a replaced instance is back: ready, a slave, in the published sync
/// set (Sync mode). Known only to the operator process that made the replacement.
async fn announce_replaced(
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
    condition_of(prev, type_, if ok { "True" } else { "False" }, reason, message, generation)
}

/// A condition of any status (True, False, Unknown), keeping its transition time while the
/// status stays.
fn condition_of(
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
        backup: None,
    }
}

mod backup_status;
mod certmanager;
mod certs;
#[cfg(test)]
mod tests;
