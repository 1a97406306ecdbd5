//! The pipelined session (`tfs.v1.Session/Session`): one bidirectional stream carries many
//! requests, each answered by its id as soon as it completes, in any order.
//!
//! Why: a unary RPC pays the whole HTTP/2 + gRPC stack per operation, which is most of a create's
//! cost (bench/profile.sh). On a session, the requests that arrive together — a *burst*: whatever
//! the stream has ready when the first one is read — cost one decode loop, one writer closure
//! (one transaction, one group commit, one admission) and one read of the state.
//!
//! Invariants (what a client may rely on; the client library does):
//! - every request the server reads gets exactly one reply;
//! - when the server ends a session itself (its connections are cut: a change of role, a GOAWAY
//!   for age, shutdown), it first stops reading, answers everything it read, then ends the stream
//!   with UNAVAILABLE and the trailer [`UNREAD_TRAILER`]: a request without a reply was never
//!   read, hence never executed;
//! - at most [`MAX_IN_FLIGHT`] requests of one session are executing; more are refused at once
//!   with RESOURCE_EXHAUSTED, not executed (never queued without bound, never left unanswered);
//! - a request is answered as the unary RPC would answer it: the same validation, the same
//!   consistency for reads, the same error codes (a "not master" while mastership is lost, "outcome
//!   unknown" for a write logged but not committed before mastership lapsed).

use std::time::Instant;

use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use tokio::sync::{mpsc, watch};
use tonic::{Code, Request, Response, Status, Streaming};

use super::{RETRY_AFTER_MS, to_status, validate};
use crate::engine::{Consistency, Engine, Txn, WriteError};
use crate::ops;
use crate::proto::{self, session_reply::Result as Res, session_request::Op};
use crate::state::dedup::RequestId;

/// Requests of one session executing at once; more are refused with RESOURCE_EXHAUSTED. The
/// engine's admission bound (`max_inflight_records`) still applies on top, across sessions.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Requests taken into one burst at most: a burst is one writer closure, and the writer's group
/// bound counts it as this many records.
const MAX_BURST: usize = 1024;

/// Trailer of a session the server ended itself: `not-executed` — every request it read was
/// answered, so an unanswered one was never executed.
pub const UNREAD_TRAILER: &str = "tfs-session-unread";

pub struct SessionApi {
    pub engine: Engine,
    pub default_replicas: u32,
    /// Becomes true when this run of the client server ends (serve.rs: a cut or shutdown); the
    /// graceful shutdown waits for every stream, so a session must end by itself then.
    pub ending: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl proto::session_server::Session for SessionApi {
    type SessionStream = tokio_stream::wrappers::ReceiverStream<Result<proto::SessionReply, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<proto::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // Bounded: a client that stops reading replies stops the session reading its requests.
        let (tx, rx) = mpsc::channel(MAX_BURST);
        let ctx = Ctx { engine: self.engine.clone(), default_replicas: self.default_replicas };
        tokio::spawn(drive(ctx, req.into_inner(), tx, self.ending.clone()));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

#[derive(Clone)]
struct Ctx {
    engine: Engine,
    default_replicas: u32,
}

type Replies = mpsc::Sender<Result<proto::SessionReply, Status>>;

/// Reads bursts and runs them concurrently until the client half-closes (then ends OK) or the
/// server run ends (then ends UNAVAILABLE with [`UNREAD_TRAILER`]). If the client goes away, what
/// is pending is dropped: a write the writer has not reached yet is then never executed (engine
/// `write_records`), as for a cancelled unary call.
async fn drive(
    ctx: Ctx,
    mut inbound: Streaming<proto::SessionRequest>,
    tx: Replies,
    mut ending: watch::Receiver<bool>,
) {
    let mut bursts = FuturesUnordered::new();
    let mut in_flight = 0usize;
    let mut reading = true;
    let mut ended_by_server = false;
    loop {
        if !reading && bursts.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = tx.closed() => return,
            Some(replies) = bursts.next(), if !bursts.is_empty() => {
                let replies: Vec<proto::SessionReply> = replies;
                in_flight -= replies.len();
                for r in replies {
                    if tx.send(Ok(r)).await.is_err() {
                        return;
                    }
                }
            }
            _ = ending.wait_for(|e| *e).map(|r| r.is_ok()), if reading => {
                reading = false;
                ended_by_server = true;
            }
            m = inbound.next(), if reading => {
                let first = match m {
                    Some(Ok(r)) => r,
                    // Half-closed: answer what was read, then end.
                    None => { reading = false; continue; }
                    // A broken request stream: no reply can reach the client either.
                    Some(Err(_)) => return,
                };
                let mut burst = vec![first];
                while burst.len() < MAX_BURST {
                    match inbound.next().now_or_never() {
                        Some(Some(Ok(r))) => burst.push(r),
                        Some(None) => { reading = false; break; }
                        Some(Some(Err(_))) => return,
                        None => break,
                    }
                }
                let room = MAX_IN_FLIGHT - in_flight;
                if burst.len() > room {
                    for r in burst.drain(room..) {
                        if tx.send(Ok(overloaded(r.id, in_flight))).await.is_err() {
                            return;
                        }
                    }
                }
                if !burst.is_empty() {
                    in_flight += burst.len();
                    bursts.push(run_burst(ctx.clone(), burst));
                }
            }
        }
    }
    if ended_by_server {
        let mut s = Status::unavailable(
            "session ended by the server (its connections are cut: a change of role, a GOAWAY or shutdown): every \
             request it read was answered; the others were not executed",
        );
        s.metadata_mut().insert(UNREAD_TRAILER, tonic::metadata::MetadataValue::from_static("not-executed"));
        let _ = tx.send(Err(s)).await;
    }
}

fn overloaded(id: u64, in_flight: usize) -> proto::SessionReply {
    error_reply(
        id,
        Code::ResourceExhausted,
        format!("session busy: {in_flight} requests in flight (limit {MAX_IN_FLIGHT}); not executed, retry shortly"),
        20,
    )
}

fn error_reply(id: u64, code: Code, message: String, retry_after_ms: u64) -> proto::SessionReply {
    proto::SessionReply {
        id,
        result: Some(Res::Error(proto::SessionError { code: code as i32, message, retry_after_ms })),
    }
}

fn status_reply(id: u64, s: &Status) -> proto::SessionReply {
    let retry = s.metadata().get(RETRY_AFTER_MS).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    error_reply(id, s.code(), s.message().to_string(), retry)
}

/// A write of a burst, validated (what fails validation is answered without reaching the writer).
enum Write {
    Create { replicas: usize },
    Commit(proto::CommitBlockRequest),
    Remove(u64),
}

/// A write and its request id (ops/mod.rs: applied at most once per id).
type Keyed = (Write, Option<RequestId>);

impl Write {
    fn op(&self) -> &'static str {
        match self {
            Write::Create { .. } => "session_create",
            Write::Commit(_) => "session_commit",
            Write::Remove(_) => "session_remove",
        }
    }
}

