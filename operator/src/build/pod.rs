//! The instance's pod: its containers (nameserver, heart, the restore init container), their
//! probes, environment, volumes and security context; and reading back from a pod what it was made
//! with, to know when it must be replaced (a roll).
//!
//! Invariant: every pod records what it runs (image, settings, resources and spec.pod): a pod whose
//! record differs from the resource is outdated and is rolled, one at a time, by the controller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::crd::{ClientAuth, TfsNameserver, VolumeOwnership};
use crate::names::{self, *};
use crate::settings::{ANN_SETTINGS, Settings};

use super::placement::{affinity, topology_spread};
use super::{RUN_AS, archive, config_map_name, meta, restore};

pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Non-root, read-only root filesystem, no capabilities, no privilege escalation.
pub(super) fn restricted() -> SecurityContext {
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

pub(super) fn health_probe(period: i32, failures: i32) -> Probe {
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
pub(super) fn tls_volume(t: &TfsNameserver, pod_name: &str) -> Volume {
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
pub(super) fn pod_settings(t: &TfsNameserver) -> String {
    let mut v = serde_json::json!({ "resources": t.spec.resources, "pod": t.spec.pod });
    // Only when set: pods made before spec.backup existed record no such key, and are not
    // rolled for an absent one.
    if let Some(b) = &t.spec.backup {
        v["backup"] = serde_json::json!(b);
    }
    v.to_string()
}

/// The version label of an image reference: its tag, when it has one (not a digest).
pub(super) fn image_version(image: &str) -> Option<String> {
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
