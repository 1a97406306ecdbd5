//! The summary: one `key=value` line per figure, and each target's PASS or FAIL.
//!
//! ```text
//! tfs_vs_etcd3_write_ratio=12.34 tfs_vs_etcd1_write_ratio=20.10 p99_ratio_at_c=1:0.52,16:0.71
//! tfs_vs_rpc_ceiling=0.55
//! tfs_session_vs_etcd3_write_ratio=40.10 tfs_session_vs_etcd1_write_ratio=61.00 session_p99_ratio_at_c=1:0.50,16:0.40
//! tfs_session_vs_rpc_ceiling=2.10
//! failover_kill_p50_s=0.410 p90_s=0.620 max_s=0.910 trials=20 failed_requests=0
//! failover_podloss_p50_s=...        (same keys)
//! switchover_p50_s=...              (same keys)
//! restart_s_1m=0.330 restart_s_10m=2.240 bytes_per_block_1m=180 bytes_per_block_10m=131
//! catch_up_records_per_s=2035123
//! tls_throughput_ratio=0.912 rounds=4 per_round=0.90,0.93,0.91,0.92 p99_ms_plain=14.10 p99_ms_tls=15.02 paced_p99_ms_plain=3.10 paced_p99_ms_tls=3.41
//! tfs_archive_cost_ratio=0.960 rounds=3 off_median_ops_per_s=35763 on_median_ops_per_s=34318
//! tfs_archive_lag_p99_s=1.000 p50_s=0.513 max_s=1.001 ops_per_s=5000 samples=278 failed=0
//! tfs_restore_10m_blocks_s=23.30 blocks=10000100 log_records=1000200 restore_s=20.10 open_s=3.20 total_s=23.30
//! target_writes=PASS tfs_vs_etcd3_write_ratio=12.34 p99_worse_than_etcd3_at_c=none goal=ratio>=10,p99<=etcd3
//! target_failover_kill=PASS p50_s=0.410 goal=p50<=2
//! target_failover_podloss=PASS p50_s=5.900 goal=p50<=6.5
//! target_switchover=PASS p50_s=0.420 failed_requests=0 goal=p50<=1,failed=0
//! target_tls=PASS tls_throughput_ratio=0.912 goal=ratio>=0.85
//! ```
//!
//! A figure whose section is absent from the results gets no line but a note; a value that cannot
//! be computed (a system or a block count not measured) reads `n/a`, and so does a target that
//! cannot be judged. A target fails as soon as one of its measured parts fails.

use std::fmt;

use crate::numbers::{NA, fixed, short, thousands};
use crate::results::{
    ArchiveCost, ArchiveLag, Backup, CatchUp, ETCD1, ETCD3, Failover, KILL, PODLOSS, Recovery, Restore, Results,
    SWITCHOVER, TFS, TFS_ECHO, TFS_SESSION, TlsCost, TlsRound, Writes, blocks_label,
};
use crate::stats::{Spread, best_ops, median, p99_ratios, p99_ratios_of, ratio};

/// tfs must write this many times faster than etcd with 3 members.
pub const WRITE_RATIO_GOAL: f64 = 10.0;
/// Median time to a new master after `kill -9` of the master's nameserver.
pub const KILL_P50_GOAL_S: f64 = 2.0;
/// After the master's pod is lost, the median may exceed the lease duration by this much.
pub const PODLOSS_SLACK_S: f64 = 1.5;
/// Median time of a planned switchover, which must also fail no request.
pub const SWITCHOVER_P50_GOAL_S: f64 = 1.0;
/// Replicated creates with TLS on every hop keep at least this share of the plain throughput.
pub const TLS_RATIO_GOAL: f64 = 0.85;
/// Issue #16: replicated creates with the archive on keep at least this share of the throughput
/// with it off.
pub const ARCHIVE_COST_RATIO_GOAL: f64 = 0.90;
/// Issue #16: the archive's p99 lag while writing at [`ARCHIVE_LAG_RATE`].
pub const ARCHIVE_LAG_P99_GOAL_S: f64 = 2.0;
/// The write rate the lag goal speaks of, creates/s.
pub const ARCHIVE_LAG_RATE: f64 = 5000.0;
/// A paced run is at its rate when it achieved at least this share of it.
pub const RATE_REACHED: f64 = 0.95;
/// Issue #16: a restore of this many blocks (a checkpoint and [`RESTORE_LOG_RECORDS`] records of
/// log on top) to serving within [`RESTORE_GOAL_S`].
pub const RESTORE_BLOCKS: u64 = 10_000_000;
pub const RESTORE_LOG_RECORDS: u64 = 1_000_000;
pub const RESTORE_GOAL_S: f64 = 60.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not enough measured to judge.
    NoData,
}

