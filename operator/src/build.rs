//! Pure builders: the objects a `TfsNameserver` owns, computed from the resource alone (plus the
//! current master for the VIP selector). No client here, so all of it is unit-tested.
//!
//! Here the resource-wide objects (config, RBAC, Services, the Lease, claims, budgets, network
//! policy); the pod in pod.rs, where it runs in placement.rs, the archive and restore parts of it
//! in archive.rs and restore.rs.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec as KLeaseSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServiceAccount, ServicePort, ServiceSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{DeletePolicy, LogFormat, TfsNameserver};
use crate::names::{self, *};
use crate::settings::Settings;

/// The uid/gid the containers run as (no root, see the pod security context).
pub const RUN_AS: i64 = 65532;
/// Selector value of the VIP Service while there is no master: matches no pod.
pub const NO_MASTER: &str = "none";

fn owner(t: &TfsNameserver) -> OwnerReference {
    t.controller_owner_ref(&()).expect("a TfsNameserver read from the API has a name and uid")
}

/// Metadata of an object owned by `t` (name, namespace, labels, owner).
pub fn meta_of(t: &TfsNameserver, name: String) -> ObjectMeta {
    meta(t, name)
}

fn meta(t: &TfsNameserver, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: t.namespace(),
        labels: Some(labels(&t.name_any())),
        owner_references: Some(vec![owner(t)]),
        ..Default::default()
    }
}

/// The resource's settings for people to read. Pods do not take the settings from here (a restarted
/// container would re-read newer values than its pod records): see `settings`.
pub fn config_map(t: &TfsNameserver) -> ConfigMap {
    let mut data: BTreeMap<String, String> =
        Settings::of(t).env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    data.insert("TFS_CLUSTER_ID".to_string(), format!("{}.{}", t.namespace().unwrap_or_default(), t.name_any()));
    // Not a setting that rolls pods (see settings.rs): read by each process as it starts.
    let log = match t.spec.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    data.insert("TFS_LOG_FORMAT".to_string(), log.to_string());
    ConfigMap { metadata: meta(t, config_map_name(t)), data: Some(data), ..Default::default() }
}

fn config_map_name(t: &TfsNameserver) -> String {
    names::config_map(&t.name_any())
}

pub fn service_account(t: &TfsNameserver) -> ServiceAccount {
    ServiceAccount { metadata: meta(t, heart(&t.name_any())), ..Default::default() }
}

/// Least privilege for the heart: its own Lease by name, and reading pods (to find the master's
/// address). Nothing else.
pub fn role(t: &TfsNameserver) -> Role {
    let name = t.name_any();
    Role {
        metadata: meta(t, heart(&name)),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(vec!["leases".into()]),
                resource_names: Some(vec![lease(&name)]),
                // list and watch by name: the heart watches its Lease (the requests carry the
                // metadata.name field selector, which is what a name-restricted rule allows).
                verbs: vec!["get".into(), "list".into(), "watch".into(), "update".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
        ]),
    }
}

