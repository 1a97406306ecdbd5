//! The heart: a sidecar in each nameserver pod that keeps the heartbeat Lease for its nameserver
//! (the seed's heart agent, on a Kubernetes Lease instead of a VIP).
//!
//! What it does at each look is decided by [`decide`] (heart/decide.rs, pure, with its table):
//! renew and extend the mastership, release, do nothing while the nameserver is hung, follow the
//! holder, or hand over when asked (a switchover) — or refuse that before draining anything. This
//! file is the IO: the loop, the API calls, the AssumeRole/Drain calls to the nameserver; what
//! each write puts on the Lease is lease.rs's protocol.
//!
//! Invariant: the heart never extends a mastership beyond renewDeadline after the start of a
//! renew that the API server accepted — the grant carries that end as an instant of CLOCK_BOOTTIME,
//! which the nameserver shares, so no pause between the renew and the grant's arrival extends it —
//! and releases the Lease only when its nameserver cannot be accepting writes (dead, restarted
//! below its epoch, or drained; after a grant that may still be pending, once it has ended), and
//! only while it holds it (a renew answered after its grant would have ended grants nothing: the
//! Lease may have gone to another master meanwhile).
//!
//! Event-driven: the heart acts at once, not at its next tick, on the two events of a crash
//! failover — its nameserver's death (a connection it holds open on the admin port closes: the
//! kernel closes a dead process's sockets; see [`watch_nameserver`]) and a change of its Lease (a
//! watch: a promotion, a handover request, a release). The tick (200 ms) remains for what no event
//! announces (a hung nameserver, the renew period). The Lease is known from the watch and from the
//! heart's own writes ([`LeaseCache`]) instead of being read at every step; every write stays
//! conditioned on the resourceVersion it was decided on, so a stale view can only make a write
//! fail — then the Lease is read and the step made again at once — never renew, grant, release or
//! hand over on a Lease that changed meanwhile. The Lease remains the only authority.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::proto::{self, admin_client::AdminClient};
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::lease::{self, LeaseView, SyncSet, Taken};
use crate::names::*;

mod cache;
mod decide;
mod nameserver;
mod watch;

pub use cache::LeaseCache;
pub use decide::{Action, Health, address_needed, decide};
pub use watch::watch_nameserver;

#[derive(Debug, Clone)]
pub struct HeartConfig {
    pub name: String,
    pub namespace: String,
    pub pod: String,
    pub admin_addr: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

pub struct Heart {
    cfg: HeartConfig,
    leases: Api<Lease>,
    pods: Api<Pod>,
    admin: AdminClient<Channel>,
    last_renew: Option<Instant>,
    /// End of the last mastership granted (CLOCK_BOOTTIME): a grant whose AssumeRole failed may
    /// still be applied, so the Lease is not released before it passed.
    granted_until: Option<Duration>,
    /// (holder, epoch) → its replication address. Keyed by epoch too: a pod recreated under
    /// the same name has a new address, and it can only hold the Lease again at a new epoch.
    holder_addr: Option<((String, Epoch), String)>,
    metrics: std::sync::Arc<crate::metrics::HeartMetrics>,
    /// The Lease as watched or last written or read.
    lease: LeaseCache,
    /// How often the heart looks without an event ([`TICK`]; tests make it long, so that only an
    /// event explains what the heart does).
    tick: Duration,
}

const TICK: Duration = Duration::from_millis(200);

impl Heart {
    pub fn new(
        client: Client,
        cfg: HeartConfig,
        metrics: std::sync::Arc<crate::metrics::HeartMetrics>,
    ) -> anyhow::Result<Self> {
        let ch = Endpoint::from_shared(format!("http://{}", cfg.admin_addr))?
            .connect_timeout(Duration::from_millis(200))
            .connect_lazy();
        Ok(Heart {
            leases: Api::namespaced(client.clone(), &cfg.namespace),
            pods: Api::namespaced(client, &cfg.namespace),
            admin: AdminClient::new(ch),
            cfg,
            last_renew: None,
            granted_until: None,
            holder_addr: None,
            metrics,
            lease: LeaseCache::default(),
            tick: TICK,
        })
    }

    /// Writes the Lease, conditioned on the resourceVersion `l` carries; what was written becomes
    /// the Lease as known.
    async fn replace(&mut self, l: &Lease) -> Result<Lease, kube::Error> {
        let written = self
            .leases
            .replace(
                &lease(&self.cfg.name),
                &PostParams { field_manager: Some("tfs-heart".into()), ..Default::default() },
                l,
            )
            .await?;
        self.lease.wrote(l.metadata.resource_version.clone(), written.clone(), Instant::now());
        Ok(written)
    }

