//! The heartbeat Lease: reading it ([`LeaseView`]), the protocol written on it, and judging its
//! expiry the way client-go does (clock.rs): on the observer's own clock, from when it last saw the
//! Lease change, never from renewTime against wall time (clocks of different machines disagree;
//! elapsed time on one clock does not).
//!
//! The protocol, as pure functions from the Lease read to the Lease to write (the caller writes it
//! with a replace conditioned on the resourceVersion it carries, so a Lease changed meanwhile
//! refuses the write):
//! - [`take`]: a holder at a new epoch — the operator's promotion, or the master's heart handing
//!   over at the next epoch; the published sync set starts empty;
//! - [`renew`]: the holder's heart, publishing its nameserver's sync set;
//! - [`release`]: the holder's heart, once its nameserver cannot be writing;
//! - [`ask_handover`]: the operator asking the master's heart to hand over.
//!
//! Who may call which, and when, is decided elsewhere (failover.rs for the operator, heart/decide.rs
//! for the heart); these functions only say what each step writes.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
pub use tfs_nameserver::epoch::Epoch;

use crate::names::*;

mod clock;

pub use clock::{LeaseClock, Sightings};

/// What the operator and the heart need from a Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Empty when released.
    pub holder: String,
    /// The epoch: leaseTransitions ([`epoch_of`]).
    pub epoch: Epoch,
    pub resource_version: String,
    /// The master's sync set as its heart last published it.
    pub sync_set: Vec<String>,
    pub sync_set_version: u64,
    pub handover_to: Option<String>,
    /// A handover the master's heart refused, and why.
    pub handover_refused: Option<String>,
    pub release_reason: Option<String>,
    pub released_by: Option<String>,
}

impl LeaseView {
    pub fn of(l: &Lease) -> Self {
        let spec = l.spec.clone().unwrap_or_default();
        let ann = l.metadata.annotations.clone().unwrap_or_default();
        LeaseView {
            holder: spec.holder_identity.unwrap_or_default(),
            epoch: epoch_of(spec.lease_transitions),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
            sync_set: ann.get(ANN_SYNC_SET).map(|s| split_set(s)).unwrap_or_default(),
            sync_set_version: ann.get(ANN_SYNC_SET_VERSION).and_then(|v| v.parse().ok()).unwrap_or(0),
            handover_to: ann.get(ANN_HANDOVER_TO).filter(|s| !s.is_empty()).cloned(),
            handover_refused: ann.get(ANN_HANDOVER_REFUSED).filter(|s| !s.is_empty()).cloned(),
            release_reason: ann.get(ANN_RELEASE_REASON).filter(|s| !s.is_empty()).cloned(),
            released_by: ann.get(ANN_RELEASED_BY).filter(|s| !s.is_empty()).cloned(),
        }
    }

    pub fn released(&self) -> bool {
        self.holder.is_empty()
    }
}

/// The epoch of a Lease's leaseTransitions: the one place the Lease's i32 becomes an [`Epoch`]
/// (and back: [`transitions_of`]). Missing or negative: epoch 0, no master yet (nothing here writes
/// a negative count; one set by hand must not wrap to a huge epoch that no promotion could pass).
pub fn epoch_of(transitions: Option<i32>) -> Epoch {
    Epoch(transitions.map_or(0, |t| u64::try_from(t).unwrap_or(0)))
}

/// leaseTransitions for `epoch`. The field is an i32: an epoch beyond it saturates (unreachable in
/// practice: a promotion a second for 68 years).
fn transitions_of(epoch: Epoch) -> i32 {
    i32::try_from(epoch.get()).unwrap_or(i32::MAX)
}

pub fn split_set(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()
}

/// How a new holder [`take`]s the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken<'a> {
    /// The operator promotes (failover.rs): the Lease gets the resource's duration, and the
    /// release that led here (if any) is forgotten.
    Promoted { duration_seconds: i32 },
    /// The master's heart hands over (a switchover): it says it released, and why.
    HandedOver { by: &'a str },
}

