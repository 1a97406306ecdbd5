//! The history of operations that `bench --op mixed --history` writes and `verify --history`
//! checks for linearizability (linearize.rs). Unlike the record of acknowledged mutations, it
//! holds every attempt — reads, refused writes and writes of unknown outcome — with its
//! invocation and completion times, so that a checker can tell what each client could see.
//! One line each, written and flushed as operations complete:
//! `r <client> <block> <version> <epoch> <node> <invoked_us> <completed_us>`            a read
//! `w <client> <block> <version> <outcome> <epoch> <node> <invoked_us> <completed_us>`  a commit
//! where `outcome` is `ok` (acknowledged), `refused` (the master said the version is older than
//! the block's: certainly not applied), `failed` (the server answered that it did not run it: not
//! master, lapsed, overloaded) or `unknown` (no answer, or "outcome unknown": it may have been
//! applied, or may be later). `epoch` and `node` are the reply's (0 and `-` when there was none). Times are
//! microseconds of the client's wall clock.

use std::path::Path;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    /// The server answered that it did not apply it (not master, lapsed, overloaded, ...): no
    /// effect, and nothing learnt about the block.
    Failed,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A read that returned this version.
    Read { version: u32 },
    /// A commit of this version.
    Write { version: u32, outcome: Outcome },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: String,
    pub block: u64,
    pub call: Call,
    pub epoch: u64,
    pub node: String,
    pub invoked_us: u64,
    pub completed_us: u64,
}

impl Op {
    pub fn line(&self) -> String {
        let node = if self.node.is_empty() { "-" } else { &self.node };
        let tail = format!("{} {node} {} {}", self.epoch, self.invoked_us, self.completed_us);
        match self.call {
            Call::Read { version } => format!("r {} {} {version} {tail}\n", self.client, self.block),
            Call::Write { version, outcome } => {
                let o = match outcome {
                    Outcome::Ok => "ok",
                    Outcome::Refused => "refused",
                    Outcome::Failed => "failed",
                    Outcome::Unknown => "unknown",
                };
                format!("w {} {} {version} {o} {tail}\n", self.client, self.block)
            }
        }
    }

    pub fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            f.get(i).context("missing field")?.parse::<u64>().with_context(|| format!("field {i} is not a number"))
        };
        let version = || -> Result<u32> { Ok(u32::try_from(num(3)?)?) };
        let (call, rest) = match f.first().copied() {
            Some("r") => (Call::Read { version: version()? }, 4),
            Some("w") => {
                let outcome = match f.get(4).copied() {
                    Some("ok") => Outcome::Ok,
                    Some("refused") => Outcome::Refused,
                    Some("failed") => Outcome::Failed,
                    Some("unknown") => Outcome::Unknown,
                    other => bail!("unknown outcome {other:?}"),
                };
                (Call::Write { version: version()?, outcome }, 5)
            }
            other => bail!("unknown operation kind {other:?}"),
        };
        if f.len() != rest + 4 {
            bail!("expected {} fields, found {}", rest + 4, f.len());
        }
        let (invoked_us, completed_us) = (num(rest + 2)?, num(rest + 3)?);
        if completed_us < invoked_us {
            bail!("completed before it was invoked");
        }
        Ok(Op {
            client: f[1].to_string(),
            block: num(2)?,
            call,
            epoch: num(rest)?,
            node: if f[rest + 1] == "-" { String::new() } else { f[rest + 1].to_string() },
            invoked_us,
            completed_us,
        })
    }
}

/// Reads a history file; like a record, a torn last line is ignored and any other bad line is an
/// error.
pub fn read(path: &Path) -> Result<Vec<Op>> {
    crate::record::read_lines(path, Op::parse)
}

impl crate::record::Line for Op {
    fn line(&self) -> String {
        Op::line(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let calls = [
            Call::Read { version: 3 },
            Call::Write { version: 4, outcome: Outcome::Ok },
            Call::Write { version: 5, outcome: Outcome::Refused },
            Call::Write { version: 6, outcome: Outcome::Unknown },
            Call::Write { version: 7, outcome: Outcome::Failed },
        ];
        for (call, node) in calls.into_iter().zip(["ns-0", "", "ns-1", "", "ns-0"]) {
            let o = Op {
                client: "p7w3".into(),
                block: 42,
                call,
                epoch: 2,
                node: node.into(),
                invoked_us: 1_000_000,
                completed_us: 1_000_250,
            };
            assert_eq!(Op::parse(o.line().trim()).unwrap(), o);
        }
        assert!(Op::parse("w c 1 2 maybe 1 - 3 4").is_err());
        assert!(Op::parse("r c 1 2 1 - 5 4").is_err(), "completed before invoked");
        assert!(Op::parse("r c 1 2 1 -").is_err());
    }
}
