//! Replication between real processes on loopback: failover without loss, rejoin with and
//! without a snapshot, self-fencing, epochs, a frozen slave, damaged and reordered frames.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tfs_nameserver::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SYNC: &[&str] = &["--checkpoint-every", "2000", "--segment-bytes", "65536"];

async fn pair(root: &std::path::Path) -> (Node, Node) {
    pair_with(root, &[]).await
}

/// A master `a` (with `a_extra` flags) and its slave `b`, in the sync set, 3 dataservers.
async fn pair_with(root: &std::path::Path, a_extra: &[&str]) -> (Node, Node) {
    let mut a = Node::new("a", root, &[SYNC, a_extra].concat());
    let mut b = Node::new("b", root, SYNC);
    start_pair(&mut a, &mut b).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_after_kill9_loses_nothing_and_never_reuses_an_id() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, b) = pair(root.path()).await;
    let rec = root.path().join("acked");
    let mut load = ctl_bg(
        &[
            "--addr",
            &a.client,
            "bench",
            "--op",
            "create",
            "--count",
            "1000000",
            "--concurrency",
            "64",
            "--record",
            rec.to_str().unwrap(),
            "--retry-for",
            "1s",
        ],
        &root.path().join("bench.log"),
    );
    wait_acked(&rec, 5000, Duration::from_secs(30)).await;
    a.kill9();
    b.master(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = load.kill();
    let _ = load.wait();
    let (ok, out) = verify(&b.client, &rec);
    assert!(ok, "{out}");
    // New ids on the promoted slave never collide with any id the old master handed out.
    let max_old = std::fs::read_to_string(&rec)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap();
    b.dataservers(3).await;
    let fresh = create_blocks(&b, 5, 20).await;
    assert!(fresh.iter().all(|id| *id > max_old), "a promoted slave reused an id: max old {max_old}, new {fresh:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_master_rejoins_by_snapshot_after_divergence_then_by_stream() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, b) = pair(root.path()).await;
    create_blocks(&a, 10, 300).await;
    same_state(&a, &b).await;
    // B freezes; A drops it from the sync set and goes on alone: A now holds records B lacks.
    b.signal("STOP");
    a.wait_for("b out of the sync set", Duration::from_secs(10), |s| s.sync_set.is_empty()).await;
    create_blocks(&a, 5, 100).await;
    a.kill9();
    b.signal("CONT");
    b.master(2).await;
    b.dataservers(3).await;
    create_blocks(&b, 10, 300).await; // B checkpoints and removes the segments A would need
    let sb = b.status().await;
    assert!(sb.first_log_seq > 1, "expected B to have truncated its log, status {sb:?}");
    a.start_ready().await;
    a.slave_of(&b, 2).await;
    same_state(&b, &a).await;
    assert!(a.log_text().contains("snapshot installed"), "A must have been resynchronised by a snapshot");
    b.wait_for("a in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"a".to_string())).await;
    // A second rejoin, on the same history: a plain stream, no snapshot.
    a.kill9();
    create_blocks(&b, 3, 100).await;
    let snapshots_before = a.log_text().matches("snapshot installed").count();
    a.start_ready().await;
    a.slave_of(&b, 2).await;
    same_state(&b, &a).await;
    assert_eq!(
        a.log_text().matches("snapshot installed").count(),
        snapshots_before,
        "a slave on the same history must not need a snapshot"
    );
}

/// 64 concurrent BatchCreateBlocks(10000) make group commits far larger than one replication
/// frame: the stream must split them, and the slave must keep up and stay in the sync set.
#[tokio::test(flavor = "multi_thread")]
async fn group_commits_larger_than_a_frame_reach_the_slave() {
    let root = tempfile::tempdir().unwrap();
    // Brakes off (overload.rs tests them): all 64 calls in one group commit of ~45 MB.
    let (a, b) = pair_with(root.path(), &["--max-inflight-records", "1000000", "--max-group-records", "1000000"]).await;
    let c = a.client().await;
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move {
                c.batch_create_blocks(proto::BatchCreateBlocksRequest { count: 10_000, replicas: 2, request_id: None })
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for call in calls {
        created += call.await.unwrap().expect("batch create").into_inner().blocks.len();
    }
    assert_eq!(created, 640_000);
    let sa = a.wait_for("status", Duration::from_secs(30), |_| true).await;
    // (>=: the master may log more meanwhile, e.g. dataserver leases lapsing on a slow machine.)
    b.wait_for("the slave caught up", Duration::from_secs(60), |s| s.applied_seq >= sa.applied_seq).await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"b".to_string())).await;
    assert!(!b.log_text().contains("exceeds"), "the slave was sent a frame over its limit:\n{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_master_refuses_writes_within_100ms_and_lower_epochs_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    let mut b = Node::new("b", root.path(), &[]);
    a.start_ready().await;
    b.start_ready().await;
    // A slave that knows no master refuses writes.
    let e =
        a.client().await.create_block(proto::CreateBlockRequest { replicas: 1, request_id: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    a.assume(proto::Role::Master, 1, "", Duration::from_secs(60)).await.unwrap();
    a.dataservers(1).await;
    let valid = Duration::from_millis(700);
    a.assume(proto::Role::Master, 1, "", valid).await.unwrap();
    let deadline = Instant::now() + valid; // the server's deadline is no later than this
    let mut c = a.client().await;
    let refused_at = loop {
        let sent = Instant::now();
        match c.create_block(proto::CreateBlockRequest { replicas: 1, request_id: None }).await {
            Ok(_) => assert!(sent < deadline, "a write was accepted after the deadline"),
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                break Instant::now();
            }
        }
        assert!(Instant::now() < deadline + Duration::from_secs(2), "never fenced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let late = refused_at.saturating_duration_since(deadline);
    assert!(late < Duration::from_millis(100), "refused {late:?} after the deadline");
    println!("fenced {late:?} after the validity deadline");
    // Epochs only move forward.
    a.assume(proto::Role::Master, 3, "", Duration::from_secs(60)).await.unwrap();
    assert!(a.assume(proto::Role::Master, 2, "", Duration::from_secs(60)).await.is_err());
    assert!(a.assume(proto::Role::Slave, 2, &b.repl, Duration::from_secs(60)).await.is_err());
    // A slave of a lower epoch is refused at LOGIN and gets nothing.
    b.slave_of(&a, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(a.status().await.peers.is_empty());
    assert_eq!(b.status().await.applied_seq, 0);
    assert!(b.log_text().contains("is not the master's epoch 3"), "{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_slave_leaves_the_sync_set_and_rejoins_after_catching_up() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair(root.path()).await;
    let rec = root.path().join("acked");
    let mut load = ctl_bg(
        &[
            "--addr",
            &a.client,
            "bench",
            "--op",
            "create",
            "--count",
            "10000000",
            "--concurrency",
            "16",
            "--record",
            rec.to_str().unwrap(),
        ],
        &root.path().join("bench.log"),
    );
    wait_acked(&rec, 1000, Duration::from_secs(30)).await;
    b.signal("STOP");
    let t = Instant::now();
    a.wait_for("b out of the sync set", Duration::from_secs(10), |s| s.sync_set.is_empty()).await;
    println!("frozen slave left the sync set after {:?}", t.elapsed());
    let n = lines(&rec);
    wait_acked(&rec, n + 2000, Duration::from_secs(10)).await; // the master goes on without it
    b.signal("CONT");
    let st =
        a.wait_for("b back in the sync set", Duration::from_secs(30), |s| s.sync_set.contains(&"b".to_string())).await;
    assert!(st.peers.iter().any(|p| p.node == "b" && p.in_sync_set));
    let _ = load.kill();
    let _ = load.wait();
    let (ok, out) = verify(&a.client, &rec);
    assert!(ok, "{out}");
}

/// As in a pod (`--sync-set-publication lease`): a slave dropped from the sync set holds commits
/// back until a renewal tells the master that the set without it was published; then writes go
/// on without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_slave_stops_holding_writes_once_the_renewal_reports_it_published() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair_with(root.path(), &["--sync-set-publication", "lease"]).await;
    b.signal("STOP");
    let st = a.wait_for("b out of the sync set", Duration::from_secs(10), |s| s.sync_set.is_empty()).await;
    let mut c = a.client().await;
    let create = proto::CreateBlockRequest { replicas: 2, request_id: None };
    let held = tokio::time::timeout(Duration::from_millis(1500), c.create_block(create)).await;
    assert!(!matches!(held, Ok(Ok(_))), "a write was acknowledged before b's removal was published");
    // What the heart does on each renew: the Lease now shows the set of this version.
    let mut admin = tfs_nameserver::proto::admin_client::AdminClient::new(Node::channel(&a.admin).await);
    admin
        .assume_role(proto::AssumeRoleRequest {
            role: proto::Role::Master as i32,
            epoch: 1,
            valid_for_ms: 3_600_000,
            published_sync_set_version: st.sync_set_version,
            ..Default::default()
        })
        .await
        .unwrap();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), c.create_block(create)).await;
    assert!(matches!(r, Ok(Ok(_))), "no write acknowledged after the removal was published: {r:?}");
    println!("writes resumed {:?} after the publication", t.elapsed());
    b.signal("CONT");
}

/// `tfsctl sim-dataservers` through a VIP keep their leases across a failover in which the old
/// master stays up: they dial again when it refuses, and reach the new master.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_dataservers_follow_the_vip_to_a_new_master() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair(root.path()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let backend = Arc::new(std::sync::Mutex::new(a.client.clone()));
    tokio::spawn(vip(listener, backend.clone()));
    let args = ["--addr", &addr, "sim-dataservers", "--count", "3", "--first-id", "11", "--renew-every", "300ms"];
    let mut sims = ctl_bg(&args, &root.path().join("sims.log"));
    a.wait_for("the simulated dataservers", Duration::from_secs(10), |s| s.live_dataservers >= 6).await;
    // Failover: b is master at epoch 2, a follows it, alive; the VIP now sends new connections to b.
    b.master(2).await;
    a.slave_of(&b, 2).await;
    *backend.lock().unwrap() = b.client.clone();
    // A new master gives every dataserver one lease of grace (6 s), then declares dead the ones
    // that did not renew with it: 1..=3 of `pair` never do, the simulated ones must have.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let st = b.status().await;
    let _ = sims.kill();
    let _ = sims.wait();
    assert_eq!(st.live_dataservers, 3, "the simulated dataservers lost their leases on the new master");
}

/// A client that keeps one channel (as a long-lived client keeps its flow through kube-proxy)
/// reaches the new master soon after the VIP moves: the demoted master closes its client
/// connections (GOAWAY), so the channel dials again, through the VIP.
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_master_sends_its_clients_to_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair(root.path()).await;
    the_kept_channel_follows_the_vip(&a, &b, Duration::ZERO, |addr| Node::dial(format!("http://{addr}"), None)).await;
}

/// The VIP moves 300 ms after the demotion (kube-proxy's lag): the client redials at the demoted
/// master's GOAWAY, lands on it again and is refused. That node then cuts its connections soon
/// (not at its next 2 s routine cut), so the client reaches the new master within 1 s of the move.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_redialled_before_the_vip_moved_is_sent_on_soon() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair(root.path()).await;
    let dial = |addr: &str| Node::dial(format!("http://{addr}"), None);
    the_kept_channel_follows_the_vip(&a, &b, Duration::from_millis(300), dial).await;
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Flip a payload bit; the frame crc no longer matches.
    FrameBit,
    /// Flip a record's payload bit and fix the frame crc: only the record crc can tell.
    RecordBit,
    /// Deliver two record frames in the wrong order.
    Swap,
}

/// A man in the middle between slave and master that damages the master's third record frame
/// on each of the first connections, one kind of damage each, then passes traffic through.
async fn proxy(upstream: String, listener: TcpListener) {
    let conns = Arc::new(AtomicUsize::new(0));
    loop {
        let (down, _) = listener.accept().await.unwrap();
        let up = TcpStream::connect(&upstream).await.unwrap();
        let n = conns.fetch_add(1, Ordering::SeqCst);
        let damage = [Damage::FrameBit, Damage::RecordBit, Damage::Swap].get(n).copied();
        tokio::spawn(async move {
            let (mut dr, mut dw) = down.into_split();
            let (mut ur, mut uw) = up.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut dr, &mut uw).await;
            });
            let mut records = 0;
            let mut held: Option<Vec<u8>> = None;
            loop {
                let mut h = [0u8; 12];
                if ur.read_exact(&mut h).await.is_err() {
                    return;
                }
                let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
                let mut p = vec![0u8; len];
                if ur.read_exact(&mut p).await.is_err() {
                    return;
                }
                let is_records = h[0] == 6;
                if is_records {
                    records += 1;
                }
                let mut frame = [h.to_vec(), p].concat();
                match (damage, is_records, records) {
                    (Some(Damage::FrameBit), true, 3) => frame[12 + len / 2] ^= 0x08,
                    (Some(Damage::RecordBit), true, 3) => {
                        frame[12 + 40] ^= 0x08; // first record's payload
                        let crc = crc32c::crc32c(&frame[12..]);
                        frame[8..12].copy_from_slice(&crc.to_le_bytes());
                    }
                    (Some(Damage::Swap), true, 3) => {
                        held = Some(frame);
                        continue;
                    }
                    _ => {}
                }
                if dw.write_all(&frame).await.is_err() {
                    return;
                }
                // The held record frame goes out only after the next record frame overtook it.
                if is_records
                    && let Some(h) = held.take()
                    && dw.write_all(&h).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_and_reordered_frames_are_detected_and_never_applied() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &["--replication-mode", "async"]);
    let mut b = Node::new("b", root.path(), &[]);
    a.start_ready().await;
    b.start_ready().await;
    a.master(1).await;
    a.dataservers(3).await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let via = l.local_addr().unwrap().to_string();
    tokio::spawn(proxy(a.repl.clone(), l));
    b.assume(proto::Role::Slave, 1, &via, Duration::from_secs(3600)).await.unwrap();
    // Each damaged connection ends in a fresh LOGIN through the proxy, which damages the next one
    // differently, until all three kinds were seen.
    let seen = |log: &str| {
        log.contains("frame crc mismatch") && log.contains("crc mismatch: stored") && log.contains("was expected")
    };
    for _ in 0..40 {
        create_blocks(&a, 2, 5).await;
        if seen(&b.log_text()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    same_state(&a, &b).await;
    let log = b.log_text();
    assert!(log.contains("frame crc mismatch"), "{log}\nmaster:\n{}", a.log_text());
    assert!(log.contains("crc mismatch: stored"), "record crc damage not reported:\n{log}\nmaster:\n{}", a.log_text());
    assert!(log.contains("was expected"), "reordering not reported:\n{log}\nmaster:\n{}", a.log_text());
    // What B made durable reopens cleanly and equals the master.
    b.kill9();
    b.start_ready().await;
    assert_eq!(b.status().await.applied_seq, a.status().await.applied_seq);
    assert_eq!(all_blocks(&a).await, all_blocks(&b).await);
}
