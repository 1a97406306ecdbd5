//! `kubectl tfs`: what the plugin shows and decides, without IO (the binary,
//! `src/bin/kubectl-tfs.rs`, only reads and writes objects). `status` is one screen of what a
//! user asks first during an incident — who is master, at which epoch, who could take over, how
//! far behind each instance is, on which node — from the resource, its Lease and its pods.

use std::fmt::Write;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tfs_nameserver::epoch::Epoch;

use crate::crd::{ClientAuth, ReplicationMode, TfsNameserver};
use crate::lease::LeaseView;

/// A duration in the way kubectl prints ages: 45s, 3m12s, 2h5m, 3d4h.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn since(t: Option<Timestamp>, now: Timestamp) -> Option<i64> {
    t.map(|t| now.as_second() - t.as_second())
}

/// `kubectl tfs status`: the resource, its Lease and pods, as of `now`.
pub fn status(t: &TfsNameserver, lease: Option<&Lease>, pods: &[Pod], now: Timestamp) -> String {
    let mut o = String::new();
    let ns = t.metadata.namespace.as_deref().unwrap_or("");
    let name = t.metadata.name.as_deref().unwrap_or("");
    let st = t.status.clone().unwrap_or_default();
    let phase = st.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "TfsNameserver {ns}/{name}: {phase}, {} ready, master {} at epoch {}",
        st.ready.as_deref().unwrap_or("-"),
        st.master.as_deref().filter(|m| !m.is_empty()).unwrap_or("(none)"),
        st.epoch.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
    );
    let spec = &t.spec;
    let tls = match (spec.tls.enabled, spec.tls.client_auth) {
        (false, _) => "off".to_string(),
        (true, ClientAuth::Required) => "on, client certificates required".into(),
        (true, ClientAuth::None) => "on".into(),
    };
    let _ = writeln!(
        o,
        "Replication {:?}, {} replicas, lease {}s (renew deadline {}s), TLS {tls}, image {}",
        spec.replication.mode,
        spec.replicas,
        spec.lease.duration_seconds,
        spec.lease.renew_deadline_seconds,
        spec.image
    );
    match lease {
        Some(l) => {
            let v = LeaseView::of(l);
            let renewed = since(l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0), now);
            let holder = if v.released() { "(released)".to_string() } else { v.holder.clone() };
            let _ = writeln!(
                o,
                "Lease: holder {holder}, epoch {}, renewed {} ago, sync set [{}]{}",
                v.epoch,
                renewed.map(age).unwrap_or_else(|| "never".into()),
                v.sync_set.join(", "),
                v.handover_refused.map(|r| format!(", handover refused: {r}")).unwrap_or_default()
            );
        }
        None => o.push_str("Lease: none yet\n"),
    }
    let last = since(st.last_failover_time.as_ref().map(|t| t.0), now)
        .map(|s| {
            format!(", last {} ago ({})", age(s), st.last_failover_reason.as_deref().unwrap_or("no reason recorded"))
        })
        .unwrap_or_default();
    let _ = writeln!(o, "Failovers: {}{last}", st.failovers);
    let ann = t.metadata.annotations.clone().unwrap_or_default();
    if let Some(to) = ann.get(crate::names::ANN_SWITCHOVER_TO) {
        let _ = writeln!(o, "Switchover asked to {to}");
    }
    if let Some(r) = ann.get(crate::names::ANN_REPLACE_INSTANCE) {
        let _ = writeln!(o, "Replacement asked of {r}");
    }
    if let Some(n) = ann.get(crate::names::ANN_CORDON_SWITCHOVER) {
        let _ = writeln!(o, "Switched over away from cordoned node(s): {n}");
    }

    let rows: Vec<[String; 10]> = st
        .instances
        .iter()
        .map(|i| {
            let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(i.name.as_str()));
            let ps = pod.and_then(|p| p.status.as_ref());
            let restarts: i32 = ps
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or(0);
            let master = i.role == "master";
            [
                i.name.clone(),
                i.role.clone(),
                if i.ready { "yes" } else { "no" }.into(),
                i.durable_seq.to_string(),
                if master { "-".into() } else { i.lag.to_string() },
                match (master, i.in_sync_set) {
                    (true, _) => "-",
                    (false, true) => "yes",
                    (false, false) => "no",
                }
                .into(),
                pod.and_then(|p| p.spec.as_ref()?.node_name.clone()).unwrap_or_else(|| "-".into()),
                ps.and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "-".into()),
                restarts.to_string(),
                since(pod.and_then(|p| p.metadata.creation_timestamp.as_ref()).map(|t| t.0), now)
                    .map(age)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    o.push('\n');
    o.push_str(&columns(
        &["INSTANCE", "ROLE", "READY", "DURABLE-SEQ", "LAG", "SYNC-SET", "NODE", "IP", "RESTARTS", "AGE"],
        &rows,
    ));
    if !st.conditions.is_empty() {
        o.push_str("\nConditions:\n");
        for c in &st.conditions {
            let msg = if c.message.is_empty() { String::new() } else { format!(": {}", c.message) };
            let _ = writeln!(o, "  {:<16} {:<6} {}{msg}", c.type_, c.status, c.reason);
        }
    }
    o
}

/// Left-aligned columns two spaces apart, as kubectl prints tables.
pub fn columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Where a switchover to `target` stands, from the Lease as it is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Switchover {
    /// `target` holds the Lease at an epoch above the one the switchover started from.
    Done {
        epoch: Epoch,
    },
    /// The master's heart refused the handover, and why.
    Refused(String),
    Pending,
}