impl Verdict {
    /// PASS when every part passes, FAIL when any measured part fails, otherwise no data.
    fn all(parts: &[Option<bool>]) -> Verdict {
        if parts.contains(&Some(false)) {
            Verdict::Fail
        } else if parts.iter().all(|p| *p == Some(true)) {
            Verdict::Pass
        } else {
            Verdict::NoData
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NoData => NA,
        })
    }
}

/// One target, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `writes`, `failover_kill`, ...: the summary key is `target_<key>`.
    pub key: &'static str,
    /// The goal in words, for the table.
    pub goal: String,
    /// The goal in the summary line's spelling, without spaces.
    pub goal_key: String,
    /// What was measured, as `key=value` pairs.
    pub measured: Vec<(&'static str, String)>,
    pub verdict: Verdict,
}

impl Target {
    /// `target_writes=PASS tfs_vs_etcd3_write_ratio=12.34 ... goal=...`
    pub fn line(&self) -> String {
        let mut line = format!("target_{}={}", self.key, self.verdict);
        for (k, v) in &self.measured {
            line.push_str(&format!(" {k}={v}"));
        }
        line.push_str(&format!(" goal={}", self.goal_key));
        line
    }

    /// The measured pairs in words, for the table: `p50_s 0.410, failed_requests 0`.
    pub fn measured_text(&self) -> String {
        self.measured.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }
}

/// Everything the summary says.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// One line per figure, in a fixed order.
    pub lines: Vec<String>,
    /// What could not be summarised and why.
    pub notes: Vec<String>,
    pub targets: Vec<Target>,
}

impl Summary {
    pub fn of(results: &Results) -> Summary {
        let mut s = Summary::default();
        match &results.writes {
            Some(w) => s.writes(w),
            None => s.notes.push("no `writes` section: no write ratios".into()),
        }
        match &results.failover {
            Some(f) => s.failover(f),
            None => s.notes.push("no `failover` section: no failover times".into()),
        }
        match &results.recovery {
            Some(r) => s.lines.push(recovery_line(r)),
            None => s.notes.push("no `recovery` section: no restart times or bytes per block".into()),
        }
        match &results.catch_up {
            Some(c) => s.lines.push(catch_up_line(c)),
            None => s.notes.push("no `catch_up` section: no catch-up rate".into()),
        }
        match &results.tls_cost {
            Some(t) => s.lines.push(tls_line(t)),
            None => s.notes.push("no `tls_cost` section: no TLS cost".into()),
        }
        match &results.backup {
            Some(b) => s.lines.extend(backup_lines(b)),
            None => s.notes.push("no `backup` section: no archive cost, archive lag or restore time".into()),
        }
        s.targets.push(writes_target(results.writes.as_ref()));
        s.targets.extend(failover_targets(results.failover.as_ref()));
        s.targets.push(tls_target(results.tls_cost.as_ref()));
        s
    }

