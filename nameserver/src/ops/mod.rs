//! The clients' mutations as functions over a writer transaction: the rules of the block API
//! (placement, id allocation, version order, idempotent retries), whatever the transport. The
//! unary handlers (server/client.rs) and the pipelined session (server/session.rs) both call these;
//! they only map requests and replies.
//!
//! Each validates before it logs: a refused mutation logs nothing, so the others of its
//! transaction go on.
//!
//! Invariant (a request id is applied at most once): a mutation carrying a request id is looked up
//! in the dedup window (state/dedup.rs) before anything else, on the writer thread, against the
//! state every earlier record was applied to; the id is logged in the mutation's own record, so
//! the window is rebuilt wherever the record goes (a slave, a restart, a restore) and holds it from
//! the instant it is applied. Hence a retry with the same id
//! - finds the first outcome whenever that record is in this master's history (committed or still
//!   in flight: the answer then waits for its commit, engine `write_records`), and gets it (the seq
//!   of the first record, the block as it is now) — nothing is logged again;
//! - is applied as new only if the first attempt never reached this history (never logged, or a
//!   lost tail of a deposed master), so it is applied once there;
//! - is refused as "outcome unknown" when it is older than what its client still has in the window
//!   (it may have been applied and evicted), and as a different request when the id names another
//!   one (another kind, block or body) — never answered with that other's outcome.

mod convert;
pub mod dataserver;
pub mod view;

use crate::engine::{Txn, WriteError};
use crate::mutation::Mutation;
use crate::oplog::format;
use crate::proto;
use crate::state::State;
use crate::state::dedup::{self, Kind, Lookup, Outcome, RequestId};

/// Allocates a block id and places `replicas` replicas; logs it; returns the block and its seq.
///
/// Invariant (an id is never handed out twice): ids come from `next_block_id`, above every id ever
/// logged, and that high-water mark is itself rebuilt from the oplog, across restarts and
/// failovers.
pub fn create_block(
    txn: &mut Txn<'_>,
    replicas: usize,
    size_estimate: u64,
    request: Option<RequestId>,
) -> Result<(proto::Block, u64), WriteError> {
    if let Some(o) = seen(txn.state(), request, Kind::Create, 0, dedup::create_body(replicas))? {
        return Ok((view(txn.state(), o.block_id), o.record_seq));
    }
    create_new(txn, replicas, size_estimate, request)
}

/// Allocates `count` blocks of `replicas` replicas in one transaction, all or none; returns them
/// and the seq of the last. With a request id `first`, the i-th create carries `first.seq + i`
/// (the caller checked that they do not overflow), so a retried batch gets its first outcome:
/// the same blocks, created once, whether all of the first attempt reached this history or only
/// a prefix of it did (the rest is created now).
///
/// Invariant (all or none): every id is looked up and placement is checked before the first
/// create is logged; a refusal of any (an id of another request, beyond the window, no placement
/// for a create still to make) logs nothing.
pub fn create_blocks(
    txn: &mut Txn<'_>,
    count: u32,
    replicas: usize,
    size_estimate: u64,
    first: Option<RequestId>,
) -> Result<(Vec<proto::Block>, u64), WriteError> {
    let body = dedup::create_body(replicas);
    let key = |i: u32| first.map(|r| RequestId { client: r.client, seq: r.seq + u64::from(i) });
    let done = (0..count).map(|i| seen(txn.state(), key(i), Kind::Create, 0, body)).collect::<Result<Vec<_>, _>>()?;
    if done.iter().any(Option::is_none) {
        placement(txn.state(), replicas)?;
    }
    let (mut blocks, mut last) = (Vec::with_capacity(count as usize), 0);
    for (i, o) in (0..count).zip(done) {
        let (block, seq) = match o {
            Some(o) => (view(txn.state(), o.block_id), o.record_seq),
            None => create_new(txn, replicas, size_estimate, key(i))?,
        };
        blocks.push(block);
        last = last.max(seq);
    }
    Ok((blocks, last))
}

