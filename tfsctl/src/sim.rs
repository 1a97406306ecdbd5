//! Simulated dataservers: they take a lease, renew it, and execute the tasks the master hands them
//! against their simulated block sets (shared by the dataservers of one tfsctl): a copy (REPLICATE,
//! MOVE) puts the block in the target's set, a DELETE takes it out of the source's, a COMPACT
//! succeeds (the nameserver derives the new size). Each result is reported on the next renew.
//!
//! Invariant: a task (id, epoch) is executed once. Handed again (a new master that never
//! applied the result, its record lost with an old master's tail), its result is reported again,
//! the task is not run again. `--audit FILE` writes a line per execution, for the tests' audit.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tfs_nameserver::proto::{self, dataserver_client::DataserverClient};
use tokio::task::JoinHandle;
use tonic::Code;

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// How many dataservers to simulate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Id of the first one (the others follow).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub first_id: u32,
    /// Capacity of each, in bytes.
    #[arg(long, default_value_t = 1 << 40)]
    pub capacity: u64,
    /// Time between renews.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub renew_every: Duration,
    /// Blocks each of them holds from the start (FIRST-LAST), reported when it applies for its
    /// lease: blocks the nameserver knows become replicas (a surplus if they already had all).
    #[arg(long, value_parser = parse_range)]
    pub report_blocks: Option<(u64, u64)>,
    /// Appends a line per task executed: `task_id epoch kind block source target`.
    #[arg(long)]
    pub audit: Option<PathBuf>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').ok_or("FIRST-LAST")?;
    let (a, b) = (a.parse::<u64>().map_err(|e| e.to_string())?, b.parse::<u64>().map_err(|e| e.to_string())?);
    if a > b {
        return Err("FIRST must not be above LAST".into());
    }
    Ok((a, b))
}

/// The simulated block sets and the tasks executed, of every dataserver of this process.
#[derive(Default)]
struct World {
    held: HashMap<u32, BTreeSet<u64>>,
    /// (task id, epoch) → its result, for every task executed.
    executed: HashMap<(u64, u64), proto::TaskDone>,
    audit: Option<std::fs::File>,
}

impl World {
    /// Executes task `t` handed to dataserver `id`, once; returns its result.
    fn execute(&mut self, id: u32, t: &proto::TaskCreate) -> proto::TaskDone {
        if let Some(r) = self.executed.get(&(t.task_id, t.epoch)) {
            return *r;
        }
        use proto::TaskKind::*;
        let success = match t.kind() {
            Replicate | Move => {
                self.held.entry(t.target).or_default().insert(t.block_id);
                true
            }
            Delete => {
                self.held.entry(id).or_default().remove(&t.block_id);
                true
            }
            Compact => true,
            Unspecified => false,
        };
        if let Some(f) = self.audit.as_mut() {
            let kind = t.kind().as_str_name();
            let _ = writeln!(f, "{} {} {kind} {} {} {}", t.task_id, t.epoch, t.block_id, t.source, t.target);
        }
        let r = proto::TaskDone { task_id: t.task_id, success, epoch: t.epoch, size: None, file_count: None };
        self.executed.insert((t.task_id, t.epoch), r);
        r
    }
}

pub struct Sims {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn spawn(addr: &str, a: &SimArgs) -> Result<Sims> {
    let ep = crate::endpoint(addr)?;
    let mut world = World::default();
    if let Some(p) = &a.audit {
        world.audit = Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?);
    }
    for i in 0..a.count {
        let held = a.report_blocks.map(|(x, y)| (x..=y).collect()).unwrap_or_default();
        world.held.insert(a.first_id + i, held);
    }
    let world = Arc::new(Mutex::new(world));
    let mut tasks = Vec::new();
    for i in 0..a.count {
        let id = a.first_id + i;
        let (ep, a, world) = (ep.clone(), a.clone(), world.clone());
        tasks.push(tokio::spawn(async move { one(ep, id, a, world).await }));
    }
    Ok(Sims { tasks })
}

/// One dataserver. After any failure but "no such lease" it dials again: through a Service (the
/// VIP) a new connection reaches the current master, while the established one stays with the
/// old master, which may still be up and now refuses (a slave, or fenced).
async fn one(ep: tonic::transport::Endpoint, id: u32, a: SimArgs, world: Arc<Mutex<World>>) {
    let mut c = DataserverClient::new(ep.connect_lazy());
    let addr = format!("10.0.0.{}:{}", id % 250 + 1, 3200 + id);
    let mut lease = None;
    let mut finished: Vec<proto::TaskDone> = Vec::new();
    loop {
        match lease {
            None => {
                let req = proto::DataserverApplyRequest {
                    id,
                    addr: addr.clone(),
                    capacity: a.capacity,
                    used: 0,
                    blocks: world
                        .lock()
                        .expect("world")
                        .held
                        .get(&id)
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default(),
                };
                match c.apply(req).await {
                    Ok(r) => lease = Some(r.into_inner().lease_id),
                    Err(_) => {
                        c = DataserverClient::new(ep.connect_lazy());
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
            }
            Some(lease_id) => {
                tokio::time::sleep(a.renew_every).await;
                let req = proto::DataserverRenewRequest {
                    id,
                    lease_id,
                    used: 0,
                    blocks: vec![],
                    finished: std::mem::take(&mut finished),
                };
                match c.renew(req.clone()).await {
                    Ok(r) => {
                        let mut w = world.lock().expect("world");
                        for t in r.into_inner().tasks {
                            finished.push(w.execute(id, &t));
                        }
                    }
                    Err(s) if s.code() == Code::NotFound => lease = None,
                    Err(_) => {
                        finished = req.finished;
                        c = DataserverClient::new(ep.connect_lazy());
                    }
                }
            }
        }
    }
}

pub async fn run_until_interrupted(addr: &str, a: SimArgs) -> Result<()> {
    let sims = spawn(addr, &a)?;
    eprintln!(
        "tfsctl: {} simulated dataservers ({}..={}) leasing from {addr}; Ctrl-C to stop",
        a.count,
        a.first_id,
        a.first_id + a.count - 1
    );
    tokio::signal::ctrl_c().await?;
    drop(sims);
    Ok(())
}
