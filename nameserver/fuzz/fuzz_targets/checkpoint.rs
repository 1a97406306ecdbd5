//! A checkpoint file, or a snapshot a master sends: `Snapshot::read_from`, then `into_state`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfs_nameserver::checkpoint::Snapshot;

fn check(data: &[u8]) {
    let Ok(snap) = Snapshot::read_from(&mut &data[..]) else { return };
    assert_eq!(snap.blocks.len() as u64, snap.meta.block_count);
    // What was accepted writes back to a snapshot that reads as the same.
    let mut again = Vec::new();
    snap.write_to(&mut again).expect("vec");
    let back = Snapshot::read_from(&mut &again[..]).expect("a snapshot written back reads back");
    assert_eq!(back.meta, snap.meta);
    assert_eq!(back.blocks, snap.blocks);
    assert_eq!(back.dataservers, snap.dataservers);
    assert_eq!(back.tasks, snap.tasks);
    let state = snap.into_state().expect("a read snapshot becomes a state");
    assert_eq!(state.blocks().len() as u64, back.meta.block_count);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    tfs_fuzz::fix_checkpoint_crcs(&mut fixed);
    check(&fixed);
});
