//! `tfsctl verify`: every acknowledged mutation in a record must be visible, no block id may
//! have been acknowledged as created twice, and no two epochs may have acknowledged writes in
//! overlapping windows (split brain, see history.rs). With a fault log, the write outage each
//! fault caused, by kind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use tfs_nameserver::proto::{self, client_client::ClientClient};

use crate::history::{self, History, secs};
use crate::linearize::{self, Report};
use crate::ops;
use crate::record::{self, Ack, Kind};

mod unacknowledged;

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// A file written by `bench --record`; repeat to check several writers' records together.
    #[arg(long, required_unless_present = "history")]
    pub record: Vec<PathBuf>,
    /// A fault log (JSON lines with `kind` and `t_ms`, as `make chaos` writes): adds the write
    /// outage after each fault, a table by kind and the one-line verdict `faults=N lost=...`.
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// A file written by `bench --op mixed --history`; repeat for several clients. Checks that
    /// the reads and commits in it are linearizable, per block (see linearize.rs), and counts
    /// stale reads by the epoch and node that answered them.
    #[arg(long)]
    pub history: Vec<PathBuf>,
    /// Steps the linearizability search may take per block before it calls the block undecided.
    #[arg(long, default_value_t = linearize::DEFAULT_BUDGET)]
    pub search_budget: u64,
    /// Write everything found as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Do not read the blocks back (no server needed): only the history is checked.
    #[arg(long)]
    pub offline: bool,
    /// The server holds a restore to this point in time (unix ms, as `backup restore --target-time`):
    /// every mutation acknowledged at or before it must be there, and no block created by a request
    /// sent after it may be. Requests in flight at that instant may go either way.
    #[arg(long)]
    pub restored_to_ms: Option<u64>,
    /// The records' writers were the cluster's only writers and all ran to completion: every
    /// block on the server must be one an acknowledged create returned (`unacknowledged=0`; a
    /// retried create applied twice would leave a block no one was told of).
    #[arg(long)]
    pub sole_writer: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Expect {
    created: bool,
    removed: bool,
    version: u32,
}

/// What reading the blocks back found.
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    lost: u64,
    stale: u64,
    resurrected: u64,
    /// With `--restored-to-ms`: blocks present although their create was sent after the point.
    after_point: u64,
    /// With `--sole-writer`: blocks on the server that no acknowledged create returned.
    unacknowledged: Option<u64>,
}

const MAX_PROBLEMS: usize = 20;

fn note(problems: &mut Vec<String>, p: impl FnOnce() -> String) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(p());
    }
}

/// What the record promises per block, and how many ids were acknowledged as created twice.
fn expectations(acks: &[Ack], problems: &mut Vec<String>) -> (BTreeMap<u64, Expect>, u64) {
    let mut expect: BTreeMap<u64, Expect> = BTreeMap::new();
    let mut created_twice = 0u64;
    for a in acks {
        let e = expect.entry(a.block).or_default();
        match a.kind {
            Kind::Create => {
                if e.created {
                    created_twice += 1;
                    note(problems, || format!("block id {} was acknowledged as created twice", a.block));
                }
                e.created = true;
            }
            Kind::Commit { version } => e.version = e.version.max(version),
            Kind::Remove => e.removed = true,
        }
    }
    (expect, created_twice)
}

/// The blocks of `ids` that exist, read in batches.
async fn fetch(c: &mut ClientClient<tonic::transport::Channel>, ids: &[u64]) -> Result<Vec<proto::Block>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(5000) {
        let r = c
            .batch_get_blocks(proto::BatchGetBlocksRequest { block_ids: chunk.to_vec(), stale: false })
            .await
            .map_err(|s| anyhow::anyhow!("reading blocks back: {}: {}", s.code(), s.message()))?;
        out.extend(r.into_inner().blocks);
    }
    Ok(out)
}

/// Blocks of `ids` that exist: with `--restored-to-ms`, blocks whose create was sent after the point.
async fn read_absent(addr: &str, ids: &[u64], problems: &mut Vec<String>) -> Result<u64> {
    let mut c = ClientClient::new(crate::connect(addr).await?);
    let present = fetch(&mut c, ids).await?;
    for b in &present {
        note(problems, || format!("block {}: created by a request sent after the restore point, but present", b.id));
    }
    Ok(present.len() as u64)
}

async fn read_back(addr: &str, expect: &BTreeMap<u64, Expect>, problems: &mut Vec<String>) -> Result<Found> {
    let mut c = ClientClient::new(crate::connect(addr).await?);
    let ids: Vec<u64> = expect.keys().copied().collect();
    let mut f = Found::default();
    for chunk in ids.chunks(5000) {
        let blocks = fetch(&mut c, chunk).await?;
        let found: HashMap<u64, &proto::Block> = blocks.iter().map(|b| (b.id, b)).collect();
        for id in chunk {
            let e = expect[id];
            match (found.get(id), e.removed) {
                (None, false) => {
                    f.lost += 1;
                    note(problems, || format!("block {id}: acknowledged, but missing"));
                }
                (Some(_), true) => {
                    f.resurrected += 1;
                    note(problems, || format!("block {id}: removal was acknowledged, but it exists"));
                }
                (Some(b), false) if b.version < e.version => {
                    f.stale += 1;
                    note(problems, || format!("block {id}: version {} acknowledged, {} found", e.version, b.version));
                }
                _ => {}
            }
        }
    }
    Ok(f)
}

