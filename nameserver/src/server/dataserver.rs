//! Dataserver leases (the seed's dataserver keepalive): Apply, Renew, GiveUp, and the master's
//! check that declares a dataserver dead when its lease lapses, logging replicate tasks for the
//! blocks that lost a replica.

use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::limits::*;
use super::{Timer, to_status};
use crate::engine::{Engine, Txn, WriteError};
use crate::mutation::Mutation;
use crate::proto::{self, dataserver_server::Dataserver};

pub struct DataserverApi {
    pub engine: Engine,
}

fn lease_reply(engine: &Engine, lease_id: u64, tasks: Vec<proto::TaskCreate>) -> proto::DataserverLeaseReply {
    proto::DataserverLeaseReply {
        epoch: engine.epoch(),
        lease_id,
        lease_expires_in_ms: engine.shared.cfg.dataserver_lease.as_millis() as u64,
        tasks,
    }
}

fn grant(engine: &Engine, id: u32, lease_id: u64) {
    engine.shared.ds_leases.lock().insert(id, (lease_id, Instant::now() + engine.shared.cfg.dataserver_lease));
}

/// Records that a dataserver holds the reported blocks (only blocks we know, only while a replica
/// slot is free).
fn absorb_report(txn: &mut Txn<'_>, id: u32, blocks: &[u64]) -> Result<(), WriteError> {
    for &b in blocks {
        let needs = match txn.state().blocks.get(&b) {
            Some(meta) => !meta.replicas().contains(&id) && meta.replicas().len() < crate::state::MAX_REPLICAS,
            None => false,
        };
        if needs {
            txn.log(Mutation::ReplicaAdd(proto::ReplicaAdd { block_id: b, dataserver: id }))?;
        }
    }
    Ok(())
}

/// Logs a replicate task for every under-replicated block that has a live source and no task yet.
pub fn plan_replication(txn: &mut Txn<'_>) -> Result<usize, WriteError> {
    let busy: std::collections::HashSet<u64> = txn.state().tasks.values().map(|t| t.block_id).collect();
    let todo: Vec<(u64, Vec<u32>)> = txn
        .state()
        .blocks
        .iter()
        .filter(|(id, b)| b.under_replicated() && !busy.contains(id))
        .map(|(id, b)| (*id, b.replicas().to_vec()))
        .collect();
    let mut planned = 0;
    for (block_id, reps) in todo {
        let Some(&source) = reps.first() else {
            warn!(block_id, "block has no live replica left; it cannot be re-replicated");
            continue;
        };
        let Some(target) = txn.state().place(1, &reps).map(|v| v[0]) else {
            break;
        };
        let task_id = txn.state().next_task_id;
        txn.log(Mutation::TaskCreate(proto::TaskCreate {
            task_id,
            kind: proto::TaskKind::Replicate as i32,
            block_id,
            source,
            target,
        }))?;
        planned += 1;
    }
    Ok(planned)
}

fn leave(txn: &mut Txn<'_>, id: u32, expired: bool) -> Result<usize, WriteError> {
    txn.log(Mutation::DataserverLeave(proto::DataserverLeave { id, expired }))?;
    plan_replication(txn)
}

#[tonic::async_trait]
impl Dataserver for DataserverApi {
    async fn apply(
        &self,
        req: Request<proto::DataserverApplyRequest>,
    ) -> Result<Response<proto::DataserverLeaseReply>, Status> {
        let t = Timer::new(&self.engine, "ds_apply");
        let r = req.into_inner();
        if r.id == 0
            || r.addr.is_empty()
            || r.addr.len() > MAX_ADDR_LEN
            || r.blocks.len() > MAX_BLOCK_REPORT
            || r.capacity == 0
        {
            return t.done(Err(Status::invalid_argument(format!(
                "apply needs a dataserver id > 0, an address of 1..={MAX_ADDR_LEN} bytes, a capacity > 0 and at most {MAX_BLOCK_REPORT} reported blocks"
            ))));
        }
        let id = r.id;
        let res = self
            .engine
            .write_unmetered(move |txn| {
                let lease_id = txn.state().next_lease_id;
                txn.log(Mutation::DataserverJoin(proto::DataserverJoin {
                    id,
                    addr: r.addr,
                    capacity: r.capacity,
                    used: r.used,
                    lease_id,
                }))?;
                absorb_report(txn, id, &r.blocks)?;
                plan_replication(txn)?;
                Ok(lease_id)
            })
            .await
            .map_err(to_status);
        t.done(res.map(|(lease_id, _)| {
            grant(&self.engine, id, lease_id);
            info!(dataserver = id, lease_id, "dataserver lease granted");
            Response::new(lease_reply(&self.engine, lease_id, vec![]))
        }))
    }

