//! Surplus replicas: a block with more replicas than it wants (reported by one dataserver more,
//! or the copy of a balance MOVE done) gets a DELETE of the replica on its fullest holder.
//!
//! Invariant: a DELETE is planned only for a block holding more replicas than it wants, and a
//! block has one task at a time, so a DELETE never takes a block below what it wants (a leave
//! that ends the surplus first cancels the DELETE: state `leave`). Cost: at most
//! [`super::budget`] blocks of the index's surplus set looked at.

use super::{Planned, Round};
use crate::oplog::format::TaskKind;

pub fn plan(r: &mut Round<'_>) {
    let s = r.s;
    for block_id in s.index().surplus().take(super::budget(s, r.p)) {
        if r.full() {
            break;
        }
        if r.busy(block_id) {
            continue;
        }
        let b = &s.blocks()[&block_id];
        debug_assert!(b.surplus());
        // The fullest holder with room; ties to the highest id, so every node would choose alike.
        let Some(&victim) = b
            .replicas()
            .iter()
            .filter(|d| r.has_room(**d))
            .max_by(|x, y| r.ratio(**x, 0).total_cmp(&r.ratio(**y, 0)).then(x.cmp(y)))
        else {
            continue;
        };
        r.push(Planned { kind: TaskKind::Delete, block_id, source: victim, target: victim, version: 0 });
    }
}