/// A create whose request id (if any) was looked up: not applied before.
fn create_new(
    txn: &mut Txn<'_>,
    replicas: usize,
    size_estimate: u64,
    request: Option<RequestId>,
) -> Result<(proto::Block, u64), WriteError> {
    let ds = placement(txn.state(), replicas)?;
    let id = txn.state().next_block_id;
    let request = request.map(convert::request_id);
    let seq = txn.log(Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: ds, request }))?;
    let block = view(txn.state(), id);
    txn.soft().reserve(&block.dataservers, size_estimate);
    Ok((block, seq))
}

/// Commits a new version of a block (validated by `server::validate::commit_block`); returns the
/// block and the seq. Versions only move forward; a retry of the same version is accepted
/// (idempotent), and with a request id it is not even logged again.
pub fn commit_block(
    txn: &mut Txn<'_>,
    c: &proto::CommitBlockRequest,
    request: Option<RequestId>,
) -> Result<(proto::Block, u64), WriteError> {
    let body = dedup::commit_body(c.version, c.size, c.file_count, c.del_size, c.del_file_count);
    if let Some(o) = seen(txn.state(), request, Kind::Commit, c.block_id, body)? {
        return Ok((view(txn.state(), c.block_id), o.record_seq));
    }
    let Some(b) = txn.state().blocks().get(&c.block_id) else {
        return Err(WriteError::NotFound(format!("block {} does not exist", c.block_id)));
    };
    if c.version < b.version {
        return Err(WriteError::Invalid(format!(
            "block {}: version {} is older than {}",
            c.block_id, c.version, b.version
        )));
    }
    let seq = txn.log(Mutation::BlockCommit(format::BlockCommit {
        block_id: c.block_id,
        version: c.version,
        size: c.size,
        file_count: c.file_count,
        del_size: c.del_size,
        del_file_count: c.del_file_count,
        request: request.map(convert::request_id),
    }))?;
    Ok((view(txn.state(), c.block_id), seq))
}

/// Removes a block; returns the seq.
pub fn remove_block(txn: &mut Txn<'_>, block_id: u64, request: Option<RequestId>) -> Result<u64, WriteError> {
    if let Some(o) = seen(txn.state(), request, Kind::Remove, block_id, 0)? {
        return Ok(o.record_seq);
    }
    Ok(txn.log(Mutation::BlockRemove(format::BlockRemove { block_id, request: request.map(convert::request_id) }))?)
}

/// Dataservers for `replicas` new replicas, or why there are none.
fn placement(s: &State, replicas: usize) -> Result<Vec<u32>, WriteError> {
    s.place(replicas, &[]).ok_or_else(|| {
        let live = s.live_dataservers().count();
        WriteError::Unavailable(format!("cannot place {replicas} replicas: {live} live dataservers"))
    })
}

/// The first outcome of `request` if it was applied; an error if it cannot be answered safely.
fn seen(
    s: &State,
    request: Option<RequestId>,
    kind: Kind,
    block_id: u64,
    body: u32,
) -> Result<Option<Outcome>, WriteError> {
    let Some(id) = request else { return Ok(None) };
    match s.requests().lookup(id, kind, block_id, body) {
        Lookup::New => Ok(None),
        Lookup::Done(o) => Ok(Some(o)),
        Lookup::OtherRequest(o) => Err(WriteError::Invalid(format!(
            "request id {}:{} was already used by another request (a {:?} of block {} at seq {}); a new request \
             needs a new id",
            id.client, id.seq, o.kind, o.block_id, o.record_seq
        ))),
        Lookup::Beyond { floor } => Err(WriteError::BeyondWindow(format!(
            "request id {}:{} is older than the dedup window (this client's requests through {floor} were evicted): \
             it may or may not have been applied",
            id.client, id.seq
        ))),
    }
}

/// The block as the API shows it; a block removed since shows its id only.
fn view(s: &State, id: u64) -> proto::Block {
    s.blocks().get(&id).map_or_else(|| proto::Block { id, ..Default::default() }, |b| view::block(s, id, b))
}
