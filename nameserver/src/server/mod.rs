//! The gRPC and HTTP front of the nameserver: request validation, mapping to engine writes and
//! reads, and mapping engine errors to gRPC codes.

pub mod admin;
pub mod backup;
pub mod client;
pub mod dataserver;
pub mod http;
pub mod serve;
pub mod session;
pub mod status;
pub mod validate;

use std::net::SocketAddr;
use std::time::Instant;

use tonic::{Code, Status};

use crate::engine::{Engine, WriteError};
use crate::role::NotWritable;

/// Limits on request sizes: absurd values are refused before they cost anything.
pub mod limits {
    pub const MAX_BATCH_CREATE: u32 = 10_000;
    pub const MAX_BATCH_GET: usize = 10_000;
    pub const MAX_LIST: u32 = 10_000;
    pub const DEFAULT_LIST: u32 = 1_000;
    pub const MAX_BLOCK_REPORT: usize = 1_000_000;
    pub const MAX_ADDR_LEN: usize = 256;
    pub const MAX_ECHO: usize = 64 * 1024;
}

pub fn to_status(e: WriteError) -> Status {
    match e {
        WriteError::NotWritable(n @ NotWritable::Slave { .. }) => Status::failed_precondition(n.to_string()),
        WriteError::NotWritable(n) => Status::unavailable(n.to_string()),
        WriteError::Invalid(m) => Status::invalid_argument(m),
        WriteError::NotFound(m) => Status::not_found(m),
        WriteError::Unavailable(m) => Status::unavailable(m),
        WriteError::Unknown(m) => Status::new(Code::Unavailable, format!("outcome unknown: {m}")),
        WriteError::Overloaded { reason, retry_after } => {
            let mut s = Status::resource_exhausted(reason);
            s.metadata_mut().insert(RETRY_AFTER_MS, (retry_after.as_millis() as u64).into());
            s
        }
        WriteError::NoSpace(m) => Status::resource_exhausted(m),
        // Not UNAVAILABLE: retrying the same id gets the same answer.
        WriteError::BeyondWindow(m) => Status::failed_precondition(format!("outcome unknown: {m}")),
    }
}

/// Header of every client-port reply (answers and refusals alike): the node that gave it, so that
/// a client's history can say which node answered what (`tfsctl bench --history`).
pub const NODE_HEADER: &str = "tfs-node";

/// Header of a unary write carrying its idempotency key, `<client>:<seq>` (a session request has
/// the field `request_id` instead); see ops.rs and docs/PROTOCOL.md "Idempotent requests".
pub const REQUEST_ID_HEADER: &str = "tfs-request-id";

/// Metadata of a RESOURCE_EXHAUSTED refusal: milliseconds after which a retry may be admitted.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Times one request and counts it by method and status code.
pub(crate) struct Timer<'a> {
    engine: &'a Engine,
    op: &'static str,
    start: Instant,
}

impl<'a> Timer<'a> {
    pub fn new(engine: &'a Engine, op: &'static str) -> Self {
        Timer { engine, op, start: Instant::now() }
    }

    pub fn done<T>(self, r: Result<T, Status>) -> Result<T, Status> {
        let m = self.engine.metrics();
        let code = match &r {
            Ok(_) => 0,
            Err(s) => code_index(s.code()),
        };
        let secs = self.start.elapsed().as_secs_f64();
        match m.op(self.op) {
            Some(o) => {
                o.count(m, code, 1);
                o.observe(m, secs, 1);
            }
            None => {
                let code = crate::metrics::CODES[code];
                m.requests.get_or_create(&crate::metrics::OpLabels { op: self.op, code }).inc();
                m.latency.get_or_create(&crate::metrics::OpName { op: self.op }).observe(secs);
            }
        }
        r
    }
}

/// The index in [`crate::metrics::CODES`] of a status code.
fn code_index(c: Code) -> usize {
    match c {
        Code::Ok => 0,
        Code::InvalidArgument => 1,
        Code::NotFound => 2,
        Code::FailedPrecondition => 3,
        Code::Unavailable => 4,
        Code::AlreadyExists => 5,
        Code::ResourceExhausted => 6,
        _ => 7,
    }
}

/// The addresses a nameserver listens on, and the TLS of its client and replication ports (none:
/// plain TCP; the admin and metrics ports are always plain).
#[derive(Debug, Clone)]
pub struct Listen {
    pub client: SocketAddr,
    pub repl: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
}
