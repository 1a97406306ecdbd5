//! The leader's term as the rest of the process sees it, and the guard that holds every write of
//! the controllers to it.
//!
//! Invariant (one leader acting, at each write): a client from [`Term::guard`] sends a request that
//! changes anything (every method but GET and HEAD) only while this process's term runs —
//! `renew_deadline` from the start of the write that last made or kept it the holder (leader.rs);
//! otherwise it fails at once, in the process, without a byte sent. The election's own loop
//! replaces the process at that same instant (`restart_as_standby`), but a process thawed after a
//! pause (a frozen node, a stopped container) runs whichever ready task its runtime polls first: a
//! reconcile in flight could write an Event or a status after a standby has taken over, before the
//! election's timer task ran. The clock is read as the request leaves, so such a write is refused
//! however the tasks are ordered. (Promotions never needed this: they are conditioned on the
//! version they read. What it closes is the unconditioned writes: Events, status patches.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;

/// When this process's term as leader ends, shared by the election (which extends it) and the
/// clients it guards. Cheap to clone.
#[derive(Clone)]
pub struct Term {
    base: Instant,
    /// The end of the term, in nanoseconds after `base`; 0: not leading.
    until_ns: Arc<AtomicU64>,
}

impl Default for Term {
    fn default() -> Self {
        Term { base: Instant::now(), until_ns: Arc::new(AtomicU64::new(0)) }
    }
}

/// A write refused because the term it was made under has ended.
#[derive(Debug, thiserror::Error)]
#[error(
    "not sent: this operator's term as leader has ended ({method} {path}); the process is starting again as a standby"
)]
pub struct TermEnded {
    method: Method,
    path: String,
}

impl Term {
    /// The term runs until `until` (never shortened by this: a later write's start is later).
    pub(super) fn extend_to(&self, until: Instant) {
        let ns = u64::try_from(until.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX).max(1);
        self.until_ns.fetch_max(ns, Ordering::AcqRel);
    }

    /// The term ends now (the Lease is being released).
    pub(super) fn end(&self) {
        self.until_ns.store(1, Ordering::Release);
    }

    /// Whether the term runs now.
    pub fn running(&self) -> bool {
        let until = self.until_ns.load(Ordering::Acquire);
        until != 0 && (self.base.elapsed().as_nanos() as u64) < until
    }

    /// `client`, whose requests that change anything are sent only while the term runs.
    pub fn guard(&self, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        let term = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let (term, client) = (term.clone(), client.clone());
            async move {
                if !matches!(*req.method(), Method::GET | Method::HEAD) && !term.running() {
                    let e = TermEnded { method: req.method().clone(), path: req.uri().path().to_string() };
                    tracing::warn!(error = %e, "write refused");
                    return Err::<Response<Body>, tower::BoxError>(Box::new(e));
                }
                client.send(req).await.map_err(Into::into)
            }
        });
        Client::new(service, namespace)
    }
}

#[cfg(test)]
mod tests;
