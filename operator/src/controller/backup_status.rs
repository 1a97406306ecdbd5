//! spec.backup and spec.bootstrap.fromBackup in the status: `status.backup` and the
//! `BackupHealthy` condition from what the master reports of its archive, the `Restored`
//! condition from instance 0's restore container and the first master, their Events on
//! transitions, and the first-master rule of a restore handed to the failover decision.
//! The mapping is pure (tested in backup_status/tests.rs); `report` publishes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::warn;

use crate::build::restore::{self, Progress};
use crate::crd::{ArchivedCheckpoint, BackupStatus, TfsNameserver, TfsNameserverStatus};
use crate::failover::RestoreFirst;
use crate::instance::{Archive, Instance};
use crate::lease::LeaseView;
use crate::names;

use super::Context;
use super::events::event;
use super::status::{condition, condition_of};

/// Beyond this lag the archive is not healthy: three upload timeouts and 5 s.
pub fn lag_limit(t: &TfsNameserver) -> Duration {
    let timeout = t.spec.backup.as_ref().map(|b| b.timeout()).unwrap_or(Duration::from_secs(10));
    timeout * 3 + Duration::from_secs(5)
}

/// The first-master rule while a restore is pending (failover.rs `RestoreFirst`): instance 0,
/// above the highest epoch its restored log is known to hold — named by the restore's message,
/// or by the nameserver refusing a promotion ("records of epoch N are already logged", which its
/// heart writes as the Lease's release reason).
pub fn restore_first(t: &TfsNameserver, pods: &[Pod], lv: &LeaseView) -> Option<RestoreFirst> {
    if !restore::pending(t) {
        return None;
    }
    let pod = names::pod(&t.name_any(), 0);
    let said = pods.iter().find(|p| p.name_any() == pod).and_then(restore::progress).and_then(|p| match p {
        Progress::Done(m) => restore::epoch_named(&m),
        _ => None,
    });
    let refused = lv
        .release_reason
        .as_deref()
        .filter(|r| lv.released_by.as_deref() == Some(pod.as_str()) && r.contains("refused mastership"))
        .and_then(restore::epoch_named);
    Some(RestoreFirst { pod, epoch_floor: said.unwrap_or(0).max(refused.unwrap_or(0)) })
}

fn unix_ms(ms: i64) -> Option<Time> {
    (ms > 0).then(|| Timestamp::from_millisecond(ms).ok().map(Time)).flatten()
}

/// `status.backup` from the master's report; the previous one while the master says nothing.
pub fn backup_status(
    t: &TfsNameserver,
    prev: Option<&BackupStatus>,
    master: &str,
    archive: Option<&Archive>,
) -> Option<BackupStatus> {
    t.spec.backup.as_ref()?;
    let Some(a) = archive else { return prev.cloned() };
    Some(BackupStatus {
        master: Some(master.to_string()),
        last_archived_seq: a.archived_seq as i64,
        archive_lag: Some(format!("{:.1}s", a.lag_ms as f64 / 1000.0)),
        last_checkpoint_archived: (!a.last_checkpoint_object.is_empty()).then(|| ArchivedCheckpoint {
            seq: a.last_checkpoint_seq as i64,
            object: a.last_checkpoint_object.clone(),
            time: unix_ms(a.last_checkpoint_unix_ms),
        }),
        last_error: (!a.last_error.is_empty()).then(|| a.last_error.clone()),
    })
}

/// `BackupHealthy` (None without spec.backup): True while the master archives with no error
/// since its last success and a lag under `lag_limit`; False with the error or the lag; Unknown
/// while no master reports an archive (none serving, or its pod still runs without spec.backup).
pub fn backup_condition(
    t: &TfsNameserver,
    prev: &[Condition],
    master: Option<&str>,
    archive: Option<&Archive>,
) -> Option<Condition> {
    let b = t.spec.backup.as_ref()?;
    let g = t.metadata.generation;
    if let Err(e) = b.validate() {
        return Some(condition(prev, "BackupHealthy", false, "InvalidSpec", e, g));
    }
    let Some(master) = master.filter(|m| !m.is_empty()) else {
        let m = "no master: nothing is archived until one serves".to_string();
        return Some(condition_of(prev, "BackupHealthy", "Unknown", "NoMaster", m, g));
    };
    let Some(a) = archive else {
        let m = format!("the master {master} does not report an archive (its pod may predate spec.backup: rolling)");
        return Some(condition_of(prev, "BackupHealthy", "Unknown", "NotArchiving", m, g));
    };
    let lag = Duration::from_millis(a.lag_ms);
    let limit = lag_limit(t);
    Some(if !a.last_error.is_empty() {
        let when = unix_ms(a.last_error_unix_ms).map(|t| format!(" (at {})", t.0)).unwrap_or_default();
        let m = format!("the master {master} fails to archive to {}{when}: {}", a.url, a.last_error);
        condition(prev, "BackupHealthy", false, "ArchiveFailing", m, g)
    } else if lag >= limit {
        let m = format!(
            "the master {master} archives {:.1}s behind (limit {}s: 3 x archiveTimeout + 5s); archived through seq {}",
            lag.as_secs_f64(),
            limit.as_secs(),
            a.archived_seq
        );
        condition(prev, "BackupHealthy", false, "ArchiveLagging", m, g)
    } else {
        let m = format!(
            "the master {master} archives to {}: through seq {}, lag {:.1}s",
            a.url,
            a.archived_seq,
            lag.as_secs_f64()
        );
        condition(prev, "BackupHealthy", true, "Archiving", m, g)
    })
}

