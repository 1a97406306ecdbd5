//! Planning over random states and histories (proptest), and the replication cases moved here
//! from server/dataserver.rs.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::*;
use crate::state::Index;
use crate::state::tests::{apply_all, join_ds};

fn create(id: u64, ds: &[u32]) -> Mutation {
    Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: ds.to_vec(), request: None })
}

fn params(per_ds: usize, max: usize) -> Params {
    Params {
        per_ds,
        max,
        compact_ratio: DEFAULT_COMPACT_RATIO,
        max_compact_per_ds: 2,
        balance_threshold: 0.05,
        max_moves: 4,
        block_bytes: 1,
    }
}

fn done(task_id: u64, success: bool, epoch: u64) -> Mutation {
    Mutation::TaskDone(format::TaskDone { task_id, success, epoch, size: None, file_count: None })
}

/// Plans a round and logs it at `epoch` as the server does; returns what was planned.
fn log_round(
    s: &mut State,
    p: &Params,
    cursor: &mut Cursor,
    epoch: u64,
    log: &mut Vec<(u64, Mutation)>,
) -> Vec<Planned> {
    let todo = plan(s, p, cursor);
    for t in &todo {
        let m = t.to_mutation(s.next_task_id, crate::epoch::Epoch(epoch));
        apply_all(s, epoch, std::slice::from_ref(&m));
        log.push((epoch, m));
    }
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
    apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: 3, expired: true })]);
    let lost: HashSet<u64> = s.index().needs_copy().collect();
    assert_eq!(lost.len(), 1000);
    // No balance: this test is about repair alone.
    let p = Params { max_moves: 0, ..params(4, 7) };
    let (mut cursor, mut log) = (Cursor::default(), Vec::new());
    let mut copied = HashSet::new();
    for round in 0.. {
        assert!(round < 2000, "planning does not finish");
        let busy: HashSet<u64> = s.tasks().values().map(|t| t.block_id).collect();
        let planned = log_round(&mut s, &p, &mut cursor, 1, &mut log);
        assert!(planned.len() <= p.max);
        for t in &planned {
            assert_eq!(t.kind, TaskKind::Replicate);
            assert!(!busy.contains(&t.block_id), "block {} got a second task", t.block_id);
            assert!(copied.insert(t.block_id), "block {} planned twice", t.block_id);
        }
        for d in s.live_dataservers() {
            assert!(s.tasks().load(d.id) <= p.per_ds, "dataserver {} over the bound", d.id);
        }
        // Finish one task in two, so rounds see tasks still in flight.
        let finished: Vec<Mutation> = s.tasks().values().step_by(2).map(|t| done(t.id, true, 1)).collect();
        apply_all(&mut s, 1, &finished);
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
    apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: 2, expired: true })]);
    let p = Params { max_moves: 0, ..params(8, 10) };
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    let first = log_round(&mut s, &p, &mut c, 1, &mut log);
    assert_eq!(first.iter().map(|t| (t.block_id, t.source, t.target)).collect::<Vec<_>>(), vec![(1, 1, 3)]);
    assert!(log_round(&mut s, &p, &mut c, 1, &mut log).is_empty(), "a block with a task gets no second one");
    let id = s.tasks().values().next().unwrap().id;
    apply_all(&mut s, 1, &[done(id, false, 1)]);
    assert_eq!(log_round(&mut s, &p, &mut c, 1, &mut log).len(), 1);
}

/// A surplus replica is dropped from the fullest holder; the block ends with what it wants.
#[test]
fn a_surplus_replica_is_deleted_from_the_fullest_holder() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join_ds(1), join_ds(2), join_ds(3), create(1, &[1, 2]), create(2, &[2])]);
    apply_all(&mut s, 1, &[Mutation::ReplicaAdd(format::ReplicaAdd { block_id: 1, dataserver: 3 })]);
    let p = Params { max_moves: 0, ..params(8, 10) };
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    let planned = log_round(&mut s, &p, &mut c, 1, &mut log);
    assert_eq!(planned, vec![Planned { kind: TaskKind::Delete, block_id: 1, source: 2, target: 2, version: 0 }]);
    let id = s.tasks().values().next().unwrap().id;
    apply_all(&mut s, 1, &[done(id, true, 1)]);
    assert_eq!(s.blocks()[&1].replicas(), &[1, 3]);
    assert!(log_round(&mut s, &p, &mut c, 1, &mut log).is_empty());
}

