//! The checks a parsed results file must pass: each present section complete, its figures sane.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::Results;

impl Results {
    pub(super) fn validate(&self) -> Result<()> {
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
                if !p.rounds_ops_per_s.is_empty() {
                    if let Some(n) = writes.rounds
                        && p.rounds_ops_per_s.len() != n as usize
                    {
                        bail!("{at}.rounds_ops_per_s: {} rounds, the run says {n}", p.rounds_ops_per_s.len());
                    }
                    let median = crate::stats::median_round(p.rounds_ops_per_s.clone());
                    if median != Some(p.ops_per_s) {
                        bail!(
                            "{at}.ops_per_s: {} is not the median of its rounds {:?} ({median:?})",
                            p.ops_per_s,
                            p.rounds_ops_per_s
                        );
                    }
                }
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
