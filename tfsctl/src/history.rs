//! History analysis of a record of acknowledged mutations (and of a fault log), pure: split
//! brain between epochs, write outages overall and after each fault.
//!
//! Time semantics. Every line of a record carries `sent_ms` (the client sent this attempt, or
//! began the call that made it: never later, see record.rs) and `acked_ms` (the client received
//! the acknowledgement), wall clock of the client. The server acknowledged the write at some
//! moment inside `[sent_ms, acked_ms]`; which one is unknown. So:
//!
//! - epoch `f` had certainly acknowledged a write by the first `acked_ms` among its lines;
//! - an older epoch `e < f` certainly acknowledged a write *after* that moment when one of its
//!   lines has `sent_ms` later than it: that write did not even exist before `f` acknowledged.
//!   Both masters acknowledged writes in overlapping windows: **split brain**;
//! - a line of `e` whose `acked_ms` (but not `sent_ms`) is later than `f`'s first acknowledgement
//!   *may* overlap: the old master may have decided before `f` did and its answer arrived late
//!   (a reply held in a frozen process, a slow network). These are counted as `late` acks and
//!   shown, not judged: they cannot tell a late delivery from an overlap.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::record::Ack;

/// One injected fault, as a chaos run logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: String,
    pub t_ms: u64,
}

/// Reads a JSON-lines fault log: every object with a string `kind` and a number `t_ms` is a
/// fault; other lines (convergence marks, comments of the harness) are skipped.
pub fn parse_faults(text: &str) -> Result<Vec<Fault>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("fault log line {} is not JSON", i + 1))?;
        if let (Some(kind), Some(t_ms)) =
            (v.get("kind").and_then(|k| k.as_str()), v.get("t_ms").and_then(|t| t.as_u64()))
        {
            out.push(Fault { kind: kind.to_string(), t_ms });
        }
    }
    out.sort_by_key(|f| f.t_ms);
    Ok(out)
}

/// The acknowledgements of one epoch, as the client saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochWindow {
    pub epoch: u64,
    pub acks: u64,
    pub first_sent_ms: u64,
    pub first_acked_ms: u64,
    pub last_sent_ms: u64,
    pub last_acked_ms: u64,
}

/// Per epoch, in epoch order.
pub fn epoch_windows(acks: &[Ack]) -> Vec<EpochWindow> {
    let mut m: BTreeMap<u64, EpochWindow> = BTreeMap::new();
    for a in acks {
        let w = m.entry(a.epoch).or_insert(EpochWindow {
            epoch: a.epoch,
            acks: 0,
            first_sent_ms: u64::MAX,
            first_acked_ms: u64::MAX,
            last_sent_ms: 0,
            last_acked_ms: 0,
        });
        w.acks += 1;
        w.first_sent_ms = w.first_sent_ms.min(a.sent_ms);
        w.first_acked_ms = w.first_acked_ms.min(a.acked_ms);
        w.last_sent_ms = w.last_sent_ms.max(a.sent_ms);
        w.last_acked_ms = w.last_acked_ms.max(a.acked_ms);
    }
    m.into_values().collect()
}

/// Acknowledgements of `older` that overlap the window of a newer epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub older: u64,
    /// The newer epoch whose first acknowledgement came earliest.
    pub newer: u64,
    pub newer_first_acked_ms: u64,
    /// Acks of `older` sent after that: certainly acknowledged later (split brain).
    pub certain: u64,
    /// Acks of `older` received after it but sent before: maybe only delivered late.
    pub late: u64,
    /// The latest such ack of `older` (sent_ms, acked_ms).
    pub last_sent_ms: u64,
    pub last_acked_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitBrain {
    /// Pairs of epochs with at least one certain or late overlap.
    pub overlaps: Vec<Overlap>,
    /// Acknowledgements that certainly overlap a newer epoch's window: must be 0.
    pub certain: u64,
    /// Acknowledgements received after a newer epoch's first one but sent before it.
    pub late: u64,
    /// How much later than the newer epoch's first ack the latest late ack arrived.
    pub max_late_ms: u64,
}

/// Checks that no epoch acknowledged a write after a newer epoch had (see the module doc).
pub fn split_brain(acks: &[Ack]) -> SplitBrain {
    let windows = epoch_windows(acks);
    // For each epoch: the newer epoch whose first acknowledgement came earliest.
    let mut newer_first: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut best: Option<(u64, u64)> = None; // (first_acked_ms, epoch)
    for w in windows.iter().rev() {
        if let Some(b) = best {
            newer_first.insert(w.epoch, b);
        }
        if best.is_none_or(|(t, _)| w.first_acked_ms < t) {
            best = Some((w.first_acked_ms, w.epoch));
        }
    }
    let mut pairs: BTreeMap<u64, Overlap> = BTreeMap::new();
    let mut out = SplitBrain::default();
    for a in acks {
        let Some(&(first, newer)) = newer_first.get(&a.epoch) else { continue };
        let certain = a.sent_ms > first;
        if !certain && a.acked_ms <= first {
            continue;
        }
        let o = pairs.entry(a.epoch).or_insert(Overlap {
            older: a.epoch,
            newer,
            newer_first_acked_ms: first,
            certain: 0,
            late: 0,
            last_sent_ms: 0,
            last_acked_ms: 0,
        });
        if certain {
            o.certain += 1;
            out.certain += 1;
        } else {
            o.late += 1;
            out.late += 1;
            out.max_late_ms = out.max_late_ms.max(a.acked_ms - first);
        }
        o.last_sent_ms = o.last_sent_ms.max(a.sent_ms);
        o.last_acked_ms = o.last_acked_ms.max(a.acked_ms);
    }
    out.overlaps = pairs.into_values().collect();
    out
}

