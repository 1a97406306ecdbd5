//! The `TfsNameserver` custom resource (tfs.io/v1alpha1, short name `tfsns`).
//!
//! Admission-time validation is CEL in the schema, so a malformed resource is refused by the API
//! server with a message that says what to fix, before the operator ever sees it.
//!
//! The spec here; spec.tls in tls.rs, the status in status.rs, the TfsBackup resource in backup.rs.

// Printer columns repeat `type_ = ...` by design; clippy reads that as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

mod backup;
pub use backup::*;

pub const GROUP: &str = "tfs.io";
pub const DEFAULT_IMAGE: &str = "localhost/tfs:dev";

#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tfs.io",
    version = "v1alpha1",
    kind = "TfsNameserver",
    plural = "tfsnameservers",
    shortname = "tfsns",
    namespaced,
    status = "TfsNameserverStatus",
    doc = "A highly available TFS nameserver: one master and its slaves, with failover driven by a Lease.",
    printcolumn(
        name = "MASTER",
        type_ = "string",
        json_path = ".status.master",
        description = "Pod serving as master"
    ),
    printcolumn(
        name = "EPOCH",
        type_ = "integer",
        json_path = ".status.epoch",
        description = "Epoch of the master (Lease transitions)"
    ),
    printcolumn(name = "READY", type_ = "string", json_path = ".status.ready", description = "Ready instances"),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "LAST-FAILOVER", type_ = "date", json_path = ".status.lastFailoverTime"),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.bootstrap) == has(oldSelf.bootstrap) && (!has(self.bootstrap) || self.bootstrap == oldSelf.bootstrap)").message("bootstrap is chosen at creation: create a new TfsNameserver to restore another backup"))]
