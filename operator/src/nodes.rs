//! Nodes, as the operator reads them (a cache of every Node; read-only), and three decisions
//! that depend on them, all pure:
//!
//! - `cordon`: the master's node is cordoned (`kubectl drain` cordons first): switch over to a
//!   slave of the sync set on a schedulable node before the drain reaches the master, once per
//!   cordon;
//! - `diagnose`: why an instance cannot run — its node, or its volume's node, NotReady,
//!   unreachable or gone (`InstanceLost`), or cordoned (`InstanceUnschedulable`) — and what to do;
//! - `replace_check` (nodes/replace.rs): whether `kubectl tfs replace` may delete an instance's claim and force-delete
//!   its pod. Never the master, never without a serving master, never a pod on a live node (a
//!   force-deleted pod whose node still runs it would be a second process with that name).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;

use crate::crd::ReplicationMode;
use crate::instance::Instance;
use crate::lease::LeaseView;
use crate::names;

/// A node's Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// Ready is False: the kubelet says the node cannot run pods.
    NotReady {
        since: Option<Timestamp>,
    },
    /// Ready is Unknown: the kubelet stopped reporting (node lost, or cut off).
    Unreachable {
        since: Option<Timestamp>,
    },
    /// The Node object does not exist (deleted, or never registered).
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub health: Health,
    /// Not cordoned (`spec.unschedulable` unset).
    pub schedulable: bool,
    pub labels: BTreeMap<String, String>,
}

impl NodeView {
    pub fn of(n: &Node) -> Self {
        let ready =
            n.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let since = ready.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0);
        let health = match ready.map(|c| c.status.as_str()) {
            Some("True") => Health::Ready,
            Some("False") => Health::NotReady { since },
            // No Ready condition yet (a node registering) reads as not reporting.
            _ => Health::Unreachable { since },
        };
        NodeView {
            health,
            schedulable: !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            labels: n.metadata.labels.clone().unwrap_or_default(),
        }
    }

    fn gone() -> Self {
        NodeView { health: Health::Gone, schedulable: false, labels: BTreeMap::new() }
    }

    /// The node cannot be running the pods bound to it as far as Kubernetes knows: NotReady,
    /// unreachable or gone. (A NotReady node's processes may still run: this is the condition
    /// for a replacement the user asks for, never for one the operator does on its own.)
    pub fn lost(&self) -> bool {
        self.health != Health::Ready
    }

    /// Ready and not cordoned: a pod may go there.
    pub fn usable(&self) -> bool {
        self.health == Health::Ready && self.schedulable
    }

    /// "NotReady since ...", "NotReady since ... (unreachable: ...)", "gone ...", "cordoned",
    /// "Ready": NotReady as `kubectl get nodes` says it, for Ready False and Unknown alike.
    pub fn describe(&self) -> String {
        let since = |s: &Option<Timestamp>| s.map(|t| format!(" since {t}")).unwrap_or_default();
        match &self.health {
            Health::NotReady { since: s } => format!("NotReady{}", since(s)),
            Health::Unreachable { since: s } => {
                format!("NotReady{} (unreachable: its kubelet stopped reporting)", since(s))
            }
            Health::Gone => "gone (no such Node)".into(),
            Health::Ready if !self.schedulable => "cordoned".into(),
            Health::Ready => "Ready".into(),
        }
    }
}

/// Every node as last read, or nothing known (nodes not readable, or not read yet): then no
/// decision here acts, and the conditions say the nodes are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes(Option<BTreeMap<String, NodeView>>);

impl Nodes {
    pub fn unknown() -> Self {
        Nodes(None)
    }

    pub fn of<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        Nodes(Some(nodes.into_iter().filter_map(|n| Some((n.metadata.name.clone()?, NodeView::of(n)))).collect()))
    }

    pub fn known(&self) -> bool {
        self.0.is_some()
    }

    /// None when nothing is known; a node missing from what is known is Gone.
    pub fn get(&self, name: &str) -> Option<NodeView> {
        self.0.as_ref().map(|m| m.get(name).cloned().unwrap_or_else(NodeView::gone))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &NodeView)> {
        self.0.iter().flat_map(|m| m.iter())
    }
}

/// The node a pod is bound to.
pub fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// The node a claim's volume was made for (the scheduler's choice under WaitForFirstConsumer).
pub fn claim_node(c: &PersistentVolumeClaim) -> Option<&str> {
    c.metadata.annotations.as_ref()?.get(names::ANN_SELECTED_NODE).map(String::as_str).filter(|n| !n.is_empty())
}

/// What to do about the master's node being cordoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cordon {
    /// The master's node is not cordoned.
    NotCordoned { node: String },
    /// Not known (no master, nodes unreadable, the master's pod not bound to a node): why.
    Unknown(String),
    /// Switch over to `target` (a ready slave of the sync set on a schedulable, Ready node).
    Switch { node: String, target: String },
    /// Cordoned, and no slave can take over: why, slave by slave. The master stays (the drain
    /// waits on the master's PodDisruptionBudget: the safe outcome).
    Blocked { node: String, why: String },
    /// Cordoned, and the operator already switched over once for this cordon.
    AlreadyDone { node: String },
}

