//! Reads are linearizable by default: only a master inside its validity answers, and only with
//! committed state. A stale read is an explicit opt-in and says so. No read leaves a waiter behind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tfs_nameserver::proto;
use tonic::Code;

async fn get(n: &Node, id: u64, stale: bool) -> Result<proto::GetBlockReply, tonic::Status> {
    let mut c = n.client().await;
    c.get_block(proto::GetBlockRequest { block_id: id, stale }).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slave_refuses_reads_unless_asked_for_a_stale_one() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Node::new("a", root.path(), &[]), Node::new("b", root.path(), &[]));
    start_pair(&mut a, &mut b).await;
    let id = create_blocks(&a, 1, 1).await[0];
    same_state(&a, &b).await;
    let e = get(&b, id, false).await.expect_err("a slave answered a linearizable read");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("slave") && e.message().contains(&a.repl), "the refusal says where to go: {e:?}");
    let r = get(&b, id, true).await.expect("a stale read is served by any node");
    assert!(r.stale && r.applied_seq >= 1 && r.epoch == 1, "a stale reply says what it is: {r:?}");
    let r = get(&a, id, false).await.expect("the master answers");
    assert!(!r.stale);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lapsed_master_refuses_reads() {
    let root = tempfile::tempdir().unwrap();
    let (a, id) = lone_master(root.path()).await;
    a.assume(proto::Role::Master, 1, "", Duration::from_millis(300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = get(&a, id, false).await.expect_err("a lapsed master answered a read");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

/// Master `a` whose only sync slave `b` is frozen and whose removal is not published: whatever `a`
/// applies from now on cannot commit. Returns them and a block both held before.
async fn master_with_a_frozen_slave(root: &std::path::Path) -> (Node, Node, u64) {
    let published = ["--sync-set-publication", "lease"];
    let (mut a, mut b) = (Node::new("a", root, &published), Node::new("b", root, &published));
    start_pair(&mut a, &mut b).await;
    let id = create_blocks(&a, 1, 1).await[0];
    same_state(&a, &b).await;
    b.signal("STOP");
    a.wait_for("b's removal pending", Duration::from_secs(10), |s| !s.sync_set_pending_removal.is_empty()).await;
    (a, b, id)
}

/// A write applied on the master but never committed (its only sync slave is frozen and its
/// removal not published) is never shown to a reader: the read fails instead, within the master's
/// validity, and leaves no waiter behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_never_returns_an_uncommitted_tail_and_leaves_no_waiter() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, id) = master_with_a_frozen_slave(root.path()).await;
    let mut c = a.client().await;
    let commit = tokio::spawn(async move {
        let req =
            proto::CommitBlockRequest { block_id: id, version: 5, size: 4096, file_count: 1, ..Default::default() };
        c.commit_block(req).await
    });
    a.wait_for("version 5 applied", Duration::from_secs(5), |s| s.applied_seq > s.committed_seq).await;
    // Validity short enough for the test: the read may wait for the commit only while it lasts.
    a.assume(proto::Role::Master, 1, "", Duration::from_secs(2)).await.unwrap();
    let t0 = Instant::now();
    match get(&a, id, false).await {
        Ok(r) => {
            let v = r.block.map(|b| b.version);
            assert_ne!(v, Some(5), "a read returned version 5, which was never committed");
        }
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(4), "the read waited past the master's validity");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = a.status().await;
    assert!(s.applied_seq > s.committed_seq, "still uncommitted: {s:?}");
    assert!(s.commit_waiters <= 1, "a finished read left its waiter behind: {} waiting", s.commit_waiters);
    b.signal("CONT");
    drop(commit);
}

/// A refusal is an answer about the state too: a commit refused as older than a version that was
/// applied but never committed (the only sync slave frozen) would tell the client of a version
/// the next master may never have. The refusal waits for what it saw, like a read: it fails
/// UNAVAILABLE when that does not commit, never "older than 5".
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_never_rests_on_an_uncommitted_tail() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, id) = master_with_a_frozen_slave(root.path()).await;
    let req = move |version| proto::CommitBlockRequest { block_id: id, version, size: 4096, ..Default::default() };
    let mut c = a.client().await;
    let pending = tokio::spawn(async move { c.commit_block(req(5)).await });
    a.wait_for("version 5 applied", Duration::from_secs(5), |s| s.applied_seq > s.committed_seq).await;
    a.assume(proto::Role::Master, 1, "", Duration::from_secs(2)).await.unwrap();
    let t0 = Instant::now();
    let e = a
        .client()
        .await
        .commit_block(req(3))
        .await
        .expect_err("version 3 is older than the committed version 0? it was accepted");
    assert_eq!(e.code(), Code::Unavailable, "refused from uncommitted state: {e:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "the refusal waited past the master's validity");
    b.signal("CONT");
    drop(pending);
}
