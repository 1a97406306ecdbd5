//! The election's IO: watching and reading the Lease, the conditioned writes that acquire, renew
//! and release it, and the loop that carries out [`decide`]'s steps.
//!
//! Every write is an update conditioned on the resourceVersion read: a 409 means someone else wrote
//! first, and the step is decided again on what is there now.

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

use super::decide::{Input, Role, Seen, Step, Takeover, decide};
use super::{Config, restart_as_standby};

pub(super) struct Driver {
    api: Api<Lease>,
    cfg: Config,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The Lease as our last successful write left it (leader only).
    mine: Option<Lease>,
    /// Start of that write.
    renewed_at: Option<Instant>,
    /// `renewed_at` + renew_deadline, for the guard of the controllers' writes (term.rs); both set
    /// by `renewed` only.
    term: super::Term,
    attempted_at: Option<Instant>,
    /// The Lease as last seen (outer None: not known yet).
    seen: Option<Option<Lease>>,
    /// When the version seen (the absence of a Lease is version "") was first seen.
    clock: LeaseClock,
}

pub(super) fn pp() -> PostParams {
    PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }
}

pub(super) fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Driver {
    pub(super) fn new(client: Client, cfg: Config, metrics: Arc<Metrics>, term: super::Term) -> Self {
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
            term,
            attempted_at: None,
            seen: None,
            clock: LeaseClock::default(),
        }
    }

    /// A write that started at `start` made or kept us holder: our term (what `decide` judges, and
    /// what the controllers' writes are held to) now runs to `start` + renew_deadline.
    fn renewed(&mut self, start: Instant) {
        self.renewed_at = Some(start);
        self.term.extend_to(start + self.cfg.timing.renew_deadline);
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

    pub(super) async fn run(mut self, leading: watch::Sender<bool>, mut stop: oneshot::Receiver<oneshot::Sender<()>>) {
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
                self.renewed(start);
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
                    self.renewed(start);
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot renew the leader Lease; retrying until the renew deadline"),
            Err(_) => {} // the deadline passed: the next step stops us
        }
    }

    /// On shutdown, after the controller stopped: hand the Lease back so that a standby takes
    /// over at once rather than after a lease duration.
    async fn release(&mut self) {
        // Whatever the controllers still send is refused from here: a standby may lead as soon
        // as the release is written.
        self.term.end();
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
