//! The targets: each goal, and the verdict of the measured figures against it.

use std::fmt;

use crate::numbers::{NA, fixed, short, thousands};
use crate::results::{
    ArchiveCost, ArchiveLag, ETCD3, Failover, KILL, PODLOSS, Restore, SWITCHOVER, TFS, TFS_ECHO, TFS_SESSION, TlsCost,
    Writes,
};
use crate::stats::{Spread, best_ops, median, p99_ratios_of, ratio};

/// tfs must write this many times faster than etcd with 3 members.
pub const WRITE_RATIO_GOAL: f64 = 10.0;
/// Issue #19: creates on pipelined sessions against the unary echo (the ceiling of one RPC per
/// operation) and against etcd with 3 members, each at its best concurrency.
pub const SESSION_VS_CEILING_GOAL: f64 = 2.0;
pub const SESSION_VS_ETCD3_GOAL: f64 = 4.0;
/// Issue #19: unary replicated creates against the unary echo on the same server.
pub const UNARY_VS_CEILING_GOAL: f64 = 0.6;
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

/// Whether `system`'s p99 is no worse than etcd-3's at every concurrency both were measured at
/// (`None`: none shared), and the concurrencies where it is worse, as the summary spells them.
fn p99_no_worse(w: Option<&Writes>, system: &str) -> (Option<bool>, String) {
    let p99 = w.map(|w| p99_ratios_of(w, system)).unwrap_or_default();
    let worse: Vec<String> = p99.iter().filter(|(_, r)| *r > 1.0).map(|(c, _)| c.to_string()).collect();
    match (p99.is_empty(), worse.is_empty()) {
        (true, _) => (None, NA.to_string()),
        (false, true) => (Some(true), "none".to_string()),
        (false, false) => (Some(false), worse.join(",")),
    }
}

/// `system`'s best ops/s over `other`'s.
fn best_ratio(w: Option<&Writes>, system: &str, other: &str) -> Option<f64> {
    w.and_then(|w| ratio(best_ops(w, system), best_ops(w, other)))
}

pub(super) fn writes_target(w: Option<&Writes>) -> Target {
    let write_ratio = best_ratio(w, TFS, ETCD3);
    let (p99_ok, worse) = p99_no_worse(w, TFS);
    Target {
        key: "writes",
        goal: format!(
            "best tfs ops/s ≥ {WRITE_RATIO_GOAL} × best etcd-3, p99 no worse than etcd-3 at equal concurrency"
        ),
        goal_key: format!("ratio>={WRITE_RATIO_GOAL},p99<=etcd3"),
        measured: vec![("tfs_vs_etcd3_write_ratio", fixed(write_ratio, 2)), ("p99_worse_than_etcd3_at_c", worse)],
        verdict: Verdict::all(&[write_ratio.map(|r| r >= WRITE_RATIO_GOAL), p99_ok]),
    }
}

/// Issue #19's targets: creates on sessions past the unary ceiling and etcd-3, unary creates
/// near the ceiling.
pub(super) fn session_targets(w: Option<&Writes>) -> Vec<Target> {
    let vs_ceiling = best_ratio(w, TFS_SESSION, TFS_ECHO);
    let vs_etcd3 = best_ratio(w, TFS_SESSION, ETCD3);
    let (p99_ok, worse) = p99_no_worse(w, TFS_SESSION);
    let unary = best_ratio(w, TFS, TFS_ECHO);
    vec![
        Target {
            key: "session",
            goal: format!(
                "best session creates/s ≥ {SESSION_VS_CEILING_GOAL} × best unary echo and ≥ {SESSION_VS_ETCD3_GOAL} × \
                 best etcd-3, p99 no worse than etcd-3 at equal concurrency"
            ),
            goal_key: format!("ceiling>={SESSION_VS_CEILING_GOAL},etcd3>={SESSION_VS_ETCD3_GOAL},p99<=etcd3"),
            measured: vec![
                ("tfs_session_vs_rpc_ceiling", fixed(vs_ceiling, 2)),
                ("tfs_session_vs_etcd3_write_ratio", fixed(vs_etcd3, 2)),
                ("session_p99_worse_than_etcd3_at_c", worse),
            ],
            verdict: Verdict::all(&[
                vs_ceiling.map(|r| r >= SESSION_VS_CEILING_GOAL),
                vs_etcd3.map(|r| r >= SESSION_VS_ETCD3_GOAL),
                p99_ok,
            ]),
        },
        Target {
            key: "unary_vs_rpc_ceiling",
            goal: format!("best unary creates/s ≥ {UNARY_VS_CEILING_GOAL} × best unary echo on the same server"),
            goal_key: format!("ratio>={UNARY_VS_CEILING_GOAL}"),
            // Three decimals: 0.598 is not 0.60.
            measured: vec![("tfs_vs_rpc_ceiling", fixed(unary, 3))],
            verdict: Verdict::all(&[unary.map(|r| r >= UNARY_VS_CEILING_GOAL)]),
        },
    ]
}

pub(super) fn failover_targets(f: Option<&Failover>) -> Vec<Target> {
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

pub(super) fn tls_target(t: Option<&TlsCost>) -> Target {
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
