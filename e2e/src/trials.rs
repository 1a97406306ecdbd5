//! Failover-time trials (`make bench`, bench/failover.sh): the same fault injected again and
//! again under a recording writer, each timed from the fault to the first write acknowledged
//! through the VIP at a newer epoch. The parsing here is pure and unit-tested; the binary
//! `failover-bench` drives the cluster.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use ::tfsctl::record::Ack;
use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// kill -9 of the master's nameserver process: its heart releases the Lease.
    Kill,
    /// Force-delete of the master pod.
    PodLoss,
    /// Planned switchover to the slave (annotation).
    Switchover,
    /// The master's node lost (e2e/cluster/node-down.sh), the operator's leader on another node.
    NodeLoss,
    /// The master's node lost with the operator's leader on it.
    NodeLossLeader,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Kill, Kind::Switchover, Kind::PodLoss, Kind::NodeLoss, Kind::NodeLossLeader];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::PodLoss => "podloss",
            Kind::Switchover => "switchover",
            Kind::NodeLoss => "nodeloss",
            Kind::NodeLossLeader => "nodeloss-leader",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "kill" => Ok(Kind::Kill),
            "podloss" => Ok(Kind::PodLoss),
            "switchover" => Ok(Kind::Switchover),
            "nodeloss" => Ok(Kind::NodeLoss),
            "nodeloss-leader" => Ok(Kind::NodeLossLeader),
            other => {
                bail!("unknown trial kind {other:?}: expected kill, podloss, switchover, nodeloss or nodeloss-leader")
            }
        }
    }
}

/// The order of the trials: kinds interleaved round by round, so that no pod is killed twice in
/// a row (the kubelet's restart back-off would grow) and the noise of the machine spreads over
/// every kind alike. A pod killed in one round is replaced by the pod-loss trial of that round.
pub fn schedule(kinds: &[Kind], trials_each: usize) -> Vec<Kind> {
    let order: Vec<Kind> = Kind::ALL.iter().copied().filter(|k| kinds.contains(k)).collect();
    (0..trials_each).flat_map(|_| order.iter().copied()).collect()
}

/// The first acknowledgement at an epoch above `old_epoch` acknowledged after `fault_ms`, in
/// record lines (tfsctl's record format, [`Ack`]). Returns its acked_ms.
pub fn first_ack_after(lines: &str, fault_ms: u64, old_epoch: u64) -> Option<u64> {
    lines
        .lines()
        .filter_map(|l| Ack::parse(l).ok())
        .filter(|a| a.epoch > old_epoch && a.acked_ms > fault_ms)
        .map(|a| a.acked_ms)
        .min()
}

/// (failed, retries) from the last progress line of a `tfsctl bench` log:
/// `tfsctl bench:   12.0s 4711 ok, 0 failed, 3 retries`.
pub fn bench_counters(log: &str) -> Option<(u64, u64)> {
    log.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("tfsctl bench:")?;
        let mut parts = rest.split(", ");
        parts.next()?;
        let failed = parts.next()?.strip_suffix(" failed")?.parse().ok()?;
        let retries = parts.next()?.strip_suffix(" retries")?.parse().ok()?;
        Some((failed, retries))
    })
}

/// Reads what a file gained since `offset` (complete lines only) and advances `offset`.
pub fn read_new_lines(path: &Path, offset: &mut u64) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = String::new();
    f.read_to_string(&mut buf)?;
    let end = buf.rfind('\n').map_or(0, |i| i + 1);
    buf.truncate(end);
    *offset += end as u64;
    Ok(buf)
}

/// Why a trial of `seconds` is slow enough that its logs are worth keeping, if it is: above twice
/// the median of the `earlier` trials of its kind (once there are three), or, before that, above
/// `absolute_s` (a bound no healthy trial of any kind comes near).
pub fn slow_trial(seconds: f64, earlier: &[f64], absolute_s: f64) -> Option<String> {
    if earlier.len() >= 3 {
        let mut v = earlier.to_vec();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        return (seconds > 2.0 * median)
            .then(|| format!("{seconds:.3} s, over twice the median {median:.3} s of the {} earlier", v.len()));
    }
    (seconds > absolute_s).then(|| format!("{seconds:.3} s, over {absolute_s:.0} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_is_slow_against_its_kinds_median_or_an_absolute_bound() {
        assert_eq!(slow_trial(9.0, &[5.0, 6.0], 15.0), None);
        assert!(slow_trial(16.0, &[5.0, 6.0], 15.0).unwrap().contains("over 15 s"));
        assert_eq!(slow_trial(11.0, &[5.0, 6.0, 5.5, 40.0], 15.0), None);
        let why = slow_trial(12.5, &[5.0, 6.0, 5.5, 40.0], 15.0).unwrap();
        assert!(why.contains("median 6.000 s of the 4 earlier"), "{why}");
    }

    #[test]
    fn schedule_interleaves_kinds_round_by_round() {
        let s = schedule(&[Kind::PodLoss, Kind::Kill, Kind::Switchover], 2);
        assert_eq!(s, vec![Kind::Kill, Kind::Switchover, Kind::PodLoss, Kind::Kill, Kind::Switchover, Kind::PodLoss]);
        assert_eq!(schedule(&[Kind::Switchover], 3), vec![Kind::Switchover; 3]);
        assert!(schedule(&[], 5).is_empty());
        assert!(Kind::parse("reboot").is_err());
        assert_eq!(Kind::parse("podloss").unwrap(), Kind::PodLoss);
        assert_eq!(Kind::parse("nodeloss-leader").unwrap(), Kind::NodeLossLeader);
        assert_eq!(
            schedule(&[Kind::NodeLossLeader, Kind::NodeLoss], 2),
            vec![Kind::NodeLoss, Kind::NodeLossLeader, Kind::NodeLoss, Kind::NodeLossLeader]
        );
    }

    #[test]
    fn first_ack_after_needs_a_newer_epoch_and_a_later_ack() {
        let rec = "C 1 4 10 990 1000\n\
                   C 2 4 11 1000 1500\n\
                   C 3 5 12 1600 1700\n\
                   M 3 2 5 13 1650 1650\n\
                   R 3 6 14 1800 1900\n\
                   C 9 5 15 100\n";
        // epoch 4's late ack (1500) does not count; epoch 5's commit at 1650 is the first.
        assert_eq!(first_ack_after(rec, 1200, 4), Some(1650));
        assert_eq!(first_ack_after(rec, 1200, 5), Some(1900));
        assert_eq!(first_ack_after(rec, 2000, 4), None);
        assert_eq!(first_ack_after("garbage\nC x y\n", 0, 0), None);
    }

    #[test]
    fn counters_come_from_the_last_progress_line() {
        let log = "tfsctl bench:    0.5s 10 ok, 0 failed, 0 retries\n\
                   some warning\n\
                   tfsctl bench:    1.0s 20 ok, 2 failed, 7 retries\n\
                   tfsctl bench: torn";
        assert_eq!(bench_counters(log), Some((2, 7)));
        assert_eq!(bench_counters("nothing yet"), None);
    }

    #[test]
    fn new_lines_are_read_once_and_torn_lines_wait() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("trials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("acked");
        let mut f = std::fs::File::create(&p).unwrap();
        let mut off = 0;
        write!(f, "a\nb\nc").unwrap();
        assert_eq!(read_new_lines(&p, &mut off).unwrap(), "a\nb\n");
        writeln!(f, "d").unwrap();
        assert_eq!(read_new_lines(&p, &mut off).unwrap(), "cd\n");
        assert_eq!(read_new_lines(&p, &mut off).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
