//! A standalone nameserver under kill -9: nothing acknowledged is lost, ids are never reused,
//! corruption stops the start with a precise error.

mod common;

use std::time::Duration;

use common::*;
use tfs_nameserver::proto;

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_load_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--standalone"]);
    a.start_ready().await;
    let rec = root.path().join("acked");
    let mut load = ctl_bg(
        &[
            "--addr",
            &a.client,
            "bench",
            "--op",
            "create",
            "--count",
            "60000",
            "--concurrency",
            "64",
            "--sim-dataservers",
            "3",
            "--record",
            rec.to_str().unwrap(),
            "--retry-for",
            "20s",
        ],
        &root.path().join("bench.log"),
    );
    wait_acked(&rec, 3000, Duration::from_secs(30)).await;
    a.kill9();
    let acked_before_restart = lines(&rec);
    a.start_ready().await;
    let st = load.wait().unwrap();
    assert!(st.success(), "bench failed: {}", std::fs::read_to_string(root.path().join("bench.log")).unwrap());
    assert!(lines(&rec) >= acked_before_restart);
    let (ok, out) = verify(&a.client, &rec);
    assert!(ok, "{out}");
    assert!(out.contains("lost=0"), "{out}");
    // The allocator continues above every id handed out before the crash.
    let max_acked = std::fs::read_to_string(&rec)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap();
    let r = a.client().await.create_block(proto::CreateBlockRequest { replicas: 1, request_id: None }).await;
    // Dataservers were simulated by the bench, which has stopped: their leases may have lapsed.
    if let Ok(r) = r {
        assert!(r.into_inner().block.unwrap().id > max_acked);
    }
    assert!(a.status().await.next_block_id > max_acked);
}

#[tokio::test(flavor = "multi_thread")]
async fn corruption_in_the_middle_stops_the_start_naming_file_offset_and_seq() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--standalone", "--segment-bytes", "8192"]);
    a.start_ready().await;
    a.dataservers(2).await;
    let mut c = a.client().await;
    for _ in 0..20 {
        c.batch_create_blocks(proto::BatchCreateBlocksRequest { count: 50, replicas: 2, request_id: None })
            .await
            .unwrap();
    }
    a.kill9();
    let oplog = a.dir.join("data/oplog");
    let mut segs: Vec<_> = std::fs::read_dir(&oplog).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    assert!(segs.len() >= 3, "expected several segments, got {}", segs.len());
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(victim, &bytes).unwrap();
    a.start();
    let status = a.child.as_mut().unwrap().wait().unwrap();
    assert!(!status.success(), "a corrupt oplog must stop the start");
    let log = a.log_text();
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        log.contains(name) && log.contains("offset") && log.contains("expected seq"),
        "error must name file, offset and seq:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--standalone"]);
    a.start_ready().await;
    let mut c = a.client().await;
    let e = c.get_block(proto::GetBlockRequest { block_id: 12345, stale: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c.create_block(proto::CreateBlockRequest { replicas: 2, request_id: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("live dataservers"), "{}", e.message());
    let e = c.create_block(proto::CreateBlockRequest { replicas: 99, request_id: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .batch_create_blocks(proto::BatchCreateBlocksRequest { count: 1_000_000, replicas: 1, request_id: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c.list_blocks(proto::ListBlocksRequest { after: 0, limit: u32::MAX, stale: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let o = ctl(&["--addr", "not-an-address", "status"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("host:port"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ctl(&["--addr", &a.client, "block", "get", "notanumber"]);
    assert!(!o.status.success());
    // A standalone node takes no role.
    let e = a.assume(proto::Role::Slave, 5, "127.0.0.1:1", Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
}

/// `--log-format json`: every log line is one JSON object with a timestamp, a level and the
/// message's fields, for a log collector.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--standalone", "--log-format", "json"]);
    a.start_ready().await;
    let text = a.log_text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{text}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"message\":\"engine ready\"")),
        "the engine's start is logged as a field: {text}"
    );
}
