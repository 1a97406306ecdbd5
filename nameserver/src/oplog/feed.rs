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
    ///
    /// Runs under the lock the writer takes to publish, once per shipment to each slave: the start
    /// is found by binary search (batches are contiguous and ordered by seq; a full feed holds tens
    /// of thousands of them), and a read within one batch shares its bytes instead of copying.
    pub fn read(&self, from: u64, max_bytes: usize) -> FeedRead {
        let g = self.batches.lock();
        let Some(oldest) = g.0.front() else {
            return if from > self.last() { FeedRead::NotYet } else { FeedRead::TooOld };
        };
        if from < oldest.first {
            return FeedRead::TooOld;
        }
        let start = g.0.partition_point(|b| b.last < from);
        let Some(first) = g.0.get(start) else {
            return FeedRead::NotYet;
        };
        let head = if first.first < from {
            first.data.slice(skip_records(&first.data, from - first.first)..)
        } else {
            first.data.clone()
        };
        if head.len() > max_bytes {
            // One group commit larger than a shipment: cut it at a record boundary.
            let (len, n) = records_within(&head, max_bytes);
            return FeedRead::Records { data: head.slice(..len), first: from, last: from + n - 1 };
        }
        let mut last = first.last;
        // Whole batches after the first while they fit: sized first, copied once.
        let (mut len, mut end) = (head.len(), start + 1);
        for b in g.0.range(start + 1..) {
            if len + b.data.len() > max_bytes {
                break;
            }
            len += b.data.len();
            last = b.last;
            end += 1;
        }
        if end == start + 1 {
            return FeedRead::Records { data: head, first: from, last };
        }
        let mut out = BytesMut::with_capacity(len);
        out.extend_from_slice(&head);
        g.0.range(start + 1..end).for_each(|b| out.extend_from_slice(&b.data));
        FeedRead::Records { data: out.freeze(), first: from, last }
    }
}

/// The longest prefix of whole records within `max_bytes` (at least one record): (bytes, records).
///
/// Invariant: a shipment never exceeds the bound it was read with unless a single record does, so
/// a frame stays under the slave's limit (`replication::frame::MAX_FRAME`) however large a group
/// commit was.
fn records_within(data: &[u8], max_bytes: usize) -> (usize, u64) {
    let (mut off, mut n) = (0, 0);
    while off < data.len() {
        let h = record::decode_header(&data[off..]).expect("the feed holds only records the writer encoded");
        let next = off + record::HEADER_LEN + h.len as usize;
        if next > max_bytes && n > 0 {
            break;
        }
        (off, n) = (next, n + 1);
    }
    (off, n)
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
            record::encode(&mut v, RecordType::BlockRemove, crate::epoch::Epoch(1), s, 0, &[1, 2, 3]);
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

    /// A shipment never exceeds its bound, however large one group commit was (a frame above the
    /// slave's limit would be refused, and the slave would log in again into the same frame), and a
    /// single record larger than the bound still ships, alone.
    #[test]
    fn a_batch_larger_than_a_shipment_is_split_at_record_boundaries() {
        let f = Feed::new(usize::MAX, 0);
        f.publish(1, 1000, batch(1, 1000));
        f.publish(1001, 3000, batch(1001, 3000));
        let max = 43 * 64;
        let mut from = 1;
        while from <= 3000 {
            let FeedRead::Records { data, first, last } = f.read(from, max) else {
                panic!("seq {from} is in the feed")
            };
            assert!(data.len() <= max, "a shipment of {} bytes from seq {from} exceeds {max}", data.len());
            assert_eq!(seqs(&data), (first..=last).collect::<Vec<_>>());
            from = last + 1;
        }
        let FeedRead::Records { data, first, last } = f.read(5, 10) else { panic!("seq 5 is in the feed") };
        assert_eq!((first, last, data.len()), (5, 5, 43));
    }

    /// Every start seq and size bound over a feed of many uneven batches gives exactly the records
    /// from that seq on, whole batches after the first, stopping once the bound is reached.
    #[test]
    fn reads_match_the_records_from_any_seq_on() {
        let f = Feed::new(usize::MAX, 0);
        let mut seq = 1;
        for i in 0..300u64 {
            let n = 1 + (i * 7) % 5;
            f.publish(seq, seq + n - 1, batch(seq, seq + n - 1));
            seq += n;
        }
        let last = seq - 1;
        for from in 1..=last {
            for max in [1, 43 * 3, 43 * 50, usize::MAX] {
                let FeedRead::Records { data, first, last: got_last } = f.read(from, max) else {
                    panic!("seq {from} is in the feed");
                };
                let got = seqs(&data);
                assert_eq!(first, from);
                assert_eq!(got.first(), Some(&from));
                assert_eq!(got.last(), Some(&got_last));
                assert_eq!(got, (from..=got_last).collect::<Vec<_>>(), "contiguous from {from}");
                if max == usize::MAX {
                    assert_eq!(got_last, last);
                }
            }
        }
        assert!(matches!(f.read(last + 1, 10), FeedRead::NotYet));
    }
}
