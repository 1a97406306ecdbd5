use super::*;
use crate::crd::{InstanceStatus, Phase, TfsNameserverSpec, TfsNameserverStatus};
use crate::lease::Epoch;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

fn demo() -> TfsNameserver {
    let spec: TfsNameserverSpec = serde_json::from_value(serde_json::json!({
        "storage": {"size": "1Gi"}, "tls": {"enabled": true, "clientAuth": "Required"}
    }))
    .unwrap();
    let mut t = TfsNameserver::new("demo", spec);
    t.metadata.namespace = Some("ns".into());
    let inst = |name: &str, role: &str, seq, lag, sync| InstanceStatus {
        name: name.into(),
        role: role.into(),
        ready: true,
        durable_seq: seq,
        lag,
        in_sync_set: sync,
    };
    t.status = Some(TfsNameserverStatus {
        phase: Some(Phase::Healthy),
        master: Some("demo-1".into()),
        epoch: Some(3),
        ready: Some("3/3".into()),
        instances: vec![
            inst("demo-0", "slave", 90, 10, false),
            inst("demo-1", "master", 100, 0, false),
            inst("demo-2", "slave", 100, 0, true),
        ],
        failovers: 1,
        last_failover_time: Some(Time("2026-11-29T10:00:00Z".parse().unwrap())),
        last_failover_reason: Some("demo-0 not ready".into()),
        ..Default::default()
    });
    t
}

#[test]
fn status_shows_master_epoch_lease_and_each_instance() {
    let now: Timestamp = "2026-11-29T10:03:12Z".parse().unwrap();
    let lease = Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some("demo-1".into()),
            lease_transitions: Some(3),
            renew_time: Some(MicroTime("2026-11-29T10:03:11Z".parse().unwrap())),
            ..Default::default()
        }),
        metadata: kube::api::ObjectMeta {
            annotations: Some([(crate::names::ANN_SYNC_SET.to_string(), "demo-2".to_string())].into()),
            ..Default::default()
        },
    };
    let out = status(&demo(), Some(&lease), &[], now);
    assert!(out.starts_with("TfsNameserver ns/demo: Healthy, 3/3 ready, master demo-1 at epoch 3\n"), "{out}");
    assert!(out.contains("TLS on, client certificates required"), "{out}");
    assert!(out.contains("Lease: holder demo-1, epoch 3, renewed 1s ago, sync set [demo-2]"), "{out}");
    assert!(out.contains("Failovers: 1, last 3m12s ago (demo-0 not ready)"), "{out}");
    let table: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("INSTANCE")).take(4).collect();
    assert_eq!(table[0].split_whitespace().collect::<Vec<_>>()[..4], ["INSTANCE", "ROLE", "READY", "DURABLE-SEQ"]);
    assert_eq!(table[1].split_whitespace().collect::<Vec<_>>()[..6], ["demo-0", "slave", "yes", "90", "10", "no"]);
    assert_eq!(table[2].split_whitespace().collect::<Vec<_>>()[..6], ["demo-1", "master", "yes", "100", "-", "-"]);
    assert_eq!(table[3].split_whitespace().collect::<Vec<_>>()[..6], ["demo-2", "slave", "yes", "100", "0", "yes"]);
}

#[test]
fn a_switchover_is_refused_before_asking_when_the_target_could_not_take_over() {
    let t = demo();
    assert_eq!(switchover_refusal(&t, "demo-2"), None);
    assert!(switchover_refusal(&t, "demo-1").unwrap().contains("already the master"));
    assert!(switchover_refusal(&t, "demo-0").unwrap().contains("not in the master's sync set"));
    assert!(switchover_refusal(&t, "demo-9").unwrap().contains("instances: demo-0, demo-1, demo-2"));
}