/// Runs one burst: its writes as one writer closure, its reads as one read per consistency, both
/// at once. Returns one reply per request of the burst.
async fn run_burst(ctx: Ctx, burst: Vec<proto::SessionRequest>) -> Vec<proto::SessionReply> {
    let start = Instant::now();
    let n = burst.len();
    let mut replies = Vec::with_capacity(n);
    let mut writes = Vec::new();
    let mut reads: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for r in burst {
        let id = r.id;
        let own = match &r.op {
            Some(Op::Create(c)) => c.request_id.as_ref(),
            Some(Op::Commit(c)) => c.request_id.as_ref(),
            Some(Op::Remove(c)) => c.request_id.as_ref(),
            _ => None,
        };
        let key = validate::request_id(r.request_id.as_ref())
            .and_then(|k| validate::request_id_of(k, validate::request_id(own)?));
        let key = match key {
            Ok(k) => k,
            Err(s) => {
                replies.push(status_reply(id, &s));
                continue;
            }
        };
        let w = match r.op {
            Some(Op::Create(c)) => {
                validate::create_block(&c, ctx.default_replicas).map(|c| Write::Create { replicas: c.replicas })
            }
            Some(Op::Commit(c)) => validate::commit_block(c).map(Write::Commit),
            Some(Op::Remove(r)) => Ok(Write::Remove(r.block_id)),
            Some(Op::Get(g)) => {
                reads[g.stale as usize].push((id, g.block_id));
                continue;
            }
            None => Err(Status::invalid_argument("a session request needs an operation")),
        };
        match w {
            Ok(w) => writes.push((id, (w, key))),
            Err(s) => replies.push(status_reply(id, &s)),
        }
    }
    let mut tally = Tally::default();
    for r in &replies {
        tally.count("session_invalid", r);
    }
    let write_ops: Vec<&'static str> = writes.iter().map(|(_, (w, _))| w.op()).collect();
    let [linearizable, stale] = reads;
    let (w, l, s) = tokio::join!(
        run_writes(&ctx, writes),
        run_reads(&ctx, Consistency::Linearizable, linearizable),
        run_reads(&ctx, Consistency::Stale, stale),
    );
    if w.iter().any(|r| matches!(r.result, Some(Res::Create(_)))) {
        crate::crashpoint::reached(super::client::CREATE_COMMITTED);
    }
    for (op, r) in write_ops.into_iter().zip(&w) {
        tally.count(op, r);
    }
    for r in l.iter().chain(&s) {
        tally.count("session_get", r);
    }
    replies.extend(w);
    replies.extend(l);
    replies.extend(s);
    tally.flush(&ctx.engine, start);
    debug_assert_eq!(replies.len(), n, "one reply per request");
    replies
}