/// A leave that ends a block's surplus cancels its DELETE: the block keeps what it wants.
#[test]
fn a_leave_that_ends_a_surplus_cancels_its_delete() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join_ds(1), join_ds(2), join_ds(3), create(1, &[1, 2])]);
    apply_all(&mut s, 1, &[Mutation::ReplicaAdd(format::ReplicaAdd { block_id: 1, dataserver: 3 })]);
    let p = Params { max_moves: 0, ..params(8, 10) };
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    let planned = log_round(&mut s, &p, &mut c, 1, &mut log);
    assert_eq!(planned[0].kind, TaskKind::Delete);
    let other = [1, 2, 3].into_iter().find(|d| *d != planned[0].source).unwrap();
    apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: other, expired: true })]);
    assert!(s.tasks().is_empty(), "the delete would have left the block below what it wants");
    assert_eq!(s.blocks()[&1].replicas().len(), 2);
}

/// Compaction: planned past the ratio, at most N a dataserver; the result applies to the version
/// compacted only.
#[test]
fn compaction_is_planned_past_the_ratio_bounded_and_its_result_committed() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join_ds(1), join_ds(2)]);
    apply_all(&mut s, 1, &(1..=6).map(|id| create(id, &[1])).collect::<Vec<_>>());
    let commit = |id: u64, version: u32, del_size: u64| {
        Mutation::BlockCommit(format::BlockCommit {
            request: None,
            block_id: id,
            version,
            size: 1000,
            file_count: 10,
            del_size,
            del_file_count: 0,
        })
    };
    // 1..=4 at 20 % deleted, 5 at 10 %, 6 at none.
    apply_all(
        &mut s,
        1,
        &[commit(1, 1, 200), commit(2, 1, 200), commit(3, 1, 200), commit(4, 1, 200), commit(5, 1, 100)],
    );
    let p = Params { max_moves: 0, ..params(8, 10) };
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    let planned = log_round(&mut s, &p, &mut c, 1, &mut log);
    assert_eq!(planned.iter().map(|t| t.block_id).collect::<Vec<_>>(), vec![1, 2], "2 a dataserver at most");
    assert!(planned.iter().all(|t| t.kind == TaskKind::Compact && t.source == 1 && t.version == 1));
    let ids: Vec<u64> = s.tasks().values().map(|t| t.id).collect();
    // Block 2 is committed again before its compaction reports: the result is stale.
    apply_all(&mut s, 1, &[commit(2, 2, 300)]);
    apply_all(&mut s, 1, &[done(ids[0], true, 1), done(ids[1], true, 1)]);
    let b1 = s.blocks()[&1];
    assert_eq!((b1.size, b1.del_size, b1.del_file_count, b1.version), (800, 0, 0, 1));
    assert_eq!(s.blocks()[&2].del_size, 300, "a result for an older version is not applied");
    let next: Vec<u64> = log_round(&mut s, &p, &mut c, 1, &mut log).iter().map(|t| t.block_id).collect();
    assert!(next.contains(&3) || next.contains(&4) || next.contains(&2), "{next:?}");
    assert!(!next.contains(&5) && !next.contains(&6) && !next.contains(&1));
}

/// A result naming another epoch than its task's is refused.
#[test]
fn a_task_done_from_an_old_epoch_is_refused() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join_ds(1), join_ds(2), join_ds(3), create(1, &[1, 2])]);
    apply_all(&mut s, 1, &[Mutation::ReplicaAdd(format::ReplicaAdd { block_id: 1, dataserver: 3 })]);
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    log_round(&mut s, &params(8, 10), &mut c, 2, &mut log);
    let t = s.tasks().values().next().unwrap().clone();
    assert_eq!(t.epoch, crate::epoch::Epoch(2));
    assert_eq!(
        s.check(&done(t.id, true, 1)),
        Err(crate::state::ApplyError::StaleTask {
            task: t.id,
            task_epoch: crate::epoch::Epoch(2),
            got: crate::epoch::Epoch(1)
        })
    );
    assert_eq!(s.check(&done(t.id, true, 2)), Ok(()));
}

