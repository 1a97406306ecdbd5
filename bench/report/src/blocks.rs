//! The content of each generated block of docs/BENCHMARKS.md.

use std::collections::BTreeMap;

use crate::markdown::{Align, table};
use crate::numbers::{NA, fixed, short, thousands};
use crate::results::{Backup, CatchUp, Failover, Machine, Recovery, Results, TlsCost, Writes};
use crate::stats::Spread;
use crate::summary::{
    ARCHIVE_COST_RATIO_GOAL, ARCHIVE_LAG_P99_GOAL_S, ARCHIVE_LAG_RATE, RESTORE_BLOCKS, RESTORE_GOAL_S,
    RESTORE_LOG_RECORDS, Summary, archive_cost_met, archive_lag_met, restore_met,
};

/// The blocks to write, by name. A section absent from the results gives no block, so the
/// document keeps what it had there. `plots` is the plot directory as the document links it
/// (`bench`), or `None` when no plots are written.
pub fn all(results: &Results, summary: &Summary, plots: Option<&str>) -> BTreeMap<&'static str, String> {
    let mut blocks = BTreeMap::new();
    if let Some(m) = &results.machine {
        blocks.insert("machine", machine(m));
    }
    if let Some(w) = &results.writes {
        blocks.insert("writes", writes(w, plots));
    }
    if let Some(f) = &results.failover {
        blocks.insert("failover", failover(f, plots));
    }
    if results.recovery.is_some() || results.catch_up.is_some() {
        blocks.insert("recovery", recovery(results.recovery.as_deref(), results.catch_up.as_ref(), plots));
    }
    if let Some(t) = &results.tls_cost {
        blocks.insert("tls", tls(t));
    }
    if let Some(b) = &results.backup {
        blocks.insert("backup", backup(b));
    }
    blocks.insert("summary", summary_block(summary));
    blocks
}

fn images(plots: Option<&str>, figures: &[(&str, &str)]) -> String {
    let Some(dir) = plots else { return String::new() };
    figures.iter().map(|(alt, stem)| format!("\n![{alt}]({dir}/{stem}.svg)\n")).collect()
}