/// One writer closure for all the writes of a burst; each write succeeds or fails on its own.
async fn run_writes(ctx: &Ctx, writes: Vec<(u64, Keyed)>) -> Vec<proto::SessionReply> {
    if writes.is_empty() {
        return Vec::new();
    }
    let ids: Vec<u64> = writes.iter().map(|(id, _)| *id).collect();
    let est = ctx.engine.cfg().block_size_estimate;
    let r = ctx
        .engine
        .write_records(writes.len() as u32, move |txn| {
            Ok(writes.into_iter().map(|(id, w)| (id, apply(txn, w, est))).collect::<Vec<_>>())
        })
        .await;
    match r {
        Ok((outcomes, _)) => outcomes
            .into_iter()
            .map(|(id, o)| match o {
                Ok(result) => proto::SessionReply { id, result: Some(result) },
                Err(e) => status_reply(id, &to_status(e)),
            })
            .collect(),
        // The whole burst was refused (not a writable master, overloaded, no space) or its
        // outcome is unknown (mastership lapsed before it committed): the same for every write.
        Err(e) => {
            let s = to_status(e);
            ids.into_iter().map(|id| status_reply(id, &s)).collect()
        }
    }
}

/// One write of a burst on the writer thread: the rules are `ops`' (as for the unary handlers).
fn apply(txn: &mut Txn<'_>, (w, key): Keyed, size_estimate: u64) -> Result<Res, WriteError> {
    let epoch = txn.epoch().get();
    Ok(match w {
        Write::Create { replicas } => {
            let (block, seq) = ops::create_block(txn, replicas, size_estimate, key)?;
            Res::Create(proto::CreateBlockReply { epoch, block: Some(block), seq })
        }
        Write::Commit(c) => {
            let (block, seq) = ops::commit_block(txn, &c, key)?;
            Res::Commit(proto::CommitBlockReply { epoch, block: Some(block), seq })
        }
        Write::Remove(block_id) => {
            Res::Remove(proto::RemoveBlockReply { epoch, seq: ops::remove_block(txn, block_id, key)? })
        }
    })
}

/// The gets of a burst of one consistency, in one read of the state: the rules of the unary
/// GetBlock (engine `read`), paid once for all of them.
async fn run_reads(ctx: &Ctx, c: Consistency, gets: Vec<(u64, u64)>) -> Vec<proto::SessionReply> {
    if gets.is_empty() {
        return Vec::new();
    }
    let r = ctx
        .engine
        .read(c, |s| {
            gets.iter().map(|&(id, b)| (id, b, s.blocks().get(&b).map(|m| ops::view::block(s, b, m)))).collect()
        })
        .await;
    match r {
        Ok((found, at)) => {
            let found: Vec<(u64, u64, Option<proto::Block>)> = found;
            found
                .into_iter()
                .map(|(id, b, block)| match block {
                    Some(block) => proto::SessionReply {
                        id,
                        result: Some(Res::Get(proto::GetBlockReply {
                            epoch: at.epoch.get(),
                            block: Some(block),
                            applied_seq: at.applied_seq,
                            stale: at.stale,
                        })),
                    },
                    None => error_reply(id, Code::NotFound, format!("block {b} does not exist"), 0),
                })
                .collect()
        }
        Err(e) => {
            let s = to_status(e);
            gets.into_iter().map(|(id, _)| status_reply(id, &s)).collect()
        }
    }
}

/// Request counts and latencies of one burst, by operation and code: counted once per burst and
/// pair, through the cached handles (metrics `OpMetrics`).
#[derive(Default)]
struct Tally {
    counts: Vec<(&'static str, usize, u64)>,
}

impl Tally {
    fn count(&mut self, op: &'static str, r: &proto::SessionReply) {
        let code = match &r.result {
            Some(Res::Error(e)) => super::code_index(Code::from_i32(e.code)),
            _ => 0,
        };
        match self.counts.iter_mut().find(|(o, c, _)| *o == op && *c == code) {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((op, code, 1)),
        }
    }

    fn flush(self, engine: &Engine, start: Instant) {
        let m = &engine.metrics();
        let secs = start.elapsed().as_secs_f64();
        for (op, code, n) in self.counts {
            let o = m.op(op).expect("session operations are among metrics::OPS");
            o.count(m, code, n);
            o.observe(m, secs, n);
        }
    }
}
