use super::*;

#[test]
fn sync_set_holds_commit_back() {
    let c = Commit::new(0, ReplicationMode::Sync);
    c.join_if_caught_up("b", 0, 0);
    c.set_durable(10);
    assert_eq!(c.committed(), 0);
    c.ack("b", 7);
    assert_eq!(c.committed(), 7);
    c.ack("stranger", 10);
    assert_eq!(c.committed(), 7);
    c.ack("b", 12);
    assert_eq!(c.committed(), 10, "never beyond the local durable seq");
    c.remove_from_sync_set("b");
    c.set_durable(15);
    assert_eq!(c.committed(), 15);
}

#[test]
fn removal_holds_commits_back_until_published() {
    let c = Commit::new(0, ReplicationMode::Sync);
    c.set_publish_removals(true);
    c.join_if_caught_up("b", 0, 0);
    c.set_durable(10);
    c.ack("b", 4);
    c.remove_from_sync_set("b");
    assert!(c.sync_set().is_empty());
    assert_eq!(c.view().pending, vec!["b".to_string()]);
    c.set_durable(20);
    assert_eq!(c.committed(), 4, "an unpublished removal still holds commits back");
    c.published(c.view().version - 1);
    assert_eq!(c.committed(), 4, "publishing an older version is not enough");
    c.published(c.view().version);
    assert_eq!(c.committed(), 20);
    assert!(c.view().pending.is_empty());
    // Rejoining cancels a pending removal.
    c.join_if_caught_up("b", 20, 0);
    c.remove_from_sync_set("b");
    c.join_if_caught_up("b", 20, 0);
    assert!(c.view().pending.is_empty());
}

/// A published (members, version) pair must be the set as it was at that version: the heart
/// publishes the members and then reports the version, which releases pending removals.
#[test]
fn the_published_view_is_one_consistent_pair() {
    let c = std::sync::Arc::new(Commit::new(0, ReplicationMode::Sync));
    c.set_publish_removals(true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (c, stop) = (c.clone(), stop.clone());
        // Versions: add → odd (b in the set), remove → even (b out).
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                c.join_if_caught_up("b", 0, 0);
                c.remove_from_sync_set("b");
            }
        })
    };
    let mut bad = None;
    for _ in 0..200_000 {
        let v = c.view();
        let has_b = v.members.iter().any(|m| m == "b");
        if has_b != (v.version % 2 == 1) {
            bad = Some(v);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert_eq!(bad, None, "a view whose members are not the set of its version");
}

/// Joining is one step with the caught-up check: once a slave is in the set, nothing beyond its
/// acked seq is committed, even while the durable seq races ahead.
#[test]
fn a_slave_joins_only_if_caught_up_at_that_instant() {
    let c = std::sync::Arc::new(Commit::new(0, ReplicationMode::Sync));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                c.set_durable(seq);
            }
        })
    };
    let mut violation = None;
    for _ in 0..200_000 {
        let acked = c.committed();
        if c.join_if_caught_up("b", acked, 1) {
            let committed = c.committed();
            if committed > acked {
                violation = Some((acked, committed));
                break;
            }
            c.remove_from_sync_set("b");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(violation, None, "(acked, committed) of a slave that joined: commit passed what it holds");
}

#[test]
fn async_mode_ignores_slaves_and_commit_never_decreases() {
    let c = Commit::new(5, ReplicationMode::Async);
    assert!(c.join_if_caught_up("b", 5, 0));
    c.set_durable(9);
    assert_eq!(c.committed(), 9);
    c.set_durable(3);
    assert_eq!(c.committed(), 9);
}

#[tokio::test]
async fn waiters_are_released_when_their_seq_commits_and_not_before() {
    let c = std::sync::Arc::new(Commit::new(0, ReplicationMode::Sync));
    c.join_if_caught_up("b", 0, 0);
    let spawn = |seq| {
        let c = c.clone();
        tokio::spawn(async move { c.wait(seq).await })
    };
    let (w5, w8, w9) = (spawn(5), spawn(8), spawn(9));
    while c.waiting() < 3 {
        tokio::task::yield_now().await;
    }
    c.set_durable(9);
    c.ack("b", 6);
    w5.await.unwrap();
    tokio::task::yield_now().await;
    assert!(!w8.is_finished() && !w9.is_finished(), "released before their seq committed");
    assert_eq!(c.waiting(), 2);
    c.ack("b", 9);
    w8.await.unwrap();
    w9.await.unwrap();
    assert_eq!(c.waiting(), 0);
    c.wait(3).await; // already committed: at once, nothing registered
    assert_eq!(c.waiting(), 0);
}

/// A waiter registering while another thread advances the commit is never missed.
#[test]
fn no_waiter_is_missed_by_a_concurrent_advance() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = std::sync::Arc::new(Commit::new(0, ReplicationMode::Async));
    let n = 20_000u64;
    let waits: Vec<_> = (1..=n)
        .map(|s| {
            let c = c.clone();
            rt.spawn(async move { c.wait(s).await })
        })
        .collect();
    let adv = {
        let c = c.clone();
        std::thread::spawn(move || (1..=n).for_each(|s| c.set_durable(s)))
    };
    adv.join().unwrap();
    rt.block_on(async {
        for w in waits {
            tokio::time::timeout(std::time::Duration::from_secs(10), w).await.expect("a waiter was missed").unwrap();
        }
    });
    assert_eq!(c.waiting(), 0);
}

#[tokio::test]
async fn a_wait_given_up_leaves_no_entry() {
    let c = Commit::new(0, ReplicationMode::Sync);
    c.join_if_caught_up("b", 0, 0);
    c.set_durable(10);
    for _ in 0..100 {
        let r = tokio::time::timeout(std::time::Duration::from_millis(1), c.wait(5)).await;
        assert!(r.is_err(), "seq 5 is not committed");
    }
    assert_eq!(c.waiting(), 0, "waits given up are still registered");
}

#[test]
fn reset_releases_waiters_at_or_below_the_new_seq() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let c = std::sync::Arc::new(Commit::new(0, ReplicationMode::Sync));
    c.join_if_caught_up("b", 0, 0);
    rt.block_on(async {
        let (a, b) = (
            rt.spawn({
                let c = c.clone();
                async move { c.wait(4).await }
            }),
            rt.spawn({
                let c = c.clone();
                async move { c.wait(40).await }
            }),
        );
        while c.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        c.reset(10);
        a.await.unwrap();
        assert!(!b.is_finished());
        assert_eq!(c.committed(), 10);
    });
}
