//! Unit tests of the generated blocks.

use super::*;
use crate::results::{Trial, WritePoint};

#[test]
fn writes_table_has_a_row_per_concurrency_and_a_dash_where_a_system_was_not_measured() {
    let p = |system: &str, concurrency, ops_per_s| WritePoint {
        system: system.into(),
        concurrency,
        count: 1000,
        ops_per_s,
        p50_ms: 0.5,
        p99_ms: 2.25,
        failed: if system == "etcd-3" { 3 } else { 0 },
        rounds_ops_per_s: vec![],
    };
    let w = Writes {
        command: "make bench".into(),
        request: "one CreateBlock, 40 bytes.".into(),
        rounds: None,
        points: vec![p("etcd-3", 4, 900.0), p("tfs", 1, 1234.6), p("tfs", 4, 40000.0)],
    };
    assert_eq!(
        writes(&w, Some("bench")),
        "Command: `make bench`. Request: one CreateBlock, 40 bytes.\n\n\
         | concurrency | tfs ops/s | tfs p50 ms | tfs p99 ms | etcd-3 ops/s | etcd-3 p50 ms | etcd-3 p99 ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | 1 | 1,235 | 0.50 | 2.25 | — | — | — |\n\
         | 4 | 40,000 | 0.50 | 2.25 | 900 | 0.50 | 2.25 |\n\
         \nFailed requests: etcd-3 at concurrency 4: 3 of 1000.\n\
         \n![Write throughput vs concurrency](bench/writes_throughput.svg)\n\
         \n![p99 write latency vs concurrency](bench/writes_p99.svg)\n"
    );
    assert!(!writes(&w, None).contains("!["));
}

#[test]
fn writes_in_rounds_say_so_and_name_the_widest_spread() {
    let p = |system: &str, rounds: Vec<f64>| WritePoint {
        system: system.into(),
        concurrency: 16,
        count: 1000,
        ops_per_s: rounds[1],
        p50_ms: 0.5,
        p99_ms: 2.25,
        failed: 0,
        rounds_ops_per_s: rounds,
    };
    let w = Writes {
        command: "make bench".into(),
        request: "r".into(),
        rounds: Some(3),
        points: vec![p("tfs", vec![900.0, 1000.0, 1100.0]), p("etcd-3", vec![500.0, 1000.0, 1400.0])],
    };
    assert!(writes(&w, None).contains(
        "\nEach point is the median of 3 rounds (its round with the median throughput, latencies included); the \
         systems of one server alternate within a round. The widest spread of one point's rounds: etcd-3 at \
         concurrency 16, 90% of its median (500, 1,000, 1,400).\n"
    ));
    let one = Writes { rounds: Some(1), ..w };
    assert!(!writes(&one, None).contains("rounds"));
}

#[test]
fn failover_table_per_kind() {
    let t = |kind: &str, seconds, failed_requests| Trial { kind: kind.into(), trial: 1, seconds, failed_requests };
    let f = Failover {
        command: "make e2e".into(),
        lease_duration_s: 5.0,
        trials: vec![t("switchover", 0.5, 1), t("kill", 0.4, 0), t("kill", 0.6, 0), t("switchover", 0.3, 2)],
    };
    let out = failover(&f, None);
    assert!(out.starts_with("Command: `make e2e`. Lease duration: 5 s."), "{out}");
    assert!(out.ends_with(
        "| kind | trials | p50 s | p90 s | max s | failed requests |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | kill | 2 | 0.40 | 0.60 | 0.60 | 0 |\n\
         | switchover | 2 | 0.30 | 0.50 | 0.50 | 3 |\n"
    ));
}

#[test]
fn recovery_table_and_catch_up() {
    let r = Recovery {
        blocks: 10_000_000,
        rss_kib: 1_296_428.0,
        base_rss_kib: 7_428.0,
        bytes_per_block: 131.0,
        restart_to_serving_s: 2.24,
        recovery_ms: 2211.0,
    };
    let out = recovery(Some(&[r]), Some(&CatchUp { records: 2_000_000, seconds: 1.0 }), Some("bench"));
    assert_eq!(
        out,
        "| blocks | restart to serving s | recovery ms | RSS MiB | RSS before MiB | bytes per block |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | 10,000,000 | 2.24 | 2,211 | 1,266 | 7 | 131 |\n\
         \nCatch-up: a fresh slave took 1.00 s to catch up with a master holding 2,000,000 records: \
         **2,000,000 records/s**.\n\
         \n![Restart time and memory per block](bench/recovery.svg)\n"
    );
    assert!(!recovery(None, Some(&CatchUp { records: 1, seconds: 1.0 }), Some("bench")).contains("!["));
}

