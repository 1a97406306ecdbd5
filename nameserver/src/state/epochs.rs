//! Where each epoch began in the log: what tells two logs' histories apart.

use crate::epoch::Epoch;

/// Every seq at which an epoch began: how a master tells where a slave's log diverged from its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochMark {
    pub epoch: Epoch,
    pub start_seq: u64,
}

/// The epoch of the record at `seq`, from the marks of where each epoch began (ZERO before any).
pub fn epoch_at(epochs: &[EpochMark], seq: u64) -> Epoch {
    epochs.iter().rev().find(|m| m.start_seq <= seq).map(|m| m.epoch).unwrap_or(Epoch::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_at_follows_the_marks() {
        let m: Vec<EpochMark> = [(1, 1), (2, 50), (4, 90)]
            .iter()
            .map(|&(epoch, start_seq)| EpochMark { epoch: Epoch(epoch), start_seq })
            .collect();
        assert_eq!(epoch_at(&m, 1), Epoch(1));
        assert_eq!(epoch_at(&m, 49), Epoch(1));
        assert_eq!(epoch_at(&m, 50), Epoch(2));
        assert_eq!(epoch_at(&m, 1000), Epoch(4));
        assert_eq!(epoch_at(&m, 0), Epoch::ZERO);
    }
}
