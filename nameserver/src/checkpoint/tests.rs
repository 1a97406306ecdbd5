use super::*;
use crate::state::tests::{apply_all, history};
use proptest::prelude::*;

fn roundtrip(s: &State) -> State {
    let mut buf = Vec::new();
    Snapshot::of(s).write_to(&mut buf).unwrap();
    Snapshot::read_from(&mut &buf[..]).unwrap().into_state().unwrap()
}

#[test]
fn empty_state_round_trips() {
    let s = State::new();
    let r = roundtrip(&s);
    assert_eq!(r.blocks(), s.blocks());
    assert_eq!(r.next_block_id, 1);
}

#[test]
fn truncated_or_corrupt_checkpoints_are_refused() {
    let mut s = State::new();
    apply_all(&mut s, 1, &crate::state::tests::sample());
    let mut buf = Vec::new();
    Snapshot::of(&s).write_to(&mut buf).unwrap();
    for cut in [0, 10, HEADER_LEN, HEADER_LEN + 9, buf.len() - 1] {
        assert!(Snapshot::read_from(&mut &buf[..cut]).is_err(), "cut at {cut} accepted");
    }
    for at in [0, 5, HEADER_LEN + 2, HEADER_LEN + 12, buf.len() / 2, buf.len() - 9] {
        let mut bad = buf.clone();
        bad[at] ^= 0x40;
        assert!(Snapshot::read_from(&mut &bad[..]).is_err(), "flip at {at} accepted");
    }
}

#[test]
fn newest_valid_checkpoint_wins_and_damaged_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = State::new();
    apply_all(&mut s, 1, &crate::state::tests::sample());
    let older = write(dir.path(), &Snapshot::of(&s), 3).unwrap();
    apply_all(&mut s, 1, &[crate::mutation::Mutation::BlockRemove(format::BlockRemove { block_id: 1, request: None })]);
    let newer = write(dir.path(), &Snapshot::of(&s), 3).unwrap();
    assert_eq!(load_newest(dir.path()).unwrap().unwrap().meta.seq, s.applied_seq);
    let mut bytes = fs::read(&newer).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    fs::write(&newer, bytes).unwrap();
    let got = load_newest(dir.path()).unwrap().unwrap();
    assert_eq!(got.meta.seq, s.applied_seq - 1);
    assert!(older.exists());
}

#[test]
fn keeps_only_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = State::new();
    for i in 0..4 {
        apply_all(&mut s, 1, &[crate::state::tests::join_ds(i + 1)]);
        write(dir.path(), &Snapshot::of(&s), 2).unwrap();
    }
    assert_eq!(list(dir.path()).unwrap().len(), 2);
}

proptest! {
    /// A checkpoint restores exactly the state it was taken of.
    #[test]
    fn any_state_round_trips(ms in history()) {
        let mut s = State::new();
        apply_all(&mut s, 1, &ms);
        let r = roundtrip(&s);
        prop_assert_eq!(r.blocks(), s.blocks());
        prop_assert_eq!(r.applied_seq, s.applied_seq);
        prop_assert_eq!(r.next_block_id, s.next_block_id);
        prop_assert_eq!(r.dataservers.len(), s.dataservers.len());
        for (id, d) in &s.dataservers {
            let e = &r.dataservers[id];
            prop_assert_eq!((&e.addr, e.alive, e.lease_id, e.capacity), (&d.addr, d.alive, d.lease_id, d.capacity));
        }
    }
}

/// A snapshot whose meta (crc-valid) claims far more blocks than follow.
fn claiming(block_count: u64, blocks: u64) -> Vec<u8> {
    let snap = Snapshot {
        meta: format::SnapshotMeta { seq: 9, block_count, ..Default::default() },
        blocks: (1..=blocks).map(|id| (id, BlockMeta::new(&[1, 2]).unwrap())).collect(),
        ..Default::default()
    };
    let mut buf = Vec::new();
    snap.write_to(&mut buf).unwrap();
    buf
}

/// Regression (fuzz target `checkpoint`): a meta claiming 2^28 blocks made the reader reserve
/// room for them up front, a 15 GB allocation, before a single block was read. The block table
/// now grows only with the blocks that arrive.
#[test]
fn a_lying_block_count_is_refused_without_reserving_for_it() {
    for claimed in [1 << 28, u64::MAX] {
        let e = Snapshot::read_from(&mut &claiming(claimed, 3)[..]).unwrap_err();
        assert!(e.to_string().contains(&format!("3 blocks read, meta says {claimed}")), "{e}");
    }
}

