//! How the engine's calls fail.

use std::time::Duration;

use thiserror::Error;

use crate::checkpoint;
use crate::role::NotWritable;
use crate::state::ApplyError;

#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    NotWritable(#[from] NotWritable),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// Logged, but mastership lapsed before it was committed: it may or may not survive.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Refused before anything was done: too much work in flight. Safe to retry after `retry_after`.
    #[error("{reason}")]
    Overloaded { reason: String, retry_after: Duration },
    /// Refused before anything was done: the data volume is below its free-space reserve.
    #[error("{0}")]
    NoSpace(String),
    /// A retry whose request id is older than the dedup window: its first attempt may or may not
    /// have been applied, and applying it now could apply it twice (ops.rs).
    #[error("outcome unknown: {0}")]
    BeyondWindow(String),
}

impl From<ApplyError> for WriteError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::NoBlock(_) | ApplyError::NoDataserver(_) | ApplyError::NoTask(_) => {
                WriteError::NotFound(e.to_string())
            }
            _ => WriteError::Invalid(e.to_string()),
        }
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Oplog(#[from] crate::oplog::log::OplogError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("cannot lock the data directory: {0}")]
    Lock(std::io::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}