/// `refused_before`: the Lease's handover-refused annotation when the switchover was asked for
/// (an older refusal stays on the Lease and must not be read as this one's).
pub fn switchover_progress(
    lease: &LeaseView,
    target: &str,
    from_epoch: Epoch,
    refused_before: Option<&str>,
) -> Switchover {
    if lease.holder == target && lease.epoch > from_epoch {
        return Switchover::Done { epoch: lease.epoch };
    }
    // The heart writes "<target>: <why>".
    match &lease.handover_refused {
        Some(r) if r.starts_with(&format!("{target}: ")) && Some(r.as_str()) != refused_before => {
            Switchover::Refused(r.clone())
        }
        _ => Switchover::Pending,
    }
}

/// Why a switchover to `target` cannot be asked for, judged from the status before asking.
pub fn switchover_refusal(t: &TfsNameserver, target: &str) -> Option<String> {
    let st = t.status.as_ref()?;
    if st.master.as_deref() == Some(target) {
        return Some(format!("{target} is already the master"));
    }
    match st.instances.iter().find(|i| i.name == target) {
        None => Some(not_an_instance(t, target)),
        Some(i) if t.spec.replication.mode == ReplicationMode::Sync && !i.in_sync_set => Some(format!(
            "{target} is not in the master's sync set: it may lack acknowledged writes, so the master would refuse"
        )),
        Some(_) => None,
    }
}

/// Why a replacement of `target` cannot be asked for, judged from the status before asking (the
/// operator checks the rest: the master serving, the node lost or the pod Pending, a free node).
pub fn replace_refusal(t: &TfsNameserver, target: &str) -> Option<String> {
    let st = t.status.as_ref()?;
    let name = t.metadata.name.as_deref().unwrap_or("");
    if st.master.as_deref() == Some(target) {
        return Some(format!(
            "{target} is the master: only a slave is replaced (switch over first: kubectl tfs switchover {name} <slave>)"
        ));
    }
    if !st.instances.iter().any(|i| i.name == target) {
        return Some(not_an_instance(t, target));
    }
    None
}

fn not_an_instance(t: &TfsNameserver, target: &str) -> String {
    let instances = t.status.iter().flat_map(|s| &s.instances).map(|i| i.name.as_str()).collect::<Vec<_>>();
    format!(
        "{target} is not an instance of {} (instances: {})",
        t.metadata.name.as_deref().unwrap_or(""),
        instances.join(", ")
    )
}

/// Where a replacement of an instance stands (`kubectl tfs replace`), from the resource and the
/// instance's pod as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// The operator has not acted on the request yet.
    Asked,
    /// The request is gone, and the old pod still there: refused (the `ReplaceRejected` Event says why).
    Refused,
    /// The request is gone, and the old pod with it: the operator deleted the claim and the pod.
    Deleted,
    /// A new pod, not bound to a node yet (the old claim still going, or no node found yet).
    Created,
    /// The new pod is on `node`: starting, being seeded from the master.
    Scheduled { node: String },
    /// The new instance is ready, a slave (in the sync set, in Sync mode).
    Ready { node: String },
}

/// `old_uid`: the instance's pod when the replacement was asked for (None if it had none).
pub fn replace_progress(t: &TfsNameserver, target: &str, old_uid: Option<&str>, pod: Option<&Pod>) -> Replacement {
    let asked = t.metadata.annotations.as_ref().and_then(|a| a.get(crate::names::ANN_REPLACE_INSTANCE))
        == Some(&target.to_string());
    let new = pod.filter(|p| old_uid.is_none() || p.metadata.uid.as_deref() != old_uid);
    if let Some(p) = new {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else {
            return Replacement::Created;
        };
        let sync = t.spec.replication.mode == ReplicationMode::Sync;
        let back = t.status.as_ref().is_some_and(|st| {
            st.instances.iter().any(|i| i.name == target && i.ready && i.role == "slave" && (!sync || i.in_sync_set))
        });
        return if back { Replacement::Ready { node } } else { Replacement::Scheduled { node } };
    }
    match (asked, pod.is_some()) {
        (true, _) => Replacement::Asked,
        (false, true) => Replacement::Refused,
        (false, false) => Replacement::Deleted,
    }
}

/// `kubectl tfs backup`: the TfsBackup's name, `<name>-<UTC time>` (such as demo-20261129-100000).
pub fn backup_name(name: &str, now: Timestamp) -> String {
    format!("{name}-{}", now.strftime("%Y%m%d-%H%M%S"))
}

/// One line of a TfsBackup's progress (what `kubectl tfs backup` prints when it changes), and
/// whether it is final (Some(true): completed, Some(false): failed).
pub fn backup_progress(s: Option<&crate::crd::TfsBackupStatus>) -> (String, Option<bool>) {
    use crate::crd::BackupPhase::*;
    let Some(s) = s else { return ("waiting for the operator".into(), None) };
    let msg = s.message.clone().unwrap_or_default();
    match s.phase.unwrap_or_default() {
        Pending => ("pending".into(), None),
        Running => (format!("running: {msg}"), None),
        Completed => (
            format!(
                "completed: seq {} (epoch {}), {} in {}",
                s.seq.unwrap_or(0),
                s.epoch.unwrap_or(0),
                s.size.as_deref().unwrap_or("?"),
                s.objects.join(", ")
            ),
            Some(true),
        ),
        Failed => (format!("failed: {msg}"), Some(false)),
    }
}

#[cfg(test)]
mod tests;