    /// The figure lines, then one line per target.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.iter().cloned().chain(self.targets.iter().map(Target::line)).collect()
    }

    fn writes(&mut self, w: &Writes) {
        let tfs = best_ops(w, TFS);
        for system in [TFS, TFS_SESSION, TFS_ECHO, ETCD3, ETCD1] {
            if best_ops(w, system).is_none() {
                self.notes.push(format!("writes: no points for {system}"));
            }
        }
        let p99: Vec<String> = p99_ratios(w).iter().map(|(c, r)| format!("{c}:{r:.2}")).collect();
        self.lines.push(format!(
            "tfs_vs_etcd3_write_ratio={} tfs_vs_etcd1_write_ratio={} p99_ratio_at_c={}",
            fixed(ratio(tfs, best_ops(w, ETCD3)), 2),
            fixed(ratio(tfs, best_ops(w, ETCD1)), 2),
            if p99.is_empty() { NA.to_string() } else { p99.join(",") },
        ));
        self.lines.push(format!("tfs_vs_rpc_ceiling={}", fixed(ratio(tfs, best_ops(w, TFS_ECHO)), 2)));
        // The same figures for creates on pipelined sessions (issue #19: past the unary ceiling).
        let session = best_ops(w, TFS_SESSION);
        let p99: Vec<String> = p99_ratios_of(w, TFS_SESSION).iter().map(|(c, r)| format!("{c}:{r:.2}")).collect();
        self.lines.push(format!(
            "tfs_session_vs_etcd3_write_ratio={} tfs_session_vs_etcd1_write_ratio={} session_p99_ratio_at_c={}",
            fixed(ratio(session, best_ops(w, ETCD3)), 2),
            fixed(ratio(session, best_ops(w, ETCD1)), 2),
            if p99.is_empty() { NA.to_string() } else { p99.join(",") },
        ));
        self.lines.push(format!("tfs_session_vs_rpc_ceiling={}", fixed(ratio(session, best_ops(w, TFS_ECHO)), 2)));
    }

    fn failover(&mut self, f: &Failover) {
        for kind in f.kinds() {
            let seconds: Vec<f64> = f.of_kind(kind).map(|t| t.seconds).collect();
            let failed: u64 = f.of_kind(kind).map(|t| t.failed_requests).sum();
            let Some(spread) = Spread::of(&seconds) else { continue };
            self.lines.push(format!(
                "{}_p50_s={:.3} p90_s={:.3} max_s={:.3} trials={} failed_requests={failed}",
                kind_key(kind),
                spread.p50,
                spread.p90,
                spread.max,
                spread.n
            ));
        }
        for kind in [KILL, PODLOSS, SWITCHOVER] {
            if f.of_kind(kind).next().is_none() {
                self.notes.push(format!("failover: no {kind} trials"));
            }
        }
    }
}

/// The summary key prefix of a failover kind: `failover_kill`, `switchover`, `failover_<kind>`.
fn kind_key(kind: &str) -> String {
    if kind == SWITCHOVER { SWITCHOVER.to_string() } else { format!("failover_{kind}") }
}

fn writes_target(w: Option<&Writes>) -> Target {
    let write_ratio = w.and_then(|w| ratio(best_ops(w, TFS), best_ops(w, ETCD3)));
    let p99 = w.map(p99_ratios).unwrap_or_default();
    let worse: Vec<String> = p99.iter().filter(|(_, r)| *r > 1.0).map(|(c, _)| c.to_string()).collect();
    let p99_ok = if p99.is_empty() { None } else { Some(worse.is_empty()) };
    Target {
        key: "writes",
        goal: format!(
            "best tfs ops/s ≥ {WRITE_RATIO_GOAL} × best etcd-3, p99 no worse than etcd-3 at equal concurrency"
        ),
        goal_key: format!("ratio>={WRITE_RATIO_GOAL},p99<=etcd3"),
        measured: vec![
            ("tfs_vs_etcd3_write_ratio", fixed(write_ratio, 2)),
            (
                "p99_worse_than_etcd3_at_c",
                match p99_ok {
                    None => NA.to_string(),
                    Some(true) => "none".to_string(),
                    Some(false) => worse.join(","),
                },
            ),
        ],
        verdict: Verdict::all(&[write_ratio.map(|r| r >= WRITE_RATIO_GOAL), p99_ok]),
    }
}

