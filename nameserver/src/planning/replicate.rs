//! Replication: a block that lost a replica (its dataserver left) is copied from a replica left
//! to the live dataserver with the most free space that does not hold it.
//!
//! Invariants: bounded (≤ `per_ds` tasks a dataserver, ≤ `max` a round, the rest planned on later
//! rounds: each dataserver Apply and renew, and the lease check's tick), and in the end every
//! block that lost a replica and kept one is copied. Cost: O(1) when nothing needs a copy or no
//! two dataservers have room, otherwise at most [`super::budget`] blocks looked at.

use super::{Planned, Round};
use crate::oplog::format::TaskKind;

pub fn plan(r: &mut Round<'_>) {
    let s = r.s;
    if s.index().needs_copy_count() == 0 {
        return;
    }
    for block_id in s.index().needs_copy().take(super::budget(s, r.p)) {
        // A copy needs two dataservers with room.
        if r.full() || r.with_room() < 2 {
            break;
        }
        if r.busy(block_id) {
            continue;
        }
        let reps = s.blocks()[&block_id].replicas();
        let Some(&source) = reps.iter().find(|d| r.has_room(**d)) else { continue };
        let Some(target) = s.place_where(1, |d| !reps.contains(&d.id) && r.has_room(d.id)).map(|v| v[0]) else {
            continue;
        };
        r.push(Planned { kind: TaskKind::Replicate, block_id, source, target, version: 0 });
    }
}
