//! `tfsctl bench`: closed-loop load from `concurrency` workers over a few HTTP/2 connections,
//! latency in an HDR histogram. Retryable failures (no master, failover in progress) are retried
//! until `--retry-for` runs out, so the run measures what a client sees across a failover.
//!
//! Unary creates, gets and commits go through the client library (tfs-client), which follows the
//! VIP and retries what was not applied; the bench retries what it gives back (a write of unknown
//! outcome) and counts only those retries. Echoes, batch creates, mixed runs (their history holds
//! every attempt, with the node that answered) and `--keep-connection` runs make their own calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tfs_nameserver::proto::{self, client_client::ClientClient};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

use crate::ops;
use crate::record::Ack;
use crate::sim::{self, SimArgs};

mod session;
mod worker;
use session::Sessions;
use worker::{Via, retryable, worker};

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
    let library = library_clients(addr, &a)?;
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
        let via = match (&sessions, &library) {
            (Some(s), _) => Via::Session(s.clone(), (w % a.connections) as usize),
            (None, Some(l)) => Via::Library(l[(w % a.connections) as usize].clone()),
            (None, None) => Via::Unary,
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

/// One client of the library per connection, for the runs it serves: creates, gets and commits
/// whose every attempt the bench need not see (no history of attempts, no kept connection), on
/// unary RPCs. Echoes and batch creates have no call in the library.
fn library_clients(addr: &str, a: &BenchArgs) -> Result<Option<Vec<tfs_client::Client>>> {
    if a.session || a.keep_connection || a.history.is_some() || !matches!(a.op, Op::Create | Op::Get | Op::Commit) {
        return Ok(None);
    }
    let tls = crate::tls::client_options();
    let clients = (0..a.connections)
        .map(|_| Ok(tfs_client::Client::lazy(addr, tls.clone())?.with_retry_budget(a.retry_for)))
        .collect::<Result<_>>()?;
    Ok(Some(clients))
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
        match c.batch_create_blocks(proto::BatchCreateBlocksRequest { count, replicas, request_id: None }).await {
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
