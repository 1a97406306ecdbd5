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
        (
            "busy before the run",
            m.background_cores
                .map(|c| format!("{c:.2} cores (everything else on the machine: the idle local cluster, …)")),
        ),
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
    out.push_str(&rounds(w));
    out.push_str(&images(
        plots,
        &[("Write throughput vs concurrency", "writes_throughput"), ("p99 write latency vs concurrency", "writes_p99")],
    ));
    out
}

/// How the points were measured in rounds, and the widest spread of one point's rounds.
fn rounds(w: &Writes) -> String {
    let Some(n) = w.rounds.filter(|n| *n > 1) else { return String::new() };
    let widest = w
        .points
        .iter()
        .filter(|p| p.rounds_ops_per_s.len() > 1 && p.ops_per_s > 0.0)
        .map(|p| {
            let (lo, hi) = p.rounds_ops_per_s.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            ((hi - lo) / p.ops_per_s, p)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = format!(
        "\nEach point is the median of {n} rounds (its round with the median throughput, latencies included); \
         the systems of one server alternate within a round."
    );
    if let Some((spread, p)) = widest {
        out.push_str(&format!(
            " The widest spread of one point's rounds: {} at concurrency {}, {:.0}% of its median ({}).",
            p.system,
            p.concurrency,
            spread * 100.0,
            p.rounds_ops_per_s.iter().map(|v| thousands(*v)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push('\n');
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
mod tests;
