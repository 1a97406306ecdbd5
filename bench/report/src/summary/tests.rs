//! Unit tests of the summary lines and the targets' verdicts.

use super::*;
use crate::results::fakes::{backup, point};
use crate::results::{Trial, WritePoint};

fn writes(points: Vec<WritePoint>) -> Writes {
    Writes { command: "make bench".into(), request: "r".into(), rounds: None, points }
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
            "target_session=n/a tfs_session_vs_rpc_ceiling=n/a tfs_session_vs_etcd3_write_ratio=n/a \
             session_p99_worse_than_etcd3_at_c=n/a goal=ceiling>=2,etcd3>=4,p99<=etcd3",
            "target_unary_vs_rpc_ceiling=n/a tfs_vs_rpc_ceiling=n/a goal=ratio>=0.6",
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
    assert_eq!(
        s.targets[1].line(),
        "target_session=PASS tfs_session_vs_rpc_ceiling=2.00 tfs_session_vs_etcd3_write_ratio=48.00 \
         session_p99_worse_than_etcd3_at_c=none goal=ceiling>=2,etcd3>=4,p99<=etcd3"
    );
    assert_eq!(s.targets[2].line(), "target_unary_vs_rpc_ceiling=FAIL tfs_vs_rpc_ceiling=0.500 goal=ratio>=0.6");
}

#[test]
fn issue_19_targets_judge_each_part() {
    // Unary at 0.598 of the echo fails (it is not rounded up); a session p99 above etcd-3's at one
    // concurrency fails the session target whatever its throughput.
    let w = writes(vec![
        point("tfs", 64, 5980.0, 2.0),
        point("tfs-echo", 64, 10000.0, 1.0),
        point("tfs-session", 1, 900.0, 5.0),
        point("tfs-session", 64, 40000.0, 3.0),
        point("etcd-3", 1, 300.0, 4.0),
        point("etcd-3", 64, 2500.0, 10.0),
    ]);
    let t = session_targets(Some(&w));
    assert_eq!(t[0].verdict, Verdict::Fail);
    assert_eq!(t[0].measured[2], ("session_p99_worse_than_etcd3_at_c", "1".to_string()));
    assert_eq!(t[1].line(), "target_unary_vs_rpc_ceiling=FAIL tfs_vs_rpc_ceiling=0.598 goal=ratio>=0.6");
    let w = writes(vec![point("tfs", 64, 6000.0, 2.0), point("tfs-echo", 64, 10000.0, 1.0)]);
    let t = session_targets(Some(&w));
    assert_eq!(t[1].verdict, Verdict::Pass);
    assert_eq!(t[0].verdict, Verdict::NoData, "no session points: not judged");
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
        lines[3..6],
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
    let t = TlsCost { rate: 100.0, rounds: vec![round(1000.0, 900.0), round(2000.0, 1900.0), round(1500.0, 1200.0)] };
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
