//! Pure builders: the objects a `TfsNameserver` owns, computed from the resource alone (plus the
//! current master for the VIP selector). No client here, so all of it is unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec as KLeaseSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
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

use crate::crd::{ClientAuth, DeletePolicy, LogFormat, Placement, TfsNameserver, VolumeOwnership};
use crate::names::{self, *};
use crate::settings::{ANN_SETTINGS, Settings};

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

/// The VIP: a Service whose selector points at exactly one pod, the master. Only the operator
/// writes it. Not-ready addresses are published: who is master is decided by the Lease, not by
/// readiness, and a restart of the master's heart container must not take the VIP away.
pub fn vip_service(t: &TfsNameserver, master: Option<&str>) -> Service {
    Service {
        metadata: meta(t, vip(&t.name_any())),
        spec: Some(ServiceSpec {
            type_: Some(t.spec.service.type_.clone()),
            selector: Some(master_selector(t, master)),
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
    let slaves = t.spec.replicas.clamp(2, 5) - 1;
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

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

mod archive;
pub mod restore;

/// Non-root, read-only root filesystem, no capabilities, no privilege escalation.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

fn health_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".into()),
            port: IntOrString::Int(METRICS_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

pub fn pod(t: &TfsNameserver, ordinal: usize) -> Pod {
    let name = t.name_any();
    let pod_name = names::pod(&name, ordinal);
    let mut m = meta(t, pod_name.clone());
    let l = m.labels.get_or_insert_default();
    l.insert(LABEL_POD.into(), pod_name.clone());
    l.insert(LABEL_ORDINAL.into(), ordinal.to_string());
    let ps = &t.spec.pod;
    l.insert(LABEL_COMPONENT.into(), "nameserver".into());
    l.insert(LABEL_PART_OF.into(), "tfs".into());
    if let Some(v) = image_version(&t.spec.image) {
        l.insert(LABEL_VERSION.into(), v);
    }
    for (k, v) in &ps.labels {
        l.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let settings = Settings::of(t);
    let a = m.annotations.get_or_insert_default();
    a.insert(ANN_SETTINGS.into(), settings.encode());
    a.insert(ANN_POD_SETTINGS.into(), pod_settings(t));
    for (k, v) in &ps.annotations {
        a.entry(k.clone()).or_insert_with(|| v.clone());
    }
    // In the pod's own spec, so that its processes run exactly what its annotation records
    // (explicit env wins over envFrom).
    let settings_env: Vec<EnvVar> = settings
        .env()
        .into_iter()
        .map(|(k, v)| EnvVar { name: k.into(), value: Some(v), ..Default::default() })
        .collect();
    let env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource { name: config_map_name(t), ..Default::default() }),
        ..Default::default()
    }];
    let image = t.spec.image.clone();
    let pull = Some(t.spec.image_pull_policy.clone());
    let data = VolumeMount { name: "data".into(), mount_path: "/data".into(), ..Default::default() };
    // TLS: the pod's Secret (ca.crt, tls.*, vip.*), re-read by the nameserver when it changes.
    let tls = t.spec.tls.enabled;
    let tls_mount =
        VolumeMount { name: "tls".into(), mount_path: TLS_DIR.into(), read_only: Some(true), ..Default::default() };
    let tls_env = if tls {
        let auth = match t.spec.tls.client_auth {
            ClientAuth::None => "none",
            ClientAuth::Required => "required",
        };
        vec![
            EnvVar { name: "TFS_TLS_DIR".into(), value: Some(TLS_DIR.into()), ..Default::default() },
            EnvVar { name: "TFS_CLIENT_AUTH".into(), value: Some(auth.into()), ..Default::default() },
        ]
    } else {
        vec![]
    };
    let nameserver = Container {
        name: "nameserver".into(),
        image: Some(image.clone()),
        image_pull_policy: pull.clone(),
        command: Some(vec!["/usr/local/bin/tfs-nameserver".into()]),
        args: Some(
            vec![
                "--data-dir=/data".into(),
                format!("--listen=0.0.0.0:{CLIENT_PORT}"),
                format!("--repl-listen=0.0.0.0:{REPL_PORT}"),
                format!("--admin-listen=127.0.0.1:{ADMIN_PORT}"),
                format!("--metrics-listen=0.0.0.0:{METRICS_PORT}"),
                "--sync-set-publication=lease".into(),
            ]
            .into_iter()
            .chain(archive::args(t))
            .collect(),
        ),
        env: Some(
            [vec![field_env("TFS_NODE", "metadata.name")], settings_env.clone(), tls_env, archive::env(t)].concat(),
        ),
        env_from: Some(env_from.clone()),
        ports: Some(vec![
            ContainerPort { name: Some("client".into()), container_port: CLIENT_PORT, ..Default::default() },
            ContainerPort { name: Some("repl".into()), container_port: REPL_PORT, ..Default::default() },
            ContainerPort { name: Some("metrics".into()), container_port: METRICS_PORT, ..Default::default() },
        ]),
        readiness_probe: Some(health_probe(1, 2)),
        liveness_probe: Some(health_probe(3, 3)),
        // Recovery of a large state happens before /health answers.
        startup_probe: Some(health_probe(1, 120)),
        resources: t.spec.resources.clone(),
        security_context: Some(restricted()),
        volume_mounts: Some(if tls { vec![data.clone(), tls_mount] } else { vec![data.clone()] }),
        ..Default::default()
    };
    let heart_c = Container {
        name: "heart".into(),
        image: Some(image.clone()),
        image_pull_policy: pull.clone(),
        command: Some(vec!["/usr/local/bin/tfs-operator".into()]),
        args: Some(vec!["heart".into(), format!("--name={name}")]),
        env: Some(
            [
                vec![field_env("POD_NAME", "metadata.name"), field_env("POD_NAMESPACE", "metadata.namespace")],
                settings_env,
            ]
            .concat(),
        ),
        env_from: Some(env_from),
        ports: Some(vec![ContainerPort {
            name: Some("heart-metrics".into()),
            container_port: HEART_METRICS_PORT,
            ..Default::default()
        }]),
        resources: Some(t.spec.pod.heart_resources.clone().unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("10m".into())),
                ("memory".into(), Quantity("16Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
            ..Default::default()
        })),
        security_context: Some(restricted()),
        ..Default::default()
    };
    // Volumes from provisioners that ignore fsGroup (hostPath) arrive owned by root: on request
    // (storage.ownership: Chown) an init container hands the data directory to the nameserver's
    // uid. The only container that may run as root, with CHOWN alone; by default there is none,
    // and the pod meets Pod Security `restricted`.
    let restore = restore::init_container(t, ordinal, &data);
    let prepare = (t.spec.storage.ownership == VolumeOwnership::Chown).then(|| Container {
        name: "prepare-data".into(),
        image: Some(image),
        image_pull_policy: pull,
        command: Some(vec!["/usr/local/bin/tfs-operator".into()]),
        args: Some(vec![
            "prepare-data".into(),
            "--dir=/data".into(),
            format!("--uid={RUN_AS}"),
            format!("--gid={RUN_AS}"),
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: Some(vec!["CHOWN".into()]) }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![data]),
        resources: t.spec.pod.init_resources.clone(),
        ..Default::default()
    });
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            service_account_name: Some(heart(&name)),
            image_pull_secrets: (!ps.image_pull_secrets.is_empty()).then(|| ps.image_pull_secrets.clone()),
            priority_class_name: ps.priority_class_name.clone(),
            node_selector: (!ps.node_selector.is_empty()).then(|| ps.node_selector.clone()),
            tolerations: (!ps.tolerations.is_empty()).then(|| ps.tolerations.clone()),
            affinity: Some(affinity(t)),
            topology_spread_constraints: Some(topology_spread(t)),
            termination_grace_period_seconds: Some(10),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                // A volume already owned by the group is not walked again at each start.
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                ..Default::default()
            }),
            // The volume is handed over first, then restored into (bootstrap.fromBackup).
            init_containers: Some(prepare.into_iter().chain(restore).collect::<Vec<_>>()).filter(|v| !v.is_empty()),
            containers: vec![nameserver, heart_c],
            volumes: Some(
                [Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: names::pvc(&name, ordinal),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
                .into_iter()
                .chain(tls.then(|| tls_volume(t, &pod_name)))
                .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's certificates, mounted at TLS_DIR: its Secret `<pod>-tls` (ca.crt, tls.*, vip.*) as
/// the operator issues it; with cert-manager (spec.tls.issuerRef), whose Secrets hold one pair
/// each, `<pod>-tls` (ca.crt, tls.*) and the VIP's `<name>-vip-tls` (as vip.*) projected into
/// the same directory — the same files for the nameserver, each half rotated atomically.
fn tls_volume(t: &TfsNameserver, pod_name: &str) -> Volume {
    if t.spec.tls.issuer_ref.is_none() {
        return Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::tls_secret(pod_name)),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    let items = |pairs: &[(&str, &str)]| {
        Some(pairs.iter().map(|(k, p)| KeyToPath { key: k.to_string(), path: p.to_string(), mode: None }).collect())
    };
    let source = |secret: String, pairs: &[(&str, &str)]| VolumeProjection {
        secret: Some(SecretProjection { name: secret, items: items(pairs), optional: Some(false) }),
        ..Default::default()
    };
    Volume {
        name: "tls".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                source(
                    names::tls_secret(pod_name),
                    &[("ca.crt", "ca.crt"), ("tls.crt", "tls.crt"), ("tls.key", "tls.key")],
                ),
                source(names::vip_tls_secret(&t.name_any()), &[("tls.crt", "vip.crt"), ("tls.key", "vip.key")]),
            ]),
        }),
        ..Default::default()
    }
}

