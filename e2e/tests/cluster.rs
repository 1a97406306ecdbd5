//! End to end on the real local cluster: the chart, a TfsNameserver, writes through the VIP, every
//! kind of failover under a recording writer, scaling, and a clean uninstall.
//! Run with `make e2e` (one test at a time: they share the cluster's two cores).

use std::sync::OnceLock;
use std::time::Duration;

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use tfs_e2e::*;

static OPERATOR: OnceLock<()> = OnceLock::new();

fn operator() {
    OPERATOR.get_or_init(|| ensure_operator().expect("helm install of the operator chart"));
}

async fn healthy_pair(scenario: &str) -> Result<(Namespace, Tfs)> {
    healthy_pair_with(scenario, "").await
}

/// A healthy pair of the example with `more_spec` in its spec (see [`demo_manifest`]).
async fn healthy_pair_with(scenario: &str, more_spec: &str) -> Result<(Namespace, Tfs)> {
    operator();
    let ns = Namespace::create(scenario)?;
    let c = client().await?;
    let t = Tfs::create_with(&c, &ns.0, "demo", 2, more_spec).await?;
    t.wait_healthy(2, 1, Duration::from_secs(120)).await?;
    t.wait_sync_set(1, Duration::from_secs(60)).await?;
    Ok((ns, t))
}

/// A healthy pair with a recording writer through the VIP that has 1,000 acknowledgements.
async fn loaded_pair(scenario: &str) -> Result<(Namespace, Tfs, String, Writer)> {
    let (ns, t) = healthy_pair(scenario).await?;
    let vip = t.vip().await?;
    let w = Writer::start(&vip, &tempdir(scenario)?, 16)?;
    w.wait_acked(1000, Duration::from_secs(60)).await?;
    Ok((ns, t, vip, w))
}

