//! Is a history of reads and commits (ops.rs) linearizable? Each block is a register whose version
//! only moves forward: a commit of `v` is applied when `v` is not older than the block's version
//! (equal is an idempotent retry) and refused otherwise; a read returns the version.
//!
//! The search is Wing & Gong's, with Lowe's memo of visited configurations (as in Knossos and
//! Porcupine, written here from their descriptions): walk the events in time order; at an
//! operation's invocation, try to linearize it now (the model accepts its result, and the
//! configuration — the set of operations linearized so far and the version — was not seen
//! before), then start again from the first event left; at a completion whose operation is not yet
//! linearized, undo the last choice and try the next operation instead. The history is
//! linearizable when every operation of known outcome found its place; it is not when the first
//! choice must be undone. A commit of unknown outcome has no completion: it may take effect at
//! any moment after its invocation, or never (placed after everything, it changes nothing any
//! operation saw). A read that failed tells nothing and is not in the history.
//!
//! Per block the search is independent (registers compose). A budget of steps keeps a pathological
//! history from running forever: past it the block is "undecided", reported as such, never as
//! linearizable.

use std::collections::{BTreeMap, HashSet};

use crate::ops::{Call, Op, Outcome};

/// Steps (events visited) one block's search may take before it gives up.
pub const DEFAULT_BUDGET: u64 = 50_000_000;

/// The operation no order could explain, and where the deepest attempt got stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub block: u64,
    /// The operation that no order could place (a stale read, or the one whose completion the
    /// deepest attempt reached before placing it).
    pub op: Op,
    /// Why, in words.
    pub why: String,
    /// Some operations concurrent with it (overlapping its interval), for the report.
    pub concurrent: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Violation(Box<Violation>),
    /// The step budget ran out.
    Undecided,
}

/// A read that returned a version older than one an operation had already shown as in place
/// before the read was invoked (a write acknowledged, a newer version read, a refusal): the
/// plainest kind of violation, counted separately so it can be reported by the reply's epoch
/// and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRead {
    pub read: Op,
    /// The version known to be in place when the read was invoked.
    pub known: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub blocks: usize,
    pub reads: usize,
    pub writes: usize,
    pub unknown_writes: usize,
    pub violations: Vec<Violation>,
    pub undecided: Vec<u64>,
    /// Stale reads counted by (epoch, node) of the reply.
    pub stale_by_reply: BTreeMap<(u64, String), u64>,
    /// The first few stale reads, in invocation order.
    pub stale_examples: Vec<StaleRead>,
}

impl Report {
    /// `Some(true)` only when every block was decided linearizable.
    pub fn linearizable(&self) -> Option<bool> {
        if !self.violations.is_empty() {
            Some(false)
        } else if !self.undecided.is_empty() {
            None
        } else {
            Some(true)
        }
    }

    pub fn stale_reads(&self) -> u64 {
        self.stale_by_reply.values().sum()
    }
}

/// Checks every block of the history.
pub fn check(ops: &[Op], budget: u64) -> Report {
    let mut by_block: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in ops {
        by_block.entry(o.block).or_default().push(o);
    }
    let mut r = Report { blocks: by_block.len(), ..Default::default() };
    for o in ops {
        match o.call {
            Call::Read { .. } => r.reads += 1,
            Call::Write { outcome, .. } => {
                r.writes += 1;
                r.unknown_writes += usize::from(outcome == Outcome::Unknown);
            }
        }
    }
    for (block, mut h) in by_block {
        // A write the server said it did not run has no effect and says nothing about the block.
        h.retain(|o| !matches!(o.call, Call::Write { outcome: Outcome::Failed, .. }));
        h.sort_by_key(|o| (o.invoked_us, o.completed_us));
        // Of the writes of unknown outcome with one version (a retried commit), only the first
        // invoked matters: it may land wherever any later one could (it has no completion either,
        // and began earlier), and landing the same version twice changes nothing. Without this,
        // k retries make 2^k configurations of the same thing.
        let mut first_unknown: HashSet<u32> = HashSet::new();
        h.retain(|o| match o.call {
            Call::Write { version, outcome: Outcome::Unknown } => first_unknown.insert(version),
            _ => true,
        });
        let stale = stale_reads(&h);
        for s in &stale {
            *r.stale_by_reply.entry((s.read.epoch, s.read.node.clone())).or_default() += 1;
            r.stale_examples.push(s.clone());
        }
        // A stale read is a violation already (versions only move forward in every order); the
        // search would only spend its budget proving it again.
        let verdict = match stale.first() {
            Some(s) => Verdict::Violation(Box::new(violation(
                block,
                &h,
                &s.read,
                format!("version {} was in place before this read was invoked", s.known),
            ))),
            None => check_reduced_then_whole(block, &h, budget),
        };
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Violation(v) => r.violations.push(*v),
            Verdict::Undecided => r.undecided.push(block),
        }
    }
    r.stale_examples.sort_by_key(|s| s.read.invoked_us);
    r.stale_examples.truncate(10);
    r
}

