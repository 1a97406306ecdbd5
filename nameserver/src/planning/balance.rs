//! Balance: when the used ratios of the fullest and the emptiest live dataserver are further
//! apart than `balance_threshold`, a MOVE copies a block from the fullest to the emptiest; once
//! the copy is reported done the block has one replica too many and [`super::surplus`] drops it
//! from its fullest holder. A used ratio is the nameserver's own count of a dataserver's replicas
//! (× the block size estimate) over its capacity, projected past the tasks in flight
//! ([`Round::ratio`]).
//!
//! Invariants: rate-limited: at most `max_moves` MOVEs in flight in the cluster (and `per_ds`
//! tasks a dataserver), so the copies never crowd out repair or clients; only blocks with exactly
//! the replicas they want and no task move (repair and surplus come first); a move is planned
//! only if the source stays at least as full as the target after it, so balance never moves a
//! block back and forth and stops once within the threshold. Cost: at most [`super::budget`]
//! blocks of the source's set looked at a move.

use std::collections::HashSet;

use super::{Planned, Round};
use crate::oplog::format::TaskKind;

pub fn plan(r: &mut Round<'_>) {
    let s = r.s;
    let live: Vec<u32> = s.live_dataservers().filter(|d| d.capacity > 0).map(|d| d.id).collect();
    let mut exhausted: HashSet<u32> = HashSet::new();
    while !r.full() && r.moves() < r.p.max_moves {
        let room: Vec<u32> = live.iter().copied().filter(|d| r.has_room(*d)).collect();
        let by_ratio = |x: &u32, y: &u32| r.ratio(*x, 0).total_cmp(&r.ratio(*y, 0)).then(x.cmp(y));
        let Some(lo) = room.iter().copied().min_by(by_ratio) else { return };
        let Some(hi) = room.iter().copied().filter(|d| !exhausted.contains(d) && *d != lo).max_by(by_ratio) else {
            return;
        };
        if r.ratio(hi, 0) - r.ratio(lo, 0) <= r.p.balance_threshold || r.ratio(hi, -1) < r.ratio(lo, 1) {
            return;
        }
        let pick = s.index().blocks_of(hi).take(super::budget(s, r.p)).find(|&b| {
            let m = &s.blocks()[&b];
            !r.busy(b) && m.replicas().len() == m.want as usize && !m.replicas().contains(&lo)
        });
        match pick {
            Some(block_id) => r.push(Planned { kind: TaskKind::Move, block_id, source: hi, target: lo, version: 0 }),
            None => {
                exhausted.insert(hi);
            }
        }
    }
}
