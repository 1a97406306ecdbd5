//! `replace_check`: whether `kubectl tfs replace` may delete a lost instance's claim and force-delete
//! its pod.
//!
//! Invariant: never the master, never without a serving master, never a pod on a live node (a
//! force-deleted pod whose node still runs it would be a second process with that name).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use tfs_nameserver::epoch::Epoch;

use crate::crd::Placement;
use crate::instance::Instance;
use crate::lease::LeaseView;
use crate::names;

use super::{Nodes, pod_node};

pub struct ReplaceInput<'a> {
    pub name: &'a str,
    /// The instance to replace (a pod name).
    pub target: &'a str,
    pub replicas: usize,
    pub lease: &'a LeaseView,
    pub instances: &'a [Instance],
    /// The target's pod, if it exists.
    pub pod: Option<&'a Pod>,
    /// Pod name → node, for every pod of the resource.
    pub placed: &'a BTreeMap<String, String>,
    pub nodes: &'a Nodes,
    pub placement: Placement,
    pub node_selector: &'a BTreeMap<String, String>,
}

/// What a replacement deletes, and why it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacePlan {
    /// Why the instance may be replaced: "its node node-3 is NotReady since ...".
    pub why: String,
    /// The pod to force-delete (name, uid), if there is one.
    pub pod: Option<(String, Option<String>)>,
}

/// Whether `target` may be replaced; why not otherwise (for the `ReplaceRejected` Event and the
/// plugin). Only a slave; only while the master serves (the new instance is seeded from it, and
/// it holds every acknowledged write); only when the pod cannot be running: bound to a node that
/// is NotReady, unreachable or gone, not bound to any node (Pending), or absent. A pod on a Ready
/// node is never force-deleted, whatever its state. Under `spec.placement: Required` a Ready,
/// schedulable node free of the other instances (and matching `spec.pod.nodeSelector`) must exist,
/// or the new instance could not be placed (the scheduler has the last word: taints and resources
/// are not checked here).
pub fn replace_check(i: &ReplaceInput) -> Result<ReplacePlan, String> {
    let instances = || (0..i.replicas).map(|o| names::pod(i.name, o)).collect::<Vec<_>>().join(", ");
    match names::ordinal(i.name, i.target) {
        Some(o) if o < i.replicas => {}
        _ => return Err(format!("{} is not an instance of {} (instances: {})", i.target, i.name, instances())),
    }
    let master = i.lease.holder.as_str();
    if master.is_empty() {
        return Err("there is no master to seed a new instance from: wait until one is elected".into());
    }
    if master == i.target {
        return Err(format!(
            "{master} is the master: only a slave is replaced (switch over first: kubectl tfs switchover {} <slave>)",
            i.name
        ));
    }
    let serving = i.instances.iter().find(|x| x.pod == master).is_some_and(|x| {
        x.ready && x.status.as_ref().is_some_and(|s| s.master && s.writable && Epoch(s.epoch) == i.lease.epoch)
    });
    if !serving {
        return Err(format!(
            "the master {master} is not serving: the new instance would be seeded from it; wait until it serves"
        ));
    }
    let plan = |why: String| ReplacePlan {
        why,
        pod: i.pod.map(|p| (p.metadata.name.clone().unwrap_or_else(|| i.target.into()), p.metadata.uid.clone())),
    };
    let plan = match i.pod {
        None => plan("it has no pod".into()),
        Some(p) => match pod_node(p) {
            None => plan("its pod is Pending, bound to no node".into()),
            Some(node) => match i.nodes.get(node) {
                None => return Err(format!("the operator cannot read node {node}, so cannot tell it is lost")),
                Some(v) if v.lost() => plan(format!("its node {node} is {}", v.describe())),
                Some(v) => {
                    return Err(format!(
                        "{} runs on node {node}, which is {}: its pod could still be running, so it is not \
                         force-deleted; only an instance whose node is NotReady, unreachable or gone, or whose pod \
                         is Pending, is replaced",
                        i.target,
                        v.describe()
                    ));
                }
            },
        },
    };
    if i.placement == Placement::Required && i.nodes.known() {
        let taken: BTreeMap<&str, &str> = i
            .placed
            .iter()
            .filter(|(pod, _)| pod.as_str() != i.target)
            .map(|(pod, node)| (node.as_str(), pod.as_str()))
            .collect();
        let free = i.nodes.iter().any(|(n, v)| {
            v.usable()
                && !taken.contains_key(n.as_str())
                && i.node_selector.iter().all(|(k, val)| v.labels.get(k) == Some(val))
        });
        if !free {
            let taken: Vec<String> = taken.iter().map(|(n, p)| format!("{n}: {p}")).collect();
            return Err(format!(
                "no node can take a new {}: spec.placement Required puts the instances on different nodes, and \
                 every Ready, schedulable node{} already runs one ({}); add a node, or set spec.placement: \
                 Preferred, then ask again",
                i.target,
                if i.node_selector.is_empty() { "" } else { " matching spec.pod.nodeSelector" },
                taken.join(", ")
            ));
        }
    }
    Ok(plan)
}