// A restored nameserver archives to a new place: appending its history to the archive it was
// restored from would mix two histories (the nameserver refuses it too, at run time).
#[x_kube(validation = Rule::new("!has(self.backup) || !has(self.bootstrap) || !has(self.bootstrap.fromBackup) || self.backup.objectStore.endpoint != self.bootstrap.fromBackup.objectStore.endpoint || self.backup.objectStore.bucket != self.bootstrap.fromBackup.objectStore.bucket || (has(self.backup.objectStore.prefix) ? self.backup.objectStore.prefix : '') != (has(self.bootstrap.fromBackup.objectStore.prefix) ? self.bootstrap.fromBackup.objectStore.prefix : '')").message("spec.backup archives where bootstrap.fromBackup restores from: give the restored nameserver its own objectStore.prefix"))]
pub struct TfsNameserverSpec {
    /// Nameserver instances: one master, the rest slaves.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 2 && self <= 5").message("replicas must be between 2 and 5 (one master plus 1 to 4 slaves)"))]
    pub replicas: i32,
    /// Container image holding tfs-nameserver and tfs-operator.
    #[serde(default = "default_image")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: String,
    /// Image pull policy of the nameserver pods (Never for images imported into the node).
    #[serde(default = "default_pull_policy")]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']").message("imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: String,
    /// Resources of the nameserver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage of each instance's oplog and checkpoints. The size may grow (the
    /// volumes are expanded when their StorageClass allows it; the StorageResized condition
    /// says how that goes), never shrink; the class is immutable; the delete policy may change.
    #[x_kube(validation = Rule::new("quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").message("storage.size cannot shrink: a volume is never made smaller"))]
    #[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName is immutable: create a new TfsNameserver to change it"))]
    pub storage: StorageSpec,
    /// Heartbeat Lease timing.
    #[serde(default)]
    pub lease: LeaseSpec,
    /// How writes are replicated to the slaves before they are acknowledged.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// Replicas of each TFS block on dataservers (not nameserver replicas).
    #[serde(default = "default_block_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4").message("blockReplicas must be between 1 and 4"))]
    pub block_replicas: i32,
    /// The VIP Service clients and dataservers use: its selector names the master.
    #[serde(default)]
    pub service: ServiceSpec,
    /// TLS on every port but the loopback admin port: certificates from a CA the operator keeps
    /// for this resource (Secret `<name>-ca`), or from cert-manager (issuerRef), mutual between
    /// instances. Chosen at creation: a master and a slave of different choices could not
    /// replicate during a roll.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("tls.enabled is chosen at creation: create a new TfsNameserver to change it"))]
    #[x_kube(validation = Rule::new("has(self.issuerRef) == has(oldSelf.issuerRef) && (!has(self.issuerRef) || self.issuerRef == oldSelf.issuerRef)").message("tls.issuerRef is chosen at creation: create a new TfsNameserver to change it"))]
    pub tls: TlsSpec,
    /// The NetworkPolicy the operator keeps for the instances (`<name>`): who may reach which port.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Log lines of the nameserver and heart containers: Text (default), or Json (one object per
    /// line, for log collectors). Takes effect as containers (re)start; rolls nothing.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Settings of the instances' pods beyond the nameserver container. A change rolls the pods
    /// (slaves first, then a switchover away from the master), like an image change.
    #[serde(default)]
    pub pod: PodSettings,
    /// How the instances spread over nodes. Required (default): never two instances of this
    /// resource on one node (pod anti-affinity on kubernetes.io/hostname), so a node loss takes
    /// at most one; with fewer schedulable nodes than replicas the extra instances stay Pending.
    /// Preferred: on different nodes when the scheduler can, together otherwise (small or test
    /// clusters). Either way the instances also spread over zones (topology.kubernetes.io/zone,
    /// ScheduleAnyway: no effect on nodes without zone labels). Merged with spec.pod.affinity
    /// (its anti-affinity terms are added to these). Applies to pods as they are created; a
    /// change rolls nothing (a pod whose volume is bound to its node could not move anyway).
    #[serde(default)]
    pub placement: Placement,
    /// Continuous archive to an object store: the master uploads every committed record and a
    /// checkpoint every checkpointEvery, kept for retention (every instance runs with it: any
    /// may become master). A change rolls the pods (slaves first, then a switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the first state is made (default: empty). Chosen at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

impl TfsNameserverSpec {
    /// The instances the operator runs: `replicas`, held within the 2 to 5 the schema admits.
    pub fn instances(&self) -> usize {
        self.replicas.clamp(2, 5) as usize
    }
}

/// Whether the instances of one TfsNameserver must, or only should, run on different nodes.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    #[default]
    Required,
    Preferred,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Secrets holding credentials to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// PriorityClass of the pods (a nameserver is usually worth more than batch work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// More labels on the pods (the operator's own labels win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// More annotations on the pods (the operator's own annotations win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Resources of the heart sidecar (default: requests 10m CPU and 16Mi, limit 64Mi memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_resources: Option<ResourceRequirements>,
    /// Resources of the prepare-data init container (only with storage.ownership: Chown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_resources: Option<ResourceRequirements>,
    /// Nodes the pods may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// How the processes of a pod write their log lines.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Keep a NetworkPolicy `<name>` that admits to the instances only: the replication port from
    /// the instances of this resource, the client port from `clients` and the operator's
    /// namespace, the metrics port from anywhere. Enforced only where the cluster's network plugin
    /// enforces NetworkPolicy. When false, the operator removes the policy it made.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may use the client port (clients and dataservers), as NetworkPolicy peers (pod and
    /// namespace selectors, IP blocks). Empty (default): any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec { enabled: true, clients: Vec::new() }
    }
}

fn default_true() -> bool {
    true
}

