//! Dataserver leases (the seed's dataserver keepalive): Apply, Renew, GiveUp, and the master's
//! check that declares a dataserver dead when its lease lapses, logging replicate tasks for the
//! blocks that lost a replica.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::limits::*;
use super::{Timer, to_status};
use crate::engine::{Engine, Txn, WriteError};
use crate::mutation::Mutation;
use crate::proto::{self, dataserver_server::Dataserver};
use crate::state::State;

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

/// Most replicate tasks one transaction logs: planning after a leave of a dataserver holding
/// millions of blocks spreads over many transactions instead of one of millions of records.
pub const MAX_PLANNED_PER_TXN: usize = 1024;

/// Logs replicate tasks for blocks that need a copy and have no task yet, within the bounds: at
/// most `EngineConfig::max_replicate_tasks` tasks a dataserver takes part in (as source or
/// target) and [`MAX_PLANNED_PER_TXN`] a call. What is left is planned by a later call (each
/// dataserver Apply and renew, and the lease check's tick), as tasks finish and free room.
///
/// Invariants: a block never gets a second task (blocks with one are skipped; the state refuses
/// one anyway), and every task is logged, so a new master holds exactly the tasks planned. Cost:
/// O(1) when nothing needs a copy or no dataserver has room, otherwise at most
/// 4 × [`MAX_PLANNED_PER_TXN`] + (tasks in flight) blocks looked at, never a scan of all blocks.
pub fn plan_replication(txn: &mut Txn<'_>, per_ds: usize) -> Result<usize, WriteError> {
    let todo = plan(txn.state(), per_ds, MAX_PLANNED_PER_TXN);
    let planned = todo.len();
    for (block_id, source, target) in todo {
        let task_id = txn.state().next_task_id;
        txn.log(Mutation::TaskCreate(proto::TaskCreate {
            task_id,
            kind: proto::TaskKind::Replicate as i32,
            block_id,
            source,
            target,
        }))?;
    }
    Ok(planned)
}

/// Chooses up to `max` (block, source, target) copies; see [`plan_replication`].
pub fn plan(s: &State, per_ds: usize, max: usize) -> Vec<(u64, u32, u32)> {
    let mut out = Vec::new();
    if s.index().needs_copy_count() == 0 {
        return out;
    }
    // Tasks each live dataserver takes part in: a dataserver at `per_ds` is neither source nor target.
    let mut load: HashMap<u32, usize> = s.live_dataservers().map(|d| (d.id, s.tasks().load(d.id))).collect();
    let mut with_room = load.values().filter(|&&n| n < per_ds).count();
    let budget = 4 * max + s.tasks().len();
    for block_id in s.index().needs_copy().take(budget) {
        // A copy needs two dataservers with room.
        if out.len() >= max || with_room < 2 {
            break;
        }
        if s.tasks().of_block(block_id).is_some() {
            continue;
        }
        let reps = s.blocks()[&block_id].replicas();
        let has_room = |d: &u32| load.get(d).is_some_and(|&n| n < per_ds);
        let Some(&source) = reps.iter().find(|d| has_room(d)) else { continue };
        let Some(target) = s.place_where(1, |d| !reps.contains(&d.id) && has_room(&d.id)).map(|v| v[0]) else {
            continue;
        };
        for d in [source, target] {
            let n = load.get_mut(&d).expect("live");
            *n += 1;
            if *n == per_ds {
                with_room -= 1;
            }
        }
        out.push((block_id, source, target));
    }
    out
}

