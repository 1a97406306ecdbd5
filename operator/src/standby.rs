//! What a standby operator does besides waiting for the leadership: it watches the heartbeat
//! Leases the controller would judge (labelled `app.kubernetes.io/managed-by=tfs-operator`, in the
//! namespaces it would reconcile) and records, per Lease, the version and the instant it first saw
//! it on its own clock (lease.rs `Sightings`). When the process becomes leader these sightings
//! seed the controller's Lease clocks, so a Lease whose holder went silent while the old leader
//! was being replaced is judged from when this process saw it last change, not from zero again:
//! losing the master's node and the leader's node together costs about max(leader lease,
//! nameserver lease), not their sum.
//!
//! The rule stays "judge expiry from this process's own observations only": these are its own,
//! made before it led; the safety argument is on `Sightings`.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::lease::Sightings;
use crate::names::{LABEL_MANAGED_BY, MANAGER};

/// The watch of a standby; `take` stops it and hands over what it saw.
pub struct Watch {
    seen: Arc<Mutex<Sightings>>,
    task: JoinHandle<()>,
}

impl Watch {
    /// Starts watching the heartbeat Leases of `namespace` (every namespace if None).
    pub fn start(client: Client, namespace: Option<&str>) -> Self {
        let api: Api<Lease> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let task = tokio::spawn(watch(api, seen.clone()));
        Watch { seen, task }
    }

    /// Stops the watch and returns its sightings, each as of the moment it was made.
    pub fn take(self) -> Sightings {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock())
    }
}

/// The watch's loop: every event is applied at the instant it arrives (a failure drops every
/// sighting; the watcher lists again after its back-off).
async fn watch(api: Api<Lease>, seen: Arc<Mutex<Sightings>>) {
    let wc = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let mut events = watcher(api, wc).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        if let Err(e) = &ev {
            warn!(error = %e, "standby: watching the heartbeat Leases failed; their sightings start again");
        }
        seen.lock().apply(&ev, Instant::now());
    }
}

#[cfg(test)]
mod tests;
