//! A slave resynchronised by a snapshot holds exactly the master's history afterwards, across
//! restarts and across a crash at any step of the install: never its own divergent tail, never a
//! mix of the two histories.

mod common;

use std::time::Duration;

use common::*;
use tfs_nameserver::proto;

const SMALL_SEGMENTS: &[&str] = &["--segment-bytes", "65536"];

/// `a` logs `divergent` batches of 100 blocks that `b` never receives, then dies; `b` becomes
/// master at epoch 2 and logs `after` batches of 50 of its own. Returns `a`'s history (seq, blocks)
/// as it was when it died.
async fn diverge(a: &mut Node, b: &Node, divergent: u32, after: u32) -> (u64, Vec<proto::Block>) {
    create_blocks(a, 3, 100).await;
    same_state(a, b).await;
    b.signal("STOP");
    a.wait_for("b out of the sync set", Duration::from_secs(10), |s| s.sync_set.is_empty()).await;
    create_blocks(a, divergent, 100).await;
    let old = (a.status().await.applied_seq, all_blocks(a).await);
    a.kill9();
    b.signal("CONT");
    b.master(2).await;
    b.dataservers(3).await;
    create_blocks(b, after, 50).await;
    old
}

/// What a node recovered from its disk, compared with `master` (idle) without rejoining it.
async fn recovered_equals(node: &Node, master: &Node) -> Result<(), String> {
    let (sn, sm) = (node.status().await, master.status().await);
    if sn.applied_seq != sm.applied_seq {
        return Err(format!("recovered seq {} (epoch {}), master's {}", sn.applied_seq, sn.epoch, sm.applied_seq));
    }
    if all_blocks(node).await != all_blocks(master).await {
        return Err("recovered blocks differ from the master's".into());
    }
    Ok(())
}

/// The old master checkpointed inside its divergent tail (seq > the snapshot's); after the install
/// and a restart it must recover the new master's history, not its own checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_install_replaces_a_newer_checkpoint_of_a_divergent_tail() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[SMALL_SEGMENTS, &["--checkpoint-every", "1000"]].concat());
    let mut b = Node::new("b", root.path(), SMALL_SEGMENTS);
    start_pair(&mut a, &mut b).await;
    let (old_seq, _) = diverge(&mut a, &b, 30, 2).await;
    let snap_seq = b.status().await.applied_seq;
    assert!(a.log_text().contains("checkpoint written"), "a must have checkpointed inside its divergent tail");
    assert!(old_seq > snap_seq + 1000, "a's divergent tail ({old_seq}) must outrun b's log ({snap_seq})");

    a.start_ready().await;
    a.slave_of(&b, 2).await;
    same_state(&b, &a).await;
    assert!(a.log_text().contains("snapshot installed"), "a must have been resynchronised by a snapshot");
    a.kill9();
    a.start_ready().await;
    if let Err(e) = recovered_equals(&a, &b).await {
        panic!("after a restart, a does not hold the history it installed: {e}\nlog of a:\n{}", a.log_text());
    }
    // And it still follows without another snapshot.
    a.slave_of(&b, 2).await;
    let installs = a.log_text().matches("snapshot installed").count();
    create_blocks(&b, 2, 50).await;
    same_state(&b, &a).await;
    assert_eq!(a.log_text().matches("snapshot installed").count(), installs, "a diverged again after its restart");
}

/// kill -9 (an abort at a crash point) at each step of an install: the node restarts with either
/// its old history whole or the snapshot's, never a mix, and then rejoins.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_any_step_of_an_install_leaves_one_history_or_the_other() {
    for point in CRASH_POINTS {
        let root = tempfile::tempdir().unwrap();
        let mut a = Node::new("a", root.path(), SMALL_SEGMENTS);
        let mut b = Node::new("b", root.path(), SMALL_SEGMENTS);
        start_pair(&mut a, &mut b).await;
        let (old_seq, old_blocks) = diverge(&mut a, &b, 5, 2).await;
        let new_seq = b.status().await.applied_seq;
        assert!(old_seq > new_seq, "{point}: the divergent tail must outrun the new master's log");

        a.env = vec![("TFS_CRASH_AT".into(), point.to_string())];
        a.start_ready().await;
        a.slave_of(&b, 2).await;
        assert!(a.wait_exit(Duration::from_secs(20)), "{point}: the crash point was never reached\n{}", a.log_text());
        a.env.clear();
        a.start();
        let ready = a.wait_ready(Duration::from_secs(20)).await;
        assert!(ready, "{point}: a does not start after the crash:\n{}", a.log_text());
        let s = a.status().await;
        let blocks = all_blocks(&a).await;
        let whole_old = s.applied_seq == old_seq && blocks == old_blocks;
        let whole_new = recovered_equals(&a, &b).await.is_ok();
        assert!(
            whole_old || whole_new,
            "{point}: recovered seq {} with {} blocks is neither a's old history (seq {old_seq}, {} blocks) nor the \
             snapshot's (seq {new_seq})\nlog of a:\n{}",
            s.applied_seq,
            blocks.len(),
            old_blocks.len(),
            a.log_text()
        );
        a.slave_of(&b, 2).await;
        same_state(&b, &a).await;
        b.wait_for("a in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"a".to_string())).await;
    }
}

/// The steps of an install, in order (see engine/writer.rs `install`).
const CRASH_POINTS: &[&str] = &[
    "install:checkpoint-written",
    "install:first-segment-removed",
    "install:log-reset",
    "install:checkpoints-replaced",
];
