//! Which failures are retried, and how long to wait before the next attempt.
//!
//! Every write of this crate carries a request id, the same on every attempt: the master logs it with
//! the mutation and answers a retry of the same id with the first outcome (nameserver ops/mod.rs), so
//! a write is retried, with the same id, whenever its outcome is unknown too. What is retried:
//! - a failure the nameserver answered (its reply carries the `tfs-node` header, or it is a
//!   session's per-request error) that says the request was *not applied*:
//!   `FAILED_PRECONDITION` "this nameserver is a slave; the master is …" (refused before it ran);
//!   `UNAVAILABLE` (not a writable master: mastership lapsed, draining; no replica could be
//!   placed; shutting down); `RESOURCE_EXHAUSTED` (admission: the engine's bound, a session's
//!   in-flight bound, the free-space reserve), after the server's hint;
//! - `UNAVAILABLE` "outcome unknown: …" (logged, not committed before mastership lapsed), "the
//!   writer stopped", a transport error after the request was sent, a session stream that broke:
//!   reads and keyed writes alike (the retry finds the first outcome if it was applied);
//! - the request never reached a server: the connection could not be made, or a session stream
//!   ended cleanly with requests unanswered (the server read none of them).
//!
//! A keyed write whose id is older than the master's dedup window ("outcome unknown: request id …
//! is older than the dedup window", `FAILED_PRECONDITION`) fails with [`Error::OutcomeUnknown`]:
//! the server cannot tell whether it was applied. Definite answers (`NOT_FOUND`,
//! `INVALID_ARGUMENT`, an id already used by another request, …) are returned as they are.
//!
//! Failures that say this connection reaches no master (a slave, a lapsed or draining master, a
//! stream or connection lost, a reply at an epoch older than one already seen) also drop the
//! connection, so that the next attempt dials the address again — through a Service VIP, to the
//! new master.

use std::time::Duration;

use backon::ExponentialBuilder;
use tonic::Code;

use crate::Error;

/// What one failed attempt means for the next.
#[derive(Debug, Clone)]
pub(crate) enum Failed {
    /// Not applied: try again (after `after` if the server gave a hint), on a new connection if
    /// `reconnect`.
    Retry { code: Code, message: String, after: Option<Duration>, reconnect: bool },
    /// No more attempts.
    Final(Error),
}

impl Failed {
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Failed::Retry { .. })
    }

    /// The hint of an overloaded server, if any.
    pub(crate) fn hint(&self) -> Option<Duration> {
        match self {
            Failed::Retry { after, .. } => *after,
            Failed::Final(_) => None,
        }
    }

    /// The error a caller sees once retries are over.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failed::Retry { code, message, .. } => Error::Unavailable { code, message },
            Failed::Final(e) => e,
        }
    }
}

/// Whether a status the nameserver answered says "this node cannot write here now".
fn not_master(code: Code, message: &str) -> bool {
    match code {
        Code::FailedPrecondition => message.contains("is a slave"),
        Code::Unavailable => message.contains("mastership lapsed") || message.contains("draining"),
        _ => false,
    }
}

/// Classifies an error the nameserver itself answered with (not a transport failure).
pub(crate) fn answered(code: Code, message: &str, retry_after_ms: u64) -> Failed {
    let retry = |reconnect| Failed::Retry {
        code,
        message: message.to_string(),
        after: (retry_after_ms > 0).then(|| Duration::from_millis(retry_after_ms)),
        reconnect,
    };
    let unknown = message.starts_with("outcome unknown") || message.contains("writer stopped");
    match code {
        // Logged, then mastership lapsed before it committed (the words may name the lapse too:
        // this comes first): a read goes on elsewhere, a keyed write finds its first outcome.
        Code::Unavailable if unknown => retry(true),
        // Beyond the dedup window: the same id would get the same answer.
        _ if unknown => Failed::Final(Error::OutcomeUnknown(message.to_string())),
        _ if not_master(code, message) => retry(true),
        Code::ResourceExhausted => retry(false),
        Code::Unavailable => retry(false),
        _ => Failed::Final(Error::Refused { code, message: message.to_string() }),
    }
}

/// Classifies a failure with no answer from the nameserver: the request may have been sent, which
/// a read and a keyed write both survive.
pub(crate) fn lost(code: Code, message: &str) -> Failed {
    Failed::Retry { code, message: message.to_string(), after: None, reconnect: true }
}

/// Classifies a unary call's status: answered by the nameserver when it carries its node header.
pub(crate) fn unary(s: &tonic::Status) -> Failed {
    if s.metadata().get(tfs_nameserver::server::NODE_HEADER).is_none() {
        return lost(s.code(), s.message());
    }
    let after = s
        .metadata()
        .get(tfs_nameserver::server::RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    answered(s.code(), s.message(), after)
}

/// The backoff between attempts: exponential from 10 ms to 1 s, with jitter (callers refused
/// together must not come back in step), for at most `budget` of waiting in all.
pub(crate) fn backoff(budget: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_secs(1))
        .without_max_times()
        .with_total_delay(Some(budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slave_or_lapsed_master_is_retried_on_a_new_connection() {
        for (code, m) in [
            (Code::FailedPrecondition, "this nameserver is a slave; the master is 10.0.0.1:8101"),
            (Code::Unavailable, "this nameserver's mastership lapsed (epoch 3); it fenced itself"),
            (Code::Unavailable, "this nameserver is draining for a switchover"),
        ] {
            assert!(matches!(answered(code, m, 0), Failed::Retry { reconnect: true, .. }), "{m}");
        }
    }

    #[test]
    fn overload_is_retried_after_the_hint_on_the_same_connection() {
        let f = answered(Code::ResourceExhausted, "nameserver busy", 20);
        assert!(matches!(f, Failed::Retry { reconnect: false, .. }));
        assert_eq!(f.hint(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn an_unknown_outcome_is_retried_with_the_same_id_and_beyond_the_window_is_final() {
        let m = "outcome unknown: this nameserver's mastership lapsed (epoch 3); it fenced itself";
        assert!(matches!(answered(Code::Unavailable, m, 0), Failed::Retry { reconnect: true, .. }));
        assert!(lost(Code::Unavailable, "connection reset").retryable());
        let m = "outcome unknown: request id 7:1 is older than the dedup window";
        let e = answered(Code::FailedPrecondition, m, 0).into_error();
        assert_eq!(e, Error::OutcomeUnknown(m.into()));
    }

    #[test]
    fn definite_answers_are_returned() {
        let e = answered(Code::NotFound, "block 7 does not exist", 0).into_error();
        assert_eq!(e, Error::Refused { code: Code::NotFound, message: "block 7 does not exist".into() });
        assert!(!answered(Code::InvalidArgument, "version 1 is older than 2", 0).retryable());
        let m = "request id 7:1 was already used by another request";
        assert!(!answered(Code::InvalidArgument, m, 0).retryable());
    }

    #[test]
    fn a_unary_error_without_the_node_header_never_reached_the_server_or_was_lost() {
        let s = tonic::Status::unavailable("this nameserver is a slave");
        assert!(matches!(unary(&s), Failed::Retry { reconnect: true, .. }));
        let mut s = tonic::Status::invalid_argument("version 1 is older than 2");
        s.metadata_mut().insert(tfs_nameserver::server::NODE_HEADER, "ns-1".parse().unwrap());
        assert!(!unary(&s).retryable());
    }
}