#[test]
fn machine_table_shows_what_is_known() {
    let m = Machine { cpu: Some("AMD EPYC".into()), cores: Some(2), mem_gib: Some(24.0), ..Machine::default() };
    assert_eq!(machine(&m), "| machine |  |\n|---|---|\n| CPU | AMD EPYC |\n| cores | 2 |\n| memory | 24 GiB |\n");
    let busy = Machine { background_cores: Some(0.184), ..Machine::default() };
    assert!(machine(&busy).contains("| busy before the run | 0.18 cores ("));
}

#[test]
fn backup_tables_from_a_sample() {
    let b = crate::results::fakes::backup(0.96, Some(1.0), 10_000_100, 23.3);
    assert_eq!(
        backup(&b),
        "Replicated creates at concurrency 256, archive off and on in turns:\n\n\
         | round | archive off ops/s | archive on ops/s | on / off |\n\
         |---:|---:|---:|---:|\n\
         | 1 | 35,763 | 35,907 | 1.004 |\n\
         | 2 | 36,590 | 33,931 | 0.927 |\n\
         | 3 | 33,114 | 34,318 | 1.036 |\n\
         | median | 35,763 | 34,318 | **0.960** |\n\
         \nArchive lag while writing 5,000 creates/s (archive timeout 1 s):\n\n\
         | creates/s | failed | samples | lag p50 s | lag p99 s | lag max s |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | 5,000 | 0 | 278 | 0.513 | 1.000 | 1.001 |\n\
         \nRestore of the latest point into an empty directory, then a nameserver opening it:\n\n\
         | blocks | checkpoint seq | checkpoint MiB | log records | restore s | open s | to serving s |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | 10,000,100 | 9,000,100 | 110 | 1,000,200 | 20.10 | 3.20 | 23.30 |\n\
         \nTargets (issue #16):\n\n\
         | target | goal | measured | result |\n\
         |---|---|---:|---|\n\
         | archiving costs ≤ 10 % of replicated write throughput | on / off ≥ 0.90 | 0.960 | **met** |\n\
         | archive lag at 5,000 creates/s | p99 ≤ 2 s | 1.000 s | **met** |\n\
         | restore of 10 M blocks (checkpoint + 1 M records) to serving | ≤ 60 s | 23.30 s | **met** |\n"
    );
    let out = backup(&crate::results::fakes::backup(0.85, Some(2.5), 10_000_000, 61.0));
    assert!(out.contains("| 0.850 | **not met** |\n"), "{out}");
    assert!(out.contains("| 2.500 s | **not met** |\n"), "{out}");
    assert!(out.contains("| 61.00 s | **not met** |\n"), "{out}");
    let out = backup(&crate::results::fakes::backup(0.9, None, 1_000_000, 5.0));
    assert!(out.contains("| 0.900 | **met** |\n"), "{out}");
    assert!(out.contains("| n/a s | not judged: no lag sample |\n"), "{out}");
    assert!(out.contains("| not judged: 1,000,000 blocks with 1,000,200 records of log, not 10,000,000 with"), "{out}");
}

#[test]
fn summary_block_has_the_lines_the_targets_and_the_notes() {
    let s = Summary::of(&Results::default());
    let out = summary_block(&s);
    assert!(out.starts_with("```text\ntarget_writes=n/a"), "{out}");
    assert!(out.contains("| target | goal | measured | result |\n|---|---|---|---|\n| writes |"), "{out}");
    assert!(out.contains(&format!("**{NA}**")));
    assert!(out.contains("\n- no `failover` section"), "{out}");
}

#[test]
fn absent_sections_give_no_block_but_the_summary_is_always_written() {
    let s = Summary::of(&Results::default());
    assert_eq!(all(&Results::default(), &s, Some("bench")).keys().copied().collect::<Vec<_>>(), ["summary"]);
    let r = Results {
        backup: Some(crate::results::fakes::backup(0.96, Some(1.0), 10_000_100, 23.3)),
        ..Results::default()
    };
    let s = Summary::of(&r);
    assert_eq!(all(&r, &s, None).keys().copied().collect::<Vec<_>>(), ["backup", "summary"]);
}
