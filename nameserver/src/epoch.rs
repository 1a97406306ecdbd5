//! The epoch: the number of a master's term. The operator's Lease counts it (leaseTransitions, read
//! in one place: operator/src/lease.rs), AssumeRole tells it to a node, and every oplog record
//! carries the epoch of the master that wrote it.
//!
//! Invariants held with it, each next to its code: a node's epoch only rises (engine
//! writer/control.rs); a record of an epoch below the one applied is refused (state `apply`,
//! replication slave `check_records`); a new master takes the Lease at an epoch above every one
//! seen (operator failover.rs, heart/decide.rs). A proto carries it as a u64: the conversion is at
//! the edge where the message is built or read.

use std::fmt;

/// A master's term. Ordered: a later term is greater. `Epoch::ZERO` is no term at all (a node told
/// nothing yet, an empty log, a Lease never taken).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const ZERO: Epoch = Epoch(0);

    /// The epoch a new master takes after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }

    /// The number, for a proto field, a record header or a name.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_order_and_follow_each_other() {
        assert!(Epoch::ZERO < Epoch(1));
        assert_eq!(Epoch(3).next(), Epoch(4));
        assert_eq!(Epoch(u64::MAX).next(), Epoch(u64::MAX));
        assert_eq!(Epoch(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Epoch(7)).unwrap(), "7");
    }
}
