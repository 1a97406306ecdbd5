use super::decide::scale_down_target;
use super::master::{ask_handover, ensure_pdbs, ensure_vip, promote};
use super::operations::{cordon_switchover, replace};
use super::resources::repair_due;
use super::status::compute_status;
use super::*;
use crate::crd::{Phase, TfsNameserverStatus};
use crate::failover::Reason;
use crate::instance::NsStatus;
use crate::lease::Epoch;

fn inst(pod: &str, ordinal: usize, durable: u64, master: bool) -> Instance {
    Instance {
        pod: pod.into(),
        ordinal,
        ready: true,
        status: Some(NsStatus { master, writable: master, durable_seq: durable, ..Default::default() }),
    }
}

#[test]
fn status_reports_roles_lag_and_sync_set() {
    let t = crate::build::tests::demo();
    let lv =
        LeaseView { holder: "demo-0".into(), epoch: Epoch(3), sync_set: vec!["demo-1".into()], ..Default::default() };
    let xs = [inst("demo-0", 0, 100, true), inst("demo-1", 1, 90, false)];
    let s = compute_status(&t, &TfsNameserverStatus::default(), Phase::Healthy, &lv, &xs, 2);
    assert_eq!(s.master.as_deref(), Some("demo-0"));
    assert_eq!(s.epoch, Some(3));
    assert_eq!(s.ready.as_deref(), Some("2/2"));
    assert_eq!(s.instances[1].lag, 10);
    assert!(s.instances[1].in_sync_set);
    assert_eq!(s.instances[0].role, "master");
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    let avail = s.conditions.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(avail.reason, "MasterServing");
    // Transition times survive an unchanged condition.
    let again = compute_status(&t, &s, Phase::Healthy, &lv, &xs, 2);
    assert_eq!(again.conditions, s.conditions);
}

#[test]
fn scaling_down_the_masters_ordinal_hands_over_to_a_kept_in_sync_slave() {
    let lv = |holder: &str, sync: &[&str]| LeaseView {
        holder: holder.into(),
        epoch: Epoch(4),
        sync_set: sync.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let xs = [inst("demo-0", 0, 90, false), inst("demo-1", 1, 90, false), inst("demo-2", 2, 100, true)];
    assert_eq!(scale_down_target("demo", &lv("demo-2", &["demo-0", "demo-1"]), 2, &xs).as_deref(), Some("demo-0"));
    // Only a slave of the published sync set may take over.
    assert_eq!(scale_down_target("demo", &lv("demo-2", &["demo-1"]), 2, &xs).as_deref(), Some("demo-1"));
    assert_eq!(scale_down_target("demo", &lv("demo-2", &[]), 2, &xs), None);
    // The master keeps its ordinal: nothing to do.
    assert_eq!(scale_down_target("demo", &lv("demo-1", &["demo-0", "demo-2"]), 2, &xs), None);
    // A slave that is not ready does not take over.
    let mut down = xs.clone();
    down[0].ready = false;
    assert_eq!(scale_down_target("demo", &lv("demo-2", &["demo-0"]), 2, &down), None);
}

/// `kubectl describe` shows why: every condition says something, in every phase, and one type
/// appears once.
#[test]
fn every_condition_has_a_message_in_every_phase() {
    let t = crate::build::tests::demo();
    let lv = LeaseView { holder: "demo-0".into(), epoch: Epoch(3), ..Default::default() };
    let xs = [inst("demo-0", 0, 100, true), Instance { ready: false, status: None, ..inst("demo-1", 1, 0, false) }];
    for phase in [Phase::Creating, Phase::Healthy, Phase::FailingOver, Phase::SwitchingOver, Phase::Degraded] {
        let s = compute_status(&t, &TfsNameserverStatus::default(), phase, &lv, &xs, 2);
        let mut types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), s.conditions.len(), "one condition of each type");
        for c in &s.conditions {
            assert!(!c.message.is_empty(), "{phase}: condition {} ({}) says nothing", c.type_, c.status);
        }
    }
}

