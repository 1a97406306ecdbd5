//! The writer thread: sequencing, group commit, role changes, slave appends, checkpoints.
//!
//! Invariant: the state holds exactly the records of the oplog, in seq order. A record is applied
//! to the state and then appended in the same step; the durable seq is published only after the
//! fdatasync that covers it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{error, info};

mod control;

use super::{Command, Shared, WriteError};
use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::{Oplog, record};
use crate::state::{ApplyError, State};

/// A write in progress: read the state, log mutations (each applied at once, so later logic in
/// the same batch sees it).
pub struct Txn<'a> {
    state: &'a mut State,
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    epoch: Epoch,
    time_ms: u64,
    last_seq: u64,
}

impl Txn<'_> {
    pub fn state(&self) -> &State {
        self.state
    }

    /// Soft, unlogged state (dataserver reservations).
    pub fn soft(&mut self) -> &mut State {
        self.state
    }

    /// Validates, applies and encodes one mutation; returns its seq.
    pub fn log(&mut self, m: Mutation) -> Result<u64, ApplyError> {
        let seq = self.state.applied_seq + 1;
        let h = record::Header { rtype: m.rtype(), epoch: self.epoch, seq, time_ms: self.time_ms, len: 0, crc: 0 };
        self.state.apply(&h, &m)?;
        self.scratch.clear();
        m.encode_payload(self.scratch);
        record::encode(self.buf, h.rtype, self.epoch, seq, self.time_ms, self.scratch);
        self.last_seq = seq;
        Ok(seq)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

struct Writer {
    shared: Arc<Shared>,
    oplog: Oplog,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    since_checkpoint: u64,
    /// The background checkpoint in progress, if any.
    checkpoint_thread: Option<std::thread::JoinHandle<()>>,
    /// Bumped by each snapshot install: a checkpoint started before it belongs to a replaced history.
    generation: u64,
    tx: mpsc::Sender<Command>,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    oplog: Oplog,
    mut rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let since = oplog.last_seq().saturating_sub(shared.checkpoint_seq.load(Ordering::Relaxed));
    let mut w = Writer {
        shared,
        oplog,
        buf: Vec::with_capacity(1 << 20),
        scratch: Vec::new(),
        since_checkpoint: since,
        checkpoint_thread: None,
        generation: 0,
        tx,
    };
    std::thread::Builder::new().name("oplog-writer".into()).spawn(move || {
        let mut batch = Vec::with_capacity(w.shared.cfg.max_batch);
        while let Some(first) = rx.blocking_recv() {
            let mut records = cost(&first);
            batch.push(first);
            w.gather(&mut rx, &mut batch, &mut records);
            if w.delay_commit(&batch, records) {
                w.shared.metrics.commit_delays.inc();
                std::thread::sleep(w.shared.cfg.commit_delay);
                w.gather(&mut rx, &mut batch, &mut records);
            }
            w.run(&mut batch);
        }
        info!("oplog writer stopped");
    })?;
    Ok(())
}

/// Records a command is expected to log.
fn cost(c: &Command) -> u64 {
    match c {
        Command::Write(_, records) => *records,
        Command::Append { records, .. } => records.len() as u64,
        _ => 1,
    }
}

impl Writer {
    /// Adds what is queued to the batch, up to the group commit's bounds.
    fn gather(&self, rx: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>, records: &mut u64) {
        let cfg = &self.shared.cfg;
        while batch.len() < cfg.max_batch && *records < cfg.max_group_records {
            match rx.try_recv() {
                Ok(c) => {
                    *records += cost(&c);
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
    }

    /// Whether to wait `commit_delay` before this group commit so that more writes join it
    /// (PostgreSQL's commit_delay and commit_siblings): only a batch of writes (no role change,
    /// slave append or checkpoint waits behind it), with room left, while at least
    /// `commit_siblings` records of admitted writes are in flight. Then the writes keep coming
    /// (the wait is shorter than their round trip) and one fdatasync, one shipment to the slaves
    /// and one ack serve more of them; at low concurrency nothing waits.
    ///
    /// Invariant: the wait comes before `writes` checks the mastership (at the time it runs) and
    /// appends, so a mastership that lapses during the wait refuses the batch
    /// (`a_mastership_that_lapses_during_the_delay_refuses_the_write`).
    fn delay_commit(&self, batch: &[Command], records: u64) -> bool {
        let cfg = &self.shared.cfg;
        !cfg.commit_delay.is_zero()
            && batch.len() < cfg.max_batch
            && records < cfg.max_group_records
            && self.shared.inflight_records() >= cfg.commit_siblings as usize
            && batch.iter().all(|c| matches!(c, Command::Write(..)))
    }

    fn run(&mut self, batch: &mut Vec<Command>) {
        let mut writes = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Command::Write(f, _) => writes.push(f),
                other => {
                    // Keep order: whatever writes came before a control command go first.
                    self.writes(&mut writes);
                    self.control(other);
                }
            }
        }
        self.writes(&mut writes);
        if self.since_checkpoint >= self.shared.cfg.checkpoint_every && self.checkpoint_thread.is_none() {
            self.start_checkpoint();
        }
    }

    fn writes(&mut self, writes: &mut Vec<super::WriteFn>) {
        if writes.is_empty() {
            return;
        }
        let role = self.shared.role.lock().clone();
        let n = writes.len();
        if let Err(e) = role.check_writable(Instant::now()) {
            for f in writes.drain(..) {
                f(Err(WriteError::NotWritable(e.clone())));
            }
            return;
        }
        let abandoned = self.in_txn(role.epoch, n, |txn| {
            let mut abandoned = 0;
            for f in writes.drain(..) {
                txn.last_seq = 0;
                if !f(Ok(txn)) {
                    abandoned += 1;
                }
            }
            abandoned
        });
        if abandoned > 0 {
            self.shared.metrics.abandoned.inc_by(abandoned);
        }
    }

    /// Runs `f` over a transaction at `epoch` under the state's write lock, then makes what it
    /// logged durable (one group commit for `requests` requests).
    fn in_txn<R>(&mut self, epoch: Epoch, requests: usize, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let first_seq = self.oplog.last_seq() + 1;
        let r = {
            let mut state = self.shared.state.write();
            let mut txn = Txn {
                state: &mut state,
                buf: &mut self.buf,
                scratch: &mut self.scratch,
                epoch,
                time_ms: now_ms(),
                last_seq: 0,
            };
            f(&mut txn)
        };
        self.commit_buf(first_seq, epoch, requests);
        r
    }

    /// Appends and syncs whatever the batch encoded, then publishes the durable seq.
    fn commit_buf(&mut self, first_seq: u64, epoch: Epoch, requests: usize) {
        let last_seq = self.shared.state.read().applied_seq;
        if last_seq < first_seq {
            return;
        }
        let t = Instant::now();
        let r = self.oplog.append(&self.buf, first_seq, last_seq, epoch).and_then(|_| {
            // Slaves may receive the batch while it is being synced here: it is only acknowledged
            // once durable on both, so shipping first only overlaps the two fdatasyncs.
            self.shared.feed.publish(first_seq, last_seq, bytes::Bytes::copy_from_slice(&self.buf));
            self.oplog.sync()
        });
        if let Err(e) = r {
            // The state already holds these records and they cannot be made durable: the only
            // safe move is to stop, before anything is acknowledged (recovery replays the log).
            error!(error = %e, "oplog write failed; stopping the nameserver");
            std::process::abort();
        }
        let m = &self.shared.metrics;
        m.fsync_seconds.observe(t.elapsed().as_secs_f64());
        m.batch_records.observe((last_seq - first_seq + 1) as f64);
        m.batch_requests.observe(requests as f64);
        m.last_seq.set(last_seq as i64);
        self.since_checkpoint += last_seq - first_seq + 1;
        self.buf.clear();
        self.shared.commit.set_durable(last_seq);
    }
}
