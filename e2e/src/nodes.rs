//! The simulated nodes of the local cluster (e2e/cluster/README.md): which node a pod runs on,
//! each node's containerd, losing a node with `node-down.sh` and bringing it back, and placing a
//! master relative to the operator's leader for the node-loss scenarios and trials.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::{OPERATOR_NS, Tfs, kubectl, root};

/// The nodes of the local cluster (`node-1` ... `node-N`; N is what `make cluster` wrote).
pub fn nodes() -> Vec<String> {
    let n: usize =
        std::fs::read_to_string(root().join(".e2e/nodes")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
    (1..=n).map(|i| format!("node-{i}")).collect()
}

/// The CRI socket of a node's containerd (each simulated node has its own).
pub fn containerd_socket(node: &str) -> PathBuf {
    root().join(".e2e/run").join(node).join("containerd.sock")
}

/// The node a pod is scheduled on.
pub fn pod_node(ns: &str, pod: &str) -> Result<String> {
    let node = kubectl(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])?;
    let node = node.trim();
    if node.is_empty() {
        bail!("pod {ns}/{pod} is not scheduled on a node");
    }
    Ok(node.to_string())
}

/// A node of the local cluster lost with `make node-down` (every process of it frozen, its
/// traffic dropped) until [`LostNode::back`]; dropped without it, the node comes back anyway so a
/// failed test leaves the cluster whole.
pub struct LostNode {
    node: String,
    back: bool,
}

/// Runs one of the local cluster's scripts (e2e/cluster/) with `args`; its output, or why it failed.
fn cluster_script(script: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(root().join("e2e/cluster").join(script))
        .args(args)
        .env("ROOT", root())
        .env("E2E", root().join(".e2e"))
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{script} {} failed: {text}", args.join(" "));
    }
    Ok(text)
}

impl LostNode {
    pub fn lose(node: &str) -> Result<LostNode> {
        print!("{}", cluster_script("node-down.sh", &[node])?);
        Ok(LostNode { node: node.to_string(), back: false })
    }

    /// Brings the node back and waits until it is Ready again.
    pub fn back(mut self) -> Result<()> {
        self.back = true;
        print!("{}", cluster_script("node-up.sh", &[&self.node])?);
        Ok(())
    }
}

impl Drop for LostNode {
    fn drop(&mut self) {
        if !self.back
            && let Err(e) = cluster_script("node-up.sh", &[&self.node])
        {
            eprintln!("could not bring {} back: {e:#}", self.node);
        }
    }
}

/// The API server's answers to one pod withheld (`api-answers.sh`): its requests are still
/// applied, their answers arrive only once [`WithheldAnswers::deliver`]ed (dropped without it, they
/// are delivered anyway, so a failed test leaves the cluster whole).
pub struct WithheldAnswers {
    ip: String,
    delivered: bool,
}

impl WithheldAnswers {
    pub fn to(pod_ip: &str) -> Result<WithheldAnswers> {
        print!("{}", cluster_script("api-answers.sh", &["withhold", pod_ip])?);
        Ok(WithheldAnswers { ip: pod_ip.to_string(), delivered: false })
    }

    pub fn deliver(mut self) -> Result<()> {
        self.delivered = true;
        print!("{}", cluster_script("api-answers.sh", &["deliver", &self.ip])?);
        Ok(())
    }
}

impl Drop for WithheldAnswers {
    fn drop(&mut self) {
        if !self.delivered
            && let Err(e) = cluster_script("api-answers.sh", &["deliver", &self.ip])
        {
            eprintln!("could not deliver the API server's answers to {} again: {e:#}", self.ip);
        }
    }
}

/// The operator's leader (the holder of its leader-election Lease) and the node it runs on.
pub fn operator_leader() -> Result<(String, String)> {
    let holder =
        kubectl(&["-n", OPERATOR_NS, "get", "lease", "tfs-operator-leader", "-o", "jsonpath={.spec.holderIdentity}"])?;
    let holder = holder.trim().to_string();
    ensure!(!holder.is_empty(), "the operator's leader Lease has no holder");
    let node = pod_node(OPERATOR_NS, &holder)?;
    Ok((holder, node))
}

/// `kubectl get pod -o jsonpath=…` over the operator's pods.
fn operator_pods_jsonpath(path: &str) -> Result<String> {
    let o = format!("jsonpath={path}");
    kubectl(&["-n", OPERATOR_NS, "get", "pod", "-l", "app.kubernetes.io/name=tfs-operator", "-o", &o])
}

/// Restarts of the operator's containers so far, summed over its pods.
pub fn operator_restarts() -> Result<u64> {
    let out = operator_pods_jsonpath("{.items[*].status.containerStatuses[*].restartCount}")?;
    Ok(out.split_whitespace().filter_map(|n| n.parse::<u64>().ok()).sum())
}

/// The operator's pods and their nodes.
pub fn operator_pods() -> Result<Vec<(String, String)>> {
    let out = operator_pods_jsonpath("{range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}")?;
    Ok(out.lines().filter_map(|l| l.split_once(' ').map(|(p, n)| (p.to_string(), n.to_string()))).collect())
}

/// Where each instance of `t` runs: (node, pod).
pub async fn placement(t: &Tfs) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in t.pod_names().await? {
        out.push((pod_node(&t.ns, &p)?, p));
    }
    Ok(out)
}

/// Makes the master of `t` (spread over the nodes) run on the operator leader's node
/// (`with_leader`) or on another node, by a planned switchover when it is not already so.
/// Returns the master, its epoch and its node.
pub async fn place_master(t: &Tfs, with_leader: bool) -> Result<(String, u64, String)> {
    let placed = placement(t).await?;
    let (_, leader_node) = operator_leader()?;
    let node_of = |pod: &str| placed.iter().find(|(_, p)| p == pod).map(|(n, _)| n.clone()).unwrap_or_default();
    let (mut master, mut epoch) = t.lease().await?;
    if (node_of(&master) == leader_node) != with_leader {
        let Some(target) =
            placed.iter().find(|(n, p)| *p != master && ((*n == leader_node) == with_leader)).map(|(_, p)| p.clone())
        else {
            bail!("no instance to switch over to (leader on {leader_node}, instances {placed:?})");
        };
        let out = kubectl(&["tfs", "switchover", &t.name, &target, "-n", &t.ns])?;
        ensure!(out.contains(&format!("{target} is master at epoch")), "kubectl tfs switchover: {out}");
        t.wait_healthy(placed.len(), epoch as i64 + 1, Duration::from_secs(90)).await?;
        t.wait_sync_set(1, Duration::from_secs(60)).await?;
        (master, epoch) = t.lease().await?;
    }
    let node = node_of(&master);
    ensure!((node == leader_node) == with_leader, "master {master} on {node}, the operator's leader on {leader_node}");
    Ok((master, epoch, node))
}