fn leave(txn: &mut Txn<'_>, id: u32, expired: bool, per_ds: usize) -> Result<usize, WriteError> {
    txn.log(Mutation::DataserverLeave(proto::DataserverLeave { id, expired }))?;
    plan_replication(txn, per_ds)
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
        let per_ds = self.engine.shared.cfg.max_replicate_tasks;
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
                plan_replication(txn, per_ds)?;
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
        let per_ds = self.engine.shared.cfg.max_replicate_tasks;
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
                    if txn.state().tasks().contains_key(&f.task_id) {
                        txn.log(Mutation::TaskDone(proto::TaskDone { task_id: f.task_id, success: f.success }))?;
                    }
                }
                absorb_report(txn, id, &r.blocks)?;
                // Finished tasks free room for the blocks still waiting for a copy.
                plan_replication(txn, per_ds)?;
                let tasks = txn.state().tasks().of_dataserver(id).filter(|t| t.source == id).map(|t| t.to_proto());
                Ok(tasks.collect::<Vec<_>>())
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
        let per_ds = self.engine.shared.cfg.max_replicate_tasks;
        let res = self
            .engine
            .write_unmetered(move |txn| match txn.state().dataservers.get(&r.id) {
                Some(d) if d.alive && d.lease_id == r.lease_id => leave(txn, r.id, false, per_ds),
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
/// dataserver one full lease of grace, since it never saw their renews. Each tick also plans
/// replication left over by earlier bounded plans (a new master has no renew to wait for).
pub async fn check_leases(engine: Engine) {
    let per_ds = engine.shared.cfg.max_replicate_tasks;
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
                .write_unmetered(move |txn| {
                    let t = Instant::now();
                    let planned = match txn.state().dataservers.get(&id) {
                        Some(d) if d.alive && d.lease_id == lease_id => leave(txn, id, true, per_ds)?,
                        _ => 0,
                    };
                    Ok((planned, t.elapsed()))
                })
                .await;
            match r {
                Ok(((planned, took), _)) => {
                    engine.shared.ds_leases.lock().remove(&id);
                    let txn_ms = took.as_secs_f64() * 1000.0;
                    warn!(
                        dataserver = id,
                        replicate_tasks = planned,
                        txn_ms,
                        "dataserver lease expired: declared dead"
                    );
                }
                Err(e) => {
                    warn!(dataserver = id, error = %e, "cannot log the expiry of a dataserver lease")
                }
            }
        }
        if engine.shared.state.read().index().needs_copy_count() > 0
            && let Err(e) = engine.write_unmetered(move |txn| plan_replication(txn, per_ds)).await
        {
            warn!(error = %e, "cannot plan replication");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{apply_all, join_ds};
    use std::collections::HashSet;

    fn create(id: u64, ds: &[u32]) -> Mutation {
        Mutation::BlockCreate(proto::BlockCreate { block_id: id, dataservers: ds.to_vec() })
    }

    /// Logs what `plan` chooses, as `plan_replication` does.
    fn log_plan(s: &mut State, per_ds: usize, max: usize) -> Vec<(u64, u32, u32)> {
        let todo = plan(s, per_ds, max);
        let tasks: Vec<Mutation> = todo
            .iter()
            .enumerate()
            .map(|(i, &(block_id, source, target))| {
                Mutation::TaskCreate(proto::TaskCreate {
                    task_id: s.next_task_id + i as u64,
                    kind: proto::TaskKind::Replicate as i32,
                    block_id,
                    source,
                    target,
                })
            })
            .collect();
        apply_all(s, 1, &tasks);
        todo
    }

    /// After a leave, planning rounds (each bounded, as tasks finish in between) never give a
    /// block two tasks, never load a dataserver beyond the bound, and end with every block that
    /// lost a replica copied.
    #[test]
    fn planning_is_bounded_never_doubles_a_task_and_eventually_copies_everything() {
        let mut s = State::new();
        apply_all(&mut s, 1, &(1..=6).map(join_ds).collect::<Vec<_>>());
        let creates: Vec<Mutation> =
            (1..=3000u64).map(|id| create(id, &[(id % 6) as u32 + 1, ((id + 1) % 6) as u32 + 1])).collect();
        apply_all(&mut s, 1, &creates);
        apply_all(&mut s, 1, &[Mutation::DataserverLeave(proto::DataserverLeave { id: 3, expired: true })]);
        let lost: HashSet<u64> = s.index().needs_copy().collect();
        assert_eq!(lost.len(), 1000);
        let (per_ds, max) = (4, 7);
        let mut copied = HashSet::new();
        for round in 0.. {
            assert!(round < 2000, "planning does not finish");
            let busy: HashSet<u64> = s.tasks().values().map(|t| t.block_id).collect();
            let planned = log_plan(&mut s, per_ds, max);
            assert!(planned.len() <= max);
            for (b, _, _) in &planned {
                assert!(!busy.contains(b), "block {b} got a second task");
                assert!(copied.insert(*b), "block {b} planned twice");
            }
            for d in s.live_dataservers() {
                assert!(s.tasks().load(d.id) <= per_ds, "dataserver {} over the bound", d.id);
            }
            // Finish one task in two, so rounds see tasks still in flight.
            let done: Vec<Mutation> = s
                .tasks()
                .values()
                .step_by(2)
                .map(|t| Mutation::TaskDone(proto::TaskDone { task_id: t.id, success: true }))
                .collect();
            apply_all(&mut s, 1, &done);
            if s.index().needs_copy_count() == 0 && s.tasks().is_empty() {
                break;
            }
        }
        assert_eq!(copied, lost);
        assert!(s.blocks().iter().all(|(_, b)| !b.under_replicated() && !b.replicas().contains(&3)));
    }

    /// A failed copy leaves the block needing one: it is planned again, once its task is gone.
    #[test]
    fn a_failed_copy_is_planned_again() {
        let mut s = State::new();
        apply_all(&mut s, 1, &[join_ds(1), join_ds(2), join_ds(3), create(1, &[1, 2])]);
        apply_all(&mut s, 1, &[Mutation::DataserverLeave(proto::DataserverLeave { id: 2, expired: true })]);
        let first = log_plan(&mut s, 8, 10);
        assert_eq!(first, vec![(1, 1, 3)]);
        assert!(log_plan(&mut s, 8, 10).is_empty(), "a block with a task gets no second one");
        let id = s.tasks().values().next().unwrap().id;
        apply_all(&mut s, 1, &[Mutation::TaskDone(proto::TaskDone { task_id: id, success: false })]);
        assert_eq!(log_plan(&mut s, 8, 10), vec![(1, 1, 3)]);
    }
}
