//! `kubectl tfs`: a kubectl plugin for TfsNameservers (kubectl runs `kubectl-tfs` found on PATH).
//! `status` shows one resource as an incident needs it; `switchover` asks for a planned
//! switchover and waits for its outcome; `replace` asks for a lost instance to be made anew on
//! another node and waits until it is back. What they show and decide is in `tfs_operator::plugin`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tfs_operator::crd::{ReplicationMode, TfsNameserver};
use tfs_operator::lease::LeaseView;
use tfs_operator::names::{self, ANN_REPLACE_INSTANCE, ANN_SWITCHOVER_TO, LABEL_INSTANCE};
use tfs_operator::plugin::{self, Replacement, Switchover};

#[derive(Debug, Parser)]
#[command(name = "kubectl tfs", version, about = "Status, switchover, replacement and backups of TfsNameservers")]
struct Cli {
    /// Namespace of the TfsNameserver (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Master, epoch, Lease, failovers, and each instance: role, durable seq, lag, sync-set
    /// membership, node, IP, restarts; then the conditions.
    Status { name: String },
    /// Planned switchover to a slave of the sync set: the master drains, then hands its Lease
    /// over; waits for the outcome and prints it.
    Switchover {
        name: String,
        /// The pod to make master.
        pod: String,
        /// How long to wait for the outcome.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Replace a slave whose node is lost for good (NotReady, unreachable or deleted), or whose pod
    /// is Pending: the operator deletes its claim and pod, makes a new instance on another node
    /// and seeds it from the master. Waits until it is ready and in the sync set, printing progress.
    Replace {
        name: String,
        /// The instance (pod) to replace.
        pod: String,
        /// How long to wait for the new instance (a large state takes a while to seed).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Take a backup now: creates the TfsBackup `<name>-<time>` (the master writes a checkpoint
    /// to the archive of spec.backup) and waits, printing its progress.
    Backup {
        name: String,
        /// How long to wait for it to complete.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Run tfsctl against the master through a port-forward, with the client certificate of
    /// Secret `<name>-client` when TLS is on: `kubectl tfs ctl demo -- status`.
    Ctl {
        name: String,
        /// tfsctl's arguments (after --).
        #[arg(last = true, required = true)]
        args: Vec<String>,
        /// The tfsctl binary.
        #[arg(long, default_value = "tfsctl", env = "TFSCTL")]
        tfsctl: String,
    },
    /// Check a record of acknowledged writes (tfsctl bench --record) against the master:
    /// `kubectl tfs verify demo --record acked` is `kubectl tfs ctl demo -- verify --record acked`.
    Verify {
        name: String,
        #[arg(long)]
        record: std::path::PathBuf,
        #[arg(long, default_value = "tfsctl", env = "TFSCTL")]
        tfsctl: String,
    },
}

/// `kubectl tfs backup`: creates a TfsBackup of `t` and prints its progress until it is final.
async fn backup(client: &kube::Client, ns: &str, t: &TfsNameserver, timeout: Duration) -> Result<()> {
    use tfs_operator::crd::{TfsBackup, TfsBackupSpec};
    let name = t.metadata.name.clone().unwrap_or_default();
    if t.spec.backup.is_none() {
        bail!("TfsNameserver {name} has no spec.backup: there is no archive to back up to");
    }
    let api: Api<TfsBackup> = Api::namespaced(client.clone(), ns);
    let backup_name = plugin::backup_name(&name, k8s_openapi::jiff::Timestamp::now());
    let mut b = TfsBackup::new(&backup_name, TfsBackupSpec { nameserver: name.clone() });
    b.metadata.namespace = Some(ns.to_string());
    api.create(&Default::default(), &b).await.with_context(|| format!("cannot create TfsBackup {backup_name}"))?;
    println!("tfsbackup {ns}/{backup_name} created");
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let now = api.get(&backup_name).await?;
        let (line, done) = plugin::backup_progress(now.status.as_ref());
        if line != last {
            println!("{backup_name}: {line}");
            last = line;
        }
        match done {
            Some(true) => return Ok(()),
            Some(false) => bail!("backup {backup_name} failed (kubectl describe tfsbackup {backup_name})"),
            None if started.elapsed() > timeout => {
                bail!("backup {backup_name} not complete after {timeout:?}; the operator goes on with it")
            }
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = kube::Client::try_default().await.context("no cluster: check KUBECONFIG or the current context")?;
    let ns = cli.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let tfs: Api<TfsNameserver> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let get = |name: String| {
        let tfs = tfs.clone();
        let ns = ns.clone();
        async move { tfs.get_opt(&name).await?.with_context(|| format!("no TfsNameserver {name} in namespace {ns}")) }
    };
    match cli.cmd {
        Cmd::Backup { name, timeout } => return backup(&client, &ns, &get(name.clone()).await?, timeout).await,
        Cmd::Verify { name, record, tfsctl } => {
            let args = vec!["verify".to_string(), "--record".into(), record.to_string_lossy().into_owned()];
            return ctl(&client, &ns, &get(name.clone()).await?, &tfsctl, &args).await;
        }
        Cmd::Ctl { name, args, tfsctl } => return ctl(&client, &ns, &get(name.clone()).await?, &tfsctl, &args).await,
        Cmd::Status { name } => {
            let t = get(name.clone()).await?;
            let lease = leases.get_opt(&names::lease(&name)).await?;
            let pods = Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&ListParams::default().labels(&format!("{LABEL_INSTANCE}={name}")))
                .await?
                .items;
            print!("{}", plugin::status(&t, lease.as_ref(), &pods, k8s_openapi::jiff::Timestamp::now()));
        }
        Cmd::Replace { name, pod, timeout } => {
            let t = get(name.clone()).await?;
            if let Some(why) = plugin::replace_refusal(&t, &pod) {
                bail!("replacement of {pod} refused: {why}");
            }
            let pods = Api::<Pod>::namespaced(client.clone(), &ns);
            let old = pods.get_opt(&pod).await?;
            let old_uid = old.as_ref().and_then(|p| p.metadata.uid.clone());
            let was = match old.as_ref().and_then(|p| p.spec.as_ref()?.node_name.clone()) {
                Some(n) => format!("its pod is on node {n}"),
                None if old.is_some() => "its pod is Pending".into(),
                None => "it has no pod".into(),
            };
            let started = Instant::now();
            let asked_at = k8s_openapi::jiff::Timestamp::now();
            let patch = serde_json::json!({ "metadata": { "annotations": { ANN_REPLACE_INSTANCE: pod } } });
            tfs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            println!("replacement of {ns}/{name}'s instance {pod} asked ({was})");
            let mut last = Replacement::Asked;
            loop {
                let t = get(name.clone()).await?;
                let now = pods.get_opt(&pod).await?;
                let stage = plugin::replace_progress(&t, &pod, old_uid.as_deref(), now.as_ref());
                if last == Replacement::Asked && stage != Replacement::Asked {
                    // The operator has answered: a refusal is an Event.
                    if let Some(why) =
                        reason_since(&client, &ns, &t, ("ReplaceRejected", Some(pod.as_str())), asked_at).await
                    {
                        bail!("the operator refused to replace {pod}: {why}");
                    }
                    // (printed even when the next stage came before we looked)
                    if !matches!(stage, Replacement::Refused | Replacement::Deleted) {
                        println!("{pod}: claim {} and pod deleted", names::pvc_of(&pod));
                    }
                }
                if stage != last {
                    match &stage {
                        Replacement::Asked => {}
                        Replacement::Refused => bail!(
                            "the operator refused to replace {pod} (kubectl get events --field-selector \
                             involvedObject.name={name},reason=ReplaceRejected says why)"
                        ),
                        Replacement::Deleted => println!("{pod}: claim {} and pod deleted", names::pvc_of(&pod)),
                        Replacement::Created => println!("{pod}: new pod created, waiting for a node"),
                        Replacement::Scheduled { node } => {
                            println!("{pod}: new pod on node {node}, joining as a slave and seeded from the master")
                        }
                        Replacement::Ready { node } => {
                            let sync =
                                if t.spec.replication.mode == ReplicationMode::Sync { " in the sync set" } else { "" };
                            println!(
                                "{pod} is ready on node {node}, a slave{sync}, after {:.2} s",
                                started.elapsed().as_secs_f64()
                            );
                            return Ok(());
                        }
                    }
                    last = stage;
                }
                if started.elapsed() > timeout {
                    if last == Replacement::Asked {
                        // Withdraw the request: the operator must not act on it once we said it failed.
                        let clear =
                            serde_json::json!({ "metadata": { "annotations": { ANN_REPLACE_INSTANCE: null } } });
                        let _ = tfs.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await;
                        bail!(
                            "the operator did not act on the replacement of {pod} within {timeout:?}; the request was withdrawn"
                        );
                    }
                    bail!(
                        "{pod} is not back after {timeout:?} ({last:?}); the operator goes on: kubectl tfs status {name}, \
                         kubectl describe pod {pod}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Cmd::Switchover { name, pod, timeout } => {
            let t = get(name.clone()).await?;
            if let Some(why) = plugin::switchover_refusal(&t, &pod) {
                bail!("switchover to {pod} refused: {why}");
            }
            let before = LeaseView::of(&leases.get(&names::lease(&name)).await?);
            let started = Instant::now();
            let asked_at = k8s_openapi::jiff::Timestamp::now();
            let patch = serde_json::json!({ "metadata": { "annotations": { ANN_SWITCHOVER_TO: pod } } });
            tfs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            println!("switchover of {ns}/{name} from {} (epoch {}) to {pod} asked", before.holder, before.epoch);
            let refused_before = before.handover_refused.clone();
            let progress =
                |lv: &LeaseView| plugin::switchover_progress(lv, &pod, before.epoch, refused_before.as_deref());
            loop {
                let lv = LeaseView::of(&leases.get(&names::lease(&name)).await?);
                match progress(&lv) {
                    Switchover::Done { epoch } => {
                        println!("{pod} is master at epoch {epoch} after {:.2} s", started.elapsed().as_secs_f64());
                        return Ok(());
                    }
                    Switchover::Refused(why) => bail!("the master refused the handover: {why}"),
                    Switchover::Pending => {}
                }
                // The operator clears the annotation when done, and when it rejects the request
                // (an Event says why).
                let asked =
                    get(name.clone()).await?.metadata.annotations.unwrap_or_default().contains_key(ANN_SWITCHOVER_TO);
                if !asked {
                    // Read the Lease again: it may have moved since it was read above.
                    let lv = LeaseView::of(&leases.get(&names::lease(&name)).await?);
                    if let Switchover::Done { epoch } = progress(&lv) {
                        println!("{pod} is master at epoch {epoch} after {:.2} s", started.elapsed().as_secs_f64());
                        return Ok(());
                    }
                    let why = reason_since(&client, &ns, &t, ("SwitchoverRejected", None), asked_at)
                        .await
                        .unwrap_or_else(|| "no reason recorded".into());
                    bail!("the operator rejected the switchover: {why}");
                }
                if started.elapsed() > timeout {
                    // Withdraw the request: the operator must not go on with it once we said it failed.
                    let clear = serde_json::json!({ "metadata": { "annotations": { ANN_SWITCHOVER_TO: null } } });
                    let _ = tfs.patch(&name, &PatchParams::default(), &Patch::Merge(&clear)).await;
                    bail!(
                        "{pod} is not master after {timeout:?} (Lease holder {}, epoch {}); the request was withdrawn",
                        lv.holder,
                        lv.epoch
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

/// The newest Event of `t` with this reason (and naming `related` as its second object, when
/// given) seen since `since` (an older one is another request's). A repeated Event counts at its
/// last occurrence.
async fn reason_since(
    client: &kube::Client,
    ns: &str,
    t: &TfsNameserver,
    (reason, related): (&str, Option<&str>),
    since: k8s_openapi::jiff::Timestamp,
) -> Option<String> {
    let uid = t.metadata.uid.as_deref()?;
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .ok()?;
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| related.is_none() || e.related.as_ref().and_then(|r| r.name.as_deref()) == related)
        .filter_map(|e| {
            let times = [
                e.event_time.as_ref().map(|t| t.0),
                e.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0),
                e.last_timestamp.as_ref().map(|t| t.0),
            ];
            Some((times.into_iter().flatten().max()?, e))
        })
        // (a second of slack: the event carries the operator's clock, which ours may lead)
        .filter(|(at, _)| at.as_second() + 1 >= since.as_second())
        .max_by_key(|(at, _)| *at)
        .and_then(|(_, e)| e.message)
}

/// Runs `tfsctl ARGS` against the master's client port through a port-forward (no route to the
/// cluster's addresses needed), with the client Secret's certificate when TLS is on.
async fn ctl(client: &kube::Client, ns: &str, t: &TfsNameserver, tfsctl: &str, args: &[String]) -> Result<()> {
    let name = t.metadata.name.clone().unwrap_or_default();
    let master = t
        .status
        .as_ref()
        .and_then(|s| s.master.clone())
        .filter(|m| !m.is_empty())
        .with_context(|| format!("{ns}/{name} has no master to connect to"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let port = names::CLIENT_PORT as u16;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (pods, master) = (pods.clone(), master.clone());
            tokio::spawn(async move {
                let forwarded = async {
                    let mut pf = pods.portforward(&master, &[port]).await?;
                    let mut upstream = pf.take_stream(port).context("no stream for the port")?;
                    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
                    anyhow::Ok(())
                };
                if let Err(e) = forwarded.await {
                    eprintln!("port-forward to {master}:{port}: {e:#}");
                }
            });
        }
    });
    let mut cmd = tokio::process::Command::new(tfsctl);
    cmd.arg("--addr").arg(local.to_string()).args(args);
    let _certs = if t.spec.tls.enabled {
        let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
            .get(&names::client_secret(&name))
            .await
            .with_context(|| format!("TLS is on: reading Secret {ns}/{}", names::client_secret(&name)))?;
        let dir = tempfile::tempdir()?;
        let data = secret.data.unwrap_or_default();
        for (key, env) in [("ca.crt", "TFS_CA"), ("tls.crt", "TFS_CERT"), ("tls.key", "TFS_KEY")] {
            let v = data.get(key).with_context(|| format!("Secret {} has no {key}", names::client_secret(&name)))?;
            std::fs::write(dir.path().join(key), &v.0)?;
            cmd.env(env, dir.path().join(key));
        }
        // The master's client port serves the VIP's certificate, which names the resource.
        cmd.env("TFS_TLS_SERVER_NAME", &name);
        Some(dir)
    } else {
        None
    };
    let status = cmd.status().await.with_context(|| format!("cannot run {tfsctl} (set --tfsctl or TFSCTL)"));
    // The client key is removed before exiting, whatever tfsctl did.
    drop(_certs);
    let status = status?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
