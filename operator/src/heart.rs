//! The heart: a sidecar in each nameserver pod that keeps the heartbeat Lease for its nameserver
//! (the seed's heart agent, on a Kubernetes Lease instead of a VIP).
//!
//! - holder, nameserver healthy: renew every retry period (resourceVersion-conditioned), publish
//!   the sync set on the Lease, then extend the nameserver's mastership to renewDeadline counted
//!   from the *start* of that renew;
//! - holder, nameserver dead (its port refuses connections) or unable to resume its epoch:
//!   release at once, so the operator fails over without waiting for expiry;
//! - holder, nameserver hung: do nothing; it fences itself and the Lease expires;
//! - not holder: make the nameserver a slave of the holder;
//! - asked to hand over (switchover): drain, hand the Lease to the target, follow it — unless the
//!   target is outside its nameserver's sync set or has no address: then it refuses before
//!   draining anything (`tfs.io/handover-refused`) and goes on renewing.
//!
//! Invariant: the heart never extends a mastership beyond renewDeadline after the start of a
//! renew that the API server accepted — the grant carries that end as an instant of CLOCK_BOOTTIME,
//! which the nameserver shares, so no pause between the renew and the grant's arrival extends it —
//! and releases the Lease only when its nameserver cannot be accepting writes (dead, restarted
//! below its epoch, or drained; after a grant that may still be pending, once it has ended).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tfs_nameserver::proto::{self, admin_client::AdminClient};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::lease::LeaseView;
use crate::names::*;

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

/// What the heart sees of its nameserver.
#[derive(Debug)]
pub enum Health {
    Up(Box<proto::StatusReply>),
    /// Nothing listens: the process is gone or restarting.
    Down(String),
    /// It does not answer in time (frozen or overloaded): not dead, so not releasable.
    Hung,
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
    holder_addr: Option<((String, i32), String)>,
    metrics: std::sync::Arc<crate::metrics::HeartMetrics>,
}

const TICK: Duration = Duration::from_millis(200);

