//! TakeBackup (service `Backup` on the client port): a checkpoint now, answered once it and the
//! wal through its seq are archived.
//!
//! Invariant (one backup at a time): a call made while a backup runs waits for that one and gets
//! its result; it never starts a second.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status};

use super::archiver::BackupRequest;
use crate::engine::Engine;
use crate::proto::{self, backup_server::Backup};

/// How long a caller waits before DEADLINE_EXCEEDED (the backup goes on).
pub const TIMEOUT: Duration = Duration::from_secs(120);

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

    /// The running backup's outcome, starting one if none runs.
    fn join(&self, sender: &mpsc::Sender<BackupRequest>) -> watch::Receiver<Outcome> {
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

pub struct BackupApi {
    pub engine: Engine,
}

#[tonic::async_trait]
impl Backup for BackupApi {
    async fn take_backup(
        &self,
        _req: Request<proto::TakeBackupRequest>,
    ) -> Result<Response<proto::TakeBackupReply>, Status> {
        let sh = &self.engine.shared;
        let Some(sender) = sh.archive.backups.sender.get() else {
            return Err(Status::failed_precondition("no archive configured (spec.backup)"));
        };
        let role = sh.role.lock().clone();
        role.check_writable(std::time::Instant::now())
            .map_err(|e| crate::server::to_status(crate::engine::WriteError::NotWritable(e)))?;
        let mut rx = sh.archive.backups.join(sender);
        match tokio::time::timeout(TIMEOUT, rx.wait_for(|o| o.is_some())).await {
            Ok(Ok(o)) => match o.clone().expect("waited for it") {
                Ok(r) => Ok(Response::new(r)),
                Err(e) => Err(Status::unavailable(format!("backup failed: {e}"))),
            },
            Ok(Err(_)) => Err(Status::unavailable("the backup was abandoned")),
            Err(_) => {
                let s = sh.archive.status(crate::engine::now_ms());
                Err(Status::deadline_exceeded(format!(
                    "backup not done within {}s (it goes on): archived through seq {}, committed {}, last checkpoint \
                     seq {} ({}), last error: {}",
                    TIMEOUT.as_secs(),
                    s.archived_seq,
                    sh.commit.committed(),
                    s.last_checkpoint_seq,
                    s.last_checkpoint_object,
                    if s.last_error.is_empty() { "none" } else { &s.last_error }
                )))
            }
        }
    }
}
