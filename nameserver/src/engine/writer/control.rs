//! The writer's commands other than writes: a slave's appends, a snapshot install, a role change,
//! a background checkpoint started and finished.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{error, info, warn};

use super::Writer;
use crate::checkpoint::{self, Snapshot};
use crate::engine::Command;
use crate::epoch::Epoch;
use crate::mutation::Mutation;
use crate::oplog::Record;
use crate::oplog::format;
use crate::role::{Role, RoleState};

impl Writer {
    pub(super) fn control(&mut self, cmd: Command) {
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
                        info!(removed = n, through = removable, checkpoint = seq, "old oplog segments removed")
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
        let mut epoch = Epoch::ZERO;
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
        // Invariant (epochs only rise): a node never goes back to an epoch below the one it was
        // told or the one its log holds, and becomes master only at an epoch above every record.
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
            info!(epoch = %new.epoch, seq = self.oplog.last_seq(), "promoted to master");
            // A new master keeps every segment until its archiver has said what is archived
            // (archive/archiver.rs): set here, in order with the writes of the new epoch, so no
            // checkpoint of this mastership removes records the archive may still need.
            if self.shared.archive.config.is_some() {
                self.shared.archive.floor.store(0, Ordering::Relaxed);
            }
            let node = self.shared.cfg.node.clone();
            self.in_txn(new.epoch, 1, |txn| {
                txn.log(Mutation::EpochStart(format::EpochStart { epoch: new.epoch.get(), node })).map(|_| ())
            })
            .map_err(|e| e.to_string())?;
        } else if new.role == Role::Slave && cur.is_master() {
            info!(epoch = %new.epoch, master = %new.master_addr, "demoted to slave");
        }
        if new.role == Role::Slave {
            // A slave archives nothing and keeps no segment for the archive.
            self.shared.archive.floor.store(crate::archive::NO_FLOOR, Ordering::Relaxed);
        }
        self.shared.metrics.epoch.set(new.epoch.get() as i64);
        Ok(new)
    }

    pub(super) fn start_checkpoint(&mut self) {
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
