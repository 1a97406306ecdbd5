//! Simulated dataservers: they take a lease, renew it, and execute the tasks the master hands them
//! (a replicate task is reported done on the next renew).

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
    let mut tasks = Vec::new();
    for i in 0..a.count {
        let id = a.first_id + i;
        let (ep, a) = (ep.clone(), a.clone());
        tasks.push(tokio::spawn(async move { one(ep, id, a).await }));
    }
    Ok(Sims { tasks })
}

/// One dataserver. After any failure but "no such lease" it dials again: through a Service (the
/// VIP) a new connection reaches the current master, while the established one stays with the
/// old master, which may still be up and now refuses (a slave, or fenced).
async fn one(ep: tonic::transport::Endpoint, id: u32, a: SimArgs) {
    let mut c = DataserverClient::new(ep.connect_lazy());
    let addr = format!("10.0.0.{}:{}", id % 250 + 1, 3200 + id);
    let mut lease = None;
    let mut finished: Vec<proto::TaskResult> = Vec::new();
    loop {
        match lease {
            None => {
                let req = proto::DataserverApplyRequest {
                    id,
                    addr: addr.clone(),
                    capacity: a.capacity,
                    used: 0,
                    blocks: vec![],
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
                        for t in r.into_inner().tasks {
                            finished.push(proto::TaskResult { task_id: t.task_id, success: true });
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