    async fn renew(
        &self,
        req: Request<proto::DataserverRenewRequest>,
    ) -> Result<Response<proto::DataserverLeaseReply>, Status> {
        let t = Timer::new(&self.engine, "ds_renew");
        let r = req.into_inner();
        if r.blocks.len() > MAX_BLOCK_REPORT {
            return t.done(Err(Status::invalid_argument(format!("at most {MAX_BLOCK_REPORT} reported blocks"))));
        }
        let (id, lease_id) = (r.id, r.lease_id);
        let res = self
            .engine
            .write_unmetered(move |txn| {
                match txn.state().dataservers.get(&id) {
                    Some(d) if d.alive && d.lease_id == lease_id => {}
                    _ => {
                        return Err(WriteError::NotFound(format!(
                            "dataserver {id} holds no lease {lease_id}: apply again"
                        )));
                    }
                }
                if let Some(d) = txn.soft().dataservers.get_mut(&id) {
                    d.used = r.used;
                    d.reserved = 0;
                }
                for f in &r.finished {
                    if txn.state().tasks.contains_key(&f.task_id) {
                        txn.log(Mutation::TaskDone(proto::TaskDone { task_id: f.task_id, success: f.success }))?;
                    }
                }
                absorb_report(txn, id, &r.blocks)?;
                if r.finished.iter().any(|f| !f.success) {
                    plan_replication(txn)?;
                }
                Ok(txn.state().tasks.values().filter(|t| t.source == id).map(|t| t.to_proto()).collect::<Vec<_>>())
            })
            .await
            .map_err(to_status);
        t.done(res.map(|(tasks, _)| {
            grant(&self.engine, id, lease_id);
            Response::new(lease_reply(&self.engine, lease_id, tasks))
        }))
    }

    async fn give_up(
        &self,
        req: Request<proto::DataserverGiveUpRequest>,
    ) -> Result<Response<proto::DataserverGiveUpReply>, Status> {
        let t = Timer::new(&self.engine, "ds_give_up");
        let r = req.into_inner();
        let res = self
            .engine
            .write_unmetered(move |txn| match txn.state().dataservers.get(&r.id) {
                Some(d) if d.alive && d.lease_id == r.lease_id => leave(txn, r.id, false),
                _ => Err(WriteError::NotFound(format!("dataserver {} holds no lease {}", r.id, r.lease_id))),
            })
            .await
            .map_err(to_status);
        if res.is_ok() {
            self.engine.shared.ds_leases.lock().remove(&r.id);
        }
        t.done(res.map(|_| Response::new(proto::DataserverGiveUpReply { epoch: self.engine.epoch() })))
    }
}

/// The master's lease check (the seed's `ns_check_lease_expired_`): a dataserver alive in the state
/// but unrenewed past its lease is dead. A node that just became master gives every live
/// dataserver one full lease of grace, since it never saw their renews.
pub async fn check_leases(engine: Engine) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if engine.shared.role.lock().check_writable(Instant::now()).is_err() {
            engine.shared.ds_leases.lock().clear();
            continue;
        }
        let now = Instant::now();
        let alive: Vec<(u32, u64)> =
            engine.shared.state.read().live_dataservers().map(|d| (d.id, d.lease_id)).collect();
        let mut expired = Vec::new();
        {
            let mut leases = engine.shared.ds_leases.lock();
            for (id, lease_id) in alive {
                let e = leases.entry(id).or_insert((lease_id, now + engine.shared.cfg.dataserver_lease));
                if e.1 <= now {
                    expired.push((id, e.0));
                }
            }
        }
        for (id, lease_id) in expired {
            let r = engine
                .write_unmetered(move |txn| match txn.state().dataservers.get(&id) {
                    Some(d) if d.alive && d.lease_id == lease_id => leave(txn, id, true),
                    _ => Ok(0),
                })
                .await;
            match r {
                Ok((planned, _)) => {
                    engine.shared.ds_leases.lock().remove(&id);
                    warn!(dataserver = id, replicate_tasks = planned, "dataserver lease expired: declared dead");
                }
                Err(e) => {
                    warn!(dataserver = id, error = %e, "cannot log the expiry of a dataserver lease")
                }
            }
        }
    }
}
