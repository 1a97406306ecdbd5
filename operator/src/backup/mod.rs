//! On-demand backups: the `TfsBackup` resource and its controller, run by the operator's leader
//! beside the TfsNameserver controller. A new TfsBackup becomes Running, asks the current master
//! of its TfsNameserver to take a backup (`Backup.TakeBackup` on the client port, with the TLS the
//! operator reads Status with), and ends Completed (seq, size, the checkpoint object) or Failed
//! with the reason — after a few attempts with back-off when no master answers. A Completed or
//! Failed backup is never taken again. TfsBackups are not owned by their TfsNameserver: like
//! the archive they describe, they outlive it (CloudNativePG keeps backups the same way).
//!
//! - `decide`: the state machine, pure;
//! - `controller`: reading the nameserver and its master, the call, the status and Events.

pub mod controller;
pub mod decide;

pub use controller::run;