/// Balance: 3 full dataservers, 3 empty ones; rounds with every task done in between converge
/// within the threshold, never leave a block below what it wants, and move nothing back.
#[test]
fn balance_converges_onto_empty_dataservers() {
    let mut s = State::new();
    apply_all(&mut s, 1, &(1..=3).map(join_ds).collect::<Vec<_>>());
    let creates: Vec<Mutation> =
        (1..=300u64).map(|id| create(id, &[(id % 3) as u32 + 1, ((id + 1) % 3) as u32 + 1])).collect();
    apply_all(&mut s, 1, &creates);
    apply_all(&mut s, 1, &(4..=6).map(join_ds).collect::<Vec<_>>());
    let p = params(8, 64);
    let (mut c, mut log) = (Cursor::default(), Vec::new());
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 500, "balance does not converge");
        let planned = log_round(&mut s, &p, &mut c, 1, &mut log);
        let finished: Vec<Mutation> = s.tasks().values().map(|t| done(t.id, true, 1)).collect();
        apply_all(&mut s, 1, &finished);
        assert!(s.blocks().iter().all(|(_, b)| !b.under_replicated()));
        if planned.is_empty() && s.tasks().is_empty() {
            break;
        }
    }
    let counts: Vec<u64> = (1..=6).map(|d| s.index().count_of(d)).collect();
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!((hi - lo) as f64 / 1000.0 <= p.balance_threshold, "{counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), 600);
    assert!(s.blocks().iter().all(|(_, b)| b.replicas().len() == 2));
}

