//! The schema of `bench/results.json` and its loading.
//!
//! Every section is optional: a missing one is `None` and the report says so. A section that is
//! present must be complete: a missing or mistyped field, a negative figure or a duplicate
//! measurement is an error that names the field (`writes.points[3].p99_ms: ...`). Fields this
//! schema does not know are ignored, and so are the free-form `standalone` and `replicated`
//! sections.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::stats::median;

mod validation;

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
    /// The cores the whole machine used just before the run (an idle local cluster, …).
    pub background_cores: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Writes {
    pub command: String,
    /// The request size used for every system, in words.
    pub request: String,
    /// Rounds each point was measured in (its figure is the median round); absent: one.
    #[serde(default)]
    pub rounds: Option<u32>,
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
    /// The throughput of each round, in the order run, when measured in rounds: `ops_per_s` is
    /// the median one's.
    #[serde(default)]
    pub rounds_ops_per_s: Vec<f64>,
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

#[cfg(test)]
pub(crate) mod fakes;

#[cfg(test)]
mod tests;
