//! The controller of TfsNameservers. A reconcile is a pipeline, one stage per module:
//!
//! 1. observe (observe.rs): the heartbeat Lease, each instance as its pod and nameserver report
//!    it, the nodes; nothing is written there but a missing Lease;
//! 2. build → apply (resources.rs; the objects themselves are build.rs's, pure): what does not
//!    depend on who is master, then the pods, server-side applied under one field manager;
//! 3. planned operations (operations.rs): scale-down handover, switchover, replacement of a lost
//!    instance, the rolling update; the first three end the reconcile when they act;
//! 4. decide (decide.rs, pure): who is master (failover.rs) and whether a cordon asks a switchover;
//! 5. act (act.rs): the decision carried out — the promotion (a Lease write, lease.rs's protocol,
//!    master.rs), then the VIP and the PodDisruptionBudgets moved to the master;
//! 6. status (status.rs): computed from what was observed and done, written by its one writer.
//!
//! Events are events.rs's; certificates certs.rs's (our CA) and certmanager.rs's; the archive's
//! report backup_status.rs's. The reconcile is wrapped in a finalizer so that deletion is observed.
//! Here: the Context (what this process remembers between reconciles), the run loop, the pipeline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::crd::TfsNameserver;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::lease::{LeaseClock, LeaseView, Sightings};
use crate::metrics::{ErrorLabels, Metrics};
use crate::names::{self, *};
use crate::nodes::{self, Nodes, Trouble};
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

/// What a reconcile observed, handed from stage to stage.
pub(super) struct Observed {
    /// The heartbeat Lease as read (every Lease write is conditioned on its version).
    pub lease: Lease,
    pub lv: LeaseView,
    pub pods: Vec<Pod>,
    pub instances: Vec<Instance>,
    /// Pod name → the node it is bound to.
    pub placed: BTreeMap<String, String>,
    pub nodes: Nodes,
    /// How long the Lease has been unchanged, on this process's clock.
    pub unchanged_for: Duration,
    /// The settings failover is judged with while a change rolls out (settings.rs).
    pub judgement: settings::Judgement,
    pub troubles: Vec<Trouble>,
    /// Where cert-manager's Certificates stand (spec.tls.issuerRef only).
    pub issuance: Option<certmanager::Issuance>,
}

/// One reconcile of a live resource, as a pipeline: observe the Lease → build and apply what does
/// not depend on who is master, then the pods → observe the instances (and the nodes) → planned
/// operations that end the reconcile here (scale-down handover, switchover, replacement) → decide
/// (failover.rs, nodes.rs; pure) → act on the decision (act.rs) → status (status.rs, its one
/// writer).
async fn apply(t: &TfsNameserver, ctx: &Context) -> Result<Action> {
    let ns = t.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let replicas = t.spec.instances();
    let leases = Api::<Lease>::namespaced(ctx.client.clone(), &ns);
    let lease = observe::heartbeat_lease(t, &leases).await?;
    let lv = LeaseView::of(&lease);

    let issuance = resources::apply_owned(t, ctx, &lv, replicas).await?;
    let pods = resources::apply_pods(t, ctx, &lv, issuance.as_ref(), replicas).await?;

    let tls = ctx.tls.lock().get(&key(t)).cloned();
    let instances = observe::instances(&pods, &t.name_any(), tls.as_deref()).await;
    if let Some(done) = operations::scale_down(t, ctx, &leases, &lease, &lv, &instances, replicas).await? {
        return Ok(done);
    }
    let unchanged_for =
        ctx.clocks.lock().entry(lease_key(t)).or_default().observe(&lv.resource_version, Instant::now());
    // Judge with the most conservative settings any running pod may still use (settings.rs).
    let running: Vec<Option<Settings>> =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(Settings::of_pod).collect();
    let judgement = settings::judgement(&Settings::of(t), &running);
    let mut status = t.status.clone().unwrap_or_default();
    count_unrecorded_failovers(&mut status, &lv);
    if let Some(done) = operations::switchover(t, ctx, &leases, &lease, &lv, &instances).await? {
        return Ok(done);
    }

    let node_view = ctx.nodes();
    let placed: BTreeMap<String, String> =
        pods.iter().filter_map(|p| Some((p.name_any(), nodes::pod_node(p)?.to_string()))).collect();
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let at = Targets { pods: &pods, pods_api: &pods_api, pvcs: &pvcs, placed: &placed, nodes: &node_view };
    if let Some(done) = operations::replace(t, ctx, &at, &lv, &instances, replicas).await? {
        return Ok(done);
    }
    let troubles = observe::diagnose(t, &at, &instances, replicas).await?;
    operations::announce_replaced(t, ctx, &lv, &instances, &placed).await;
    let o =
        Observed { lease, lv, pods, instances, placed, nodes: node_view, unchanged_for, judgement, troubles, issuance };

    let handled = operations::cordons_handled(t, ctx, &o.nodes).await?;
    let d = decide::decide(t, &o, &handled);
    let acted = act::act(t, ctx, &o, &d, &handled, &mut status).await?;
    status::report(t, ctx, &o, &d.cordon, &status, &acted).await?;
    Ok(Action::requeue(acted.requeue))
}

mod act;
mod backup_status;
mod certmanager;
mod certs;
mod decide;
mod events;
mod master;
mod observe;
mod operations;
mod resources;
mod status;

use events::event;
use observe::{Targets, node_changes};
use status::count_unrecorded_failovers;
#[cfg(test)]
mod tests;
