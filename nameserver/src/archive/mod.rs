//! The archive: a continuous copy of the committed oplog and of checkpoints in object storage
//! (S3 or a directory), from which any point inside the retention can be restored into a data
//! directory (`tfsctl backup restore`). See docs/PROTOCOL.md, "Archive".
//!
//! - [`layout`]: object names (the listing alone plans a restore);
//! - [`store`]: the object store behind an `s3://` or `file://` URL;
//! - [`plan`]: pure decisions: which objects restore a target, what is restorable, what retention
//!   deletes;
//! - [`archiver`]: the master's task that uploads records and checkpoints;
//! - [`backup`]: TakeBackup's gate, one at a time (the service: server/backup.rs);
//! - [`restore`]: download, check and write a data directory; verify a whole archive.

pub mod archiver;
pub mod backup;
pub mod layout;
pub mod plan;
pub mod restore;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;

use crate::proto;
pub use store::{Store, StoreConfig};

/// `--archive*` settings of a nameserver.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub store: StoreConfig,
    /// The oldest committed record is archived within about this long.
    pub timeout: Duration,
    pub checkpoint_every: Duration,
    pub retention: Duration,
}

impl ArchiveConfig {
    pub fn new(store: StoreConfig) -> Self {
        ArchiveConfig {
            store,
            timeout: Duration::from_secs(10),
            checkpoint_every: Duration::from_secs(3600),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("archive URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("object store, {object}: {source}")]
    Store { object: String, source: object_store::Error },
    #[error("{object}: body crc32c {computed:08x} does not match the {stored:08x} in its name (damaged object)")]
    Crc { object: String, stored: u32, computed: u32 },
    #[error("{object}: at seq {seq}: {reason}")]
    Corrupt { object: String, seq: u64, reason: String },
    #[error("{0}")]
    NotRestorable(String),
    #[error("data directory {dir}: {reason}")]
    DataDir { dir: String, reason: String },
    /// The archive holds records this master's history does not (see the archiver).
    #[error("{0}")]
    ForeignHistory(String),
    #[error("{0}")]
    Other(String),
}

/// Sentinel of [`ArchiveShared::floor`]: nothing held back.
pub const NO_FLOOR: u64 = u64::MAX;

/// What the archiver shares with the rest of the node.
pub struct ArchiveShared {
    pub config: Option<ArchiveConfig>,
    /// Oplog segments holding records above this seq are kept (writer `remove_through` is capped
    /// at it): they are not archived yet. [`NO_FLOOR`] while this node does not archive.
    pub floor: AtomicU64,
    /// Header time (ms) of the oldest committed record not yet archived; 0 when caught up.
    pub oldest_unarchived_ms: AtomicU64,
    pub status: Mutex<proto::ArchiveStatus>,
    pub backups: backup::Gate,
}

impl ArchiveShared {
    /// `master_from_start`: a standalone node, master without a promotion, holds its segments
    /// from the start (others from their promotion, writer `set_role`).
    pub fn new(config: Option<ArchiveConfig>, master_from_start: bool) -> Self {
        let floor = if config.is_some() && master_from_start { 0 } else { NO_FLOOR };
        let status = proto::ArchiveStatus {
            enabled: config.is_some(),
            url: config.as_ref().map(|c| c.store.url.clone()).unwrap_or_default(),
            ..Default::default()
        };
        ArchiveShared {
            config,
            floor: AtomicU64::new(floor),
            oldest_unarchived_ms: AtomicU64::new(0),
            status: Mutex::new(status),
            backups: backup::Gate::default(),
        }
    }

    /// Status as reported, with the lag computed now.
    pub fn status(&self, now_ms: u64) -> proto::ArchiveStatus {
        let mut s = self.status.lock().clone();
        s.lag_seconds = lag_seconds(self.oldest_unarchived_ms.load(Ordering::Relaxed), now_ms);
        s
    }
}

pub fn lag_seconds(oldest_ms: u64, now_ms: u64) -> f64 {
    if oldest_ms == 0 { 0.0 } else { now_ms.saturating_sub(oldest_ms) as f64 / 1000.0 }
}
