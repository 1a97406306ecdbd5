//! The schema of `bench/results.json` and its loading.
//!
//! Every section is optional: a missing one is `None` and the report says so. A section that is
//! present must be complete: a missing or mistyped field, a negative figure or a duplicate
//! measurement is an error that names the field (`writes.points[3].p99_ms: ...`). Fields this
//! schema does not know are ignored, and so are the free-form `standalone` and `replicated`
//! sections.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::stats::median;

/// The systems measured by the write benchmark, in the order tables and plots show them.
/// A system outside this list is still shown (after these, by name) but enters no ratio.
pub const TFS: &str = "tfs";
pub const TFS_ECHO: &str = "tfs-echo";
pub const ETCD3: &str = "etcd-3";
pub const ETCD1: &str = "etcd-1";
/// tfs creates on pipelined sessions (`tfsctl bench --session`). Last, so that the older systems
/// keep their colours in the plots.
pub const TFS_SESSION: &str = "tfs-session";
pub const KNOWN_SYSTEMS: [&str; 5] = [TFS, TFS_ECHO, ETCD3, ETCD1, TFS_SESSION];

/// The failover kinds the targets speak of, in the order tables and plots show them.
pub const KILL: &str = "kill";
pub const PODLOSS: &str = "podloss";
pub const SWITCHOVER: &str = "switchover";
pub const KNOWN_KINDS: [&str; 3] = [KILL, PODLOSS, SWITCHOVER];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Results {
    pub machine: Option<Machine>,
    pub writes: Option<Writes>,
    pub failover: Option<Failover>,
    pub recovery: Option<Vec<Recovery>>,
    pub catch_up: Option<CatchUp>,
    pub tls_cost: Option<TlsCost>,
    pub backup: Option<Backup>,
}

/// Where the figures were measured. Each field is optional: the table shows what is there.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Machine {
    pub cpu: Option<String>,
    pub cores: Option<u32>,
    pub mem_gib: Option<f64>,
    pub kernel: Option<String>,
    pub os: Option<String>,
    pub date: Option<String>,
    pub rustc: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Writes {
    pub command: String,
    /// The request size used for every system, in words.
    pub request: String,
    pub points: Vec<WritePoint>,
}

/// One system at one concurrency.
#[derive(Debug, Clone, Deserialize)]
pub struct WritePoint {
    pub system: String,
    pub concurrency: u32,
    pub count: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Failover {
    pub command: String,
    pub lease_duration_s: f64,
    pub trials: Vec<Trial>,
}

/// One failover trial: from the fault to the first write acknowledged by the new master.
#[derive(Debug, Clone, Deserialize)]
pub struct Trial {
    pub kind: String,
    pub trial: u32,
    pub seconds: f64,
    pub failed_requests: u64,
}

/// A restart after `kill -9` with `blocks` blocks, and the memory they took.
#[derive(Debug, Clone, Deserialize)]
pub struct Recovery {
    pub blocks: u64,
    pub rss_kib: f64,
    pub base_rss_kib: f64,
    pub bytes_per_block: f64,
    pub restart_to_serving_s: f64,
    pub recovery_ms: f64,
}

/// A fresh slave catching up with a master holding `records` records.
#[derive(Debug, Clone, Deserialize)]
pub struct CatchUp {
    pub records: u64,
    pub seconds: f64,
}

/// The replicated write path plain and with TLS on every hop, in alternating rounds (bench/tls.sh).
#[derive(Debug, Clone, Deserialize)]
pub struct TlsCost {
    /// The paced runs' rate, creates/s.
    pub rate: f64,
    pub rounds: Vec<TlsRound>,
}

/// One plain run and the TLS run right after it.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsRound {
    pub plain: TlsRun,
    pub tls: TlsRun,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsRun {
    /// Creates at concurrency 256, as fast as they go.
    pub create: Run,
    /// Creates at the section's rate.
    pub create_paced: Run,
}

/// What tfsctl bench reports of one run (the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub ops_per_s: f64,
    pub p99_ms: f64,
}

/// The archive to object storage (bench/backup.sh): its cost to replicated writes, its lag, and
/// a restore from it.
#[derive(Debug, Clone, Deserialize)]
pub struct Backup {
    pub cost: ArchiveCost,
    pub lag: ArchiveLag,
    pub restore: Restore,
}