pub fn machine(m: &Machine) -> String {
    let rows: Vec<Vec<String>> = [
        ("CPU", m.cpu.clone()),
        ("cores", m.cores.map(|c| c.to_string())),
        ("memory", m.mem_gib.map(|g| format!("{} GiB", short(g)))),
        ("OS", m.os.clone()),
        ("kernel", m.kernel.clone()),
        ("rustc", m.rustc.clone()),
        ("measured", m.date.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some(vec![k.to_string(), v?]))
    .collect();
    table(&[("machine", Align::Left), ("", Align::Left)], &rows)
}

pub fn writes(w: &Writes, plots: Option<&str>) -> String {
    let systems = w.systems();
    let mut header = vec![("concurrency", Align::Right)];
    let names: Vec<[String; 3]> =
        systems.iter().map(|s| [format!("{s} ops/s"), format!("{s} p50 ms"), format!("{s} p99 ms")]).collect();
    for n in &names {
        header.extend(n.iter().map(|h| (h.as_str(), Align::Right)));
    }
    let rows: Vec<Vec<String>> = w
        .concurrencies()
        .into_iter()
        .map(|c| {
            let mut row = vec![c.to_string()];
            for s in &systems {
                match w.point(s, c) {
                    Some(p) => {
                        row.extend([thousands(p.ops_per_s), format!("{:.2}", p.p50_ms), format!("{:.2}", p.p99_ms)])
                    }
                    None => row.extend(["—".to_string(), "—".to_string(), "—".to_string()]),
                }
            }
            row
        })
        .collect();
    let mut out = format!("Command: `{}`. Request: {}.\n\n", w.command, w.request.trim_end_matches('.'));
    out.push_str(&table(&header, &rows));
    let failed: Vec<String> = w
        .points
        .iter()
        .filter(|p| p.failed > 0)
        .map(|p| format!("{} at concurrency {}: {} of {}", p.system, p.concurrency, p.failed, p.count))
        .collect();
    if !failed.is_empty() {
        out.push_str(&format!("\nFailed requests: {}.\n", failed.join("; ")));
    }
    out.push_str(&images(
        plots,
        &[("Write throughput vs concurrency", "writes_throughput"), ("p99 write latency vs concurrency", "writes_p99")],
    ));
    out
}

pub fn failover(f: &Failover, plots: Option<&str>) -> String {
    let rows: Vec<Vec<String>> = f
        .kinds()
        .into_iter()
        .map(|kind| {
            let seconds: Vec<f64> = f.of_kind(kind).map(|t| t.seconds).collect();
            let failed: u64 = f.of_kind(kind).map(|t| t.failed_requests).sum();
            let s = Spread::of(&seconds);
            vec![
                kind.to_string(),
                seconds.len().to_string(),
                fixed(s.map(|s| s.p50), 2),
                fixed(s.map(|s| s.p90), 2),
                fixed(s.map(|s| s.max), 2),
                failed.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "Command: `{}`. Lease duration: {} s. p50 and p90 are nearest-rank percentiles: each is one of the \
         measured trials.\n\n",
        f.command,
        short(f.lease_duration_s)
    );
    out.push_str(&table(
        &[
            ("kind", Align::Left),
            ("trials", Align::Right),
            ("p50 s", Align::Right),
            ("p90 s", Align::Right),
            ("max s", Align::Right),
            ("failed requests", Align::Right),
        ],
        &rows,
    ));
    out.push_str(&images(plots, &[("Failover time distributions", "failover")]));
    out
}

pub fn recovery(recovery: Option<&[Recovery]>, catch_up: Option<&CatchUp>, plots: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(recovery) = recovery {
        let mut sorted: Vec<&Recovery> = recovery.iter().collect();
        sorted.sort_by_key(|r| r.blocks);
        let rows: Vec<Vec<String>> = sorted
            .iter()
            .map(|r| {
                vec![
                    thousands(r.blocks as f64),
                    format!("{:.2}", r.restart_to_serving_s),
                    thousands(r.recovery_ms),
                    thousands(r.rss_kib / 1024.0),
                    thousands(r.base_rss_kib / 1024.0),
                    thousands(r.bytes_per_block),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                ("blocks", Align::Right),
                ("restart to serving s", Align::Right),
                ("recovery ms", Align::Right),
                ("RSS MiB", Align::Right),
                ("RSS before MiB", Align::Right),
                ("bytes per block", Align::Right),
            ],
            &rows,
        ));
    }
    if let Some(c) = catch_up {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "Catch-up: a fresh slave took {:.2} s to catch up with a master holding {} records: **{} records/s**.\n",
            c.seconds,
            thousands(c.records as f64),
            thousands(c.records_per_s())
        ));
    }
    if recovery.is_some() {
        out.push_str(&images(plots, &[("Restart time and memory per block", "recovery")]));
    }
    out
}

/// One row per round: plain and TLS side by side, and their ratio.
pub fn tls(t: &TlsCost) -> String {
    let rows: Vec<Vec<String>> = t
        .rounds
        .iter()
        .zip(t.ratios())
        .enumerate()
        .map(|(i, (r, ratio))| {
            vec![
                (i + 1).to_string(),
                thousands(r.plain.create.ops_per_s),
                thousands(r.tls.create.ops_per_s),
                format!("{ratio:.3}"),
                format!("{:.2}", r.plain.create.p99_ms),
                format!("{:.2}", r.tls.create.p99_ms),
                format!("{:.2}", r.plain.create_paced.p99_ms),
                format!("{:.2}", r.tls.create_paced.p99_ms),
            ]
        })
        .collect();
    let mut out = table(
        &[
            ("round", Align::Right),
            ("plain ops/s", Align::Right),
            ("TLS ops/s", Align::Right),
            ("TLS / plain", Align::Right),
            ("p99 ms plain", Align::Right),
            ("p99 ms TLS", Align::Right),
            (&format!("p99 ms at {}/s plain", thousands(t.rate)), Align::Right),
            (&format!("p99 ms at {}/s TLS", thousands(t.rate)), Align::Right),
        ],
        &rows,
    );
    out.push_str(&format!("\n{}\n", crate::summary::tls_line(t)));
    out
}

/// `met`, `not met`, or why the run cannot tell.
fn met(judged: Result<bool, String>) -> String {
    match judged {
        Ok(true) => "**met**".to_string(),
        Ok(false) => "**not met**".to_string(),
        Err(why) => format!("not judged: {why}"),
    }
}

/// The archive's cost (a row per round, then the medians), its lag, the restore, and each
/// against its goal from issue #16.
pub fn backup(b: &Backup) -> String {
    let (c, l, r) = (&b.cost, &b.lag, &b.restore);
    let mut rows: Vec<Vec<String>> = c
        .off_ops_per_s
        .iter()
        .zip(&c.on_ops_per_s)
        .enumerate()
        .map(|(i, (off, on))| vec![(i + 1).to_string(), thousands(*off), thousands(*on), format!("{:.3}", on / off)])
        .collect();
    rows.push(vec![
        "median".to_string(),
        c.off_median().map_or(NA.to_string(), thousands),
        c.on_median().map_or(NA.to_string(), thousands),
        format!("**{:.3}**", c.ratio_on_off),
    ]);
    let mut out = format!("Replicated creates at concurrency {}, archive off and on in turns:\n\n", c.concurrency);
    out.push_str(&table(
        &[
            ("round", Align::Right),
            ("archive off ops/s", Align::Right),
            ("archive on ops/s", Align::Right),
            ("on / off", Align::Right),
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\nArchive lag while writing {} creates/s (archive timeout {} s):\n\n",
        thousands(l.rate_target),
        short(l.archive_timeout_s)
    ));
    out.push_str(&table(
        &[
            ("creates/s", Align::Right),
            ("failed", Align::Right),
            ("samples", Align::Right),
            ("lag p50 s", Align::Right),
            ("lag p99 s", Align::Right),
            ("lag max s", Align::Right),
        ],
        &[vec![
            thousands(l.ops_per_s),
            l.failed.to_string(),
            l.samples.to_string(),
            fixed(l.lag_p50_s, 3),
            fixed(l.lag_p99_s, 3),
            fixed(l.lag_max_s, 3),
        ]],
    ));
    out.push_str("\nRestore of the latest point into an empty directory, then a nameserver opening it:\n\n");
    out.push_str(&table(
        &[
            ("blocks", Align::Right),
            ("checkpoint seq", Align::Right),
            ("checkpoint MiB", Align::Right),
            ("log records", Align::Right),
            ("restore s", Align::Right),
            ("open s", Align::Right),
            ("to serving s", Align::Right),
        ],
        &[vec![
            thousands(r.blocks as f64),
            thousands(r.checkpoint_seq as f64),
            thousands(r.checkpoint_bytes as f64 / (1024.0 * 1024.0)),
            thousands(r.log_records as f64),
            format!("{:.2}", r.restore_s),
            format!("{:.2}", r.open_s),
            format!("{:.2}", r.total_s),
        ]],
    ));
    out.push_str("\nTargets (issue #16):\n\n");
    out.push_str(&table(
        &[("target", Align::Left), ("goal", Align::Left), ("measured", Align::Right), ("result", Align::Left)],
        &[
            vec![
                format!(
                    "archiving costs ≤ {:.0} % of replicated write throughput",
                    (1.0 - ARCHIVE_COST_RATIO_GOAL) * 100.0
                ),
                format!("on / off ≥ {ARCHIVE_COST_RATIO_GOAL:.2}"),
                format!("{:.3}", c.ratio_on_off),
                met(Ok(archive_cost_met(c))),
            ],
            vec![
                format!("archive lag at {} creates/s", thousands(ARCHIVE_LAG_RATE)),
                format!("p99 ≤ {} s", short(ARCHIVE_LAG_P99_GOAL_S)),
                format!("{} s", fixed(l.lag_p99_s, 3)),
                met(archive_lag_met(l)),
            ],
            vec![
                format!(
                    "restore of {} M blocks (checkpoint + {} M records) to serving",
                    RESTORE_BLOCKS / 1_000_000,
                    RESTORE_LOG_RECORDS / 1_000_000
                ),
                format!("≤ {} s", short(RESTORE_GOAL_S)),
                format!("{:.2} s", r.total_s),
                met(restore_met(r)),
            ],
        ],
    ));
    out
}

pub fn summary_block(s: &Summary) -> String {
    let mut out = String::from("```text\n");
    for line in s.stdout_lines() {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("```\n\n");
    let rows: Vec<Vec<String>> = s
        .targets
        .iter()
        .map(|t| vec![t.key.to_string(), t.goal.clone(), t.measured_text(), format!("**{}**", t.verdict)])
        .collect();
    out.push_str(&table(
        &[("target", Align::Left), ("goal", Align::Left), ("measured", Align::Left), ("result", Align::Left)],
        &rows,
    ));
    if !s.notes.is_empty() {
        out.push_str("\nNot in these results:\n\n");
        for n in &s.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        };
        let w = Writes {
            command: "make bench".into(),
            request: "one CreateBlock, 40 bytes.".into(),
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
        assert!(
            out.contains("| not judged: 1,000,000 blocks with 1,000,200 records of log, not 10,000,000 with"),
            "{out}"
        );
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
}
