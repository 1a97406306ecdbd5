//! Unit tests of the results schema, its loading and its checks.

use super::*;

fn error_of(text: &str) -> String {
    format!("{:#}", Results::parse(text).unwrap_err())
}

#[test]
fn every_section_is_optional() {
    let r = Results::parse("{}").unwrap();
    assert!(r.machine.is_none() && r.writes.is_none() && r.failover.is_none());
    assert!(r.recovery.is_none() && r.catch_up.is_none() && r.tls_cost.is_none() && r.backup.is_none());
}

#[test]
fn free_form_and_unknown_sections_are_ignored() {
    let r = Results::parse(r#"{"standalone": {"echo": {"x": 1}}, "replicated": 3, "other": "s"}"#).unwrap();
    assert!(r.writes.is_none());
}

#[test]
fn a_missing_field_is_named_with_its_place() {
    let e = error_of(
        r#"{"writes": {"command": "c", "request": "r", "points": [
                {"system": "tfs", "concurrency": 1, "count": 1, "ops_per_s": 1, "p50_ms": 1, "failed": 0}]}}"#,
    );
    assert!(e.contains("writes.points[0]") && e.contains("p99_ms"), "{e}");
}

#[test]
fn a_mistyped_field_is_named() {
    let e = error_of(r#"{"failover": {"command": "c", "lease_duration_s": "five", "trials": []}}"#);
    assert!(e.contains("failover.lease_duration_s"), "{e}");
    let e = error_of(r#"{"recovery": {"blocks": 1}}"#);
    assert!(e.starts_with("recovery:"), "{e}");
}

#[test]
fn negative_figures_and_duplicates_are_errors() {
    let e = error_of(
        r#"{"failover": {"command": "c", "lease_duration_s": 5, "trials": [
            {"kind": "kill", "trial": 1, "seconds": -0.5, "failed_requests": 0}]}}"#,
    );
    assert!(e.contains("failover.trials[0].seconds"), "{e}");
    let point =
        r#"{"system": "tfs", "concurrency": 4, "count": 1, "ops_per_s": 1, "p50_ms": 1, "p99_ms": 1, "failed": 0}"#;
    let e = error_of(&format!(r#"{{"writes": {{"command": "c", "request": "r", "points": [{point}, {point}]}}}}"#));
    assert!(e.contains("writes.points[1]") && e.contains("writes.points[0]"), "{e}");
    let e = error_of(r#"{"catch_up": {"records": 5, "seconds": 0}}"#);
    assert!(e.contains("catch_up.seconds"), "{e}");
}

#[test]
fn a_point_in_rounds_must_be_its_median_round() {
    let doc = |rounds: &str, ops: &str| {
        format!(
            r#"{{"writes": {{"command": "c", "request": "r", "rounds": 3, "points": [{{"system": "tfs",
                "concurrency": 4, "count": 1, "ops_per_s": {ops}, "p50_ms": 1, "p99_ms": 1, "failed": 0,
                "rounds_ops_per_s": {rounds}}}]}}}}"#
        )
    };
    let r = Results::parse(&doc("[30, 10, 20]", "20")).unwrap();
    assert_eq!(r.writes.unwrap().points[0].rounds_ops_per_s, [30.0, 10.0, 20.0]);
    let e = error_of(&doc("[30, 10, 20]", "30"));
    assert!(e.contains("writes.points[0].ops_per_s") && e.contains("median"), "{e}");
    let e = error_of(&doc("[30, 10]", "10"));
    assert!(e.contains("2 rounds, the run says 3"), "{e}");
}

#[test]
fn a_backup_section_is_checked() {
    let backup = |cost: &str, p99: &str| {
        format!(
            r#"{{"backup": {{"cost": {cost},
                "lag": {{"rate_target": 5000, "ops_per_s": 4999.7, "failed": 0, "samples": 0,
                         "lag_p50_s": null, "lag_p99_s": {p99}, "lag_max_s": null, "archive_timeout_s": 1}},
                "restore": {{"blocks": 10, "seq": 20, "checkpoint_seq": 10, "checkpoint_bytes": 100, "log_records": 10,
                             "restore_s": 1.5, "open_s": 0.5, "total_s": 2.0, "tool": "restored"}}}}}}"#
        )
    };
    let good = r#"{"concurrency": 256, "rounds": 2, "off_ops_per_s": [10, 30], "on_ops_per_s": [9, 20],
                       "ratio_on_off": 0.725}"#;
    let r = Results::parse(&backup(good, "null")).unwrap();
    let b = r.backup.unwrap();
    assert_eq!((b.cost.off_median(), b.cost.on_median()), (Some(20.0), Some(14.5)));
    assert_eq!(b.lag.lag_p99_s, None);
    let e = error_of(&backup(good, "-1"));
    assert!(e.contains("backup.lag.lag_p99_s"), "{e}");
    let short = r#"{"concurrency": 256, "rounds": 2, "off_ops_per_s": [10, 30], "on_ops_per_s": [9],
                        "ratio_on_off": 0.7}"#;
    let e = error_of(&backup(short, "1"));
    assert!(e.contains("backup.cost") && e.contains("on_ops_per_s has 1"), "{e}");
    let e = error_of(r#"{"backup": {"cost": {}}}"#);
    assert!(e.contains("backup.cost") && e.contains("concurrency"), "{e}");
}

#[test]
fn not_json_is_an_error() {
    assert!(Results::parse("{").is_err());
}

#[test]
fn systems_and_kinds_come_in_a_fixed_order_then_by_name() {
    let p = |system, concurrency| fakes::point(system, concurrency, 1.0, 1.0);
    let w = Writes {
        command: String::new(),
        request: String::new(),
        rounds: None,
        points: vec![p("zk", 4), p("etcd-1", 1), p("tfs", 2), p("consul", 1), p("tfs", 1)],
    };
    assert_eq!(w.systems(), ["tfs", "etcd-1", "consul", "zk"]);
    assert_eq!(w.concurrencies(), [1, 2, 4]);
    assert_eq!(w.series("tfs").iter().map(|p| p.concurrency).collect::<Vec<_>>(), [1, 2]);
    let t = |kind: &str| Trial { kind: kind.into(), trial: 1, seconds: 1.0, failed_requests: 0 };
    let f =
        Failover { command: String::new(), lease_duration_s: 5.0, trials: vec![t("x"), t("switchover"), t("kill")] };
    assert_eq!(f.kinds(), ["kill", "switchover", "x"]);
}

#[test]
fn block_labels() {
    assert_eq!(blocks_label(1_000_000), "1m");
    assert_eq!(blocks_label(10_000_000), "10m");
    assert_eq!(blocks_label(500_000), "500k");
    assert_eq!(blocks_label(1_500), "1500");
}