/// Node label of the per-node spread, and of the per-zone one.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The instances of one resource, as anti-affinity and spread terms select them.
fn instances_selector(t: &TfsNameserver) -> LabelSelector {
    LabelSelector { match_labels: Some(selector(&t.name_any())), ..Default::default() }
}

/// `spec.placement` as pod anti-affinity between the instances of one resource (one per node:
/// required or preferred), merged with `spec.pod.affinity`: the user's node and pod affinity are
/// kept as they are, their anti-affinity terms follow ours.
pub fn affinity(t: &TfsNameserver) -> Affinity {
    let term = PodAffinityTerm {
        label_selector: Some(instances_selector(t)),
        topology_key: HOSTNAME_KEY.into(),
        ..Default::default()
    };
    let mut ours = match t.spec.placement {
        Placement::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
        Placement::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term,
            }]),
            ..Default::default()
        },
    };
    let mut a = t.spec.pod.affinity.clone().unwrap_or_default();
    if let Some(theirs) = a.pod_anti_affinity.take() {
        let required = theirs.required_during_scheduling_ignored_during_execution.unwrap_or_default();
        let preferred = theirs.preferred_during_scheduling_ignored_during_execution.unwrap_or_default();
        if !required.is_empty() {
            ours.required_during_scheduling_ignored_during_execution.get_or_insert_default().extend(required);
        }
        if !preferred.is_empty() {
            ours.preferred_during_scheduling_ignored_during_execution.get_or_insert_default().extend(preferred);
        }
    }
    a.pod_anti_affinity = Some(ours);
    a
}

