//! The record of acknowledged mutations that `bench --record` writes and `verify` checks; the one
//! definition of its format, which the e2e harness reads too (the failover scenarios' writer, the
//! chaos run's tail of each record, the failover trials). One line each, written and flushed as
//! acknowledgements arrive:
//! `C <block> <epoch> <seq> <sent_ms> <acked_ms>`            a create was acknowledged
//! `M <block> <version> <epoch> <seq> <sent_ms> <acked_ms>`  a commit was acknowledged
//! `R <block> <epoch> <seq> <sent_ms> <acked_ms>`            a remove was acknowledged
//!
//! `sent_ms` is when the acknowledged attempt was sent, or earlier: a call through the client
//! library, which retries what was not applied by itself, has the time the call began. Never
//! later, which is what history.rs's split-brain rule needs.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Commit { version: u32 },
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub kind: Kind,
    pub block: u64,
    pub epoch: u64,
    pub seq: u64,
    pub sent_ms: u64,
    pub acked_ms: u64,
}

impl Ack {
    pub fn line(&self) -> String {
        let tail = format!("{} {} {} {}", self.epoch, self.seq, self.sent_ms, self.acked_ms);
        match self.kind {
            Kind::Create => format!("C {} {tail}\n", self.block),
            Kind::Commit { version } => format!("M {} {version} {tail}\n", self.block),
            Kind::Remove => format!("R {} {tail}\n", self.block),
        }
    }

    pub fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            f.get(i).context("missing field")?.parse::<u64>().with_context(|| format!("field {i} is not a number"))
        };
        let (kind, rest) = match f.first().copied() {
            Some("C") => (Kind::Create, 2),
            Some("M") => (Kind::Commit { version: u32::try_from(num(2)?)? }, 3),
            Some("R") => (Kind::Remove, 2),
            other => bail!("unknown record kind {other:?}"),
        };
        if f.len() != rest + 4 {
            bail!("expected {} fields, found {}", rest + 4, f.len());
        }
        Ok(Ack {
            kind,
            block: num(1)?,
            epoch: num(rest)?,
            seq: num(rest + 1)?,
            sent_ms: num(rest + 2)?,
            acked_ms: num(rest + 3)?,
        })
    }
}

/// Reads a record file; a torn last line (the writer killed mid-line) is ignored, any other bad
/// line is an error.
pub fn read(path: &Path) -> Result<Vec<Ack>> {
    read_lines(path, Ack::parse)
}

/// Reads a file of one item a line, written by `spawn_writer`: a torn last line (the writer
/// killed mid-line) is ignored, any other bad line is an error.
pub fn read_lines<T>(path: &Path, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(f).lines().collect::<Result<_, _>>()?;
    let n = lines.len();
    let mut out = Vec::with_capacity(n);
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match parse(l) {
            Ok(a) => out.push(a),
            Err(_) if i + 1 == n => {
                eprintln!("tfsctl: ignoring a torn last line in {}", path.display())
            }
            Err(e) => bail!("{}:{}: {e:#}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// One line of a record or history file.
pub trait Line: Send + 'static {
    fn line(&self) -> String;
}

impl Line for Ack {
    fn line(&self) -> String {
        Ack::line(self)
    }
}

/// Appends items to the file from a channel, flushing whenever the channel runs dry.
pub fn spawn_writer<T: Line>(path: &Path) -> Result<(mpsc::UnboundedSender<T>, std::thread::JoinHandle<Result<()>>)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    let h = std::thread::spawn(move || -> Result<()> {
        let mut w = std::io::BufWriter::new(f);
        while let Some(a) = rx.blocking_recv() {
            w.write_all(a.line().as_bytes())?;
            while let Ok(a) = rx.try_recv() {
                w.write_all(a.line().as_bytes())?;
            }
            w.flush()?;
        }
        w.flush()?;
        Ok(())
    });
    Ok((tx, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for kind in [Kind::Create, Kind::Commit { version: 7 }, Kind::Remove] {
            let a = Ack { kind, block: 42, epoch: 3, seq: 99, sent_ms: 1000, acked_ms: 1003 };
            assert_eq!(Ack::parse(a.line().trim()).unwrap(), a);
        }
        assert!(Ack::parse("X 1 2 3 4 5").is_err());
        assert!(Ack::parse("C 1 2 3").is_err());
    }

    /// A commit line has one field more, its version, before the epoch.
    #[test]
    fn a_commit_lines_epoch_comes_after_its_version() {
        let a = Ack::parse("M 12 7 3 41 1190 1200").unwrap();
        assert_eq!((a.kind, a.block, a.epoch, a.seq), (Kind::Commit { version: 7 }, 12, 3, 41));
        assert_eq!((a.sent_ms, a.acked_ms), (1190, 1200));
        assert!(Ack::parse("M 12 7 3 41 1190").is_err(), "a torn commit line");
        assert!(Ack::parse("C 12 3 41 1190 1200 1300").is_err(), "a create line with a field too many");
    }
}
