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

/// A data volume below its free-space reserve refuses writes at once (RESOURCE_EXHAUSTED, saying
/// what to do), logs nothing, and goes on serving reads; the process does not stop. The reserve is
/// set above the real free space of the test's volume (statvfs is real): a full disk without
/// filling one. Without the reserve the write is logged, and on a truly full volume the failed
/// append stops the process (writer.rs), again at each restart.
#[tokio::test(flavor = "multi_thread")]
async fn below_the_free_space_reserve_writes_are_refused_and_reads_go_on() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--standalone", "--min-free-bytes", "1000000000000000000"]);
    a.start_ready().await;
    let before = a.status().await;
    let mut c = a.client().await;
    let e =
        c.create_block(tfs_nameserver::proto::CreateBlockRequest { replicas: 1, request_id: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("below the reserve") && e.message().contains("spec.storage.size"), "{}", e.message());
    let after = a.status().await;
    assert_eq!(after.durable_seq, before.durable_seq, "nothing was logged");
    let m = a.metrics_text();
    assert!(m.contains("tfs_nameserver_writes_refused_low_space_total 1"), "{m}");
    let free =
        m.lines().find(|l| l.starts_with("tfs_nameserver_data_free_bytes ")).expect("the free space is exported");
    assert!(free.split(' ').nth(1).unwrap().parse::<u64>().unwrap() > 0, "{free}");
    // A node with the default reserve on the same volume writes.
    let mut b = Node::new("b", root.path(), &["--standalone"]);
    b.start_ready().await;
    b.dataservers(3).await;
    assert_eq!(create_blocks(&b, 1, 3).await.len(), 3);
}
