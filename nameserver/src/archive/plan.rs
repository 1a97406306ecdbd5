//! Pure decisions over a listing: which objects restore a target, which points are restorable,
//! what retention deletes. No I/O, so every rule is unit-tested.

use std::collections::BTreeMap;

use super::layout::{CheckpointName, ObjectName, WalName};
use super::store::Listed;

/// What a restore aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Seq(u64),
    /// Every record whose header time is <= this (unix ms): the cut is at the first record after.
    Time(u64),
    Latest,
}

/// Where a restore starts: a checkpoint, or the empty state (when the wal starts at seq 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Empty,
    Checkpoint(CheckpointName),
}

impl Base {
    pub fn seq(&self) -> u64 {
        match self {
            Base::Empty => 0,
            Base::Checkpoint(c) => c.seq,
        }
    }
    fn time_ms(&self) -> u64 {
        match self {
            Base::Empty => 0,
            Base::Checkpoint(c) => c.time_ms,
        }
    }
}

/// The objects of one restore, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub base: Base,
    pub wal: Vec<WalName>,
    /// The last seq to restore: exact for a seq target, an upper bound for a time target (the
    /// restore stops at the first record past the time).
    pub through: u64,
    pub stop_after_ms: Option<u64>,
}

/// A run of seqs restorable from one base: every seq in `base..=reach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub base: Base,
    pub reach: u64,
    pub reach_ms: u64,
}

/// The wal objects that continue `base` without a gap, greedily (each extends the reach), and the
/// seq they reach. Invariant: the chain holds every seq in `base+1..=reach` exactly once as the
/// newest object seen for it; overlapping objects are checked for agreement while applied.
pub fn chain(base: u64, wal: &[WalName]) -> (Vec<WalName>, u64) {
    let mut reach = base;
    let mut out = Vec::new();
    let mut sorted: Vec<&WalName> = wal.iter().filter(|w| w.last > base).collect();
    sorted.sort_by_key(|w| (w.first, std::cmp::Reverse(w.last)));
    for w in sorted {
        if w.first > reach + 1 {
            break;
        }
        if w.last > reach {
            out.push(*w);
            reach = w.last;
        }
    }
    (out, reach)
}

fn split(list: &[Listed]) -> (Vec<CheckpointName>, Vec<WalName>) {
    let mut c = Vec::new();
    let mut w = Vec::new();
    for l in list {
        match l.name {
            ObjectName::Checkpoint(x) => c.push(x),
            ObjectName::Wal(x) => w.push(x),
        }
    }
    c.sort();
    w.sort();
    (c, w)
}

fn bases(ckpts: &[CheckpointName], wal: &[WalName]) -> Vec<Base> {
    let mut b: Vec<Base> = Vec::new();
    if wal.iter().any(|w| w.first == 1) {
        b.push(Base::Empty);
    }
    b.extend(ckpts.iter().map(|c| Base::Checkpoint(*c)));
    b
}

/// Every restorable range: one per base, in base order.
pub fn ranges(list: &[Listed]) -> Vec<Range> {
    let (ckpts, wal) = split(list);
    bases(&ckpts, &wal)
        .into_iter()
        .map(|base| {
            let (objs, reach) = chain(base.seq(), &wal);
            let reach_ms = objs.last().map(|w| w.last_ms).unwrap_or(base.time_ms());
            Range { base, reach, reach_ms }
        })
        .collect()
}

/// Seqs no wal object holds, between the first and the last wal object: `(from, to)` inclusive.
pub fn gaps(list: &[Listed]) -> Vec<(u64, u64)> {
    let (_, wal) = split(list);
    let mut out = Vec::new();
    let mut reach: Option<u64> = None;
    for w in wal {
        if let Some(r) = reach
            && w.first > r + 1
        {
            out.push((r + 1, w.first - 1));
        }
        reach = Some(reach.map_or(w.last, |r| r.max(w.last)));
    }
    out
}

/// The restorable seqs in words, for error messages and `backup ls`.
pub fn describe_restorable(list: &[Listed]) -> String {
    let rs = ranges(list);
    if rs.is_empty() {
        return "nothing is restorable (no checkpoint, and no wal object starting at seq 1)".into();
    }
    // Ranges of one chain overlap: merge them for the reader.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    let mut spans: Vec<(u64, u64)> = rs.iter().map(|r| (r.base.seq(), r.reach)).collect();
    spans.sort();
    for (a, b) in spans {
        match merged.last_mut() {
            Some((_, e)) if a <= *e + 1 => *e = (*e).max(b),
            _ => merged.push((a, b)),
        }
    }
    let parts: Vec<String> = merged.iter().map(|(a, b)| format!("seqs {a}..={b}")).collect();
    format!("restorable: {}", parts.join(", "))
}

