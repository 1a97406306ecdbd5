//! Who this node is and until when. The nameserver never decides its role: it is told (AssumeRole
//! from the heart sidecar, or `--standalone`), and it fences itself when what it was told lapses.
//!
//! Invariant (self-fencing): a master accepts and acknowledges writes only while its own monotonic
//! clock is before `valid_until`. The operator promotes another node only after the Lease has gone
//! unrenewed for longer than that validity, so two masters never acknowledge writes at once,
//! even when the API server, the heart or the network is gone.

use std::time::{Duration, Instant};

use crate::epoch::Epoch;

/// Now on CLOCK_BOOTTIME: monotonic, counting suspended time, and one clock for every process of
/// a kernel — so a deadline computed by the heart means the same instant to its nameserver.
pub fn boottime() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The process-local instant of a CLOCK_BOOTTIME deadline (`now` read together with `boot_now`).
pub fn instant_of_boottime(deadline: Duration, now: Instant, boot_now: Duration) -> Instant {
    now + deadline.saturating_sub(boot_now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Master forever at epoch 1, no replication (development).
    Standalone,
    Master,
    Slave,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    pub role: Role,
    pub epoch: Epoch,
    /// Master: the end of its validity. Slave: when it stops trusting its master address.
    pub valid_until: Option<Instant>,
    /// Replication address of the master this node knows (for slaves, and for write refusals).
    pub master_addr: String,
    /// The name the master's TLS certificate must carry (empty: the host of `master_addr`).
    pub master_name: String,
    /// Draining (planned switchover): a master that accepts no more writes.
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWritable {
    #[error("this nameserver is a slave; the master is {master}")]
    Slave { master: String },
    #[error("this nameserver's mastership lapsed (epoch {epoch}); it fenced itself until told its role again")]
    Lapsed { epoch: Epoch },
    #[error("this nameserver is draining for a switchover")]
    Draining,
}

impl RoleState {
    pub fn slave_unknown_master() -> Self {
        RoleState {
            role: Role::Slave,
            epoch: Epoch::ZERO,
            valid_until: None,
            master_addr: String::new(),
            master_name: String::new(),
            draining: false,
        }
    }

    pub fn standalone() -> Self {
        RoleState {
            role: Role::Standalone,
            epoch: Epoch(1),
            valid_until: None,
            master_addr: String::new(),
            master_name: String::new(),
            draining: false,
        }
    }

    pub fn is_master(&self) -> bool {
        matches!(self.role, Role::Master | Role::Standalone)
    }

    /// Whether a write may be accepted or acknowledged at `now`.
    pub fn check_writable(&self, now: Instant) -> Result<(), NotWritable> {
        match self.role {
            Role::Slave => Err(NotWritable::Slave {
                master: if self.master_addr.is_empty() { "unknown".into() } else { self.master_addr.clone() },
            }),
            _ if self.draining => Err(NotWritable::Draining),
            Role::Standalone => Ok(()),
            Role::Master => match self.valid_until {
                Some(t) if now < t => Ok(()),
                _ => Err(NotWritable::Lapsed { epoch: self.epoch }),
            },
        }
    }

    /// Remaining validity for Status (u64::MAX for standalone).
    pub fn valid_for(&self, now: Instant) -> Duration {
        match (self.role, self.valid_until) {
            (Role::Standalone, _) => Duration::MAX,
            (_, Some(t)) => t.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_fences_itself_at_the_deadline() {
        let t0 = Instant::now();
        let r = RoleState {
            role: Role::Master,
            epoch: Epoch(3),
            valid_until: Some(t0 + Duration::from_millis(100)),
            master_addr: String::new(),
            master_name: String::new(),
            draining: false,
        };
        assert!(r.check_writable(t0).is_ok());
        assert!(r.check_writable(t0 + Duration::from_millis(99)).is_ok());
        assert_eq!(r.check_writable(t0 + Duration::from_millis(100)), Err(NotWritable::Lapsed { epoch: Epoch(3) }));
    }

    #[test]
    fn slave_and_draining_refuse_writes() {
        let mut r = RoleState::slave_unknown_master();
        assert!(matches!(r.check_writable(Instant::now()), Err(NotWritable::Slave { .. })));
        r = RoleState::standalone();
        assert!(r.check_writable(Instant::now()).is_ok());
        r.draining = true;
        assert_eq!(r.check_writable(Instant::now()), Err(NotWritable::Draining));
    }
}
