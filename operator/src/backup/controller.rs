//! The TfsBackup controller: one attempt per reconcile, the state machine in decide.rs.
//!
//! Run by the leader only, beside the TfsNameserver controller (bin/tfs-operator.rs), over the
//! same namespaces. The master is the holder of the TfsNameserver's heartbeat Lease; it is
//! called on its client port with the TLS the operator reads Status with (the CA and client
//! certificate of Secret `<name>-client`, the pod's name as the server name).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use tfs_nameserver::proto::{self, backup_client::BackupClient};
use tracing::{info, warn};

use super::decide::{self, Next, Outcome, Taken};
use crate::crd::{TfsBackup, TfsNameserver};
use crate::error::{Error, Result};
use crate::lease::LeaseView;
use crate::names::{self, CLIENT_PORT, MANAGER};

/// How long the master may take to write and upload the checkpoint.
const TAKE_TIMEOUT: Duration = Duration::from_secs(600);

struct Ctx {
    client: Client,
    recorder: Recorder,
    /// Per TfsBackup (namespace/name): no attempt before this instant (the back-off; a reconcile
    /// that its own status write triggers waits it out).
    not_before: Mutex<HashMap<String, Instant>>,
}

/// Runs the TfsBackup controller until a shutdown signal (every namespace, or `namespace`).
pub async fn run(client: Client, namespace: Option<String>) {
    let api: Api<TfsBackup> = match namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Without the CRD (an install that predates it) the rest of the operator runs on.
    if let Err(e) = api.list_metadata(&ListParams::default().limit(1)).await {
        warn!(error = %e, "cannot list TfsBackups (is the CRD installed?): on-demand backups are off");
        return;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() },
    );
    let ctx = Arc::new(Ctx { client, recorder, not_before: Mutex::new(HashMap::new()) });
    info!("watching TfsBackups");
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "TfsBackup reconcile failed");
            }
        })
        .await;
}

fn error_policy(b: Arc<TfsBackup>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(name = %b.name_any(), error = %e, "TfsBackup reconcile error");
    Action::requeue(Duration::from_secs(2))
}

fn key(b: &TfsBackup) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

async fn reconcile(b: Arc<TfsBackup>, ctx: Arc<Ctx>) -> Result<Action> {
    let prev = b.status.clone().unwrap_or_default();
    if prev.phase.is_some_and(|p| p.done()) {
        ctx.not_before.lock().remove(&key(&b));
        return Ok(Action::await_change());
    }
    let now = Time(Timestamp::now());
    if let Some(next) = decide::begin(&prev, &now) {
        return write(&b, &ctx, next).await;
    }
    let wait = ctx.not_before.lock().get(&key(&b)).map(|t| t.saturating_duration_since(Instant::now()));
    if let Some(w) = wait.filter(|w| !w.is_zero()) {
        return Ok(Action::requeue(w));
    }
    let outcome = attempt(&b, &ctx.client).await;
    write(&b, &ctx, decide::decide(&prev, outcome, &Time(Timestamp::now()))).await
}

async fn write(b: &TfsBackup, ctx: &Ctx, next: Next) -> Result<Action> {
    let ns = b.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<TfsBackup> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &b.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": next.status })),
    )
    .await?;
    if let Some((warning, reason, note)) = next.event {
        if warning {
            warn!(backup = %key(b), reason, %note, "backup");
        } else {
            info!(backup = %key(b), reason, %note, "backup");
        }
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Backup".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &b.object_ref(&())).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }
    Ok(match next.requeue {
        Some(wait) => {
            ctx.not_before.lock().insert(key(b), Instant::now() + wait);
            Action::requeue(wait)
        }
        None => {
            ctx.not_before.lock().remove(&key(b));
            Action::await_change()
        }
    })
}

/// One attempt: find the nameserver and its master, and ask it to take the backup.
async fn attempt(b: &TfsBackup, client: &Client) -> Outcome {
    let ns = b.namespace().unwrap_or_default();
    let name = b.spec.nameserver.as_str();
    // Listed by name (the operator lists and watches TfsNameservers; it needs no get).
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    let t = match Api::<TfsNameserver>::namespaced(client.clone(), &ns).list(&lp).await {
        Ok(l) => match l.items.into_iter().next() {
            Some(t) => t,
            None => return Outcome::NameserverMissing(format!("no TfsNameserver {name} in namespace {ns}")),
        },
        Err(e) => return Outcome::Unreachable(format!("cannot read TfsNameserver {name}: {e}")),
    };
    if t.spec.backup.is_none() {
        return Outcome::NoBackupSpec(format!(
            "TfsNameserver {name} has no spec.backup: there is no archive to back up to"
        ));
    }
    let master = match Api::<Lease>::namespaced(client.clone(), &ns).get_opt(&names::lease(name)).await {
        Ok(Some(l)) => LeaseView::of(&l).holder,
        Ok(None) => String::new(),
        Err(e) => return Outcome::Unreachable(format!("cannot read the Lease of {name}: {e}")),
    };
    if master.is_empty() {
        return Outcome::Unreachable(format!("TfsNameserver {name} has no master"));
    }
    let ip = match Api::<Pod>::namespaced(client.clone(), &ns).get_opt(&master).await {
        Ok(p) => p.and_then(|p| p.status?.pod_ip),
        Err(e) => return Outcome::Unreachable(format!("cannot read pod {master}: {e}")),
    };
    let Some(ip) = ip else { return Outcome::Unreachable(format!("the master {master} has no IP")) };
    let tls = if t.spec.tls.enabled {
        match client_tls(client, &ns, name, &master).await {
            Ok(c) => Some(c),
            Err(why) => return Outcome::Unreachable(why),
        }
    } else {
        None
    };
    match take(&ip, tls).await {
        Ok(r) => Outcome::Taken(Taken {
            master,
            epoch: r.epoch,
            seq: r.seq,
            bytes: r.bytes,
            object: r.checkpoint_object,
            archived_seq: r.archived_seq,
        }),
        Err(why) => Outcome::Unreachable(format!("the master {master}: {why}")),
    }
}

/// The operator's client certificate and the CA (Secret `<name>-client`), for the pod `server`.
async fn client_tls(
    client: &Client,
    ns: &str,
    name: &str,
    server: &str,
) -> std::result::Result<tonic::transport::ClientTlsConfig, String> {
    let secret_name = names::client_secret(name);
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&secret_name)
        .await
        .map_err(|e| format!("cannot read Secret {secret_name}: {e}"))?
        .ok_or_else(|| format!("no Secret {secret_name} (the client certificate) yet"))?;
    let data = s.data.unwrap_or_default();
    let get = |k: &str| data.get(k).map(|b| b.0.clone()).ok_or_else(|| format!("Secret {secret_name} lacks {k}"));
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(get("ca.crt")?))
        .identity(tonic::transport::Identity::from_pem(get("tls.crt")?, get("tls.key")?))
        .domain_name(server.to_string()))
}

async fn take(
    ip: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> std::result::Result<proto::TakeBackupReply, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{ip}:{CLIENT_PORT}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2));
    if let Some(t) = tls {
        ep = ep.tls_config(t).map_err(|e| e.to_string())?;
    }
    let call = async {
        let ch = ep.connect().await.map_err(|e| format!("cannot connect: {e}"))?;
        BackupClient::new(ch)
            .take_backup(proto::TakeBackupRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    tokio::time::timeout(TAKE_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer within {}s", TAKE_TIMEOUT.as_secs()))?
}
