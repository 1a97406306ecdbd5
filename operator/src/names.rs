//! Names, labels and annotations: the contract between the operator, the heart and users.

use std::collections::BTreeMap;

pub const MANAGER: &str = "tfs-operator";
pub const FINALIZER: &str = "tfs.io/cleanup";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// On each nameserver pod, its own name: the VIP Service selects the master by it.
pub const LABEL_POD: &str = "tfs.io/pod";
pub const LABEL_ORDINAL: &str = "tfs.io/ordinal";
/// On each nameserver pod, a value new at each creation of the pod: the VIP pins the master's, so
/// that a pod made again under the master's name (after the master's pod was lost) is not
/// selected before it is promoted itself.
pub const LABEL_INCARNATION: &str = "tfs.io/incarnation";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
/// On each nameserver pod: its resources and spec.pod as made (a change rolls the pods).
pub const ANN_POD_SETTINGS: &str = "tfs.io/pod-settings";

/// A value for [`LABEL_INCARNATION`]: the creation time in nanoseconds, in hex (two incarnations
/// of one pod are never made in the same nanosecond).
pub fn new_incarnation() -> String {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}", ns as u64)
}

/// On the TfsNameserver: ask for a planned switchover to this pod.
pub const ANN_SWITCHOVER_TO: &str = "tfs.io/switchover-to";
/// On the TfsNameserver: ask the operator to replace this instance (a slave whose node is lost,
/// or whose pod is Pending) with a new one, on a new volume, seeded from the master
/// (`kubectl tfs replace`). Removed by the operator once done or refused.
pub const ANN_REPLACE_INSTANCE: &str = "tfs.io/replace-instance";
/// On the TfsNameserver, written by the operator: the cordoned nodes it already switched the
/// master away from (comma-separated), so that one cordon makes at most one switchover. An entry
/// goes when its node is schedulable again or deleted; removing it by hand allows another try.
pub const ANN_CORDON_SWITCHOVER: &str = "tfs.io/cordon-switchover";
/// On a claim, written by the scheduler (WaitForFirstConsumer): the node its volume was made for.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On the Lease: the master's sync set as last published by its heart, and its version.
pub const ANN_SYNC_SET: &str = "tfs.io/sync-set";
pub const ANN_SYNC_SET_VERSION: &str = "tfs.io/sync-set-version";
/// On the Lease: the operator asks the master's heart to hand the Lease to this pod.
pub const ANN_HANDOVER_TO: &str = "tfs.io/handover-to";
/// On the Lease, written by the master's heart: a handover it refused, and why.
pub const ANN_HANDOVER_REFUSED: &str = "tfs.io/handover-refused";
/// On the VIP Service: the epoch whose master its selector names.
pub const ANN_EPOCH: &str = "tfs.io/epoch";
/// On the Lease: why it was last released or handed over (for status and events).
pub const ANN_RELEASE_REASON: &str = "tfs.io/release-reason";
/// On the Lease: the pod that last released it.
pub const ANN_RELEASED_BY: &str = "tfs.io/released-by";

pub const CLIENT_PORT: i32 = 8100;
pub const REPL_PORT: i32 = 8101;
pub const ADMIN_PORT: i32 = 8102;
pub const METRICS_PORT: i32 = 9102;
/// The heart's /metrics.
pub const HEART_METRICS_PORT: i32 = 9103;

pub fn pod(name: &str, ordinal: usize) -> String {
    format!("{name}-{ordinal}")
}

pub fn pvc(name: &str, ordinal: usize) -> String {
    pvc_of(&pod(name, ordinal))
}

/// The claim of the instance (pod) `pod`.
pub fn pvc_of(pod: &str) -> String {
    format!("{pod}-data")
}

/// The PodDisruptionBudget of the master alone (`<name>` is the slaves').
pub fn master_pdb(name: &str) -> String {
    format!("{name}-master")
}

pub fn config_map(name: &str) -> String {
    format!("{name}-config")
}

pub fn heart(name: &str) -> String {
    format!("{name}-heart")
}

pub fn peers(name: &str) -> String {
    format!("{name}-peers")
}

/// The CA of one TfsNameserver (ca.crt, ca.key).
pub fn ca_secret(name: &str) -> String {
    format!("{name}-ca")
}

/// One pod's certificates: ca.crt, tls.crt/tls.key (the pod), vip.crt/vip.key (the VIP).
pub fn tls_secret(pod: &str) -> String {
    format!("{pod}-tls")
}

/// The VIP's certificate when cert-manager issues them (spec.tls.issuerRef): one Secret of its
/// own (tls.crt, tls.key, ca.crt), which each pod mounts as vip.crt/vip.key beside `<pod>-tls`.
pub fn vip_tls_secret(name: &str) -> String {
    format!("{name}-vip-tls")
}

/// A client certificate of the CA (ca.crt, tls.crt, tls.key), for tfsctl and dataservers.
pub fn client_secret(name: &str) -> String {
    format!("{name}-client")
}

/// Where a pod mounts its certificates.
pub const TLS_DIR: &str = "/etc/tfs/tls";

/// The Lease and the VIP Service share the resource's name.
pub fn lease(name: &str) -> String {
    name.to_string()
}

pub fn vip(name: &str) -> String {
    name.to_string()
}

/// Ordinal of a pod named `<name>-<i>`.
pub fn ordinal(name: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(name)?.strip_prefix('-')?.parse().ok()
}

/// Labels every object of one TfsNameserver carries.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "tfs-nameserver".to_string()),
        (LABEL_INSTANCE.to_string(), name.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// The selector of all nameserver pods of one TfsNameserver.
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "tfs-nameserver".to_string()),
        (LABEL_INSTANCE.to_string(), name.to_string()),
    ])
}

pub fn selector_string(name: &str) -> String {
    selector(name).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordinals() {
        assert_eq!(super::ordinal("demo", "demo-3"), Some(3));
        assert_eq!(super::ordinal("demo", "demo-x"), None);
        assert_eq!(super::ordinal("demo", "demox-1"), None);
        assert_eq!(super::ordinal("de", "demo-1"), None);
    }
}
