//! One session stream shared by many callers: each request gets an id, its caller waits on a
//! oneshot, and one reader task hands each reply to the caller of its id (replies come in any
//! order). No retries and no reconnection here: that is [`crate::Session`]'s policy.
//!
//! Public, for callers with a retry policy of their own (`tfsctl bench --session`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tfs_nameserver::proto::{self, session_client::SessionClient, session_reply, session_request};
use tfs_nameserver::server::session::UNREAD_TRAILER;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

/// How a stream ended, for the requests it left without a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server ended it cleanly: every request it read was answered, so an unanswered one was
    /// never executed (the session's contract, nameserver.proto `service Session`).
    NotExecuted(String),
    /// It broke (a reset, a crash, a timeout): an unanswered request may or may not have run.
    Broken(String),
}

/// What a request of the stream got.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The server's reply (which may be a per-request error).
    Reply(session_reply::Result),
    /// No reply: the stream ended first.
    Ended(Ended),
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Set once the stream ended: later calls get it at once.
    ended: Option<Ended>,
}

/// One open session stream.
pub struct Mux {
    /// The request side; `None` once closed (half-closed: the server answers what it read, then
    /// ends the stream).
    tx: Mutex<Option<mpsc::UnboundedSender<proto::SessionRequest>>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl Mux {
    /// Opens a session stream on `channel` (the request side stays open until [`Mux::close`]).
    pub async fn open(channel: Channel) -> Result<Mux, tonic::Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let replies = SessionClient::new(channel)
            .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read(replies, pending.clone()));
        Ok(Mux { tx: Mutex::new(Some(tx)), pending, next_id: AtomicU64::new(1) })
    }

    /// Sends one request and waits for its answer. Callers are not limited here: the session
    /// bounds how many are in flight (the server refuses past its own bound).
    pub async fn call(&self, op: session_request::Op) -> Answer {
        self.call_keyed(op, None).await
    }

    /// [`Mux::call`] for a write carrying an idempotency key (`SessionRequest.request_id`).
    pub async fn call_keyed(&self, op: session_request::Op, request_id: Option<proto::RequestId>) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut p = self.pending.lock();
            if let Some(e) = &p.ended {
                return Answer::Ended(e.clone());
            }
            p.waiting.insert(id, reply);
        }
        let sent = self
            .tx
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.send(proto::SessionRequest { id, op: Some(op), request_id }).is_ok());
        if !sent {
            self.pending.lock().waiting.remove(&id);
            return Answer::Ended(Ended::NotExecuted("the session was closed before the request was sent".into()));
        }
        // The reader answers every waiter, the ones left at the end too.
        answer.await.unwrap_or_else(|_| Answer::Ended(Ended::Broken("the session's reader stopped".into())))
    }

    /// Half-closes the stream: no new request goes out; the server answers the ones it has.
    pub fn close(&self) {
        self.tx.lock().take();
    }

    /// Whether the stream has ended (no request can be sent on it any more).
    pub fn is_ended(&self) -> bool {
        self.pending.lock().ended.is_some() || self.tx.lock().is_none()
    }

    /// Requests waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().waiting.len()
    }
}

/// Hands each reply to its waiter; when the stream ends, answers every waiter left with why.
async fn read(mut replies: tonic::Streaming<proto::SessionReply>, pending: Arc<Mutex<Pending>>) {
    let ended = loop {
        match replies.message().await {
            Ok(Some(r)) => {
                let waiter = pending.lock().waiting.remove(&r.id);
                if let (Some(w), Some(result)) = (waiter, r.result) {
                    let _ = w.send(Answer::Reply(result));
                }
            }
            // An OK end: the server answered all it read and we had half-closed; a waiter left
            // raced the close (its request may not have been read): nothing ran for it.
            Ok(None) => break Ended::NotExecuted("the session ended".into()),
            Err(s) if s.metadata().get(UNREAD_TRAILER).is_some() => break Ended::NotExecuted(s.message().to_string()),
            Err(s) => break Ended::Broken(format!("{:?}: {}", s.code(), s.message())),
        }
    };
    let waiting = {
        let mut p = pending.lock();
        p.ended = Some(ended.clone());
        std::mem::take(&mut p.waiting)
    };
    for (_, w) in waiting {
        let _ = w.send(Answer::Ended(ended.clone()));
    }
}
