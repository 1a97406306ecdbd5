//! Observe, the first stage: the heartbeat Lease (made if missing), each instance as its pod and its
//! nameserver report it (probed over the client port, over TLS when on), and why instances that
//! are not serving cannot run (their nodes), and the watch of the Nodes that makes every resource
//! look again when a node changes in a way the decisions read.
//!
//! Nothing here writes, but for creating a missing Lease.

use std::collections::{BTreeMap, HashMap};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tracing::warn;

use crate::crd::TfsNameserver;
use crate::error::Result;
use crate::instance::Instance;
use crate::names::*;
use crate::nodes::{Nodes, Trouble};
use crate::{build, instance, names, nodes};

use super::certs;
use super::resources::create_missing;

pub(super) fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The resource's heartbeat Lease, made if missing.
pub(super) async fn heartbeat_lease(t: &TfsNameserver, leases: &Api<Lease>) -> Result<Lease> {
    let name = names::lease(&t.name_any());
    match leases.get_opt(&name).await? {
        Some(l) => Ok(l),
        None => {
            create_missing(leases, &build::lease_object(t)).await?;
            Ok(leases.get(&name).await?)
        }
    }
}

/// Each instance (a pod of this resource not being deleted) as its pod and its nameserver report
/// it, in ordinal order. Over TLS the operator probes with its client certificate.
pub(super) async fn instances(pods: &[Pod], name: &str, tls: Option<&certs::Material>) -> Vec<Instance> {
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

/// What the node-related steps read (the pods and where they run, the nodes) and act through.
pub(super) struct Targets<'a> {
    pub pods: &'a [Pod],
    pub pods_api: &'a Api<Pod>,
    pub pvcs: &'a Api<PersistentVolumeClaim>,
    /// Pod name → the node it is bound to.
    pub placed: &'a BTreeMap<String, String>,
    pub nodes: &'a Nodes,
}

/// Instances that are not serving and whose node (or volume's node) says why (nodes.rs `diagnose`).
pub(super) async fn diagnose(
    t: &TfsNameserver,
    at: &Targets<'_>,
    instances: &[Instance],
    replicas: usize,
) -> Result<Vec<Trouble>> {
    if !at.nodes.known() {
        return Ok(Vec::new());
    }
    let name = t.name_any();
    let present: BTreeMap<usize, &Pod> =
        at.pods.iter().filter_map(|p| Some((names::ordinal(&name, &p.name_any())?, p))).collect();
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

/// Watches the Nodes into `writer` (the Context's cache) and yields once each time a node is
/// cordoned or uncordoned, changes readiness, appears or goes, and when a (re)list completes.
/// Other changes (status heartbeats, images) trigger nothing. What is kept of a node is what
/// the decisions read: the image list and managed fields are dropped.
pub(super) fn node_changes(
    api: Api<Node>,
    writer: reflector::store::Writer<Node>,
) -> impl Stream<Item = ()> + Send + 'static {
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