pub async fn run(addr: &str, a: &VerifyArgs, json: bool) -> Result<i32> {
    let mut acks = Vec::new();
    for p in &a.record {
        acks.extend(record::read(p)?);
    }
    // A restore to a point: what was acknowledged by then is checked as usual; what was sent
    // after it must be absent.
    let mut after_point = Vec::new();
    if let Some(t) = a.restored_to_ms {
        let n = acks.len();
        after_point = acks.iter().filter(|x| x.sent_ms > t && x.kind == Kind::Create).map(|x| x.block).collect();
        acks.retain(|x| x.acked_ms <= t);
        (!json).then(|| println!(
            "verify: restore point {t}: {} acknowledged by then must be present, {} creates sent after it must be absent, {} in flight at it not checked",
            acks.len(),
            after_point.len(),
            n - acks.len() - after_point.len()
        ));
    }
    let faults = match &a.faults {
        Some(p) => history::parse_faults(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read fault log {}", p.display()))?,
        )?,
        None => Vec::new(),
    };
    let mut problems: Vec<String> = Vec::new();
    let (expect, created_twice) = expectations(&acks, &mut problems);
    let found =
        if a.offline || a.record.is_empty() { None } else { Some(read_back(addr, &expect, &mut problems).await?) };
    let h = history::analyze(&acks, &faults);
    let lin = if a.history.is_empty() {
        None
    } else {
        let mut ops = Vec::new();
        for p in &a.history {
            ops.extend(ops::read(p)?);
        }
        Some(linearize::check(&ops, a.search_budget))
    };
    let mut found = found;
    if let (Some(f), false) = (found.as_mut(), after_point.is_empty()) {
        f.after_point = read_absent(addr, &after_point, &mut problems).await?;
    }
    if let (Some(f), true) = (found.as_mut(), a.sole_writer) {
        f.unacknowledged = Some(unacknowledged::count(addr, &expect, &mut problems).await?);
    }
    let f = found.unwrap_or_default();
    // Every acknowledged mutation that is not visible as acknowledged: a missing block, an older
    // version than acknowledged, or a block back after its removal was acknowledged.
    let lost = f.lost + f.stale + f.resurrected;
    // An undecided history is not called linearizable.
    let ok = lost == 0
        && f.after_point == 0
        && f.unacknowledged.unwrap_or(0) == 0
        && created_twice == 0
        && h.split_brain.certain == 0
        && lin.as_ref().is_none_or(|l| l.linearizable() == Some(true));
    let mut by_epoch: Vec<(u64, u64)> = h.windows.iter().map(|w| (w.epoch, w.acks)).collect();
    by_epoch.sort();
    let verdict = format!(
        "faults={} lost={} duplicate_ids={created_twice} split_brain={}{} max_unavailable_s={}",
        faults.len(),
        if found.is_some() { lost.to_string() } else { "unchecked".into() },
        h.split_brain.certain,
        lin.as_ref().map(|l| format!(" linearizable={} stale_reads={}", word(l), l.stale_reads())).unwrap_or_default(),
        secs(h.max_unavailable_ms())
    );
    let mut report = serde_json::json!({
        "ok": ok, "acknowledged": acks.len(), "blocks": expect.len(), "read_back": found.is_some(),
        "lost": lost, "missing": f.lost, "stale": f.stale, "resurrected": f.resurrected,
        "duplicate_ids": created_twice, "after_restore_point": f.after_point,
        "unacknowledged": f.unacknowledged,
        "acks_by_epoch": by_epoch.iter().map(|(e, n)| serde_json::json!({"epoch": e, "acks": n})).collect::<Vec<_>>(),
        "verdict": verdict,
    });
    if let (Some(obj), serde_json::Value::Object(hj)) = (report.as_object_mut(), h.to_json()) {
        obj.extend(hj);
    }
    if let (Some(obj), Some(l)) = (report.as_object_mut(), &lin) {
        obj.insert("linearizability".into(), lin_json(l));
    }
    if let Some(p) = &a.summary {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if json {
        println!("{report}");
    } else {
        if !acks.is_empty() || a.history.is_empty() {
            print_text(&acks, &expect, found, created_twice, &by_epoch, &h, &problems);
        }
        if let Some(l) = &lin {
            print_lin(l);
        }
        if a.faults.is_some() {
            print!("{}", h.kind_table());
            println!("{verdict}");
        }
    }
    Ok(if ok { 0 } else { 1 })
}

fn print_text(
    acks: &[Ack],
    expect: &BTreeMap<u64, Expect>,
    found: Option<Found>,
    created_twice: u64,
    by_epoch: &[(u64, u64)],
    h: &History,
    problems: &[String],
) {
    let epochs: Vec<String> = by_epoch.iter().map(|(e, n)| format!("{e}:{n}")).collect();
    let ok_so_far = found
        .is_none_or(|f| f.lost + f.stale + f.resurrected + f.after_point + f.unacknowledged.unwrap_or(0) == 0)
        && created_twice == 0;
    match found {
        Some(f) => println!(
            "verify: {} acknowledged mutations on {} blocks (by epoch {}): lost={} stale={} resurrected={} after_restore_point={} duplicate_ids={created_twice}{} => {}",
            acks.len(),
            expect.len(),
            epochs.join(","),
            f.lost,
            f.stale,
            f.resurrected,
            f.after_point,
            f.unacknowledged.map(|n| format!(" unacknowledged={n}")).unwrap_or_default(),
            if ok_so_far { "OK" } else { "FAILED" }
        ),
        None => println!(
            "verify: {} acknowledged mutations on {} blocks (by epoch {}), not read back: duplicate_ids={created_twice} => {}",
            acks.len(),
            expect.len(),
            epochs.join(","),
            if ok_so_far { "OK" } else { "FAILED" }
        ),
    }
    for p in problems {
        println!("  {p}");
    }
    let sb = &h.split_brain;
    println!(
        "history: {} epochs, split_brain={} late_acks={} (max {} ms after a newer epoch's first) max_unavailable_s={}{} => {}",
        h.windows.len(),
        sb.certain,
        sb.late,
        sb.max_late_ms,
        secs(h.max_unavailable_ms()),
        h.max_gap.map(|g| format!(" (from {} to {})", g.from_ms, g.to_ms)).unwrap_or_default(),
        if sb.certain == 0 { "OK" } else { "FAILED" }
    );
    for o in &sb.overlaps {
        println!(
            "  epoch {} acknowledged {} write(s) sent after epoch {} acknowledged its first at {} (and {} received late); its last sent at {}, received at {}",
            o.older, o.certain, o.newer, o.newer_first_acked_ms, o.late, o.last_sent_ms, o.last_acked_ms
        );
    }
    for f in &h.faults {
        println!(
            "  fault {:>3} {:<28} at {}: outage {} s, stalled {} s{}{}",
            f.index,
            f.kind,
            f.t_ms,
            secs(f.outage.ms()),
            secs(f.stalled_ms),
            f.failover
                .map(|(e, ms)| format!(", epoch {} -> {e} after {} s", f.epoch_before.unwrap_or(0), secs(ms)))
                .unwrap_or_default(),
            if f.recovered { "" } else { ", no write acknowledged after it" }
        );
    }
}

fn word(l: &Report) -> &'static str {
    match l.linearizable() {
        Some(true) => "true",
        Some(false) => "false",
        None => "undecided",
    }
}

