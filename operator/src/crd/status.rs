//! The TfsNameserver's status: its phase, each instance's role and lag, the failover record and
//! the conditions. Written by the controller alone (controller/status.rs).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

use super::backup::BackupStatus;

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum Phase {
    #[default]
    Creating,
    Healthy,
    FailingOver,
    SwitchingOver,
    Degraded,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The pod.
    pub name: String,
    /// master, slave or unknown.
    pub role: String,
    /// The pod's Ready condition.
    pub ready: bool,
    /// Last oplog seq durable on this instance.
    pub durable_seq: i64,
    /// Records behind the master.
    pub lag: i64,
    /// Whether the master counts this slave for commits (only such a slave can be promoted).
    pub in_sync_set: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TfsNameserverStatus {
    /// Creating, Healthy, FailingOver, SwitchingOver or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The pod holding the Lease: the master, which the VIP Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The master's epoch (the Lease's transitions); it only rises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Ready instances out of the replicas asked for, such as 2/2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Each instance as the operator last observed it.
    #[serde(default)]
    pub instances: Vec<InstanceStatus>,
    /// Failovers (unplanned master changes) since the resource was created.
    #[serde(default)]
    pub failovers: i64,
    /// When the last failover promoted a new master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<Time>,
    /// Why the last failover happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_reason: Option<String>,
    /// Ready, Available, FailingOver, Degraded and SettingsApplied, one of each type.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Instances that exist now (`kubectl scale` and autoscalers read it).
    #[serde(default)]
    pub replicas: i32,
    /// The nameserver pods' label selector, as a string (the scale subresource's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The archive (spec.backup) as the master last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
}