/// A frame length beyond the bytes that follow allocates for the bytes, not for the length.
#[test]
fn a_frame_longer_than_its_bytes_is_refused() {
    let mut buf = claiming(0, 0);
    buf.truncate(HEADER_LEN);
    buf.extend_from_slice(&MAX_FRAME.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(b"short");
    let e = Snapshot::read_from(&mut &buf[..]).unwrap_err();
    assert!(e.to_string().contains(&format!("frame body: 5 of {MAX_FRAME} bytes")), "{e}");
}

/// A snapshot taken, then followed by writes of every kind (new blocks in its last chunk, commits
/// and removals in its chunks, a leave), still writes the state as of its seq.
#[test]
fn a_snapshot_followed_by_writes_writes_the_state_at_its_seq() {
    use crate::mutation::Mutation;
    let mut s = State::new();
    apply_all(&mut s, 1, &crate::state::tests::sample());
    let creates: Vec<Mutation> = (4..3000u64)
        .map(|id| Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: vec![1, 2], request: None }))
        .collect();
    apply_all(&mut s, 1, &creates);
    let snap = Snapshot::of(&s);
    let at: Vec<(u64, BlockMeta)> = s.blocks().iter().map(|(id, b)| (id, *b)).collect();
    let seq = s.applied_seq;
    let later = vec![
        Mutation::BlockCreate(format::BlockCreate { block_id: 3000, dataservers: vec![2, 3], request: None }),
        Mutation::BlockCommit(format::BlockCommit { block_id: 5, version: 9, size: 1, ..Default::default() }),
        Mutation::BlockRemove(format::BlockRemove { block_id: 2000, request: None }),
        Mutation::DataserverLeave(format::DataserverLeave { id: 1, expired: true }),
    ];
    apply_all(&mut s, 1, &later);
    let mut buf = Vec::new();
    snap.write_to(&mut buf).unwrap();
    let back = Snapshot::read_from(&mut &buf[..]).unwrap().into_state().unwrap();
    assert_eq!(back.applied_seq, seq);
    assert_eq!(back.blocks().iter().map(|(id, b)| (id, *b)).collect::<Vec<_>>(), at);
    assert!(back.dataservers[&1].alive);
}

/// The dedup window of request ids is in the checkpoint: a state recovered from it answers every
/// id as the state that applied the records does (taken before later keyed writes, in several
/// chunks), and a checkpoint without it (older ones) reads back with an empty window.
#[test]
fn the_dedup_window_round_trips_through_a_checkpoint() {
    use crate::mutation::Mutation;
    use crate::state::dedup::{Kind, RequestId, create_body};
    let key = |seq| Some(format::RequestId { client: 9, seq });
    let mut s = State::new();
    apply_all(&mut s, 1, &crate::state::tests::sample());
    let n = 40_000u64;
    let creates: Vec<Mutation> = (10..10 + n)
        .map(|id| {
            Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: vec![1, 2], request: key(id) })
        })
        .collect();
    apply_all(&mut s, 1, &creates);
    let snap = Snapshot::of(&s);
    let later = [Mutation::BlockRemove(format::BlockRemove { block_id: 11, request: key(n + 10) })];
    apply_all(&mut s, 1, &later);
    let mut buf = Vec::new();
    snap.write_to(&mut buf).unwrap();
    let back = Snapshot::read_from(&mut &buf[..]).unwrap().into_state().unwrap();
    let two = create_body(2);
    for seq in [10, 11, n / 2, n + 9] {
        let id = RequestId { client: 9, seq };
        assert_eq!(back.requests().lookup(id, Kind::Create, 0, two), s.requests().lookup(id, Kind::Create, 0, two));
    }
    assert_eq!(back.requests().len(), n as usize);
    assert_eq!(s.requests().len(), n as usize + 1);
    let mut old = Snapshot::of(&State::new());
    old.requests = Default::default();
    let mut buf = Vec::new();
    old.write_to(&mut buf).unwrap();
    assert!(Snapshot::read_from(&mut &buf[..]).unwrap().into_state().unwrap().requests().is_empty());
}
