//! A failover-aware client of the TFS nameserver.
//!
//! - [`Client`]: the connection to a nameserver address (in Kubernetes, the Service VIP that
//!   follows the master), unary calls (`create_block`, `get_block`, …) and the failover policy.
//! - [`Session`]: a pipelined session — many tasks call `session.create().await` concurrently and
//!   their requests share one stream, where the master runs a burst as one transaction. Much
//!   faster than one unary RPC per operation under concurrency.
//!
//! # Failover and retries
//!
//! On a reply that says "not master" (a slave, a lapsed or draining master), on UNAVAILABLE with
//! no answer, on a GOAWAY or a stream the server ended, or on a reply at an epoch older than one
//! already seen, the client drops its connection and dials the address again, with jittered
//! exponential backoff (`backon`). Reads are always retried. Every write carries a request id
//! (this client's random id and a number of its own), the same on each of its attempts; the
//! master logs it with the mutation and answers a retry with the first outcome, so writes are
//! retried too, also when their outcome is unknown (the connection broke after sending, the master
//! died or lost mastership before answering). [`Error::OutcomeUnknown`] is left for a retry the
//! master can no longer answer (its id was evicted from the dedup window). The statuses are listed
//! in [`retry`]; see docs/CLIENT.md.
//!
//! # Example
//!
//! ```no_run
//! use tfs_client::{Client, TlsOptions};
//!
//! # async fn f() -> Result<(), tfs_client::Error> {
//! let client = Client::connect("127.0.0.1:8100", TlsOptions::plain()).await?;
//! let session = client.session();
//! let created = session.create().await?;
//! let id = created.block.expect("a created block").id;
//! let read = session.get(id).await?;
//! assert_eq!(read.block.map(|b| b.id), Some(id));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
pub mod mux;
pub mod retry;
mod session;
mod tls;

pub use client::{CONNECT_TIMEOUT, Client, DEFAULT_RETRY_BUDGET};
pub use error::Error;
pub use session::{MAX_IN_FLIGHT, Session};
/// The nameserver's protocol types (blocks, requests, replies).
pub use tfs_nameserver::proto;
pub use tls::TlsOptions;
