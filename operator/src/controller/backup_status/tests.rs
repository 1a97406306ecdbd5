use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};

use super::*;
use crate::instance::NsStatus;
use crate::lease::Epoch;

fn with_backup() -> TfsNameserver {
    let mut t = crate::build::tests::demo();
    t.spec.backup = Some(
        serde_json::from_value(serde_json::json!({
            "objectStore": {"endpoint": "http://s3:8333", "bucket": "b", "credentialsSecret": {"name": "creds"}},
            "archiveTimeout": "2s",
        }))
        .unwrap(),
    );
    t
}

fn with_restore() -> TfsNameserver {
    let mut t = crate::build::tests::demo();
    t.spec.bootstrap = Some(
        serde_json::from_value(serde_json::json!({"fromBackup": {
            "objectStore": {"endpoint": "http://s3:8333", "bucket": "b", "prefix": "ns/old", "credentialsSecret": {"name": "creds"}},
            "targetSeq": 500,
        }}))
        .unwrap(),
    );
    t
}

fn archive(lag_ms: u64, error: &str) -> Archive {
    Archive {
        url: "s3://b/ns/demo".into(),
        archived_seq: 120,
        lag_ms,
        last_checkpoint_seq: 100,
        last_checkpoint_object: "ns/demo/checkpoints/100".into(),
        last_checkpoint_unix_ms: 1_795_000_000_000,
        last_error: error.into(),
        last_error_unix_ms: if error.is_empty() { 0 } else { 1_795_000_001_000 },
    }
}

#[test]
fn the_masters_archive_becomes_status_backup() {
    let t = with_backup();
    let a = archive(1200, "");
    let s = backup_status(&t, None, "demo-0", Some(&a)).unwrap();
    assert_eq!(s.master.as_deref(), Some("demo-0"));
    assert_eq!(s.last_archived_seq, 120);
    assert_eq!(s.archive_lag.as_deref(), Some("1.2s"));
    let c = s.last_checkpoint_archived.clone().unwrap();
    assert_eq!((c.seq, c.object.as_str()), (100, "ns/demo/checkpoints/100"));
    assert!(c.time.is_some());
    // The master says nothing (none serving): the last report stays.
    assert_eq!(backup_status(&t, Some(&s), "", None), Some(s));
    // No spec.backup, no status.backup.
    assert_eq!(backup_status(&crate::build::tests::demo(), None, "demo-0", Some(&a)), None);
}

#[test]
fn backup_healthy_follows_errors_and_lag() {
    let t = with_backup();
    // 3 x 2s + 5s = 11 s.
    assert_eq!(lag_limit(&t), Duration::from_secs(11));
    let ok = backup_condition(&t, &[], Some("demo-0"), Some(&archive(10_900, ""))).unwrap();
    assert_eq!((ok.status.as_str(), ok.reason.as_str()), ("True", "Archiving"));
    let lagging = backup_condition(&t, &[], Some("demo-0"), Some(&archive(11_000, ""))).unwrap();
    assert_eq!((lagging.status.as_str(), lagging.reason.as_str()), ("False", "ArchiveLagging"));
    let failing =
        backup_condition(&t, &[], Some("demo-0"), Some(&archive(0, "PUT ns/demo/log/1: 403 AccessDenied"))).unwrap();
    assert_eq!((failing.status.as_str(), failing.reason.as_str()), ("False", "ArchiveFailing"));
    assert!(failing.message.contains("403 AccessDenied"), "{}", failing.message);
    let unknown = backup_condition(&t, &[], Some("demo-0"), None).unwrap();
    assert_eq!((unknown.status.as_str(), unknown.reason.as_str()), ("Unknown", "NotArchiving"));
    let nomaster = backup_condition(&t, &[], None, None).unwrap();
    assert_eq!(nomaster.reason, "NoMaster");
    assert!(backup_condition(&crate::build::tests::demo(), &[], Some("demo-0"), None).is_none());
}

#[test]
fn events_mark_transitions_only() {
    let t = with_backup();
    let ok = backup_condition(&t, &[], Some("demo-0"), Some(&archive(0, ""))).unwrap();
    let bad = backup_condition(&t, &[], Some("demo-0"), Some(&archive(0, "timeout"))).unwrap();
    assert_eq!(transition_event(&[], &ok), None, "a healthy start is no news");
    assert_eq!(transition_event(std::slice::from_ref(&ok), &bad), Some((EventType::Warning, "BackupFailed")));
    assert_eq!(transition_event(std::slice::from_ref(&bad), &bad), None, "once per transition");
    let lagging = backup_condition(&t, &[], Some("demo-0"), Some(&archive(60_000, ""))).unwrap();
    assert_eq!(transition_event(std::slice::from_ref(&bad), &lagging), None, "still failing");
    assert_eq!(transition_event(std::slice::from_ref(&bad), &ok), Some((EventType::Normal, "BackupHealthy")));
}

