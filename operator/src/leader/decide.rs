//! The election's decision, pure: given the Lease as seen, how long it has been unchanged on this
//! process's clock and this process's own term, whether to acquire, renew, wait or stop.
//!
//! Invariant (one leader acting): a leader stops (`Step::Stop`) at renew_deadline after the start of
//! its last successful write, before any standby can judge the Lease expired; a standby acquires only
//! a released Lease, or one unchanged for the lease duration on its own clock.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;

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
