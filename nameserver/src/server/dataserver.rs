//! Dataserver leases (the seed's dataserver keepalive): Apply, Renew, GiveUp, and the master's
//! check that declares a dataserver dead when its lease lapses. Each of them, and the check's
//! tick, runs a planning round (crate::planning) unless this master is in safe mode, and logs the
//! tasks it chose; a renew hands a dataserver its tasks and takes its results.

use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::limits::*;
use super::{Timer, to_status};
use crate::engine::{Engine, Txn, WriteError};
use crate::mutation::Mutation;
use crate::planning::{self, Params};
use crate::proto::{self, dataserver_server::Dataserver};

pub struct DataserverApi {
    pub engine: Engine,
}

fn lease_reply(engine: &Engine, lease_id: u64, tasks: Vec<proto::TaskCreate>) -> proto::DataserverLeaseReply {
    proto::DataserverLeaseReply {
        epoch: engine.epoch(),
        lease_id,
        lease_expires_in_ms: engine.cfg().dataserver_lease.as_millis() as u64,
        tasks,
    }
}

fn grant(engine: &Engine, id: u32, lease_id: u64) {
    engine.ds_leases().lock().insert(id, (lease_id, Instant::now() + engine.cfg().dataserver_lease));
}

/// Records that a dataserver holds the reported blocks (only blocks we know, only while a replica
/// slot is free).
fn absorb_report(txn: &mut Txn<'_>, id: u32, blocks: &[u64]) -> Result<(), WriteError> {
    for &b in blocks {
        let needs = match txn.state().blocks().get(&b) {
            Some(meta) => !meta.replicas().contains(&id) && meta.replicas().len() < crate::state::MAX_REPLICAS,
            None => false,
        };
        if needs {
            txn.log(Mutation::ReplicaAdd(proto::ReplicaAdd { block_id: b, dataserver: id }))?;
        }
    }
    Ok(())
}

/// Plans a round (crate::planning: replication, surplus deletes, compaction, balance) and logs
/// each task it chose; returns how many.
///
/// Invariants: every task is logged (a new master holds exactly the tasks planned), at the
/// planning master's epoch (a result naming another epoch is refused: state `check`); the caller
/// checked [`planning_allowed`] (no round in safe mode). Cost: bounded by the round's
/// (`planning::MAX_PLANNED_PER_TXN` tasks, a budget of blocks looked at per stage).
pub fn plan_tasks(txn: &mut Txn<'_>, sh: &Engine) -> Result<usize, WriteError> {
    let params = Params::of(sh.cfg());
    let mut cursor = sh.planner().lock().cursor;
    let todo = planning::plan(txn.state(), &params, &mut cursor);
    sh.planner().lock().cursor = cursor;
    for t in &todo {
        let (task_id, epoch) = (txn.state().next_task_id, txn.epoch());
        txn.log(t.to_mutation(task_id, epoch))?;
    }
    Ok(todo.len())
}

/// This node's safe mode now: `None` when it is a writable master out of safe mode (planning may
/// run), `Some(left)` in safe mode, `Some(ZERO)` when it is no writable master at all.
pub fn safe_mode(engine: &Engine, now: Instant) -> Option<Duration> {
    let epoch = {
        let role = engine.role().lock();
        if role.check_writable(now).is_err() {
            return Some(Duration::ZERO);
        }
        role.epoch
    };
    let s = engine.state().read();
    let mut p = engine.planner().lock();
    p.safe_mode.master_at(epoch, now);
    p.safe_mode.remaining(&s, now, engine.cfg().safe_mode_time)
}

/// Whether a planning round may run now (see [`safe_mode`]).
pub fn planning_allowed(engine: &Engine) -> bool {
    safe_mode(engine, Instant::now()).is_none()
}

/// Dataserver `id` reported to this master (Apply or Renew answered at `epoch`).
fn heard(engine: &Engine, epoch: u64, id: u32) {
    engine.planner().lock().safe_mode.heard(epoch, id);
}

fn leave(txn: &mut Txn<'_>, id: u32, expired: bool, plan: Option<&Engine>) -> Result<usize, WriteError> {
    txn.log(Mutation::DataserverLeave(proto::DataserverLeave { id, expired }))?;
    match plan {
        Some(sh) => plan_tasks(txn, sh),
        None => Ok(0),
    }
}

