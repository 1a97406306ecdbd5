//! Idempotent writes against real tfs-nameserver processes: a create (unary, on a session, or a
//! batch) whose master died after it committed and before it answered is retried with the same
//! request id and gets the same block, on the promoted slave, with no second block; the dedup
//! window survives a checkpoint and a restart, for creates, commits, removes and batches; an id
//! reused for another request is refused; a retry of a write still uncommitted is not answered
//! before that write commits.

#[path = "../../nameserver/tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::Node;
use tfs_client::{Client, Error, TlsOptions, proto};
use tfs_nameserver::server::REQUEST_ID_HEADER;
use tfs_nameserver::server::client::CREATE_COMMITTED;

#[derive(Clone, Copy)]
enum Via {
    Unary,
    Session,
}

/// Master `a`, set to abort once a create is committed and before its reply, and its sync slave
/// `b`, behind a VIP that points at `a`.
struct CrashingPair {
    a: Node,
    b: Node,
    vip: String,
    backend: Arc<std::sync::Mutex<String>>,
    root: tempfile::TempDir,
}

async fn crashing_pair() -> CrashingPair {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (Node::new("a", root.path(), &[]), Node::new("b", root.path(), &[]));
    a.env.push(("TFS_CRASH_AT".into(), CREATE_COMMITTED.into()));
    common::start_pair(&mut a, &mut b).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vip = listener.local_addr().unwrap().to_string();
    let backend = Arc::new(std::sync::Mutex::new(a.client.clone()));
    tokio::spawn(common::vip(listener, backend.clone()));
    CrashingPair { a, b, vip, backend, root }
}

impl CrashingPair {
    /// Waits for `a` to reach its crash point, then makes the failover the operator makes: the
    /// sync slave, which holds every committed record, is promoted and the VIP follows it.
    async fn fail_over(&mut self) {
        assert!(self.a.wait_exit(Duration::from_secs(20)), "the master did not reach the crash point");
        assert!(self.a.log_text().contains("crash point"), "{}", self.a.log_text());
        self.b.master(2).await;
        *self.backend.lock().unwrap() = self.b.client.clone();
    }
}

/// The client creates through the VIP of a [`crashing_pair`], `a` aborts, `b` is promoted and the
/// VIP moves. Returns the block id the client got and the blocks `b` holds.
async fn create_across_a_crash_between_commit_and_reply(via: Via) -> (Result<u64, Error>, Vec<proto::Block>) {
    let mut p = crashing_pair().await;
    let client = Client::connect(&p.vip, TlsOptions::plain()).await.unwrap().with_retry_budget(Duration::from_secs(30));
    let create = tokio::spawn(async move {
        let r = match via {
            Via::Unary => client.create_block(2).await,
            Via::Session => client.session().create_with_replicas(2).await,
        };
        r.map(|r| r.block.expect("a created block").id)
    });
    p.fail_over().await;
    let got = tokio::time::timeout(Duration::from_secs(40), create).await.expect("the create ended").unwrap();
    (got, common::all_blocks(&p.b).await)
}

