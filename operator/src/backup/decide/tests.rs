use super::*;

fn now() -> Time {
    Time("2026-11-29T10:00:00Z".parse().unwrap())
}

fn running() -> TfsBackupStatus {
    begin(&TfsBackupStatus::default(), &now()).unwrap().status
}

#[test]
fn a_new_backup_runs_then_completes_with_what_the_master_took() {
    let s = running();
    assert_eq!(s.phase, Some(BackupPhase::Running));
    assert_eq!(s.started_at, Some(now()));
    assert_eq!(begin(&s, &now()), None, "started once");
    let taken = Taken {
        master: "demo-1".into(),
        epoch: 4,
        seq: 1200,
        bytes: 3 * 1024 * 1024,
        object: "ns/demo/checkpoints/00000000000000001200".into(),
        archived_seq: 1210,
    };
    let n = decide(&s, Outcome::Taken(taken), &now());
    let c = &n.status;
    assert_eq!(c.phase, Some(BackupPhase::Completed));
    assert_eq!((c.seq, c.epoch, c.size_bytes, c.archived_seq), (Some(1200), Some(4), Some(3 << 20), Some(1210)));
    assert_eq!(c.size.as_deref(), Some("3.0MiB"));
    assert_eq!(c.objects, vec!["ns/demo/checkpoints/00000000000000001200".to_string()]);
    assert_eq!((c.started_at.clone(), c.completed_at.clone()), (Some(now()), Some(now())));
    assert_eq!(c.conditions[0].status, "True");
    assert_eq!(n.requeue, None);
    assert_eq!(n.event.as_ref().map(|e| (e.0, e.1)), Some((false, "Completed")));
}

#[test]
fn a_missing_nameserver_or_archive_fails_at_once() {
    for (o, reason) in [
        (Outcome::NameserverMissing("no TfsNameserver demo in ns".into()), "NameserverNotFound"),
        (Outcome::NoBackupSpec("TfsNameserver demo has no spec.backup".into()), "NoBackupSpec"),
    ] {
        let n = decide(&running(), o, &now());
        assert_eq!(n.status.phase, Some(BackupPhase::Failed));
        assert_eq!(n.status.conditions[0].reason, reason);
        assert_eq!(n.requeue, None);
        assert_eq!(n.event.as_ref().map(|e| (e.0, e.1)), Some((true, "BackupFailed")));
    }
}

#[test]
fn an_unreachable_master_is_retried_with_backoff_then_fails() {
    let mut s = running();
    let mut waits = Vec::new();
    loop {
        let n = decide(&s, Outcome::Unreachable("no master holds the Lease".into()), &now());
        s = n.status;
        match n.requeue {
            Some(w) => {
                assert_eq!(s.phase, Some(BackupPhase::Running));
                waits.push(w.as_secs());
            }
            None => break,
        }
    }
    assert_eq!(waits, vec![2, 4, 8, 16]);
    assert_eq!(s.phase, Some(BackupPhase::Failed));
    assert_eq!(s.attempts, MAX_ATTEMPTS);
    assert!(s.message.as_deref().unwrap().contains("gave up after 5 attempts"), "{:?}", s.message);
}

#[test]
fn a_final_backup_is_never_taken_again() {
    let failed = decide(&running(), Outcome::NameserverMissing("gone".into()), &now()).status;
    let n = decide(&failed, Outcome::Taken(Taken::default()), &now());
    assert_eq!((n.status, n.requeue, n.event), (failed.clone(), None, None));
    assert_eq!(begin(&failed, &now()), None);
}
