//! tfs-operator: everything of the TFS nameserver that talks to Kubernetes.
//!
//! - `crd`: the `TfsNameserver` and `TfsBackup` resources and their admission rules;
//! - `backup`: the `TfsBackup` controller (on-demand backups to the archive of spec.backup);
//! - `build`: pure builders of every object a `TfsNameserver` owns;
//! - `failover`: the pure decision of who is master and when to promote;
//! - `controller`: the reconcile as a pipeline (observe → build and apply → planned operations →
//!   decide → act → status, one status writer);
//! - `leader`: leader election between operator replicas (only the leader runs the controller);
//! - `standby`: what a standby watches of the heartbeat Leases, handed to its controller when it leads;
//! - `lease`: the heartbeat Lease: reading it, its protocol (take, renew, release, ask handover) as
//!   pure functions, expiry on the observer's own clock;
//! - `heart`: the sidecar that keeps the Lease for its nameserver (its decision pure: `heart::decide`);
//! - `instance`: reading a nameserver's status over its client port;
//! - `nodes`: the nodes as read: a cordoned master's node, lost instances, replacing one;
//! - `settings`: what a pod's processes run with, and judging while a change rolls out.

pub mod backup;
pub mod build;
pub mod controller;
pub mod crd;
pub mod error;
pub mod failover;
pub mod heart;
pub mod instance;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod pki;
pub mod plugin;
pub mod settings;
pub mod standby;
pub mod storage;

#[cfg(test)]
pub(crate) mod fixtures;

pub use error::{Error, Result};
