//! `make chaos`: a TfsNameserver under a recording load, N faults drawn from a seed, each healed
//! and followed by a bounded wait for the system to converge on its own; then the history check
//! (`tfsctl verify --faults`): nothing acknowledged lost, no id issued twice, no two epochs
//! acknowledging in overlapping windows, and the write outage of each fault.

pub mod converge;
pub mod faults;
pub mod heal;
pub mod leasewatch;
pub mod schedule;
pub mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use self::converge::{converge, diagnostics};
use self::faults::{ApiAddrs, Injected, Pair};
use self::schedule::{FaultKind, Step, plan};
use self::writer::BenchWriter;
use crate::{Tfs, client, ensure_operator, kubectl, now_ms, root, tfsctl};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Opts {
    pub faults: usize,
    pub seed: Option<u64>,
    pub kinds: Vec<FaultKind>,
    pub converge_timeout: Duration,
    /// Keep the namespace at the end (it is deleted otherwise, also after a failure: the
    /// diagnostics are saved first).
    pub keep: bool,
}

const NAME: &str = "demo";
/// The writers: `tfsctl bench --op` and its flags, rate-limited so that a long run stays small.
/// (name, `tfsctl bench --op`, more flags). The mixed writers read and commit on shared blocks
/// and keep a history of every attempt for the linearizability check: one dials anew after every
/// error, the other keeps its one connection as long as the server does.
const WRITERS: [(&str, &str, &[&str]); 4] = [
    ("create", "create", &["--concurrency", "8", "--rate", "300", "--sim-dataservers", "3"]),
    ("commit", "commit", &["--concurrency", "4", "--rate", "100", "--prefill", "64"]),
    ("mixed-redial", "mixed", &["--concurrency", "8", "--rate", "200", "--mix", "6:3:0", "--connections", "1"]),
    (
        "mixed-keep",
        "mixed",
        &["--concurrency", "8", "--rate", "200", "--mix", "6:3:0", "--connections", "1", "--keep-connection"],
    ),
];
const REPLICAS: usize = 2;

struct Run {
    start: Instant,
    dir: PathBuf,
    ns: String,
    tfs: Tfs,
    writers: Vec<BenchWriter>,
    fault_log: std::fs::File,
    timeout: Duration,
}

impl Run {
    fn say(&self, msg: impl AsRef<str>) {
        println!("[chaos {:>7.1}s] {}", self.start.elapsed().as_secs_f64(), msg.as_ref());
    }

    fn log(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.fault_log, "{v}")?;
        self.fault_log.flush()?;
        Ok(())
    }

    async fn diagnose(&self, why: &str) -> String {
        let mut pods = Vec::new();
        for p in self.tfs.pod_names().await.unwrap_or_default() {
            let ip = self.tfs.pods.get(&p).await.ok().and_then(|p| p.status?.pod_ip).unwrap_or_default();
            pods.push((p, ip));
        }
        let d = format!("chaos failed: {why}\n{}", diagnostics(&self.ns, NAME, &pods, &self.writers));
        let f = self.dir.join("diagnostics.txt");
        let _ = std::fs::write(&f, &d);
        format!("{d}\n(saved in {})", f.display())
    }
}

async fn inject(step: &Step, p: &Pair, api: &ApiAddrs) -> Result<Injected> {
    match step.kind {
        FaultKind::Kill9Master => faults::kill9_master(p),
        FaultKind::KillHeart => faults::kill_master_heart(p),
        FaultKind::DeleteMasterPod => faults::delete_master_pod(p),
        FaultKind::FreezeMaster => faults::freeze_master(p),
        FaultKind::CutMasterFromApiserver => faults::cut_master_from_apiserver(p, api),
        FaultKind::CutMasterFromSlave => faults::cut_master_from_slave(p),
        FaultKind::FreezeSlaveKillMaster => faults::freeze_slave_kill_master(p, step.delay).await,
        FaultKind::KillOperatorMidFailover => faults::kill_operator_mid_failover(p, step.delay).await,
        FaultKind::StopApiserver => faults::stop_apiserver(),
        FaultKind::LoseMasterNode => faults::lose_master_node(p),
    }
}