#[derive(Debug, Clone)]
enum Op {
    Plan,
    /// Finish the i-th task (modulo) with this outcome.
    Done(usize, bool),
    /// Report the i-th task done with a wrong epoch.
    StaleDone(usize),
    Leave(u32),
    Join(u32),
    /// A dataserver reports a block it was not listed for.
    Report(u64, u32),
    Commit(u64, u64),
    Promote,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Plan),
        4 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(i, ok)| Op::Done(i, ok)),
        1 => any::<usize>().prop_map(Op::StaleDone),
        1 => (1..=6u32).prop_map(Op::Leave),
        1 => (1..=6u32).prop_map(Op::Join),
        2 => (1..=40u64, 1..=6u32).prop_map(|(b, d)| Op::Report(b, d)),
        2 => (1..=40u64, 0..=1000u64).prop_map(|(b, del)| Op::Commit(b, del)),
        1 => Just(Op::Promote),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// Over any history of planning rounds, results (good, failed, of a stale epoch), leaves,
    /// joins, reports, commits and promotions: a round never chooses a block twice nor one with a
    /// task, respects every bound, deletes only surplus; no task of ours takes a block below the
    /// replicas it wants; a result of another epoch is refused; the index equals a scan; and a
    /// node replaying the log (a slave promoted) holds exactly the same tasks and blocks.
    #[test]
    fn planning_keeps_its_invariants_over_any_history(
        replicas in prop::collection::vec((1..=3usize, 0..6u32), 40),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        // A threshold of 2 replicas (capacity 1000, a replica counts 1), so balance plans too.
        let p = Params { balance_threshold: 0.002, ..params(3, 16) };
        let mut s = State::new();
        let mut log: Vec<(u64, Mutation)> = Vec::new();
        let mut epoch = 1;
        let record = |s: &mut State, epoch: u64, m: Mutation, log: &mut Vec<(u64, Mutation)>| {
            if s.check(&m).is_ok() {
                apply_all(s, epoch, std::slice::from_ref(&m));
                log.push((epoch, m));
            }
        };
        for d in 1..=6 {
            record(&mut s, epoch, join_ds(d), &mut log);
        }
        for (i, (n, first)) in replicas.iter().enumerate() {
            let ds: Vec<u32> = (0..*n as u32).map(|k| (first + k) % 6 + 1).collect();
            record(&mut s, epoch, create(i as u64 + 1, &ds), &mut log);
        }
        let mut cursor = Cursor::default();
        for op in ops {
            match op {
                Op::Plan => {
                    let before: BTreeSet<u64> = s.tasks().values().map(|t| t.block_id).collect();
                    let planned = plan(&s, &p, &mut cursor);
                    prop_assert!(planned.len() <= p.max);
                    let mut seen = HashSet::new();
                    for t in &planned {
                        prop_assert!(seen.insert(t.block_id), "block {} chosen twice", t.block_id);
                        prop_assert!(!before.contains(&t.block_id), "block {} already has a task", t.block_id);
                        if t.kind == TaskKind::Delete {
                            prop_assert!(s.blocks()[&t.block_id].surplus(), "delete of a block without surplus");
                        }
                    }
                    for t in planned {
                        let m = t.to_mutation(s.next_task_id, crate::epoch::Epoch(epoch));
                        prop_assert_eq!(s.check(&m), Ok(()));
                        record(&mut s, epoch, m, &mut log);
                    }
                    for d in s.live_dataservers() {
                        prop_assert!(s.tasks().load(d.id) <= p.per_ds);
                        let compacts = s.tasks().of_dataserver(d.id).filter(|t| t.kind == TaskKind::Compact).count();
                        prop_assert!(compacts <= p.max_compact_per_ds);
                    }
                    let moves = s.tasks().values().filter(|t| t.kind == TaskKind::Move).count();
                    prop_assert!(moves <= p.max_moves);
                }
                Op::Done(i, ok) => {
                    let t = s.tasks().values().nth(i % s.tasks().len().max(1)).cloned();
                    if let Some(t) = t {
                        let was = s.blocks().get(&t.block_id).map(|b| b.replicas().len() >= b.want as usize);
                        record(&mut s, epoch, done(t.id, ok, t.epoch.get()), &mut log);
                        let now = s.blocks().get(&t.block_id).map(|b| b.replicas().len() >= b.want as usize);
                        prop_assert!(!(was == Some(true) && now == Some(false)), "task {t:?} took its block below what it wants");
                    }
                }
                Op::StaleDone(i) => {
                    let t = s.tasks().values().nth(i % s.tasks().len().max(1)).cloned();
                    if let Some(t) = t {
                        let m = done(t.id, true, t.epoch.get() + 1);
                        let is_stale = matches!(s.check(&m), Err(crate::state::ApplyError::StaleTask { .. }));
                        prop_assert!(is_stale);
                    }
                }
                Op::Leave(d) => {
                    if s.dataservers.get(&d).is_some_and(|x| x.alive) {
                        record(&mut s, epoch, Mutation::DataserverLeave(format::DataserverLeave { id: d, expired: true }), &mut log);
                    }
                }
                Op::Join(d) => {
                    if !s.dataservers.get(&d).is_some_and(|x| x.alive) {
                        let m = match join_ds(d) {
                            Mutation::DataserverJoin(mut j) => {
                                j.lease_id = s.next_lease_id;
                                Mutation::DataserverJoin(j)
                            }
                            _ => unreachable!(),
                        };
                        record(&mut s, epoch, m, &mut log);
                    }
                }
                Op::Report(b, d) => {
                    if s.dataservers.get(&d).is_some_and(|x| x.alive)
                        && s.blocks().get(&b).is_some_and(|m| m.replicas().len() < crate::state::MAX_REPLICAS)
                    {
                        record(&mut s, epoch, Mutation::ReplicaAdd(format::ReplicaAdd { block_id: b, dataserver: d }), &mut log);
                    }
                }
                Op::Commit(b, del) => {
                    if let Some(m) = s.blocks().get(&b).copied() {
                        let c = format::BlockCommit {
                            request: None,
                            block_id: b,
                            version: m.version + 1,
                            size: 1000,
                            file_count: 10,
                            del_size: del,
                            del_file_count: 0,
                        };
                        record(&mut s, epoch, Mutation::BlockCommit(c), &mut log);
                    }
                }
                Op::Promote => epoch += 1,
            }
            s.tasks().check_index().map_err(TestCaseError::fail)?;
            prop_assert!(*s.index() == Index::of(s.blocks()), "the index differs from a scan");
        }
        // The promoted slave: the same records give the same tasks and blocks.
        let mut replica = State::new();
        for (e, m) in &log {
            apply_all(&mut replica, *e, std::slice::from_ref(m));
        }
        prop_assert_eq!(replica.tasks().values().collect::<Vec<_>>(), s.tasks().values().collect::<Vec<_>>());
        prop_assert!(replica.blocks().iter().eq(s.blocks().iter()));
    }
}
