use super::*;
use crate::crd::Placement;
use crate::instance::NsStatus;
use crate::lease::Epoch;
use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

const SINCE: &str = "2026-11-29T10:00:00Z";

fn node(name: &str, ready: &str, cordoned: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec { unschedulable: cordoned.then_some(true), ..Default::default() }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                last_transition_time: Some(Time(SINCE.parse().unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn nodes(ns: &[Node]) -> Nodes {
    Nodes::of(ns)
}

fn three() -> Vec<Node> {
    vec![node("node-1", "True", false), node("node-2", "True", false), node("node-3", "True", false)]
}

fn slave(pod: &str, ordinal: usize, seq: u64) -> Instance {
    Instance {
        pod: pod.into(),
        ordinal,
        ready: true,
        status: Some(NsStatus { durable_seq: seq, epoch: 3, ..Default::default() }),
    }
}

fn master(pod: &str, ordinal: usize) -> Instance {
    Instance {
        pod: pod.into(),
        ordinal,
        ready: true,
        status: Some(NsStatus { durable_seq: 100, epoch: 3, master: true, writable: true, ..Default::default() }),
    }
}

fn lease(holder: &str, sync: &[&str]) -> LeaseView {
    LeaseView {
        holder: holder.into(),
        epoch: Epoch(3),
        sync_set: sync.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// demo-0 on node-1, demo-1 on node-2, demo-2 on node-3.
fn placed() -> BTreeMap<String, String> {
    (0..3).map(|i| (format!("demo-{i}"), format!("node-{}", i + 1))).collect()
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), uid: Some(format!("uid-{name}")), ..Default::default() },
        spec: Some(PodSpec { node_name: node.map(Into::into), ..Default::default() }),
        ..Default::default()
    }
}

fn claim(node: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            annotations: node.map(|n| [(names::ANN_SELECTED_NODE.to_string(), n.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run_cordon(ns: &Nodes, l: &LeaseView, xs: &[Instance], mode: ReplicationMode, handled: &[String]) -> Cordon {
    cordon(&CordonInput { master: &l.holder, instances: xs, placed: &placed(), nodes: ns, lease: l, mode, handled })
}

#[test]
fn nodes_read_their_ready_condition_and_cordon() {
    let v = NodeView::of(&node("n", "False", true));
    assert_eq!(v.health, Health::NotReady { since: Some(SINCE.parse().unwrap()) });
    assert!(!v.schedulable && v.lost() && !v.usable());
    assert_eq!(v.describe(), format!("NotReady since {SINCE}"));
    assert_eq!(
        NodeView::of(&node("n", "Unknown", false)).describe(),
        format!("NotReady since {SINCE} (unreachable: its kubelet stopped reporting)")
    );
    assert_eq!(NodeView::of(&node("n", "True", true)).describe(), "cordoned");
    assert!(NodeView::of(&node("n", "True", false)).usable());
    // A node missing from what is known is gone; nothing is known without a read.
    assert_eq!(nodes(&three()).get("node-9").unwrap().health, Health::Gone);
    assert_eq!(Nodes::unknown().get("node-1"), None);
}

#[test]
fn a_master_on_an_uncordoned_node_stays() {
    let xs = [master("demo-0", 0), slave("demo-1", 1, 100), slave("demo-2", 2, 100)];
    let l = lease("demo-0", &["demo-1", "demo-2"]);
    assert_eq!(
        run_cordon(&nodes(&three()), &l, &xs, ReplicationMode::Sync, &[]),
        Cordon::NotCordoned { node: "node-1".into() }
    );
    // A NotReady node that is not cordoned is the Lease's business, not a drain.
    let ns = nodes(&[node("node-1", "False", false), node("node-2", "True", false), node("node-3", "True", false)]);
    assert!(matches!(run_cordon(&ns, &l, &xs, ReplicationMode::Sync, &[]), Cordon::NotCordoned { .. }));
}

#[test]
fn a_cordoned_masters_node_switches_over_to_the_most_advanced_sync_slave_on_a_schedulable_node() {
    let xs = [master("demo-0", 0), slave("demo-1", 1, 90), slave("demo-2", 2, 100)];
    let l = lease("demo-0", &["demo-1", "demo-2"]);
    let mut ns = three();
    ns[0] = node("node-1", "True", true);
    assert_eq!(
        run_cordon(&nodes(&ns), &l, &xs, ReplicationMode::Sync, &[]),
        Cordon::Switch { node: "node-1".into(), target: "demo-2".into() }
    );
    // Equal: the lowest ordinal.
    let even = [master("demo-0", 0), slave("demo-1", 1, 100), slave("demo-2", 2, 100)];
    assert_eq!(
        run_cordon(&nodes(&ns), &l, &even, ReplicationMode::Sync, &[]),
        Cordon::Switch { node: "node-1".into(), target: "demo-1".into() }
    );
    // demo-2's node is cordoned too (two drains at once): demo-1, though behind.
    ns[2] = node("node-3", "True", true);
    assert_eq!(
        run_cordon(&nodes(&ns), &l, &xs, ReplicationMode::Sync, &[]),
        Cordon::Switch { node: "node-1".into(), target: "demo-1".into() }
    );
}

#[test]
fn no_switchover_without_a_ready_sync_slave_on_a_schedulable_node_and_it_says_why() {
    let mut ns = three();
    ns[0] = node("node-1", "True", true);
    ns[2] = node("node-3", "False", false);
    let mut down = slave("demo-1", 1, 100);
    down.ready = false;
    let xs = [master("demo-0", 0), down, slave("demo-2", 2, 100)];
    match run_cordon(&nodes(&ns), &lease("demo-0", &["demo-1", "demo-2"]), &xs, ReplicationMode::Sync, &[]) {
        Cordon::Blocked { node, why } => {
            assert_eq!(node, "node-1");
            assert!(why.contains("demo-1: not ready"), "{why}");
            assert!(why.contains("demo-2: on node node-3, NotReady since"), "{why}");
        }
        c => panic!("{c:?}"),
    }
    // Outside the published sync set: it may lack acknowledged writes.
    let xs = [master("demo-0", 0), slave("demo-1", 1, 100), slave("demo-2", 2, 100)];
    let mut ns = three();
    ns[0] = node("node-1", "True", true);
    match run_cordon(&nodes(&ns), &lease("demo-0", &["demo-2"]), &xs[..2], ReplicationMode::Sync, &[]) {
        Cordon::Blocked { why, .. } => assert_eq!(why, "demo-1: not in the published sync set"),
        c => panic!("{c:?}"),
    }
    // Async mode: any ready slave on a schedulable node.
    assert!(matches!(
        run_cordon(&nodes(&ns), &lease("demo-0", &[]), &xs[..2], ReplicationMode::Async, &[]),
        Cordon::Switch { target, .. } if target == "demo-1"
    ));
}

#[test]
fn one_cordon_makes_at_most_one_switchover() {
    let xs = [master("demo-0", 0), slave("demo-1", 1, 100), slave("demo-2", 2, 100)];
    let l = lease("demo-0", &["demo-1", "demo-2"]);
    let mut ns = three();
    ns[0] = node("node-1", "True", true);
    let handled = vec!["node-1".to_string()];
    assert_eq!(
        run_cordon(&nodes(&ns), &l, &xs, ReplicationMode::Sync, &handled),
        Cordon::AlreadyDone { node: "node-1".into() }
    );
    // The record stands while the cordon does; uncordoned or deleted, it goes.
    assert_eq!(still_cordoned(&handled, &nodes(&ns)), handled);
    assert!(still_cordoned(&handled, &nodes(&three())).is_empty());
    assert!(still_cordoned(&handled, &nodes(&ns[1..])).is_empty());
    assert_eq!(still_cordoned(&handled, &Nodes::unknown()), handled, "nothing is forgotten unread");
}

#[test]
fn nothing_is_decided_on_unknown_nodes() {
    let xs = [master("demo-0", 0), slave("demo-1", 1, 100)];
    let l = lease("demo-0", &["demo-1"]);
    assert!(matches!(run_cordon(&Nodes::unknown(), &l, &xs, ReplicationMode::Sync, &[]), Cordon::Unknown(_)));
    assert!(matches!(
        run_cordon(&nodes(&three()), &lease("", &[]), &xs, ReplicationMode::Sync, &[]),
        Cordon::Unknown(_)
    ));
    assert!(matches!(run_cordon(&nodes(&three()[1..]), &l, &xs, ReplicationMode::Sync, &[]), Cordon::Unknown(_)));
}

#[test]
fn a_lost_instance_is_named_with_its_node_and_the_action() {
    let mut ns = three();
    ns[2] = node("node-3", "False", false);
    let ns = nodes(&ns);
    // Bound to a NotReady node.
    let t = diagnose("demo", "demo-2", Some(&pod("demo-2", Some("node-3"))), None, &ns).unwrap();
    assert!(t.lost);
    assert_eq!(t.node, "node-3");
    assert!(
        t.message.starts_with(&format!("demo-2 cannot run: its node node-3 is NotReady since {SINCE}")),
        "{}",
        t.message
    );
    assert!(t.message.ends_with("kubectl tfs replace demo demo-2"), "{}", t.message);
    // Pending, its volume on the NotReady node.
    let t = diagnose("demo", "demo-2", Some(&pod("demo-2", None)), Some(&claim(Some("node-3"))), &ns).unwrap();
    assert!(
        t.message.starts_with(&format!(
            "demo-2 cannot run: its volume lives on node node-3, which is NotReady since {SINCE}"
        )),
        "{}",
        t.message
    );
    // A deleted node.
    let gone = nodes(&three()[..2]);
    let t = diagnose("demo", "demo-2", None, Some(&claim(Some("node-3"))), &gone).unwrap();
    assert!(t.lost && t.message.contains("which is gone"), "{}", t.message);
    // Its volume on a cordoned node (a drain): not lost, uncordon or replace.
    let mut c = three();
    c[2] = node("node-3", "True", true);
    let t = diagnose("demo", "demo-2", Some(&pod("demo-2", None)), Some(&claim(Some("node-3"))), &nodes(&c)).unwrap();
    assert!(!t.lost);
    assert!(t.message.contains("which is cordoned; uncordon it"), "{}", t.message);
    // Nothing to say: a live node, a claim with no node yet, nodes unknown.
    assert_eq!(diagnose("demo", "demo-2", Some(&pod("demo-2", Some("node-1"))), None, &ns), None);
    assert_eq!(diagnose("demo", "demo-2", Some(&pod("demo-2", None)), Some(&claim(None)), &ns), None);
    assert_eq!(diagnose("demo", "demo-2", Some(&pod("demo-2", Some("node-3"))), None, &Nodes::unknown()), None);
}

struct Replace {
    ns: Nodes,
    lease: LeaseView,
    xs: Vec<Instance>,
    placed: BTreeMap<String, String>,
    placement: Placement,
    selector: BTreeMap<String, String>,
}

impl Replace {
    /// demo-2's node node-3 is NotReady; a fourth node is free.
    fn new() -> Self {
        let mut ns = three();
        ns[2] = node("node-3", "Unknown", false);
        ns.push(node("node-4", "True", false));
        let mut lost = slave("demo-2", 2, 0);
        (lost.ready, lost.status) = (false, None);
        Replace {
            ns: nodes(&ns),
            lease: lease("demo-0", &["demo-1"]),
            xs: vec![master("demo-0", 0), slave("demo-1", 1, 100), lost],
            placed: placed(),
            placement: Placement::Required,
            selector: BTreeMap::new(),
        }
    }

    fn check(&self, target: &str, p: Option<&Pod>) -> Result<ReplacePlan, String> {
        replace_check(&ReplaceInput {
            name: "demo",
            target,
            replicas: 3,
            lease: &self.lease,
            instances: &self.xs,
            pod: p,
            placed: &self.placed,
            nodes: &self.ns,
            placement: self.placement,
            node_selector: &self.selector,
        })
    }
}

#[test]
fn a_slave_on_a_lost_node_or_pending_is_replaced() {
    let r = Replace::new();
    let p = pod("demo-2", Some("node-3"));
    let plan = r.check("demo-2", Some(&p)).unwrap();
    assert!(plan.why.starts_with(&format!("its node node-3 is NotReady since {SINCE} (unreachable")), "{}", plan.why);
    assert_eq!(plan.pod, Some(("demo-2".into(), Some("uid-demo-2".into()))), "force-deleted, by uid");
    let plan = r.check("demo-2", Some(&pod("demo-2", None))).unwrap();
    assert_eq!(plan.why, "its pod is Pending, bound to no node");
    let plan = r.check("demo-2", None).unwrap();
    assert_eq!((plan.why.as_str(), plan.pod), ("it has no pod", None));
    // A deleted node.
    let mut gone = Replace::new();
    gone.ns = nodes(&[node("node-1", "True", false), node("node-2", "True", false), node("node-4", "True", false)]);
    assert!(gone.check("demo-2", Some(&p)).unwrap().why.contains("gone"));
}

#[test]
fn a_pod_on_a_live_node_is_never_force_deleted() {
    let r = Replace::new();
    let why = r.check("demo-1", Some(&pod("demo-1", Some("node-2")))).unwrap_err();
    assert!(why.contains("demo-1 runs on node node-2, which is Ready"), "{why}");
    // Cordoned is alive too.
    let mut c = Replace::new();
    c.ns = nodes(&[
        node("node-1", "True", false),
        node("node-2", "True", true),
        node("node-3", "Unknown", false),
        node("node-4", "True", false),
    ]);
    assert!(c.check("demo-1", Some(&pod("demo-1", Some("node-2")))).unwrap_err().contains("which is cordoned"));
    // Unknown nodes: no proof the node is lost.
    let mut u = Replace::new();
    u.ns = Nodes::unknown();
    assert!(u.check("demo-2", Some(&pod("demo-2", Some("node-3")))).unwrap_err().contains("cannot read node node-3"));
}

#[test]
fn never_the_master_nor_without_a_serving_master() {
    let r = Replace::new();
    let p = pod("demo-0", Some("node-1"));
    assert!(r.check("demo-0", Some(&p)).unwrap_err().contains("demo-0 is the master"));
    assert!(r.check("demo-7", None).unwrap_err().contains("instances: demo-0, demo-1, demo-2"));
    assert!(r.check("other-1", None).unwrap_err().contains("not an instance of demo"));
    let lost = pod("demo-2", Some("node-3"));
    // The master not ready, not writable, or at another epoch than the Lease's.
    for broken in [
        |m: &mut Instance| m.ready = false,
        |m: &mut Instance| m.status.as_mut().unwrap().writable = false,
        |m: &mut Instance| m.status.as_mut().unwrap().epoch = 2,
        |m: &mut Instance| m.status = None,
    ] {
        let mut r = Replace::new();
        broken(&mut r.xs[0]);
        assert!(r.check("demo-2", Some(&lost)).unwrap_err().contains("the master demo-0 is not serving"));
    }
    let mut released = Replace::new();
    released.lease.holder.clear();
    assert!(released.check("demo-2", Some(&lost)).unwrap_err().contains("no master"));
}

#[test]
fn under_required_placement_a_free_node_must_exist() {
    let mut r = Replace::new();
    r.ns = nodes(&[node("node-1", "True", false), node("node-2", "True", false), node("node-3", "False", false)]);
    let lost = pod("demo-2", Some("node-3"));
    let why = r.check("demo-2", Some(&lost)).unwrap_err();
    assert!(why.contains("no node can take a new demo-2"), "{why}");
    assert!(why.contains("(node-1: demo-0, node-2: demo-1)"), "{why}");
    // Preferred: anywhere.
    r.placement = Placement::Preferred;
    assert!(r.check("demo-2", Some(&lost)).is_ok());
    // The free node must match the nodeSelector.
    let mut s = Replace::new();
    s.selector = [("kubernetes.io/hostname".to_string(), "node-9".to_string())].into();
    assert!(s.check("demo-2", Some(&lost)).unwrap_err().contains("matching spec.pod.nodeSelector"));
    s.selector = [("kubernetes.io/hostname".to_string(), "node-4".to_string())].into();
    assert!(s.check("demo-2", Some(&lost)).is_ok());
}