fn out_dir(seed: u64) -> Result<PathBuf> {
    let dir = root().join(".e2e/chaos").join(seed.to_string());
    if dir.exists() {
        // A replay of the same seed: keep the earlier run beside it.
        std::fs::rename(&dir, dir.with_file_name(format!("{seed}.before-{}", now_ms())))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn delete_namespace(ns: &str) {
    let _ = kubectl(&["delete", "tfsns", "--all", "-n", ns, "--wait=true", "--timeout=60s"]);
    let _ = kubectl(&["delete", "namespace", ns, "--wait=false"]);
}

/// Runs the whole thing; returns the process exit code.
pub async fn run(o: Opts) -> Result<i32> {
    let seed = o.seed.unwrap_or_else(now_ms);
    let names: Vec<&str> = o.kinds.iter().map(|k| k.name()).collect();
    println!(
        "chaos: seed={seed} faults={} kinds={} (replay: make chaos CHAOS_SEED={seed} CHAOS_FAULTS={})",
        o.faults,
        names.join(","),
        o.faults
    );
    heal::install_handlers();
    let dir = out_dir(seed)?;
    ensure_operator()?;
    kubectl(&["apply", "-f", root().join("examples/storageclass-local.yaml").to_str().expect("utf-8 path")])?;
    let ns = format!("chaos-{seed}");
    if kubectl(&["get", "namespace", &ns]).is_ok() {
        delete_namespace(&ns);
        let deadline = Instant::now() + Duration::from_secs(120);
        while kubectl(&["get", "namespace", &ns]).is_ok() {
            if Instant::now() > deadline {
                bail!("namespace {ns} from an earlier run is still being deleted");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    kubectl(&["create", "namespace", &ns])?;
    // Also when interrupted: the namespace goes (its TfsNameserver's finalizer runs meanwhile).
    let gone = (!o.keep).then(|| {
        let ns = ns.clone();
        heal::Heal::new(format!("delete namespace {ns}"), move || {
            let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
        })
    });
    let result = run_in(&o, seed, &dir, &ns).await;
    if o.keep {
        println!("chaos: namespace {ns} kept (kubectl delete namespace {ns})");
    } else {
        delete_namespace(&ns);
    }
    drop(gone);
    result
}

async fn run_in(o: &Opts, seed: u64, dir: &Path, ns: &str) -> Result<i32> {
    let c = client().await?;
    let tfs = Tfs::create(&c, ns, NAME, REPLICAS as u32).await?;
    let fault_log = std::fs::File::create(dir.join("faults.jsonl"))?;
    let mut r = Run {
        start: Instant::now(),
        dir: dir.to_path_buf(),
        ns: ns.to_string(),
        tfs,
        writers: Vec::new(),
        fault_log,
        timeout: o.converge_timeout,
    };
    r.say(format!("namespace {ns}, TfsNameserver {NAME} with {REPLICAS} replicas; output in {}", dir.display()));
    r.tfs.wait_healthy(REPLICAS, 1, Duration::from_secs(180)).await?;
    r.tfs.wait_sync_set(REPLICAS - 1, Duration::from_secs(60)).await?;
    let lease = Duration::from_secs(r.tfs.get().await?.spec.lease.duration_seconds.max(1) as u64);
    let api = ApiAddrs::discover()?;
    let vip = r.tfs.vip().await?;
    let watch = leasewatch::LeaseWatch::start(r.tfs.leases.clone(), NAME, &dir.join("lease.jsonl"))?;
    // One after the other: the commit writer first creates the blocks it commits to, which needs
    // the create writer's simulated dataservers to place them.
    for (name, op, extra) in WRITERS {
        r.writers.push(BenchWriter::start(&vip, dir, name, op, extra)?);
        if let Err(e) = converge(&r.tfs, REPLICAS, &mut r.writers, o.converge_timeout, 100).await {
            eprintln!("{}", r.diagnose(&format!("starting the {name} writer: {e:#}")).await);
            return Ok(1);
        }
    }
    r.say(format!("healthy; writers through the VIP {vip} (creates 300/s, commits 100/s, two mixed readers/committers 200/s each); API server {api:?}"));
    let steps = plan(seed, o.faults, &o.kinds, lease);
    let mut failure = None;
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = one_fault(&mut r, i, steps.len(), step, &api).await {
            let d = r.diagnose(&format!("fault {i} ({}): {e:#}", step.kind.name())).await;
            eprintln!("{d}");
            failure = Some(format!("fault {i} ({}): {e:#}", step.kind.name()));
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for w in r.writers.iter_mut() {
        w.stop();
    }
    let seen = {
        let s = watch.seen.lock().unwrap_or_else(|e| e.into_inner());
        (s.promotions, s.illegal.clone(), s.unverified.clone())
    };
    drop(watch);
    r.say(format!(
        "writers stopped; {} promotion(s) seen on the Lease: {} against the published sync set, {} not verifiable (watch restarted){}",
        seen.0,
        seen.1.len(),
        seen.2.len(),
        if seen.2.is_empty() { String::new() } else { format!(": {}", seen.2.join("; ")) }
    ));
    for why in &seen.1 {
        r.say(format!("ILLEGAL PROMOTION: {why}"));
    }
    r.say("history check: tfsctl verify --faults (every acknowledged write read back through the VIP)");
    let summary = dir.join("summary.json");
    let mut args: Vec<String> = vec!["--addr".into(), vip.clone(), "verify".into()];
    for w in &r.writers {
        args.extend(["--record".into(), w.record.display().to_string()]);
        if let Some(h) = &w.history {
            args.extend(["--history".into(), h.display().to_string()]);
        }
    }
    args.extend(["--faults".into(), dir.join("faults.jsonl").display().to_string()]);
    args.extend(["--summary".into(), summary.display().to_string()]);
    let out = Command::new(tfsctl()).args(&args).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let verified = out.status.success();
    if let Ok(text) = std::fs::read_to_string(&summary)
        && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("seed".into(), seed.into());
        obj.insert("namespace".into(), ns.into());
        obj.insert("faults_planned".into(), steps.len().into());
        obj.insert("promotions".into(), seen.0.into());
        obj.insert("illegal_promotions".into(), seen.1.clone().into());
        obj.insert("unverified_promotions".into(), seen.2.clone().into());
        obj.insert("failure".into(), failure.clone().into());
        obj.insert("duration_s".into(), r.start.elapsed().as_secs_f64().into());
        std::fs::write(&summary, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    if let Some(f) = failure {
        eprintln!("chaos: FAILED at {f} (seed {seed}); diagnostics in {}", dir.join("diagnostics.txt").display());
        return Ok(1);
    }
    if !seen.1.is_empty() || !verified {
        eprintln!("chaos: FAILED (seed {seed}): see above; output in {}", dir.display());
        return Ok(1);
    }
    Ok(0)
}

async fn one_fault(r: &mut Run, i: usize, n: usize, step: &Step, api: &ApiAddrs) -> Result<()> {
    let p = Pair::of(&r.tfs).await?;
    for w in r.writers.iter_mut() {
        w.tail.poll()?;
    }
    let inj = inject(step, &p, api).await?;
    for w in r.writers.iter_mut() {
        w.tail.mark(inj.t_ms);
    }
    r.say(format!("fault {}/{n} {} at {}: {}", i + 1, step.kind.name(), inj.t_ms, inj.detail));
    r.log(serde_json::json!({
        "fault": i, "kind": step.kind.name(), "t_ms": inj.t_ms, "master": p.master, "slave": p.slave,
        "epoch": p.epoch, "detail": inj.detail, "hold_ms": step.hold.as_millis() as u64,
        "delay_ms": step.delay.as_millis() as u64,
    }))?;
    // Held from the moment of injection (a probe checking a cut takes time of its own).
    let held = Duration::from_millis(now_ms().saturating_sub(inj.t_ms));
    tokio::time::sleep(step.hold.saturating_sub(held)).await;
    let healed_ms = now_ms();
    let what = inj.guard.what().to_string();
    inj.guard.heal();
    if what != "nothing" {
        r.say(format!("  healed after {:.1}s: {what}", (healed_ms - inj.t_ms) as f64 / 1000.0));
    }
    let conv = converge(&r.tfs, REPLICAS, &mut r.writers, r.timeout, 50).await?;
    let gap = r.writers.iter().map(|w| w.tail.max_gap_since_mark_ms).min().unwrap_or(0);
    r.say(format!(
        "  converged {:.1}s after the fault: master {}@{} (was {}@{}), writes flowing; longest write gap ~{:.2}s",
        (conv.t_ms - inj.t_ms) as f64 / 1000.0,
        conv.master,
        conv.epoch,
        p.master,
        p.epoch,
        gap as f64 / 1000.0
    ));
    r.log(serde_json::json!({
        "converged": i, "at_ms": conv.t_ms, "healed_ms": healed_ms, "converge_s": (conv.t_ms - inj.t_ms) as f64 / 1000.0,
        "master": conv.master, "epoch": conv.epoch, "restarts": converge::restarts(&r.tfs).await,
    }))?;
    tokio::time::sleep(step.pause).await;
    Ok(())
}
