//! The clients' mutations as functions over a writer transaction: the rules of the block API
//! (placement, id allocation, version order), whatever the transport. The unary handlers
//! (server/client.rs) and the pipelined session (server/session.rs) both call these; they only map
//! requests and replies.
//!
//! Each validates before it logs: a refused mutation logs nothing, so the others of its
//! transaction go on.

use crate::engine::{Txn, WriteError};
use crate::mutation::Mutation;
use crate::proto;

/// Allocates a block id and places `replicas` replicas; logs it; returns the block and its seq.
///
/// Invariant (an id is never handed out twice): ids come from `next_block_id`, above every id ever
/// logged, and that high-water mark is itself rebuilt from the oplog, across restarts and
/// failovers.
pub fn create_block(txn: &mut Txn<'_>, replicas: usize, size_estimate: u64) -> Result<(proto::Block, u64), WriteError> {
    let ds = txn.state().place(replicas, &[]).ok_or_else(|| {
        let live = txn.state().live_dataservers().count();
        WriteError::Unavailable(format!("cannot place {replicas} replicas: {live} live dataservers"))
    })?;
    let id = txn.state().next_block_id;
    let seq = txn.log(Mutation::BlockCreate(proto::BlockCreate { block_id: id, dataservers: ds.clone() }))?;
    txn.soft().reserve(&ds, size_estimate);
    let s = txn.state();
    Ok((s.block_view(id, &s.blocks()[&id]), seq))
}

/// Commits a new version of a block (validated by `server::validate::commit_block`); returns the
/// block and the seq. Versions only move forward; a retry of the same version is accepted
/// (idempotent).
pub fn commit_block(txn: &mut Txn<'_>, c: &proto::CommitBlockRequest) -> Result<(proto::Block, u64), WriteError> {
    let Some(b) = txn.state().blocks().get(&c.block_id) else {
        return Err(WriteError::NotFound(format!("block {} does not exist", c.block_id)));
    };
    if c.version < b.version {
        return Err(WriteError::Invalid(format!(
            "block {}: version {} is older than {}",
            c.block_id, c.version, b.version
        )));
    }
    let seq = txn.log(Mutation::BlockCommit(proto::BlockCommit {
        block_id: c.block_id,
        version: c.version,
        size: c.size,
        file_count: c.file_count,
        del_size: c.del_size,
        del_file_count: c.del_file_count,
    }))?;
    let s = txn.state();
    Ok((s.block_view(c.block_id, &s.blocks()[&c.block_id]), seq))
}

/// Removes a block; returns the seq.
pub fn remove_block(txn: &mut Txn<'_>, block_id: u64) -> Result<u64, WriteError> {
    Ok(txn.log(Mutation::BlockRemove(proto::BlockRemove { block_id }))?)
}
