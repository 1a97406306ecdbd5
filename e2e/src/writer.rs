//! The load of the failover scenarios: a recording writer and two mixed clients through the VIP
//! (`Writer`), what their files say, and `tfsctl verify` over them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ::tfsctl::ops::Op;
use ::tfsctl::record::Ack;
use anyhow::{Result, bail};

use crate::tfsctl;

/// A writer through the VIP recording every acknowledged mutation, and two mixed clients
/// (reads and commits on shared blocks, `tfsctl bench --op mixed --history`) whose histories
/// `verify` checks for linearizability: one dials a new connection after every error, the other
/// keeps its one HTTP/2 connection as long as the server keeps it.
pub struct Writer {
    child: Child,
    mixed: Vec<Child>,
    pub record: PathBuf,
    pub log: PathBuf,
}

impl Drop for Writer {
    /// A test that fails midway leaves no load running behind it.
    fn drop(&mut self) {
        for c in std::iter::once(&mut self.child).chain(self.mixed.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mixed clients' histories, next to the writer's record (see `verify`).
pub const HISTORIES: [&str; 2] = ["history-redial", "history-keep"];

impl Writer {
    pub fn start(vip: &str, dir: &Path, concurrency: u32) -> Result<Writer> {
        let record = dir.join("acked");
        let log = dir.join("writer.log");
        let f = std::fs::File::create(&log)?;
        let child = Command::new(tfsctl())
            .args([
                "--addr",
                vip,
                "bench",
                "--op",
                "create",
                "--count",
                "1000000000",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .args(["--sim-dataservers", "3", "--record", record.to_str().expect("utf-8"), "--retry-for", "60s"])
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let mut mixed = Vec::new();
        for (name, keep) in HISTORIES.iter().zip([false, true]) {
            let f = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let history = dir.join(name);
            let mut cmd = Command::new(tfsctl());
            cmd.args(["--addr", vip, "bench", "--op", "mixed", "--count", "1000000000", "--concurrency", "8"])
                .args(["--connections", "1", "--shared-blocks", "4", "--mix", "6:3:0", "--retry-for", "60s"])
                .args(["--history", history.to_str().expect("utf-8")])
                .stdout(f.try_clone()?)
                .stderr(f);
            if keep {
                cmd.arg("--keep-connection");
            }
            mixed.push(cmd.spawn()?);
        }
        Ok(Writer { child, mixed, record, log })
    }

    /// Milliseconds from `fault_ms` to the first operation of a mixed client's history answered
    /// at `epoch`.
    pub fn first_op_after(history: &Path, fault_ms: u64, epoch: u64) -> Option<u64> {
        ms_to_first_op(&std::fs::read_to_string(history).ok()?, fault_ms, epoch)
    }

    /// Requests the create writer counted failed (its progress lines), so far.
    pub fn failed_requests(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(", ").nth(1)?.strip_suffix(" failed")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    pub fn acked(&self) -> usize {
        std::fs::read_to_string(&self.record).map(|s| s.lines().count()).unwrap_or(0)
    }

    pub async fn wait_acked(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            if Instant::now() > deadline {
                bail!(
                    "writer acknowledged only {} of {n} within {timeout:?}:\n{}",
                    self.acked(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the writer and the mixed clients; the record and histories keep what they flushed.
    pub fn stop(self) -> PathBuf {
        self.record.clone()
    }

    /// Milliseconds from `fault_ms` to the first write acknowledged at `epoch` after it.
    pub fn first_ack_after(record: &Path, fault_ms: u64, epoch: u64) -> Option<u64> {
        ms_to_first_ack(&std::fs::read_to_string(record).ok()?, fault_ms, epoch)
    }

    /// The acknowledgements of a record (none if it cannot be read); lines that do not parse (a
    /// torn last one) are skipped.
    pub fn acks(record: &Path) -> Vec<Ack> {
        acks_of(&std::fs::read_to_string(record).unwrap_or_default()).collect()
    }
}

/// The acknowledgements of a record's text, skipping lines that do not parse.
fn acks_of(record: &str) -> impl Iterator<Item = Ack> + '_ {
    record.lines().filter_map(|l| Ack::parse(l).ok())
}

/// [`Writer::first_ack_after`] over the record's text; lines that do not parse (a torn last one)
/// are skipped.
fn ms_to_first_ack(record: &str, fault_ms: u64, epoch: u64) -> Option<u64> {
    acks_of(record).filter(|a| a.epoch == epoch && a.acked_ms > fault_ms).map(|a| a.acked_ms - fault_ms).min()
}

/// [`Writer::first_op_after`] over a history's text: completion times are microseconds.
fn ms_to_first_op(history: &str, fault_ms: u64, epoch: u64) -> Option<u64> {
    history
        .lines()
        .filter_map(|l| Op::parse(l).ok())
        .map(|o| (o.epoch, o.completed_us / 1000))
        .filter(|&(e, done_ms)| e == epoch && done_ms > fault_ms)
        .map(|(_, done_ms)| done_ms - fault_ms)
        .min()
}

/// `tfsctl verify`: exit 0 only if every acknowledged write is there, no id repeats, and the
/// histories of the `Writer`'s mixed clients next to the record (if any) are linearizable.
pub fn verify(vip: &str, record: &Path) -> Result<String> {
    let mut cmd = Command::new(tfsctl());
    cmd.args(["--addr", vip, "verify", "--record", record.to_str().expect("utf-8")]);
    for h in HISTORIES.iter().filter_map(|n| Some(record.parent()?.join(n))).filter(|p| p.exists()) {
        cmd.arg("--history").arg(h);
    }
    let out = cmd.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("verify failed: {text}");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit line carries its version before the epoch: read as the epoch, the version 7 of
    /// `M 12 7 3 ...` made this commit count for epoch 7.
    #[test]
    fn the_first_ack_at_an_epoch_reads_the_epoch_of_every_kind_of_line() {
        let rec = "C 10 3 40 990 1000\n\
                   M 12 7 3 41 1190 1200\n\
                   C 11 7 42 1290 1300\n\
                   R 10 3 43 1390 1400\n\
                   C 13 3 44 1600";
        assert_eq!(ms_to_first_ack(rec, 1100, 3), Some(100), "the commit at epoch 3, 100 ms after");
        assert_eq!(ms_to_first_ack(rec, 1100, 7), Some(200), "the create at epoch 7, not the commit of version 7");
        assert_eq!(ms_to_first_ack(rec, 1500, 3), None, "the torn last line (no acked_ms) is skipped");
    }

    #[test]
    fn the_first_op_at_an_epoch_counts_reads_and_commits_by_completion() {
        let h = "w c 8 5 pending 0 - 100000 100000\n\
                 w c 8 5 ok 2 ns-1 100000 1250000\n\
                 r d 8 5 2 ns-1 1100000 1300000\n\
                 r d 8 5 1 ns-0 1100000 1200000\n";
        assert_eq!(ms_to_first_op(h, 1000, 2), Some(250));
        assert_eq!(ms_to_first_op(h, 1000, 1), Some(200));
    }
}