fn pod0(init: Option<ContainerStatus>) -> Pod {
    let t = with_restore();
    let mut p = crate::build::pod(&t, 0);
    p.status = Some(PodStatus { init_container_statuses: init.map(|s| vec![s]), ..Default::default() });
    p
}

fn restore_status(state: ContainerState, last: Option<ContainerState>) -> ContainerStatus {
    ContainerStatus { name: "restore".into(), state: Some(state), last_state: last, ..Default::default() }
}

fn terminated(code: i32, message: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            message: Some(message.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn restored_says_restoring_failed_then_true_once_instance_0_is_master() {
    let t = with_restore();
    let lv = LeaseView::default();
    let none: [Instance; 0] = [];
    let waiting = restored_condition(&t, &[], Some(&pod0(None)), &lv, &none).unwrap();
    assert_eq!((waiting.status.as_str(), waiting.reason.as_str()), ("False", "Restoring"));
    let running = ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() };
    let c = restored_condition(&t, &[], Some(&pod0(Some(restore_status(running, None)))), &lv, &none).unwrap();
    assert_eq!(c.reason, "Restoring");
    assert!(c.message.contains("s3://b/ns/old"), "{}", c.message);
    // Failed, then waiting in back-off: the last run's termination message ...
    let why = "no checkpoint at or before seq 500 in s3://b/ns/old (oldest: ns/old/checkpoints/900)";
    let backoff = ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some("CrashLoopBackOff".into()), ..Default::default() }),
        ..Default::default()
    };
    // ... and running again: still the failure (a retry that succeeds ends Done), so the condition
    // does not flip back to Restoring at each retry.
    let again = ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() };
    for st in [
        restore_status(terminated(1, why), None),
        restore_status(backoff, Some(terminated(1, why))),
        restore_status(again, Some(terminated(1, why))),
    ] {
        let c = restored_condition(&t, &[], Some(&pod0(Some(st))), &lv, &none).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "RestoreFailed"));
        assert!(c.message.contains("oldest: ns/old/checkpoints/900"), "{}", c.message);
        assert_eq!(transition_event(&[], &c), Some((EventType::Warning, "RestoreFailed")));
    }
    // Instance 0 is master: True with its seq, and kept so from then on.
    let lv = LeaseView { holder: "demo-0".into(), epoch: Epoch(8), ..Default::default() };
    let master = Instance {
        pod: "demo-0".into(),
        ordinal: 0,
        ready: true,
        status: Some(NsStatus { master: true, writable: true, epoch: 8, durable_seq: 501, ..Default::default() }),
    };
    let done = restored_condition(&t, &[], None, &lv, std::slice::from_ref(&master)).unwrap();
    assert_eq!((done.status.as_str(), done.reason.as_str()), ("True", "Restored"));
    assert!(done.message.contains("seq 501") && done.message.contains("epoch 8"), "{}", done.message);
    let later = restored_condition(&t, std::slice::from_ref(&done), None, &LeaseView::default(), &none).unwrap();
    assert_eq!(later, done);
    assert!(restored_condition(&with_backup(), &[], None, &lv, &none).is_none());
}

#[test]
fn the_first_master_rule_holds_while_the_restore_is_pending() {
    let mut t = with_restore();
    let pods = [pod0(Some(restore_status(terminated(0, "restored seq 500 of epoch 6"), None)))];
    let r = restore_first(&t, &pods, &LeaseView::default()).unwrap();
    assert_eq!(r, RestoreFirst { pod: "demo-0".into(), epoch_floor: 6 });
    // A refused promotion names the epoch in the log.
    let lv = LeaseView {
        epoch: Epoch(7),
        released_by: Some("demo-0".into()),
        release_reason: Some(
            "nameserver refused mastership at epoch 7: cannot become master at epoch 7: records of epoch 9 are \
             already logged"
                .into(),
        ),
        ..Default::default()
    };
    assert_eq!(restore_first(&t, &[], &lv).unwrap().epoch_floor, 9);
    // Restored: no rule any more.
    let done = restored_condition(
        &t,
        &[],
        None,
        &LeaseView { holder: "demo-0".into(), ..Default::default() },
        &[Instance {
            pod: "demo-0".into(),
            ordinal: 0,
            ready: true,
            status: Some(NsStatus { master: true, writable: true, ..Default::default() }),
        }],
    )
    .unwrap();
    t.status = Some(TfsNameserverStatus { conditions: vec![done], ..Default::default() });
    assert_eq!(restore_first(&t, &pods, &lv), None);
    assert_eq!(restore_first(&with_backup(), &pods, &lv), None);
}
