//! The client library against real tfs-nameserver processes, started, killed and restarted by the
//! nameserver's own process-test harness (nameserver/tests/common, included by path).

#[path = "../../nameserver/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Node;
use tfs_client::{Client, Error, TlsOptions, proto};

/// A master alone at `epoch` with 3 dataservers, on a node already started.
async fn master(n: &Node, epoch: u64) {
    n.master(epoch).await;
    n.dataservers(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_creates_from_many_tasks_are_all_acknowledged_with_distinct_ids() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    a.start_ready().await;
    master(&a, 1).await;
    let client = Client::connect(&a.client, TlsOptions::plain()).await.unwrap();
    let session = client.session();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..20 {
                    let r = s.create().await.expect("create acknowledged");
                    assert_eq!(r.epoch, 1);
                    ids.push(r.block.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 64 * 20);
    assert_eq!(distinct.len(), ids.len(), "a block id was handed out twice");
    // Every acknowledged block is there, read back through the session and the unary call alike.
    for &id in ids.iter().step_by(97) {
        assert_eq!(session.get(id).await.unwrap().block.unwrap().id, id);
        assert_eq!(client.get_block(id).await.unwrap().block.unwrap().id, id);
    }
    // A definite answer is returned as it is, not retried.
    let missing = session.get(u64::MAX - 1).await.unwrap_err();
    assert!(matches!(missing, Error::Refused { code: tonic::Code::NotFound, .. }), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_restarted_mid_run_acknowledges_each_write_in_flight_once_and_serves_again() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    a.start_ready().await;
    master(&a, 1).await;
    let client =
        Client::connect(&a.client, TlsOptions::plain()).await.unwrap().with_retry_budget(Duration::from_secs(60));
    let session = client.session();
    let first = session.create().await.unwrap().block.unwrap().id;

    let stop = Arc::new(AtomicBool::new(false));
    let unknown = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..64)
        .map(|_| {
            let (s, stop, unknown) = (session.clone(), stop.clone(), unknown.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match s.create().await {
                        Ok(r) => acked.push((r.block.unwrap().id, r.epoch)),
                        Err(Error::OutcomeUnknown(_)) => {
                            unknown.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("a create failed otherwise than outcome unknown: {e}"),
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill9();
    // Reads issued while the master is down wait for it (they are retried), and resume.
    let reader = {
        let s = session.clone();
        tokio::spawn(async move { s.get(first).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.start_ready().await;
    master(&a, 2).await;
    let t = Instant::now();
    let read = reader.await.unwrap().expect("the read resumed after the restart");
    assert_eq!(read.block.unwrap().id, first);
    assert_eq!(read.epoch, 2);
    println!("read resumed {:?} after the master was told its role again", t.elapsed());
    // New writes succeed, at the new epoch.
    let after = session.create().await.expect("a new create after the restart").block.unwrap().id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let unknown = unknown.load(Ordering::Relaxed);
    println!("{} creates acknowledged, {unknown} outcome unknown", acked.len());
    // The creates in flight when the master was killed are retried with their request ids: each
    // is acknowledged, once (its first outcome if it had been applied).
    assert_eq!(unknown, 0, "a create in flight failed as outcome unknown instead of being retried by its id");
    assert!(acked.iter().any(|&(_, e)| e == 2), "creates went on at epoch 2 after the restart");
    // Every acknowledged create survived the restart, and no id was handed out twice.
    let ids: HashSet<u64> = acked.iter().map(|&(id, _)| id).chain([first, after]).collect();
    assert_eq!(ids.len(), acked.len() + 2, "a block id was handed out twice");
    for &(id, _) in acked.iter().step_by(53) {
        assert_eq!(client.get_block(id).await.unwrap().block.unwrap().id, id, "acknowledged block {id} lost");
    }
    // And no block was created that no caller got (a leaked block of a create applied twice).
    assert_eq!(common::all_blocks(&a).await.len(), ids.len(), "blocks on the master that no create returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_through_a_vip_follows_a_switchover() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Node::new("a", root.path(), &[]), Node::new("b", root.path(), &[]));
    common::start_pair(&mut a, &mut b).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vip = listener.local_addr().unwrap().to_string();
    let backend = Arc::new(std::sync::Mutex::new(a.client.clone()));
    tokio::spawn(common::vip(listener, backend.clone()));
    let client = Client::connect(&vip, TlsOptions::plain()).await.unwrap();
    let session = client.session();
    let first = session.create().await.unwrap().block.unwrap().id;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..32)
        .map(|_| {
            let (s, stop) = (session.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acked, mut unknown) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    match s.create().await {
                        Ok(r) => acked.push((r.block.unwrap().id, r.epoch)),
                        // Would be a create the new master cannot answer by its request id.
                        Err(Error::OutcomeUnknown(_)) => unknown += 1,
                        Err(e) => panic!("a create failed otherwise than outcome unknown: {e}"),
                    }
                }
                (acked, unknown)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A planned switchover, as the heart makes it: a drains (it refuses writes: "draining"; its
    // sessions end and its connections are cut), b masters epoch 2, a follows it, the VIP moves.
    // (Promoting b while a is still writable would be a split brain of the test's making: a's
    // validity is an hour, and without published removals it drops b from its sync set.)
    let mut admin = tfs_nameserver::proto::admin_client::AdminClient::new(Node::channel(&a.admin).await);
    admin.drain(tfs_nameserver::proto::DrainRequest {}).await.unwrap();
    b.master(2).await;
    a.slave_of(&b, 2).await;
    *backend.lock().unwrap() = b.client.clone();
    let t = Instant::now();
    loop {
        let r = session.get(first).await.expect("reads go on across the switchover");
        if r.epoch == 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the session did not reach the new master");
    }
    println!("the session reached the new master {:?} after the VIP moved", t.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut unknown) = (Vec::new(), 0);
    for w in writers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unknown += u;
    }
    println!("{} creates acknowledged, {unknown} outcome unknown", acked.len());
    assert!(acked.iter().any(|&(_, e)| e == 1) && acked.iter().any(|&(_, e)| e == 2), "creates on both masters");
    let mut seen = std::collections::HashMap::new();
    for &(id, e) in &acked {
        if let Some(e0) = seen.insert(id, e) {
            println!("block {id} acknowledged at epoch {e0} and at epoch {e}");
        }
    }
    let ids: HashSet<u64> = acked.iter().map(|&(id, _)| id).chain([first]).collect();
    assert_eq!(ids.len(), acked.len() + 1, "a block id was handed out twice");
    for &(id, _) in acked.iter().step_by(37) {
        assert_eq!(client.get_block(id).await.unwrap().block.unwrap().id, id, "acknowledged block {id} lost");
    }
    // Creates caught by the switchover (logged on a, not committed before it stepped down) were
    // retried on b with their request ids: none unknown, none applied twice, no block leaked.
    assert_eq!(unknown, 0, "creates failed as outcome unknown instead of being retried by their ids");
    assert_eq!(common::all_blocks(&b).await.len(), ids.len(), "blocks on the new master that no create returned");
}

/// A raw session stream on `n` (no library between): the request sender and the reply stream.
async fn raw_session(
    n: &Node,
) -> (tokio::sync::mpsc::UnboundedSender<proto::SessionRequest>, tonic::Streaming<proto::SessionReply>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let replies = proto::session_client::SessionClient::new(n.client_channel())
        .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, replies)
}

fn create(id: u64) -> proto::SessionRequest {
    proto::SessionRequest {
        id,
        op: Some(proto::session_request::Op::Create(proto::CreateBlockRequest { replicas: 0, request_id: None })),
        request_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_ends_its_sessions_cleanly_when_it_stops_being_a_writable_master() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    a.start_ready().await;
    master(&a, 1).await;
    let (tx, mut replies) = raw_session(&a).await;
    tx.send(create(1)).unwrap();
    let r = replies.message().await.unwrap().unwrap();
    assert!(matches!(r.result, Some(proto::session_reply::Result::Create(_))), "{r:?}");
    let mut admin = proto::admin_client::AdminClient::new(Node::channel(&a.admin).await);
    admin.drain(proto::DrainRequest {}).await.unwrap();
    // The stream ends by itself (the graceful shutdown of the connections waits for it), with
    // the trailer that says unanswered requests were not executed; the client kept its side open.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        match replies.message().await {
            Ok(Some(r)) => panic!("no request was pending: {r:?}"),
            Ok(None) => panic!("ended OK, without saying why"),
            Err(s) => s,
        }
    })
    .await
    .expect("the session ended within 5 s of the drain");
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    assert_eq!(
        end.metadata().get(tfs_nameserver::server::session::UNREAD_TRAILER).map(|v| v.to_str().unwrap()),
        Some("not-executed")
    );
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_refuses_requests_past_its_bound_and_answers_every_one() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Node::new("a", root.path(), &[]), Node::new("b", root.path(), &[]));
    common::start_pair(&mut a, &mut b).await;
    // The sync slave frozen: nothing commits, so every admitted create stays in flight.
    b.signal("STOP");
    let (tx, mut replies) = raw_session(&a).await;
    let bound = tfs_nameserver::server::session::MAX_IN_FLIGHT as u64;
    let total = bound + 500;
    for id in 1..=total {
        tx.send(create(id)).unwrap();
    }
    // The refusals come at once, while the rest wait for the slave.
    let mut answered = HashSet::new();
    let mut exhausted = 0;
    while exhausted < total - bound {
        let r = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("the refusals come without waiting for the commits")
            .unwrap()
            .unwrap();
        assert!(answered.insert(r.id), "request {} answered twice", r.id);
        match r.result {
            Some(proto::session_reply::Result::Error(e)) if e.code == tonic::Code::ResourceExhausted as i32 => {
                exhausted += 1
            }
            other => panic!("request {} answered {other:?} while nothing could commit", r.id),
        }
    }
    b.signal("CONT");
    drop(tx);
    while let Some(r) = replies.message().await.unwrap() {
        assert!(answered.insert(r.id), "request {} answered twice", r.id);
        assert!(matches!(r.result, Some(proto::session_reply::Result::Create(_))), "{r:?}");
    }
    assert_eq!(answered.len() as u64, total, "every request answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_and_unary_calls_speak_tls_when_told_to() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let ca = tfs_nameserver::tls::devcerts::Ca::new("test CA").unwrap();
    let (mut a, _secret) = common::certs::tls_node("a", root.path(), &ca, None, &[]);
    a.start_ready().await;
    master(&a, 1).await;
    // Dialled by IP, checked against the node name its certificate carries.
    let tls = TlsOptions::with_ca(ca.cert_pem.clone().into_bytes()).server_name("a");
    let client = Client::connect(&a.client, tls).await.unwrap();
    let session = client.session();
    let id = session.create().await.unwrap().block.unwrap().id;
    assert_eq!(session.get(id).await.unwrap().block.unwrap().id, id);
    assert_eq!(client.get_block(id).await.unwrap().block.unwrap().id, id);
    // The client port speaks TLS only: a plain client gets no answer, and says so in time.
    let plain =
        Client::connect(&a.client, TlsOptions::plain()).await.unwrap().with_retry_budget(Duration::from_millis(300));
    let e = plain.get_block(id).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tfsctl_bench_on_sessions_acknowledges_only_what_the_master_holds() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Node::new("a", root.path(), &[]), Node::new("b", root.path(), &[]));
    common::start_pair(&mut a, &mut b).await;
    let record = root.path().join("acked.jsonl");
    let rec = record.to_str().unwrap();
    let o = common::ctl(&[
        "--json",
        "--addr",
        &a.client,
        "bench",
        "--op",
        "create",
        "--session",
        "--count",
        "3000",
        "--concurrency",
        "64",
        "--record",
        rec,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((r["ok"].as_u64(), r["failed"].as_u64(), r["session"].as_bool()), (Some(3000), Some(0), Some(true)));
    assert_eq!(common::lines(&record), 3000);
    let (ok, report) = common::verify(&a.client, &record);
    assert!(ok, "{report}");
    // The slave holds them too: they were acknowledged once it did.
    common::same_state(&a, &b).await;
}