/// The instances spread over zones, as evenly as the scheduler can without refusing a node
/// (ScheduleAnyway: a preference in scoring, never a reason to stay Pending). Where no node has
/// a zone label, it does nothing.
pub fn topology_spread(t: &TfsNameserver) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(instances_selector(t)),
        ..Default::default()
    }]
}

/// Whether a pod mounts its certificates (was made with TLS on).
pub fn pod_has_tls(p: &Pod) -> bool {
    p.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| v.iter().any(|v| v.name == "tls"))
}

/// The image a pod runs (to find pods left on an old image).
pub fn pod_image(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.containers.iter().find(|c| c.name == "nameserver")?.image.clone()
}

/// Why a pod must be replaced to run what the resource asks (image or settings), if it must.
pub fn pod_outdated(t: &TfsNameserver, p: &Pod) -> Option<&'static str> {
    let recorded = p.metadata.annotations.as_ref().and_then(|a| a.get(ANN_POD_SETTINGS));
    if pod_image(p).as_deref() != Some(t.spec.image.as_str()) {
        Some("image")
    } else if Settings::of_pod(p) != Some(Settings::of(t)) {
        Some("settings")
    } else if pod_has_tls(p) != t.spec.tls.enabled {
        Some("tls")
    } else if recorded.is_some_and(|r| *r != pod_settings(t)) {
        // (a pod made before the annotation existed is not rolled for it)
        Some("pod settings")
    } else {
        None
    }
}

/// What a pod was made with beyond image and settings (resources, spec.pod), as its annotation
/// records it: a change rolls the pods.
fn pod_settings(t: &TfsNameserver) -> String {
    let mut v = serde_json::json!({ "resources": t.spec.resources, "pod": t.spec.pod });
    // Only when set: pods made before spec.backup existed record no such key, and are not
    // rolled for an absent one.
    if let Some(b) = &t.spec.backup {
        v["backup"] = serde_json::json!(b);
    }
    v.to_string()
}

/// The version label of an image reference: its tag, when it has one (not a digest).
fn image_version(image: &str) -> Option<String> {
    let last = image.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    // Label values: at most 63 characters of [A-Za-z0-9._-].
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = tag.len() <= 63
        && edge(tag.chars().next())
        && edge(tag.chars().last())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    (ok && !image.contains('@')).then(|| tag.to_string())
}

#[cfg(test)]
pub(crate) mod tests;