/// Chooses the objects that restore `target`.
///
/// Rules: the newest base at or before the target from which the wal reaches the target without a
/// gap; for a time, bases whose record time is known and <= the time (the empty state always), the
/// one whose chain reaches furthest within the time (the newest of equals).
pub fn plan(list: &[Listed], target: Target) -> Result<Plan, String> {
    let (ckpts, wal) = split(list);
    let bases = bases(&ckpts, &wal);
    let why = || describe_restorable(list);
    match target {
        Target::Seq(n) => {
            let mut best = None;
            for b in bases.iter().filter(|b| b.seq() <= n) {
                let (objs, reach) = chain(b.seq(), &wal);
                if reach >= n {
                    best = Some((*b, objs));
                }
            }
            let (base, objs) = best.ok_or_else(|| {
                let stop = bases
                    .iter()
                    .filter(|b| b.seq() <= n)
                    .map(|b| chain(b.seq(), &wal).1)
                    .max()
                    .map(|r| {
                        format!("; the archive holds no record after seq {r} on the way (a gap, or not archived yet)")
                    })
                    .unwrap_or_default();
                format!("seq {n} is not restorable{stop}; {}", why())
            })?;
            let wal = objs.into_iter().take_while(|w| w.first <= n).collect();
            Ok(Plan { base, wal, through: n, stop_after_ms: None })
        }
        Target::Latest => {
            let best = bases
                .iter()
                .map(|b| (b, chain(b.seq(), &wal)))
                .max_by_key(|(b, (_, reach))| (*reach, b.seq()))
                .ok_or_else(|| format!("the archive holds nothing to restore; {}", why()))?;
            let (base, (objs, reach)) = best;
            Ok(Plan { base: *base, wal: objs, through: reach, stop_after_ms: None })
        }
        Target::Time(t) => {
            let mut best: Option<(Base, Vec<WalName>, u64)> = None;
            for b in bases.iter().filter(|b| matches!(b, Base::Empty) || (b.time_ms() > 0 && b.time_ms() <= t)) {
                let (objs, _) = chain(b.seq(), &wal);
                // Objects up to the one holding the first record past `t`.
                let mut used = Vec::new();
                let mut through = b.seq();
                for w in objs {
                    if w.first_ms > t {
                        break;
                    }
                    used.push(w);
                    through = w.last;
                    if w.last_ms > t {
                        break;
                    }
                }
                if best.as_ref().is_none_or(|(bb, _, r)| through > *r || (through == *r && b.seq() > bb.seq())) {
                    best = Some((*b, used, through));
                }
            }
            let (base, wal, through) =
                best.ok_or_else(|| format!("no checkpoint of the archive is at or before {} ms; {}", t, why()))?;
            Ok(Plan { base, wal, through, stop_after_ms: Some(t) })
        }
    }
}

/// The objects retention deletes at `now_ms`: every object older than `now - retention` except
/// the newest checkpoint older than that and everything after it — the base of the oldest point
/// still inside the retention. Without such a checkpoint nothing is deleted.
pub fn expired(list: &[Listed], now_ms: u64, retention_ms: u64) -> Vec<ObjectName> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    let (ckpts, _) = split(list);
    let Some(keep) = ckpts.iter().filter(|c| c.time_ms > 0 && c.time_ms < cutoff).max_by_key(|c| c.seq) else {
        return Vec::new();
    };
    list.iter()
        .map(|l| l.name)
        .filter(|n| match n {
            ObjectName::Checkpoint(c) => c.seq < keep.seq && c.time_ms < cutoff,
            ObjectName::Wal(w) => w.last <= keep.seq && w.last_ms < cutoff,
        })
        .collect()
}

/// Epochs of the seqs seen so far, as runs: two objects (or an object and a checkpoint's epoch
/// marks) holding one seq must agree on its epoch, or they come from two histories.
#[derive(Debug, Default)]
pub struct EpochRuns {
    /// first seq → (last seq, epoch)
    runs: BTreeMap<u64, (u64, u64)>,
}

impl EpochRuns {
    /// The epoch already seen at `seq`, if any.
    pub fn get(&self, seq: u64) -> Option<u64> {
        self.runs.range(..=seq).next_back().filter(|(_, (last, _))| *last >= seq).map(|(_, (_, e))| *e)
    }