/// Waits (60 s at most) until another instance than `master` holds the Lease at a newer epoch.
async fn another_master(t: &Tfs, (master, epoch): (&str, u64), after: &str) -> Result<(String, u64)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (m, e) = t.lease().await?;
        if e > epoch && m != master {
            return Ok((m, e));
        }
        ensure!(std::time::Instant::now() < deadline, "no new master within 60 s of {after} (master {master}@{epoch})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Largest gap between consecutive acknowledgements after the fault: the write outage.
fn outage_ms(record: &std::path::Path, fault_ms: u64) -> u64 {
    let mut acks: Vec<u64> = Writer::acks(record).iter().map(|a| a.acked_ms).collect();
    acks.sort();
    let mut prev = fault_ms;
    let mut worst = 0;
    for a in acks.into_iter().filter(|a| *a > fault_ms) {
        worst = worst.max(a - prev);
        prev = a;
    }
    worst
}

enum Fault {
    PodLoss,
    Kill9,
    Heart,
    Switchover,
    Kill9WithOperatorRestart,
    /// SIGSTOP of the master's nameserver for longer than the lease, then SIGCONT.
    Freeze,
}

async fn failover(scenario: &str, fault: Fault) -> Result<()> {
    failover_with(scenario, fault, "").await
}

async fn failover_with(scenario: &str, fault: Fault, more_spec: &str) -> Result<()> {
    let (ns, t) = healthy_pair_with(scenario, more_spec).await?;
    let vip = t.vip().await?;
    let dir = tempdir(scenario)?;
    let w = Writer::start(&vip, &dir, 16)?;
    w.wait_acked(2000, Duration::from_secs(60)).await?;
    let (master, epoch) = t.lease().await?;
    let slave = t.pod_names().await?.into_iter().find(|p| *p != master).expect("a slave");
    let fault_ms = now_ms();
    match fault {
        Fault::PodLoss => {
            kubectl(&["delete", "pod", &master, "-n", &ns.0, "--grace-period=0", "--force"])?;
        }
        Fault::Kill9 => kill9(container_pid(&ns.0, &master, "nameserver")?)?,
        Fault::Heart => kill9(container_pid(&ns.0, &master, "heart")?)?,
        Fault::Switchover => {
            // As a user would: the kubectl plugin asks, waits and prints the outcome.
            let out = kubectl(&["tfs", "switchover", "demo", &slave, "-n", &ns.0])?;
            print!("scenario={scenario} kubectl tfs switchover:\n{out}");
            ensure!(out.contains(&format!("{slave} is master at epoch")), "kubectl tfs switchover: {out}");
        }
        Fault::Freeze => {
            let pid = container_pid(&ns.0, &master, "nameserver")?;
            signal(pid, "STOP")?;
            tokio::time::sleep(Duration::from_secs(8)).await;
            let _ = signal(pid, "CONT"); // the kubelet's liveness probe may have restarted it already
        }
        Fault::Kill9WithOperatorRestart => {
            kill9(container_pid(&ns.0, &master, "nameserver")?)?;
            kubectl(&[
                "delete",
                "pod",
                "-n",
                OPERATOR_NS,
                "-l",
                "app.kubernetes.io/name=tfs-operator",
                "--grace-period=0",
                "--force",
            ])?;
        }
    }
    let expect_new_master = !matches!(fault, Fault::Heart);
    let after = t
        .wait_healthy(2, if expect_new_master { epoch as i64 + 1 } else { epoch as i64 }, Duration::from_secs(90))
        .await?;
    let status = after.status.clone().unwrap_or_default();
    let new_epoch = status.epoch.unwrap_or(0) as u64;
    let acked_before = w.acked();
    w.wait_acked(acked_before + 1000, Duration::from_secs(60)).await?;
    // Give the client that keeps its connection time to get there (measured below), if it has not.
    let keep = dir.join(HISTORIES[1]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while expect_new_master
        && Writer::first_op_after(&keep, fault_ms, new_epoch).is_none()
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let outage = outage_ms(&record, fault_ms);
    let first = Writer::first_ack_after(&record, fault_ms, new_epoch);
    println!(
        "scenario={scenario} master={master}@{epoch} -> {}@{new_epoch} failover_s={:.3} max_write_gap_s={:.3} failed_requests={failed}\n{verdict}",
        status.master.as_deref().unwrap_or("?"),
        first.unwrap_or(outage) as f64 / 1000.0,
        outage as f64 / 1000.0
    );
    // Clean demotion: the client that never dials on its own reaches the new master about when
    // the VIP moved (the first answer of the new epoch to any client).
    let [redial, keep] = HISTORIES.map(|h| Writer::first_op_after(&dir.join(h), fault_ms, new_epoch));
    let vip_moved = [first, redial].into_iter().flatten().min();
    println!(
        "scenario={scenario} new_epoch_first_answer_ms: redialing_client={redial:?} kept_connection={keep:?} vip_moved={vip_moved:?}"
    );
    if expect_new_master {
        let (Some(k), Some(v)) = (keep, vip_moved) else {
            bail!("the client keeping its connection never reached epoch {new_epoch} ({keep:?}, {vip_moved:?})");
        };
        println!("scenario={scenario} kept_connection_lag_after_vip_move_ms={}", k.saturating_sub(v));
        ensure!(
            k <= v + 1000,
            "the client keeping its connection reached the new master {} ms after the VIP moved",
            k - v
        );
        ensure!(new_epoch > epoch, "epoch did not move: {epoch} -> {new_epoch}");
        if !matches!(fault, Fault::Switchover) {
            ensure!(status.failovers >= 1, "failover not counted in status");
        }
    }
    // No split brain: the old epoch acknowledged nothing after the new one started.
    let (last_old, first_new) = epoch_windows(&record, epoch, new_epoch);
    if let (Some(o), Some(n)) = (last_old, first_new) {
        println!(
            "scenario={scenario} last_ack_epoch{epoch}_ms={} first_ack_epoch{new_epoch}_ms={}",
            o.saturating_sub(fault_ms),
            n.saturating_sub(fault_ms)
        );
        if matches!(fault, Fault::Freeze) {
            ensure!(o < n, "epoch {epoch} acknowledged a write at {o} after epoch {new_epoch} did at {n}");
        }
    }
    if matches!(fault, Fault::Switchover) {
        ensure!(
            status.master.as_deref() == Some(slave.as_str()),
            "switchover went to {:?}, not {slave}",
            status.master
        );
        ensure!(failed == 0, "{failed} requests failed during a planned switchover");
        let ann = after.metadata.annotations.unwrap_or_default();
        ensure!(!ann.contains_key("tfs.io/switchover-to"), "switchover annotation not cleared");
    }
    drop(ns);
    Ok(())
}

/// (last ack of `old`, first ack of `new`), unix ms.
fn epoch_windows(record: &std::path::Path, old: u64, new: u64) -> (Option<u64>, Option<u64>) {
    let mut last_old = None;
    let mut first_new: Option<u64> = None;
    for a in Writer::acks(record) {
        let (e, t) = (a.epoch, a.acked_ms);
        if e == old {
            last_old = last_old.max(Some(t));
        } else if e == new {
            first_new = Some(first_new.map_or(t, |x| x.min(t)));
        }
    }
    (last_old, first_new)
}

/// When the last write acknowledged at `epoch` was sent.
fn last_sent_at(record: &std::path::Path, epoch: u64) -> Option<u64> {
    Writer::acks(record).iter().filter(|a| a.epoch == epoch).map(|a| a.sent_ms).max()
}

fn tempdir(scenario: &str) -> Result<std::path::PathBuf> {
    let d = root().join(".e2e/runs").join(format!("{scenario}-{}", now_ms()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A JSON merge patch of the TfsNameserver `demo` in `ns`.
fn patch_demo(ns: &str, patch: &str) -> Result<String> {
    kubectl(&["patch", "tfsns", "demo", "-n", ns, "--type=merge", "-p", patch])
}

/// Asks the live API server's authorizer, as service account `sa` in namespace `ns`, each query of
/// `allowed` and `forbidden` (`kubectl auth can-i` arguments: "<verb> <resource>[/<name>] [flags]").
fn least_privilege(sa: &str, ns: &str, allowed: &[&str], forbidden: &[&str]) -> Result<()> {
    // `kubectl auth can-i` answers yes (exit 0) or no (exit 1); anything else is an error, so a
    // refusal can never pass because the check itself failed.
    let can = |query: &str| -> Result<bool> {
        let out = std::process::Command::new(bin("kubectl"))
            .args(["auth", "can-i"])
            .args(query.split_whitespace())
            .args(["-n", ns, "--as", sa])
            .env("KUBECONFIG", kubeconfig())
            .output()?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => anyhow::bail!("kubectl auth can-i {query}: {other:?} {}", String::from_utf8_lossy(&out.stderr)),
        }
    };
    for q in allowed {
        ensure!(can(q)?, "{sa} may not {q}, which it needs");
    }
    for q in forbidden {
        ensure!(!can(q)?, "{sa} may {q}: more than it needs");
    }
    Ok(())
}

#[tokio::test]
async fn t1_demo_is_healthy_and_serves_through_the_vip() -> Result<()> {
    let (ns, t) = healthy_pair("demo").await?;
    let st = t.get().await?.status.unwrap_or_default();
    let (holder, epoch) = t.lease().await?;
    ensure!(
        st.master.as_deref() == Some(holder.as_str()) && st.epoch == Some(epoch as i64),
        "status {st:?} vs lease {holder}@{epoch}"
    );
    // `helm test`: the chart's own check that the operator answers (health and reconciles).
    // (The test pod is deleted once it succeeded, so its log is not asked for.)
    let test = run(&bin("helm"), &["test", "tfs", "-n", OPERATOR_NS, "--timeout", "90s"])?;
    let test = String::from_utf8_lossy(&test.stdout).to_string();
    ensure!(test.contains("Phase:          Succeeded"), "helm test: {test}");
    // The kubectl plugin's status: master, epoch, and a row per instance with its node.
    let plugin = kubectl(&["tfs", "status", "demo", "-n", &ns.0])?;
    print!("scenario=demo kubectl tfs status:\n{plugin}");
    ensure!(plugin.contains(&format!("master {holder} at epoch {epoch}")), "kubectl tfs status: {plugin}");
    for i in &st.instances {
        let row = plugin.lines().find(|l| l.starts_with(&format!("{} ", i.name))).unwrap_or_default();
        let role = row.split_whitespace().nth(1).unwrap_or_default();
        ensure!(role == i.role, "kubectl tfs status shows {} as {role:?}, status says {}: {plugin}", i.name, i.role);
    }
    // The VIP's EndpointSlice holds exactly the master's address.
    let ip = t.pods.get(&holder).await?.status.and_then(|s| s.pod_ip).unwrap_or_default();
    let eps = kubectl(&[
        "get",
        "endpointslices",
        "-n",
        &ns.0,
        "-l",
        "kubernetes.io/service-name=demo",
        "-o",
        "jsonpath={.items[*].endpoints[*].addresses[*]}",
    ])?;
    ensure!(eps.split_whitespace().collect::<Vec<_>>() == vec![ip.as_str()], "VIP endpoints {eps:?}, master {ip}");
    // Writes and reads through the VIP, as a client would.
    let vip = t.vip().await?;
    let dir = tempdir("demo")?;
    let rec = dir.join("acked");
    let out = std::process::Command::new(tfsctl())
        .args([
            "--addr",
            &vip,
            "bench",
            "--op",
            "create",
            "--count",
            "500",
            "--concurrency",
            "8",
            "--sim-dataservers",
            "3",
            "--record",
            rec.to_str().unwrap(),
        ])
        .output()?;
    ensure!(out.status.success(), "bench: {}", String::from_utf8_lossy(&out.stderr));
    verify(&vip, &rec)?;
    let id = std::fs::read_to_string(&rec)?
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1).map(String::from))
        .unwrap_or_default();
    let got = std::process::Command::new(tfsctl()).args(["--addr", &vip, "block", "get", &id]).output()?;
    ensure!(
        got.status.success() && String::from_utf8_lossy(&got.stdout).contains(&format!("block {id}")),
        "block get {id} through the VIP"
    );
    // Least privilege, checked against the live API server's authorizer.
    let heart = format!("system:serviceaccount:{}:demo-heart", ns.0);
    least_privilege(
        &heart,
        &ns.0,
        &["update lease/demo", "get lease/demo"],
        &["update lease/other", "delete lease/demo", "create leases", "delete pods", "get secrets", "update services"],
    )?;
    // The operator: every verb it uses (controller.rs, kube's finalizer and event recorder), and
    // none of what it has no business doing.
    let operator_sa = kubectl(&[
        "get",
        "deployments",
        "-n",
        OPERATOR_NS,
        "-l",
        "app.kubernetes.io/instance=tfs",
        "-o",
        "jsonpath={.items[0].spec.template.spec.serviceAccountName}",
    ])?;
    let operator = format!("system:serviceaccount:{OPERATOR_NS}:{}", operator_sa.trim());
    least_privilege(
        &operator,
        &ns.0,
        &[
            "list tfsnameservers.tfs.io",
            "watch tfsnameservers.tfs.io",
            "patch tfsnameservers.tfs.io",
            "patch tfsnameservers.tfs.io --subresource=status",
            "update tfsnameservers.tfs.io --subresource=finalizers",
            "get pods",
            "list pods",
            "watch pods",
            "create pods",
            "delete pods",
            "create persistentvolumeclaims",
            "delete persistentvolumeclaims",
            "list persistentvolumeclaims",
            "patch persistentvolumeclaims",
            "get storageclasses.storage.k8s.io",
            "get services",
            "list services",
            "watch services",
            "create services",
            "patch services",
            "create configmaps",
            "patch configmaps",
            "create serviceaccounts",
            "patch serviceaccounts",
            "create roles.rbac.authorization.k8s.io",
            "patch roles.rbac.authorization.k8s.io",
            "create rolebindings.rbac.authorization.k8s.io",
            "patch rolebindings.rbac.authorization.k8s.io",
            "create poddisruptionbudgets.policy",
            "patch poddisruptionbudgets.policy",
            "get networkpolicies.networking.k8s.io",
            "create networkpolicies.networking.k8s.io",
            "patch networkpolicies.networking.k8s.io",
            "delete networkpolicies.networking.k8s.io",
            "get leases.coordination.k8s.io",
            "list leases.coordination.k8s.io",
            "watch leases.coordination.k8s.io",
            "create leases.coordination.k8s.io",
            "update leases.coordination.k8s.io",
            "create events.events.k8s.io",
            "patch events.events.k8s.io",
            "get secrets",
            "create secrets",
            "patch secrets",
            // nodes, read-only: a cordoned master's node means a switchover first; a lost node
            // is named in the status
            "get nodes",
            "list nodes",
            "watch nodes",
            "get persistentvolumeclaims",
        ],
        &[
            "list secrets",
            "watch secrets",
            "delete secrets",
            "create pods --subresource=exec",
            "create pods --subresource=portforward",
            "update pods",
            "update nodes",
            "patch nodes",
            "delete namespaces",
            "create deployments.apps",
            "create clusterroles.rbac.authorization.k8s.io",
            "create clusterrolebindings.rbac.authorization.k8s.io",
            "bind roles.rbac.authorization.k8s.io",
            "escalate roles.rbac.authorization.k8s.io",
            "impersonate serviceaccounts",
            "create serviceaccounts --subresource=token",
            "delete services",
            "delete configmaps",
            "get configmaps",
            "delete leases.coordination.k8s.io",
            "patch leases.coordination.k8s.io",
            "update tfsnameservers.tfs.io",
            "delete tfsnameservers.tfs.io",
            "create tfsnameservers.tfs.io",
            "update tfsnameservers.tfs.io --subresource=status",
            "update persistentvolumeclaims",
            "delete persistentvolumes",
            "create events",
        ],
    )?;
    // Every container of the nameserver pods runs restricted.
    let spec = t.pods.get(&holder).await?.spec.unwrap_or_default();
    for c in &spec.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        ensure!(
            sc.run_as_non_root == Some(true) && sc.read_only_root_filesystem == Some(true),
            "{} is not restricted",
            c.name
        );
    }
    println!("scenario=demo healthy master={holder} epoch={epoch} vip={vip} rbac=least_privilege");
    Ok(())
}

/// The one scenario without TLS (every other runs the example's TLS): plain TCP stays supported.
#[tokio::test]
async fn t2_failover_on_pod_loss() -> Result<()> {
    failover_with("podloss", Fault::PodLoss, "  tls:\n    enabled: false").await
}

#[tokio::test]
async fn t3_failover_on_nameserver_kill9() -> Result<()> {
    failover("kill9", Fault::Kill9).await
}

#[tokio::test]
async fn t4_heart_killed_recovers() -> Result<()> {
    failover("heart", Fault::Heart).await
}

#[tokio::test]
async fn t5_planned_switchover() -> Result<()> {
    failover("switchover", Fault::Switchover).await
}

/// A handover the master cannot make (here: to a pod that is not an instance, so outside its sync
/// set) is refused by its heart before anything is drained; the master keeps renewing, so nothing
/// fails over and writes go on.
#[tokio::test]
async fn t5b_handover_outside_the_sync_set_keeps_the_master() -> Result<()> {
    let (ns, t, vip, w) = loaded_pair("handover-refused").await?;
    let (master, epoch) = t.lease().await?;
    let fault_ms = now_ms();
    kubectl(&["annotate", "lease", "demo", "-n", &ns.0, "tfs.io/handover-to=demo-7", "--overwrite"])?;
    // Two lease durations: a master that stopped renewing would have been replaced by now.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (holder, now) = t.lease().await?;
    let ann = kubectl(&["get", "lease", "demo", "-n", &ns.0, "-o", "jsonpath={.metadata.annotations}"])?;
    let acked = w.acked();
    w.wait_acked(acked + 500, Duration::from_secs(30)).await?;
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let outage = outage_ms(&record, fault_ms);
    println!(
        "scenario=handover-refused master={master}@{epoch} -> {holder}@{now} max_write_gap_s={:.3}\n{verdict}",
        outage as f64 / 1000.0
    );
    ensure!(
        holder == master && now == epoch,
        "a refused handover ended in a failover: {master}@{epoch} -> {holder}@{now}"
    );
    ensure!(!ann.contains("tfs.io/handover-to"), "the refused request is still on the Lease: {ann}");
    ensure!(ann.contains("tfs.io/handover-refused") && ann.contains("demo-7"), "no refusal recorded: {ann}");
    ensure!(outage < 1000, "writes stalled {outage} ms while the master refused a handover");
    drop(ns);
    Ok(())
}

/// The Lease deleted under load (as a bad `kubectl delete`, or etcd restored from an old backup,
/// would lose it): the operator recreates it, and the epoch still only rises — the master that
/// still holds every write it acknowledged gets it back at a new epoch, with no overlap of epochs.
#[tokio::test]
async fn t6c_lease_deleted_under_load_epochs_only_rise() -> Result<()> {
    let (ns, t, vip, w) = loaded_pair("lease-deleted").await?;
    let (master, epoch) = t.lease().await?;
    let fault_ms = now_ms();
    kubectl(&["delete", "lease", "demo", "-n", &ns.0])?;
    let after = t.wait_healthy(2, epoch as i64 + 1, Duration::from_secs(90)).await?;
    let status = after.status.clone().unwrap_or_default();
    let new_epoch = status.epoch.unwrap_or(0) as u64;
    let acked = w.acked();
    w.wait_acked(acked + 1000, Duration::from_secs(60)).await?;
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let (last_old, first_new) = epoch_windows(&record, epoch, new_epoch);
    println!(
        "scenario=lease-deleted master={master}@{epoch} -> {}@{new_epoch} max_write_gap_s={:.3} last_old={last_old:?} first_new={first_new:?}\n{verdict}",
        status.master.as_deref().unwrap_or("?"),
        outage_ms(&record, fault_ms) as f64 / 1000.0
    );
    ensure!(new_epoch > epoch, "the epoch did not rise: {epoch} -> {new_epoch}");
    ensure!(
        status.master.as_deref() == Some(master.as_str()),
        "the lease went to {:?}, not the master {master}",
        status.master
    );
    // The same process is master in both epochs: a write it committed under epoch 1 may reach its
    // client after another client got epoch 2's first answer (16 connections, each reply on its
    // own). What must not happen — and `tfsctl verify` checks as split_brain — is epoch 1
    // acknowledging a write sent after epoch 2 had acknowledged one.
    if let (Some(sent), Some(n)) = (last_sent_at(&record, epoch), first_new) {
        ensure!(
            sent < n,
            "epoch {epoch} acknowledged a write sent at {sent}, after epoch {new_epoch} acknowledged one at {n}"
        );
    }
    drop(ns);
    Ok(())
}

/// A settings change reaches every process: the lease timing is shortened (5s/3s/1s → 4s/2s/1s)
/// and the block replicas changed under load; pods roll (slaves first, then a switchover) until
/// every one runs them (`SettingsApplied`), and the nameserver uses the new replica count. Then
/// the master is cut from the API server: it fences itself before the operator, judging with the
/// new timing, promotes the slave — the two epochs' acknowledgements do not overlap.
#[tokio::test]
async fn t6d_settings_reach_the_processes_then_the_master_is_cut_off() -> Result<()> {
    use tfs_e2e::chaos::faults::{ApiAddrs, Pair, cut_master_from_apiserver};
    let (ns, t, vip, w) = loaded_pair("settings").await?;
    let patch =
        r#"{"spec":{"lease":{"durationSeconds":4,"renewDeadlineSeconds":2,"retryPeriodSeconds":1},"blockReplicas":1}}"#;
    patch_demo(&ns.0, patch)?;
    let generation = t.get().await?.metadata.generation;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let st = t.get().await?.status.unwrap_or_default();
        let applied = st
            .conditions
            .iter()
            .any(|c| c.type_ == "SettingsApplied" && c.status == "True" && c.observed_generation >= generation);
        if applied && st.phase == Some(tfs_operator::crd::Phase::Healthy) && st.ready.as_deref() == Some("2/2") {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "settings not rolled out in 240 s: {st:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for pod in t.pod_names().await? {
        let ann =
            kubectl(&["get", "pod", &pod, "-n", &ns.0, "-o", "jsonpath={.metadata.annotations.tfs\\.io/settings}"])?;
        ensure!(ann.contains("blockReplicas=1,lease=4/2/1"), "{pod} runs {ann:?}");
    }
    let out = run(&tfsctl(), &["--addr", &vip, "--json", "block", "create"])?;
    let block: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(block["dataservers"].as_array().map(Vec::len) == Some(1), "blockReplicas=1 not used: {block}");
    w.wait_acked(w.acked() + 500, Duration::from_secs(60)).await?;
    let p = Pair::of(&t).await?;
    let cut = cut_master_from_apiserver(&p, &ApiAddrs::discover()?)?;
    let after = t.wait_healthy(2, p.epoch.get() as i64 + 1, Duration::from_secs(90)).await;
    drop(cut.guard);
    let after = after?;
    let new_epoch = after.status.clone().unwrap_or_default().epoch.unwrap_or(0) as u64;
    w.wait_acked(w.acked() + 1000, Duration::from_secs(60)).await?;
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let (last_old, first_new) = epoch_windows(&record, p.epoch.get(), new_epoch);
    println!(
        "scenario=settings cut {}@{} -> epoch {new_epoch} last_old={last_old:?} first_new={first_new:?} failover_s={:.3}\n{verdict}",
        p.master,
        p.epoch,
        first_new.map(|n| n.saturating_sub(cut.t_ms)).unwrap_or(0) as f64 / 1000.0
    );
    ensure!(new_epoch > p.epoch.get(), "no failover after the cut");
    if let (Some(o), Some(n)) = (last_old, first_new) {
        ensure!(o < n, "epoch {} acknowledged a write at {o} after epoch {new_epoch} did at {n}", p.epoch);
    }
    drop(ns);
    Ok(())
}

#[tokio::test]
async fn t6_operator_restarted_during_failover() -> Result<()> {
    failover("operator-restart", Fault::Kill9WithOperatorRestart).await
}

#[tokio::test]
async fn t6b_frozen_master_is_replaced_and_fences_itself() -> Result<()> {
    failover("freeze", Fault::Freeze).await
}

/// A renew the API server applied but answered only after the failover it caused (its answers to
/// the master's pod withheld past the lease duration, as a partition that heals): the old master's
/// heart, whose grant would end before the answer came, must grant nothing and leave alone the
/// Lease the new master holds; nothing acknowledged is lost. (The node-loss scenarios met this by
/// chance: a renew in flight when the node was lost.)
#[tokio::test]
async fn t6e_a_renew_answered_after_the_failover_changes_nothing() -> Result<()> {
    let (ns, t, vip, w) = loaded_pair("late-renew").await?;
    let (master, epoch) = t.lease().await?;
    let ip = kubectl(&["-n", &ns.0, "get", "pod", &master, "-o", "jsonpath={.status.podIP}"])?;
    let withheld = tfs_e2e::nodes::WithheldAnswers::to(ip.trim())?;
    let fault_ms = now_ms();
    let (new_master, new_epoch) = another_master(&t, (&master, epoch), "withholding its answers").await?;
    let acked = w.acked();
    w.wait_acked(acked + 500, Duration::from_secs(60)).await?;
    withheld.deliver()?;
    // The withheld answers arrive at the API server's next retransmission (exponential: seconds).
    // Meanwhile and after, the Lease stays with the new master.
    let heart_said = |what: &str| {
        kubectl(&["-n", &ns.0, "logs", &master, "-c", "heart", "--since=120s"])
            .map(|l| l.lines().filter(|l| l.contains(what)).map(String::from).collect::<Vec<_>>())
    };
    let watch_until = std::time::Instant::now() + Duration::from_secs(20);
    let mut answered = Vec::new();
    while std::time::Instant::now() < watch_until {
        let (m, e) = t.lease().await?;
        ensure!(
            m == new_master && e == new_epoch,
            "the Lease moved from {new_master}@{new_epoch} to {m:?}@{e} once {master}'s answers came: {:?}",
            heart_said("lease released")?
        );
        if answered.is_empty() {
            answered = heart_said("answered after")?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not vacuous: the late answer did come, and was seen as late.
    ensure!(!answered.is_empty(), "{master}'s heart never got its late renew's answer (nothing was tested)");
    t.wait_healthy(2, new_epoch as i64, Duration::from_secs(120)).await?;
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    println!(
        "scenario=late-renew master={master}@{epoch} -> {new_master}@{new_epoch}, {master}'s heart: {}\n  failed_requests={failed} max_write_gap_s={:.3}\n{verdict}",
        answered[0].trim(),
        outage_ms(&record, fault_ms) as f64 / 1000.0
    );
    Ok(())
}

#[tokio::test]
async fn t7_scale_2_3_2() -> Result<()> {
    let (ns, t) = healthy_pair("scale").await?;
    // The volumes never shrink; they grow where the class expands. The local class does not:
    // the StorageResized condition says so, and the instances keep serving.
    let smaller = patch_demo(&ns.0, r#"{"spec":{"storage":{"size":"512Mi"}}}"#);
    let err = smaller.expect_err("storage.size shrank").to_string();
    ensure!(err.contains("storage.size cannot shrink"), "{err}");
    patch_demo(&ns.0, r#"{"spec":{"storage":{"size":"2Gi"}}}"#)?;
    let generation = t.get().await?.metadata.generation;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = t.get().await?.status.unwrap_or_default();
        let judged = |c: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
            c.type_ == "StorageResized" && c.observed_generation >= generation
        };
        if let Some(c) = st.conditions.iter().find(judged) {
            ensure!(c.status == "False" && c.reason == "ExpansionNotSupported", "StorageResized: {c:?}");
            ensure!(c.message.contains("StorageClass standard does not allow volume expansion"), "{}", c.message);
            println!("scenario=scale storage 1Gi -> 2Gi: StorageResized=False {}: {}", c.reason, c.message);
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "no StorageResized condition within 60 s: {:?}", st.conditions);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // `kubectl scale` goes through the scale subresource.
    kubectl(&["scale", "tfsns", "demo", "-n", &ns.0, "--replicas", "3"])?;
    t.wait_healthy(3, 1, Duration::from_secs(120)).await?;
    t.wait_sync_set(2, Duration::from_secs(60)).await?;
    let scale = kubectl(&[
        "get",
        "tfsns",
        "demo",
        "-n",
        &ns.0,
        "--subresource",
        "scale",
        "-o",
        "jsonpath={.status.replicas} {.status.selector}",
    ])?;
    ensure!(
        scale.starts_with("3 ") && scale.contains("app.kubernetes.io/instance=demo"),
        "scale subresource says {scale:?}"
    );
    // The master on the highest ordinal, then scale down under load: it must hand over first.
    kubectl(&["annotate", "tfsns", "demo", "-n", &ns.0, "tfs.io/switchover-to=demo-2"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while t.lease().await?.0 != "demo-2" {
        ensure!(std::time::Instant::now() < deadline, "switchover to demo-2 did not happen: {:?}", t.lease().await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, epoch) = t.lease().await?;
    t.wait_healthy(3, epoch as i64, Duration::from_secs(60)).await?;
    t.wait_sync_set(2, Duration::from_secs(60)).await?;
    let vip = t.vip().await?;
    let dir = tempdir("scale")?;
    let w = Writer::start(&vip, &dir, 8)?;
    w.wait_acked(1000, Duration::from_secs(60)).await?;
    kubectl(&["scale", "tfsns", "demo", "-n", &ns.0, "--replicas", "2"])?;
    let after = t.wait_healthy(2, epoch as i64 + 1, Duration::from_secs(120)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while t.pod_names().await?.len() != 2 {
        ensure!(std::time::Instant::now() < deadline, "still {:?}", t.pod_names().await?);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let acked = w.acked();
    w.wait_acked(acked + 500, Duration::from_secs(60)).await?;
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let master = after.status.as_ref().and_then(|s| s.master.clone()).unwrap_or_default();
    println!("scenario=scale 2->3, switchover to demo-2, 3->2: master {master}, failed_requests={failed}\n{verdict}");
    ensure!(master != "demo-2", "the removed ordinal is still master");
    ensure!(failed == 0, "{failed} requests failed during the scale-down");
    // deletePolicy Retain (the default): the removed instance's claim stays, unowned, and is
    // reused when the ordinal comes back.
    let uid = |ns: &str| {
        kubectl(&["get", "pvc", "demo-2-data", "-n", ns, "-o", "jsonpath={.metadata.uid} {.metadata.ownerReferences}"])
    };
    let kept = uid(&ns.0)?;
    ensure!(!kept.trim().is_empty() && !kept.contains("TfsNameserver"), "retained claim: {kept:?}");
    kubectl(&["scale", "tfsns", "demo", "-n", &ns.0, "--replicas", "3"])?;
    t.wait_healthy(3, 1, Duration::from_secs(120)).await?;
    ensure!(uid(&ns.0)? == kept, "demo-2 came back on another claim: {kept:?} -> {:?}", uid(&ns.0)?);
    println!("scenario=scale retained claim reused: {kept}");
    Ok(())
}

/// Node loss under a recording writer, with three instances spread over the three nodes: the
/// master's node is lost (with `with_leader`, it also runs the operator's leader), a slave on
/// another node becomes master within the bound, the old master is fenced when its node comes
/// back and rejoins as a slave, and nothing acknowledged is lost.
async fn node_loss(scenario: &str, with_leader: bool) -> Result<()> {
    let (ns, t, placed) = spread_trio(scenario, "").await?;
    let (leader, leader_node) = operator_leader()?;
    let operators = operator_pods()?;
    println!("scenario={scenario} instances={placed:?} operator_leader={leader}@{leader_node} operators={operators:?}");
    if with_leader {
        ensure!(
            operators.iter().any(|(p, n)| *p != leader && *n != leader_node),
            "no operator standby outside the leader's node: {operators:?}"
        );
    }
    // Put the master where the scenario wants it: on the leader's node, or off it.
    let (master, epoch, lost_node) = tfs_e2e::nodes::place_master(&t, with_leader).await?;
    let node_of = |pod: &str| placed.iter().find(|(_, p)| p == pod).map(|(n, _)| n.clone()).unwrap_or_default();
    let duration_s = t.get().await?.spec.lease.duration_seconds as f64;
    // the operator's leader lease (chart default) when the leader is lost too
    let bound_s = duration_s + 2.0 + if with_leader { 4.0 } else { 0.0 };

    let vip = t.vip().await?;
    let dir = tempdir(scenario)?;
    let w = Writer::start(&vip, &dir, 16)?;
    w.wait_acked(2000, Duration::from_secs(60)).await?;
    let restarts = tfs_e2e::nodes::operator_restarts()?;
    let fault_ms = now_ms();
    let lost = LostNode::lose(&lost_node)?;
    let (new_master, new_epoch) = another_master(&t, (&master, epoch), "losing its node").await?;
    ensure!(node_of(&new_master) != lost_node, "new master {new_master} is on the lost node");
    let acked = w.acked();
    w.wait_acked(acked + 1000, Duration::from_secs(60)).await?;

    // The node comes back: the old master, thawed where it stood, must answer no write and no
    // linearizable read (its lease is gone; a newer epoch exists).
    let old_ip = kubectl(&["-n", &ns.0, "get", "pod", &master, "-o", "jsonpath={.status.podIP}"])?;
    lost.back()?;
    let old = format!("{}:8100", old_ip.trim());
    for args in [vec!["block", "create"], vec!["block", "get", "1"]] {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("20").arg(tfsctl()).args(["--addr", &old]).args(&args);
        let out = cmd.output()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        println!(
            "scenario={scenario} old master {master} after its node came back, tfsctl {}: {}",
            args.join(" "),
            text.trim()
        );
        if out.status.success() {
            let why = format!("the old master {master} answered `{}` after its node came back: {text}", args.join(" "));
            node_loss_evidence(&ns.0, &master, &old, fault_ms, &why);
            bail!("{why}");
        }
    }
    // ... and rejoins as a slave of the new master.
    t.wait_healthy(3, new_epoch as i64, Duration::from_secs(180)).await?;
    let (m, e) = t.lease().await?;
    ensure!(m == new_master && e == new_epoch, "master moved again after the node came back: {m}@{e}");
    // A deposed operator leader starts again in place (execve), not as a restarted container: the
    // kubelet's back-off of repeated restarts would leave no standby for the next failover.
    let after = tfs_e2e::nodes::operator_restarts()?;
    ensure!(after == restarts, "operator containers restarted ({restarts} -> {after}) across the node loss");

    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let first =
        Writer::first_ack_after(&record, fault_ms, new_epoch).context("no write acknowledged by the new master")?;
    let failover_s = first as f64 / 1000.0;
    println!(
        "scenario={scenario} lost={lost_node} master={master}@{epoch} -> {new_master}@{new_epoch} failover_s={failover_s:.3} bound_s={bound_s:.1} max_write_gap_s={:.3} failed_requests={failed}\n{verdict}",
        outage_ms(&record, fault_ms) as f64 / 1000.0
    );
    let (last_old, first_new) = epoch_windows(&record, epoch, new_epoch);
    if let (Some(o), Some(n)) = (last_old, first_new) {
        ensure!(o < n, "epoch {epoch} acknowledged a write at {o} after epoch {new_epoch} did at {n}");
    }
    ensure!(failover_s <= bound_s, "failover took {failover_s:.3} s, bound {bound_s:.1} s");
    Ok(())
}

/// What tells who answered where only a refusal was due: the old master's own status (role,
/// epoch), the Lease and the resource as they are now, and the logs, kept under .e2e/runs/ with
/// the old master's and the operators' last lines printed (a CI log is often all that remains).
fn node_loss_evidence(ns: &str, master: &str, old: &str, fault_ms: u64, why: &str) {
    let status = std::process::Command::new("timeout")
        .arg("10")
        .arg(tfsctl())
        .args(["--addr", old, "status"])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_else(|e| e.to_string());
    let get = |args: &[&str]| kubectl(args).unwrap_or_else(|e| e.to_string());
    println!("== evidence: {why}\n== tfsctl --addr {old} status\n{status}");
    println!("== leases\n{}", get(&["-n", ns, "get", "lease", "-o", "yaml"]));
    println!("== tfsns\n{}", get(&["-n", ns, "get", "tfsns", "-o", "yaml"]));
    let dir = root().join(".e2e/runs").join(format!("{ns}-evidence"));
    let since_s = now_ms().saturating_sub(fault_ms) / 1000 + 30;
    match tfs_e2e::evidence::keep(&dir, ns, since_s, why) {
        Ok(()) => {
            println!("== logs kept in {}", dir.display());
            let tail = |file: &str, only: &str, n: usize| {
                let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().filter(|l| l.contains(only)).collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            };
            println!("== {master}'s last lines\n{}", tail("instances.log", &format!("pod/{master}/"), 80));
            println!("== the operators' last lines\n{}", tail("operator.log", "", 80));
        }
        Err(e) => println!("== logs could not be kept: {e}"),
    }
}

/// The master's node is lost (its processes frozen, its traffic dropped).
#[tokio::test]
async fn t9a_node_loss_of_the_master() -> Result<()> {
    node_loss("nodeloss", false).await
}

/// The master's node is lost and the operator's leader with it: the standby operator takes over
/// and promotes.
#[tokio::test]
async fn t9b_node_loss_of_the_master_and_the_operator_leader() -> Result<()> {
    node_loss("nodeloss-leader", true).await
}

/// Three spread instances under a recording writer, and where each runs.
async fn spread_trio(scenario: &str, more_spec: &str) -> Result<(Namespace, Tfs, Vec<(String, String)>)> {
    operator();
    ensure!(nodes().len() >= 3, "this scenario needs 3 nodes (make cluster NODES=3), not {:?}", nodes());
    let ns = Namespace::create(scenario)?;
    let c = client().await?;
    let t = Tfs::create_with(&c, &ns.0, "demo", 3, more_spec).await?;
    t.wait_healthy(3, 1, Duration::from_secs(180)).await?;
    t.wait_sync_set(1, Duration::from_secs(60)).await?;
    let placed = tfs_e2e::nodes::placement(&t).await?;
    let spread: std::collections::BTreeSet<_> = placed.iter().map(|(n, _)| n.clone()).collect();
    ensure!(spread.len() == 3, "instances not spread over the nodes: {placed:?}");
    Ok((ns, t, placed))
}

/// `kubectl drain` of the master's node: the operator switches over first (the master's
/// PodDisruptionBudget holds the eviction until then), no request fails, and after the uncordon
/// the evicted instance comes back as a slave.
#[tokio::test]
async fn t9c_drain_of_the_masters_node_switches_over_first() -> Result<()> {
    let (ns, t, placed) = spread_trio("drain", "").await?;
    let (master, epoch) = t.lease().await?;
    let node = placed.iter().find(|(_, p)| *p == master).map(|(n, _)| n.clone()).expect("master placed");
    let pdbs = kubectl(&["-n", &ns.0, "get", "pdb", "demo", "demo-master", "-o", "name"])?;
    ensure!(pdbs.lines().count() == 2, "PodDisruptionBudgets demo and demo-master: {pdbs}");
    let vip = t.vip().await?;
    let w = Writer::start(&vip, &tempdir("drain")?, 16)?;
    w.wait_acked(2000, Duration::from_secs(60)).await?;
    let start_ms = now_ms();
    // As an administrator would; drain retries an eviction the budget refuses.
    let drained = tokio::task::spawn_blocking({
        let node = node.clone();
        move || kubectl(&["drain", &node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=180s"])
    })
    .await?;
    let drain_s = (now_ms() - start_ms) as f64 / 1000.0;
    let result = async {
        drained?;
        let (m, e) = t.lease().await?;
        ensure!(m != master && e > epoch, "the master is still {m}@{e} after the drain of {node}");
        let events =
            kubectl(&["-n", &ns.0, "get", "events", "--field-selector", "reason=CordonSwitchover", "-o", "name"])?;
        ensure!(!events.trim().is_empty(), "no CordonSwitchover event");
        let acked = w.acked();
        w.wait_acked(acked + 1000, Duration::from_secs(60)).await?;
        Ok((m, e))
    }
    .await;
    // whatever happened, the node goes back into service
    kubectl(&["uncordon", &node])?;
    let (new_master, new_epoch) = result?;
    t.wait_healthy(3, new_epoch as i64, Duration::from_secs(180)).await?;
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    println!(
        "scenario=drain node={node} master={master}@{epoch} -> {new_master}@{new_epoch} drain_s={drain_s:.1} max_write_gap_s={:.3} failed_requests={failed}\n{verdict}",
        outage_ms(&record, start_ms) as f64 / 1000.0
    );
    ensure!(failed == 0, "{failed} requests failed during the drain");
    drop(ns);
    Ok(())
}

/// A node lost for good: the instance on it is reported (Degraded, InstanceLost, naming the
/// instance and the node), `kubectl tfs replace` puts a fresh instance on another node, seeded
/// from the master, and nothing acknowledged is lost. (Three instances on three nodes need
/// `placement: Preferred` for the replacement to have a node.)
#[tokio::test]
async fn t9d_a_node_lost_for_good_and_its_instance_replaced() -> Result<()> {
    let (ns, t, placed) = spread_trio("replace", "  placement: Preferred").await?;
    let (master, epoch) = t.lease().await?;
    let (node, victim) = placed.iter().find(|(_, p)| *p != master).cloned().expect("a slave");
    let vip = t.vip().await?;
    let w = Writer::start(&vip, &tempdir("replace")?, 16)?;
    w.wait_acked(2000, Duration::from_secs(60)).await?;
    let lost = LostNode::lose(&node)?;
    let lost_ms = now_ms();
    // The status names the instance, its node and the action (once the node is NotReady: the
    // controller manager's grace period).
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let message = loop {
        let st = t.get().await?.status.unwrap_or_default();
        let named = |c: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
            c.type_ == "Degraded"
                && c.reason == "InstanceLost"
                && c.message.contains(&victim)
                && c.message.contains(&node)
        };
        if let Some(c) = st.conditions.iter().find(named) {
            break c.message.clone();
        }
        ensure!(std::time::Instant::now() < deadline, "no InstanceLost naming {victim} on {node}: {:?}", st.conditions);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(message.contains("kubectl tfs replace"), "the message names no action: {message}");
    let reported_s = (now_ms() - lost_ms) as f64 / 1000.0;
    let out = kubectl(&["tfs", "replace", "demo", &victim, "-n", &ns.0, "--timeout", "3m"])?;
    print!("scenario=replace kubectl tfs replace:\n{out}");
    ensure!(out.contains(&format!("{victim} is ready on node")), "kubectl tfs replace: {out}");
    let new_node = pod_node(&ns.0, &victim)?;
    ensure!(new_node != node, "the replacement of {victim} is on the lost node {node}");
    let acked = w.acked();
    w.wait_acked(acked + 1000, Duration::from_secs(60)).await?;
    let (m, e) = t.lease().await?;
    ensure!(m == master && e == epoch, "the master moved ({master}@{epoch} -> {m}@{e}) though only a slave was lost");
    // The node returns: its old pod, deleted meanwhile, must not come back into the set.
    lost.back()?;
    t.wait_healthy(3, epoch as i64, Duration::from_secs(180)).await?;
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    println!(
        "scenario=replace lost={node} {victim} -> {new_node} reported_after_s={reported_s:.1} message={message:?} failed_requests={failed}\n{verdict}"
    );
    drop(ns);
    Ok(())
}

#[tokio::test]
async fn t8_rejects_invalid_resources_at_admission() -> Result<()> {
    operator();
    for f in std::fs::read_dir(root().join("examples/invalid"))? {
        let f = f?.path();
        let r = kubectl(&["apply", "--dry-run=server", "-f", f.to_str().unwrap()]);
        let err = r.expect_err(&format!("{} was accepted", f.display())).to_string();
        ensure!(err.contains("Invalid value"), "{}: {err}", f.display());
    }
    Ok(())
}

/// `spec.tls.issuerRef` on a cluster without cert-manager (none can be built here): the real API
/// server takes the resource, the operator says exactly why it waits and creates no pod.
#[tokio::test]
async fn t8b_issuer_ref_without_cert_manager_is_reported_and_creates_nothing() -> Result<()> {
    operator();
    let ns = Namespace::create("issuer")?;
    let c = client().await?;
    let spec = "  tls:\n    enabled: true\n    clientAuth: Required\n    issuerRef:\n      name: my-ca\n      kind: ClusterIssuer";
    kubectl_stdin(&["apply", "-f", "-"], &demo_manifest(&ns.0, "demo", 2, spec)?)?;
    let api: kube::Api<tfs_operator::crd::TfsNameserver> = kube::Api::namespaced(c.clone(), &ns.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let cond = loop {
        let st = api.get("demo").await?.status.unwrap_or_default();
        if let Some(c) = st.conditions.iter().find(|c| c.type_ == "CertificatesReady") {
            break c.clone();
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no CertificatesReady condition within 60 s: {:?}",
            st.conditions
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("scenario=issuer CertificatesReady={} {}: {}", cond.status, cond.reason, cond.message);
    ensure!(cond.status == "False" && cond.reason == "CertManagerNotServed", "{cond:?}");
    ensure!(cond.message.contains("cert-manager"), "{}", cond.message);
    let pods = kubectl(&["get", "pods", "-n", &ns.0, "-o", "name"])?;
    ensure!(pods.trim().is_empty(), "pods created without their certificates: {pods}");
    drop(ns);
    Ok(())
}

/// Image upgrade under a writer: slaves first, then a switchover, the old master last; nothing
/// acknowledged lost and no request failed beyond client retries.
#[tokio::test]
async fn ta_image_upgrade_rolls_slaves_first() -> Result<()> {
    let (ns, t) = healthy_pair("upgrade").await?;
    let next = "localhost/tfs:e2e-next";
    // every node has its own image store
    for node in nodes() {
        run(
            Path::new("ctr"),
            &[
                "--address",
                containerd_socket(&node).to_str().unwrap(),
                "-n",
                "k8s.io",
                "images",
                "tag",
                "--force",
                "localhost/tfs:dev",
                next,
            ],
        )?;
    }
    let vip = t.vip().await?;
    let dir = tempdir("upgrade")?;
    let w = Writer::start(&vip, &dir, 8)?;
    w.wait_acked(1000, Duration::from_secs(60)).await?;
    let (master, epoch) = t.lease().await?;
    patch_demo(&ns.0, &format!(r#"{{"spec":{{"image":"{next}"}}}}"#))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let images = kubectl(&[
            "get",
            "pods",
            "-n",
            &ns.0,
            "-l",
            "app.kubernetes.io/instance=demo",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])?;
        let (_, e) = t.lease().await?;
        if images.split_whitespace().filter(|i| *i == next).count() == 2 && e > epoch {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "upgrade did not finish: images {images}, epoch {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = t.wait_healthy(2, epoch as i64 + 1, Duration::from_secs(120)).await?;
    let acked = w.acked();
    w.wait_acked(acked + 500, Duration::from_secs(60)).await?;
    let failed = w.failed_requests();
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let new_master = after.status.and_then(|s| s.master).unwrap_or_default();
    println!("scenario=upgrade master {master}@{epoch} -> {new_master} failed_requests={failed}\n{verdict}");
    ensure!(failed == 0, "{failed} requests failed during the upgrade");
    drop(ns);
    Ok(())
}

/// TLS and least exposure, as the example ships them (spec.tls on, clientAuth Required), in a
/// namespace that enforces Pod Security `restricted` (every e2e namespace does): the operator's CA
/// and certificates, a NetworkPolicy per resource, a client port that refuses plain and
/// certificate-less clients; from a pod of the namespace, hostile peers on the replication port
/// (no certificate, another CA's, a valid client certificate posing as a slave) all refused and
/// counting for nothing, and the admin port unreachable; then a kill -9 failover under TLS load,
/// with nothing lost and the history linearizable.
#[tokio::test]
async fn tb_tls_everywhere_and_a_failover_under_it() -> Result<()> {
    operator();
    let (ns, t) = healthy_pair("tls").await?;
    ensure!(t.get().await?.spec.tls.enabled, "the example has TLS on");
    let secrets = kubectl(&["get", "secrets", "-n", &ns.0, "-o", "name"])?;
    for s in ["demo-ca", "demo-0-tls", "demo-1-tls", "demo-client"] {
        ensure!(secrets.contains(&format!("secret/{s}")), "no Secret {s}: {secrets}");
    }
    // The VIP's certificate names the VIP's address from the first issue (the Service is made
    // before the certificates), so nothing is issued again at the first repair or by a new leader.
    let vip_ip: std::net::IpAddr = t.vip().await?.split(':').next().unwrap_or_default().parse()?;
    for pod in ["demo-0", "demo-1"] {
        let pem = kubectl(&[
            "get",
            "secret",
            &format!("{pod}-tls"),
            "-n",
            &ns.0,
            "-o",
            "go-template={{index .data \"vip.crt\" | base64decode}}",
        ])?;
        let issued = tfs_operator::pki::read(&pem)?;
        ensure!(issued.ips.contains(&vip_ip), "{pod}'s VIP certificate names {:?}, not the VIP {vip_ip}", issued.ips);
    }
    // Pod Security: the namespace enforces restricted (the pods above were admitted), and the
    // operator's pods would pass it too (a server-side dry run lists the pods that would not).
    let enforce =
        kubectl(&["get", "ns", &ns.0, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"])?;
    ensure!(enforce == "restricted", "namespace {} enforces {enforce:?}", ns.0);
    let dry = run(
        &bin("kubectl"),
        &[
            "label",
            "--dry-run=server",
            "--overwrite",
            "ns",
            OPERATOR_NS,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    )?;
    let warnings = String::from_utf8_lossy(&dry.stderr).to_string();
    ensure!(!warnings.contains("violate"), "operator pods would not pass restricted: {warnings}");
    // The NetworkPolicy: replication only from this resource's instances.
    let np: serde_json::Value =
        serde_json::from_str(&kubectl(&["get", "networkpolicy", "demo", "-n", &ns.0, "-o", "json"])?)?;
    let repl_rule = np["spec"]["ingress"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["ports"][0]["port"] == 8101))
        .cloned()
        .unwrap_or_default();
    ensure!(
        repl_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"
            && repl_rule["from"].as_array().map(Vec::len) == Some(1),
        "replication rule: {repl_rule}"
    );

    let vip = t.vip().await?;
    // tfsctl takes the client certificate from the environment (TFS_CA, ... set by Tfs::create).
    let ctl = |keep_tls: bool, extra: &[&str]| {
        let mut c = std::process::Command::new(tfsctl());
        if !keep_tls {
            TLS_ENV.iter().for_each(|k| {
                c.env_remove(k);
            });
        }
        c.args(["--addr", &vip]).args(extra).arg("status").output()
    };
    let ok = ctl(true, &[])?;
    ensure!(ok.status.success(), "tfsctl with the client certificate: {}", String::from_utf8_lossy(&ok.stderr));
    let plain = ctl(false, &[])?;
    ensure!(!plain.status.success(), "a plain client was served");
    let ca = std::env::var("TFS_CA")?;
    let anonymous = ctl(false, &["--ca", &ca, "--tls-server-name", "demo"])?;
    ensure!(!anonymous.status.success(), "a client without a certificate was served (clientAuth: Required)");
    println!(
        "scenario=tls anonymous refused: {}",
        String::from_utf8_lossy(&anonymous.stderr).lines().last().unwrap_or("")
    );

    hostile_peers(&ns.0, &t).await?;

    let w = Writer::start(&vip, &tempdir("tls")?, 16)?;
    w.wait_acked(1000, Duration::from_secs(60)).await?;
    let (master, epoch) = t.lease().await?;
    let fault_ms = now_ms();
    kill9(container_pid(&ns.0, &master, "nameserver")?)?;
    let after = t.wait_healthy(2, epoch as i64 + 1, Duration::from_secs(90)).await?;
    let new_epoch = after.status.as_ref().and_then(|s| s.epoch).unwrap_or(0) as u64;
    let acked = w.acked();
    w.wait_acked(acked + 1000, Duration::from_secs(60)).await?;
    let record = w.stop();
    let verdict = verify(&vip, &record)?;
    let first = Writer::first_ack_after(&record, fault_ms, new_epoch).unwrap_or(0);
    println!(
        "scenario=tls kill9 {master}@{epoch} -> epoch {new_epoch} failover_s={:.3}\n{verdict}",
        first as f64 / 1000.0
    );
    // The same check as a user without a route to the cluster would run it: the kubectl plugin,
    // through a port-forward to the master, with the client Secret's certificate.
    let ctl = tfsctl();
    let args = ["tfs", "verify", "demo", "-n", &ns.0, "--record", path_str(&record)?, "--tfsctl", path_str(&ctl)?];
    let via_plugin = kubectl(&args)?;
    ensure!(via_plugin.contains("lost=0") && via_plugin.contains("=> OK"), "kubectl tfs verify: {via_plugin}");
    println!("scenario=tls kubectl tfs verify: {}", via_plugin.lines().next().unwrap_or(""));
    drop(ns);
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", p.display()))
}

/// From a pod of the namespace (restricted, like the instances), what a hostile peer would try
/// on the master's replication port, and a look for the admin port: everything refused, the sync
/// set and the peers unchanged.
async fn hostile_peers(ns: &str, t: &Tfs) -> Result<()> {
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: mallory
  namespace: {ns}
spec:
  terminationGracePeriodSeconds: 0
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: mallory
    image: localhost/tfs:dev
    imagePullPolicy: Never
    command: [sleep, "3600"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {{drop: [ALL]}}
    volumeMounts: [{{name: client, mountPath: /client}}, {{name: tmp, mountPath: /tmp}}]
  volumes:
  - {{name: client, secret: {{secretName: demo-client}}}}
  - {{name: tmp, emptyDir: {{}}}}
"#
    );
    kubectl_stdin(&["apply", "-f", "-"], &pod)?;
    kubectl(&["wait", "-n", ns, "--for=condition=Ready", "pod/mallory", "--timeout=90s"])?;
    let (master, _) = t.lease().await?;
    let before = t.lease_view().await?.sync_set;
    let ip = kubectl(&["get", "pod", &master, "-n", ns, "-o", "jsonpath={.status.podIP}"])?;
    let repl = format!("{ip}:8101");
    let cluster_id = format!("{ns}.demo");
    let slave = before.first().cloned().unwrap_or_else(|| "demo-1".into());
    let exec = |args: &[&str]| {
        let mut v = vec!["exec", "-n", ns, "mallory", "--", "tfsctl"];
        v.extend_from_slice(args);
        kubectl(&v)
    };
    let probe = |node: &str, tls: &[&str]| {
        let mut v = vec!["probe-login", "--repl", &repl, "--node", node, "--cluster-id", &cluster_id];
        v.extend_from_slice(tls);
        exec(&v)
    };
    let named = ["--tls-server-name", master.as_str()];
    exec(&["dev-certs", "--dir", "/tmp/other", "--nodes", &slave])?;
    let other = |f: &str| format!("/tmp/other/{slave}/{f}");
    let (o_crt, o_key) = (other("tls.crt"), other("tls.key"));
    let attempts: Vec<(&str, String, Vec<&str>)> = vec![
        ("plain", slave.clone(), vec![]),
        ("no certificate", slave.clone(), [&["--ca", "/client/ca.crt"][..], &named].concat()),
        (
            "another CA's certificate naming the slave",
            slave.clone(),
            [&["--ca", "/client/ca.crt", "--cert", &o_crt, "--key", &o_key][..], &named].concat(),
        ),
        (
            "the client certificate as the slave",
            slave.clone(),
            [&["--ca", "/client/ca.crt", "--cert", "/client/tls.crt", "--key", "/client/tls.key"][..], &named].concat(),
        ),
        (
            "the client certificate as a new slave",
            "demo-7".to_string(),
            [&["--ca", "/client/ca.crt", "--cert", "/client/tls.crt", "--key", "/client/tls.key"][..], &named].concat(),
        ),
    ];
    for (what, node, tls) in &attempts {
        // probe-login exits 3 when the node accepted: kubectl then fails, and so does this test.
        let out = probe(node, tls).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        ensure!(out.starts_with("refused:"), "{what}: {out}");
        println!("scenario=tls hostile peer ({what}) {}", out.trim());
    }
    let admin = exec(&["--admin-addr", &format!("{ip}:8102"), "status", "--admin"]);
    ensure!(admin.is_err(), "the admin port answered another pod: {admin:?}");
    println!(
        "scenario=tls admin port from another pod: {}",
        admin.unwrap_err().to_string().lines().last().unwrap_or("")
    );
    let after = t.lease_view().await?.sync_set;
    ensure!(after == before, "the sync set changed under hostile peers: {before:?} -> {after:?}");
    let status = std::process::Command::new(tfsctl()).args(["--addr", &t.vip().await?, "--json", "status"]).output()?;
    let st: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    let peers: Vec<&str> =
        st["peers"].as_array().map(|p| p.iter().filter_map(|p| p["node"].as_str()).collect()).unwrap_or_default();
    ensure!(peers == [slave.as_str()], "peers of the master after the hostile peers: {peers:?}");
    kubectl(&["delete", "pod", "mallory", "-n", ns, "--wait=false"])?;
    Ok(())
}

#[tokio::test]
async fn tz_delete_and_uninstall_leave_nothing_behind() -> Result<()> {
    let (ns, _t) = healthy_pair("uninstall").await?;
    // Under the default Retain the claims would stay (t7 checks that); Delete takes them along.
    patch_demo(&ns.0, r#"{"spec":{"storage":{"deletePolicy":"Delete"}}}"#)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !kubectl(&[
        "get",
        "pvc",
        "-n",
        &ns.0,
        "-l",
        "app.kubernetes.io/instance=demo",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences[*].kind}",
    ])?
    .contains("TfsNameserver")
    {
        ensure!(std::time::Instant::now() < deadline, "claims not owned after deletePolicy: Delete");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kubectl(&["delete", "tfsns", "demo", "-n", &ns.0, "--wait=true", "--timeout=90s"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left = kubectl(&[
            "get",
            "pods,pvc,svc,lease,configmap,role,rolebinding,pdb,serviceaccount,networkpolicy",
            "-n",
            &ns.0,
            "-l",
            "app.kubernetes.io/instance=demo",
            "-o",
            "name",
        ])?;
        if left.trim().is_empty() {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "left behind after deleting the TfsNameserver:\n{left}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run(&bin("helm"), &["uninstall", "tfs", "--namespace", OPERATOR_NS, "--wait"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = kubectl(&[
            "get",
            "all,serviceaccount,role,rolebinding",
            "-n",
            OPERATOR_NS,
            "-l",
            "app.kubernetes.io/instance=tfs",
            "-o",
            "name",
        ])?;
        let cluster =
            kubectl(&["get", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=tfs", "-o", "name"])?;
        if left.trim().is_empty() && cluster.trim().is_empty() {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "operator objects left after helm uninstall:\n{left}{cluster}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("scenario=uninstall nothing left");
    Ok(())
}

/// After the cluster-wide operator is gone (tz): the chart with `watchNamespace` runs an operator
/// with a Role in one namespace only. It makes a TfsNameserver there Healthy, and leaves one in
/// another namespace alone (no status at all).
#[tokio::test]
async fn tzz_a_namespace_scoped_operator_reconciles_only_its_namespace() -> Result<()> {
    let mine = Namespace::create("scoped")?;
    let other = Namespace::create("unwatched")?;
    let chart = root().join("charts/tfs-operator");
    let watch = format!("watchNamespace={}", mine.0);
    let install = [
        "upgrade",
        "--install",
        "tfs-scoped",
        path_str(&chart)?,
        "--namespace",
        &mine.0,
        "--set",
        &watch,
        // without node access, as a user who wants no cluster-wide RBAC at all installs it
        "--set",
        "rbac.readNodes=false",
        "--wait",
        "--timeout",
        "120s",
    ];
    run(&bin("helm"), &install)?;
    let result = async {
        let roles = kubectl(&[
            "get",
            "role,rolebinding",
            "-n",
            &mine.0,
            "-l",
            "app.kubernetes.io/instance=tfs-scoped",
            "-o",
            "name",
        ])?;
        ensure!(roles.contains("role.rbac") && roles.contains("rolebinding.rbac"), "no Role/RoleBinding: {roles}");
        let cluster = kubectl(&[
            "get",
            "clusterrole,clusterrolebinding",
            "-l",
            "app.kubernetes.io/instance=tfs-scoped",
            "-o",
            "name",
        ])?;
        ensure!(cluster.trim().is_empty(), "a namespace-scoped install made cluster-wide RBAC: {cluster}");
        let c = client().await?;
        let t = Tfs::create(&c, &mine.0, "demo", 2).await?;
        t.wait_healthy(2, 1, Duration::from_secs(180)).await?;
        let ignored = Tfs::create_with(&c, &other.0, "demo", 2, "  tls:\n    enabled: false").await?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let st = ignored.get().await?.status;
        ensure!(st.is_none(), "the scoped operator touched a TfsNameserver of another namespace: {st:?}");
        let pods = kubectl(&["get", "pods", "-n", &other.0, "-o", "name"])?;
        ensure!(pods.trim().is_empty(), "pods in the unwatched namespace: {pods}");
        println!("scenario=scoped {} Healthy under a Role; {} left alone", mine.0, other.0);
        Ok::<(), anyhow::Error>(())
    }
    .await;
    // The unwatched resource's finalizer was never added: deleting it needs no operator.
    let _ = kubectl(&["delete", "tfsns", "--all", "-n", &mine.0, "--wait=true", "--timeout=90s"]);
    let _ = run(&bin("helm"), &["uninstall", "tfs-scoped", "--namespace", &mine.0, "--wait"]);
    result
}
