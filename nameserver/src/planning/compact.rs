//! Compaction (the seed's COMPACT_MSG): a block with at least `compact_ratio` of its bytes or of
//! its files deleted gets a COMPACT task to one of its dataservers, the one compacting least.
//!
//! Invariants: at most `max_compact_per_ds` compactions a dataserver at once; the task names the
//! block's version, and its result (new size, deleted counters reset) is applied through the
//! oplog only to that version (state `task_succeeded`). Cost: the index's set of blocks holding
//! deleted data, walked from a cursor, at most [`super::budget`] blocks a round; the cursor wraps
//! to 0 at the end, so every such block is looked at again.

use super::{Cursor, Planned, Round};
use crate::oplog::format::TaskKind;
use crate::state::BlockMeta;

/// Whether a block's deleted share reaches `ratio` (of bytes, or of files).
pub fn needs_compaction(b: &BlockMeta, ratio: f64) -> bool {
    let over = |del: u64, total: u64| total > 0 && del > 0 && del as f64 >= ratio * total as f64;
    over(b.del_size, b.size) || over(b.del_file_count as u64, b.file_count as u64)
}

pub fn plan(r: &mut Round<'_>, cursor: &mut Cursor) {
    let s = r.s;
    let budget = super::budget(s, r.p);
    let mut seen = 0;
    let mut it = s.index().with_deletes_from(cursor.compact_from);
    loop {
        if r.full() || seen >= budget {
            return;
        }
        let Some(block_id) = it.next() else {
            // The end of the set: start again from the first block next round.
            cursor.compact_from = 0;
            return;
        };
        seen += 1;
        cursor.compact_from = block_id + 1;
        if r.busy(block_id) {
            continue;
        }
        let b = &s.blocks()[&block_id];
        if !needs_compaction(b, r.p.compact_ratio) {
            continue;
        }
        let holder = b
            .replicas()
            .iter()
            .filter(|d| r.has_room(**d) && r.compacts(**d) < r.p.max_compact_per_ds)
            .min_by_key(|d| (r.compacts(**d), r.load(**d), **d));
        if let Some(&d) = holder {
            r.push(Planned { kind: TaskKind::Compact, block_id, source: d, target: d, version: b.version });
        }
    }
}