async fn the_retry_returns_the_only_block(via: Via) {
    let (got, blocks) = create_across_a_crash_between_commit_and_reply(via).await;
    let id = got.expect("the create is retried with its request id and acknowledged");
    let ids: Vec<u64> = blocks.iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![id], "the new master holds exactly the block the retry returned (no leaked block)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_unary_create_retried_after_the_master_died_before_replying_returns_the_same_block() {
    the_retry_returns_the_only_block(Via::Unary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_create_retried_after_the_master_died_before_replying_returns_the_same_block() {
    the_retry_returns_the_only_block(Via::Session).await;
}

/// A batch create across the same crash: its retry carries the same request ids (one per block)
/// and gets the same blocks, which are all the new master holds. Without the ids the retry would
/// create the batch again (twice as many blocks).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_create_retried_after_the_master_died_before_replying_returns_the_same_blocks() {
    let mut p = crashing_pair().await;
    let client = Client::connect(&p.vip, TlsOptions::plain()).await.unwrap().with_retry_budget(Duration::from_secs(30));
    let create = tokio::spawn(async move {
        client.batch_create_blocks(50, 2).await.map(|r| r.blocks.iter().map(|b| b.id).collect::<Vec<_>>())
    });
    p.fail_over().await;
    let got = tokio::time::timeout(Duration::from_secs(40), create).await.expect("the batch ended").unwrap();
    let got = got.expect("the batch is retried with its request ids and acknowledged");
    assert_eq!(got.len(), 50, "{got:?}");
    let held: Vec<u64> = common::all_blocks(&p.b).await.iter().map(|b| b.id).collect();
    assert_eq!(held, got, "the new master holds exactly the blocks the retry returned (none leaked)");
}

/// The same crash under tfsctl's writer, as the e2e suites run it: `bench --record` creates
/// through the VIP (through tfs-client: keyed, retried) while the master dies after committing a
/// create and before answering it. After the failover, `verify --sole-writer` finds every
/// acknowledged create and no block that no acknowledged create returned: a retry applied twice
/// would leave one (`unacknowledged=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tfsctl_creates_across_a_crash_between_commit_and_reply_leave_no_unacknowledged_block() {
    let mut p = crashing_pair().await;
    let (record, log) = (p.root.path().join("acked"), p.root.path().join("bench.log"));
    let rec = record.to_str().unwrap().to_string();
    let args = ["--addr", &p.vip, "bench", "--op", "create", "--count", "300", "--concurrency", "8"];
    let mut writer = common::ctl_bg(&[&args[..], &["--record", &rec, "--retry-for", "30s"]].concat(), &log);
    p.fail_over().await;
    let done = tokio::task::spawn_blocking(move || writer.wait()).await.unwrap().unwrap();
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(done.success(), "the writer failed: {out}");
    assert_eq!(common::lines(&record), 300, "every create acknowledged: {out}");
    let o = common::ctl(&["--addr", &p.vip, "verify", "--record", &rec, "--sole-writer"]);
    let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && report.contains("unacknowledged=0 "), "{report}");
}

