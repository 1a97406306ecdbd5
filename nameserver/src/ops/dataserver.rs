//! The dataservers' side of the rules, whatever the transport (server/dataserver.rs maps the
//! protos): join (Apply), renew, leave (GiveUp), and the master's lease check that declares a
//! dataserver dead when its lease lapses (the seed's dataserver keepalive). Each of them, and the
//! check's tick, runs a planning round (crate::planning) unless this master is in safe mode, and
//! logs the tasks it chose; a renew hands a dataserver its tasks and takes its results.
//!
//! Each validates before it logs: a refused one logs nothing.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::engine::{Engine, Txn, WriteError};
use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::format;
use crate::planning::{self, Params};
use crate::proto;

/// Grants dataserver `id` a lease (Apply): logs its join and the blocks it reports, plans if
/// `plan` (see [`planning_allowed`]); returns the lease id.
pub fn join(txn: &mut Txn<'_>, r: proto::DataserverApplyRequest, plan: Option<&Engine>) -> Result<u64, WriteError> {
    let id = r.id;
    let lease_id = txn.state().next_lease_id;
    txn.log(Mutation::DataserverJoin(format::DataserverJoin {
        id,
        addr: r.addr,
        capacity: r.capacity,
        used: r.used,
        lease_id,
    }))?;
    absorb_report(txn, id, &r.blocks)?;
    if let Some(engine) = plan {
        plan_tasks(txn, engine)?;
    }
    Ok(lease_id)
}

/// Renews dataserver `r.id`'s lease `r.lease_id`: takes its usage, its tasks' results and the
/// blocks it reports, plans if `plan`; returns the tasks it is to run.
pub fn renew(
    txn: &mut Txn<'_>,
    r: &proto::DataserverRenewRequest,
    plan: Option<&Engine>,
) -> Result<Vec<proto::TaskCreate>, WriteError> {
    let (id, lease_id) = (r.id, r.lease_id);
    match txn.state().dataservers.get(&id) {
        Some(d) if d.alive && d.lease_id == lease_id => {}
        _ => {
            return Err(WriteError::NotFound(format!("dataserver {id} holds no lease {lease_id}: apply again")));
        }
    }
    if let Some(d) = txn.soft().dataservers.get_mut(&id) {
        d.used = r.used;
        d.reserved = 0;
    }
    absorb_results(txn, id, &r.finished)?;
    absorb_report(txn, id, &r.blocks)?;
    // Finished tasks free room for the blocks still waiting for a task.
    if let Some(engine) = plan {
        plan_tasks(txn, engine)?;
    }
    let tasks = txn.state().tasks().of_dataserver(id).filter(|t| t.source == id).map(super::convert::task);
    Ok(tasks.collect())
}

/// Dataserver `id` gives its lease `lease_id` up (GiveUp): it leaves; returns the tasks planned.
pub fn give_up(txn: &mut Txn<'_>, id: u32, lease_id: u64, plan: Option<&Engine>) -> Result<usize, WriteError> {
    match txn.state().dataservers.get(&id) {
        Some(d) if d.alive && d.lease_id == lease_id => leave(txn, id, false, plan),
        _ => Err(WriteError::NotFound(format!("dataserver {id} holds no lease {lease_id}"))),
    }
}

/// Notes the lease granted (soft state: the lease check's deadline).
pub fn grant(engine: &Engine, id: u32, lease_id: u64) {
    engine.ds_leases().lock().insert(id, (lease_id, Instant::now() + engine.cfg().dataserver_lease));
}

/// Forgets a lease given up.
pub fn release(engine: &Engine, id: u32) {
    engine.ds_leases().lock().remove(&id);
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
            txn.log(Mutation::ReplicaAdd(format::ReplicaAdd { block_id: b, dataserver: id }))?;
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
pub fn plan_tasks(txn: &mut Txn<'_>, engine: &Engine) -> Result<usize, WriteError> {
    let params = Params::of(engine.cfg());
    let mut cursor = engine.planner().lock().cursor;
    let todo = planning::plan(txn.state(), &params, &mut cursor);
    engine.planner().lock().cursor = cursor;
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

/// The engine to plan with, when a round may run now: what [`join`], [`renew`] and [`give_up`]
/// take as `plan`.
pub fn plan_if_allowed(engine: &Engine) -> Option<Engine> {
    planning_allowed(engine).then(|| engine.clone())
}

/// Dataserver `id` reported to this master (Apply or Renew answered at `epoch`).
pub fn heard(engine: &Engine, epoch: Epoch, id: u32) {
    engine.planner().lock().safe_mode.heard(epoch, id);
}

fn leave(txn: &mut Txn<'_>, id: u32, expired: bool, plan: Option<&Engine>) -> Result<usize, WriteError> {
    txn.log(Mutation::DataserverLeave(format::DataserverLeave { id, expired }))?;
    match plan {
        Some(engine) => plan_tasks(txn, engine),
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
        let m = Mutation::TaskDone(super::convert::task_done(f));
        match txn.state().check(&m) {
            Ok(()) => {
                txn.log(m)?;
            }
            Err(e) => warn!(dataserver = id, task = f.task_id, error = %e, "task result refused"),
        }
    }
    Ok(())
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
            let plan = plan_if_allowed(&engine);
            let r = engine
                .write_unmetered(move |txn| {
                    let t = Instant::now();
                    let planned = match txn.state().dataservers.get(&id) {
                        Some(d) if d.alive && d.lease_id == lease_id => leave(txn, id, true, plan.as_ref())?,
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
            let e = engine.clone();
            if let Err(e) = engine.write_unmetered(move |txn| plan_tasks(txn, &e)).await {
                warn!(error = %e, "cannot plan tasks");
            }
        }
    }
}

/// Whether a planning round would choose anything now (on the applied state).
fn has_work(engine: &Engine) -> bool {
    let s = engine.state().read();
    let mut cursor = engine.planner().lock().cursor;
    !planning::plan(&s, &Params::of(engine.cfg()), &mut cursor).is_empty()
}