/// A failed AssumeRole: why, and whether the request may still be applied (it timed out or the
/// connection failed, rather than the nameserver refusing it).
struct AssumeFailed {
    why: String,
    maybe_pending: bool,
}

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
        })
    }

    async fn health(&mut self) -> Health {
        match tokio::time::timeout(Duration::from_millis(400), self.admin.status(proto::StatusRequest {})).await {
            Ok(Ok(r)) => Health::Up(Box::new(r.into_inner())),
            Ok(Err(s)) => Health::Down(s.message().to_string()),
            Err(_) => Health::Hung,
        }
    }

    async fn assume(
        &mut self,
        role: proto::Role,
        epoch: u64,
        master: (String, String),
        valid_for: Duration,
        published: u64,
    ) -> Result<(), String> {
        self.assume_until(role, epoch, master, valid_for, None, published).await.map_err(|e| e.why)
    }

    /// AssumeRole; a master grant carries its end as an instant of CLOCK_BOOTTIME (`until`), so a
    /// request delayed on its way grants only what is left of it (see `requested_role`).
    async fn assume_until(
        &mut self,
        role: proto::Role,
        epoch: u64,
        (master_addr, master_name): (String, String),
        valid_for: Duration,
        until: Option<Duration>,
        published: u64,
    ) -> Result<(), AssumeFailed> {
        // A slave gets its master's pod IP and, for TLS, the node name its certificate carries.
        let req = proto::AssumeRoleRequest {
            role: role as i32,
            epoch,
            master_addr,
            master_name,
            valid_for_ms: valid_for.as_millis() as u64,
            published_sync_set_version: published,
            valid_until_boottime_ns: until.map(|u| u.as_nanos() as u64).unwrap_or(0),
        };
        match tokio::time::timeout(Duration::from_secs(2), self.admin.assume_role(req)).await {
            Ok(Ok(_)) => Ok(()),
            // The nameserver answered: it refused, nothing is pending.
            Ok(Err(s)) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) => {
                Err(AssumeFailed { why: s.message().to_string(), maybe_pending: false })
            }
            Ok(Err(s)) => Err(AssumeFailed { why: s.message().to_string(), maybe_pending: true }),
            Err(_) => Err(AssumeFailed { why: "AssumeRole timed out".into(), maybe_pending: true }),
        }
    }

    /// Waits until the last mastership granted has ended: a grant whose call failed or timed out
    /// may still be queued in the nameserver and applied after a release.
    async fn wait_out_grant(&mut self) {
        if let Some(until) = self.granted_until.take() {
            let left = until.saturating_sub(tfs_nameserver::role::boottime());
            if !left.is_zero() {
                warn!(left_ms = left.as_millis() as u64, "waiting out the last mastership granted before releasing");
                tokio::time::sleep(left).await;
            }
        }
    }

    async fn replace(&self, l: &Lease) -> Result<Lease, kube::Error> {
        self.leases
            .replace(
                &lease(&self.cfg.name),
                &PostParams { field_manager: Some("tfs-heart".into()), ..Default::default() },
                l,
            )
            .await
    }

    /// The holder's replication address (pod IP and port).
    async fn master_addr(&mut self, holder: &str, epoch: i32) -> Option<String> {
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
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.step().await {
                        // A holder whose step failed (the Lease unreadable, or the renew refused)
                        // has missed a renewal: what the renew-failure alert counts.
                        if self.metrics.holder.get() == 1 {
                            self.metrics.renew_failures.inc();
                        }
                        warn!(error = %e, "heart step failed");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        self.on_shutdown().await;
    }

    async fn step(&mut self) -> anyhow::Result<()> {
        let health = self.health().await;
        let l = self.leases.get(&lease(&self.cfg.name)).await?;
        let lv = LeaseView::of(&l);
        let epoch = lv.transitions.max(0) as u64;
        self.metrics.holder.set((lv.holder == self.cfg.pod) as i64);
        if lv.holder == self.cfg.pod {
            let mut refused = None;
            if let Some(target) = lv.handover_to.clone().filter(|t| *t != self.cfg.pod) {
                match self.handover_target(&target, &health).await {
                    Ok(addr) => return self.hand_over(&l, &target, addr, health).await,
                    // Refused before anything was drained: the renewal below removes the request,
                    // so a planned operation never turns into an unplanned failover.
                    Err(why) => {
                        warn!(target, reason = %why, "switchover refused; renewing as master");
                        refused = Some(format!("{target}: {why}"));
                    }
                }
            }
            match health {
                Health::Down(why) => self.release(&l, &format!("nameserver down: {why}")).await?,
                Health::Hung => {
                    warn!("nameserver not answering: not renewing; it fences itself when its validity lapses")
                }
                Health::Up(s) if s.role() == proto::Role::Master && s.epoch == epoch => {
                    let due = self.last_renew.is_none_or(|t| t.elapsed() >= self.cfg.retry_period);
                    if !s.draining && (due || refused.is_some()) {
                        self.renew(&l, &s, epoch, refused).await?;
                    }
                }
                Health::Up(s) if s.epoch < epoch => {
                    // Newly handed the Lease (or restarted): take the mastership at this epoch.
                    self.renew(&l, &s, epoch, refused).await?;
                }
                Health::Up(s) => {
                    self.release(
                        &l,
                        &format!("nameserver is at epoch {} as {:?}, the lease at {epoch}", s.epoch, s.role()),
                    )
                    .await?
                }
            }
        } else if !lv.holder.is_empty() {
            self.last_renew = None;
            if let Health::Up(s) = health {
                let Some(addr) = self.master_addr(&lv.holder, lv.transitions).await else { return Ok(()) };
                if s.role() != proto::Role::Slave || s.epoch != epoch || s.master_addr != addr {
                    info!(master = %lv.holder, %addr, epoch, "following the lease holder");
                    self.assume(proto::Role::Slave, epoch, (addr, lv.holder.clone()), Duration::from_secs(3600), 0)
                        .await
                        .map_err(anyhow::Error::msg)?;
                }
            }
        } else {
            self.last_renew = None;
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
        s: &proto::StatusReply,
        epoch: u64,
        refused: Option<String>,
    ) -> anyhow::Result<()> {
        let (start, boot_start) = (Instant::now(), tfs_nameserver::role::boottime());
        let mut nl = l.clone();
        let spec = nl.spec.get_or_insert_default();
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        spec.lease_duration_seconds = Some(self.cfg.lease_duration.as_secs() as i32);
        let ann = nl.metadata.annotations.get_or_insert_default();
        if let Some(why) = refused {
            ann.remove(ANN_HANDOVER_TO);
            ann.insert(ANN_HANDOVER_REFUSED.into(), why);
        }
        let published = if s.epoch == epoch {
            ann.insert(ANN_SYNC_SET.into(), s.sync_set.join(","));
            ann.insert(ANN_SYNC_SET_VERSION.into(), s.sync_set_version.to_string());
            s.sync_set_version
        } else {
            0
        };
        let replaced = self.replace(&nl).await;
        self.metrics.renew_seconds.observe(start.elapsed().as_secs_f64());
        replaced?;
        self.metrics.renews.inc();
        self.last_renew = Some(start);
        let valid = self.cfg.renew_deadline.saturating_sub(start.elapsed());
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

    async fn release(&mut self, l: &Lease, why: &str) -> anyhow::Result<()> {
        let mut nl = l.clone();
        nl.spec.get_or_insert_default().holder_identity = None;
        let ann = nl.metadata.annotations.get_or_insert_default();
        ann.insert(ANN_RELEASED_BY.into(), self.cfg.pod.clone());
        ann.insert(ANN_RELEASE_REASON.into(), why.to_string());
        self.replace(&nl).await?;
        self.last_renew = None;
        warn!(reason = why, "lease released");
        Ok(())
    }

    /// Whether a handover to `target` can go ahead: its replication address, or why not. Checked
    /// before anything is drained; a refusal leaves the master as it was.
    async fn handover_target(&self, target: &str, health: &Health) -> Result<String, String> {
        let Health::Up(s) = health else { return Err("the nameserver is not answering".into()) };
        if s.replication_mode == "sync" && !s.sync_set.iter().any(|n| n == target) {
            return Err(format!("not in the sync set [{}]: it may lack acknowledged writes", s.sync_set.join(", ")));
        }
        self.pod_addr(target).await.ok_or_else(|| "no such pod, or it has no address".to_string())
    }

    async fn hand_over(&mut self, l: &Lease, target: &str, addr: String, health: Health) -> anyhow::Result<()> {
        let Health::Up(_) = health else { return self.release(l, "nameserver unavailable during switchover").await };
        let d = tokio::time::timeout(Duration::from_secs(6), self.admin.drain(proto::DrainRequest {})).await;
        let d = match d {
            Ok(Ok(r)) => r.into_inner(),
            _ => return self.release(l, "drain for switchover failed").await,
        };
        if d.committed_seq < d.last_seq {
            return self.release(l, &format!("drain for switchover left seq {} uncommitted", d.last_seq)).await;
        }
        let mut nl = l.clone();
        let spec = nl.spec.get_or_insert_default();
        let epoch = spec.lease_transitions.unwrap_or(0) + 1;
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = Some(target.to_string());
        spec.lease_transitions = Some(epoch);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        let ann = nl.metadata.annotations.get_or_insert_default();
        ann.remove(ANN_HANDOVER_TO);
        ann.remove(ANN_HANDOVER_REFUSED);
        ann.insert(ANN_SYNC_SET.into(), String::new());
        ann.insert(ANN_SYNC_SET_VERSION.into(), "0".into());
        ann.insert(ANN_RELEASED_BY.into(), self.cfg.pod.clone());
        ann.insert(ANN_RELEASE_REASON.into(), "switchover".into());
        self.replace(&nl).await?;
        self.last_renew = None;
        info!(target, epoch, last_seq = d.last_seq, "handed the lease over");
        self.assume(proto::Role::Slave, epoch as u64, (addr, target.to_string()), Duration::from_secs(3600), 0)
            .await
            .map_err(anyhow::Error::msg)
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
