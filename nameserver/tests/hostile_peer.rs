//! A peer that lies on the replication port must not make the master acknowledge a write that
//! the slaves of the published sync set do not hold. (Authentication of peers is mutual TLS; these
//! are the checks that hold even for a peer that got through.)

mod common;

use std::time::Duration;

use common::*;
use tfs_nameserver::proto;
use tfs_nameserver::replication::frame::{self, FrameType};
use tokio::net::TcpStream;

const PUBLISHED: &[&str] = &["--checkpoint-every", "2000", "--sync-set-publication", "lease"];

/// Master `a` (removals wait for publication) and its slave `b` in the sync set.
async fn pair(root: &std::path::Path) -> (Node, Node) {
    let mut a = Node::new("a", root, PUBLISHED);
    let mut b = Node::new("b", root, PUBLISHED);
    start_pair(&mut a, &mut b).await;
    create_blocks(&a, 2, 10).await;
    same_state(&a, &b).await;
    (a, b)
}

/// Logs in as `node`; returns the connection and the master's answer (LOGIN_OK or REFUSED).
async fn login(master: &Node, node: &str, last_seq: u64) -> (TcpStream, FrameType, bytes::Bytes) {
    let mut s = TcpStream::connect(&master.repl).await.unwrap();
    let login = proto::ReplLogin {
        cluster_id: "tfs".into(),
        node: node.into(),
        epoch: 1,
        last_seq,
        last_epoch: 1,
        ..Default::default()
    };
    frame::write_msg(&mut s, FrameType::Login, &login).await.unwrap();
    let (t, p) = tokio::time::timeout(Duration::from_secs(10), frame::read_frame(&mut s)).await.unwrap().unwrap();
    (s, t, p)
}

/// Whether the master closed the connection within `within` (reading whatever it still sends).
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, frame::read_frame(s)).await {
            Err(_) => return false,
            Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A write held back by `b` (frozen, removal not yet published): returns its task.
async fn held_write(a: &Node, b: &Node) -> tokio::task::JoinHandle<Result<u64, tonic::Status>> {
    b.signal("STOP");
    a.wait_for("b's removal pending publication", Duration::from_secs(10), |s| {
        s.sync_set_pending_removal.contains(&"b".to_string())
    })
    .await;
    let mut c = a.client().await;
    let w = tokio::spawn(async move {
        c.create_block(proto::CreateBlockRequest { replicas: 2, request_id: None })
            .await
            .map(|r| r.into_inner().block.unwrap().id)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w.is_finished(), "the write must wait for b, whose removal is not published");
    w
}

/// A peer that ACKs a seq it was never sent is dropped and never joins the sync set (where it
/// would be published as holding every acknowledged write, and so be promotable).
#[tokio::test(flavor = "multi_thread")]
async fn an_ack_beyond_what_was_sent_drops_the_peer_and_joins_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (a, _b) = pair(root.path()).await;
    let last = a.status().await.applied_seq;
    let (mut s, t, _) = login(&a, "c", last).await;
    assert_eq!(t, FrameType::LoginOk, "c is a name nothing counts yet");
    frame::write_msg(&mut s, FrameType::Ack, &proto::ReplAck { durable_seq: u64::MAX }).await.unwrap();
    let reader = tokio::spawn(async move { closed(&mut s, Duration::from_millis(1000)).await });
    // Watched over less than the slave lease (1.5 s), whose lapse would end the session anyway.
    for _ in 0..20 {
        let st = a.status().await;
        let counted = st.sync_set.iter().chain(&st.sync_set_pending_removal).any(|n| n == "c");
        assert!(!counted, "a peer that acked u64::MAX was counted in the sync set: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reader.await.unwrap(), "the master kept a peer that acked what it was never sent");
    // The honest slave is untouched and writes still commit.
    create_blocks(&a, 1, 10).await;
    assert!(a.status().await.sync_set.contains(&"b".to_string()));
}

/// A LOGIN under the name of a slave whose session is alive, or whose membership of the sync set
/// still counts, from another process, is refused: it would take over that slave's acks.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_under_a_counted_slaves_name_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = pair(root.path()).await;
    let last = a.status().await.applied_seq;
    let (_s, t, p) = login(&a, "b", last).await;
    assert_eq!(t, FrameType::Refused, "a second session for b while b's is alive");
    let r: proto::ReplRefused = frame::decode(t, p).unwrap();
    assert!(r.reason.contains("b"), "{}", r.reason);
    // b frozen: its session lapses but its removal is unpublished, so its acks still count.
    let w = held_write(&a, &b).await;
    let last = a.status().await.applied_seq;
    let (mut s, t, _) = login(&a, "b", last).await;
    if t == FrameType::LoginOk {
        // Acking exactly what it is sent is a lie no check can see without authentication; the
        // name itself must not be taken over while it counts.
        let ack = frame::read_frame(&mut s).await.ok();
        let seq = a.status().await.applied_seq;
        frame::write_msg(&mut s, FrameType::Ack, &proto::ReplAck { durable_seq: seq }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!w.is_finished(), "another process took over b's place in the sync set ({ack:?})");
    }
    b.signal("CONT");
    let id = tokio::time::timeout(Duration::from_secs(20), w).await.expect("b back: the write commits").unwrap();
    assert!(id.is_ok(), "{id:?}");
    a.wait_for("b back in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"b".to_string())).await;
}
