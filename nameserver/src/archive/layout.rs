//! Object names of the archive. Every fact a reader needs to plan a restore is in the name, so a
//! listing is enough to plan one and a body can be checked without object metadata:
//!
//! ```text
//! <prefix>/wal/<first:020>-<last:020>-<epoch of last:010>-<first ms:013>-<last ms:013>-<crc32c:08x>.rec
//! <prefix>/checkpoints/<seq:020>-<epoch:010>-<ms of the record at seq, or 0:013>-<crc32c:08x>.ckpt
//! ```
//! Zero-padded numbers make the names sort in seq order. A `.rec` body is the encoded records
//! `first..=last`, byte for byte as in segment files; a `.ckpt` body is a checkpoint file.

use std::fmt;

pub const WAL_DIR: &str = "wal";
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// A run of consecutive records in one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalName {
    pub first: u64,
    pub last: u64,
    /// Epoch of the last record.
    pub epoch: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub crc: u32,
}

/// A checkpoint: the state at exactly `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointName {
    pub seq: u64,
    pub epoch: u64,
    /// Header time of the record at `seq` (0 when unknown).
    pub time_ms: u64,
    pub crc: u32,
}

/// Any object of the archive, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectName {
    Wal(WalName),
    Checkpoint(CheckpointName),
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{WAL_DIR}/{:020}-{:020}-{:010}-{:013}-{:013}-{:08x}.rec",
            self.first, self.last, self.epoch, self.first_ms, self.last_ms, self.crc
        )
    }
}

impl fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CHECKPOINT_DIR}/{:020}-{:010}-{:013}-{:08x}.ckpt", self.seq, self.epoch, self.time_ms, self.crc)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectName::Wal(w) => w.fmt(f),
            ObjectName::Checkpoint(c) => c.fmt(f),
        }
    }
}

impl ObjectName {
    /// Parses a key relative to the archive's prefix (`wal/…` or `checkpoints/…`); `None` for
    /// anything else, which readers ignore (a store may hold other files next to the archive).
    pub fn parse(key: &str) -> Option<ObjectName> {
        let (dir, file) = key.rsplit_once('/')?;
        let dir = dir.rsplit('/').next()?;
        match dir {
            WAL_DIR => {
                let f = fields(file.strip_suffix(".rec")?, 6)?;
                let w = WalName {
                    first: f[0].parse().ok()?,
                    last: f[1].parse().ok()?,
                    epoch: f[2].parse().ok()?,
                    first_ms: f[3].parse().ok()?,
                    last_ms: f[4].parse().ok()?,
                    crc: u32::from_str_radix(f[5], 16).ok()?,
                };
                (w.first >= 1 && w.first <= w.last).then_some(ObjectName::Wal(w))
            }
            CHECKPOINT_DIR => {
                let f = fields(file.strip_suffix(".ckpt")?, 4)?;
                Some(ObjectName::Checkpoint(CheckpointName {
                    seq: f[0].parse().ok()?,
                    epoch: f[1].parse().ok()?,
                    time_ms: f[2].parse().ok()?,
                    crc: u32::from_str_radix(f[3], 16).ok()?,
                }))
            }
            _ => None,
        }
    }

    pub fn crc(&self) -> u32 {
        match self {
            ObjectName::Wal(w) => w.crc,
            ObjectName::Checkpoint(c) => c.crc,
        }
    }

    /// The highest seq the object brings the archive to.
    pub fn last_seq(&self) -> u64 {
        match self {
            ObjectName::Wal(w) => w.last,
            ObjectName::Checkpoint(c) => c.seq,
        }
    }

    /// The time the object stands for (its last record's, or its checkpoint's record's).
    pub fn time_ms(&self) -> u64 {
        match self {
            ObjectName::Wal(w) => w.last_ms,
            ObjectName::Checkpoint(c) => c.time_ms,
        }
    }
}

fn fields(s: &str, n: usize) -> Option<Vec<&str>> {
    let f: Vec<&str> = s.split('-').collect();
    (f.len() == n && f.iter().all(|x| !x.is_empty())).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_have_the_documented_form() {
        let w = WalName {
            first: 1,
            last: 42,
            epoch: 3,
            first_ms: 1_700_000_000_000,
            last_ms: 1_700_000_000_500,
            crc: 0xab,
        };
        assert_eq!(
            w.to_string(),
            "wal/00000000000000000001-00000000000000000042-0000000003-1700000000000-1700000000500-000000ab.rec"
        );
        let c = CheckpointName { seq: 42, epoch: 3, time_ms: 0, crc: 0xdeadbeef };
        assert_eq!(c.to_string(), "checkpoints/00000000000000000042-0000000003-0000000000000-deadbeef.ckpt");
        assert_eq!(ObjectName::parse(&format!("some/prefix/{c}")), Some(ObjectName::Checkpoint(c)));
    }

    #[test]
    fn foreign_keys_are_ignored() {
        for k in ["wal/x.rec", "wal/1-2-3-4-5.rec", "other/1-2-3-4.ckpt", "README", "wal/2-1-1-1-1-0.rec"] {
            assert_eq!(ObjectName::parse(k), None, "{k}");
        }
    }

    proptest! {
        #[test]
        fn wal_names_round_trip_and_sort_by_seq(a in 1u64..u64::MAX / 2, n in 0u64..1000, e: u32, t1 in 0u64..9_999_999_999_999, crc: u32,
                                                b in 1u64..u64::MAX / 2) {
            let w = WalName { first: a, last: a + n, epoch: e as u64, first_ms: t1, last_ms: t1, crc };
            prop_assert_eq!(ObjectName::parse(&format!("p/{w}")), Some(ObjectName::Wal(w)));
            let v = WalName { first: b, last: b, ..w };
            if a != b {
                prop_assert_eq!(w.to_string() < v.to_string(), a < b);
            }
        }

        #[test]
        fn checkpoint_names_round_trip(seq: u64, e: u32, t in 0u64..9_999_999_999_999, crc: u32) {
            let c = CheckpointName { seq, epoch: e as u64, time_ms: t, crc };
            prop_assert_eq!(ObjectName::parse(&c.to_string()), Some(ObjectName::Checkpoint(c)));
        }
    }
}