#[test]
fn a_failover_the_status_missed_is_counted_once_and_switchovers_are_not() {
    let mut st = TfsNameserverStatus { epoch: Some(2), failovers: 1, ..Default::default() };
    let lv = LeaseView { holder: "demo-1".into(), epoch: Epoch(3), ..Default::default() };
    count_unrecorded_failovers(&mut st, &lv);
    assert_eq!((st.failovers, st.epoch), (2, Some(3)));
    count_unrecorded_failovers(&mut st, &lv);
    assert_eq!(st.failovers, 2, "counted once");
    let sw = LeaseView { epoch: Epoch(4), release_reason: Some("switchover".into()), ..lv.clone() };
    count_unrecorded_failovers(&mut st, &sw);
    assert_eq!(st.failovers, 2, "a switchover is not a failover");
    let mut fresh = TfsNameserverStatus::default();
    count_unrecorded_failovers(&mut fresh, &LeaseView { epoch: Epoch(1), ..Default::default() });
    assert_eq!(fresh.failovers, 0, "the first master is not a failover");
}

/// The static objects: applied at first and on a new generation whatever the Lease says; the
/// periodic repair waits (a few seconds at most) behind a released Lease, so that a failover's
/// reconcile goes straight to the promotion.
#[test]
fn the_repair_waits_briefly_behind_a_released_lease() {
    let s = Duration::from_secs(1);
    let g = Some(3);
    assert!(repair_due(None, g, true), "never applied by this process (a new leader): at once");
    assert!(repair_due(Some((Some(2), s)), g, true), "a new generation: at once");
    assert!(!repair_due(Some((g, 10 * s)), g, false), "applied 10 s ago: nothing to repair yet");
    assert!(repair_due(Some((g, 31 * s)), g, false), "every 30 s");
    assert!(!repair_due(Some((g, 31 * s)), g, true), "a failover under way goes first");
    assert!(repair_due(Some((g, 36 * s)), g, true), "but a Lease that stays released holds it 5 s at most");
}

mod api {
    use super::*;
    use crate::fixtures::mock_client;
    use k8s_openapi::api::coordination::v1::LeaseSpec as KLeaseSpec;

    fn lease(holder: &str, transitions: i32) -> Lease {
        let mut l = crate::build::lease_object(&crate::build::tests::demo());
        l.metadata.resource_version = Some("7".into());
        l.metadata.annotations = Some(BTreeMap::from([
            (ANN_HANDOVER_TO.to_string(), "demo-1".to_string()),
            (ANN_SYNC_SET.to_string(), "demo-1".to_string()),
        ]));
        l.spec = Some(KLeaseSpec {
            holder_identity: Some(holder.into()),
            lease_transitions: Some(transitions),
            ..Default::default()
        });
        l
    }

