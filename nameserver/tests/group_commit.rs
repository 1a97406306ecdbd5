//! Group commit under load (engine/writer.rs): a group commit waits `--commit-delay` for more
//! writes to join it only while `--commit-siblings` records of writes are in flight.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tfs_nameserver::proto;

const DELAY: Duration = Duration::from_millis(500);

/// Group commits that served more than one request so far (tfs_nameserver_oplog_batch_requests).
fn shared_commits(n: &Node) -> u64 {
    let m = n.metrics_text();
    let value = |series: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in the metrics:\n{m}")) as u64
    };
    value("tfs_nameserver_oplog_batch_requests_count ")
        - value("tfs_nameserver_oplog_batch_requests_bucket{le=\"1.0\"} ")
}

/// A master with the given commit settings, 3 dataservers.
async fn master(root: &std::path::Path, siblings: u32) -> Node {
    let delay = format!("{}ms", DELAY.as_millis());
    let mut a = Node::new("a", root, &["--commit-delay", &delay, "--commit-siblings", &siblings.to_string()]);
    a.start_ready().await;
    a.master(1).await;
    a.dataservers(3).await;
    a
}

/// Two creates, the second sent 100 ms after the first; returns how long both took.
async fn two_creates(a: &Node) -> Duration {
    let t = Instant::now();
    let mut c = a.client().await;
    let first = tokio::spawn(async move {
        c.create_block(proto::CreateBlockRequest { replicas: 0, request_id: None }).await.map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = a.client().await;
    c.create_block(proto::CreateBlockRequest { replicas: 0, request_id: None }).await.unwrap();
    first.await.unwrap().unwrap();
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn under_load_a_group_commit_waits_for_more_writes() {
    let root = tempfile::tempdir().unwrap();
    // One record in flight is "load" here: the first create waits, the second joins it.
    let a = master(root.path(), 1).await;
    let before = shared_commits(&a);
    let took = two_creates(&a).await;
    assert!(took >= DELAY, "the first create was committed after {took:?}, without waiting {DELAY:?}");
    assert!(took < DELAY * 2, "the second create had a group commit of its own ({took:?}): it did not join the first");
    assert_eq!(shared_commits(&a) - before, 1, "the two creates were not made durable by one fdatasync");
}

#[tokio::test(flavor = "multi_thread")]
async fn below_the_siblings_nothing_waits() {
    let root = tempfile::tempdir().unwrap();
    // Never three records in flight: no create waits.
    let a = master(root.path(), 3).await;
    let before = shared_commits(&a);
    let took = two_creates(&a).await;
    assert!(took < DELAY, "two creates took {took:?}: a group commit waited below --commit-siblings");
    assert_eq!(shared_commits(&a), before, "a group commit served both creates: the first waited for the second");
}

/// The delay comes before the mastership check: a mastership that lapses while the writer waits
/// refuses the write, and nothing is logged.
#[tokio::test(flavor = "multi_thread")]
async fn a_mastership_that_lapses_during_the_delay_refuses_the_write() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--commit-delay", "3s", "--commit-siblings", "1"]);
    a.start_ready().await;
    a.assume(proto::Role::Master, 1, "", Duration::from_secs(1)).await.unwrap();
    a.dataservers(3).await;
    let before = a.status().await;
    let mut c = a.client().await;
    let r = c.create_block(proto::CreateBlockRequest { replicas: 0, request_id: None }).await;
    assert!(r.is_err(), "a create was acknowledged after the mastership lapsed during the delay: {r:?}");
    let after = a.status().await;
    assert_eq!(after.block_count, before.block_count, "a block was logged after the mastership lapsed");
    assert_eq!(after.applied_seq, before.applied_seq, "records were logged after the mastership lapsed");
}
