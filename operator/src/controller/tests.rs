use super::*;
use crate::instance::NsStatus;

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
        LeaseView { holder: "demo-0".into(), transitions: 3, sync_set: vec!["demo-1".into()], ..Default::default() };
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
        transitions: 4,
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
    let lv = LeaseView { holder: "demo-0".into(), transitions: 3, ..Default::default() };
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
    let lv = LeaseView { holder: "demo-1".into(), transitions: 3, ..Default::default() };
    count_unrecorded_failovers(&mut st, &lv);
    assert_eq!((st.failovers, st.epoch), (2, Some(3)));
    count_unrecorded_failovers(&mut st, &lv);
    assert_eq!(st.failovers, 2, "counted once");
    let sw = LeaseView { transitions: 4, release_reason: Some("switchover".into()), ..lv.clone() };
    count_unrecorded_failovers(&mut st, &sw);
    assert_eq!(st.failovers, 2, "a switchover is not a failover");
    let mut fresh = TfsNameserverStatus::default();
    count_unrecorded_failovers(&mut fresh, &LeaseView { transitions: 1, ..Default::default() });
    assert_eq!(fresh.failovers, 0, "the first master is not a failover");
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
        promote(&t, &ctx, &leases, &old, ("demo-1", 4), &reason, Duration::ZERO).await.unwrap();
        verifier.await.unwrap();
    }

    fn vip(selects: &str, epoch: i32) -> serde_json::Value {
        let mut svc = crate::build::vip_service(&crate::build::tests::demo(), Some(selects));
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
            let next = tokio::time::timeout(Duration::from_millis(300), api.0.next_request()).await;
            assert!(
                next.is_err(),
                "a write for epoch 4 over the VIP of epoch 5: {:?}",
                next.unwrap().map(|r| r.0.uri().clone())
            );
        });
        ensure_vip(&t, &services, "demo-0", 4).await.unwrap();
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
        });
        ensure_vip(&t, &services, "demo-1", 6).await.unwrap();
        verifier.await.unwrap();
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
            ("demo-1", 4),
            &Reason::Expired { holder: "demo-0".into() },
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(err.category(), "conflict");
        verifier.await.unwrap();
    }
}
