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
//! start of a write that made or kept it holder; another process takes the Lease only after
//! `lease_duration` (> `renew_deadline`) without a change on its own clock, or once released —
//! and the leader releases only after its controller has stopped.
//!
//! A new leader starts its controller from nothing a predecessor saw (controller::run builds a fresh
//! Context): every heartbeat Lease is read again and its expiry judged from this process's own
//! observations only (lease.rs `LeaseClock`) — those it made while standing by included (standby.rs:
//! "version V unchanged since my instant T", seeding the clocks). A process leads at most once:
//! losing the Lease ends it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use crate::lease::LeaseClock;
use crate::metrics::Metrics;
use crate::names::MANAGER;

/// The Lease's default name.
pub const LEASE_NAME: &str = "tfs-operator-leader";

/// Timing of the election (the chart's `leaderElection.*`, the flags `--leader-*`).
///
/// Defaults: lease 4 s, renew deadline 3 s, renew every 1 s, retry 1 s. Why these: when the nodes
/// of a nameserver's master and of the operator's leader are lost together, the nameserver's
/// failover must take at most (nameserver lease + leader lease + 2 s). The standby watches this
/// Lease, so it sees the leader's last renew (at most one renew period before the loss) within
/// milliseconds and takes over `lease_duration` after it: ≤ 4 s after the loss. While standing by
/// it also watched the nameserver's Lease stop changing (standby.rs), so its controller judges that
/// Lease expired a nameserver lease (5 s) after it saw the last renew, not after taking over: the
/// two waits overlap, ≈ max(4, 5) s + ~1 s (the promotion, the new master's heart, the client's
/// retry) instead of 4 + 5 + ~1 s. A shorter leader lease would buy little and turn API latency
/// spikes into leader changes; 4 s with a renew every second tolerates two failed renews, and the
/// 1 s between renew deadline and lease leaves the exiting leader's requests in flight time to land
/// (they are conditioned on what they read, too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A Lease unchanged this long (on the observer's clock) may be taken.
    pub lease_duration: Duration,
    /// The leader stops acting this long after the start of its last successful renew.
    pub renew_deadline: Duration,
    /// The leader renews this often.
    pub renew_period: Duration,
    /// After a failed write, the next attempt waits this long.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            renew_period: Duration::from_secs(1),
            retry_period: Duration::from_secs(1),
        }
    }
}

impl Timing {
    /// lease duration > renew deadline > renew period > 0, retry period > 0, and the renew deadline
    /// leaves room for a retry.
    pub fn check(&self) -> Result<(), String> {
        let t = self;
        if t.renew_period.is_zero() || t.retry_period.is_zero() {
            return Err("the renew and retry periods must be positive".into());
        }
        if t.lease_duration <= t.renew_deadline {
            return Err(format!(
                "the leader lease duration ({:?}) must be longer than its renew deadline ({:?})",
                t.lease_duration, t.renew_deadline
            ));
        }
        if t.renew_deadline <= t.renew_period {
            return Err(format!(
                "the leader renew deadline ({:?}) must be longer than the renew period ({:?})",
                t.renew_deadline, t.renew_period
            ));
        }
        Ok(())
    }
}

/// The election as this process knows it: what it needs from the Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Empty when released.
    pub holder: String,
    /// The holder's own `leaseDurationSeconds`: judged with the longer of it and ours.
    pub duration: Option<Duration>,
}

impl Seen {
    pub fn of(l: &Lease) -> Self {
        let spec = l.spec.as_ref();
        Seen {
            holder: spec.and_then(|s| s.holder_identity.clone()).unwrap_or_default(),
            duration: spec.and_then(|s| s.lease_duration_seconds).map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }
}

/// Where this process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not leading. `since_attempt`: since the last failed attempt to take the Lease, if any.
    Standby { since_attempt: Option<Duration> },
    /// Leading. `since_renew`: since the start of the last successful write that kept us holder;
    /// `since_attempt`: since the start of the last attempt (equal unless it failed).
    Leader { since_renew: Duration, since_attempt: Duration },
}

/// Why a standby takes the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// There is no Lease: none for a full duration since we looked.
    Create,
    /// The last leader released it (it stopped on a shutdown).
    Released,
    /// A previous process of this very pod held it (a restarted container): it is dead.
    OurOwn,
    /// The holder stopped renewing: unchanged for `for_` on our clock.
    Expired { holder: String, for_: Duration },
}

impl Takeover {
    pub fn describe(&self) -> String {
        match self {
            Takeover::Create => "no leader Lease existed".into(),
            Takeover::Released => "the previous leader released the Lease".into(),
            Takeover::OurOwn => "a previous process of this pod held the Lease".into(),
            Takeover::Expired { holder, for_ } => {
                format!("{holder} stopped renewing (the Lease unchanged for {:.1}s)", for_.as_secs_f64())
            }
        }
    }
}

