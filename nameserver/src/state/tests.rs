use super::*;
use crate::oplog::RecordType;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn h(seq: u64, epoch: u64) -> Header {
    Header {
        rtype: RecordType::EpochStart,
        epoch: crate::epoch::Epoch(epoch),
        seq,
        time_ms: 1000 + seq,
        len: 0,
        crc: 0,
    }
}

fn join(id: u32) -> Mutation {
    Mutation::DataserverJoin(format::DataserverJoin {
        id,
        addr: format!("10.0.0.{id}:3200"),
        capacity: 1000,
        used: 0,
        lease_id: id as u64,
    })
}

fn create(id: u64, ds: &[u32]) -> Mutation {
    Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: ds.to_vec(), request: None })
}

/// Applies mutations with consecutive seqs at `epoch`.
pub(crate) fn apply_all(s: &mut State, epoch: u64, ms: &[Mutation]) {
    for m in ms {
        let seq = s.applied_seq + 1;
        s.apply(&h(seq, epoch), m).unwrap();
    }
}

#[test]
fn records_must_follow_in_seq_order() {
    let mut s = State::new();
    assert_eq!(s.apply(&h(2, 1), &join(1)), Err(ApplyError::OutOfOrder { applied: 0, got: 2 }));
    s.apply(&h(1, 2), &join(1)).unwrap();
    assert_eq!(
        s.apply(&h(2, 1), &join(2)),
        Err(ApplyError::StaleEpoch { current: crate::epoch::Epoch(2), got: crate::epoch::Epoch(1) })
    );
    assert_eq!(s.applied_seq, 1);
}

#[test]
fn allocator_stays_above_every_logged_id() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), create(5, &[1]), create(3, &[1])]);
    assert_eq!(s.next_block_id, 6);
    apply_all(&mut s, 1, &[Mutation::BlockRemove(format::BlockRemove { block_id: 5, request: None })]);
    assert_eq!(s.next_block_id, 6, "a removed id is never handed out again");
}

/// A record naming the largest id (only a hostile or corrupt log can: the allocators count up from
/// 1) is refused, never applied: applying it would leave no id above every logged one.
#[test]
fn the_largest_ids_are_refused() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1)]);
    let before = s.clone();
    let seq = s.applied_seq + 1;
    assert_eq!(s.apply(&h(seq, 1), &create(u64::MAX, &[1])), Err(ApplyError::IdOutOfRange("block", u64::MAX)));
    let mut j = join(2);
    if let Mutation::DataserverJoin(d) = &mut j {
        d.lease_id = u64::MAX;
    }
    assert_eq!(s.apply(&h(seq, 1), &j), Err(ApplyError::IdOutOfRange("lease", u64::MAX)));
    let t = Mutation::TaskCreate(format::TaskCreate {
        task_id: u64::MAX,
        block_id: 1,
        source: 1,
        target: 2,
        kind: 0,
        ..Default::default()
    });
    assert_eq!(s.apply(&h(seq, 1), &t), Err(ApplyError::IdOutOfRange("task", u64::MAX)));
    assert_eq!(
        (s.next_block_id, s.next_lease_id, s.next_task_id),
        (before.next_block_id, before.next_lease_id, before.next_task_id)
    );
    assert_eq!(s.applied_seq, before.applied_seq);
    apply_all(&mut s, 1, &[create(u64::MAX - 1, &[1])]);
    assert_eq!(s.next_block_id, u64::MAX, "the largest id below the limit still applies");
}

#[test]
fn failed_apply_changes_nothing() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), create(1, &[1])]);
    let before = s.clone();
    let seq = s.applied_seq + 1;
    assert_eq!(s.apply(&h(seq, 1), &create(1, &[1])), Err(ApplyError::BlockExists(1)));
    assert_eq!(
        s.apply(&h(seq, 1), &Mutation::BlockRemove(format::BlockRemove { block_id: 9, request: None })),
        Err(ApplyError::NoBlock(9))
    );
    assert_eq!(s.apply(&h(seq, 1), &create(2, &[1, 2, 3, 4, 5])), Err(ApplyError::Replicas(2, block::TooManyReplicas)));
    assert_eq!(s.blocks(), before.blocks());
    assert_eq!(s.applied_seq, before.applied_seq);
}