/// A stretch of time without any acknowledgement, unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gap {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Gap {
    pub fn ms(&self) -> u64 {
        self.to_ms.saturating_sub(self.from_ms)
    }
}

/// The longest gap between consecutive times (sorted ascending).
pub fn longest_gap(sorted: &[u64]) -> Option<Gap> {
    sorted.windows(2).map(|w| Gap { from_ms: w[0], to_ms: w[1] }).max_by_key(|g| (g.ms(), std::cmp::Reverse(g.from_ms)))
}

/// What one fault did to the writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultOutage {
    pub index: usize,
    pub kind: String,
    pub t_ms: u64,
    /// The longest stretch without an acknowledgement from the fault itself to the next fault
    /// (or the end of the record): the write outage it caused.
    pub outage: Gap,
    /// All the time in the window spent in gaps of at least `STALL_MS`: a fault that stalls
    /// writes twice (a frozen slave, then a killed master) shows both stalls here.
    pub stalled_ms: u64,
    /// Whether any write was acknowledged after the fault (before the next one).
    pub recovered: bool,
    /// The epoch of the last acknowledgement before the fault.
    pub epoch_before: Option<u64>,
    /// The first acknowledgement at a higher epoch after the fault: (epoch, ms after the fault).
    pub failover: Option<(u64, u64)>,
}

/// A gap between acknowledgements at least this long counts as a stall (under a steady load of
/// hundreds of writes a second, gaps are a few ms).
pub const STALL_MS: u64 = 250;

/// Outage per fault. Each fault's window runs from its time to the next fault's.
pub fn fault_outages(acks: &[Ack], faults: &[Fault]) -> Vec<FaultOutage> {
    let mut by_time: Vec<(u64, u64)> = acks.iter().map(|a| (a.acked_ms, a.epoch)).collect();
    by_time.sort_unstable();
    let mut faults: Vec<&Fault> = faults.iter().collect();
    faults.sort_by_key(|f| f.t_ms);
    let mut out = Vec::with_capacity(faults.len());
    for (i, f) in faults.iter().enumerate() {
        let end = faults.get(i + 1).map(|n| n.t_ms).unwrap_or(u64::MAX);
        let start = by_time.partition_point(|x| x.0 < f.t_ms);
        let stop = by_time.partition_point(|x| x.0 < end);
        let epoch_before = start.checked_sub(1).map(|j| by_time[j].1);
        let window = &by_time[start..stop];
        // From the fault, through every acknowledgement in its window, to the next fault.
        let times: Vec<u64> =
            std::iter::once(f.t_ms).chain(window.iter().map(|x| x.0)).chain((end != u64::MAX).then_some(end)).collect();
        let outage = longest_gap(&times).unwrap_or(Gap { from_ms: f.t_ms, to_ms: f.t_ms });
        let stalled_ms = times.windows(2).map(|w| w[1] - w[0]).filter(|g| *g >= STALL_MS).sum();
        let failover = epoch_before.and_then(|e| window.iter().find(|x| x.1 > e)).map(|x| (x.1, x.0 - f.t_ms));
        out.push(FaultOutage {
            index: i,
            kind: f.kind.clone(),
            t_ms: f.t_ms,
            outage,
            stalled_ms,
            recovered: !window.is_empty(),
            epoch_before,
            failover,
        });
    }
    out
}

/// Outages of one kind of fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindStats {
    pub kind: String,
    pub count: usize,
    pub p50_ms: u64,
    pub max_ms: u64,
    pub stalled_p50_ms: u64,
    pub stalled_max_ms: u64,
    /// How many of them were followed by acknowledgements at a higher epoch.
    pub failovers: usize,
    /// Fault to first acknowledgement at a higher epoch: median over those that failed over.
    pub failover_p50_ms: Option<u64>,
}

