//! TFS nameserver: the metadata server of a TFS cluster (blocks, dataservers, tasks), made durable by
//! an oplog with group commit and highly available by streaming that oplog to slaves.
//!
//! Layers, imports running one way (docs/ARCHITECTURE.md, checked by tests/layering.rs):
//! `server` (gRPC) → `ops` (the APIs' rules) → `replication` (and the archiver) → `engine`
//! (sequencing, group commit, commit rule) → `state` (with `planning`, a pure function of it) →
//! `oplog`; `role` holds who this node is and until when. Nothing here knows about Kubernetes.

pub mod archive;
pub mod checkpoint;
pub mod config;
pub mod crashpoint;
pub mod engine;
pub mod epoch;
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
