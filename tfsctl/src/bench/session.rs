//! `tfsctl bench --session`: the workers' calls on pipelined sessions (`tfs.v1.Session`), one
//! stream per connection, each shared by the workers of that connection.
//!
//! The stream multiplexing is the client library's ([`tfs_client::mux`]). The retry policy stays
//! the bench's (bench.rs `worker`), so unary and session runs are measured alike; answers are
//! turned into the `Status` a unary call would have given.

use std::sync::Arc;

use tfs_nameserver::proto::{self, session_reply::Result as Res, session_request::Op};
use tfs_nameserver::server::{NODE_HEADER, RETRY_AFTER_MS};
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use tfs_client::mux::{Answer, Ended, Mux};

/// One session stream per slot, opened on first use and again after it ended or was retired.
pub struct Sessions {
    ep: Endpoint,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Mux>>>>,
}

impl Sessions {
    pub fn new(ep: Endpoint, slots: usize) -> Sessions {
        Sessions { ep, slots: (0..slots).map(|_| tokio::sync::Mutex::new(None)).collect() }
    }

    /// One request on the stream of `slot`; a failure that is not the server's answer to this
    /// request retires the stream, so the next call opens one on a new connection (the VIP's
    /// current master), as the unary workers dial again.
    pub async fn call(&self, slot: usize, op: Op) -> Result<Res, Status> {
        let mux = self.stream(slot).await?;
        match mux.call(op).await {
            Answer::Reply(Res::Error(e)) => {
                let mut s = Status::new(Code::from_i32(e.code), e.message);
                // The server's answer, like a unary reply carrying the node header.
                s.metadata_mut().insert(NODE_HEADER, tonic::metadata::MetadataValue::from_static("session"));
                if e.retry_after_ms > 0 {
                    s.metadata_mut().insert(RETRY_AFTER_MS, e.retry_after_ms.into());
                } else if matches!(s.code(), Code::Unavailable | Code::FailedPrecondition) {
                    self.retire(slot, &mux).await;
                }
                Err(s)
            }
            Answer::Reply(r) => Ok(r),
            Answer::Ended(e) => {
                self.retire(slot, &mux).await;
                Err(match e {
                    Ended::NotExecuted(m) => Status::unavailable(format!("session ended, not executed: {m}")),
                    Ended::Broken(m) => Status::unavailable(format!("session broke, outcome unknown: {m}")),
                })
            }
        }
    }

    async fn stream(&self, slot: usize) -> Result<Arc<Mux>, Status> {
        let mut cur = self.slots[slot].lock().await;
        if let Some(m) = cur.as_ref().filter(|m| !m.is_ended()) {
            return Ok(m.clone());
        }
        let m = Arc::new(Mux::open(self.ep.connect_lazy()).await?);
        *cur = Some(m.clone());
        Ok(m)
    }

    async fn retire(&self, slot: usize, mux: &Arc<Mux>) {
        let mut cur = self.slots[slot].lock().await;
        if cur.as_ref().is_some_and(|m| Arc::ptr_eq(m, mux)) {
            cur.take();
            mux.close();
        }
    }
}

/// A create on a session.
pub async fn create(s: &Sessions, slot: usize, replicas: u32) -> Result<proto::CreateBlockReply, Status> {
    match s.call(slot, Op::Create(proto::CreateBlockRequest { replicas, request_id: None })).await? {
        Res::Create(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

/// A linearizable get on a session.
pub async fn get(s: &Sessions, slot: usize, block_id: u64) -> Result<proto::GetBlockReply, Status> {
    match s.call(slot, Op::Get(proto::GetBlockRequest { block_id, stale: false })).await? {
        Res::Get(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

/// A commit on a session.
pub async fn commit(
    s: &Sessions,
    slot: usize,
    req: proto::CommitBlockRequest,
) -> Result<proto::CommitBlockReply, Status> {
    match s.call(slot, Op::Commit(req)).await? {
        Res::Commit(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Res) -> Status {
    Status::internal(format!("the server answered with another operation's reply: {r:?}"))
}
