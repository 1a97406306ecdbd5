//! `tfsctl bench`: closed-loop load from `concurrency` workers over a few HTTP/2 connections,
//! latency in an HDR histogram. Retryable failures (no master, failover in progress) are retried
//! until `--retry-for` runs out, so the run measures what a client sees across a failover.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tfs_nameserver::proto::{self, client_client::ClientClient};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::ops;
use crate::record::{Ack, Kind};
use crate::sim::{self, SimArgs};

// A module of bench's own (main.rs lists the commands' modules): the `--session` client.
#[path = "session.rs"]
mod session;
use session::Sessions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    Create,
    BatchCreate,
    Get,
    Commit,
    Echo,
    /// Reads and commits on a few shared blocks, plus creates (see `--mix`, `--history`).
    Mixed,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum)]
    pub op: Op,
    /// Requests in all.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Run this many simulated dataservers inside the bench (so creates can be placed).
    #[arg(long)]
    pub sim_dataservers: Option<u32>,
    /// Append every acknowledged mutation to this file (see `verify`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Blocks per call for batch-create.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Replicas per created block (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// Blocks created before a get or commit run.
    #[arg(long, default_value_t = 10_000)]
    pub prefill: u64,
    /// Open-loop target rate in requests/s over all workers (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Keep retrying a failed request this long before counting it failed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
    /// Echo payload bytes.
    #[arg(long, default_value_t = 16)]
    pub payload: usize,
    /// Mixed: blocks every worker reads and commits (created first).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub shared_blocks: u64,
    /// Mixed: relative weights of reads, commits and creates.
    #[arg(long, default_value = "6:3:1", value_parser = parse_mix)]
    pub mix: Mix,
    /// Mixed: append every operation (reads, commits whatever their outcome) with its invocation
    /// and completion times to this file, for `verify --history` (a linearizability check).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Never dial a new connection after an error: keep the HTTP/2 connections as long as they
    /// live (they reconnect to the same address only when the server closes them).
    #[arg(long)]
    pub keep_connection: bool,
    /// Creates, gets and commits on pipelined sessions (`tfs.v1.Session`), one stream per
    /// connection shared by its workers, instead of one unary RPC each.
    #[arg(long)]
    pub session: bool,
    /// How often to print progress (ok, failed, retries so far) on stderr.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_every: Duration,
}

/// Weights of a mixed run's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub read: u32,
    pub commit: u32,
    pub create: u32,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    let w: Vec<u32> =
        s.split(':').map(|x| x.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    match w[..] {
        [read, commit, create] if read + commit + create > 0 => Ok(Mix { read, commit, create }),
        _ => Err("expected three weights read:commit:create, not all zero (e.g. 6:3:1)".into()),
    }
}

/// What one mixed operation does.
#[derive(Debug, Clone, Copy)]
enum Action {
    Read(u64),
    Commit(u64, u32),
    Create,
}

