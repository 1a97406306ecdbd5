//! `failover-bench`: failover time on the local cluster, trial after trial (see e2e/src/trials.rs).
//! A writer through the VIP records every acknowledged create; each trial injects a fault into
//! the `demo` pair, times it from the fault to the first acknowledgement at a newer epoch, lets
//! the pair heal, and counts the writer's failed requests and retries over the trial. At the end
//! every acknowledged write is read back (`tfsctl verify`). Writes a JSON report.
//! Node-loss trials (`--kinds nodeloss,nodeloss-leader --replicas 3`) first place the master on
//! or off the operator leader's node by a switchover, lose that node, and bring it back once the
//! new master has answered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use tfs_e2e::chaos::converge::converge;
use tfs_e2e::chaos::faults::{self, Pair};
use tfs_e2e::chaos::writer::BenchWriter;
use tfs_e2e::evidence;
use tfs_e2e::nodes::place_master;
use tfs_e2e::trials::{self, Kind};
use tfs_e2e::{LostNode, Namespace, Tfs, client, ensure_operator, kubectl, now_ms, root, verify};

const NAME: &str = "demo";

#[derive(Debug, Parser)]
#[command(about = "Failover-time distributions on the local cluster (kill -9, pod loss, switchover, node loss)")]
struct Cli {
    /// Trials of each kind.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    trials: u64,
    /// Kinds of trial (comma-separated: kill, podloss, switchover, nodeloss, nodeloss-leader).
    #[arg(long, value_delimiter = ',', default_value = "kill,switchover,podloss")]
    kinds: Vec<String>,
    /// Instances of the TfsNameserver (node-loss trials want 3: one per node).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..=5))]
    replicas: u64,
    /// The writer's rate through the VIP (creates/s, 16 in flight).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Where to write the JSON report.
    #[arg(long)]
    out: PathBuf,
    /// Keep the logs of a trial slower than this (seconds) while fewer than three trials of its
    /// kind came before it; from then on, of a trial over twice their median. Default: three
    /// lease durations.
    #[arg(long)]
    slow_over: Option<f64>,
    /// How long the pair may take to heal after a trial.
    #[arg(long, default_value = "240s", value_parser = humantime::parse_duration)]
    converge_timeout: Duration,
}

struct Trial {
    kind: Kind,
    seconds: f64,
    failed: u64,
    retries: u64,
    from: String,
    to: String,
    /// Where the logs of a slow trial were kept (see [`evidence::keep`]).
    logs: Option<PathBuf>,
}

fn say(start: Instant, msg: impl AsRef<str>) {
    println!("[failover-bench {:>6.1}s] {}", start.elapsed().as_secs_f64(), msg.as_ref());
}

fn counters(w: &BenchWriter) -> (u64, u64) {
    trials::bench_counters(&std::fs::read_to_string(&w.log).unwrap_or_default()).unwrap_or((0, 0))
}

