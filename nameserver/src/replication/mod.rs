//! Oplog streaming replication, master → slaves, over TCP (the seed's OpLogSyncManager and
//! NameServerHeartManager keepalive, made exact).
//!
//! A slave dials its master, LOGINs with its last durable (seq, epoch); the master answers with a
//! lease and where the stream starts (after a snapshot when the slave's log diverged or the
//! master no longer has the segments it needs); records then flow pipelined while the slave RENEWs
//! its lease and ACKs its durable seq. See docs/PROTOCOL.md for the frames.

pub mod frame;
pub mod master;
pub mod peers;
pub mod slave;
