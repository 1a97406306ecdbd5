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

use crate::numbers::{NA, fixed};
use crate::results::{
    Backup, CatchUp, ETCD1, ETCD3, Failover, KILL, PODLOSS, Recovery, Results, SWITCHOVER, TFS, TFS_ECHO, TFS_SESSION,
    TlsCost, TlsRound, Writes, blocks_label,
};
use crate::stats::{Spread, best_ops, median, p99_ratios, p99_ratios_of, ratio};

mod targets;

pub use targets::{
    ARCHIVE_COST_RATIO_GOAL, ARCHIVE_LAG_P99_GOAL_S, ARCHIVE_LAG_RATE, KILL_P50_GOAL_S, PODLOSS_SLACK_S, RATE_REACHED,
    RESTORE_BLOCKS, RESTORE_GOAL_S, RESTORE_LOG_RECORDS, SWITCHOVER_P50_GOAL_S, TLS_RATIO_GOAL, Target, Verdict,
    WRITE_RATIO_GOAL, archive_cost_met, archive_lag_met, restore_at_scale, restore_met,
};
use targets::{failover_targets, session_targets, tls_target, writes_target};

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
        s.targets.extend(session_targets(results.writes.as_ref()));
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
mod tests;
