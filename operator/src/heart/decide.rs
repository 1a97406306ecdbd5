//! The heart's decision, pure: given its Lease as known, what its nameserver answers, and which pod
//! it runs in, what to do now. heart.rs gathers the inputs (the watch, the admin API, the pods)
//! and carries the [`Action`] out.
//!
//! | the Lease                | its nameserver                                          | action                          |
//! |--------------------------|---------------------------------------------------------|---------------------------------|
//! | mine, handover to T asked | up; T in its sync set (or async mode); T has an address | `HandOver` to T, next epoch     |
//! | mine                     | down (nothing listens)                                  | `Release` (nameserver down)     |
//! | mine                     | hung (no answer in time)                                | `Hung`: nothing; it fences itself |
//! | mine                     | master at the Lease's epoch, not draining, renew due     | `Renew`, publishing its sync set |
//! | mine, handover refused   | master at the Lease's epoch, not draining               | `Renew` at once, with the refusal |
//! | mine                     | master at the Lease's epoch, draining or renew not due  | `Nothing`                       |
//! | mine                     | below the Lease's epoch (handed the Lease, restarted)   | `Renew`: takes the mastership, publishes nothing |
//! | mine                     | above the Lease's epoch, or a slave at it               | `Release` (epoch mismatch)      |
//! | another pod's            | up, not yet its slave at this epoch and address         | `Follow` the holder             |
//! | another pod's            | up and following it; holder without address; down; hung | `Nothing`                       |
//! | released                 | anything                                                | `Nothing`                       |
//!
//! A handover that cannot go ahead (the nameserver not answering, T outside its sync set, T
//! without address) is refused before anything is drained: the refusal is what the next renewal
//! writes (`tfs.io/handover-refused`), so a planned operation never becomes a failover.
//!
//! Invariant: a release is decided only when the nameserver cannot be accepting writes at the
//! Lease's epoch — it is down, or runs at another epoch than the Lease's or as a slave at it —
//! never when it is merely hung (its validity lapses on its own clock).

use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::proto;

use crate::lease::{LeaseView, SyncSet};

/// What the heart sees of its nameserver.
#[derive(Debug)]
pub enum Health {
    Up(Box<proto::StatusReply>),
    /// Nothing listens: the process is gone or restarting.
    Down(String),
    /// It does not answer in time (frozen or overloaded): not dead, so not releasable.
    Hung,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drain the nameserver, hand the Lease to `target` at `epoch` (the Lease's next: epochs only
    /// rise), follow it at `addr`.
    HandOver {
        target: String,
        addr: String,
        epoch: Epoch,
    },
    /// Renew the Lease, then grant the nameserver mastership at `epoch`; `publish`: its sync set
    /// (None while it is not master at that epoch yet); `refused`: a handover request this
    /// renewal turns down, and why.
    Renew {
        epoch: Epoch,
        publish: Option<SyncSet>,
        refused: Option<String>,
    },
    /// Release the Lease, saying why.
    Release {
        why: String,
    },
    /// The nameserver does not answer: not renewing.
    Hung,
    /// Make the nameserver a slave of `master` (replication address `addr`) at `epoch`.
    Follow {
        master: String,
        addr: String,
        epoch: Epoch,
    },
    Nothing,
}

/// The pod whose replication address [`decide`] needs, if any: the handover target when the
/// handover could otherwise go ahead, or the holder to follow.
pub fn address_needed<'a>(lv: &'a LeaseView, health: &Health, me: &str) -> Option<&'a str> {
    if lv.holder == me {
        let target = lv.handover_to.as_deref().filter(|t| *t != me)?;
        handover_check(health, target).is_ok().then_some(target)
    } else if !lv.released() && matches!(health, Health::Up(_)) {
        Some(&lv.holder)
    } else {
        None
    }
}

/// What the heart of pod `me` does now. `renew_due`: a retry period passed since its last renew
/// (or there was none); `addr`: the address of the pod [`address_needed`] named, if it has one.
pub fn decide(lv: &LeaseView, health: &Health, me: &str, renew_due: bool, addr: Option<&str>) -> Action {
    let epoch = lv.epoch;
    if lv.released() {
        return Action::Nothing;
    }
    if lv.holder != me {
        return match (health, addr) {
            (Health::Up(s), Some(addr))
                if s.role() != proto::Role::Slave || Epoch(s.epoch) != epoch || s.master_addr != addr =>
            {
                Action::Follow { master: lv.holder.clone(), addr: addr.to_string(), epoch }
            }
            _ => Action::Nothing,
        };
    }
    let mut refused = None;
    if let Some(target) = lv.handover_to.as_deref().filter(|t| *t != me) {
        match handover_check(health, target).and_then(|()| addr.ok_or_else(no_address)) {
            Ok(addr) => {
                return Action::HandOver { target: target.to_string(), addr: addr.to_string(), epoch: epoch.next() };
            }
            Err(why) => refused = Some(format!("{target}: {why}")),
        }
    }
    match health {
        Health::Down(why) => Action::Release { why: format!("nameserver down: {why}") },
        Health::Hung => Action::Hung,
        Health::Up(s) if s.role() == proto::Role::Master && Epoch(s.epoch) == epoch => {
            if !s.draining && (renew_due || refused.is_some()) {
                let publish = SyncSet { members: s.sync_set.clone(), version: s.sync_set_version };
                Action::Renew { epoch, publish: Some(publish), refused }
            } else {
                Action::Nothing
            }
        }
        // Newly handed the Lease (or restarted): take the mastership at this epoch.
        Health::Up(s) if Epoch(s.epoch) < epoch => Action::Renew { epoch, publish: None, refused },
        Health::Up(s) => Action::Release {
            why: format!("nameserver is at epoch {} as {:?}, the lease at {epoch}", s.epoch, s.role()),
        },
    }
}

fn no_address() -> String {
    "no such pod, or it has no address".to_string()
}

/// Whether the nameserver can hand over to `target`, as far as it reports: it answers, and in
/// sync mode `target` is in its sync set (else `target` may lack acknowledged writes).
fn handover_check(health: &Health, target: &str) -> Result<(), String> {
    let Health::Up(s) = health else { return Err("the nameserver is not answering".into()) };
    if s.replication_mode == "sync" && !s.sync_set.iter().any(|n| n == target) {
        return Err(format!("not in the sync set [{}]: it may lack acknowledged writes", s.sync_set.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