fn failover_targets(f: Option<&Failover>) -> Vec<Target> {
    let p50 = |kind| {
        let seconds: Vec<f64> = f.map(|f| f.of_kind(kind).map(|t| t.seconds).collect()).unwrap_or_default();
        Spread::of(&seconds).map(|s| s.p50)
    };
    let p50_target = |key, kind, goal: Option<f64>, goal_words: String, goal_key: String| {
        let p50 = p50(kind);
        Target {
            key,
            goal: goal_words,
            goal_key,
            measured: vec![("p50_s", fixed(p50, 3))],
            verdict: Verdict::all(&[p50.zip(goal).map(|(p, g)| p <= g)]),
        }
    };
    let lease = f.map(|f| f.lease_duration_s);
    let podloss_goal = lease.map(|l| l + PODLOSS_SLACK_S);
    let (podloss_words, podloss_key) = match podloss_goal {
        Some(g) => {
            (format!("p50 ≤ lease duration + {PODLOSS_SLACK_S} s = {} s", short(g)), format!("p50<={}", short(g)))
        }
        None => (format!("p50 ≤ lease duration + {PODLOSS_SLACK_S} s"), format!("p50<=lease+{PODLOSS_SLACK_S}")),
    };
    let switch_p50 = p50(SWITCHOVER);
    let switch_failed = switch_p50.and(f).map(|f| f.of_kind(SWITCHOVER).map(|t| t.failed_requests).sum::<u64>());
    vec![
        p50_target(
            "failover_kill",
            KILL,
            Some(KILL_P50_GOAL_S),
            format!("p50 ≤ {KILL_P50_GOAL_S} s"),
            format!("p50<={KILL_P50_GOAL_S}"),
        ),
        p50_target("failover_podloss", PODLOSS, podloss_goal, podloss_words, podloss_key),
        Target {
            key: "switchover",
            goal: format!("p50 ≤ {SWITCHOVER_P50_GOAL_S} s and no failed request"),
            goal_key: format!("p50<={SWITCHOVER_P50_GOAL_S},failed=0"),
            measured: vec![
                ("p50_s", fixed(switch_p50, 3)),
                ("failed_requests", switch_failed.map_or(NA.to_string(), |n| n.to_string())),
            ],
            verdict: Verdict::all(&[switch_p50.map(|p| p <= SWITCHOVER_P50_GOAL_S), switch_failed.map(|n| n == 0)]),
        },
    ]
}

/// `restart_s_1m=… restart_s_10m=… bytes_per_block_1m=… bytes_per_block_10m=…`; 1M and 10M
/// blocks are always named (`n/a` when not measured), with any other count measured, by count.
fn recovery_line(recovery: &[Recovery]) -> String {
    let mut blocks: Vec<u64> = recovery.iter().map(|r| r.blocks).chain([1_000_000, 10_000_000]).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let at = |b| recovery.iter().find(|r| r.blocks == b);
    let restart = blocks
        .iter()
        .map(|&b| format!("restart_s_{}={}", blocks_label(b), fixed(at(b).map(|r| r.restart_to_serving_s), 3)));
    let bytes = blocks
        .iter()
        .map(|&b| format!("bytes_per_block_{}={}", blocks_label(b), fixed(at(b).map(|r| r.bytes_per_block), 0)));
    restart.chain(bytes).collect::<Vec<_>>().join(" ")
}

/// Medians over the rounds: each ratio is taken within its round, plain and TLS side by side.
pub fn tls_line(t: &TlsCost) -> String {
    let m = |f: &dyn Fn(&TlsRound) -> f64| median(t.rounds.iter().map(f).collect());
    format!(
        "tls_throughput_ratio={} rounds={} per_round={} p99_ms_plain={} p99_ms_tls={} paced_p99_ms_plain={} paced_p99_ms_tls={}",
        fixed(median(t.ratios()), 3),
        t.rounds.len(),
        t.ratios().iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(","),
        fixed(m(&|r| r.plain.create.p99_ms), 2),
        fixed(m(&|r| r.tls.create.p99_ms), 2),
        fixed(m(&|r| r.plain.create_paced.p99_ms), 2),
        fixed(m(&|r| r.tls.create_paced.p99_ms), 2),
    )
}