#[test]
fn switchover_progress_reads_the_lease() {
    let mut v = LeaseView { holder: "demo-1".into(), epoch: Epoch(3), ..Default::default() };
    assert_eq!(switchover_progress(&v, "demo-2", Epoch(3), None), Switchover::Pending);
    let why = "demo-2: not in the sync set [demo-0]".to_string();
    v.handover_refused = Some(why.clone());
    assert_eq!(switchover_progress(&v, "demo-2", Epoch(3), None), Switchover::Refused(why.clone()));
    // The same refusal was there before the request: an old one, not this one's.
    assert_eq!(switchover_progress(&v, "demo-2", Epoch(3), Some(&why)), Switchover::Pending);
    // A refusal of another target that names this one in its text is not this one's.
    assert_eq!(switchover_progress(&v, "demo-0", Epoch(3), None), Switchover::Pending);
    let done = LeaseView { holder: "demo-2".into(), epoch: Epoch(4), ..Default::default() };
    assert_eq!(switchover_progress(&done, "demo-2", Epoch(3), None), Switchover::Done { epoch: Epoch(4) });
}

#[test]
fn a_replacement_is_refused_before_asking_for_the_master_or_a_stranger() {
    let t = demo();
    assert_eq!(replace_refusal(&t, "demo-2"), None);
    assert!(replace_refusal(&t, "demo-1").unwrap().contains("demo-1 is the master"));
    assert!(replace_refusal(&t, "demo-7").unwrap().contains("instances: demo-0, demo-1, demo-2"));
}

#[test]
fn replace_progress_follows_the_request_and_the_new_pod() {
    use k8s_openapi::api::core::v1::PodSpec;
    let pod = |uid: &str, node: Option<&str>| Pod {
        metadata: kube::api::ObjectMeta { uid: Some(uid.into()), ..Default::default() },
        spec: Some(PodSpec { node_name: node.map(Into::into), ..Default::default() }),
        ..Default::default()
    };
    let old = pod("old", Some("node-3"));
    let mut t = demo();
    t.metadata.annotations = Some([(crate::names::ANN_REPLACE_INSTANCE.to_string(), "demo-0".to_string())].into());
    assert_eq!(replace_progress(&t, "demo-0", Some("old"), Some(&old)), Replacement::Asked);
    t.metadata.annotations = None;
    assert_eq!(replace_progress(&t, "demo-0", Some("old"), Some(&old)), Replacement::Refused);
    assert_eq!(replace_progress(&t, "demo-0", Some("old"), None), Replacement::Deleted);
    assert_eq!(replace_progress(&t, "demo-0", Some("old"), Some(&pod("new", None))), Replacement::Created);
    // demo-0 is ready but out of the sync set in the fixture: still being seeded, as far as we know.
    assert_eq!(
        replace_progress(&t, "demo-0", Some("old"), Some(&pod("new", Some("node-1")))),
        Replacement::Scheduled { node: "node-1".into() }
    );
    t.status.as_mut().unwrap().instances[0].in_sync_set = true;
    assert_eq!(
        replace_progress(&t, "demo-0", Some("old"), Some(&pod("new", Some("node-1")))),
        Replacement::Ready { node: "node-1".into() }
    );
    // No pod when asked: any pod is the new one.
    assert_eq!(
        replace_progress(&t, "demo-0", None, Some(&pod("x", Some("node-1")))),
        Replacement::Ready { node: "node-1".into() }
    );
}

#[test]
fn ages_read_like_kubectl() {
    assert_eq!([age(45), age(192), age(7500), age(273600)], ["45s", "3m12s", "2h5m", "3d4h"]);
}

#[test]
fn a_backup_is_named_by_its_time_and_its_progress_read() {
    let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
    assert_eq!(backup_name("demo", now), "demo-20261129-100000");
    assert_eq!(backup_progress(None).1, None);
    let done = crate::crd::TfsBackupStatus {
        phase: Some(crate::crd::BackupPhase::Completed),
        seq: Some(1200),
        epoch: Some(4),
        size: Some("3.0MiB".into()),
        objects: vec!["ns/demo/checkpoints/1200".into()],
        ..Default::default()
    };
    assert_eq!(
        backup_progress(Some(&done)),
        ("completed: seq 1200 (epoch 4), 3.0MiB in ns/demo/checkpoints/1200".into(), Some(true))
    );
    let failed = crate::crd::TfsBackupStatus {
        phase: Some(crate::crd::BackupPhase::Failed),
        message: Some("no TfsNameserver demo".into()),
        ..Default::default()
    };
    assert_eq!(backup_progress(Some(&failed)), ("failed: no TfsNameserver demo".into(), Some(false)));
}
