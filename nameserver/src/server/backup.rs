//! TakeBackup (service `Backup` on the client port): a checkpoint now, answered once it and the
//! wal through its seq are archived (the gate and its invariant: archive/backup.rs).

use tonic::{Request, Response, Status};

use crate::archive::backup::TIMEOUT;
use crate::engine::Engine;
use crate::proto::{self, backup_server::Backup};

pub struct BackupApi {
    pub engine: Engine,
}

#[tonic::async_trait]
impl Backup for BackupApi {
    async fn take_backup(
        &self,
        _req: Request<proto::TakeBackupRequest>,
    ) -> Result<Response<proto::TakeBackupReply>, Status> {
        let Some(sender) = self.engine.archive().backups.sender() else {
            return Err(Status::failed_precondition("no archive configured (spec.backup)"));
        };
        let role = self.engine.role().lock().clone();
        role.check_writable(std::time::Instant::now())
            .map_err(|e| crate::server::to_status(crate::engine::WriteError::NotWritable(e)))?;
        let mut rx = self.engine.archive().backups.join(sender);
        match tokio::time::timeout(TIMEOUT, rx.wait_for(|o| o.is_some())).await {
            Ok(Ok(o)) => match o.clone().expect("waited for it") {
                Ok(r) => Ok(Response::new(r)),
                Err(e) => Err(Status::unavailable(format!("backup failed: {e}"))),
            },
            Ok(Err(_)) => Err(Status::unavailable("the backup was abandoned")),
            Err(_) => {
                let s = self.engine.archive().status(crate::engine::now_ms());
                Err(Status::deadline_exceeded(format!(
                    "backup not done within {}s (it goes on): archived through seq {}, committed {}, last checkpoint \
                     seq {} ({}), last error: {}",
                    TIMEOUT.as_secs(),
                    s.archived_seq,
                    self.engine.commit().committed(),
                    s.last_checkpoint_seq,
                    s.last_checkpoint_object,
                    if s.last_error.is_empty() { "none" } else { &s.last_error }
                )))
            }
        }
    }
}