    /// Records `seq` at `epoch`; `Err(existing)` when another epoch was seen at `seq`.
    pub fn check_or_add(&mut self, seq: u64, epoch: u64) -> Result<(), u64> {
        match self.get(seq) {
            Some(e) if e == epoch => Ok(()),
            Some(e) => Err(e),
            None => {
                if let Some((_, (last, e))) = self.runs.range_mut(..seq).next_back()
                    && *last + 1 == seq
                    && *e == epoch
                {
                    *last = seq;
                } else {
                    self.runs.insert(seq, (seq, epoch));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(first: u64, last: u64, first_ms: u64, last_ms: u64) -> Listed {
        Listed { name: ObjectName::Wal(WalName { first, last, epoch: 1, first_ms, last_ms, crc: 0 }), size: 1 }
    }
    fn c(seq: u64, time_ms: u64) -> Listed {
        Listed { name: ObjectName::Checkpoint(CheckpointName { seq, epoch: 1, time_ms, crc: 0 }), size: 1 }
    }
    fn firsts(p: &Plan) -> Vec<u64> {
        p.wal.iter().map(|w| w.first).collect()
    }

    #[test]
    fn the_newest_checkpoint_at_or_before_the_target_is_chosen() {
        let l = vec![w(1, 10, 1, 10), c(10, 10), w(11, 20, 11, 20), c(20, 20), w(21, 30, 21, 30)];
        let p = plan(&l, Target::Seq(25)).unwrap();
        assert_eq!(p.base.seq(), 20);
        assert_eq!(firsts(&p), vec![21]);
        let p = plan(&l, Target::Seq(20)).unwrap();
        assert_eq!((p.base.seq(), firsts(&p)), (20, vec![]));
        let p = plan(&l, Target::Seq(5)).unwrap();
        assert_eq!((p.base, firsts(&p)), (Base::Empty, vec![1]));
        let p = plan(&l, Target::Latest).unwrap();
        assert_eq!((p.base.seq(), p.through), (20, 30));
        assert!(plan(&l, Target::Seq(31)).unwrap_err().contains("seqs 0..=30"));
    }

    #[test]
    fn a_gap_is_bridged_only_by_a_checkpoint_after_it() {
        // 11..=14 missing; the checkpoint at 14 bridges it.
        let l = vec![w(1, 10, 1, 10), w(15, 20, 15, 20), c(14, 14), w(21, 30, 21, 30)];
        assert_eq!(gaps(&l), vec![(11, 14)]);
        let e = plan(&l, Target::Seq(12)).unwrap_err();
        assert!(e.contains("no record after seq 10"), "{e}");
        assert!(e.contains("seqs 0..=10, seqs 14..=30"), "{e}");
        let p = plan(&l, Target::Seq(25)).unwrap();
        assert_eq!((p.base.seq(), firsts(&p)), (14, vec![15, 21]));
        // A checkpoint before the gap does not bridge it.
        let l = vec![c(5, 5), w(6, 10, 6, 10), w(15, 20, 15, 20)];
        assert!(plan(&l, Target::Seq(16)).is_err());
        assert_eq!(plan(&l, Target::Latest).unwrap().through, 10);
    }

    #[test]
    fn overlapping_objects_each_extend_the_chain_once() {
        let l = vec![c(0, 1), w(1, 10, 1, 10), w(5, 12, 5, 12), w(8, 9, 8, 9), w(13, 20, 13, 20)];
        let p = plan(&l, Target::Latest).unwrap();
        assert_eq!(firsts(&p), vec![1, 5, 13]);
        assert_eq!(p.through, 20);
    }

    #[test]
    fn a_time_target_cuts_at_the_first_record_after_it() {
        let l = vec![w(1, 10, 100, 200), c(10, 200), w(11, 20, 210, 300), c(20, 300), w(21, 30, 310, 400)];
        let p = plan(&l, Target::Time(250)).unwrap();
        assert_eq!((p.base.seq(), firsts(&p), p.stop_after_ms), (10, vec![11], Some(250)));
        let p = plan(&l, Target::Time(305)).unwrap();
        assert_eq!((p.base.seq(), firsts(&p)), (20, vec![]), "the cut falls between objects");
        let p = plan(&l, Target::Time(10_000)).unwrap();
        assert_eq!((p.base.seq(), p.through), (20, 30));
        let p = plan(&l, Target::Time(50)).unwrap();
        assert_eq!((p.base, p.through), (Base::Empty, 0), "before the first record: the empty state");
        // Without the wal from seq 1, nothing is at or before a time older than every checkpoint.
        let l = vec![c(10, 200), w(11, 20, 210, 300)];
        assert!(plan(&l, Target::Time(150)).is_err());
    }

    #[test]
    fn retention_keeps_the_newest_checkpoint_past_the_window_and_all_after_it() {
        let day = 86_400_000;
        let l = vec![
            w(1, 10, day, day),
            c(10, day),
            w(11, 20, 2 * day, 2 * day),
            c(20, 2 * day),
            w(21, 30, 3 * day, 9 * day),
            c(30, 9 * day),
            w(31, 40, 10 * day, 10 * day),
        ];
        let gone = expired(&l, 10 * day, 7 * day);
        assert_eq!(gone, vec![l[0].name, l[1].name, l[2].name]);
        // Nothing older than the window: nothing deleted; no checkpoint past it: nothing either.
        assert!(expired(&l, 2 * day, 7 * day).is_empty());
        assert!(expired(&[w(1, 10, 1, 1), w(11, 20, 2, 2)], 100 * day, day).is_empty());
    }

    #[test]
    fn epoch_runs_find_disagreements() {
        let mut r = EpochRuns::default();
        for s in 1..=10 {
            r.check_or_add(s, 1).unwrap();
        }
        for s in 11..=20 {
            r.check_or_add(s, 2).unwrap();
        }
        assert_eq!(r.runs.len(), 2);
        assert_eq!(r.check_or_add(5, 1), Ok(()));
        assert_eq!(r.check_or_add(12, 3), Err(2));
        assert_eq!(r.get(21), None);
    }
}
