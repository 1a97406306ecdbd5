//! One bench worker: its loop of calls with the bench's retry policy, and what each call
//! acknowledged (the record) and observed (the history of a mixed run).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tfs_nameserver::proto::{self, client_client::ClientClient};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::session::{self, Sessions};
use super::{Action, BenchArgs, Counters, Op, Sinks};
use crate::ops;
use crate::record::{Ack, Kind};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(super) fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::FailedPrecondition
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
    )
}

/// The server's hint for a refused (overloaded) call, if it gave one.
fn retry_after(s: &Status) -> Option<Duration> {
    let ms = s.metadata().get(tfs_nameserver::server::RETRY_AFTER_MS)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The master's definite refusal of a commit older than the block's version: not applied, and
/// (the refusal waits for what it saw to commit) a fact about the block.
fn refused_as_older(s: &Status) -> bool {
    s.code() == Code::InvalidArgument && s.message().contains("is older than")
}

/// How a worker's calls travel.
pub(super) enum Via {
    /// Unary RPCs on this worker's own connection, every attempt seen (and retried) by the bench.
    Unary,
    /// Unary RPCs through the client library, which dials, follows the VIP, reconnects and
    /// retries what was not applied itself.
    Library(tfs_client::Client),
    /// On the session stream of this slot.
    Session(Arc<Sessions>, usize),
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn worker(
    w: u64,
    mut c: ClientClient<Channel>,
    via: Via,
    ep: tonic::transport::Endpoint,
    a: BenchArgs,
    counters: Arc<Counters>,
    blocks: Arc<Vec<u64>>,
    sinks: Sinks,
    start: Instant,
) -> (Histogram<u64>, Option<String>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let mut first_error = None;
    let mut version: u32 = 0;
    let mut seen = std::collections::HashMap::new();
    let client = format!("p{}w{w}", std::process::id());
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.concurrency as f64 / r.max(1) as f64));
    let mut i = 0u64;
    loop {
        let n = counters.next.fetch_add(1, Ordering::Relaxed);
        if n >= a.count {
            break;
        }
        let scheduled = match interval {
            Some(iv) => {
                let at = start + iv.mul_f64(i as f64) + iv.mul_f64(w as f64 / a.concurrency as f64);
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        i += 1;
        let t0 = Instant::now();
        let give_up = t0 + a.retry_for;
        version += 1;
        // Each worker owns one block, so its versions only move forward; a mixed run shares them.
        let block = if blocks.is_empty() { 0 } else { blocks[(w % blocks.len() as u64) as usize] };
        let action = match a.op {
            Op::Mixed => a.mix.pick(&blocks, &mut seen),
            Op::Get => Action::Read(block),
            Op::Commit => Action::Commit(block, version),
            _ => Action::Create,
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            let (sent_ms, invoked_us) = (now_ms(), now_us());
            if let (Some(h), Action::Commit(block, version)) = (&sinks.hist, action) {
                let call = ops::Call::Write { version, outcome: ops::Outcome::Pending };
                let completed_us = invoked_us;
                let _ = h.send(ops::Op {
                    client: client.clone(),
                    block,
                    call,
                    epoch: 0,
                    node: String::new(),
                    invoked_us,
                    completed_us,
                });
            }
            let r = match &via {
                Via::Unary => call(&mut c, &a, action).await,
                Via::Library(client) => call_library(client, &a, action).await,
                Via::Session(s, slot) => call_session(s, *slot, &a, action).await,
            };
            if let Some(h) = &sinks.hist
                && let Some(op) = observed(&client, action, &r, invoked_us)
            {
                let _ = h.send(op);
            }
            match r {
                Ok(done) => {
                    let us = scheduled.elapsed().as_micros().max(1) as u64;
                    let _ = hist.record(us.min(120_000_000));
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                    if let (Action::Read(b), Some(v)) = (action, done.read) {
                        let s = seen.entry(b).or_default();
                        *s = (*s).max(v);
                    }
                    if let Some(rec) = &sinks.rec {
                        let acked_ms = now_ms();
                        for (kind, block, epoch, seq) in done.acks {
                            let _ = rec.send(Ack { kind, block, epoch, seq, sent_ms, acked_ms });
                        }
                    }
                    break;
                }
                // A definite answer of a mixed run, not a failure.
                Err(s) if a.op == Op::Mixed && refused_as_older(&s) => {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(s) if retryable(&s) && Instant::now() + backoff < give_up => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    if let Some(hint) = retry_after(&s) {
                        // Overloaded: the same server, later (no new connection), with jitter so
                        // that refused workers do not come back in step.
                        let jitter = Duration::from_micros(fastrand::u64(..=hint.as_micros() as u64));
                        tokio::time::sleep(hint.max(backoff) + jitter).await;
                    } else {
                        // A new connection: through a Service it may reach the new master.
                        if !a.keep_connection {
                            c = ClientClient::new(ep.connect_lazy());
                        }
                        tokio::time::sleep(backoff).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(s) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if first_error.is_none() {
                        first_error = Some(crate::tls::describe(&s));
                    }
                    break;
                }
            }
        }
    }
    (hist, first_error)
}

/// One attempt of a read or a commit as the history records it; `None` for what the history does
/// not hold (creates, echoes, and failed reads, which tell nothing).
fn observed(client: &str, action: Action, r: &Result<Done, Status>, invoked_us: u64) -> Option<ops::Op> {
    let (call, epoch, node) = match (action, r) {
        (Action::Read(_), Ok(d)) => (ops::Call::Read { version: d.read? }, d.epoch, d.node.clone()),
        (Action::Read(_) | Action::Create, _) => return None,
        (Action::Commit(_, version), Ok(d)) => {
            (ops::Call::Write { version, outcome: ops::Outcome::Ok }, d.epoch, d.node.clone())
        }
        (Action::Commit(_, version), Err(s)) => {
            (ops::Call::Write { version, outcome: outcome_of(s) }, 0, node_of(s.metadata()))
        }
    };
    let block = match action {
        Action::Read(b) | Action::Commit(b, _) => b,
        Action::Create => return None,
    };
    Some(ops::Op { client: client.to_string(), block, call, epoch, node, invoked_us, completed_us: now_us() })
}

/// What a failed commit tells: refused as older, not run at all (the server said so: its reply
/// carries the node header, and it is not an "outcome unknown"), or unknown (no answer from a
/// server: a timeout, a connection lost with the request in flight).
fn outcome_of(s: &Status) -> ops::Outcome {
    let answered = !node_of(s.metadata()).is_empty();
    let m = s.message();
    if refused_as_older(s) {
        ops::Outcome::Refused
    } else if answered && !m.starts_with("outcome unknown") && !m.contains("writer stopped") {
        ops::Outcome::Failed
    } else {
        ops::Outcome::Unknown
    }
}

/// The node that answered, from the reply's `tfs-node` header (empty if it has none).
fn node_of(m: &tonic::metadata::MetadataMap) -> String {
    m.get(tfs_nameserver::server::NODE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// A successful call: the mutations it acknowledged, the version it read, the reply's epoch and
/// node.
struct Done {
    acks: Acked,
    read: Option<u32>,
    epoch: u64,
    node: String,
}

type Acked = Vec<(Kind, u64, u64, u64)>;

/// [`call`] on a session: the same requests and the same `Done` (the node is the session's).
async fn call_session(s: &Sessions, slot: usize, a: &BenchArgs, action: Action) -> Result<Done, Status> {
    let done = |acks: Acked, epoch: u64| Done { acks, read: None, epoch, node: String::new() };
    Ok(match action {
        Action::Create => {
            let r = session::create(s, slot, a.replicas).await?;
            let id = r.block.map(|b| b.id).unwrap_or(0);
            done(vec![(Kind::Create, id, r.epoch, r.seq)], r.epoch)
        }
        Action::Read(block) => {
            let r = session::get(s, slot, block).await?;
            Done { read: r.block.as_ref().map(|b| b.version), ..done(vec![], r.epoch) }
        }
        Action::Commit(block, version) => {
            let r = session::commit(s, slot, commit_request(block, version)).await?;
            done(vec![(Kind::Commit { version }, block, r.epoch, r.seq)], r.epoch)
        }
    })
}

/// [`call`] through the client library: what it does not retry itself comes back as the `Status`
/// the bench's loop judges. A write it sent without an answer (outcome unknown) is sent again
/// there, as the unary workers do: a create anew, a commit of the same version (idempotent).
async fn call_library(c: &tfs_client::Client, a: &BenchArgs, action: Action) -> Result<Done, Status> {
    let done = |acks: Acked, epoch: u64| Done { acks, read: None, epoch, node: String::new() };
    let r = match action {
        Action::Create => c.create_block(a.replicas).await.map(|r| {
            let id = r.block.map(|b| b.id).unwrap_or(0);
            done(vec![(Kind::Create, id, r.epoch, r.seq)], r.epoch)
        }),
        Action::Read(block) => c
            .get_block(block)
            .await
            .map(|r| Done { read: r.block.as_ref().map(|b| b.version), ..done(vec![], r.epoch) }),
        Action::Commit(block, version) => c
            .commit_block(commit_request(block, version))
            .await
            .map(|r| done(vec![(Kind::Commit { version }, block, r.epoch, r.seq)], r.epoch)),
    };
    r.map_err(|e| match e {
        tfs_client::Error::Refused { code, message } => Status::new(code, message),
        tfs_client::Error::OutcomeUnknown(m) => Status::unavailable(format!("outcome unknown: {m}")),
        e => Status::new(e.code(), e.to_string()),
    })
}

/// What a bench commit of `version` writes.
fn commit_request(block: u64, version: u32) -> proto::CommitBlockRequest {
    proto::CommitBlockRequest {
        block_id: block,
        version,
        size: version as u64 * 4096,
        file_count: version,
        del_size: 0,
        del_file_count: 0,
        request_id: None,
    }
}

async fn call(c: &mut ClientClient<Channel>, a: &BenchArgs, action: Action) -> Result<Done, Status> {
    let done =
        |acks: Acked, epoch: u64, m: &tonic::metadata::MetadataMap| Done { acks, read: None, epoch, node: node_of(m) };
    Ok(match (a.op, action) {
        (Op::Echo, _) => {
            let r = c.echo(proto::EchoRequest { payload: vec![7u8; a.payload] }).await?;
            done(vec![], r.get_ref().epoch, r.metadata())
        }
        (Op::BatchCreate, _) => {
            let r = c
                .batch_create_blocks(proto::BatchCreateBlocksRequest {
                    count: a.batch,
                    replicas: a.replicas,
                    request_id: None,
                })
                .await?;
            let (m, r) = (r.metadata().clone(), r.into_inner());
            done(r.blocks.iter().map(|b| (Kind::Create, b.id, r.epoch, r.seq)).collect(), r.epoch, &m)
        }
        (_, Action::Create) => {
            let r = c.create_block(proto::CreateBlockRequest { replicas: a.replicas, request_id: None }).await?;
            let (m, r) = (r.metadata().clone(), r.into_inner());
            let id = r.block.map(|b| b.id).unwrap_or(0);
            done(vec![(Kind::Create, id, r.epoch, r.seq)], r.epoch, &m)
        }
        (_, Action::Read(block)) => {
            let r = c.get_block(proto::GetBlockRequest { block_id: block, stale: false }).await?;
            let version = r.get_ref().block.as_ref().map(|b| b.version);
            Done { read: version, ..done(vec![], r.get_ref().epoch, r.metadata()) }
        }
        (_, Action::Commit(block, version)) => {
            let r = c.commit_block(commit_request(block, version)).await?;
            let (m, r) = (r.metadata().clone(), r.into_inner());
            done(vec![(Kind::Commit { version }, block, r.epoch, r.seq)], r.epoch, &m)
        }
    })
}