fn tls_target(t: Option<&TlsCost>) -> Target {
    let r = t.and_then(|t| median(t.ratios()));
    Target {
        key: "tls",
        goal: format!(
            "replicated creates with TLS on every hop ≥ {TLS_RATIO_GOAL} × plain (median of alternating rounds)"
        ),
        goal_key: format!("ratio>={TLS_RATIO_GOAL}"),
        measured: vec![("tls_throughput_ratio", fixed(r, 3))],
        verdict: Verdict::all(&[r.map(|r| r >= TLS_RATIO_GOAL)]),
    }
}

/// Whether the archive's cost meets its goal: the recorded ratio of the medians.
pub fn archive_cost_met(c: &ArchiveCost) -> bool {
    c.ratio_on_off >= ARCHIVE_COST_RATIO_GOAL
}

/// Whether the archive's p99 lag meets its goal, or why the run cannot tell: no lag sampled, or
/// written below the goal's rate.
pub fn archive_lag_met(l: &ArchiveLag) -> Result<bool, String> {
    if l.ops_per_s < RATE_REACHED * ARCHIVE_LAG_RATE {
        return Err(format!("written at {} creates/s, not {}", thousands(l.ops_per_s), thousands(ARCHIVE_LAG_RATE)));
    }
    let p99 = l.lag_p99_s.ok_or_else(|| "no lag sample".to_string())?;
    Ok(p99 <= ARCHIVE_LAG_P99_GOAL_S)
}

/// Whether the restore had the goal's size: the blocks and the records of log on top of the
/// checkpoint.
pub fn restore_at_scale(r: &Restore) -> Result<(), String> {
    if r.blocks < RESTORE_BLOCKS || r.log_records < RESTORE_LOG_RECORDS {
        return Err(format!(
            "{} blocks with {} records of log, not {} with {}",
            thousands(r.blocks as f64),
            thousands(r.log_records as f64),
            thousands(RESTORE_BLOCKS as f64),
            thousands(RESTORE_LOG_RECORDS as f64)
        ));
    }
    Ok(())
}

/// Whether the restore to serving meets its goal, or why the run cannot tell.
pub fn restore_met(r: &Restore) -> Result<bool, String> {
    restore_at_scale(r).map(|()| r.total_s <= RESTORE_GOAL_S)
}

/// `tfs_archive_cost_ratio=…`, `tfs_archive_lag_p99_s=…`, `tfs_restore_10m_blocks_s=…`, each
/// with the figures behind it. The restore time reads `n/a` when the restore was smaller than
/// the goal's (its time is still in `total_s`).
fn backup_lines(b: &Backup) -> [String; 3] {
    let (c, l, r) = (&b.cost, &b.lag, &b.restore);
    [
        format!(
            "tfs_archive_cost_ratio={:.3} rounds={} off_median_ops_per_s={} on_median_ops_per_s={}",
            c.ratio_on_off,
            c.rounds,
            fixed(c.off_median(), 0),
            fixed(c.on_median(), 0),
        ),
        format!(
            "tfs_archive_lag_p99_s={} p50_s={} max_s={} ops_per_s={:.0} samples={} failed={}",
            fixed(l.lag_p99_s, 3),
            fixed(l.lag_p50_s, 3),
            fixed(l.lag_max_s, 3),
            l.ops_per_s,
            l.samples,
            l.failed,
        ),
        format!(
            "tfs_restore_10m_blocks_s={} blocks={} log_records={} restore_s={:.2} open_s={:.2} total_s={:.2}",
            fixed(restore_at_scale(r).ok().map(|()| r.total_s), 2),
            r.blocks,
            r.log_records,
            r.restore_s,
            r.open_s,
            r.total_s,
        ),
    ]
}

