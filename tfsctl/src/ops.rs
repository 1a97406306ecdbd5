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
    /// Written when a commit is sent, before its answer: a commit whose answer never made it to
    /// the history (the client killed with it in flight) is read back as `Unknown` — it may have
    /// been applied, and a read may have seen it.
    Pending,
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
                    Outcome::Pending => "pending",
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
                    Some("pending") => Outcome::Pending,
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
/// error. A commit sent but never answered in the file (`pending` alone) is a commit of unknown
/// outcome.
pub fn read(path: &Path) -> Result<Vec<Op>> {
    Ok(settle(crate::record::read_lines(path, Op::parse)?))
}

/// Pairs each `pending` line with the answer of the same attempt (client, block, version, invocation
/// time): answered, it goes; unanswered, it stands for a commit of unknown outcome.
pub fn settle(ops: Vec<Op>) -> Vec<Op> {
    let key = |o: &Op| match o.call {
        Call::Write { version, .. } => Some((o.client.clone(), o.block, version, o.invoked_us)),
        Call::Read { .. } => None,
    };
    let answered: std::collections::HashSet<_> = ops
        .iter()
        .filter(|o| !matches!(o.call, Call::Write { outcome: Outcome::Pending, .. }))
        .filter_map(key)
        .collect();
    ops.into_iter()
        .filter_map(|mut o| match o.call {
            Call::Write { version, outcome: Outcome::Pending } => (!answered.contains(&key(&o)?)).then(|| {
                o.call = Call::Write { version, outcome: Outcome::Unknown };
                o
            }),
            _ => Some(o),
        })
        .collect()
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
            Call::Write { version: 8, outcome: Outcome::Pending },
        ];
        for (call, node) in calls.into_iter().zip(["ns-0", "", "ns-1", "", "ns-0", ""]) {
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

    /// CI found it: a commit in flight when the client was killed was applied and read, but had no
    /// line at all; its `pending` line now stands for it.
    #[test]
    fn an_unanswered_commit_is_of_unknown_outcome_and_an_answered_one_is_itself() {
        let line = |s: &str| Op::parse(s).unwrap();
        let h = settle(vec![
            line("w c 8 218 pending 0 - 100 100"),
            line("w c 8 218 ok 2 demo-1 100 150"),
            line("w c 8 219 pending 0 - 200 200"),
            line("r d 8 219 2 demo-1 210 260"),
        ]);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].call, Call::Write { version: 218, outcome: Outcome::Ok });
        assert_eq!(h[1].call, Call::Write { version: 219, outcome: Outcome::Unknown });
        assert_eq!(crate::linearize::check(&h, 1000).linearizable(), Some(true));
        // Without the pending line, the read of 219 has no writer: what CI reported.
        assert_eq!(crate::linearize::check(&[h[0].clone(), h[2].clone()], 1000).linearizable(), Some(false));
    }
}