#[test]
fn dead_dataserver_loses_its_replicas_and_tasks() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), join(2), join(3), create(1, &[1, 2]), create(2, &[2, 3])]);
    apply_all(
        &mut s,
        1,
        &[Mutation::TaskCreate(format::TaskCreate {
            task_id: 1,
            kind: format::TaskKind::Replicate as i32,
            block_id: 2,
            source: 2,
            target: 1,
            epoch: 0,
            version: 0,
        })],
    );
    apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: 2, expired: true })]);
    assert_eq!(s.blocks()[&1].replicas(), &[1]);
    assert_eq!(s.blocks()[&2].replicas(), &[3]);
    assert!(s.blocks()[&1].under_replicated());
    assert!(s.tasks().is_empty());
    assert_eq!(s.live_dataservers().count(), 2);
}

#[test]
fn finished_replicate_task_adds_the_replica() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), join(2), create(1, &[1])]);
    apply_all(
        &mut s,
        1,
        &[
            Mutation::TaskCreate(format::TaskCreate {
                task_id: 4,
                kind: format::TaskKind::Replicate as i32,
                block_id: 1,
                source: 1,
                target: 2,
                epoch: 0,
                version: 0,
            }),
            Mutation::TaskDone(format::TaskDone { task_id: 4, success: true, epoch: 0, size: None, file_count: None }),
        ],
    );
    assert_eq!(s.blocks()[&1].replicas(), &[1, 2]);
    assert_eq!(s.next_task_id, 5);
}

#[test]
fn placement_prefers_free_space_and_spreads_with_reservations() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), join(2), join(3)]);
    s.dataservers.get_mut(&2).unwrap().used = 500;
    assert_eq!(s.place(2, &[]), Some(vec![1, 3]));
    s.reserve(&[1, 3], 600);
    assert_eq!(s.place(1, &[]), Some(vec![2]));
    assert_eq!(s.place(2, &[2]).map(|v| v.len()), Some(2));
    assert_eq!(s.place(4, &[]), None);
}

/// A random but valid history of mutations, as a master would log it.
pub(crate) fn history() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec((0u8..9, 1u64..40, 1u32..5, any::<u32>()), 1..120).prop_map(|ops| {
        let mut s = State::new();
        let mut out = vec![join(1), join(2), join(3), join(4)];
        apply_all(&mut s, 1, &out);
        for (op, id, ds, v) in ops {
            let m = match op {
                0 | 1 => create(s.next_block_id, &[ds, ds % 4 + 1]),
                2 => Mutation::BlockCommit(format::BlockCommit {
                    request: None,
                    block_id: id,
                    version: v,
                    size: v as u64,
                    file_count: v,
                    del_size: 0,
                    del_file_count: 0,
                }),
                3 => Mutation::BlockRemove(format::BlockRemove { block_id: id, request: None }),
                4 => Mutation::DataserverLeave(format::DataserverLeave { id: ds, expired: false }),
                5 => join(ds),
                6 => Mutation::ReplicaAdd(format::ReplicaAdd { block_id: id, dataserver: ds }),
                7 => Mutation::TaskCreate(format::TaskCreate {
                    task_id: s.next_task_id,
                    kind: format::TaskKind::Replicate as i32,
                    block_id: id,
                    source: ds,
                    target: ds % 4 + 1,
                    epoch: 0,
                    version: 0,
                }),
                _ => match s.tasks().values().nth(v as usize % s.tasks().len().max(1)) {
                    Some(t) => Mutation::TaskDone(format::TaskDone {
                        task_id: t.id,
                        success: v % 3 != 0,
                        epoch: 0,
                        size: None,
                        file_count: None,
                    }),
                    None => join(ds),
                },
            };
            if s.check(&m).is_ok() {
                apply_all(&mut s, 1, std::slice::from_ref(&m));
                out.push(m);
            }
        }
        out
    })
}