pub fn role_binding(t: &TfsNameserver) -> RoleBinding {
    let name = heart(&t.name_any());
    RoleBinding {
        metadata: meta(t, name.clone()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: t.namespace(),
            ..Default::default()
        }]),
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Headless Service over all instances (stable peer addresses, not-ready ones included).
pub fn peers_service(t: &TfsNameserver) -> Service {
    Service {
        metadata: meta(t, peers(&t.name_any())),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector(&t.name_any())),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![port("client", CLIENT_PORT), port("repl", REPL_PORT), port("metrics", METRICS_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The master's pod alone (none while there is no master): what the VIP and the master's
/// disruption budget select.
fn master_selector(t: &TfsNameserver, master: Option<&str>) -> BTreeMap<String, String> {
    let mut sel = selector(&t.name_any());
    sel.insert(LABEL_POD.into(), master.unwrap_or(NO_MASTER).into());
    sel
}

/// Whom the VIP selects: the master's pod by name and, when that pod carries one, by incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipTarget<'a> {
    pub pod: &'a str,
    pub incarnation: Option<&'a str>,
}

/// The VIP: a Service whose selector points at exactly one pod, the master. Only the operator
/// writes it. Not-ready addresses are published: who is master is decided by the Lease, not by
/// readiness, and a restart of the master's heart container must not take the VIP away. The
/// incarnation keeps it off a pod made again under the master's name, which is not ready either.
pub fn vip_service(t: &TfsNameserver, target: Option<VipTarget>) -> Service {
    let mut sel = master_selector(t, target.map(|v| v.pod));
    if let Some(i) = target.and_then(|v| v.incarnation) {
        sel.insert(LABEL_INCARNATION.into(), i.into());
    }
    Service {
        metadata: meta(t, vip(&t.name_any())),
        spec: Some(ServiceSpec {
            type_: Some(t.spec.service.type_.clone()),
            selector: Some(sel),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("client".into()),
                port: t.spec.service.port,
                target_port: Some(IntOrString::Int(CLIENT_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The heartbeat Lease as first created: nobody holds it, epoch 0.
pub fn lease_object(t: &TfsNameserver) -> Lease {
    Lease {
        metadata: meta(t, lease(&t.name_any())),
        spec: Some(KLeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(t.spec.lease.duration_seconds),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// The owner references a volume claim carries under the delete policy: owned (garbage-collected
/// with the TfsNameserver) only under Delete.
pub fn pvc_owners(t: &TfsNameserver) -> Option<Vec<OwnerReference>> {
    (t.spec.storage.delete_policy == DeletePolicy::Delete).then(|| vec![owner(t)])
}

pub fn pvc(t: &TfsNameserver, ordinal: usize) -> PersistentVolumeClaim {
    let mut m = meta(t, names::pvc(&t.name_any(), ordinal));
    m.labels.get_or_insert_default().insert(LABEL_ORDINAL.into(), ordinal.to_string());
    m.owner_references = pvc_owners(t);
    PersistentVolumeClaim {
        metadata: m,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: t.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(t.spec.storage.size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The slaves' PodDisruptionBudget `<name>`: every instance but the master, at most one of them
/// disrupted at a time. The master has its own (`master_pdb`): a pod under two budgets cannot be
/// evicted at all (the eviction API answers 500, which `kubectl drain` does not retry), so the
/// two never select the same pod. Together: never two instances disrupted at once, never the
/// master. Both follow the master (the operator applies them again when it changes).
///
/// minAvailable as a number, not maxUnavailable: the disruption controller counts the pods a
/// numeric minAvailable selects, but for maxUnavailable it asks the owner's scale subresource,
/// which would count all the resource's replicas for a budget that selects only some of them.
pub fn pdb(t: &TfsNameserver, master: Option<&str>) -> PodDisruptionBudget {
    let slaves = t.spec.instances() as i32 - 1;
    PodDisruptionBudget {
        metadata: meta(t, t.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(slaves - 1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(&t.name_any())),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: LABEL_POD.into(),
                    operator: "NotIn".into(),
                    values: Some(vec![master.unwrap_or(NO_MASTER).into()]),
                }]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The master's PodDisruptionBudget `<name>-master`: exactly the master pod (by the label the
/// VIP selects on), none of it may be disrupted (minAvailable 1 of 1: maxUnavailable 0 without
/// the scale lookup, see `pdb`). An eviction of the master is refused (429, `kubectl drain`
/// retries) while it is master; the operator switches over first when its node is cordoned.
pub fn master_pdb(t: &TfsNameserver, master: Option<&str>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(t, names::master_pdb(&t.name_any())),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(master_selector(t, master)), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The instances' NetworkPolicy (when `spec.networkPolicy.enabled`): replication only between
/// instances of this resource (a foreign pod cannot even attempt a LOGIN), the client port from
/// the configured clients and from the operator's namespace (its probes), metrics from anywhere.
/// Egress is left open: slaves dial the master, hearts reach the API server.
pub fn network_policy(t: &TfsNameserver, operator_ns: Option<&str>) -> NetworkPolicy {
    let own = LabelSelector { match_labels: Some(selector(&t.name_any())), ..Default::default() };
    let port = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let clients = &t.spec.network_policy.clients;
    let mut rules = vec![NetworkPolicyIngressRule {
        ports: Some(vec![port(REPL_PORT)]),
        from: Some(vec![NetworkPolicyPeer { pod_selector: Some(own.clone()), ..Default::default() }]),
    }];
    // An empty `from` admits any source; a list admits only its peers.
    rules.push(NetworkPolicyIngressRule {
        ports: Some(vec![port(CLIENT_PORT)]),
        from: (!clients.is_empty()).then(|| clients.clone()),
    });
    if let (false, Some(ns)) = (clients.is_empty(), operator_ns) {
        rules.push(NetworkPolicyIngressRule {
            ports: Some(vec![port(CLIENT_PORT)]),
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), ns.into())])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
        });
    }
    rules
        .push(NetworkPolicyIngressRule { ports: Some(vec![port(METRICS_PORT), port(HEART_METRICS_PORT)]), from: None });
    NetworkPolicy {
        metadata: meta(t, t.name_any()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    }
}

mod archive;
pub mod restore;

mod pod;
pub use pod::*;
// (named: `names::pod`, the pod's name, comes by a glob too)
pub use pod::pod;

mod placement;
pub use placement::*;

#[cfg(test)]
pub(crate) mod tests;