/// Injects `kind`; returns the wall-clock ms of the injection, and the node lost if it lost one.
fn inject(kind: Kind, p: &Pair) -> Result<(u64, Option<LostNode>)> {
    Ok(match kind {
        Kind::Kill => (faults::kill9_master(p)?.t_ms, None),
        Kind::PodLoss => (faults::delete_master_pod(p)?.t_ms, None),
        Kind::NodeLoss | Kind::NodeLossLeader => {
            let node = tfs_e2e::pod_node(&p.ns, &p.master)?;
            let t = now_ms();
            (t, Some(LostNode::lose(&node)?))
        }
        Kind::Switchover => {
            let t = now_ms();
            kubectl(&[
                "annotate",
                "tfsns",
                NAME,
                "-n",
                &p.ns,
                &format!("tfs.io/switchover-to={}", p.slave),
                "--overwrite",
            ])?;
            (t, None)
        }
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let kinds: Vec<Kind> = cli.kinds.iter().map(|k| Kind::parse(k.trim())).collect::<Result<_>>()?;
    let plan = trials::schedule(&kinds, cli.trials as usize);
    let start = Instant::now();
    ensure_operator()?;
    let ns = Namespace::create("fobench")?;
    let dir = root().join(".e2e/runs").join(&ns.0);
    std::fs::create_dir_all(&dir)?;
    let replicas = cli.replicas as usize;
    let t = Tfs::create(&client().await?, &ns.0, NAME, replicas as u32).await?;
    t.wait_healthy(replicas, 1, Duration::from_secs(180)).await?;
    t.wait_sync_set(replicas - 1, Duration::from_secs(60)).await?;
    let spec = t.get().await?.spec;
    let slow_over = cli.slow_over.unwrap_or(3.0 * spec.lease.duration_seconds as f64);
    let vip = t.vip().await?;
    let rate = cli.rate.to_string();
    let mut writers = vec![BenchWriter::start(
        &vip,
        &dir,
        "create",
        "create",
        &["--concurrency", "16", "--rate", &rate, "--sim-dataservers", "3", "--progress-every", "250ms"],
    )?];
    say(start, format!("{} trials in {}; writer through the VIP {vip} at {rate} creates/s", plan.len(), ns.0));
    converge(&t, replicas, &mut writers, cli.converge_timeout, 200).await?;
    let mut base = counters(&writers[0]);
    let mut done: Vec<Trial> = Vec::new();
    for (i, &kind) in plan.iter().enumerate() {
        converge(&t, replicas, &mut writers, cli.converge_timeout, 100).await?;
        if matches!(kind, Kind::NodeLoss | Kind::NodeLossLeader) {
            let (master, epoch, node) = place_master(&t, kind == Kind::NodeLossLeader).await?;
            say(start, format!("trial {:>2}: master {master}@{epoch} on {node}", i + 1));
            converge(&t, replicas, &mut writers, cli.converge_timeout, 100).await?;
        }
        let p = Pair::of(&t).await?;
        let record = writers[0].record.clone();
        let mut offset = std::fs::metadata(&record)?.len();
        let (fault_ms, lost) = inject(kind, &p)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let first = loop {
            let new = trials::read_new_lines(&record, &mut offset)?;
            if let Some(a) = trials::first_ack_after(&new, fault_ms, p.epoch.get()) {
                break a;
            }
            writers[0].check_running()?;
            if Instant::now() > deadline {
                bail!("trial {i} ({}): no write acknowledged at an epoch above {} within 120 s", kind.name(), p.epoch);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(node) = lost {
            node.back()?;
        }
        let healed = converge(&t, replicas, &mut writers, cli.converge_timeout, 100).await?;
        tokio::time::sleep(Duration::from_millis(400)).await; // one more progress line
        let now = counters(&writers[0]);
        let mut trial = Trial {
            kind,
            seconds: (first - fault_ms) as f64 / 1000.0,
            failed: now.0 - base.0,
            retries: now.1 - base.1,
            from: format!("{}@{}", p.master, p.epoch),
            to: format!("{}@{}", healed.master, healed.epoch),
            logs: None,
        };
        base = now;
        // A slow trial's logs are kept now, while its pods and their logs are still there.
        let earlier: Vec<f64> = done.iter().filter(|t| t.kind == kind).map(|t| t.seconds).collect();
        if let Some(why) = trials::slow_trial(trial.seconds, &earlier, slow_over) {
            let keep = dir.join(format!("slow-trial-{}-{}", i + 1, kind.name()));
            let since_s = (now_ms().saturating_sub(fault_ms)) / 1000 + 10;
            match evidence::keep(&keep, &ns.0, since_s, &why) {
                Ok(()) => {
                    say(start, format!("trial {:>2} is slow ({why}): its logs are in {}", i + 1, keep.display()));
                    trial.logs = Some(keep);
                }
                Err(e) => say(start, format!("trial {:>2} is slow ({why}); its logs could not be kept: {e}", i + 1)),
            }
        }
        say(
            start,
            format!(
                "trial {:>2}/{} {:<10} {:.3} s  failed={} retries={}  {} -> {}  (healed in {:.1} s)",
                i + 1,
                plan.len(),
                kind.name(),
                trial.seconds,
                trial.failed,
                trial.retries,
                trial.from,
                trial.to,
                healed.took.as_secs_f64()
            ),
        );
        done.push(trial);
    }
    for w in writers.iter_mut() {
        w.stop();
    }
    let verdict = verify(&vip, &writers[0].record)?;
    say(start, verdict.trim());
    let report = serde_json::json!({
        "command": format!("make bench (bench/failover.sh: failover-bench --trials {} --kinds {})", cli.trials, cli.kinds.join(",")),
        "lease_duration_s": spec.lease.duration_seconds,
        "renew_deadline_s": spec.lease.renew_deadline_seconds,
        "replicas": replicas,
        "writer": format!("tfsctl bench --op create --concurrency 16 --rate {rate} through the VIP"),
        "verify": verdict.trim(),
        "duration_s": start.elapsed().as_secs_f64(),
        "trials": done.iter().enumerate().map(|(i, t)| serde_json::json!({
            "kind": t.kind.name(), "trial": i + 1, "seconds": t.seconds, "failed_requests": t.failed,
            "retries": t.retries, "from": t.from, "to": t.to,
            "logs": t.logs.as_ref().map(|p| p.display().to_string()),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&cli.out, serde_json::to_string_pretty(&report)? + "\n")?;
    say(start, format!("report in {}", cli.out.display()));
    drop(ns);
    Ok(())
}
