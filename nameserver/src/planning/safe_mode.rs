//! Safe mode after a promotion (the seed's `discard_newblk_safe_mode_time_`, TFS's
//! `safe_mode_time`): a new master has never seen its dataservers' renews, so what its state says
//! they hold may be stale. Until every live dataserver has reported to it (Apply or Renew) or been
//! declared dead (its lease lapsed: one dataserver lease after the promotion at most), and never
//! longer than the window (`--safe-mode-time`), it plans nothing: no replication, deletion,
//! compaction or balance. Reads, creates, commits and dataserver leases are served as usual.
//!
//! Invariant: no planning round runs on a master while [`SafeMode::remaining`] is `Some`; a new
//! epoch starts a new safe mode (soft state, per node; a slave is never in safe mode: it plans
//! nothing anyway). Once over, it stays over for that epoch.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::epoch::Epoch;
use crate::state::State;

#[derive(Debug)]
pub struct SafeMode {
    epoch: Epoch,
    since: Instant,
    heard: HashSet<u32>,
    over: bool,
}

impl Default for SafeMode {
    fn default() -> Self {
        SafeMode { epoch: Epoch::ZERO, since: Instant::now(), heard: HashSet::new(), over: true }
    }
}

impl SafeMode {
    /// This node is a writable master at `epoch`: a new epoch starts safe mode at `now`.
    pub fn master_at(&mut self, epoch: Epoch, now: Instant) {
        if epoch != self.epoch {
            *self = SafeMode { epoch, since: now, heard: HashSet::new(), over: false };
        }
    }

    /// Dataserver `ds` reported to this node as master at `epoch`.
    pub fn heard(&mut self, epoch: Epoch, ds: u32) {
        if epoch == self.epoch && !self.over {
            self.heard.insert(ds);
        }
    }

    /// `None`: planning may run. `Some(left)`: in safe mode, for at most `left` more.
    pub fn remaining(&mut self, s: &State, now: Instant, window: Duration) -> Option<Duration> {
        if self.over {
            return None;
        }
        let left = window.saturating_sub(now.saturating_duration_since(self.since));
        if left.is_zero() || s.live_dataservers().all(|d| self.heard.contains(&d.id)) {
            self.over = true;
            return None;
        }
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{apply_all, join_ds};

    #[test]
    fn a_new_master_waits_for_every_live_dataserver_or_the_window() {
        let mut s = State::new();
        apply_all(&mut s, 1, &[join_ds(1), join_ds(2)]);
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut m = SafeMode::default();
        assert_eq!(m.remaining(&s, t0, w), None, "not a master yet: no safe mode");
        m.master_at(Epoch(2), t0);
        assert_eq!(m.remaining(&s, t0, w), Some(w));
        m.heard(Epoch(2), 1);
        m.heard(Epoch(1), 2); // a report to an older epoch counts for nothing
        assert!(m.remaining(&s, t0 + Duration::from_secs(1), w).is_some());
        m.heard(Epoch(2), 2);
        assert_eq!(m.remaining(&s, t0 + Duration::from_secs(1), w), None);
        m.master_at(Epoch(2), t0 + Duration::from_secs(2));
        assert_eq!(m.remaining(&s, t0, w), None, "over for the epoch, stays over");
        // The next promotion: nobody heard; the window bounds it.
        m.master_at(Epoch(3), t0);
        assert_eq!(m.remaining(&s, t0 + Duration::from_secs(4), w), Some(Duration::from_secs(6)));
        assert_eq!(m.remaining(&s, t0 + w, w), None);
    }

    #[test]
    fn a_dataserver_declared_dead_is_not_waited_for() {
        let mut s = State::new();
        apply_all(&mut s, 1, &[join_ds(1), join_ds(2)]);
        let t0 = Instant::now();
        let mut m = SafeMode::default();
        m.master_at(Epoch(2), t0);
        m.heard(Epoch(2), 1);
        assert!(m.remaining(&s, t0, Duration::from_secs(300)).is_some());
        apply_all(
            &mut s,
            2,
            &[crate::mutation::Mutation::DataserverLeave(crate::oplog::format::DataserverLeave {
                id: 2,
                expired: true,
            })],
        );
        assert_eq!(m.remaining(&s, t0, Duration::from_secs(300)), None);
    }
}