/// Logs the results a dataserver reports: only for a task it was given (it is the task's
/// source) and of the task's epoch; any other is refused (logged here, nothing applied).
fn absorb_results(txn: &mut Txn<'_>, id: u32, finished: &[proto::TaskDone]) -> Result<(), WriteError> {
    for f in finished {
        let Some(t) = txn.state().tasks().get(&f.task_id) else { continue };
        if t.source != id {
            warn!(
                dataserver = id,
                task = f.task_id,
                source = t.source,
                "a result for another dataserver's task: refused"
            );
            continue;
        }
        let m = Mutation::TaskDone(*f);
        match txn.state().check(&m) {
            Ok(()) => {
                txn.log(m)?;
            }
            Err(e) => warn!(dataserver = id, task = f.task_id, error = %e, "task result refused"),
        }
    }
    Ok(())
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
        let sh = planning_allowed(&self.engine).then(|| self.engine.clone());
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
                if let Some(sh) = &sh {
                    plan_tasks(txn, sh)?;
                }
                Ok(lease_id)
            })
            .await
            .map_err(to_status);
        t.done(res.map(|(lease_id, _)| {
            grant(&self.engine, id, lease_id);
            heard(&self.engine, self.engine.epoch(), id);
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
        let sh = planning_allowed(&self.engine).then(|| self.engine.clone());
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
                absorb_results(txn, id, &r.finished)?;
                absorb_report(txn, id, &r.blocks)?;
                // Finished tasks free room for the blocks still waiting for a task.
                if let Some(sh) = &sh {
                    plan_tasks(txn, sh)?;
                }
                let tasks = txn.state().tasks().of_dataserver(id).filter(|t| t.source == id).map(|t| t.to_proto());
                Ok(tasks.collect::<Vec<_>>())
            })
            .await
            .map_err(to_status);
        t.done(res.map(|(tasks, _)| {
            grant(&self.engine, id, lease_id);
            heard(&self.engine, self.engine.epoch(), id);
            Response::new(lease_reply(&self.engine, lease_id, tasks))
        }))
    }

    async fn give_up(
        &self,
        req: Request<proto::DataserverGiveUpRequest>,
    ) -> Result<Response<proto::DataserverGiveUpReply>, Status> {
        let t = Timer::new(&self.engine, "ds_give_up");
        let r = req.into_inner();
        let sh = planning_allowed(&self.engine).then(|| self.engine.clone());
        let res = self
            .engine
            .write_unmetered(move |txn| match txn.state().dataservers.get(&r.id) {
                Some(d) if d.alive && d.lease_id == r.lease_id => leave(txn, r.id, false, sh.as_ref()),
                _ => Err(WriteError::NotFound(format!("dataserver {} holds no lease {}", r.id, r.lease_id))),
            })
            .await
            .map_err(to_status);
        if res.is_ok() {
            self.engine.ds_leases().lock().remove(&r.id);
        }
        t.done(res.map(|_| Response::new(proto::DataserverGiveUpReply { epoch: self.engine.epoch() })))
    }
}

/// The master's lease check (the seed's `ns_check_lease_expired_`): a dataserver alive in the state
/// but unrenewed past its lease is dead. A node that just became master gives every live
/// dataserver one full lease of grace, since it never saw their renews. Each tick also plans
/// replication left over by earlier bounded plans (a new master has no renew to wait for).
pub async fn check_leases(engine: Engine) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if engine.role().lock().check_writable(Instant::now()).is_err() {
            engine.ds_leases().lock().clear();
            continue;
        }
        let now = Instant::now();
        let alive: Vec<(u32, u64)> = engine.state().read().live_dataservers().map(|d| (d.id, d.lease_id)).collect();
        let mut expired = Vec::new();
        {
            let mut leases = engine.ds_leases().lock();
            for (id, lease_id) in alive {
                let e = leases.entry(id).or_insert((lease_id, now + engine.cfg().dataserver_lease));
                if e.1 <= now {
                    expired.push((id, e.0));
                }
            }
        }
        for (id, lease_id) in expired {
            let sh = planning_allowed(&engine).then(|| engine.clone());
            let r = engine
                .write_unmetered(move |txn| {
                    let t = Instant::now();
                    let planned = match txn.state().dataservers.get(&id) {
                        Some(d) if d.alive && d.lease_id == lease_id => leave(txn, id, true, sh.as_ref())?,
                        _ => 0,
                    };
                    Ok((planned, t.elapsed()))
                })
                .await;
            match r {
                Ok(((planned, took), _)) => {
                    engine.ds_leases().lock().remove(&id);
                    let txn_ms = took.as_secs_f64() * 1000.0;
                    warn!(dataserver = id, tasks_planned = planned, txn_ms, "dataserver lease expired: declared dead");
                }
                Err(e) => {
                    warn!(dataserver = id, error = %e, "cannot log the expiry of a dataserver lease")
                }
            }
        }
        // Plans what earlier bounded rounds left and what no renew triggers (a new master after
        // its safe mode, compaction, balance). A read first: no write when there is nothing to plan.
        if planning_allowed(&engine) && has_work(&engine) {
            let sh = engine.clone();
            if let Err(e) = engine.write_unmetered(move |txn| plan_tasks(txn, &sh)).await {
                warn!(error = %e, "cannot plan tasks");
            }
        }
    }
}

/// Whether a planning round would choose anything now (on the applied state).
fn has_work(engine: &Engine) -> bool {
    let sh = engine;
    let s = sh.state().read();
    let mut cursor = sh.planner().lock().cursor;
    !planning::plan(&s, &Params::of(sh.cfg()), &mut cursor).is_empty()
}