    /// A promotion is exactly one resourceVersion-conditioned Lease update (holder, epoch + 1,
    /// sync set reset, handover cleared), then the FailingOver and FailedOver events.
    #[tokio::test]
    async fn promotion_is_one_conditioned_lease_update_then_events() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let ctx = Context::new(client.clone(), Arc::new(Metrics::default()));
        let leases: Api<Lease> = Api::namespaced(client, "ns");
        let old = lease("demo-0", 3);
        let verifier = tokio::spawn(async move {
            let body =
                api.expect("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo", |b| (200, b.clone())).await;
            assert_eq!(
                body["metadata"]["resourceVersion"], "7",
                "the update must be conditioned on the version decided on"
            );
            assert_eq!(body["spec"]["holderIdentity"], "demo-1");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            assert_eq!(body["metadata"]["annotations"][ANN_SYNC_SET], "");
            assert!(body["metadata"]["annotations"].get(ANN_HANDOVER_TO).is_none());
            for reason in ["FailingOver", "FailedOver"] {
                let ev = api.expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", |b| (201, b.clone())).await;
                assert_eq!(ev["reason"], reason);
                assert_eq!(ev["regarding"]["name"], "demo");
            }
        });
        let reason = Reason::Expired { holder: "demo-0".into() };
        promote(&t, &ctx, &leases, &old, ("demo-1", Epoch(4)), &reason, Duration::ZERO).await.unwrap();
        verifier.await.unwrap();
    }

    /// Asking the master's heart for a handover (switchover, scale-down, rolling update) is a Lease
    /// update conditioned on the version decided on, like every Lease write of the operator.
    #[tokio::test]
    async fn a_handover_request_is_a_conditioned_lease_update() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let leases: Api<Lease> = Api::namespaced(client, "ns");
        let verifier = tokio::spawn(async move {
            let body =
                api.expect("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo", |b| (200, b.clone())).await;
            assert_eq!(body["metadata"]["resourceVersion"], "7", "conditioned on the version decided on");
            assert_eq!(body["metadata"]["annotations"][ANN_HANDOVER_TO], "demo-2");
            assert_eq!(
                (&body["spec"]["holderIdentity"], &body["spec"]["leaseTransitions"]),
                (&"demo-0".into(), &3.into())
            );
        });
        ask_handover(&t, &leases, &lease("demo-0", 3), "demo-2").await.unwrap();
        verifier.await.unwrap();
    }

    fn vip(selects: &str, epoch: i32) -> serde_json::Value {
        vip_pinned(selects, None, epoch)
    }

    fn vip_pinned(selects: &str, incarnation: Option<&str>, epoch: i32) -> serde_json::Value {
        let target = crate::build::VipTarget { pod: selects, incarnation };
        let mut svc = crate::build::vip_service(&crate::build::tests::demo(), Some(target));
        svc.metadata.annotations.get_or_insert_default().insert(ANN_EPOCH.into(), epoch.to_string());
        svc.metadata.resource_version = Some("41".into());
        serde_json::to_value(svc).unwrap()
    }

    /// A stale operator (it decided at epoch 4) never moves the VIP back from epoch 5's master.
    #[tokio::test]
    async fn the_vip_never_moves_back_to_an_older_epoch() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let services: Api<Service> = Api::namespaced(client, "ns");
        let verifier = tokio::spawn(async move {
            api.expect("GET", "/api/v1/namespaces/ns/services/demo", |_| (200, vip("demo-1", 5))).await;
            // Nothing else: a PATCH here would be the stale write.
            api.expect_nothing("a write for epoch 4 over the VIP of epoch 5").await;
        });
        ensure_vip(&t, &services, by_name("demo-0"), Epoch(4)).await.unwrap();
        verifier.await.unwrap();
    }

    /// Moving the VIP is conditioned on the Service as it was read, and says which epoch it serves.
    #[tokio::test]
    async fn a_vip_move_is_conditioned_and_carries_its_epoch() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let services: Api<Service> = Api::namespaced(client, "ns");
        let verifier = tokio::spawn(async move {
            api.expect("GET", "/api/v1/namespaces/ns/services/demo", |_| (200, vip("demo-0", 5))).await;
            let body = api.expect("PATCH", "/api/v1/namespaces/ns/services/demo", |b| (200, b.clone())).await;
            assert_eq!(body["metadata"]["resourceVersion"], "41", "the move must be conditioned on what was read");
            assert_eq!(body["metadata"]["annotations"][ANN_EPOCH], "6");
            assert_eq!(body["spec"]["selector"][LABEL_POD], "demo-1");
            assert_eq!(body["spec"]["selector"][LABEL_INCARNATION], "b2", "the promoted pod's incarnation");
        });
        let target = crate::build::VipTarget { pod: "demo-1", incarnation: Some("b2") };
        ensure_vip(&t, &services, target, Epoch(6)).await.unwrap();
        verifier.await.unwrap();
    }

    /// The master's pod was lost and made again under its name (a new incarnation) while its
    /// Lease still stands: the VIP keeps the lost incarnation (no pod), it is not pointed at the
    /// new pod, which is no master.
    #[tokio::test]
    async fn the_vip_stays_on_the_master_incarnation_while_its_pod_is_made_again() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let services: Api<Service> = Api::namespaced(client, "ns");
        let verifier = tokio::spawn(async move {
            let pinned = vip_pinned("demo-0", Some("a1"), 5);
            api.expect("GET", "/api/v1/namespaces/ns/services/demo", move |_| (200, pinned.clone())).await;
            api.expect_nothing("the VIP was written again within epoch 5").await;
        });
        let replacement = crate::build::VipTarget { pod: "demo-0", incarnation: Some("c3") };
        ensure_vip(&t, &services, replacement, Epoch(5)).await.unwrap();
        verifier.await.unwrap();
    }

    fn by_name(pod: &str) -> crate::build::VipTarget<'_> {
        crate::build::VipTarget { pod, incarnation: None }
    }

    /// A conflicting Lease update (someone renewed meanwhile) surfaces as a conflict: the
    /// reconcile decides again instead of overwriting.
    #[tokio::test]
    async fn a_conflict_aborts_the_promotion() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let ctx = Context::new(client.clone(), Arc::new(Metrics::default()));
        let leases: Api<Lease> = Api::namespaced(client, "ns");
        let verifier = tokio::spawn(async move {
            api.expect("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo", |_| {
                (409, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}))
            })
            .await;
        });
        let err = promote(
            &t,
            &ctx,
            &leases,
            &lease("demo-0", 3),
            ("demo-1", Epoch(4)),
            &Reason::Expired { holder: "demo-0".into() },
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(err.category(), "conflict");
        verifier.await.unwrap();
    }

    fn status_ok() -> serde_json::Value {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})
    }

    /// A replacement: the request validated, then the claim deleted, the pod deleted with grace 0
    /// and only if it is still the pod judged (uid precondition), an Event for each step, and the
    /// request removed; nothing else.
    #[tokio::test]
    async fn a_replacement_deletes_the_claim_then_the_pod_by_uid_at_once_then_clears_the_request() {
        use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodSpec};
        let (client, mut api) = mock_client();
        let mut t = crate::build::tests::demo();
        t.spec.replicas = 3;
        t.metadata.annotations = Some([(ANN_REPLACE_INSTANCE.to_string(), "demo-2".to_string())].into());
        let ctx = Context::new(client.clone(), Arc::new(Metrics::default()));
        let node = |name: &str, ready: &str| Node {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ns = Nodes::of(&[
            node("node-1", "True"),
            node("node-2", "True"),
            node("node-3", "Unknown"),
            node("node-4", "True"),
        ]);
        let pod = |i: usize, node: &str| Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("demo-{i}")),
                uid: Some(format!("uid-{i}")),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
            ..Default::default()
        };
        let pods = vec![pod(0, "node-1"), pod(1, "node-2"), pod(2, "node-3")];
        let placed: BTreeMap<String, String> =
            pods.iter().map(|p| (p.name_any(), nodes::pod_node(p).unwrap().to_string())).collect();
        let mut lost = inst("demo-2", 2, 0, false);
        (lost.ready, lost.status) = (false, None);
        let mut m = inst("demo-0", 0, 100, true);
        m.status.as_mut().unwrap().epoch = 3;
        let xs = [m, inst("demo-1", 1, 100, false), lost];
        let lv = LeaseView { holder: "demo-0".into(), epoch: Epoch(3), ..Default::default() };
        let it = serde_json::to_value(&t).unwrap();
        let verifier = tokio::spawn(async move {
            let events = "/apis/events.k8s.io/v1/namespaces/ns/events";
            let ev = api.expect("POST", events, |b| (201, b.clone())).await;
            assert_eq!(ev["reason"], "ReplacingInstance");
            let note = ev["note"].as_str().unwrap().to_string();
            assert!(note.starts_with("replacing demo-2 (its node node-3 is NotReady"), "{note}");
            api.expect("DELETE", "/api/v1/namespaces/ns/persistentvolumeclaims/demo-2-data", |_| (200, status_ok()))
                .await;
            let ev = api.expect("POST", events, |b| (201, b.clone())).await;
            assert!(ev["note"].as_str().unwrap().starts_with("deleted claim demo-2-data"));
            let body = api.expect("DELETE", "/api/v1/namespaces/ns/pods/demo-2", |_| (200, status_ok())).await;
            assert_eq!(body["gracePeriodSeconds"], 0, "a pod on a lost node stays Terminating otherwise");
            assert_eq!(body["preconditions"]["uid"], "uid-2", "only the pod that was judged");
            let ev = api.expect("POST", events, |b| (201, b.clone())).await;
            assert!(ev["note"].as_str().unwrap().starts_with("deleted pod demo-2 at once"));
            let body =
                api.expect("PATCH", "/apis/tfs.io/v1alpha1/namespaces/ns/tfsnameservers/demo", |_| (200, it)).await;
            assert_eq!(body["metadata"]["annotations"][ANN_REPLACE_INSTANCE], serde_json::Value::Null);
        });
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), "ns");
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, "ns");
        let at = Targets { pods: &pods, pods_api: &pods_api, pvcs: &pvcs, placed: &placed, nodes: &ns };
        let done = replace(&t, &ctx, &at, &lv, &xs, 3).await.unwrap();
        assert!(done.is_some(), "the reconcile starts again on what is left");
        verifier.await.unwrap();
        assert!(ctx.replacing.lock()[&key(&t)].contains("demo-2"));

        // The same request for a slave on a Ready node: refused, nothing deleted.
        let (client, mut api) = mock_client();
        let mut t = t.clone();
        t.metadata.annotations = Some([(ANN_REPLACE_INSTANCE.to_string(), "demo-1".to_string())].into());
        let ctx = Context::new(client.clone(), Arc::new(Metrics::default()));
        let it = serde_json::to_value(&t).unwrap();
        let verifier = tokio::spawn(async move {
            let ev = api.expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", |b| (201, b.clone())).await;
            assert_eq!(ev["reason"], "ReplaceRejected");
            assert_eq!(ev["related"]["name"], "demo-1", "the Event names the instance");
            assert!(ev["note"].as_str().unwrap().contains("demo-1 runs on node node-2, which is Ready"));
            api.expect("PATCH", "/apis/tfs.io/v1alpha1/namespaces/ns/tfsnameservers/demo", |_| (200, it)).await;
            api.expect_nothing("a refused replacement deleted something").await;
        });
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), "ns");
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, "ns");
        let at = Targets { pods: &pods, pods_api: &pods_api, pvcs: &pvcs, placed: &placed, nodes: &ns };
        assert!(replace(&t, &ctx, &at, &lv, &xs, 3).await.unwrap().is_none());
        verifier.await.unwrap();
    }

    /// The master's budget moves first (a pod under both budgets cannot be evicted at all, and
    /// the old master is the one a drain waits on), then the slaves'; again only when the master
    /// changes.
    #[tokio::test]
    async fn the_budgets_follow_the_master_masters_first() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let ctx = Context::new(client, Arc::new(Metrics::default()));
        let verifier = tokio::spawn(async move {
            let pdbs = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets";
            for master in ["demo-0", "demo-1"] {
                let m = api.expect("PATCH", &format!("{pdbs}/demo-master"), |b| (200, b.clone())).await;
                assert_eq!(m["spec"]["selector"]["matchLabels"][LABEL_POD], master);
                let s = api.expect("PATCH", &format!("{pdbs}/demo"), |b| (200, b.clone())).await;
                assert_eq!(s["spec"]["selector"]["matchExpressions"][0]["values"][0], master);
            }
            api.expect_nothing("budgets applied again for the same master").await;
        });
        ensure_pdbs(&t, &ctx, "demo-0").await.unwrap();
        ensure_pdbs(&t, &ctx, "demo-0").await.unwrap();
        ensure_pdbs(&t, &ctx, "demo-1").await.unwrap();
        verifier.await.unwrap();
    }

    /// A cordon switchover is one write: the switchover request and the record of the cordon
    /// together (so a cordon never makes two), then the Event.
    #[tokio::test]
    async fn a_cordon_switchover_asks_and_records_in_one_write() {
        let (client, mut api) = mock_client();
        let t = crate::build::tests::demo();
        let ctx = Context::new(client, Arc::new(Metrics::default()));
        let it = serde_json::to_value(&t).unwrap();
        let verifier = tokio::spawn(async move {
            let body =
                api.expect("PATCH", "/apis/tfs.io/v1alpha1/namespaces/ns/tfsnameservers/demo", |_| (200, it)).await;
            assert_eq!(body["metadata"]["annotations"][ANN_SWITCHOVER_TO], "demo-1");
            assert_eq!(body["metadata"]["annotations"][ANN_CORDON_SWITCHOVER], "node-9,node-2");
            let ev = api.expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", |b| (201, b.clone())).await;
            assert_eq!(ev["reason"], "CordonSwitchover");
            assert_eq!(ev["note"], "master's node node-2 is cordoned: switching over to demo-1");
            assert_eq!(
                (ev["related"]["kind"].as_str(), ev["related"]["name"].as_str()),
                (Some("Node"), Some("node-2"))
            );
        });
        cordon_switchover(&t, &ctx, "node-2", "demo-1", &["node-9".to_string()]).await.unwrap();
        verifier.await.unwrap();
    }
}