/// `Restored` (None without bootstrap.fromBackup): True once instance 0 is the master — the
/// restore is then done for good (kept as it was); False Restoring while its restore container
/// waits or runs, or it has yet to be made master; False RestoreFailed with the container's
/// termination message (which names the object or seq) once a run failed, also while it is
/// retried, nothing promoted meanwhile.
pub fn restored_condition(
    t: &TfsNameserver,
    prev: &[Condition],
    pod0: Option<&Pod>,
    lv: &LeaseView,
    instances: &[Instance],
) -> Option<Condition> {
    let fb = t.spec.bootstrap.as_ref()?.from_backup.as_ref()?;
    let g = t.metadata.generation;
    if let Some(done) = prev.iter().find(|c| c.type_ == "Restored" && c.status == "True") {
        return Some(done.clone());
    }
    let name = t.name_any();
    let first = names::pod(&name, 0);
    let url = fb.object_store.url(&t.namespace().unwrap_or_default(), &name);
    let serving = instances
        .iter()
        .find(|x| x.pod == first)
        .and_then(|x| x.status.as_ref())
        .filter(|s| s.master && s.writable && lv.holder == first);
    if let Some(s) = serving {
        let m = format!("{first} was restored from {url} and is master at epoch {}, at seq {}", s.epoch, s.durable_seq);
        return Some(condition(prev, "Restored", true, "Restored", m, g));
    }
    if let Err(e) = fb.target() {
        return Some(condition(prev, "Restored", false, "InvalidSpec", e, g));
    }
    let (reason, m) = match pod0.and_then(restore::progress) {
        Some(Progress::Failed(why)) => {
            ("RestoreFailed", format!("restoring {first} from {url} failed (it is retried): {}", why.trim()))
        }
        Some(Progress::Running) => ("Restoring", format!("{first} is restoring from {url}")),
        Some(Progress::Done(_)) => {
            ("Restoring", format!("{first} restored from {url}; waiting for it to serve and be made the first master"))
        }
        Some(Progress::Waiting) | None => ("Restoring", format!("waiting for {first} to restore from {url}")),
    };
    Some(condition(prev, "Restored", false, reason, m, g))
}

/// The Events of a condition's transition: `(type, reason, note)` for the new condition against
/// the previous ones. BackupFailed when BackupHealthy turns False, BackupHealthy when it turns
/// True again (not at first: a healthy start is no news); RestoreFailed when Restored turns to
/// that reason, Restored when it turns True.
pub fn transition_event(prev: &[Condition], c: &Condition) -> Option<(EventType, &'static str)> {
    let before = prev.iter().find(|p| p.type_ == c.type_);
    let changed = before.is_none_or(|p| p.status != c.status || p.reason != c.reason);
    if !changed {
        return None;
    }
    match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
        ("BackupHealthy", "False", _) if before.is_none_or(|p| p.status != "False") => {
            Some((EventType::Warning, "BackupFailed"))
        }
        ("BackupHealthy", "True", _) if before.is_some_and(|p| p.status == "False") => {
            Some((EventType::Normal, "BackupHealthy"))
        }
        ("Restored", "False", "RestoreFailed") => Some((EventType::Warning, "RestoreFailed")),
        ("Restored", "True", _) => Some((EventType::Normal, "Restored")),
        _ => None,
    }
}

/// Fills `status.backup` and the BackupHealthy and Restored conditions of `new`, publishes the
/// Events of their transitions, and sets the backup gauges.
pub async fn report(
    t: &TfsNameserver,
    ctx: &Context,
    prev: &TfsNameserverStatus,
    new: &mut TfsNameserverStatus,
    lv: &LeaseView,
    instances: &[Instance],
    pods: &[Pod],
) {
    let master = (!lv.holder.is_empty()).then_some(lv.holder.as_str());
    let archive = instances
        .iter()
        .find(|x| Some(x.pod.as_str()) == master)
        .and_then(|x| x.status.as_ref())
        .filter(|s| s.master)
        .and_then(|s| s.archive.as_ref());
    new.backup = backup_status(t, prev.backup.as_ref(), master.unwrap_or(""), archive);
    let pod0 = pods.iter().find(|p| p.name_any() == names::pod(&t.name_any(), 0));
    let conditions = [
        backup_condition(t, &prev.conditions, master, archive),
        restored_condition(t, &prev.conditions, pod0, lv, instances),
    ];
    for c in conditions.into_iter().flatten() {
        if let Some((type_, reason)) = transition_event(&prev.conditions, &c) {
            if type_ == EventType::Warning {
                warn!(name = %t.name_any(), reason, message = %c.message, "backup");
            }
            event(ctx, t, type_, reason, "Backup", &c.message).await;
        }
        new.conditions.push(c);
    }
    let (ns, name) = (t.namespace().unwrap_or_default(), t.name_any());
    match new.conditions.iter().find(|c| c.type_ == "BackupHealthy") {
        Some(c) => ctx.metrics.observe_backup(
            &ns,
            &name,
            c.status == "True",
            archive.map(|a| a.lag_ms as f64 / 1000.0),
            new.backup.as_ref().map(|b| b.last_archived_seq),
        ),
        None => ctx.metrics.forget_backup(&ns, &name),
    }
}

#[cfg(test)]
mod tests;
