//! Backups of a TfsNameserver: the continuous archive to an object store (`spec.backup`), what the
//! master reports of it (`status.backup`), on-demand backups (the `TfsBackup` resource), and a new
//! resource's first state restored from the archive (`spec.bootstrap.fromBackup`).
//!
//! The durations are humantime durations as the nameserver's flags take them, restricted at
//! admission to digits and units (`90s`, `1h30m`, `7d`).

// Printer columns repeat `type_ = ...` by design; clippy reads that as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The admission rule of a duration field (also what `parse_duration` accepts, and more).
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// Where the archive lives: an S3-compatible bucket, and the Secret with its credentials.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore {
    /// The store's S3 endpoint URL, such as http://10.244.0.1:8333 or https://s3.eu-west-1.amazonaws.com.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("objectStore.endpoint must be an http:// or https:// URL"))]
    pub endpoint: String,
    /// The bucket (it must exist).
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("objectStore.bucket must not be empty"))]
    pub bucket: String,
    /// Key prefix of this resource's archive in the bucket (default `<namespace>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub prefix: Option<String>,
    /// The store's region (default us-east-1).
    #[serde(default = "default_region")]
    #[schemars(length(max = 64))]
    pub region: String,
    /// The Secret (in the resource's namespace) holding the access key.
    pub credentials_secret: CredentialsSecret,
}

/// A Secret with an S3 access key pair, given to the processes as AWS_ACCESS_KEY_ID and
/// AWS_SECRET_ACCESS_KEY.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self.size() > 0").message("credentialsSecret.name must not be empty"))]
    pub name: String,
    /// Key of the access key id in the Secret (default accessKeyId).
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret (default secretAccessKey).
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

/// `spec.backup`: the master archives every committed record and a checkpoint now and then.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Where the archive goes.
    pub object_store: ObjectStore,
    /// How often the master uploads a checkpoint (a restore replays the log from the last one
    /// before its target), such as 1h (default).
    #[serde(default = "default_checkpoint_every")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d))+$')").message("backup.checkpointEvery must be a duration such as 30m, 1h or 1h30m"))]
    pub checkpoint_every: String,
    /// How long archived records and checkpoints are kept, such as 7d (default): the oldest
    /// point a restore can reach.
    #[serde(default = "default_retention")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d))+$')").message("backup.retention must be a duration such as 7d or 48h"))]
    pub retention: String,
    /// The oldest committed record not yet archived is uploaded within about this long (the open
    /// segment's tail is archived at least this often), such as 10s (default): with the archive's
    /// lag, what a total loss can lose.
    #[serde(default = "default_archive_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d))+$')").message("backup.archiveTimeout must be a duration such as 10s"))]
    pub archive_timeout: String,
}

/// `spec.bootstrap`: how a new resource's first state is made. Chosen at creation.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore instance 0 from an archive before it starts, and make it the first master; the
    /// other instances start empty and are seeded from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// An archive and the point to restore: exactly one of targetSeq, targetTime, latest.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.targetSeq) ? 1 : 0) + (has(self.targetTime) ? 1 : 0) + (has(self.latest) && self.latest ? 1 : 0) == 1").message("bootstrap.fromBackup needs exactly one of targetSeq, targetTime or latest: true"))]
pub struct FromBackup {
    /// The archive (prefix default `<namespace>/<name>` of this resource: set it to restore
    /// another resource's archive).
    pub object_store: ObjectStore,
    /// Restore the state at exactly this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("bootstrap.fromBackup.targetSeq must not be negative"))]
    pub target_seq: Option<i64>,
    /// Restore every record written at or before this instant (RFC 3339, such as
    /// 2026-11-29T10:00:00Z; an offset is converted to UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|z|[+-][0-9]{2}:[0-9]{2})$')").message("bootstrap.fromBackup.targetTime must be an RFC 3339 time such as 2026-11-29T10:00:00Z"))]
    pub target_time: Option<String>,
    /// Restore everything the archive holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<bool>,
}

/// The point a restore reaches, as the restore tool takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    Seq(u64),
    Time(String),
    Latest,
}

impl FromBackup {
    /// The target, or why there is none (the admission rule refuses such a resource; this
    /// repeats it for one that bypassed it).
    pub fn target(&self) -> Result<RestoreTarget, String> {
        match (self.target_seq, &self.target_time, self.latest == Some(true)) {
            (Some(s), None, false) if s >= 0 => Ok(RestoreTarget::Seq(s as u64)),
            // In UTC with Z, as the restore tool takes it.
            (None, Some(t), false) => t
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map(|ts| RestoreTarget::Time(ts.to_string()))
                .map_err(|e| format!("bootstrap.fromBackup.targetTime {t:?} is not an RFC 3339 time: {e}")),
            (None, None, true) => Ok(RestoreTarget::Latest),
            _ => Err("bootstrap.fromBackup needs exactly one of targetSeq, targetTime or latest: true".into()),
        }
    }
}

