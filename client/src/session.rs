//! [`Session`]: many tasks' calls multiplexed on one session stream, reopened after a failover.

use std::sync::Arc;

use backon::Retryable;
use parking_lot::Mutex;
use tfs_nameserver::proto::{self, session_reply::Result as Res, session_request::Op};
use tokio::sync::Semaphore;
use tonic::Code;

use crate::client::{stale_master, with_hint};
use crate::mux::{Answer, Ended, Mux};
use crate::retry::{self, Failed};
use crate::{Client, Error};

/// Calls of one session in flight at most: the server's own bound, so that it never has to refuse
/// one of ours for that reason (the rest wait here).
pub const MAX_IN_FLIGHT: usize = tfs_nameserver::server::session::MAX_IN_FLIGHT;

/// A pipelined session: cheap to clone, and meant to be shared — many tasks call
/// [`Session::create`], [`Session::get`], … concurrently, and their requests travel on one
/// stream, where the server runs the ones that arrive together as one transaction.
///
/// Failover: a reply that says this node is not a writable master, or the stream ending, retires
/// the stream; the next call opens a new one on a new connection. Calls that were in flight
/// then are retried: reads always, writes with the request id they were first sent with, so a
/// write that had been applied is answered with its first outcome, not applied again (it fails
/// with [`Error::OutcomeUnknown`] only if the master's dedup window no longer holds its id).
///
/// ```no_run
/// # async fn f() -> Result<(), tfs_client::Error> {
/// let client = tfs_client::Client::connect("127.0.0.1:8100", tfs_client::TlsOptions::plain()).await?;
/// let session = client.session();
/// let ids = futures::future::join_all((0..100).map(|_| session.create())).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The open stream and the generation of the connection it is on.
    current: Mutex<Option<(Arc<Mux>, u64)>>,
    /// Held while a stream is being opened: callers wait for that one instead of opening theirs.
    opening: tokio::sync::Mutex<()>,
    permits: Semaphore,
}

impl Session {
    pub(crate) fn new(client: Client) -> Session {
        Session {
            inner: Arc::new(Inner {
                client,
                current: Mutex::new(None),
                opening: tokio::sync::Mutex::new(()),
                permits: Semaphore::new(MAX_IN_FLIGHT),
            }),
        }
    }

    /// Allocates a block with the server's default number of replicas.
    pub async fn create(&self) -> Result<proto::CreateBlockReply, Error> {
        self.create_with_replicas(0).await
    }