fn show(o: &ops::Op) -> String {
    let what = match o.call {
        ops::Call::Read { version } => format!("read {version}"),
        ops::Call::Write { version, outcome } => format!("commit {version} ({outcome:?})").to_lowercase(),
    };
    let node = if o.node.is_empty() { "?" } else { &o.node };
    format!("{} {what} from epoch {} node {node}, {}..{} us", o.client, o.epoch, o.invoked_us, o.completed_us)
}

fn print_lin(l: &Report) {
    println!(
        "linearizability: {} reads, {} commits ({} of unknown outcome) on {} blocks: linearizable={} stale_reads={} => {}",
        l.reads,
        l.writes,
        l.unknown_writes,
        l.blocks,
        word(l),
        l.stale_reads(),
        if l.linearizable() == Some(true) { "OK" } else { "FAILED" }
    );
    for ((epoch, node), n) in &l.stale_by_reply {
        println!("  {n} stale read(s) answered by epoch {epoch} node {}", if node.is_empty() { "?" } else { node });
    }
    for v in &l.violations {
        println!("  block {}: {}: {}", v.block, show(&v.op), v.why);
        for c in &v.concurrent {
            println!("    concurrent: {}", show(c));
        }
    }
    for s in l.stale_examples.iter().take(5) {
        println!("  stale: {} (version {} was in place)", show(&s.read), s.known);
    }
    if !l.undecided.is_empty() {
        println!("  undecided (search budget spent): blocks {:?}", l.undecided);
    }
}

fn lin_json(l: &Report) -> serde_json::Value {
    serde_json::json!({
        "linearizable": l.linearizable(), "reads": l.reads, "writes": l.writes,
        "unknown_writes": l.unknown_writes, "blocks": l.blocks, "stale_reads": l.stale_reads(),
        "stale_by_reply": l.stale_by_reply.iter()
            .map(|((e, n), c)| serde_json::json!({"epoch": e, "node": n, "reads": c})).collect::<Vec<_>>(),
        "violations": l.violations.iter()
            .map(|v| serde_json::json!({"block": v.block, "op": show(&v.op), "why": v.why})).collect::<Vec<_>>(),
        "undecided_blocks": l.undecided,
    })
}