proptest! {
    /// Determinism: two nodes applying the same history end in the same state.
    #[test]
    fn same_history_same_state(ms in history()) {
        let mut a = State::new();
        let mut b = State::new();
        apply_all(&mut a, 1, &ms);
        apply_all(&mut b, 1, &ms);
        prop_assert_eq!(a.blocks(), b.blocks());
        prop_assert_eq!(&a.dataservers, &b.dataservers);
        prop_assert_eq!(a.next_block_id, b.next_block_id);
    }

    /// No id is ever created twice, and every id is below the allocator's mark.
    #[test]
    fn ids_are_unique_and_below_the_mark(ms in history()) {
        let mut s = State::new();
        let mut seen = std::collections::HashSet::new();
        for m in &ms {
            if let Mutation::BlockCreate(c) = m {
                prop_assert!(seen.insert(c.block_id));
            }
        }
        apply_all(&mut s, 1, &ms);
        prop_assert!(s.blocks().keys().all(|id| id < s.next_block_id));
    }
}

/// The derived views equal what a full scan derives.
fn check_index(s: &State) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.index(), &Index::of(s.blocks()));
    s.tasks().check_index().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    /// After any history, and after each of its records, the index is what a scan derives.
    #[test]
    fn the_index_equals_a_full_scan(ms in history()) {
        let mut s = State::new();
        for m in &ms {
            apply_all(&mut s, 1, std::slice::from_ref(m));
            check_index(&s)?;
        }
    }

    /// A leave takes exactly that dataserver's replicas off, and exactly its tasks; nothing else.
    #[test]
    fn a_leave_removes_exactly_that_dataservers_replicas(ms in history(), ds in 1u32..5) {
        let mut s = State::new();
        apply_all(&mut s, 1, &ms);
        if !s.dataservers.contains_key(&ds) {
            return Ok(());
        }
        let before = s.clone();
        apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: ds, expired: true })]);
        prop_assert_eq!(s.blocks().len(), before.blocks().len());
        for (id, b) in before.blocks().iter() {
            let want: Vec<u32> = b.replicas().iter().copied().filter(|&d| d != ds).collect();
            prop_assert_eq!(s.blocks()[&id].replicas(), &want[..], "block {}", id);
        }
        let kept: Vec<u64> = before.tasks().values().filter(|t| t.source != ds && t.target != ds).map(|t| t.id).collect();
        prop_assert_eq!(s.tasks().values().map(|t| t.id).collect::<Vec<_>>(), kept);
        prop_assert_eq!(s.index().blocks_of(ds).count(), 0);
        check_index(&s)?;
    }
}

/// A leave costs O(the leaving dataserver's blocks): the chunks of blocks it held none of are not
/// even copied (a snapshot taken before still shares them), and neither is anything on a commit.
#[test]
fn a_leave_touches_only_the_chunks_of_the_blocks_it_held() {
    let mut s = State::new();
    apply_all(&mut s, 1, &[join(1), join(2), join(3)]);
    let creates: Vec<Mutation> =
        (1..=10_000).map(|id| create(id, if id <= 1500 { &[1, 2] } else { &[2, 3] })).collect();
    apply_all(&mut s, 1, &creates);
    let snap = s.blocks().clone();
    let chunks = snap.shared_chunks(s.blocks());
    apply_all(&mut s, 1, &[Mutation::DataserverLeave(format::DataserverLeave { id: 1, expired: true })]);
    // Blocks 1..=1500 lie in the first two chunks of 1024 ids.
    assert_eq!(s.blocks().shared_chunks(&snap), chunks - 2);
    assert_eq!(s.index().needs_copy().collect::<Vec<_>>(), (1..=1500).collect::<Vec<u64>>());
    assert!(snap.iter().take(1500).all(|(_, b)| b.replicas() == [1, 2]), "the snapshot kept its view");
}

pub(crate) fn join_ds(id: u32) -> Mutation {
    join(id)
}

/// A small fixed history: three dataservers, a few blocks, a commit.
pub(crate) fn sample() -> Vec<Mutation> {
    vec![
        join(1),
        join(2),
        join(3),
        create(1, &[1, 2]),
        create(2, &[2, 3]),
        create(3, &[3, 1]),
        Mutation::BlockCommit(format::BlockCommit {
            request: None,
            block_id: 2,
            version: 3,
            size: 4096,
            file_count: 3,
            del_size: 0,
            del_file_count: 0,
        }),
    ]
}
