//! TFS nameserver: the metadata server of a TFS cluster (blocks, dataservers, tasks), made durable by
//! an oplog with group commit and highly available by streaming that oplog to slaves.
//!
//! Layers, data flowing one way:
//! `server` (gRPC) → `engine` (sequencing, group commit, commit rule) → `oplog` + `state`;
//! `planning` (the dataservers' tasks) is a pure function of the `state`, run by `server`.
//! `replication` ships the oplog between nodes; `role` holds who this node is and until when.
//! Nothing here knows about Kubernetes.

pub mod archive;
pub mod checkpoint;
pub mod config;
pub mod crashpoint;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod mutation;
pub mod oplog;
pub mod ops;
pub mod planning;
pub mod proto;
pub mod replication;
pub mod role;
pub mod server;
pub mod state;
pub mod tls;