mod tls;
pub use tls::*;

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, a Kubernetes quantity such as 1Gi.
    #[x_kube(validation = Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be a positive quantity such as 1Gi"))]
    pub size: String,
    /// StorageClass of the volumes (the cluster default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to an instance's volume when a scale-down removes the instance or the
    /// TfsNameserver is deleted: Retain (default, like a StatefulSet's claims: the volume stays,
    /// and an instance that comes back with the same ordinal reuses it) or Delete.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// How an instance's volume comes to belong to the nameserver's user (uid/gid 65532):
    /// FsGroup (default: the kubelet applies the pod's fsGroup, as it does for local, CSI and
    /// most cloud volumes; every container runs as non-root, so the pods meet Pod Security
    /// `restricted`) or Chown (an init container running as root with CAP_CHOWN alone hands the
    /// directory over, for provisioners whose volumes ignore fsGroup, such as hostPath; not
    /// admitted in a namespace that enforces `restricted`). Applies to pods created after a change.
    #[serde(default)]
    pub ownership: VolumeOwnership,
}

/// Who hands a new volume to the nameserver's user: the kubelet (FsGroup) or an init container (Chown).
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VolumeOwnership {
    #[default]
    FsGroup,
    Chown,
}

/// Retain keeps volumes (and the metadata in them) until deleted by hand; Delete removes them.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletePolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.durationSeconds > self.renewDeadlineSeconds").message("lease.durationSeconds must be greater than lease.renewDeadlineSeconds"))]
#[x_kube(validation = Rule::new("self.renewDeadlineSeconds * 10 > self.retryPeriodSeconds * 12").message("lease.renewDeadlineSeconds must be greater than 1.2 x lease.retryPeriodSeconds"))]
pub struct LeaseSpec {
    /// A master that has not renewed the Lease for this long is replaced.
    #[serde(default = "default_duration")]
    #[x_kube(validation = Rule::new("self >= 2 && self <= 300").message("lease.durationSeconds must be between 2 and 300"))]
    pub duration_seconds: i32,
    /// A master stops accepting writes this long after the start of its last successful renew.
    #[serde(default = "default_renew_deadline")]
    #[x_kube(validation = Rule::new("self >= 1").message("lease.renewDeadlineSeconds must be at least 1"))]
    pub renew_deadline_seconds: i32,
    /// How often the heart renews the Lease.
    #[serde(default = "default_retry")]
    #[x_kube(validation = Rule::new("self >= 1").message("lease.retryPeriodSeconds must be at least 1"))]
    pub retry_period_seconds: i32,
}

impl Default for LeaseSpec {
    fn default() -> Self {
        LeaseSpec {
            duration_seconds: default_duration(),
            renew_deadline_seconds: default_renew_deadline(),
            retry_period_seconds: default_retry(),
        }
    }
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    #[serde(default)]
    pub mode: ReplicationMode,
}

/// Sync: a write is acknowledged once durable on the master and every slave in the sync set, so
/// a failover loses nothing. Async: acknowledged once durable on the master (explicit opt-in).
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplicationMode {
    #[default]
    Sync,
    Async,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Type of the VIP Service.
    #[serde(default = "default_service_type", rename = "type")]
    #[x_kube(validation = Rule::new("self in ['ClusterIP', 'NodePort', 'LoadBalancer']").message("service.type must be ClusterIP, NodePort or LoadBalancer"))]
    pub type_: String,
    /// Port of the VIP Service.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("service.port must be a TCP port (1-65535)"))]
    pub port: i32,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec { type_: default_service_type(), port: default_port() }
    }
}

fn default_replicas() -> i32 {
    2
}
fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_pull_policy() -> String {
    "IfNotPresent".into()
}
fn default_block_replicas() -> i32 {
    2
}
fn default_duration() -> i32 {
    5
}
fn default_renew_deadline() -> i32 {
    3
}
fn default_retry() -> i32 {
    1
}
fn default_service_type() -> String {
    "ClusterIP".into()
}
fn default_port() -> i32 {
    8100
}

mod status;
pub use status::*;

/// The CRD as YAML (what `tfs-operator crd` prints and `make crds` writes).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&TfsNameserver::crd()).expect("the CRD serializes")
}

#[cfg(test)]
mod tests;