    /// Allocates a block with `replicas` replicas (0: the server's default).
    pub async fn create_with_replicas(&self, replicas: u32) -> Result<proto::CreateBlockReply, Error> {
        match self.call(Op::Create(proto::CreateBlockRequest { replicas, request_id: None }), true).await? {
            Res::Create(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Reads a block, linearizably (the unary GetBlock's rules).
    pub async fn get(&self, block_id: u64) -> Result<proto::GetBlockReply, Error> {
        self.read(block_id, false).await
    }

    /// Reads a block as the node has applied it (any node; the reply says `stale`).
    pub async fn get_stale(&self, block_id: u64) -> Result<proto::GetBlockReply, Error> {
        self.read(block_id, true).await
    }

    /// Commits a block's new contents (`req.request_id` is the session's to set: it is replaced).
    pub async fn commit(&self, req: proto::CommitBlockRequest) -> Result<proto::CommitBlockReply, Error> {
        match self.call(Op::Commit(proto::CommitBlockRequest { request_id: None, ..req }), true).await? {
            Res::Commit(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a block.
    pub async fn remove(&self, block_id: u64) -> Result<proto::RemoveBlockReply, Error> {
        match self.call(Op::Remove(proto::RemoveBlockRequest { block_id, request_id: None }), true).await? {
            Res::Remove(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Half-closes the current stream: the server answers what it has, then ends it. Calls made
    /// after this open a new stream.
    pub fn close(&self) {
        if let Some((m, _)) = self.inner.current.lock().take() {
            m.close();
        }
    }

    async fn read(&self, block_id: u64, stale: bool) -> Result<proto::GetBlockReply, Error> {
        match self.call(Op::Get(proto::GetBlockRequest { block_id, stale }), false).await? {
            Res::Get(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// One call with the failover policy (crate::retry), within the in-flight bound.
    async fn call(&self, op: Op, write: bool) -> Result<Res, Error> {
        let _permit = self.inner.permits.acquire().await.map_err(|_| Error::Config("session closed".into()))?;
        // One id for every attempt of a write: the master applies it once (crate::retry).
        let key = write.then(|| self.inner.client.next_request_id());
        let attempt = || self.attempt(op, key);
        attempt
            .retry(retry::backoff(self.inner.client.budget()))
            .when(Failed::retryable)
            .adjust(with_hint)
            .await
            .map_err(Failed::into_error)
    }

    /// One attempt of `op`; `key` is a write's request id (`None`: a read).
    async fn attempt(&self, op: Op, key: Option<proto::RequestId>) -> Result<Res, Failed> {
        let (mux, generation) = self.stream().await?;
        match mux.call_keyed(op, key).await {
            Answer::Reply(Res::Error(e)) => {
                let failed = retry::answered(Code::from_i32(e.code), &e.message, e.retry_after_ms);
                if let Failed::Retry { reconnect: true, .. } = failed {
                    self.retire(&mux, generation);
                }
                Err(failed)
            }
            Answer::Reply(r) => {
                let epoch = epoch_of(&r);
                if !self.inner.client.note_epoch(epoch) && key.is_none() {
                    self.retire(&mux, generation);
                    return Err(stale_master(epoch, self.inner.client.epoch()));
                }
                Ok(r)
            }
            Answer::Ended(Ended::NotExecuted(m)) => {
                self.retire(&mux, generation);
                Err(Failed::Retry { code: Code::Unavailable, message: m, after: None, reconnect: true })
            }
            Answer::Ended(Ended::Broken(m)) => {
                self.retire(&mux, generation);
                Err(retry::lost(Code::Unavailable, &m))
            }
        }
    }

    /// The open stream, opening one if there is none (or it ended).
    async fn stream(&self) -> Result<(Arc<Mux>, u64), Failed> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _opening = self.inner.opening.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let client = &self.inner.client;
        let (ch, generation) = client.channel();
        match Mux::open(ch).await {
            Ok(m) => {
                let m = Arc::new(m);
                *self.inner.current.lock() = Some((m.clone(), generation));
                Ok((m, generation))
            }
            // No request was sent on a stream that did not open: nothing was applied.
            Err(s) => {
                let answered = s.metadata().get(tfs_nameserver::server::NODE_HEADER).is_some();
                if answered && s.code() == Code::Unimplemented {
                    return Err(Failed::Final(Error::Refused {
                        code: s.code(),
                        message: format!("this nameserver has no session service: {}", s.message()),
                    }));
                }
                client.reconnect(generation);
                Err(Failed::Retry { code: s.code(), message: s.message().to_string(), after: None, reconnect: true })
            }
        }
    }

    fn live(&self) -> Option<(Arc<Mux>, u64)> {
        self.inner.current.lock().as_ref().filter(|(m, _)| !m.is_ended()).cloned()
    }

    /// Stops sending on `mux` (the server answers what it has) and, the first time, dials again.
    fn retire(&self, mux: &Arc<Mux>, generation: u64) {
        let mut cur = self.inner.current.lock();
        if cur.as_ref().is_some_and(|(m, _)| Arc::ptr_eq(m, mux)) {
            cur.take();
            drop(cur);
            mux.close();
            self.inner.client.reconnect(generation);
        }
    }
}

fn epoch_of(r: &Res) -> u64 {
    match r {
        Res::Create(r) => r.epoch,
        Res::Get(r) => r.epoch,
        Res::Commit(r) => r.epoch,
        Res::Remove(r) => r.epoch,
        Res::Error(_) => 0,
    }
}

fn unexpected(r: Res) -> Error {
    Error::Refused {
        code: Code::Internal,
        message: format!("the server answered with another operation's reply: {r:?}"),
    }
}
