//! [`Client`]: the connection to a nameserver address (a Service VIP in Kubernetes), the unary
//! calls, and the failover policy both they and [`Session`] follow (see [`crate::retry`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::Retryable;
use parking_lot::Mutex;
use tfs_nameserver::proto::{self, client_client::ClientClient};
use tonic::transport::{Channel, Endpoint};

use crate::retry::{self, Failed};
use crate::{Error, Session, TlsOptions};

/// How long a call keeps retrying what was not applied, by default.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// How long one TCP connect may take before it is given up and dialled again. Across a failover
/// the node's Service rules may still send a new connection to the deposed master's address for
/// about a second after the VIP moved (a deleted pod's address answers nothing: its SYN is lost,
/// and the kernel would resend it only after 1 s, to the same address). A connect inside a cluster
/// takes well under a millisecond; a fresh dial after 250 ms takes the rules as they are then.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// A failover-aware client of one nameserver address.
///
/// Cheap to clone (clones share the connection). Every call follows the policy of
/// [`crate::retry`]: reads are retried until they succeed or the retry budget runs out; writes
/// only while the server says they were not applied; a failure that says this connection reaches
/// no master drops the connection, so the next attempt dials the address again (through a Service
/// VIP: the new master).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    budget: Duration,
}

struct Inner {
    addr: String,
    endpoint: Endpoint,
    /// The current connection and its generation (bumped by each reconnection).
    conn: Mutex<(Channel, u64)>,
    /// The highest epoch any reply carried: a reply at a lower one comes from a deposed master.
    epoch: AtomicU64,
    /// This client's id in request ids (random, non-zero) and its last request number: every
    /// write gets the next one, kept across its retries (see [`crate::retry`]).
    id: u64,
    requests: AtomicU64,
}

impl Client {
    /// Connects to `addr` (host:port) with `tls`; fails if no connection can be made now.
    pub async fn connect(addr: &str, tls: TlsOptions) -> Result<Client, Error> {
        let c = Self::lazy(addr, tls)?;
        let ch = c.inner.endpoint.connect().await.map_err(|e| Error::Unavailable {
            code: tonic::Code::Unavailable,
            message: format!("cannot connect to {addr}: {e}"),
        })?;
        c.inner.conn.lock().0 = ch;
        Ok(c)
    }

