//! Block metadata, packed: 48 bytes a block so that 10M blocks fit in well under 200 bytes each.

use thiserror::Error;

/// At most this many replicas a block; bounded so the replica list lives inline.
pub const MAX_REPLICAS: usize = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockMeta {
    pub version: u32,
    pub file_count: u32,
    pub del_file_count: u32,
    /// Replicas the block should have (what it was created with).
    pub want: u8,
    nrep: u8,
    pub size: u64,
    pub del_size: u64,
    reps: [u32; MAX_REPLICAS],
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a block holds at most {MAX_REPLICAS} replicas")]
pub struct TooManyReplicas;

impl BlockMeta {
    pub fn new(dataservers: &[u32]) -> Result<Self, TooManyReplicas> {
        let mut b = BlockMeta { want: dataservers.len() as u8, ..Default::default() };
        for &d in dataservers {
            b.add_replica(d)?;
        }
        Ok(b)
    }

    pub fn replicas(&self) -> &[u32] {
        &self.reps[..self.nrep as usize]
    }

    /// Adds a replica; adding one it already has is a no-op.
    pub fn add_replica(&mut self, ds: u32) -> Result<(), TooManyReplicas> {
        if self.replicas().contains(&ds) {
            return Ok(());
        }
        if self.nrep as usize == MAX_REPLICAS {
            return Err(TooManyReplicas);
        }
        self.reps[self.nrep as usize] = ds;
        self.nrep += 1;
        Ok(())
    }

    /// Removes a replica; returns whether it was there.
    pub fn remove_replica(&mut self, ds: u32) -> bool {
        let n = self.nrep as usize;
        match self.reps[..n].iter().position(|&d| d == ds) {
            Some(i) => {
                self.reps.copy_within(i + 1..n, i);
                self.nrep -= 1;
                self.reps[self.nrep as usize] = 0;
                true
            }
            None => false,
        }
    }

    pub fn under_replicated(&self) -> bool {
        self.nrep < self.want
    }

    /// Under-replicated with a replica left to copy from: what replication can repair.
    pub fn needs_copy(&self) -> bool {
        self.nrep > 0 && self.under_replicated()
    }

    /// More replicas than it should have: one can be dropped (planning/surplus.rs).
    pub fn surplus(&self) -> bool {
        self.nrep > self.want
    }

    /// Holds deleted files or bytes: a candidate for compaction (planning/compact.rs).
    pub fn has_deletes(&self) -> bool {
        self.del_size > 0 || self.del_file_count > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_size() {
        assert_eq!(std::mem::size_of::<BlockMeta>(), 48);
    }

    #[test]
    fn replicas_add_remove() {
        let mut b = BlockMeta::new(&[1, 2, 3]).unwrap();
        assert_eq!(b.replicas(), &[1, 2, 3]);
        assert!(b.remove_replica(2));
        assert!(!b.remove_replica(2));
        assert_eq!(b.replicas(), &[1, 3]);
        assert!(b.under_replicated());
        b.add_replica(3).unwrap();
        assert_eq!(b.replicas(), &[1, 3]);
        b.add_replica(7).unwrap();
        b.add_replica(8).unwrap();
        assert_eq!(b.add_replica(9), Err(TooManyReplicas));
    }
}