/// Replicated creates on a pair archiving and on a pair not archiving, measured in turns.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchiveCost {
    pub concurrency: u32,
    pub rounds: u32,
    /// Each round's throughput without the archive, creates/s.
    pub off_ops_per_s: Vec<f64>,
    /// Each round's throughput with the archive, creates/s.
    pub on_ops_per_s: Vec<f64>,
    /// The median with the archive over the median without.
    pub ratio_on_off: f64,
}

/// The archive's lag (the master's `tfs_archive_lag_seconds`, sampled) while writing at a paced rate.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchiveLag {
    /// The rate asked for, creates/s.
    pub rate_target: f64,
    /// The rate achieved, creates/s.
    pub ops_per_s: f64,
    pub failed: u64,
    pub samples: u64,
    /// The lag percentiles; `null` when no sample was taken.
    pub lag_p50_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    pub lag_max_s: Option<f64>,
    pub archive_timeout_s: f64,
}

/// The latest point restored from the archive into an empty directory, then opened.
#[derive(Debug, Clone, Deserialize)]
pub struct Restore {
    pub blocks: u64,
    pub seq: u64,
    pub checkpoint_seq: u64,
    pub checkpoint_bytes: u64,
    /// Records of log replayed on top of the checkpoint.
    pub log_records: u64,
    /// `tfsctl backup restore`.
    pub restore_s: f64,
    /// From the restored directory to a nameserver serving it.
    pub open_s: f64,
    pub total_s: f64,
}

impl ArchiveCost {
    pub fn off_median(&self) -> Option<f64> {
        median(self.off_ops_per_s.clone())
    }

    pub fn on_median(&self) -> Option<f64> {
        median(self.on_ops_per_s.clone())
    }
}

impl TlsCost {
    /// Each round's TLS throughput over the plain throughput.
    pub fn ratios(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.tls.create.ops_per_s / r.plain.create.ops_per_s).collect()
    }
}

