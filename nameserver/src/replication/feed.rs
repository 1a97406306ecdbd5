//! The feed: the most recent appended batches, in memory, so that slaves close behind are served
//! without reading files. The writer publishes each batch right after appending it (before its
//! fdatasync), so a slave's fsync runs in parallel with the master's.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::oplog::record;

struct Batch {
    first: u64,
    last: u64,
    data: Bytes,
}

pub struct Feed {
    batches: Mutex<(VecDeque<Batch>, usize)>,
    cap_bytes: usize,
    last: watch::Sender<u64>,
}

pub enum FeedRead {
    /// Encoded records `first..=last`.
    Records { data: Bytes, first: u64, last: u64 },
    /// Nothing after the requested seq yet.
    NotYet,
    /// The requested seq is older than what the feed holds: read the segments.
    TooOld,
}

impl Feed {
    pub fn new(cap_bytes: usize, last_seq: u64) -> Self {
        Feed { batches: Mutex::new((VecDeque::new(), 0)), cap_bytes, last: watch::Sender::new(last_seq) }
    }

    pub fn publish(&self, first: u64, last: u64, data: Bytes) {
        {
            let mut g = self.batches.lock();
            if g.0.back().is_some_and(|b| b.last + 1 != first) {
                g.0.clear(); // a reset (snapshot install): older batches no longer continue
                g.1 = 0;
            }
            g.1 += data.len();
            g.0.push_back(Batch { first, last, data });
            while g.1 > self.cap_bytes && g.0.len() > 1 {
                let b = g.0.pop_front().expect("non-empty");
                g.1 -= b.data.len();
            }
        }
        self.last.send_replace(last);
    }

    /// Forgets everything (the log restarted after a snapshot at `seq`).
    pub fn reset(&self, seq: u64) {
        let mut g = self.batches.lock();
        g.0.clear();
        g.1 = 0;
        self.last.send_replace(seq);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    pub fn last(&self) -> u64 {
        *self.last.borrow()
    }

    /// Records from `from` on, about `max_bytes` of them.
    pub fn read(&self, from: u64, max_bytes: usize) -> FeedRead {
        let g = self.batches.lock();
        let Some(oldest) = g.0.front() else {
            return if from > self.last() { FeedRead::NotYet } else { FeedRead::TooOld };
        };
        if from < oldest.first {
            return FeedRead::TooOld;
        }
        let Some(start) = g.0.iter().position(|b| b.last >= from) else {
            return FeedRead::NotYet;
        };
        let mut out = BytesMut::new();
        let mut last = 0;
        for b in g.0.iter().skip(start) {
            let mut data = b.data.clone();
            if b.first < from {
                data = data.slice(skip_records(&data, from - b.first)..);
            }
            out.extend_from_slice(&data);
            last = b.last;
            if out.len() >= max_bytes {
                break;
            }
        }
        FeedRead::Records { data: out.freeze(), first: from, last }
    }
}

/// Byte offset after the first `n` records of an encoded batch.
fn skip_records(data: &[u8], n: u64) -> usize {
    let mut off = 0;
    for _ in 0..n {
        let h = record::decode_header(&data[off..]).expect("the feed holds only records the writer encoded");
        off += record::HEADER_LEN + h.len as usize;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::RecordType;

    fn batch(from: u64, to: u64) -> Bytes {
        let mut v = Vec::new();
        for s in from..=to {
            record::encode(&mut v, RecordType::BlockRemove, 1, s, 0, &[1, 2, 3]);
        }
        Bytes::from(v)
    }

    fn seqs(data: &Bytes) -> Vec<u64> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let (r, n) = record::decode(&data.slice(off..)).unwrap();
            out.push(r.header.seq);
            off += n;
        }
        out
    }

    #[test]
    fn serves_from_the_middle_of_a_batch_and_evicts_old_ones() {
        let f = Feed::new(10 * 43 + 1, 0);
        f.publish(1, 5, batch(1, 5));
        f.publish(6, 8, batch(6, 8));
        match f.read(3, usize::MAX) {
            FeedRead::Records { data, first, last } => {
                assert_eq!((first, last), (3, 8));
                assert_eq!(seqs(&data), vec![3, 4, 5, 6, 7, 8]);
            }
            _ => panic!("expected records"),
        }
        assert!(matches!(f.read(9, 100), FeedRead::NotYet));
        f.publish(9, 12, batch(9, 12));
        assert!(matches!(f.read(2, 100), FeedRead::TooOld), "the first batch was evicted");
        f.reset(100);
        assert!(matches!(f.read(101, 100), FeedRead::NotYet));
        assert!(matches!(f.read(50, 100), FeedRead::TooOld));
    }
}