/// A unary request carrying request id `client:seq`.
fn keyed<T>(msg: T, client: u64, seq: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(REQUEST_ID_HEADER, format!("{client}:{seq}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dedup_window_survives_a_checkpoint_and_a_restart_and_refuses_an_id_reused_otherwise() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    // A checkpoint every 50 records: the creates below are in one, not only in the log after it.
    let mut a = Node::new("a", root.path(), &["--checkpoint-every", "50"]);
    a.start_ready().await;
    a.master(1).await;
    a.dataservers(3).await;
    let mut c = a.client().await;
    let create = |replicas| proto::CreateBlockRequest { replicas, request_id: None };
    let first = c.create_block(keyed(create(2), 7, 1)).await.unwrap().into_inner();
    let block = first.block.unwrap();
    let commit =
        proto::CommitBlockRequest { block_id: block.id, version: 1, size: 10, file_count: 1, ..Default::default() };
    let committed = c.commit_block(keyed(commit, 7, 2)).await.unwrap().into_inner();
    let removed = c.create_block(keyed(create(2), 7, 3)).await.unwrap().into_inner().block.unwrap().id;
    let remove =
        c.remove_block(keyed(proto::RemoveBlockRequest { block_id: removed, request_id: None }, 7, 4)).await.unwrap();
    let remove_seq = remove.into_inner().seq;
    // A batch of 3 keyed from 7:10 uses 7:10, 7:11 and 7:12.
    let batch = |replicas| proto::BatchCreateBlocksRequest { count: 3, replicas, request_id: None };
    let batched = c.batch_create_blocks(keyed(batch(2), 7, 10)).await.unwrap().into_inner();
    common::create_blocks(&a, 60, 1).await;
    let s = a
        .wait_for("a checkpoint past the keyed writes", Duration::from_secs(10), |s| s.checkpoint_seq > batched.seq)
        .await;
    println!("checkpoint at seq {}, keyed writes through seq {}", s.checkpoint_seq, batched.seq);
    let before = common::all_blocks(&a).await.len();

    a.kill9();
    a.start_ready().await;
    a.master(2).await;
    let mut c = a.client().await;
    // The same ids again: the first outcomes, nothing applied twice.
    let again = c.create_block(keyed(create(2), 7, 1)).await.unwrap().into_inner();
    assert_eq!((again.block.unwrap().id, again.seq), (block.id, first.seq));
    // A later commit moved the block on; the retried commit still gets its own outcome.
    let newer =
        proto::CommitBlockRequest { block_id: block.id, version: 2, size: 20, file_count: 2, ..Default::default() };
    c.commit_block(keyed(newer, 8, 1)).await.unwrap();
    let retried = c.commit_block(keyed(commit, 7, 2)).await.unwrap().into_inner();
    assert_eq!(retried.seq, committed.seq, "the retried commit is answered with its first outcome");
    let again =
        c.remove_block(keyed(proto::RemoveBlockRequest { block_id: removed, request_id: None }, 7, 4)).await.unwrap();
    assert_eq!(again.into_inner().seq, remove_seq, "a retried remove of a removed block is its first outcome");
    let again = c.batch_create_blocks(keyed(batch(2), 7, 10)).await.unwrap().into_inner();
    assert_eq!((again.blocks, again.seq), (batched.blocks.clone(), batched.seq), "a retried batch: the same blocks");
    assert_eq!(common::all_blocks(&a).await.len(), before, "no block created or removed by the retries");

    // The same id for another request: refused, never answered with the first one's outcome.
    for e in [
        c.create_block(keyed(create(1), 7, 1)).await.unwrap_err(),
        c.remove_block(keyed(proto::RemoveBlockRequest { block_id: block.id, request_id: None }, 7, 1))
            .await
            .unwrap_err(),
        c.commit_block(keyed(proto::CommitBlockRequest { version: 3, ..commit }, 7, 2)).await.unwrap_err(),
        // 7:11 is the batch's second create, of 2 replicas: the whole batch is refused.
        c.batch_create_blocks(keyed(batch(1), 7, 11)).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("already used by another request"), "{e:?}");
    }
    assert_eq!(common::all_blocks(&a).await.len(), before, "nothing applied by the refused requests");
}

/// A retry whose first attempt is applied on the master but not committed (its only sync slave is
/// frozen, the removal not published) is not answered with that first outcome before it commits:
/// the dedup window holds the id from the instant the record is applied, so the retry's answer
/// waits for the same commit as the first attempt (engine `write_records`), and fails as outcome
/// unknown when the master's validity ends first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_of_an_uncommitted_write_is_answered_only_once_it_commits() {
    support::binaries();
    let root = tempfile::tempdir().unwrap();
    let published = ["--sync-set-publication", "lease"];
    let (mut a, mut b) = (Node::new("a", root.path(), &published), Node::new("b", root.path(), &published));
    common::start_pair(&mut a, &mut b).await;
    common::create_blocks(&a, 1, 1).await;
    common::same_state(&a, &b).await;
    b.signal("STOP");
    a.wait_for("b's removal pending", Duration::from_secs(10), |s| !s.sync_set_pending_removal.is_empty()).await;
    let create = || keyed(proto::CreateBlockRequest { replicas: 1, request_id: None }, 7, 1);
    let mut c = a.client().await;
    let first = tokio::spawn(async move { c.create_block(create()).await });
    a.wait_for("the create applied", Duration::from_secs(5), |s| s.applied_seq > s.committed_seq).await;
    // Validity short enough for the test: the retry may wait for the commit only while it lasts.
    a.assume(proto::Role::Master, 1, "", Duration::from_secs(2)).await.unwrap();
    let t0 = std::time::Instant::now();
    let e =
        a.client().await.create_block(create()).await.expect_err("the retry was answered from an uncommitted record");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("outcome unknown"), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "the retry waited past the master's validity");
    b.signal("CONT");
    drop(first);
}