    /// The Lease: as the watch shows it, or read.
    async fn current_lease(&mut self) -> Result<Lease, kube::Error> {
        if let Some(l) = self.lease.current(Instant::now()) {
            return Ok(l.clone());
        }
        let l = self.leases.get(&lease(&self.cfg.name)).await?;
        self.lease.saw(l.clone(), Instant::now());
        Ok(l)
    }

    /// The holder's replication address (pod IP and port).
    async fn master_addr(&mut self, holder: &str, epoch: Epoch) -> Option<String> {
        let key = (holder.to_string(), epoch);
        if let Some((k, a)) = &self.holder_addr
            && *k == key
        {
            return Some(a.clone());
        }
        let addr = self.pod_addr(holder).await?;
        self.holder_addr = Some((key, addr.clone()));
        Some(addr)
    }

    async fn pod_addr(&self, pod: &str) -> Option<String> {
        let ip = self.pods.get(pod).await.ok()?.status?.pod_ip.filter(|ip| !ip.is_empty())?;
        Some(format!("{ip}:{REPL_PORT}"))
    }

    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        info!(pod = %self.cfg.pod, lease = %self.cfg.name, "heart started");
        let wc = watcher::Config::default().fields(&format!("metadata.name={}", lease(&self.cfg.name)));
        let mut events = watcher(self.leases.clone(), wc).default_backoff().boxed();
        let closed = Arc::new(Notify::new());
        let nameserver = tokio::spawn(watch_nameserver(self.cfg.admin_addr.clone(), closed.clone(), self.tick));
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let look = tokio::select! {
                _ = shutdown.changed() => break,
                _ = closed.notified() => true,
                ev = events.next() => match ev {
                    Some(ev) => {
                        if let Err(e) = &ev {
                            warn!(error = %e, "watching the Lease failed; reading it at every step meanwhile");
                        }
                        self.lease.on_event(ev, Instant::now())
                    }
                    // (a watcher never ends; if it did, the ticks and reads would go on alone)
                    None => {
                        events = futures::stream::pending().boxed();
                        false
                    }
                },
                _ = tick.tick() => true,
            };
            if look {
                self.beat().await;
            }
        }
        nameserver.abort();
        self.on_shutdown().await;
    }

    /// One step; a write refused for a changed Lease (409: the view it was decided on is stale)
    /// is decided again at once on the Lease read afresh.
    async fn beat(&mut self) {
        let mut r = self.step().await;
        if r.as_ref().err().is_some_and(conflict) {
            self.lease.forget();
            r = self.step().await;
        }
        if let Err(e) = r {
            // A holder whose step failed (the Lease unreadable, or the renew refused) has missed
            // a renewal: what the renew-failure alert counts.
            if self.metrics.holder.get() == 1 {
                self.metrics.renew_failures.inc();
            }
            warn!(error = %e, "heart step failed");
        }
    }

    /// One look: the inputs gathered, [`decide`] on them, its action carried out.
    async fn step(&mut self) -> anyhow::Result<()> {
        let health = self.health().await;
        let l = self.current_lease().await?;
        let lv = LeaseView::of(&l);
        let me = self.cfg.pod.clone();
        self.metrics.holder.set((lv.holder == me) as i64);
        if lv.holder != me {
            self.last_renew = None;
        }
        let addr = match decide::address_needed(&lv, &health, &me) {
            Some(pod) if pod == lv.holder => self.master_addr(pod, lv.epoch).await,
            Some(pod) => self.pod_addr(pod).await,
            None => None,
        };
        let due = self.last_renew.is_none_or(|t| t.elapsed() >= self.cfg.retry_period);
        match decide(&lv, &health, &me, due, addr.as_deref()) {
            Action::HandOver { target, addr, epoch } => self.hand_over(&l, (&target, epoch), addr).await?,
            Action::Renew { epoch, publish, refused } => {
                if let Some(why) = &refused {
                    // Refused before anything was drained: this renewal removes the request, so a
                    // planned operation never turns into an unplanned failover.
                    warn!(reason = %why, "switchover refused; renewing as master");
                }
                self.renew(&l, epoch, publish, refused).await?
            }
            Action::Release { why } => self.release(&l, &why).await?,
            Action::Hung => warn!("nameserver not answering: not renewing; it fences itself when its validity lapses"),
            Action::Follow { master, addr, epoch } => {
                info!(%master, %addr, %epoch, "following the lease holder");
                self.follow(epoch, (addr, master)).await?;
            }
            Action::Nothing => {}
        }
        Ok(())
    }

    /// Renews the Lease, publishing the sync set, then extends the mastership. The validity is
    /// counted from before the request: whatever the renew's latency, it ends renewDeadline after
    /// a moment at which the Lease was still ours.
    /// `refused`: a handover request this renewal removes, with why it was refused.
    async fn renew(
        &mut self,
        l: &Lease,
        epoch: Epoch,
        publish: Option<SyncSet>,
        refused: Option<String>,
    ) -> anyhow::Result<()> {
        let (start, boot_start) = (Instant::now(), tfs_nameserver::role::boottime());
        let published = publish.as_ref().map_or(0, |p| p.version);
        let duration = self.cfg.lease_duration.as_secs() as i32;
        let nl = lease::renew(l, MicroTime(Timestamp::now()), duration, publish.as_ref(), refused);
        let replaced = self.replace(&nl).await;
        self.metrics.renew_seconds.observe(start.elapsed().as_secs_f64());
        replaced?;
        self.metrics.renews.inc();
        let valid = self.cfg.renew_deadline.saturating_sub(start.elapsed());
        if valid.as_millis() == 0 {
            // Answered after the grant it allows would have ended (a partition that healed, a
            // pause): nothing to grant, and the Lease may have gone to another holder meanwhile —
            // the operator judged it unrenewed since this write. The next look reads it afresh.
            self.lease.forget();
            self.last_renew = None;
            warn!(
                took_ms = start.elapsed().as_millis() as u64,
                renew_deadline_ms = self.cfg.renew_deadline.as_millis() as u64,
                %epoch,
                "renew answered after the renew deadline: no mastership granted; the Lease is read again"
            );
            return Ok(());
        }
        self.last_renew = Some(start);
        let until = boot_start + self.cfg.renew_deadline;
        self.granted_until = Some(self.granted_until.map_or(until, |g| g.max(until)));
        if let Err(e) =
            self.assume_until(proto::Role::Master, epoch, Default::default(), valid, Some(until), published).await
        {
            if e.maybe_pending {
                self.wait_out_grant().await;
            }
            let l = self.leases.get(&lease(&self.cfg.name)).await?;
            self.release(&l, &format!("nameserver refused mastership at epoch {epoch}: {}", e.why)).await?;
        }
        Ok(())
    }

    /// Releases the Lease if this pod holds it (as `l` shows it; the write is conditioned on
    /// `l`'s version): a Lease another holder took is left alone (lease.rs, "only the holder
    /// releases").
    async fn release(&mut self, l: &Lease, why: &str) -> anyhow::Result<()> {
        let Some(nl) = lease::release(l, &self.cfg.pod, why) else {
            let lv = LeaseView::of(l);
            info!(holder = %lv.holder, epoch = %lv.epoch, reason = why, "not releasing: the lease is not ours");
            return Ok(());
        };
        self.replace(&nl).await?;
        self.last_renew = None;
        warn!(reason = why, "lease released");
        Ok(())
    }

    /// Drains the nameserver and hands the Lease to `target` at `epoch` (decided: the nameserver
    /// answers and `target` may take over); a drain that fails or leaves writes uncommitted
    /// releases instead.
    async fn hand_over(&mut self, l: &Lease, (target, epoch): (&str, Epoch), addr: String) -> anyhow::Result<()> {
        let d = tokio::time::timeout(Duration::from_secs(6), self.admin.drain(proto::DrainRequest {})).await;
        let d = match d {
            Ok(Ok(r)) => r.into_inner(),
            _ => return self.release(l, "drain for switchover failed").await,
        };
        if d.committed_seq < d.last_seq {
            return self.release(l, &format!("drain for switchover left seq {} uncommitted", d.last_seq)).await;
        }
        let how = Taken::HandedOver { by: &self.cfg.pod };
        let nl = lease::take(l, target, epoch, how, MicroTime(Timestamp::now()));
        self.replace(&nl).await?;
        self.last_renew = None;
        info!(target, %epoch, last_seq = d.last_seq, "handed the lease over");
        self.follow(epoch, (addr, target.to_string())).await
    }

    /// On SIGTERM: fence the nameserver (drain) and release, so a successor need not wait.
    async fn on_shutdown(&mut self) {
        let Ok(l) = self.leases.get(&lease(&self.cfg.name)).await else { return };
        if LeaseView::of(&l).holder != self.cfg.pod {
            return;
        }
        let fenced = matches!(
            tokio::time::timeout(Duration::from_secs(3), self.admin.drain(proto::DrainRequest {})).await,
            Ok(Ok(_))
        );
        let why = if fenced { "pod shutting down (nameserver drained)" } else { "pod shutting down (nameserver gone)" };
        if (fenced || matches!(self.health().await, Health::Down(_)))
            && let Err(e) = self.release(&l, why).await
        {
            warn!(error = %e, "cannot release the lease on shutdown");
        }
    }
}

/// Whether a step failed on a write refused because the Lease changed since it was read (409).
fn conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409)
}

#[cfg(test)]
mod tests;
