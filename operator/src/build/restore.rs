//! `spec.bootstrap.fromBackup`: instance 0's pod restores the archive into its empty volume
//! before the nameserver starts (an init container running `tfsctl backup restore --if-empty`:
//! a volume that already holds data is left alone, so a restarted pod restores nothing again).
//! The other instances start empty and are seeded from the master, as always.

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};

use super::archive;
use crate::crd::{RestoreTarget, TfsNameserver};

/// The init container's name (the Restored condition reads its state by it).
pub const RESTORE_CONTAINER: &str = "restore";

/// Whether the restore is still to be done: asked for, and the status does not say Restored
/// True yet (an instance 0 made again afterwards — replaced on a new volume — starts empty and
/// is seeded from the master like any other).
pub fn pending(t: &TfsNameserver) -> bool {
    let asked = t.spec.bootstrap.as_ref().is_some_and(|b| b.from_backup.is_some());
    let done =
        t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Restored" && c.status == "True"));
    asked && !done
}

/// The restore init container of instance `ordinal`'s pod: only instance 0, only while the
/// restore is pending. Same image and security context as the nameserver, the data volume at the
/// same path; on failure its termination message (the tool's reason, or the log's tail) is what
/// the Restored condition shows.
pub fn init_container(t: &TfsNameserver, ordinal: usize, data: &VolumeMount) -> Option<Container> {
    if ordinal != 0 || !pending(t) {
        return None;
    }
    let fb = t.spec.bootstrap.as_ref()?.from_backup.as_ref()?;
    let target = match fb.target() {
        Ok(RestoreTarget::Seq(s)) => format!("--target-seq={s}"),
        Ok(RestoreTarget::Time(ts)) => format!("--target-time={ts}"),
        // `latest`, and what admission would have refused: the most the archive holds.
        Ok(RestoreTarget::Latest) | Err(_) => "--latest".into(),
    };
    let mut args = vec!["backup".to_string(), "restore".into()];
    args.extend(archive::location_args(t, &fb.object_store));
    args.extend([format!("--data-dir={}", data.mount_path), target, "--if-empty".into()]);
    Some(Container {
        name: RESTORE_CONTAINER.into(),
        image: Some(t.spec.image.clone()),
        image_pull_policy: Some(t.spec.image_pull_policy.clone()),
        command: Some(vec!["/usr/local/bin/tfsctl".into()]),
        args: Some(args),
        env: Some(archive::credentials_env(&fb.object_store)),
        security_context: Some(super::restricted()),
        volume_mounts: Some(vec![data.clone()]),
        resources: t.spec.pod.init_resources.clone(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    })
}

/// The restore container's state in instance 0's pod, for the Restored condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No pod yet, or not started.
    Waiting,
    Running,
    /// Exited 0 (termination message, if any).
    Done(String),
    /// Exited non-zero (its termination message), maybe now waiting to run again or running again.
    Failed(String),
}

/// What instance 0's pod says of its restore container (None: the pod has none).
pub fn progress(pod: &Pod) -> Option<Progress> {
    let has = pod.spec.as_ref()?.init_containers.as_ref()?.iter().any(|c| c.name == RESTORE_CONTAINER);
    if !has {
        return None;
    }
    let st = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|v| v.iter().find(|c| c.name == RESTORE_CONTAINER));
    let Some(st) = st else { return Some(Progress::Waiting) };
    let message = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
        t.message.clone().filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
            format!("exit code {}{}", t.exit_code, t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())
        })
    };
    let state = st.state.as_ref();
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return Some(if t.exit_code == 0 {
            Progress::Done(t.message.clone().unwrap_or_default())
        } else {
            Progress::Failed(message(t))
        });
    }
    // After a failed run, waiting to run again (back-off) or running again: the last run's
    // message. A retry does not make the failure news again; one that succeeds ends Done above.
    if let Some(t) = st.last_state.as_ref().and_then(|s| s.terminated.as_ref()).filter(|t| t.exit_code != 0) {
        return Some(Progress::Failed(message(t)));
    }
    if state.is_some_and(|s| s.running.is_some()) {
        return Some(Progress::Running);
    }
    Some(Progress::Waiting)
}

/// An epoch named in a text ("... epoch 7 ...", "epoch=7"): the restore tool's message, or the
/// nameserver's refusal "records of epoch 7 are already logged". The highest one wins.
pub fn epoch_named(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let mut best = None;
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("epoch") {
        rest = &rest[i + "epoch".len()..];
        let after = rest.trim_start_matches([' ', '=', ':']);
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse::<u64>() {
            best = best.max(Some(n));
        }
    }
    best
}