/// Why the leader must stop acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// No renew succeeded in time.
    RenewDeadline { since_renew: Duration },
    /// Another process holds the Lease (or nobody does, and it was not us who released it).
    Taken { holder: String },
}

impl Lost {
    pub fn describe(&self) -> String {
        match self {
            Lost::RenewDeadline { since_renew } => format!(
                "no renew of the leader Lease succeeded for {:.1}s (the renew deadline)",
                since_renew.as_secs_f64()
            ),
            Lost::Taken { holder } if holder.is_empty() => "the leader Lease was released by someone else".into(),
            Lost::Taken { holder } => format!("{holder} holds the leader Lease"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Standby: take the Lease (create it if absent), conditioned on the version seen.
    Acquire(Takeover),
    /// Leader: renew now.
    Renew,
    /// Nothing to do before this long (or before the Lease changes).
    Wait(Duration),
    /// Leader: stop acting at once.
    Stop(Lost),
}

pub struct Input<'a> {
    pub me: &'a str,
    pub role: Role,
    /// The Lease as last seen: None when it does not exist; outer None: not known yet (the first
    /// list has not answered).
    pub lease: Option<Option<&'a Seen>>,
    /// How long the Lease (or its absence) has been as seen, on this process's clock.
    pub unchanged_for: Duration,
    pub timing: Timing,
}

/// The election's decision, pure: from what was seen of the Lease and this process's clock.
pub fn decide(i: &Input<'_>) -> Step {
    let t = &i.timing;
    match i.role {
        Role::Leader { since_renew, since_attempt } => {
            if since_renew >= t.renew_deadline {
                return Step::Stop(Lost::RenewDeadline { since_renew });
            }
            // What the leader reads of the Lease comes from its own writes (and, on a conflict,
            // a fresh read), never from the watch, whose events may predate our last write.
            if let Some(Some(seen)) = i.lease
                && seen.holder != i.me
            {
                return Step::Stop(Lost::Taken { holder: seen.holder.clone() });
            }
            let left = t.renew_deadline - since_renew;
            let due_renew = t.renew_period.saturating_sub(since_renew);
            // After a failed attempt, the next one waits the retry period (but never past the deadline).
            let due_retry =
                if since_attempt < since_renew { t.retry_period.saturating_sub(since_attempt) } else { Duration::ZERO };
            let due = due_renew.max(due_retry);
            if due.is_zero() { Step::Renew } else { Step::Wait(due.min(left)) }
        }
        Role::Standby { since_attempt } => {
            let Some(lease) = i.lease else {
                return Step::Wait(t.retry_period);
            };
            if let Some(a) = since_attempt
                && a < t.retry_period
            {
                return Step::Wait(t.retry_period - a);
            }
            let (takeover, after) = match lease {
                // A Lease that disappeared is no release: it may have been deleted under a live
                // leader, which re-creates it at its next renew. Wait a full duration.
                None => (Takeover::Create, t.lease_duration),
                Some(s) if s.holder.is_empty() => (Takeover::Released, Duration::ZERO),
                Some(s) if s.holder == i.me => (Takeover::OurOwn, Duration::ZERO),
                Some(s) => {
                    let d = t.lease_duration.max(s.duration.unwrap_or_default());
                    (Takeover::Expired { holder: s.holder.clone(), for_: i.unchanged_for }, d)
                }
            };
            if i.unchanged_for >= after { Step::Acquire(takeover) } else { Step::Wait(after - i.unchanged_for) }
        }
    }
}

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
        let driver = tokio::spawn(Driver::new(client, cfg, metrics).run(tx, stop_rx));
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
        Election { leading: rx, stop: Some(stop_tx) }
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

struct Driver {
    api: Api<Lease>,
    cfg: Config,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The Lease as our last successful write left it (leader only).
    mine: Option<Lease>,
    /// Start of that write.
    renewed_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// The Lease as last seen (outer None: not known yet).
    seen: Option<Option<Lease>>,
    /// When the version seen (the absence of a Lease is version "") was first seen.
    clock: LeaseClock,
}

fn pp() -> PostParams {
    PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Driver {
    fn new(client: Client, cfg: Config, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: MANAGER.into(), instance: Some(cfg.identity.clone()) },
        );
        Driver {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            metrics,
            recorder,
            mine: None,
            renewed_at: None,
            attempted_at: None,
            seen: None,
            clock: LeaseClock::default(),
        }
    }

    fn lease_seconds(&self) -> i32 {
        self.cfg.timing.lease_duration.as_secs_f64().ceil() as i32
    }

    /// Records a sighting of the Lease (or of its absence) on our clock.
    fn observe(&mut self, l: Option<Lease>) {
        let rv = l.as_ref().and_then(|l| l.metadata.resource_version.clone()).unwrap_or_default();
        self.clock.observe(&rv, Instant::now());
        self.seen = Some(l);
    }

    fn role(&self, now: Instant) -> Role {
        match (self.renewed_at, self.mine.is_some()) {
            (Some(r), true) => Role::Leader {
                since_renew: now.saturating_duration_since(r),
                since_attempt: now.saturating_duration_since(self.attempted_at.unwrap_or(r)),
            },
            _ => Role::Standby { since_attempt: self.attempted_at.map(|a| now.saturating_duration_since(a)) },
        }
    }

    fn step(&mut self) -> Step {
        let now = Instant::now();
        let role = self.role(now);
        let seen: Option<Option<Seen>> = match role {
            // The leader judges by its own writes (see `decide`).
            Role::Leader { .. } => Some(self.mine.as_ref().map(Seen::of)),
            Role::Standby { .. } => self.seen.as_ref().map(|l| l.as_ref().map(Seen::of)),
        };
        let rv = self.seen.as_ref().and_then(|l| l.as_ref()?.metadata.resource_version.clone()).unwrap_or_default();
        let unchanged_for = if self.seen.is_some() { self.clock.observe(&rv, now) } else { Duration::ZERO };
        decide(&Input {
            me: &self.cfg.identity,
            role,
            lease: seen.as_ref().map(|s| s.as_ref()),
            unchanged_for,
            timing: self.cfg.timing,
        })
    }

    async fn run(mut self, leading: watch::Sender<bool>, mut stop: oneshot::Receiver<oneshot::Sender<()>>) {
        let wc = watcher::Config::default().fields(&format!("metadata.name={}", self.cfg.lease_name));
        let mut events = watcher(self.api.clone(), wc).default_backoff().boxed();
        // Objects of the current (re)list; applied at InitDone (None if the list was empty).
        let mut listing: Option<Option<Lease>> = None;
        let mut wake = tokio::time::Instant::now();
        info!(
            lease = %format!("{}/{}", self.cfg.namespace, self.cfg.lease_name),
            identity = %self.cfg.identity,
            "leader election: standby until this process holds the Lease"
        );
        loop {
            tokio::select! {
                biased;
                done = &mut stop => {
                    self.release().await;
                    let _ = done.map(|d| d.send(()));
                    return;
                }
                ev = events.next() => match ev {
                    Some(Ok(watcher::Event::Init)) => listing = Some(None),
                    Some(Ok(watcher::Event::InitApply(l))) => listing = Some(Some(l)),
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(l) = listing.take() {
                            self.observe(l);
                        }
                    }
                    Some(Ok(watcher::Event::Apply(l))) => self.observe(Some(l)),
                    Some(Ok(watcher::Event::Delete(_))) => self.observe(None),
                    Some(Err(e)) => warn!(error = %e, "leader election: watching the Lease failed; retrying"),
                    // (a watcher never ends; if it did, the timers alone would drive us)
                    None => events = futures::stream::pending().boxed(),
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            let step = self.step();
            let next = match step {
                Step::Wait(d) => d,
                Step::Stop(lost) => {
                    self.metrics.leader.set(0);
                    error!(
                        identity = %self.cfg.identity,
                        reason = %lost.describe(),
                        "lost the operator leadership: starting again as a standby now, so that nothing \
                         more is done as leader"
                    );
                    restart_as_standby();
                }
                Step::Renew => {
                    self.renew().await;
                    Duration::ZERO
                }
                Step::Acquire(why) => {
                    if self.acquire(&why).await {
                        let _ = leading.send(true);
                    }
                    Duration::ZERO
                }
            };
            // After an action, decide again at once (it yields a Wait, a retry, or a Stop).
            wake = tokio::time::Instant::now() + next;
            if next.is_zero() {
                let step = self.step();
                if let Step::Wait(d) = step {
                    wake = tokio::time::Instant::now() + d;
                }
            }
        }
    }

    /// Takes the Lease, conditioned on the version seen. True when we now lead.
    async fn acquire(&mut self, why: &Takeover) -> bool {
        let start = Instant::now();
        self.attempted_at = Some(start);
        let now = now_micro();
        let seen = self.seen.clone().flatten();
        let previous = seen.as_ref().map(Seen::of).map(|s| s.holder).unwrap_or_default();
        let mut l = seen.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta { name: Some(self.cfg.lease_name.clone()), ..Default::default() },
            spec: Some(LeaseSpec::default()),
        });
        let spec = l.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(&self.cfg.identity) {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(now.clone());
        }
        spec.holder_identity = Some(self.cfg.identity.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.lease_seconds());
        let write = async {
            match &seen {
                Some(_) => self.api.replace(&self.cfg.lease_name, &pp(), &l).await,
                None => self.api.create(&pp(), &l).await,
            }
        };
        let r = tokio::time::timeout(self.cfg.timing.lease_duration, write).await;
        match r {
            Ok(Ok(written)) => {
                self.mine = Some(written);
                self.renewed_at = Some(start);
                self.attempted_at = Some(start);
                self.metrics.leader.set(1);
                let note = format!("{} leads: {}", self.cfg.identity, why.describe());
                info!(identity = %self.cfg.identity, previous = %previous, reason = %why.describe(), "acquired the operator leadership");
                self.publish("LeaderElected", &note).await;
                true
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 409 || s.code == 404 => {
                // Someone wrote first (or the Lease went): look again, and judge it from zero.
                self.attempted_at = None;
                let read = self.api.get_opt(&self.cfg.lease_name);
                match tokio::time::timeout(self.cfg.timing.lease_duration, read).await {
                    Ok(Ok(l)) => self.observe(l),
                    Ok(Err(e)) => {
                        self.attempted_at = Some(start);
                        warn!(error = %e, "leader election: cannot read the Lease");
                    }
                    Err(_) => {
                        self.attempted_at = Some(start);
                        warn!("leader election: reading the Lease timed out");
                    }
                }
                false
            }
            Ok(Err(e)) => {
                warn!(error = %e, "leader election: cannot take the Lease; retrying");
                false
            }
            Err(_) => {
                warn!("leader election: taking the Lease timed out; retrying");
                false
            }
        }
    }

    /// Renews our term, conditioned on our last write. A conflict is read again: still ours (an
    /// annotation or label changed), renew on that; another holder, and the next step stops us.
    async fn renew(&mut self) {
        let Some(mut l) = self.mine.clone() else { return };
        let start = Instant::now();
        self.attempted_at = Some(start);
        let deadline = self.renewed_at.unwrap_or(start) + self.cfg.timing.renew_deadline;
        let deadline = tokio::time::Instant::from_std(deadline);
        let spec = l.spec.get_or_insert_default();
        spec.renew_time = Some(now_micro());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        let api = self.api.clone();
        let name = self.cfg.lease_name.clone();
        let me = self.cfg.identity.clone();
        let attempt = async move {
            match api.replace(&name, &pp(), &l).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let fresh = api.get(&name).await?;
                    if Seen::of(&fresh).holder != me {
                        return Ok(fresh); // not ours any more: the next step stops us
                    }
                    let mut again = fresh;
                    let spec = again.spec.get_or_insert_default();
                    spec.renew_time = Some(now_micro());
                    api.replace(&name, &pp(), &again).await
                }
                // Deleted under us: create it again, ours (a standby waits a full duration
                // before creating one, so it cannot have been taken meanwhile).
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    l.metadata.resource_version = None;
                    l.metadata.uid = None;
                    l.metadata.creation_timestamp = None;
                    l.metadata.managed_fields = None;
                    api.create(&pp(), &l).await
                }
                other => other,
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(written)) => {
                let ours = Seen::of(&written).holder == self.cfg.identity;
                self.mine = Some(written);
                if ours {
                    self.renewed_at = Some(start);
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease; retrying until the renew deadline"),
            Err(_) => {} // the deadline passed: the next step stops us
        }
    }