/// The release reason a heart writes when it hands the Lease over.
pub const SWITCHOVER: &str = "switchover";

/// `holder` takes the Lease at `epoch` (the caller's choice: above the Lease's own epoch).
///
/// Invariant: the published sync set starts empty at a new epoch — the new master has published
/// nothing yet, and a set of the previous master's must not vouch for slaves of the new one.
pub fn take(l: &Lease, holder: &str, epoch: Epoch, how: Taken<'_>, now: MicroTime) -> Lease {
    let mut l = l.clone();
    let spec = l.spec.get_or_insert_default();
    spec.holder_identity = Some(holder.into());
    spec.lease_transitions = Some(transitions_of(epoch));
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    let ann = l.metadata.annotations.get_or_insert_default();
    ann.insert(ANN_SYNC_SET.into(), String::new());
    ann.insert(ANN_SYNC_SET_VERSION.into(), "0".into());
    ann.remove(ANN_HANDOVER_TO);
    ann.remove(ANN_HANDOVER_REFUSED);
    match how {
        Taken::Promoted { duration_seconds } => {
            ann.remove(ANN_RELEASE_REASON);
            ann.remove(ANN_RELEASED_BY);
            spec.lease_duration_seconds = Some(duration_seconds);
        }
        Taken::HandedOver { by } => {
            ann.insert(ANN_RELEASED_BY.into(), by.into());
            ann.insert(ANN_RELEASE_REASON.into(), SWITCHOVER.into());
        }
    }
    l
}

/// The sync set a master's nameserver reports, to publish on the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSet {
    pub members: Vec<String>,
    pub version: u64,
}

/// The holder's renewal: renewTime `now`, the duration it renews for, the sync set its nameserver
/// runs with (None when the nameserver is not master at the Lease's epoch yet: nothing to
/// publish), and `refused`, a handover request this renewal turns down, with why.
pub fn renew(
    l: &Lease,
    now: MicroTime,
    duration_seconds: i32,
    sync_set: Option<&SyncSet>,
    refused: Option<String>,
) -> Lease {
    let mut l = l.clone();
    let spec = l.spec.get_or_insert_default();
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(duration_seconds);
    let ann = l.metadata.annotations.get_or_insert_default();
    if let Some(why) = refused {
        ann.remove(ANN_HANDOVER_TO);
        ann.insert(ANN_HANDOVER_REFUSED.into(), why);
    }
    if let Some(s) = sync_set {
        ann.insert(ANN_SYNC_SET.into(), s.members.join(","));
        ann.insert(ANN_SYNC_SET_VERSION.into(), s.version.to_string());
    }
    l
}

/// The holder `by` releases the Lease, saying why: the epoch stays, so the next holder's is above.
/// None when `by` does not hold it.
///
/// Invariant (only the holder releases): `released_by` names the master of the Lease's epoch, and
/// failover.rs trusts it as the one instance that holds every write acknowledged at that epoch
/// (the old master, always safe to give the Lease back to). A release by anyone else — a heart
/// acting on a renew answered after another holder took the Lease — would hand the mastership
/// to a node missing the newer master's writes.
pub fn release(l: &Lease, by: &str, why: &str) -> Option<Lease> {
    if LeaseView::of(l).holder != by {
        return None;
    }
    let mut l = l.clone();
    l.spec.get_or_insert_default().holder_identity = None;
    let ann = l.metadata.annotations.get_or_insert_default();
    ann.insert(ANN_RELEASED_BY.into(), by.into());
    ann.insert(ANN_RELEASE_REASON.into(), why.into());
    Some(l)
}

/// Asks the master's heart to hand the Lease to `target` (a refusal of an earlier request goes).
pub fn ask_handover(l: &Lease, target: &str) -> Lease {
    let mut l = l.clone();
    let ann = l.metadata.annotations.get_or_insert_default();
    ann.insert(ANN_HANDOVER_TO.into(), target.into());
    ann.remove(ANN_HANDOVER_REFUSED);
    l
}

#[cfg(test)]
mod tests;
