//! Oplog streaming replication, master → slaves, over TCP (the seed's OpLogSyncManager and
//! NameServerHeartManager keepalive, made exact).
//!
//! A slave dials its master, LOGINs with its last durable (seq, epoch); the master answers with a
//! lease and where the stream starts (after a snapshot when the slave's log diverged or the
//! master no longer has the segments it needs); records then flow pipelined while the slave RENEWs
//! its lease and ACKs its durable seq. See docs/PROTOCOL.md for the frames.

pub mod feed;
pub mod frame;
pub mod master;
pub mod slave;

use std::time::Duration;

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