/// The model: the block's version after `call`, if `call`'s result is possible at `version`.
fn step(version: u32, call: Call) -> Option<u32> {
    match call {
        Call::Read { version: v } => (v == version).then_some(version),
        Call::Write { version: v, outcome: Outcome::Ok } => (v >= version).then_some(v),
        Call::Write { version: v, outcome: Outcome::Refused } => (v < version).then_some(version),
        Call::Write { outcome: Outcome::Failed, .. } => Some(version),
        // Applied if it may be, refused otherwise: either is a possible outcome.
        Call::Write { version: v, outcome: Outcome::Unknown | Outcome::Pending } => Some(version.max(v)),
    }
}

fn unknown(o: &Op) -> bool {
    matches!(o.call, Call::Write { outcome: Outcome::Unknown | Outcome::Pending, .. })
}

/// Writes of unknown outcome are what makes the search expensive: each may land at any moment
/// or never, and k of them pending at once make 2^k configurations. One whose version no read
/// ever returned is mostly noise (a commit cut by a failover that never landed), so the search
/// first runs without those — that is choosing "never applied" for them, so a linearizable
/// answer holds for the whole history — and only if that finds no order does it search the whole
/// history, whose answer is the verdict.
fn check_reduced_then_whole(block: u64, h: &[&Op], budget: u64) -> Verdict {
    let read: HashSet<u32> = h
        .iter()
        .filter_map(|o| match o.call {
            Call::Read { version } => Some(version),
            _ => None,
        })
        .collect();
    let reduced: Vec<&Op> = h
        .iter()
        .filter(|o| !matches!(o.call, Call::Write { version, outcome: Outcome::Unknown } if !read.contains(&version)))
        .copied()
        .collect();
    if reduced.len() < h.len() && check_block(block, &reduced, budget) == Verdict::Linearizable {
        return Verdict::Linearizable;
    }
    check_block(block, h, budget)
}

/// The event list of one block: a doubly linked list (so that a linearized operation's events
/// can be lifted out and put back in O(1)), node 0 its head.
struct Events {
    /// Per node: the operation, and whether it is its invocation.
    what: Vec<(usize, bool)>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// Per operation: its invocation node and its completion node (0: none, unknown outcome).
    nodes: Vec<(usize, usize)>,
}

const HEAD: usize = 0;

