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

use crate::record::{Ack, Kind};
use crate::sim::{self, SimArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    Create,
    BatchCreate,
    Get,
    Commit,
    Echo,
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
    /// How often to print progress (ok, failed, retries so far) on stderr.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_every: Duration,
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
                &SimArgs { count: n, first_id: 1, capacity: 1 << 40, renew_every: Duration::from_secs(2) },
            )?;
            wait_for_dataservers(&chans[0], n).await?;
            Some(s)
        }
        None => None,
    };
    let blocks = match a.op {
        Op::Get | Op::Commit => Arc::new(prefill(&chans[0], a.prefill.max(a.concurrency), a.replicas).await?),
        _ => Arc::new(Vec::new()),
    };
    let (rec_tx, rec_join) = match &a.record {
        Some(p) => {
            let (tx, h) = crate::record::spawn_writer(p)?;
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
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
        let (a, counters, blocks, rec) = (a.clone(), counters.clone(), blocks.clone(), rec_tx.clone());
        let ep = fresh.clone();
        workers.push(tokio::spawn(async move {
            worker(w, ClientClient::new(ch), ep, a, counters, blocks, rec, start).await
        }));
    }
    drop(rec_tx);
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
    if let Some(h) = rec_join {
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
                "op": format!("{:?}", a.op).to_lowercase(), "count": a.count, "concurrency": a.concurrency,
                "ok": ok, "failed": failed, "retries": retries, "elapsed_s": elapsed,
                "ops_per_s": ops, "items_per_s": ops * per_call as f64,
                "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": hist.max() as f64 / 1000.0,
            })
        );
    } else {
        println!(
            "op={:?} count={} concurrency={} ok={ok} failed={failed} retries={retries} elapsed={elapsed:.2}s ops/s={ops:.0}{} p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
            a.op,
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

async fn prefill(ch: &Channel, n: u64, replicas: u32) -> Result<Vec<u64>> {
    let mut c = ClientClient::new(ch.clone());
    let mut ids = Vec::with_capacity(n as usize);
    while (ids.len() as u64) < n {
        let count = (n - ids.len() as u64).min(1000) as u32;
        let r = c
            .batch_create_blocks(proto::BatchCreateBlocksRequest { count, replicas })
            .await
            .map_err(|s| anyhow::anyhow!("prefill: {}", s.message()))?;
        ids.extend(r.into_inner().blocks.iter().map(|b| b.id));
    }
    Ok(ids)
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    w: u64,
    mut c: ClientClient<Channel>,
    ep: tonic::transport::Endpoint,
    a: BenchArgs,
    counters: Arc<Counters>,
    blocks: Arc<Vec<u64>>,
    rec: Option<mpsc::UnboundedSender<Ack>>,
    start: Instant,
) -> (Histogram<u64>, Option<String>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let mut first_error = None;
    let mut version: u32 = 0;
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
        // Each worker owns one block, so its versions only move forward.
        let block = if blocks.is_empty() { 0 } else { blocks[(w % blocks.len() as u64) as usize] };
        let mut backoff = Duration::from_millis(10);
        loop {
            let sent_ms = now_ms();
            let r = call(&mut c, &a, block, version).await;
            match r {
                Ok(acks) => {
                    let us = scheduled.elapsed().as_micros().max(1) as u64;
                    let _ = hist.record(us.min(120_000_000));
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(rec) = &rec {
                        let acked_ms = now_ms();
                        for (kind, block, epoch, seq) in acks {
                            let _ = rec.send(Ack { kind, block, epoch, seq, sent_ms, acked_ms });
                        }
                    }
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
                        c = ClientClient::new(ep.connect_lazy());
                        tokio::time::sleep(backoff).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(s) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if first_error.is_none() {
                        first_error = Some(format!("{}: {}", s.code(), s.message()));
                    }
                    break;
                }
            }
        }
    }
    (hist, first_error)
}

type Acked = Vec<(Kind, u64, u64, u64)>;

async fn call(c: &mut ClientClient<Channel>, a: &BenchArgs, block: u64, version: u32) -> Result<Acked, Status> {
    Ok(match a.op {
        Op::Create => {
            let r = c.create_block(proto::CreateBlockRequest { replicas: a.replicas }).await?.into_inner();
            let id = r.block.map(|b| b.id).unwrap_or(0);
            vec![(Kind::Create, id, r.epoch, r.seq)]
        }
        Op::BatchCreate => {
            let r = c
                .batch_create_blocks(proto::BatchCreateBlocksRequest { count: a.batch, replicas: a.replicas })
                .await?
                .into_inner();
            r.blocks.iter().map(|b| (Kind::Create, b.id, r.epoch, r.seq)).collect()
        }
        Op::Get => {
            c.get_block(proto::GetBlockRequest { block_id: block, stale: false }).await?;
            vec![]
        }
        Op::Commit => {
            let req = proto::CommitBlockRequest {
                block_id: block,
                version,
                size: version as u64 * 4096,
                file_count: version,
                del_size: 0,
                del_file_count: 0,
            };
            let r = c.commit_block(req).await?.into_inner();
            vec![(Kind::Commit { version }, block, r.epoch, r.seq)]
        }
        Op::Echo => {
            c.echo(proto::EchoRequest { payload: vec![7u8; a.payload] }).await?;
            vec![]
        }
    })
}
