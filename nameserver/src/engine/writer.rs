//! The writer thread: sequencing, group commit, role changes, slave appends, checkpoints.
//!
//! Invariant: the state holds exactly the records of the oplog, in seq order. A record is applied
//! to the state and then appended in the same step; the durable seq is published only after the
//! fdatasync that covers it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Command, Shared, WriteError};
use crate::checkpoint::{self, Snapshot};
use crate::mutation::Mutation;
use crate::oplog::{Oplog, Record, record};
use crate::proto;
use crate::role::{Role, RoleState};
use crate::state::{ApplyError, State};

/// A write in progress: read the state, log mutations (each applied at once, so later logic in
/// the same batch sees it).
pub struct Txn<'a> {
    state: &'a mut State,
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    epoch: u64,
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

    pub fn epoch(&self) -> u64 {
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
        let (max, max_records) = (w.shared.cfg.max_batch, w.shared.cfg.max_group_records);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.blocking_recv() {
            let mut records = cost(&first);
            batch.push(first);
            while batch.len() < max && records < max_records {
                match rx.try_recv() {
                    Ok(c) => {
                        records += cost(&c);
                        batch.push(c);
                    }
                    Err(_) => break,
                }
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
    fn in_txn<R>(&mut self, epoch: u64, requests: usize, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
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
    fn commit_buf(&mut self, first_seq: u64, epoch: u64, requests: usize) {
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

    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::Write(..) => unreachable!("handled by run"),
            Command::Append { records, reply } => {
                let _ = reply.send(self.append(records));
            }
            Command::InstallSnapshot { snapshot, reply } => {
                let _ = reply.send(self.install(*snapshot));
            }
            Command::SetRole { role, reply } => {
                let _ = reply.send(self.set_role(role));
            }
            // Of a history a snapshot install replaced since: its file is gone, nothing to do.
            Command::CheckpointDone { generation, .. } if generation != self.generation => {}
            // Cleared on failure too: a failed checkpoint must not stop all later ones (the log
            // would then grow without bound).
            Command::CheckpointDone { seq: None, .. } => self.checkpoint_thread = None,
            Command::CheckpointDone { seq: Some(seq), .. } => {
                self.checkpoint_thread = None;
                self.shared.checkpoint_seq.store(seq, Ordering::Relaxed);
                // Segments holding records not yet archived stay (archive/archiver.rs: the floor
                // is the archived seq while this node archives, u64::MAX otherwise).
                let removable = seq.min(self.shared.archive.floor.load(Ordering::Relaxed));
                match self.oplog.remove_through(removable) {
                    Ok(n) if n > 0 => {
                        info!(removed = n, through = seq, "old oplog segments removed")
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot remove old oplog segments"),
                }
                self.shared.first_log_seq.store(self.oplog.first_seq(), Ordering::Relaxed);
            }
        }
    }

    /// Slave side: apply then append records from the master. Stops at the first record that
    /// does not continue the log or does not apply; nothing after it is kept.
    fn append(&mut self, records: Vec<Record>) -> Result<u64, String> {
        if self.shared.role.lock().is_master() {
            return Err("this node is a master; it takes no records from another".into());
        }
        let first_seq = self.oplog.last_seq() + 1;
        let mut failure = None;
        let mut epoch = 0;
        {
            let mut state = self.shared.state.write();
            for r in &records {
                let m = match Mutation::decode(r.header.rtype, r.payload.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        failure = Some(format!("seq {}: undecodable payload: {e}", r.header.seq));
                        break;
                    }
                };
                if let Err(e) = state.apply(&r.header, &m) {
                    failure = Some(format!("seq {}: {e}", r.header.seq));
                    break;
                }
                epoch = r.header.epoch;
                r.encode_into(&mut self.buf);
            }
        }
        let n = records.len();
        self.commit_buf(first_seq, epoch, n);
        match failure {
            Some(f) => Err(f),
            None => Ok(self.oplog.last_seq()),
        }
    }

    fn install(&mut self, snap: Snapshot) -> Result<u64, String> {
        if self.shared.role.lock().is_master() {
            return Err("this node is a master; it takes no snapshot from another".into());
        }
        let seq = snap.meta.seq;
        // A checkpoint of the replaced history still being written would land after the install
        // (possibly at a higher seq than the snapshot's) and be recovered instead of it: wait for
        // it, and forget its completion (finish_install removes its file).
        if let Some(t) = self.checkpoint_thread.take() {
            let _ = t.join();
        }
        self.generation += 1;
        // Steps of an atomic install (checkpoint.rs `stage_install`): stage (the commit point),
        // reset the log, make the snapshot the only checkpoint. Recovery completes the last two.
        let dir = self.shared.cfg.checkpoint_dir();
        checkpoint::stage_install(&dir, &snap).map_err(|e| e.to_string())?;
        crate::crashpoint::reached("install:checkpoint-written");
        let state = snap.into_state().map_err(|e| e.to_string())?;
        self.oplog.reset_after(seq).map_err(|e| e.to_string())?;
        crate::crashpoint::reached("install:log-reset");
        checkpoint::finish_install(&dir, seq).map_err(|e| e.to_string())?;
        crate::crashpoint::reached("install:checkpoints-replaced");
        *self.shared.state.write() = state;
        self.shared.checkpoint_seq.store(seq, Ordering::Relaxed);
        self.shared.first_log_seq.store(self.oplog.first_seq(), Ordering::Relaxed);
        self.shared.commit.reset(seq);
        self.shared.feed.reset(seq);
        self.since_checkpoint = 0;
        info!(seq, "snapshot installed");
        Ok(seq)
    }

    /// Role changes happen here, in order with writes, so that a promotion's EpochStart is the
    /// first record of its epoch and no write is stamped with an epoch it was not accepted under.
    fn set_role(&mut self, new: RoleState) -> Result<RoleState, String> {
        let cur = self.shared.role.lock().clone();
        let state_epoch = self.shared.state.read().epoch;
        if cur.role == Role::Standalone {
            return Err("a standalone nameserver takes no role".into());
        }
        if new.epoch < cur.epoch || new.epoch < state_epoch {
            return Err(format!("epoch {} is older than this node's epoch {}", new.epoch, cur.epoch.max(state_epoch)));
        }
        let promote = new.role == Role::Master && (cur.role != Role::Master || new.epoch > cur.epoch);
        if promote && new.epoch <= state_epoch {
            return Err(format!(
                "cannot become master at epoch {}: records of epoch {state_epoch} are already logged",
                new.epoch
            ));
        }
        *self.shared.role.lock() = new.clone();
        if promote {
            info!(epoch = new.epoch, seq = self.oplog.last_seq(), "promoted to master");
            // A new master keeps every segment until its archiver has said what is archived
            // (archive/archiver.rs): set here, in order with the writes of the new epoch, so no
            // checkpoint of this mastership removes records the archive may still need.
            if self.shared.archive.config.is_some() {
                self.shared.archive.floor.store(0, Ordering::Relaxed);
            }
            let node = self.shared.cfg.node.clone();
            self.in_txn(new.epoch, 1, |txn| {
                txn.log(Mutation::EpochStart(proto::EpochStart { epoch: new.epoch, node })).map(|_| ())
            })
            .map_err(|e| e.to_string())?;
        } else if new.role == Role::Slave && cur.is_master() {
            info!(epoch = new.epoch, master = %new.master_addr, "demoted to slave");
        }
        if new.role == Role::Slave {
            // A slave archives nothing and keeps no segment for the archive.
            self.shared.archive.floor.store(crate::archive::NO_FLOOR, Ordering::Relaxed);
        }
        self.shared.metrics.epoch.set(new.epoch as i64);
        Ok(new)
    }

    fn start_checkpoint(&mut self) {
        let t = Instant::now();
        let snap = Snapshot::of(&self.shared.state.read());
        let seq = snap.meta.seq;
        info!(seq, blocks = snap.blocks.len(), copy_ms = t.elapsed().as_secs_f64() * 1000.0, "checkpoint started");
        self.since_checkpoint = 0;
        let dir = self.shared.cfg.checkpoint_dir();
        let tx = self.tx.clone();
        let generation = self.generation;
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new().name("checkpoint".into()).spawn(move || {
            let t = Instant::now();
            let done = match checkpoint::write(&dir, &snap, 2) {
                Ok(path) => {
                    if let Ok(m) = std::fs::metadata(&path) {
                        shared.space.note_checkpoint(m.len());
                    }
                    info!(seq, write_ms = t.elapsed().as_millis() as u64, "checkpoint written");
                    Some(seq)
                }
                Err(e) => {
                    error!(error = %e, "checkpoint failed");
                    None
                }
            };
            let _ = tx.blocking_send(Command::CheckpointDone { seq: done, generation });
        });
        match spawned {
            Ok(t) => self.checkpoint_thread = Some(t),
            Err(e) => error!(error = %e, "cannot start the checkpoint thread"),
        }
    }
}
