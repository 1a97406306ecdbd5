//! Harness for the end-to-end suites: the real local cluster (`make cluster`), driven the way a
//! user drives it (helm, kubectl, tfsctl as processes) and observed with kube-rs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const OPERATOR_NS: &str = "tfs-system";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    root().join(".e2e/bin").join(name)
}

pub fn tfsctl() -> PathBuf {
    root().join("target/release/tfsctl")
}

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| root().join(".e2e/kubeconfig"))
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// kubectl, helm and crictl as processes, and the kube-rs client.
pub mod tools;
pub use tools::{client, kubectl, kubectl_stdin, run};

/// The processes of the pods: host pids through the CRI, signals.
pub mod procs;
pub use procs::{container_pid, kill9, pod_sandbox_pid, signal};

/// The cluster handle: the operator, a scenario's namespace, a TfsNameserver.
pub mod tfs;
pub use tfs::{Namespace, TLS_ENV, Tfs, demo_manifest, ensure_operator};

/// The recording writer and mixed clients of the failover scenarios, and `tfsctl verify`.
pub mod writer;
pub use writer::{HISTORIES, Writer, verify};

/// The chaos harness (`make chaos`): randomized faults under load and a history check.
pub mod chaos;

/// The local cluster's provisioner of node-local volumes (a host process of `make cluster`).
pub mod local_volumes;

/// What is kept when a scenario fails or a trial is slow: events, pods, nodes, logs.
pub mod evidence;

/// Failover-time trials (`make bench`): the schedule and the parsing of records and bench logs.
pub mod trials;

/// The simulated nodes of the local cluster: where pods run, losing a node and getting it back,
/// the operator's leader.
pub mod nodes;
pub use nodes::{LostNode, containerd_socket, nodes, operator_leader, operator_pods, pod_node};

/// The cluster's S3 object store (backups): endpoint, credentials, raw object access.
pub mod objectstore;
