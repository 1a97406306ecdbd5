//! The client API: blocks (create, batch create, get, batch get, commit, remove, list), echo, status.

use tonic::{Request, Response, Status};

use super::{Timer, to_status, validate};
use crate::engine::{Consistency, Engine};
use crate::ops;
use crate::proto::{self, client_server::Client};

/// Crash point (crashpoint.rs) of a unary create, a batch create or a session's burst with a
/// create: the create is committed (durable here and on the sync slaves), its reply not sent yet.
pub const CREATE_COMMITTED: &str = "create:committed-before-reply";

pub struct ClientApi {
    pub engine: Engine,
    pub peers: std::sync::Arc<crate::replication::peers::Peers>,
    pub default_replicas: u32,
}

#[tonic::async_trait]
impl Client for ClientApi {
    async fn create_block(
        &self,
        req: Request<proto::CreateBlockRequest>,
    ) -> Result<Response<proto::CreateBlockReply>, Status> {
        let t = Timer::new(&self.engine, "create_block");
        let r = async {
            let n = validate::create_block(req.get_ref(), self.default_replicas)?.replicas;
            let id = validate::unary_request_id(req.get_ref().request_id.as_ref(), req.metadata())?;
            let est = self.engine.cfg().block_size_estimate;
            let ((block, seq), _) =
                self.engine.write(move |txn| ops::create_block(txn, n, est, id)).await.map_err(to_status)?;
            crate::crashpoint::reached(CREATE_COMMITTED);
            Ok(Response::new(proto::CreateBlockReply { epoch: self.engine.epoch().get(), block: Some(block), seq }))
        }
        .await;
        t.done(r)
    }

    async fn batch_create_blocks(
        &self,
        req: Request<proto::BatchCreateBlocksRequest>,
    ) -> Result<Response<proto::BatchCreateBlocksReply>, Status> {
        let t = Timer::new(&self.engine, "batch_create_blocks");
        let r = async {
            let first = validate::unary_request_id(req.get_ref().request_id.as_ref(), req.metadata())?;
            let req = validate::batch_create_blocks(req.get_ref(), self.default_replicas, first)?;
            let (n, count) = (req.replicas, req.count);
            let est = self.engine.cfg().block_size_estimate;
            let ((blocks, seq), _) = self
                .engine
                .write_records(count, move |txn| ops::create_blocks(txn, count, n, est, first))
                .await
                .map_err(to_status)?;
            crate::crashpoint::reached(CREATE_COMMITTED);
            Ok(Response::new(proto::BatchCreateBlocksReply { epoch: self.engine.epoch().get(), blocks, seq }))
        }
        .await;
        t.done(r)
    }

    async fn get_block(&self, req: Request<proto::GetBlockRequest>) -> Result<Response<proto::GetBlockReply>, Status> {
        let t = Timer::new(&self.engine, "get_block");
        let (id, c) = (req.get_ref().block_id, Consistency::stale_if(req.get_ref().stale));
        let r = self.engine.read(c, |s| s.blocks().get(&id).map(|b| ops::view::block(s, id, b))).await;
        t.done(match r {
            Ok((Some(b), at)) => Ok(Response::new(proto::GetBlockReply {
                epoch: at.epoch.get(),
                block: Some(b),
                applied_seq: at.applied_seq,
                stale: at.stale,
            })),
            Ok((None, _)) => Err(Status::not_found(format!("block {id} does not exist"))),
            Err(e) => Err(to_status(e)),
        })
    }

    async fn batch_get_blocks(
        &self,
        req: Request<proto::BatchGetBlocksRequest>,
    ) -> Result<Response<proto::BatchGetBlocksReply>, Status> {
        let t = Timer::new(&self.engine, "batch_get_blocks");
        let c = Consistency::stale_if(req.get_ref().stale);
        let ids = match validate::batch_get_blocks(req.into_inner()) {
            Ok(ids) => ids,
            Err(e) => return t.done(Err(e)),
        };
        let r = self
            .engine
            .read(c, |s| {
                let mut found = Vec::with_capacity(ids.len());
                let mut missing = Vec::new();
                for id in ids {
                    match s.blocks().get(&id) {
                        Some(b) => found.push(ops::view::block(s, id, b)),
                        None => missing.push(id),
                    }
                }
                (found, missing)
            })
            .await;
        t.done(r.map_err(to_status).map(|((blocks, missing), at)| {
            Response::new(proto::BatchGetBlocksReply {
                epoch: at.epoch.get(),
                blocks,
                missing,
                applied_seq: at.applied_seq,
                stale: at.stale,
            })
        }))
    }

    async fn commit_block(
        &self,
        req: Request<proto::CommitBlockRequest>,
    ) -> Result<Response<proto::CommitBlockReply>, Status> {
        let t = Timer::new(&self.engine, "commit_block");
        let r = async {
            let id = validate::unary_request_id(req.get_ref().request_id.as_ref(), req.metadata())?;
            let c = validate::commit_block(req.into_inner())?;
            let ((block, seq), _) =
                self.engine.write(move |txn| ops::commit_block(txn, &c, id)).await.map_err(to_status)?;
            Ok(Response::new(proto::CommitBlockReply { epoch: self.engine.epoch().get(), block: Some(block), seq }))
        }
        .await;
        t.done(r)
    }

    async fn remove_block(
        &self,
        req: Request<proto::RemoveBlockRequest>,
    ) -> Result<Response<proto::RemoveBlockReply>, Status> {
        let t = Timer::new(&self.engine, "remove_block");
        let r = async {
            let request = validate::unary_request_id(req.get_ref().request_id.as_ref(), req.metadata())?;
            let id = req.get_ref().block_id;
            let (seq, _) =
                self.engine.write(move |txn| ops::remove_block(txn, id, request)).await.map_err(to_status)?;
            Ok(Response::new(proto::RemoveBlockReply { epoch: self.engine.epoch().get(), seq }))
        }
        .await;
        t.done(r)
    }

    async fn list_blocks(
        &self,
        req: Request<proto::ListBlocksRequest>,
    ) -> Result<Response<proto::ListBlocksReply>, Status> {
        let t = Timer::new(&self.engine, "list_blocks");
        let (after, limit) = match validate::list_blocks(req.get_ref()) {
            Ok(l) => (l.after, l.limit),
            Err(e) => return t.done(Err(e)),
        };
        let c = Consistency::stale_if(req.get_ref().stale);
        let r = self
            .engine
            .read(c, |s| {
                let mut it = s.blocks().range_from(after.saturating_add(1));
                let blocks: Vec<_> = it.by_ref().take(limit).map(|(id, b)| ops::view::block(s, id, b)).collect();
                (blocks, it.next().is_some())
            })
            .await;
        t.done(r.map_err(to_status).map(|((blocks, more), at)| {
            Response::new(proto::ListBlocksReply {
                epoch: at.epoch.get(),
                blocks,
                more,
                applied_seq: at.applied_seq,
                stale: at.stale,
            })
        }))
    }

    async fn echo(&self, req: Request<proto::EchoRequest>) -> Result<Response<proto::EchoReply>, Status> {
        let payload = validate::echo(req.into_inner())?;
        Ok(Response::new(proto::EchoReply { epoch: self.engine.epoch().get(), payload }))
    }

    async fn status(&self, _req: Request<proto::StatusRequest>) -> Result<Response<proto::StatusReply>, Status> {
        Ok(Response::new(super::status::status(&self.engine, &self.peers)))
    }
}