impl Mix {
    /// Picks an action; a commit's version is a little past the newest this worker has seen of
    /// the block, so that workers race on versions and some commits are refused as older.
    fn pick(&self, blocks: &[u64], seen: &mut std::collections::HashMap<u64, u32>) -> Action {
        let r = fastrand::u32(..self.read + self.commit + self.create);
        let block = blocks[fastrand::usize(..blocks.len())];
        if r < self.read {
            Action::Read(block)
        } else if r < self.read + self.commit {
            let v = seen.entry(block).or_default();
            *v += 1 + fastrand::u32(..2);
            Action::Commit(block, *v)
        } else {
            Action::Create
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn retryable(s: &Status) -> bool {
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

struct Counters {
    next: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

pub async fn run(addr: &str, a: BenchArgs, json: bool) -> Result<i32> {
    let ep = crate::endpoint(addr)?;
    let chans: Vec<Channel> = (0..a.connections).map(|_| ep.connect_lazy()).collect();
    let fresh = ep.clone();
    let _sims = match a.sim_dataservers {
        Some(n) => {
            let s = sim::spawn(
                addr,
                &SimArgs {
                    count: n,
                    first_id: 1,
                    capacity: 1 << 40,
                    renew_every: Duration::from_secs(2),
                    report_blocks: None,
                    audit: None,
                },
            )?;
            wait_for_dataservers(&chans[0], n).await?;
            Some(s)
        }
        None => None,
    };
    let blocks = match a.op {
        Op::Get | Op::Commit => {
            Arc::new(prefill(&chans[0], a.prefill.max(a.concurrency), a.replicas, a.retry_for).await?)
        }
        Op::Mixed => Arc::new(prefill(&chans[0], a.shared_blocks, a.replicas, a.retry_for).await?),
        _ => Arc::new(Vec::new()),
    };
    if a.history.is_some() && a.op != Op::Mixed {
        bail!("--history records the operations of --op mixed only");
    }
    if a.session && !matches!(a.op, Op::Create | Op::Get | Op::Commit) {
        bail!("--session runs --op create, get or commit");
    }
    let sessions = a.session.then(|| Arc::new(Sessions::new(fresh.clone(), a.connections as usize)));
    let (rec_tx, rec_join) = sink(a.record.as_deref())?;
    let (hist_tx, hist_join) = sink(a.history.as_deref())?;
    let counters = Arc::new(Counters {
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        retries: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let ch = chans[(w % a.connections) as usize].clone();
        let (a, counters, blocks) = (a.clone(), counters.clone(), blocks.clone());
        let sinks = Sinks { rec: rec_tx.clone(), hist: hist_tx.clone() };
        let ep = fresh.clone();
        // Worker w shares the stream of its connection, as it shares the connection unary.
        let via = match &sessions {
            Some(s) => Via::Session(s.clone(), (w % a.connections) as usize),
            None => Via::Unary,
        };
        workers.push(tokio::spawn(async move {
            worker(w, ClientClient::new(ch), via, ep, a, counters, blocks, sinks, start).await
        }));
    }
    drop((rec_tx, hist_tx));
    let progress = {
        let counters = counters.clone();
        let every = a.progress_every.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let ok = counters.ok.load(Ordering::Relaxed);
                eprintln!(
                    "tfsctl bench: {:>6.1}s {ok} ok, {} failed, {} retries",
                    start.elapsed().as_secs_f64(),
                    counters.failed.load(Ordering::Relaxed),
                    counters.retries.load(Ordering::Relaxed)
                );
            }
        })
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut first_error = None;
    for w in workers {
        let (h, err) = w.await?;
        hist.add(h)?;
        if first_error.is_none() {
            first_error = err;
        }
    }
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    for h in [rec_join, hist_join].into_iter().flatten() {
        h.join().map_err(|_| anyhow::anyhow!("record writer panicked"))??;
    }
    let ok = counters.ok.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let retries = counters.retries.load(Ordering::Relaxed);
    let per_call = if a.op == Op::BatchCreate { a.batch as u64 } else { 1 };
    let ops = ok as f64 / elapsed;
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "op": format!("{:?}", a.op).to_lowercase(), "session": a.session, "count": a.count, "concurrency": a.concurrency,
                "ok": ok, "failed": failed, "retries": retries, "elapsed_s": elapsed,
                "ops_per_s": ops, "items_per_s": ops * per_call as f64,
                "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": hist.max() as f64 / 1000.0,
            })
        );
    } else {
        println!(
            "op={:?}{} count={} concurrency={} ok={ok} failed={failed} retries={retries} elapsed={elapsed:.2}s ops/s={ops:.0}{} p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
            a.op,
            if a.session { " session" } else { "" },
            a.count,
            a.concurrency,
            if per_call > 1 { format!(" items/s={:.0}", ops * per_call as f64) } else { String::new() },
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max() as f64 / 1000.0
        );
    }
    if let Some(e) = first_error {
        eprintln!("tfsctl bench: first failure: {e}");
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

async fn wait_for_dataservers(ch: &Channel, n: u32) -> Result<()> {
    let mut c = ClientClient::new(ch.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = c.status(proto::StatusRequest {}).await
            && s.get_ref().live_dataservers >= n as u64
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the simulated dataservers did not register within 30s (is the nameserver a writable master?)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the blocks a get, commit or mixed run works on; retries what may pass later (no
/// master yet, no dataserver registered yet) for up to `retry_for`.
async fn prefill(ch: &Channel, n: u64, replicas: u32, retry_for: Duration) -> Result<Vec<u64>> {
    let mut c = ClientClient::new(ch.clone());
    let mut ids = Vec::with_capacity(n as usize);
    let give_up = Instant::now() + retry_for;
    while (ids.len() as u64) < n {
        let count = (n - ids.len() as u64).min(1000) as u32;
        match c.batch_create_blocks(proto::BatchCreateBlocksRequest { count, replicas }).await {
            Ok(r) => ids.extend(r.into_inner().blocks.iter().map(|b| b.id)),
            Err(s) if Instant::now() < give_up && (retryable(&s) || s.code() == Code::FailedPrecondition) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("prefill: {}: {}", s.code(), s.message()),
        }
    }
    Ok(ids)
}

/// Where a worker writes what it saw: acknowledged mutations, and (mixed) every operation.
struct Sinks {
    rec: Option<mpsc::UnboundedSender<Ack>>,
    hist: Option<mpsc::UnboundedSender<ops::Op>>,
}

type Sink<T> = (Option<mpsc::UnboundedSender<T>>, Option<std::thread::JoinHandle<Result<()>>>);

fn sink<T: crate::record::Line>(path: Option<&std::path::Path>) -> Result<Sink<T>> {
    Ok(match path {
        Some(p) => {
            let (tx, h) = crate::record::spawn_writer(p)?;
            (Some(tx), Some(h))
        }
        None => (None, None),
    })
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
enum Via {
    Unary,
    /// On the session stream of this slot.
    Session(Arc<Sessions>, usize),
}

#[allow(clippy::too_many_arguments)]
async fn worker(
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

/// What a bench commit of `version` writes.
fn commit_request(block: u64, version: u32) -> proto::CommitBlockRequest {
    proto::CommitBlockRequest {
        block_id: block,
        version,
        size: version as u64 * 4096,
        file_count: version,
        del_size: 0,
        del_file_count: 0,
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
            let r =
                c.batch_create_blocks(proto::BatchCreateBlocksRequest { count: a.batch, replicas: a.replicas }).await?;
            let (m, r) = (r.metadata().clone(), r.into_inner());
            done(r.blocks.iter().map(|b| (Kind::Create, b.id, r.epoch, r.seq)).collect(), r.epoch, &m)
        }
        (_, Action::Create) => {
            let r = c.create_block(proto::CreateBlockRequest { replicas: a.replicas }).await?;
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
