//! TakeBackup's gate between its callers (server/backup.rs, service `Backup` on the client port)
//! and the archiver: a checkpoint now, answered once it and the wal through its seq are archived.
//!
//! Invariant (one backup at a time): a call made while a backup runs waits for that one and gets
//! its result; it never starts a second.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::proto;

/// How long a caller waits before DEADLINE_EXCEEDED (the backup goes on).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A TakeBackup waiting for its checkpoint and the wal through it.
pub struct BackupRequest {
    pub reply: oneshot::Sender<Result<proto::TakeBackupReply, String>>,
}

type Outcome = Option<Result<proto::TakeBackupReply, String>>;

/// The backup running now, shared by every caller.
#[derive(Default)]
pub struct Gate {
    sender: OnceLock<mpsc::Sender<BackupRequest>>,
    running: Mutex<Option<watch::Receiver<Outcome>>>,
}

impl Gate {
    pub(super) fn set_sender(&self, tx: mpsc::Sender<BackupRequest>) {
        let _ = self.sender.set(tx);
    }

    /// Where backups are asked for; none while no archive is configured.
    pub fn sender(&self) -> Option<&mpsc::Sender<BackupRequest>> {
        self.sender.get()
    }

    /// The running backup's outcome, starting one if none runs.
    pub fn join(&self, sender: &mpsc::Sender<BackupRequest>) -> watch::Receiver<Outcome> {
        let mut g = self.running.lock();
        if let Some(rx) = g.as_ref()
            && rx.borrow().is_none()
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        *g = Some(rx.clone());
        let sender = sender.clone();
        tokio::spawn(async move {
            let (reply, wait) = oneshot::channel();
            let outcome = match sender.send(BackupRequest { reply }).await {
                Ok(()) => wait.await.unwrap_or_else(|_| Err("the archiver stopped".into())),
                Err(_) => Err("the archiver is not running".into()),
            };
            let _ = tx.send(Some(outcome));
        });
        rx
    }
}