impl Events {
    fn new(h: &[&Op]) -> Self {
        // (time, 0 = invocation | 1 = completion, op): at equal times invocations come first, so
        // that operations which might have overlapped are treated as concurrent.
        let mut ev: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * h.len());
        for (i, o) in h.iter().enumerate() {
            ev.push((o.invoked_us, 0, i));
            if !unknown(o) {
                ev.push((o.completed_us, 1, i));
            }
        }
        ev.sort_unstable();
        let n = ev.len() + 1;
        let mut e = Events {
            what: vec![(usize::MAX, false); n],
            prev: (0..n).map(|i| if i == 0 { n - 1 } else { i - 1 }).collect(),
            next: (0..n).map(|i| (i + 1) % n).collect(),
            nodes: vec![(0, 0); h.len()],
        };
        for (k, &(_, kind, op)) in ev.iter().enumerate() {
            e.what[k + 1] = (op, kind == 0);
            if kind == 0 {
                e.nodes[op].0 = k + 1;
            } else {
                e.nodes[op].1 = k + 1;
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    /// Puts `x` back; undoes `unlink(x)` when calls are undone in reverse order.
    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[n] = x;
    }

    fn lift(&mut self, op: usize) {
        let (call, ret) = self.nodes[op];
        self.unlink(call);
        if ret != 0 {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.nodes[op];
        if ret != 0 {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// Checks one block's history (sorted by invocation), starting from version 0.
pub fn check_block(block: u64, h: &[&Op], budget: u64) -> Verdict {
    let mut ev = Events::new(h);
    // The memo keys a set of linearized operations by a 128-bit XOR of per-operation random
    // words (updated in O(1) per choice); a collision would only prune a branch wrongly with
    // probability ~2^-128 per pair.
    let mut rng = fastrand::Rng::with_seed(block ^ 0x9e37_79b9_7f4a_7c15);
    let zobrist: Vec<u128> = (0..h.len()).map(|_| rng.u128(..)).collect();
    let mut seen: HashSet<(u128, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let (mut set, mut version) = (0u128, 0u32);
    let mut left = h.iter().filter(|o| !unknown(o)).count();
    // The deepest attempt: (operations placed, the stuck operation, the version then).
    let mut deepest: Option<(usize, usize, u32)> = None;
    let mut entry = ev.next[HEAD];
    let mut steps = 0u64;
    while left > 0 {
        steps += 1;
        if steps > budget {
            return Verdict::Undecided;
        }
        let (op, is_call) = ev.what[entry];
        if is_call {
            if let Some(v) = step(version, h[op].call)
                && seen.insert((set ^ zobrist[op], v))
            {
                stack.push((op, version));
                set ^= zobrist[op];
                version = v;
                left -= usize::from(!unknown(h[op]));
                ev.lift(op);
                entry = ev.next[HEAD];
            } else {
                entry = ev.next[entry];
            }
            continue;
        }
        // A completion of an operation not yet placed: the last choice was wrong.
        if deepest.is_none_or(|(d, _, _)| stack.len() > d) {
            deepest = Some((stack.len(), op, version));
        }
        let Some((undo, before)) = stack.pop() else {
            let (placed, stuck, version) = deepest.expect("set just above");
            let why = format!(
                "no order of the operations explains it: the deepest attempt placed {placed} operations, the block \
                 then at version {version}"
            );
            return Verdict::Violation(Box::new(violation(block, h, h[stuck], why)));
        };
        ev.unlift(undo);
        set ^= zobrist[undo];
        version = before;
        left += usize::from(!unknown(h[undo]));
        entry = ev.next[ev.nodes[undo].0];
    }
    Verdict::Linearizable
}

fn violation(block: u64, h: &[&Op], o: &Op, why: String) -> Violation {
    let concurrent = h
        .iter()
        .filter(|c| **c != o && c.invoked_us <= o.completed_us && o.invoked_us <= c.completed_us)
        .take(8)
        .map(|c| (*c).clone())
        .collect();
    Violation { block, op: o.clone(), why, concurrent }
}

/// Reads that returned less than was known to be in place when they were invoked (see
/// `StaleRead`). `h` is one block's history.
fn stale_reads(h: &[&Op]) -> Vec<StaleRead> {
    // What each completed operation proves is in place from its completion on (versions only
    // move forward, so it stays at least that).
    let mut known: Vec<(u64, u32)> = h
        .iter()
        .filter_map(|o| {
            let at_least = match o.call {
                Call::Read { version } | Call::Write { version, outcome: Outcome::Ok } => version,
                Call::Write { version, outcome: Outcome::Refused } => version.saturating_add(1),
                Call::Write { outcome: Outcome::Unknown | Outcome::Failed | Outcome::Pending, .. } => return None,
            };
            Some((o.completed_us, at_least))
        })
        .collect();
    known.sort_unstable();
    let mut max = 0;
    for k in known.iter_mut() {
        max = max.max(k.1);
        k.1 = max;
    }
    h.iter()
        .filter_map(|o| {
            let Call::Read { version } = o.call else { return None };
            // Strictly before the invocation: an operation completing at the same microsecond
            // may have overlapped.
            let i = known.partition_point(|(t, _)| *t < o.invoked_us);
            let k = if i == 0 { 0 } else { known[i - 1].1 };
            (version < k).then(|| StaleRead { read: (*o).clone(), known: k })
        })
        .collect()
}

#[cfg(test)]
mod tests;