    /// A client of `addr` that dials on its first call (for a nameserver not up yet).
    pub fn lazy(addr: &str, tls: TlsOptions) -> Result<Client, Error> {
        let tls = tls.config()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Error::Config(format!("address {addr:?}: {e}")))?;
        if let Some(t) = tls {
            ep = ep.tls_config(t).map_err(|e| Error::Config(format!("TLS: {e}")))?;
        }
        // Short timeouts: across a failover the old master's address may silently stop answering
        // (a deleted pod), and a client must notice within a second or two, not a TCP timeout.
        let ep = ep
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true);
        let ch = ep.connect_lazy();
        Ok(Client {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                endpoint: ep,
                conn: Mutex::new((ch, 0)),
                epoch: 0.into(),
                id: random_id(),
                requests: 0.into(),
            }),
            budget: DEFAULT_RETRY_BUDGET,
        })
    }

    /// This client with another retry budget: how long a call keeps retrying (waiting between
    /// attempts included) what was not applied before it returns [`Error::Unavailable`].
    pub fn with_retry_budget(mut self, budget: Duration) -> Client {
        self.budget = budget;
        self
    }

    /// The address this client dials.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The highest epoch seen in a reply so far (0 before any).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Relaxed)
    }

    /// Opens a pipelined session on this client's address (the stream opens on first use).
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }

    /// The id of this client's next write: its retries carry it too, so the master applies it
    /// once (docs/PROTOCOL.md "Idempotent requests").
    pub fn next_request_id(&self) -> proto::RequestId {
        self.next_request_ids(1)
    }

    /// The first of `n` consecutive request ids of this client (a batch create uses one per block).
    fn next_request_ids(&self, n: u32) -> proto::RequestId {
        let n = u64::from(n.max(1));
        proto::RequestId { client: self.inner.id, seq: self.inner.requests.fetch_add(n, Ordering::Relaxed) + 1 }
    }

    /// Allocates a block with `replicas` replicas (0: the server's default).
    pub async fn create_block(&self, replicas: u32) -> Result<proto::CreateBlockReply, Error> {
        let id = self.next_request_id();
        self.unary(true, move |mut c| async move {
            let r = c.create_block(proto::CreateBlockRequest { replicas, request_id: Some(id) }).await?.into_inner();
            Ok((r.epoch, r))
        })
        .await
    }

    /// Allocates `count` blocks (1..=10,000) with `replicas` replicas each (0: the server's
    /// default), in one transaction: all of them or none. Retried like a create: the batch carries
    /// the first of `count` request ids, one per block, so a retry after an unknown outcome gets
    /// the same blocks.
    pub async fn batch_create_blocks(&self, count: u32, replicas: u32) -> Result<proto::BatchCreateBlocksReply, Error> {
        let id = self.next_request_ids(count);
        self.unary(true, move |mut c| async move {
            let r = c
                .batch_create_blocks(proto::BatchCreateBlocksRequest { count, replicas, request_id: Some(id) })
                .await?;
            let r = r.into_inner();
            Ok((r.epoch, r))
        })
        .await
    }

    /// Reads a block, linearizably (from the master, at committed state).
    pub async fn get_block(&self, block_id: u64) -> Result<proto::GetBlockReply, Error> {
        self.unary(false, move |mut c| async move {
            let r = c.get_block(proto::GetBlockRequest { block_id, stale: false }).await?.into_inner();
            Ok((r.epoch, r))
        })
        .await
    }

    /// Commits a block's new contents (versions only move forward; the same version again is
    /// accepted). `req.request_id` is the client's to set: it is replaced.
    pub async fn commit_block(&self, req: proto::CommitBlockRequest) -> Result<proto::CommitBlockReply, Error> {
        let id = self.next_request_id();
        self.unary(true, move |mut c| async move {
            let r = c.commit_block(proto::CommitBlockRequest { request_id: Some(id), ..req }).await?.into_inner();
            Ok((r.epoch, r))
        })
        .await
    }

    /// Removes a block.
    pub async fn remove_block(&self, block_id: u64) -> Result<proto::RemoveBlockReply, Error> {
        let id = self.next_request_id();
        self.unary(true, move |mut c| async move {
            let r = c.remove_block(proto::RemoveBlockRequest { block_id, request_id: Some(id) }).await?.into_inner();
            Ok((r.epoch, r))
        })
        .await
    }

    /// The status of the node this client's connection reaches (any role; not retried on a
    /// slave's answer).
    pub async fn status(&self) -> Result<proto::StatusReply, Error> {
        self.unary(false, |mut c| async move {
            let r = c.status(proto::StatusRequest {}).await?.into_inner();
            Ok((0, r))
        })
        .await
    }

    /// The current connection and its generation.
    pub(crate) fn channel(&self) -> (Channel, u64) {
        self.inner.conn.lock().clone()
    }

    /// Replaces the connection of generation `seen` by a new one (dialled on first use); a
    /// connection already replaced since is kept, so that the callers that saw one failure
    /// together dial once.
    pub(crate) fn reconnect(&self, seen: u64) {
        let mut c = self.inner.conn.lock();
        if c.1 == seen {
            *c = (self.inner.endpoint.connect_lazy(), seen + 1);
            tracing::debug!(addr = %self.inner.addr, generation = seen + 1, "reconnecting");
        }
    }

    /// Notes a reply's epoch; false if it is older than one already seen (a deposed master).
    pub(crate) fn note_epoch(&self, epoch: u64) -> bool {
        epoch >= self.inner.epoch.fetch_max(epoch, Ordering::Relaxed)
    }

    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    /// One unary call with the failover policy; `f` returns the reply and its epoch.
    async fn unary<T, F, Fut>(&self, write: bool, f: F) -> Result<T, Error>
    where
        F: Fn(ClientClient<Channel>) -> Fut,
        Fut: Future<Output = Result<(u64, T), tonic::Status>>,
    {
        let attempt = || async {
            let (ch, generation) = self.channel();
            match f(ClientClient::new(ch)).await {
                Ok((epoch, r)) => {
                    if !self.note_epoch(epoch) && !write {
                        self.reconnect(generation);
                        return Err(stale_master(epoch, self.epoch()));
                    }
                    Ok(r)
                }
                Err(s) => {
                    let failed = retry::unary(&s);
                    if let Failed::Retry { reconnect: true, .. } = failed {
                        self.reconnect(generation);
                    }
                    Err(failed)
                }
            }
        };
        attempt
            .retry(retry::backoff(self.budget))
            .when(Failed::retryable)
            .adjust(with_hint)
            .await
            .map_err(Failed::into_error)
    }
}

/// A client id for request ids: random (the standard library's per-process random keys, the time
/// and the pid hashed), so that two clients never share one in practice; never 0 (no id).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// A read answered at an epoch older than one already seen: retried elsewhere. (A write
/// acknowledged then was committed under that master's valid mastership: it stands.)
pub(crate) fn stale_master(epoch: u64, seen: u64) -> Failed {
    Failed::Retry {
        code: tonic::Code::Unavailable,
        message: format!("answered at epoch {epoch}, older than epoch {seen} already seen: a deposed master"),
        after: None,
        reconnect: true,
    }
}

/// The backoff's next wait, at least the server's hint when it gave one (and none once the budget
/// is spent).
pub(crate) fn with_hint(f: &Failed, d: Option<Duration>) -> Option<Duration> {
    d.map(|d| f.hint().map_or(d, |h| h.max(d)))
}