/// What a reconcile observed, with the Lease `lv` unchanged for `unchanged_for`.
fn observed(lv: LeaseView, instances: Vec<Instance>, unchanged_for: Duration) -> Observed {
    Observed {
        lease: Lease::default(),
        lv,
        pods: Vec::new(),
        instances,
        placed: BTreeMap::new(),
        nodes: Nodes::unknown(),
        unchanged_for,
        judgement: settings::Judgement {
            lease_duration: Duration::from_secs(5),
            mode: crate::crd::ReplicationMode::Sync,
            current: 2,
            total: 2,
        },
        troubles: Vec::new(),
        issuance: None,
    }
}

#[test]
fn a_cordon_is_judged_only_under_a_steady_master_that_is_not_handing_over() {
    use crate::failover::Decision;
    use crate::nodes::Cordon;
    let t = crate::build::tests::demo();
    let held =
        LeaseView { holder: "demo-0".into(), epoch: Epoch(3), sync_set: vec!["demo-1".into()], ..Default::default() };
    let xs = vec![inst("demo-0", 0, 100, true), inst("demo-1", 1, 100, false)];
    let steady = super::decide::decide(&t, &observed(held.clone(), xs.clone(), Duration::from_secs(1)), &[]);
    assert!(matches!(&steady.decision, Decision::Steady { master, .. } if master == "demo-0"));
    assert!(!matches!(&steady.cordon, Cordon::Unknown(w) if w.contains("handing over") || w.contains("failover")));

    let asked = LeaseView { handover_to: Some("demo-1".into()), ..held.clone() };
    let d = super::decide::decide(&t, &observed(asked, xs.clone(), Duration::from_secs(1)), &[]);
    assert!(matches!(d.decision, Decision::Steady { .. }));
    assert_eq!(d.cordon, Cordon::Unknown("demo-0 is handing over to demo-1".into()));

    // Unchanged for the lease duration: a failover decides, not a cordon.
    let d = super::decide::decide(&t, &observed(held, xs, Duration::from_secs(6)), &[]);
    assert!(matches!(&d.decision, Decision::Promote { pod, .. } if pod == "demo-1"));
    assert_eq!(d.cordon, Cordon::Unknown("no master serving: a failover decides".into()));
}

