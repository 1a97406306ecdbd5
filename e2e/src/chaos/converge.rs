//! Waiting for the system to heal itself after a fault: the resource Healthy with every instance
//! ready, the status agreeing with the Lease, the published sync set full again, and every
//! writer acknowledged again at the Lease's epoch. Bounded; on timeout, the diagnostics.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tfs_operator::crd::Phase;
use tfs_operator::lease::LeaseView;

use super::writer::BenchWriter;
use crate::{OPERATOR_NS, Tfs, bin, kubeconfig, now_ms, tfsctl};

#[derive(Debug, Clone)]
pub struct Converged {
    pub t_ms: u64,
    pub took: Duration,
    pub master: String,
    pub epoch: i64,
}

fn pod_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    p.metadata.deletion_timestamp.is_none()
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && st.and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| cs.iter().all(|c| c.ready))
}

/// The cluster side of convergence: `Ok((master, epoch))` when healthy, else what is missing.
async fn healthy(t: &Tfs, replicas: usize) -> Result<(String, i64), String> {
    let r = t.get().await.map_err(|e| format!("cannot read the TfsNameserver: {e}"))?;
    let s = r.status.unwrap_or_default();
    let l = t.leases.get(&t.name).await.map_err(|e| format!("cannot read the Lease: {e}"))?;
    let lv = LeaseView::of(&l);
    let pods = t
        .pods
        .list(&ListParams::default().labels(&tfs_operator::names::selector_string(&t.name)))
        .await
        .map_err(|e| format!("cannot list pods: {e}"))?
        .items;
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let want = format!("{replicas}/{replicas}");
    if s.phase != Some(Phase::Healthy) || s.ready.as_deref() != Some(want.as_str()) {
        return Err(format!("phase {:?}, ready {:?}", s.phase, s.ready));
    }
    if lv.holder.is_empty()
        || s.master.as_deref() != Some(lv.holder.as_str())
        || s.epoch != i64::try_from(lv.epoch.get()).ok()
    {
        return Err(format!("status says {:?}@{:?}, the Lease {}@{}", s.master, s.epoch, lv.holder, lv.epoch));
    }
    if lv.sync_set.len() + 1 < replicas {
        return Err(format!("published sync set {:?} not full", lv.sync_set));
    }
    if pods.len() != replicas || ready != replicas {
        return Err(format!("{ready} of {} pods ready", pods.len()));
    }
    // The operator too (a fault may have deleted it): the next fault needs it to fail over.
    let ops: Api<Pod> = Api::namespaced(t.pods.clone().into_client(), OPERATOR_NS);
    let ops = ops
        .list(&ListParams::default().labels("app.kubernetes.io/name=tfs-operator"))
        .await
        .map_err(|e| format!("cannot list operator pods: {e}"))?
        .items;
    if !ops.iter().any(pod_ready) {
        return Err("no operator pod ready".into());
    }
    Ok((lv.holder, i64::try_from(lv.epoch.get()).map_err(|e| e.to_string())?))
}

/// Waits until healthy and, while it stays so, every writer acknowledged `min_acks` more writes
/// at the Lease's epoch.
pub async fn converge(
    t: &Tfs,
    replicas: usize,
    writers: &mut [BenchWriter],
    timeout: Duration,
    min_acks: u64,
) -> Result<Converged> {
    let start = Instant::now();
    let mut baseline: Option<Vec<u64>> = None;
    let mut last;
    loop {
        for w in writers.iter_mut() {
            w.check_running()?;
            w.tail.poll()?;
        }
        match healthy(t, replicas).await {
            Ok((master, epoch)) => {
                let b = baseline.get_or_insert_with(|| writers.iter().map(|w| w.tail.lines).collect());
                let behind: Vec<String> = writers
                    .iter()
                    .zip(b.iter())
                    .filter(|(w, b)| w.tail.lines < *b + min_acks || w.tail.last_epoch != epoch as u64)
                    .map(|(w, b)| {
                        format!("{} {} new acks, last at epoch {}", w.name, w.tail.lines - b, w.tail.last_epoch)
                    })
                    .collect();
                if behind.is_empty() {
                    return Ok(Converged { t_ms: now_ms(), took: start.elapsed(), master, epoch });
                }
                last = format!("healthy ({master}@{epoch}), writers not yet: {}", behind.join("; "));
            }
            Err(why) => {
                baseline = None;
                last = why;
            }
        }
        if start.elapsed() > timeout {
            bail!("did not converge within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Container restarts so far, per pod and container (a container restarted many times waits out
/// the kubelet's crash-loop back-off before its next start).
pub async fn restarts(t: &Tfs) -> serde_json::Value {
    let pods = t.pods.list(&ListParams::default().labels(&tfs_operator::names::selector_string(&t.name))).await;
    let mut m = serde_json::Map::new();
    for p in pods.map(|l| l.items).unwrap_or_default() {
        let counts: serde_json::Map<String, serde_json::Value> = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.restart_count.into()))
            .collect();
        m.insert(p.metadata.name.unwrap_or_default(), counts.into());
    }
    m.into()
}

fn capture(cmd: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).env("KUBECONFIG", kubeconfig()).output();
    match out {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("cannot run {}: {e}\n", cmd.display()),
    }
}

/// What an operator would look at: resources, the Lease, events, operator/heart/nameserver logs,
/// each nameserver's own status, the writers' logs.
pub fn diagnostics(ns: &str, name: &str, pods: &[(String, String)], writers: &[BenchWriter]) -> String {
    let k = bin("kubectl");
    let mut s = String::new();
    let mut section = |title: String, body: String| {
        s.push_str(&format!("==== {title}\n{body}\n"));
    };
    section("tfsns,pods,lease".into(), capture(&k, &["get", "tfsns,pods,lease", "-o", "wide", "-n", ns]));
    section("lease".into(), capture(&k, &["get", "lease", name, "-n", ns, "-o", "yaml"]));
    section("status".into(), capture(&k, &["get", "tfsns", name, "-n", ns, "-o", "jsonpath={.status}"]));
    section(
        "events".into(),
        capture(&k, &["get", "events", "-n", ns, "--sort-by=.lastTimestamp", "-o", "wide"])
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    section(
        "operator log".into(),
        capture(&k, &["logs", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=tfs-operator", "--tail=80", "--prefix"]),
    );
    for (pod, ip) in pods {
        for c in ["heart", "nameserver"] {
            section(format!("{pod} {c} log"), capture(&k, &["logs", "-n", ns, pod, "-c", c, "--tail=40"]));
        }
        if !ip.is_empty() {
            let addr = format!("{ip}:{}", tfs_operator::names::CLIENT_PORT);
            section(format!("{pod} tfsctl status"), capture(&tfsctl(), &["--addr", &addr, "status"]));
        }
    }
    for w in writers {
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        section(format!("writer {} log", w.name), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    s
}