impl Results {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is malformed", path.display()))
    }

    /// Parses and checks the text of a results file.
    pub fn parse(text: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let results: Results = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // A missing field is reported at its parent: the message names the field.
            if path == "." { anyhow::anyhow!("{inner}") } else { anyhow::anyhow!("{path}: {inner}") }
        })?;
        results.validate()?;
        Ok(results)
    }

    fn validate(&self) -> Result<()> {
        if let Some(writes) = &self.writes {
            let mut seen = BTreeMap::new();
            for (i, p) in writes.points.iter().enumerate() {
                let at = format!("writes.points[{i}]");
                if p.system.is_empty() {
                    bail!("{at}.system: empty");
                }
                if p.concurrency == 0 {
                    bail!("{at}.concurrency: must be at least 1");
                }
                non_negative(&at, "ops_per_s", p.ops_per_s)?;
                non_negative(&at, "p50_ms", p.p50_ms)?;
                non_negative(&at, "p99_ms", p.p99_ms)?;
                if let Some(first) = seen.insert((p.system.as_str(), p.concurrency), i) {
                    bail!(
                        "{at}: a second point for system {} at concurrency {} (the first is writes.points[{first}])",
                        p.system,
                        p.concurrency
                    );
                }
            }
        }
        if let Some(failover) = &self.failover {
            if failover.lease_duration_s <= 0.0 {
                bail!("failover.lease_duration_s: must be above 0, got {}", failover.lease_duration_s);
            }
            for (i, t) in failover.trials.iter().enumerate() {
                let at = format!("failover.trials[{i}]");
                if t.kind.is_empty() {
                    bail!("{at}.kind: empty");
                }
                non_negative(&at, "seconds", t.seconds)?;
            }
        }
        if let Some(recovery) = &self.recovery {
            let mut seen = BTreeMap::new();
            for (i, r) in recovery.iter().enumerate() {
                let at = format!("recovery[{i}]");
                if r.blocks == 0 {
                    bail!("{at}.blocks: must be at least 1");
                }
                non_negative(&at, "rss_kib", r.rss_kib)?;
                non_negative(&at, "base_rss_kib", r.base_rss_kib)?;
                non_negative(&at, "bytes_per_block", r.bytes_per_block)?;
                non_negative(&at, "restart_to_serving_s", r.restart_to_serving_s)?;
                non_negative(&at, "recovery_ms", r.recovery_ms)?;
                if let Some(first) = seen.insert(r.blocks, i) {
                    bail!("{at}: a second entry for {} blocks (the first is recovery[{first}])", r.blocks);
                }
            }
        }
        if let Some(c) = &self.catch_up
            && c.seconds <= 0.0
        {
            bail!("catch_up.seconds: must be above 0, got {}", c.seconds);
        }
        if let Some(t) = &self.tls_cost {
            if t.rounds.is_empty() {
                bail!("tls_cost.rounds: empty");
            }
            for (i, r) in t.rounds.iter().enumerate() {
                for (side, run) in [("plain", &r.plain), ("tls", &r.tls)] {
                    let at = format!("tls_cost.rounds[{i}].{side}.create");
                    if run.create.ops_per_s <= 0.0 {
                        bail!("{at}.ops_per_s: must be above 0, got {}", run.create.ops_per_s);
                    }
                    non_negative(&at, "p99_ms", run.create.p99_ms)?;
                    non_negative(
                        &format!("tls_cost.rounds[{i}].{side}.create_paced"),
                        "p99_ms",
                        run.create_paced.p99_ms,
                    )?;
                }
            }
        }
        if let Some(b) = &self.backup {
            let c = &b.cost;
            if c.off_ops_per_s.is_empty() {
                bail!("backup.cost.off_ops_per_s: empty");
            }
            if c.on_ops_per_s.len() != c.off_ops_per_s.len() || c.rounds as usize != c.off_ops_per_s.len() {
                bail!(
                    "backup.cost: rounds is {} but off_ops_per_s has {} figures and on_ops_per_s has {}",
                    c.rounds,
                    c.off_ops_per_s.len(),
                    c.on_ops_per_s.len()
                );
            }
            for (field, v) in [("off_ops_per_s", &c.off_ops_per_s), ("on_ops_per_s", &c.on_ops_per_s)] {
                for (i, x) in v.iter().enumerate() {
                    if *x <= 0.0 {
                        bail!("backup.cost.{field}[{i}]: must be above 0, got {x}");
                    }
                }
            }
            non_negative("backup.cost", "ratio_on_off", c.ratio_on_off)?;
            let l = &b.lag;
            if l.rate_target <= 0.0 {
                bail!("backup.lag.rate_target: must be above 0, got {}", l.rate_target);
            }
            non_negative("backup.lag", "ops_per_s", l.ops_per_s)?;
            non_negative("backup.lag", "archive_timeout_s", l.archive_timeout_s)?;
            for (field, v) in [("lag_p50_s", l.lag_p50_s), ("lag_p99_s", l.lag_p99_s), ("lag_max_s", l.lag_max_s)] {
                if let Some(v) = v {
                    non_negative("backup.lag", field, v)?;
                }
            }
            let r = &b.restore;
            if r.blocks == 0 {
                bail!("backup.restore.blocks: must be at least 1");
            }
            non_negative("backup.restore", "restore_s", r.restore_s)?;
            non_negative("backup.restore", "open_s", r.open_s)?;
            non_negative("backup.restore", "total_s", r.total_s)?;
        }
        Ok(())
    }
}

fn non_negative(at: &str, field: &str, value: f64) -> Result<()> {
    if value >= 0.0 { Ok(()) } else { bail!("{at}.{field}: must not be negative, got {value}") }
}

impl Writes {
    /// The systems present, known ones first in their fixed order, then the others by name.
    pub fn systems(&self) -> Vec<&str> {
        known_first(&KNOWN_SYSTEMS, self.points.iter().map(|p| p.system.as_str()))
    }

    /// Every concurrency measured for any system, ascending.
    pub fn concurrencies(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self.points.iter().map(|p| p.concurrency).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// The points of one system, by ascending concurrency.
    pub fn series(&self, system: &str) -> Vec<&WritePoint> {
        let mut s: Vec<&WritePoint> = self.points.iter().filter(|p| p.system == system).collect();
        s.sort_by_key(|p| p.concurrency);
        s
    }

    pub fn point(&self, system: &str, concurrency: u32) -> Option<&WritePoint> {
        self.points.iter().find(|p| p.system == system && p.concurrency == concurrency)
    }
}

impl Failover {
    /// The kinds present, known ones first in their fixed order, then the others by name.
    pub fn kinds(&self) -> Vec<&str> {
        known_first(&KNOWN_KINDS, self.trials.iter().map(|t| t.kind.as_str()))
    }

