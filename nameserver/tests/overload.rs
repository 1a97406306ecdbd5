//! Overload gets a fast refusal, never a hang, and no work is done for a client that has gone.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A flood of the largest batches a client may ask for (64 concurrent BatchCreateBlocks(10000),
/// with tfsctl's 2 s deadline and retries): every call ends acknowledged or refused, Status keeps
/// answering within 1 s, the slave stays in the sync set, and the nameserver holds exactly the
/// blocks it acknowledged (a call whose client gave up was not executed later).
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_batches_is_answered_or_refused_and_leaks_no_block() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    let mut b = Node::new("b", root.path(), &[]);
    start_pair(&mut a, &mut b).await;
    let rec = root.path().join("acked");
    let log = root.path().join("bench.log");
    let t0 = Instant::now();
    let args = "bench --op batch-create --batch 10000 --count 64 --concurrency 64 --sim-dataservers 3 --record";
    let mut bench = ctl_bg(
        &[&["--addr", &a.client], &args.split(' ').collect::<Vec<_>>()[..], &[rec.to_str().unwrap()]].concat(),
        &log,
    );
    let mut slowest = Duration::ZERO;
    let mut silent = 0;
    let exit = loop {
        if let Some(st) = bench.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "the bench did not finish in 180 s");
        let t = Instant::now();
        match a.try_status().await {
            Some(_) => slowest = slowest.max(t.elapsed()),
            None => silent += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = std::fs::read_to_string(&log).unwrap();
    eprintln!("bench exited {exit} after {:?}; slowest status {slowest:?}\n{out}", t0.elapsed());
    assert_eq!(silent, 0, "Status did not answer within 1 s {silent} times during the flood");
    let sa = a.status().await;
    let acked = lines(&rec) as u64;
    assert_eq!(sa.block_count, acked, "blocks held vs blocks acknowledged: work done for clients that had gone");
    b.wait_for("the slave caught up", Duration::from_secs(60), |s| s.applied_seq >= sa.applied_seq).await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"b".to_string())).await;
}
