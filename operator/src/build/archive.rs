//! `spec.backup` as the nameserver container runs it: the `--archive*` flags, and the store's
//! credentials as environment from the Secret (never copied into the pod spec). Every instance
//! gets them: only the master archives, and any instance may become master.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use crate::crd::{BackupSpec, ObjectStore, TfsNameserver};
use kube::ResourceExt;

/// The archive's location flags (shared with the restore command): `--archive`,
/// `--archive-endpoint`, `--archive-region`.
pub fn location_args(t: &TfsNameserver, store: &ObjectStore) -> Vec<String> {
    let (ns, name) = (t.namespace().unwrap_or_default(), t.name_any());
    vec![
        format!("--archive={}", store.url(&ns, &name)),
        format!("--archive-endpoint={}", store.endpoint),
        format!("--archive-region={}", store.region),
    ]
}

/// The nameserver's flags for `spec.backup` (none without it).
pub fn args(t: &TfsNameserver) -> Vec<String> {
    let Some(b) = &t.spec.backup else { return Vec::new() };
    let mut v = location_args(t, &b.object_store);
    v.extend(timing_args(b));
    v
}

fn timing_args(b: &BackupSpec) -> Vec<String> {
    vec![
        format!("--archive-timeout={}", b.archive_timeout),
        format!("--archive-checkpoint-every={}", b.checkpoint_every),
        format!("--archive-retention={}", b.retention),
    ]
}

/// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the store's Secret (secretKeyRef).
pub fn credentials_env(store: &ObjectStore) -> Vec<EnvVar> {
    let c = &store.credentials_secret;
    let from = |var: &str, key: &str| EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: c.name.clone(), key: key.into(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![from("AWS_ACCESS_KEY_ID", &c.access_key_id_key), from("AWS_SECRET_ACCESS_KEY", &c.secret_access_key_key)]
}

/// The nameserver's environment for `spec.backup` (none without it).
pub fn env(t: &TfsNameserver) -> Vec<EnvVar> {
    t.spec.backup.as_ref().map(|b| credentials_env(&b.object_store)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