    /// The trials of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Trial> + 'a {
        self.trials.iter().filter(move |t| t.kind == kind)
    }
}

/// The distinct names of `present`: those of `known` first in its order, then the others sorted.
fn known_first<'a>(known: &[&'static str], present: impl Iterator<Item = &'a str> + Clone) -> Vec<&'a str> {
    let mut others: Vec<&str> = present.clone().filter(|s| !known.contains(s)).collect();
    others.sort_unstable();
    others.dedup();
    known.iter().copied().filter(|k| present.clone().any(|s| s == *k)).chain(others).collect()
}

impl Recovery {
    /// `1m`, `10m`, `500k`, `1500`: the block count as the summary keys spell it.
    pub fn label(&self) -> String {
        blocks_label(self.blocks)
    }
}

/// `1m`, `10m`, `500k`, `1500`: a block count as the summary keys spell it.
pub fn blocks_label(blocks: u64) -> String {
    if blocks.is_multiple_of(1_000_000) {
        format!("{}m", blocks / 1_000_000)
    } else if blocks.is_multiple_of(1_000) {
        format!("{}k", blocks / 1_000)
    } else {
        blocks.to_string()
    }
}

impl CatchUp {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Made-up results for the unit tests.
#[cfg(test)]
pub(crate) mod fakes {
    use super::{ArchiveCost, ArchiveLag, Backup, Restore, WritePoint};

    /// A point of 100 requests, p50 1 ms, none failed.
    pub(crate) fn point(system: &str, concurrency: u32, ops_per_s: f64, p99_ms: f64) -> WritePoint {
        WritePoint { system: system.into(), concurrency, count: 100, ops_per_s, p50_ms: 1.0, p99_ms, failed: 0 }
    }

    /// The sample of bench/backup.sh's section, with the judged figures given (the restore opens in 3.2 s).
    pub(crate) fn backup(ratio: f64, lag_p99_s: Option<f64>, blocks: u64, total_s: f64) -> Backup {
        Backup {
            cost: ArchiveCost {
                concurrency: 256,
                rounds: 3,
                off_ops_per_s: vec![35763.4, 36590.0, 33113.5],
                on_ops_per_s: vec![35907.2, 33930.7, 34318.3],
                ratio_on_off: ratio,
            },
            lag: ArchiveLag {
                rate_target: 5000.0,
                ops_per_s: 4999.7,
                failed: 0,
                samples: 278,
                lag_p50_s: Some(0.513),
                lag_p99_s,
                lag_max_s: Some(1.001),
                archive_timeout_s: 1.0,
            },
            restore: Restore {
                blocks,
                seq: 10_000_300,
                checkpoint_seq: 9_000_100,
                checkpoint_bytes: 114_891_136,
                log_records: 1_000_200,
                restore_s: total_s - 3.2,
                open_s: 3.2,
                total_s,
            },
        }
    }
}

#[cfg(test)]
mod tests {
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
            points: vec![p("zk", 4), p("etcd-1", 1), p("tfs", 2), p("consul", 1), p("tfs", 1)],
        };
        assert_eq!(w.systems(), ["tfs", "etcd-1", "consul", "zk"]);
        assert_eq!(w.concurrencies(), [1, 2, 4]);
        assert_eq!(w.series("tfs").iter().map(|p| p.concurrency).collect::<Vec<_>>(), [1, 2]);
        let t = |kind: &str| Trial { kind: kind.into(), trial: 1, seconds: 1.0, failed_requests: 0 };
        let f = Failover {
            command: String::new(),
            lease_duration_s: 5.0,
            trials: vec![t("x"), t("switchover"), t("kill")],
        };
        assert_eq!(f.kinds(), ["kill", "switchover", "x"]);
    }

    #[test]
    fn block_labels() {
        assert_eq!(blocks_label(1_000_000), "1m");
        assert_eq!(blocks_label(10_000_000), "10m");
        assert_eq!(blocks_label(500_000), "500k");
        assert_eq!(blocks_label(1_500), "1500");
    }
}