    /// On shutdown, after the controller stopped: hand the Lease back so that a standby takes
    /// over at once rather than after a lease duration.
    async fn release(&mut self) {
        let Some(mut l) = self.mine.take() else { return };
        self.metrics.leader.set(0);
        let spec = l.spec.get_or_insert_default();
        spec.holder_identity = None;
        spec.renew_time = Some(now_micro());
        match tokio::time::timeout(Duration::from_secs(1), self.api.replace(&self.cfg.lease_name, &pp(), &l)).await {
            Ok(Ok(_)) => info!(identity = %self.cfg.identity, "released the operator leadership (shutting down)"),
            Ok(Err(e)) => warn!(error = %e, "cannot release the leader Lease; it expires by itself"),
            Err(_) => warn!("releasing the leader Lease timed out; it expires by itself"),
        }
    }

    /// An Event on the leader Lease (best effort, bounded: it must not delay the controller).
    async fn publish(&self, reason: &str, note: &str) {
        let Some(l) = &self.mine else { return };
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "LeaderElection".into(),
            secondary: None,
        };
        let reference = l.object_ref(&());
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(2), recorder.publish(&ev, &reference)).await {
                Ok(Err(e)) => warn!(error = %e, "cannot publish the leader election event"),
                Err(_) => warn!("publishing the leader election event timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests;