/// Parses a duration of spec.backup (humantime, as the nameserver does).
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{field} {s:?} is not a duration: {e}"))?;
    if d.is_zero() {
        return Err(format!("{field} must be above zero"));
    }
    Ok(d)
}

impl BackupSpec {
    /// Every duration parses and is above zero.
    pub fn validate(&self) -> Result<(), String> {
        parse_duration("backup.checkpointEvery", &self.checkpoint_every)?;
        parse_duration("backup.retention", &self.retention)?;
        parse_duration("backup.archiveTimeout", &self.archive_timeout)?;
        Ok(())
    }

    /// The upload timeout (10 s when it does not parse: admission refuses that anyway).
    pub fn timeout(&self) -> Duration {
        parse_duration("", &self.archive_timeout).unwrap_or(Duration::from_secs(10))
    }
}

impl ObjectStore {
    /// The archive's prefix for the resource `namespace/name`.
    pub fn prefix_for(&self, namespace: &str, name: &str) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => format!("{namespace}/{name}"),
        }
    }

    /// `s3://<bucket>/<prefix>`, the nameserver's `--archive`.
    pub fn url(&self, namespace: &str, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix_for(namespace, name))
    }
}

/// `status.backup`: the archive as the master last reported it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The master that reported this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Every committed record through this seq is archived.
    #[serde(default)]
    pub last_archived_seq: i64,
    /// Age of the oldest committed record not yet archived, such as 1.2s (0s when caught up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_lag: Option<String>,
    /// The last checkpoint uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_archived: Option<ArchivedCheckpoint>,
    /// The last failed upload, while the archive has not succeeded since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A checkpoint in the archive.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedCheckpoint {
    /// The seq whose state it holds.
    pub seq: i64,
    /// Its key in the bucket.
    pub object: String,
    /// When it was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// An on-demand backup of a TfsNameserver: a checkpoint of the master's state, uploaded to the
/// archive of its spec.backup. Taken once; never taken again, never deleted with the nameserver.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tfs.io",
    version = "v1alpha1",
    kind = "TfsBackup",
    plural = "tfsbackups",
    shortname = "tfsbk",
    namespaced,
    status = "TfsBackupStatus",
    doc = "An on-demand backup of a TfsNameserver (a checkpoint uploaded to its archive).",
    printcolumn(name = "NAMESERVER", type_ = "string", json_path = ".spec.nameserver"),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "SEQ", type_ = "integer", json_path = ".status.seq"),
    printcolumn(name = "SIZE", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TfsBackupSpec {
    /// The TfsNameserver to back up, in the same namespace (it needs spec.backup).
    #[x_kube(validation = Rule::new("self.size() > 0").message("nameserver must name a TfsNameserver"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("nameserver is immutable: create another TfsBackup"))]
    pub nameserver: String,
}

/// Where a TfsBackup stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
}

impl BackupPhase {
    /// Completed and Failed are final: the backup is never taken again.
    pub fn done(self) -> bool {
        matches!(self, BackupPhase::Completed | BackupPhase::Failed)
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TfsBackupStatus {
    /// Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Why it failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Attempts made to reach the master.
    #[serde(default)]
    pub attempts: i32,
    /// The checkpoint's seq: restoring this backup gives the state at exactly this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// The epoch of the master that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// The master that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The checkpoint's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// The same, for people (such as 1.5MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The objects written (the checkpoint's key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// When every committed record through this seq was archived too (at completion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// When the operator started it.
    pub started_at: Option<Time>,
    /// When it completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Completed, one of each type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A size for people: 512B, 1.5KiB, 3.2MiB, 1.1GiB.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_access_key_id_key() -> String {
    "accessKeyId".into()
}
fn default_secret_access_key_key() -> String {
    "secretAccessKey".into()
}
fn default_checkpoint_every() -> String {
    "1h".into()
}
fn default_retention() -> String {
    "7d".into()
}
fn default_archive_timeout() -> String {
    "10s".into()
}

/// The TfsBackup CRD as YAML (`tfs-operator crd tfsbackups`).
pub fn backup_crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&TfsBackup::crd()).expect("the CRD serializes")
}

#[cfg(test)]
mod tests;