fn catch_up_line(c: &CatchUp) -> String {
    format!("catch_up_records_per_s={:.0}", c.records_per_s())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fakes::{backup, point};
    use crate::results::{Trial, WritePoint};

    fn writes(points: Vec<WritePoint>) -> Writes {
        Writes { command: "make bench".into(), request: "r".into(), points }
    }

    fn trials(kind: &str, seconds: &[f64], failed: u64) -> Vec<Trial> {
        seconds
            .iter()
            .enumerate()
            .map(|(i, &s)| Trial { kind: kind.into(), trial: i as u32 + 1, seconds: s, failed_requests: failed })
            .collect()
    }

    #[test]
    fn nothing_measured_gives_notes_and_unjudged_targets() {
        let s = Summary::of(&Results::default());
        assert!(s.lines.is_empty());
        assert_eq!(s.notes.len(), 6);
        assert!(s.notes.iter().any(|n| n.contains("`backup`")));
        assert!(!s.lines.iter().any(|l| l.contains("archive") || l.contains("restore")));
        assert_eq!(
            s.stdout_lines(),
            [
                "target_writes=n/a tfs_vs_etcd3_write_ratio=n/a p99_worse_than_etcd3_at_c=n/a goal=ratio>=10,p99<=etcd3",
                "target_failover_kill=n/a p50_s=n/a goal=p50<=2",
                "target_failover_podloss=n/a p50_s=n/a goal=p50<=lease+1.5",
                "target_switchover=n/a p50_s=n/a failed_requests=n/a goal=p50<=1,failed=0",
                "target_tls=n/a tls_throughput_ratio=n/a goal=ratio>=0.85",
            ]
        );
    }

    #[test]
    fn write_lines_and_target() {
        let r = Results {
            writes: Some(writes(vec![
                point("tfs", 1, 1000.0, 2.0),
                point("tfs", 64, 30000.0, 5.0),
                point("tfs-echo", 64, 60000.0, 4.0),
                point("tfs-session", 1, 900.0, 2.0),
                point("tfs-session", 64, 120000.0, 3.0),
                point("etcd-3", 1, 300.0, 4.0),
                point("etcd-3", 64, 2500.0, 10.0),
                point("etcd-1", 64, 5000.0, 8.0),
                point("zk", 64, 1e9, 0.1),
            ])),
            ..Results::default()
        };
        let s = Summary::of(&r);
        assert_eq!(
            s.lines[..4],
            [
                "tfs_vs_etcd3_write_ratio=12.00 tfs_vs_etcd1_write_ratio=6.00 p99_ratio_at_c=1:0.50,64:0.50",
                "tfs_vs_rpc_ceiling=0.50",
                "tfs_session_vs_etcd3_write_ratio=48.00 tfs_session_vs_etcd1_write_ratio=24.00 \
                 session_p99_ratio_at_c=1:0.50,64:0.30",
                "tfs_session_vs_rpc_ceiling=2.00",
            ]
        );
        assert_eq!(
            s.targets[0].line(),
            "target_writes=PASS tfs_vs_etcd3_write_ratio=12.00 p99_worse_than_etcd3_at_c=none goal=ratio>=10,p99<=etcd3"
        );
    }

    #[test]
    fn a_worse_p99_fails_the_write_target_even_at_a_good_ratio() {
        let w = writes(vec![point("tfs", 1, 1000.0, 5.0), point("tfs", 8, 9000.0, 1.0), point("etcd-3", 1, 10.0, 4.0)]);
        let t = writes_target(Some(&w));
        assert_eq!(t.verdict, Verdict::Fail);
        assert_eq!(t.measured[1], ("p99_worse_than_etcd3_at_c", "1".to_string()));
    }

    #[test]
    fn a_low_ratio_fails_without_a_shared_concurrency() {
        let w = writes(vec![point("tfs", 1, 1000.0, 5.0), point("etcd-3", 8, 200.0, 4.0)]);
        assert_eq!(writes_target(Some(&w)).verdict, Verdict::Fail);
        let w = writes(vec![point("tfs", 1, 1000.0, 5.0), point("etcd-3", 8, 20.0, 4.0)]);
        assert_eq!(writes_target(Some(&w)).verdict, Verdict::NoData);
    }

    #[test]
    fn a_missing_system_reads_na() {
        let r = Results { writes: Some(writes(vec![point("tfs", 1, 1000.0, 5.0)])), ..Results::default() };
        let s = Summary::of(&r);
        assert_eq!(s.lines[0], "tfs_vs_etcd3_write_ratio=n/a tfs_vs_etcd1_write_ratio=n/a p99_ratio_at_c=n/a");
        assert_eq!(s.lines[1], "tfs_vs_rpc_ceiling=n/a");
        assert_eq!(
            s.lines[2],
            "tfs_session_vs_etcd3_write_ratio=n/a tfs_session_vs_etcd1_write_ratio=n/a session_p99_ratio_at_c=n/a"
        );
        assert_eq!(s.lines[3], "tfs_session_vs_rpc_ceiling=n/a");
        assert!(s.notes.iter().any(|n| n.contains("tfs-session")));
        assert!(s.notes.iter().any(|n| n.contains("etcd-3")));
    }

    #[test]
    fn failover_lines_and_targets() {
        let mut all = trials("kill", &[0.5, 0.3, 0.4, 3.0], 0);
        all.extend(trials("podloss", &[6.0, 6.6, 6.7], 1));
        all.extend(trials("switchover", &[0.2, 0.4], 2));
        all.extend(trials("freeze", &[8.0], 0));
        let r = Results {
            failover: Some(Failover { command: "c".into(), lease_duration_s: 5.0, trials: all }),
            ..Results::default()
        };
        let s = Summary::of(&r);
        assert_eq!(
            s.lines,
            [
                "failover_kill_p50_s=0.400 p90_s=3.000 max_s=3.000 trials=4 failed_requests=0",
                "failover_podloss_p50_s=6.600 p90_s=6.700 max_s=6.700 trials=3 failed_requests=3",
                "switchover_p50_s=0.200 p90_s=0.400 max_s=0.400 trials=2 failed_requests=4",
                "failover_freeze_p50_s=8.000 p90_s=8.000 max_s=8.000 trials=1 failed_requests=0",
            ]
        );
        let lines: Vec<String> = s.targets.iter().map(Target::line).collect();
        assert_eq!(
            lines[1..4],
            [
                "target_failover_kill=PASS p50_s=0.400 goal=p50<=2",
                "target_failover_podloss=FAIL p50_s=6.600 goal=p50<=6.5",
                "target_switchover=FAIL p50_s=0.200 failed_requests=4 goal=p50<=1,failed=0",
            ]
        );
    }

    #[test]
    fn recovery_and_catch_up_lines() {
        let rec = |blocks, restart, bytes| Recovery {
            blocks,
            rss_kib: 1.0,
            base_rss_kib: 0.0,
            bytes_per_block: bytes,
            restart_to_serving_s: restart,
            recovery_ms: 1.0,
        };
        assert_eq!(
            recovery_line(&[rec(10_000_000, 2.24, 131.0), rec(1_000_000, 0.33, 180.4)]),
            "restart_s_1m=0.330 restart_s_10m=2.240 bytes_per_block_1m=180 bytes_per_block_10m=131"
        );
        assert_eq!(
            recovery_line(&[rec(500_000, 0.2, 200.0)]),
            "restart_s_500k=0.200 restart_s_1m=n/a restart_s_10m=n/a \
             bytes_per_block_500k=200 bytes_per_block_1m=n/a bytes_per_block_10m=n/a"
        );
        assert_eq!(catch_up_line(&CatchUp { records: 2_000_000, seconds: 0.8 }), "catch_up_records_per_s=2500000");
    }

    #[test]
    fn tls_cost_is_the_median_of_per_round_ratios_and_judged_against_the_goal() {
        use crate::results::{Run, TlsRun};
        let run = |ops, p99| TlsRun {
            create: Run { ops_per_s: ops, p99_ms: p99 },
            create_paced: Run { ops_per_s: 1.0, p99_ms: p99 / 4.0 },
        };
        let round = |plain, tls| TlsRound { plain: run(plain, 10.0), tls: run(tls, 12.0) };
        // Throughput drifts between rounds; each ratio is taken within its round.
        let t =
            TlsCost { rate: 100.0, rounds: vec![round(1000.0, 900.0), round(2000.0, 1900.0), round(1500.0, 1200.0)] };
        assert_eq!(
            tls_line(&t),
            "tls_throughput_ratio=0.900 rounds=3 per_round=0.90,0.95,0.80 p99_ms_plain=10.00 p99_ms_tls=12.00 \
             paced_p99_ms_plain=2.50 paced_p99_ms_tls=3.00"
        );
        assert_eq!(tls_target(Some(&t)).verdict, Verdict::Pass);
        let slow = TlsCost { rate: 1.0, rounds: vec![round(1000.0, 800.0), round(1000.0, 840.0)] };
        assert_eq!(tls_target(Some(&slow)).verdict, Verdict::Fail);
        assert_eq!(tls_target(None).verdict, Verdict::NoData);
    }

    #[test]
    fn backup_lines_from_a_sample() {
        let r = Results { backup: Some(backup(0.96, Some(1.0), 10_000_100, 23.3)), ..Results::default() };
        let s = Summary::of(&r);
        assert_eq!(
            s.lines,
            [
                "tfs_archive_cost_ratio=0.960 rounds=3 off_median_ops_per_s=35763 on_median_ops_per_s=34318",
                "tfs_archive_lag_p99_s=1.000 p50_s=0.513 max_s=1.001 ops_per_s=5000 samples=278 failed=0",
                "tfs_restore_10m_blocks_s=23.30 blocks=10000100 log_records=1000200 restore_s=20.10 open_s=3.20 \
                 total_s=23.30",
            ]
        );
        assert!(!s.notes.iter().any(|n| n.contains("`backup`")));
        // A smaller restore is no figure for 10M blocks; a lag not sampled reads n/a.
        let small = backup(0.96, None, 1_000_100, 5.0);
        let lines = backup_lines(&small);
        assert!(lines[1].starts_with("tfs_archive_lag_p99_s=n/a "), "{}", lines[1]);
        assert!(lines[2].starts_with("tfs_restore_10m_blocks_s=n/a blocks=1000100 "), "{}", lines[2]);
        assert!(lines[2].ends_with(" restore_s=1.80 open_s=3.20 total_s=5.00"), "{}", lines[2]);
    }

    #[test]
    fn backup_goals_are_judged_from_the_figures() {
        let b = backup(0.96, Some(1.0), 10_000_100, 23.3);
        assert!(archive_cost_met(&b.cost));
        assert_eq!(archive_lag_met(&b.lag), Ok(true));
        assert_eq!(restore_met(&b.restore), Ok(true));
        let b = backup(0.89, Some(2.01), 10_000_100, 60.5);
        assert!(!archive_cost_met(&b.cost));
        assert_eq!(archive_lag_met(&b.lag), Ok(false));
        assert_eq!(restore_met(&b.restore), Ok(false));
        let mut b = backup(0.9, None, 9_999_999, 1.0);
        assert!(archive_cost_met(&b.cost));
        assert_eq!(archive_lag_met(&b.lag), Err("no lag sample".to_string()));
        assert!(restore_met(&b.restore).unwrap_err().contains("9,999,999 blocks"));
        b.lag.lag_p99_s = Some(0.5);
        b.lag.ops_per_s = 3000.0;
        assert_eq!(archive_lag_met(&b.lag), Err("written at 3,000 creates/s, not 5,000".to_string()));
    }
}
