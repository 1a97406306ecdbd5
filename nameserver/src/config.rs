//! Engine configuration shared by the server binary and tests.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// Acknowledge only once durable on the master and on every slave in the sync set.
    Sync,
    /// Acknowledge once durable on the master; slaves may lag (explicit opt-in).
    Async,
}

impl std::fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationMode::Sync => "sync",
            ReplicationMode::Async => "async",
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// This node's name (pod name in Kubernetes), reported in Status and sent on LOGIN.
    pub node: String,
    pub standalone: bool,
    pub fsync: bool,
    pub segment_bytes: u64,
    /// A checkpoint is taken after this many records.
    pub checkpoint_every: u64,
    pub replication_mode: ReplicationMode,
    /// How long a dataserver's lease lasts without a renew.
    pub dataserver_lease: Duration,
    /// Bytes each newly placed block is assumed to take on its dataservers until they report.
    pub block_size_estimate: u64,
    /// Most writes grouped under one fdatasync.
    pub max_batch: usize,
    /// Most records (as requests estimate them) grouped under one fdatasync: bounds how long the
    /// writer holds the state's lock, so reads and Status keep answering under any load.
    pub max_group_records: u64,
    /// A group commit waits this long for more writes to join it while at least `commit_siblings`
    /// records of admitted writes are in flight (engine/writer.rs); zero: never.
    pub commit_delay: Duration,
    pub commit_siblings: u32,
    /// Most records of admitted writes not yet answered (queued, being logged, or waiting for
    /// their commit). A write beyond it is refused at once (RESOURCE_EXHAUSTED), never queued.
    pub max_inflight_records: u32,
    /// Most replicate tasks a dataserver takes part in at once, as source or target (TFS bounds
    /// replication per dataserver likewise): the copies after a leave are planned as room frees.
    pub max_replicate_tasks: usize,
    /// Free bytes the data volume keeps: below them, writes are refused (engine/space.rs).
    pub min_free_bytes: u64,
    /// Share (0..=1) of a block's bytes or files deleted from which it is compacted (TFS's
    /// `compact_delete_ratio`, 15 %).
    pub compact_ratio: f64,
    /// Most compactions a dataserver runs at once.
    pub max_compact_tasks: usize,
    /// Used ratios further apart than this (fullest − emptiest live dataserver) are balanced.
    pub balance_threshold: f64,
    /// Most balance moves in flight in the cluster (balance's rate limit).
    pub max_balance_tasks: usize,
    /// Longest safe mode after a promotion (it ends sooner once every live dataserver reported).
    pub safe_mode_time: Duration,
    /// The archive to object storage (`--archive`); none: off.
    pub archive: Option<crate::archive::ArchiveConfig>,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            node: hostname(),
            standalone: false,
            fsync: true,
            segment_bytes: 64 << 20,
            checkpoint_every: 2_000_000,
            replication_mode: ReplicationMode::Sync,
            dataserver_lease: Duration::from_secs(6),
            block_size_estimate: 64 << 20,
            max_batch: 4096,
            max_group_records: 16 * 1024,
            commit_delay: Duration::from_micros(200),
            commit_siblings: 64,
            max_inflight_records: 64 * 1024,
            max_replicate_tasks: 8,
            min_free_bytes: 64 << 20,
            compact_ratio: crate::planning::DEFAULT_COMPACT_RATIO,
            max_compact_tasks: 2,
            balance_threshold: 0.05,
            max_balance_tasks: 8,
            safe_mode_time: Duration::from_secs(300),
            archive: None,
        }
    }

    pub fn oplog_dir(&self) -> PathBuf {
        self.data_dir.join("oplog")
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.data_dir.join("checkpoints")
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "nameserver".into())
}

/// Settings of oplog streaming (crate::replication), also read by the engine (the feed's size).
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Both ends must agree: a LOGIN from another cluster is refused.
    pub cluster_id: String,
    /// Keepalive lease a master grants a slave; the slave renews every third of it.
    pub slave_lease: Duration,
    /// Bytes of recent records kept in memory for slaves that are close behind.
    pub feed_bytes: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig { cluster_id: "tfs".into(), slave_lease: Duration::from_millis(1500), feed_bytes: 64 << 20 }
    }
}