/// The status has one writer: it writes only a change, as a merge patch that removes an archive
/// report no longer asked for.
#[tokio::test]
async fn the_status_writer_writes_only_a_change_and_drops_a_stale_archive_report() {
    let (client, mut api) = crate::fixtures::mock_client();
    let ctx = Context::new(client, Arc::new(Metrics::default()));
    let mut t = crate::build::tests::demo();
    let mut st = TfsNameserverStatus { phase: Some(Phase::Healthy), ..Default::default() };
    t.status = Some(st.clone());
    // Unchanged: no request (one would wait for the mock's answer, never given here).
    let unchanged = tokio::time::timeout(Duration::from_secs(5), super::status::write(&t, &ctx, &st)).await;
    assert!(matches!(unchanged, Ok(Ok(()))), "an unchanged status is not written");

    st.phase = Some(Phase::SwitchingOver);
    let answer = serde_json::to_value(&t).unwrap();
    let verifier = tokio::spawn(async move {
        api.expect("PATCH", "/apis/tfs.io/v1alpha1/namespaces/ns/tfsnameservers/demo/status", |_| (200, answer)).await
    });
    super::status::write(&t, &ctx, &st).await.unwrap();
    let body = verifier.await.unwrap();
    assert_eq!(body["status"]["phase"], "SwitchingOver");
    assert_eq!(body["status"].get("backup"), Some(&serde_json::Value::Null), "an absent report is removed");
}