pub struct CordonInput<'a> {
    pub master: &'a str,
    pub instances: &'a [Instance],
    /// Pod name → the node it is bound to.
    pub placed: &'a BTreeMap<String, String>,
    pub nodes: &'a Nodes,
    pub lease: &'a LeaseView,
    pub mode: ReplicationMode,
    /// Nodes the operator already switched the master away from, for their current cordon.
    pub handled: &'a [String],
}

/// Whether the master's node is cordoned (whatever its Ready condition: a heart that cannot hand
/// over releases, and the Lease decides), and if so whether and to whom to switch over: the most
/// advanced ready slave of the published sync set (any ready slave in Async mode) whose node is
/// Ready and schedulable (lowest ordinal on a tie).
pub fn cordon(i: &CordonInput) -> Cordon {
    if i.master.is_empty() {
        return Cordon::Unknown("no master".into());
    }
    if !i.nodes.known() {
        return Cordon::Unknown("Nodes are not known: not read yet, or the operator may not read them".into());
    }
    let Some(node) = i.placed.get(i.master) else {
        return Cordon::Unknown(format!("the master {} is not bound to a node", i.master));
    };
    let view = i.nodes.get(node).unwrap_or_else(NodeView::gone);
    if view.health == Health::Gone {
        return Cordon::Unknown(format!("the master's node {node} is gone"));
    }
    if view.schedulable {
        return Cordon::NotCordoned { node: node.clone() };
    }
    if i.handled.iter().any(|h| h == node) {
        return Cordon::AlreadyDone { node: node.clone() };
    }
    let mut why = Vec::new();
    let mut best: Option<&Instance> = None;
    for x in i.instances.iter().filter(|x| x.pod != i.master) {
        let slave_node = i.placed.get(&x.pod);
        let problem = if !x.ready || x.status.is_none() {
            Some("not ready".to_string())
        } else if i.mode == ReplicationMode::Sync && !i.lease.sync_set.contains(&x.pod) {
            Some("not in the published sync set".to_string())
        } else {
            match slave_node.map(|n| (n, i.nodes.get(n).unwrap_or_else(NodeView::gone))) {
                None => Some("not bound to a node".to_string()),
                Some((n, v)) if !v.usable() => Some(format!("on node {n}, {}", v.describe())),
                Some(_) => None,
            }
        };
        match problem {
            Some(p) => why.push(format!("{}: {p}", x.pod)),
            None => {
                let seq = |x: &Instance| x.status.as_ref().map(|s| s.durable_seq);
                if best.is_none_or(|b| seq(x) > seq(b) || (seq(x) == seq(b) && x.ordinal < b.ordinal)) {
                    best = Some(x);
                }
            }
        }
    }
    match best {
        Some(b) => Cordon::Switch { node: node.clone(), target: b.pod.clone() },
        None if why.is_empty() => Cordon::Blocked { node: node.clone(), why: "there is no slave".into() },
        None => Cordon::Blocked { node: node.clone(), why: why.join("; ") },
    }
}

/// The entries of `tfs.io/cordon-switchover` that still stand: a node schedulable again (its cordon
/// is over) or gone is dropped. Everything stands while the nodes are unknown.
pub fn still_cordoned(handled: &[String], nodes: &Nodes) -> Vec<String> {
    handled
        .iter()
        .filter(|n| nodes.get(n).is_none_or(|v| !v.schedulable && v.health != Health::Gone))
        .cloned()
        .collect()
}

/// Why an instance cannot run, from its node or its volume's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    pub pod: String,
    pub node: String,
    /// The node is NotReady, unreachable or gone (`InstanceLost`); otherwise it is cordoned
    /// (`InstanceUnschedulable`).
    pub lost: bool,
    pub message: String,
}

/// Why the instance `pod` of `name` cannot run, if its node explains it: the pod is bound to a
/// lost node, or it is not bound and its volume lives on a lost or cordoned node. None when the
/// nodes are unknown or explain nothing (then the generic Degraded message stands).
pub fn diagnose(
    name: &str,
    pod_name: &str,
    pod: Option<&Pod>,
    claim: Option<&PersistentVolumeClaim>,
    nodes: &Nodes,
) -> Option<Trouble> {
    let replace = format!("kubectl tfs replace {name} {pod_name}");
    if let Some(node) = pod.and_then(pod_node) {
        let v = nodes.get(node)?;
        return v.lost().then(|| Trouble {
            pod: pod_name.into(),
            node: node.into(),
            lost: true,
            message: format!(
                "{pod_name} cannot run: its node {node} is {}; if the node is lost for good, replace the instance \
                 on another node with a new volume seeded from the master: {replace}",
                v.describe()
            ),
        });
    }
    let node = claim.and_then(claim_node)?;
    let v = nodes.get(node)?;
    if v.lost() {
        Some(Trouble {
            pod: pod_name.into(),
            node: node.into(),
            lost: true,
            message: format!(
                "{pod_name} cannot run: its volume lives on node {node}, which is {}; if the node is lost for good, \
                 replace the instance on another node with a new volume seeded from the master: {replace}",
                v.describe()
            ),
        })
    } else if !v.schedulable {
        Some(Trouble {
            pod: pod_name.into(),
            node: node.into(),
            lost: false,
            message: format!(
                "{pod_name} cannot be scheduled: its volume lives on node {node}, which is cordoned; uncordon it \
                 (kubectl uncordon {node}), or replace the instance on another node: {replace}"
            ),
        })
    } else {
        None
    }
}

mod replace;
pub use replace::*;

#[cfg(test)]
mod tests;
