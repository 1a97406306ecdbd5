//! Leader election between operator replicas, on a `coordination.k8s.io/v1` Lease
//! (`tfs-operator-leader` in the operator's namespace, holder = the pod's name).
//!
//! Only the leader runs the controller (reconciles, promotions, every write to TfsNameservers,
//! their Leases, pods and Services); a standby serves /metrics and /health and waits.
//!
//! Our own code rather than a crate, because the semantics must be the ones the heartbeat Lease
//! already has (lease.rs), and the crates we looked at differ: kube-leader-election is built on
//! kube 4 (we are on 5); kube-lease-manager judges expiry from the holder's `renewTime` against the
//! standby's wall clock (clocks of different nodes disagree) and renews with unconditioned patches
//! (we hold no `patch` on Leases, and a stale holder must not be able to extend another's term).
//! Here, as in client-go:
//!
//! - a standby judges the Lease on its own monotonic clock: taken only when released, or when its
//!   version has not changed for the lease duration since this process first saw that version;
//! - every write is an update conditioned on the resourceVersion read (a 409 means someone else
//!   wrote first: decide again on what is there now);
//! - the leader counts its term from the *start* of its last successful write: it stops acting at
//!   `renew_deadline` after that, before any standby (which saw that write no earlier than it
//!   began) can judge the Lease expired. Stopping is replacing the process image (execve of our own binary, `restart_as_standby`): the controller's
//!   in-flight work cannot outlive it, and the fresh image starts as a standby.
//!
//! Invariant (one leader acting): a process acts as leader only within `renew_deadline` of the
//! start of a write that made or kept it holder (its controllers' writes are held to that term as
//! they leave, leader/term.rs); another process takes the Lease only after
//! `lease_duration` (> `renew_deadline`) without a change on its own clock, or once released —
//! and the leader releases only after its controller has stopped.
//!
//! A new leader starts its controller from nothing a predecessor saw (controller::run builds a fresh
//! Context): every heartbeat Lease is read again and its expiry judged from this process's own
//! observations only (lease.rs `LeaseClock`) — those it made while standing by included (standby.rs:
//! "version V unchanged since my instant T", seeding the clocks). A process leads at most once:
//! losing the Lease ends it.
//!
//! The decision is pure (leader/decide.rs); its IO, the Lease's watch and writes, is
//! leader/driver.rs; here the election as the rest of the operator starts and stops it.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::{oneshot, watch};
use tracing::error;

use crate::metrics::Metrics;

/// The Lease's default name.
pub const LEASE_NAME: &str = "tfs-operator-leader";

mod decide;
pub use decide::*;

/// Where and as whom to run the election.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub timing: Timing,
}

/// A running election: `leading()` resolves once this process leads; `shutdown()` stops it and
/// releases the Lease if held. Losing the Lease replaces the process with a fresh standby.
pub struct Election {
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    term: Term,
}

/// Ends at once everything this process does as leader, and starts it again as a standby: the
/// process image is replaced by a fresh one of our own binary with our own arguments (execve), so
/// no task, connection or write in flight of the old image survives — as with an exit — but the
/// kubelet sees no container restart. An exit made each deposed leader a restarted container, and
/// repeated failovers put the standby into CrashLoopBackOff: measured, after three leader losses
/// in a row the standby was waiting out its back-off when the next leader's node was lost, and
/// that failover took 31 s instead of 5–6 s. (Every descriptor is close-on-exec, as Rust and
/// tokio open them, so the new image binds its ports afresh.) If the exec fails: exit.
fn restart_as_standby() -> ! {
    use std::os::unix::process::CommandExt;
    let err = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec(),
        Err(e) => e,
    };
    error!(error = %err, "cannot start the operator again in place: exiting (the container restarts)");
    std::process::exit(1);
}

impl Election {
    pub fn start(client: Client, cfg: Config, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        metrics.leader.set(0);
        let term = Term::default();
        let driver = tokio::spawn(Driver::new(client, cfg, metrics, term.clone()).run(tx, stop_rx));
        // Without its driver a leader would go on acting with nobody renewing: a panic there
        // ends the process like a lost Lease.
        tokio::spawn(async move {
            if let Err(e) = driver.await
                && e.is_panic()
            {
                error!(error = %e, "the leader election task panicked: exiting");
                std::process::exit(1);
            }
        });
        Election { leading: rx, stop: Some(stop_tx), term }
    }

    /// `client` for the controllers: its writes are sent only while this process's term as leader
    /// runs (term.rs).
    pub fn guard(&self, client: Client) -> Client {
        self.term.guard(client)
    }

    /// Resolves once this process is the leader; false if the election ended first.
    pub async fn leading(&mut self) -> bool {
        self.leading.wait_for(|l| *l).await.is_ok()
    }

    /// Stops the election; a leader releases the Lease (call once the controller has stopped).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), done_rx).await;
            }
        }
    }
}

mod driver;
mod term;
use driver::Driver;
use term::Term;

#[cfg(test)]
mod tests;