/// The nearest-rank percentile of unsorted values (p in 0..=1).
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Per kind of fault, in kind order.
pub fn by_kind(outages: &[FaultOutage]) -> Vec<KindStats> {
    let mut m: BTreeMap<&str, Vec<&FaultOutage>> = BTreeMap::new();
    for o in outages {
        m.entry(o.kind.as_str()).or_default().push(o);
    }
    m.into_iter()
        .map(|(kind, os)| {
            let ms: Vec<u64> = os.iter().map(|o| o.outage.ms()).collect();
            let fo: Vec<u64> = os.iter().filter_map(|o| o.failover.map(|f| f.1)).collect();
            let stalled: Vec<u64> = os.iter().map(|o| o.stalled_ms).collect();
            KindStats {
                kind: kind.to_string(),
                count: os.len(),
                p50_ms: percentile(&ms, 0.5).unwrap_or(0),
                max_ms: ms.iter().copied().max().unwrap_or(0),
                stalled_p50_ms: percentile(&stalled, 0.5).unwrap_or(0),
                stalled_max_ms: stalled.iter().copied().max().unwrap_or(0),
                failovers: fo.len(),
                failover_p50_ms: percentile(&fo, 0.5),
            }
        })
        .collect()
}

/// Everything the history says, for printing and for the JSON summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub windows: Vec<EpochWindow>,
    pub split_brain: SplitBrain,
    /// The longest gap between consecutive acknowledgements over the whole record.
    pub max_gap: Option<Gap>,
    pub faults: Vec<FaultOutage>,
    pub kinds: Vec<KindStats>,
}

pub fn analyze(acks: &[Ack], faults: &[Fault]) -> History {
    let mut times: Vec<u64> = acks.iter().map(|a| a.acked_ms).collect();
    times.sort_unstable();
    let outages = fault_outages(acks, faults);
    History {
        windows: epoch_windows(acks),
        split_brain: split_brain(acks),
        max_gap: longest_gap(&times),
        kinds: by_kind(&outages),
        faults: outages,
    }
}

pub fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

impl History {
    pub fn max_unavailable_ms(&self) -> u64 {
        self.max_gap.map(|g| g.ms()).unwrap_or(0)
    }

    /// The per-kind table, one line per kind, with a header.
    pub fn kind_table(&self) -> String {
        let row = |c: [&str; 8]| {
            format!(
                "{:<28} {:>5} {:>9} {:>9} {:>10} {:>10} {:>9} {:>13}\n",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            )
        };
        let mut s = row(["fault kind", "count", "outage", "outage", "stalled", "stalled", "failovers", "failover"]);
        s.push_str(&row(["", "", "p50 s", "max s", "p50 s", "max s", "", "p50 s"]));
        for k in &self.kinds {
            s.push_str(&row([
                &k.kind,
                &k.count.to_string(),
                &secs(k.p50_ms),
                &secs(k.max_ms),
                &secs(k.stalled_p50_ms),
                &secs(k.stalled_max_ms),
                &k.failovers.to_string(),
                &k.failover_p50_ms.map(secs).unwrap_or_else(|| "-".into()),
            ]));
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        json!({
            "epochs": self.windows.iter().map(|w| json!({
                "epoch": w.epoch, "acks": w.acks, "first_sent_ms": w.first_sent_ms, "first_acked_ms": w.first_acked_ms,
                "last_sent_ms": w.last_sent_ms, "last_acked_ms": w.last_acked_ms,
            })).collect::<Vec<_>>(),
            "split_brain": self.split_brain.certain,
            "late_acks": self.split_brain.late,
            "max_late_ms": self.split_brain.max_late_ms,
            "overlaps": self.split_brain.overlaps.iter().map(|o| json!({
                "older": o.older, "newer": o.newer, "newer_first_acked_ms": o.newer_first_acked_ms,
                "certain": o.certain, "late": o.late, "last_sent_ms": o.last_sent_ms, "last_acked_ms": o.last_acked_ms,
            })).collect::<Vec<_>>(),
            "max_unavailable_s": self.max_unavailable_ms() as f64 / 1000.0,
            "max_gap": self.max_gap.map(|g| json!({"from_ms": g.from_ms, "to_ms": g.to_ms})),
            "faults": self.faults.iter().map(|f| json!({
                "index": f.index, "kind": f.kind, "t_ms": f.t_ms, "outage_s": f.outage.ms() as f64 / 1000.0,
                "outage_from_ms": f.outage.from_ms, "outage_to_ms": f.outage.to_ms,
                "stalled_s": f.stalled_ms as f64 / 1000.0, "recovered": f.recovered,
                "epoch_before": f.epoch_before, "failover_epoch": f.failover.map(|x| x.0),
                "failover_s": f.failover.map(|x| x.1 as f64 / 1000.0),
            })).collect::<Vec<_>>(),
            "by_kind": self.kinds.iter().map(|k| json!({
                "kind": k.kind, "count": k.count, "outage_p50_s": k.p50_ms as f64 / 1000.0,
                "outage_max_s": k.max_ms as f64 / 1000.0, "stalled_p50_s": k.stalled_p50_ms as f64 / 1000.0,
                "stalled_max_s": k.stalled_max_ms as f64 / 1000.0, "failovers": k.failovers,
                "failover_p50_s": k.failover_p50_ms.map(|m| m as f64 / 1000.0),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests;
