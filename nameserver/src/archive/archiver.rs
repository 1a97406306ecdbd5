//! The archiver: a master's task that uploads the committed oplog and checkpoints.
//!
//! Invariant (the archive is a prefix of the one history): only committed records (seq <=
//! `commit.committed()`) and checkpoints at a committed seq are uploaded, and only by a writable
//! master once its own epoch's first record is committed. Committed records survive every failover,
//! so every later master continues exactly what is archived: a new master lists the archive, finds
//! the highest archived seq L and continues from L+1 after checking that its own record at L has
//! the archive's epoch. An archive beyond its committed seq, or of another epoch at L, holds another
//! history (a restore to an earlier point archiving to its source's prefix): it is refused, never
//! appended to (`ArchiveError::ForeignHistory`). When L+1 is no
//! longer in its log, or the archive has no checkpoint while the log no longer starts at seq 1, it
//! first uploads a checkpoint (a base backup) so a restore can bridge the gap.
//!
//! Invariant (nothing unarchived is deleted locally): while this node archives, `floor` is the
//! archived seq and the writer removes no segment holding a record above it (writer
//! `remove_through` is capped at it).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::mpsc;
use tracing::{info, warn};

mod upload;

use super::backup::BackupRequest;
use super::layout::ObjectName;
use super::plan;
use super::store::{Listed, Store};
use super::{ArchiveConfig, ArchiveError, ArchiveShared, NO_FLOOR};
use crate::engine::Engine;
use crate::engine::now_ms;
use crate::epoch::Epoch;
use crate::oplog::segment::Cursor;
use crate::proto;
use crate::state::epoch_at;

/// Records are uploaded in objects of about this size (and sooner, see `ArchiveConfig::timeout`).
pub const CHUNK: usize = 8 << 20;

/// Runs for the life of the process; archives while this node is a writable master.
pub async fn run(engine: Engine, store: Store, cfg: ArchiveConfig, mut requests: mpsc::Receiver<BackupRequest>) {
    let a = engine.archive();
    let mut failures = 0u32;
    loop {
        let role = engine.role().lock().clone();
        if role.check_writable(Instant::now()).is_err() {
            a.oldest_unarchived_ms.store(0, Ordering::Relaxed);
            while let Ok(r) = requests.try_recv() {
                let _ = r.reply.send(Err("this nameserver is not a writable master".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut s = Session::new(engine.clone(), store.clone(), cfg.clone(), role.epoch);
        match s.run(&mut requests).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                s.error(&e);
                // Backs off between attempts; the buffered records are read again (they stay on disk).
                tokio::time::sleep(Duration::from_millis(500 << failures.min(5))).await;
            }
        }
        for (_, r) in s.pending.drain(..) {
            let _ = r.reply.send(Err("the archive session ended (mastership changed or an error); retry".into()));
        }
    }
}

/// Records read and not yet uploaded.
#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    first: u64,
    last: u64,
    epoch: u64,
    first_ms: u64,
    last_ms: u64,
}

/// One mastership's archiving.
struct Session {
    engine: Engine,
    store: Store,
    cfg: ArchiveConfig,
    epoch: Epoch,
    /// Every committed record through this seq is archived (or covered by an archived checkpoint).
    archived: u64,
    buf: Buffer,
    cursor: Option<Cursor>,
    pending: Vec<(proto::TakeBackupReply, BackupRequest)>,
}

impl Session {
    fn new(engine: Engine, store: Store, cfg: ArchiveConfig, epoch: Epoch) -> Self {
        Session { engine, store, cfg, epoch, archived: 0, buf: Buffer::default(), cursor: None, pending: Vec::new() }
    }

    fn shared(&self) -> &ArchiveShared {
        self.engine.archive()
    }

    /// Still the writable master of the epoch this session started in.
    fn still_master(&self) -> bool {
        let r = self.engine.role().lock().clone();
        r.epoch == self.epoch && r.check_writable(Instant::now()).is_ok()
    }

    fn error(&self, e: &ArchiveError) {
        warn!(error = %e, "archive: {e}");
        self.engine.metrics().archive.errors.inc();
        let mut s = self.shared().status.lock();
        s.last_error = e.to_string();
        s.last_error_unix_ms = now_ms() as i64;
    }

    fn set_archived(&mut self, seq: u64) {
        self.archived = seq;
        let a = self.shared();
        hold(a, seq);
        a.status.lock().archived_seq = seq;
        self.engine.metrics().archive.archived_seq.set(seq as i64);
    }

    /// Retries a store operation with backoff (about 10 s in all), reporting each failure.
    async fn retry<T, F, Fut>(&self, what: &str, f: F) -> Result<T, ArchiveError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ArchiveError>>,
    {
        f.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(5),
        )
        .notify(|e: &ArchiveError, d| {
            warn!(error = %e, retry_in_ms = d.as_millis() as u64, "archive: {what} failed; retrying");
            self.error(e);
        })
        .await
    }

    /// Waits until `seq` is committed while this session's mastership lasts.
    async fn wait_committed(&self, seq: u64) -> Result<(), ArchiveError> {
        loop {
            if self.engine.commit().committed() >= seq {
                return Ok(());
            }
            if !self.still_master() {
                return Err(ArchiveError::Other(format!("mastership ended before seq {seq} was committed")));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.engine.commit().wait(seq)).await;
        }
    }

    async fn run(&mut self, requests: &mut mpsc::Receiver<BackupRequest>) -> Result<(), ArchiveError> {
        let sh = self.engine.clone();
        // Hold every segment until the archive says what it has (the writer set 0 already at the
        // promotion; a standalone node holds from its start).
        hold(sh.archive(), 0);
        let listing = self.retry("listing", || self.store.list()).await?;
        let last = listing.iter().map(|l| l.name).max_by_key(|n| (n.last_seq(), matches!(n, ObjectName::Wal(_))));
        let has_checkpoint = listing.iter().any(|l| matches!(l.name, ObjectName::Checkpoint(_)));
        // This epoch's first record committed: everything before it is in the history every later
        // master continues.
        let epoch_start = sh.state().read().epochs.iter().rev().find(|m| m.epoch == self.epoch).map(|m| m.start_seq);
        self.wait_committed(epoch_start.unwrap_or(0)).await?;
        let mut need_base: Option<&str> = None;
        let mut next = 1;
        if let Some(n) = last {
            let l = n.last_seq();
            let archived_epoch = match n {
                ObjectName::Wal(w) => Epoch(w.epoch),
                ObjectName::Checkpoint(c) => Epoch(c.epoch),
            };
            // This master's epoch began after its first record committed, so every record an
            // earlier master of this history archived (committed) is in its log at or below
            // `committed`. An archive beyond that, or of another epoch at L, is another history
            // (a restore to an earlier point, another cluster, or writes an async failover lost):
            // appending to it would mix two histories in one archive, and a restore could combine
            // a checkpoint of one with the records of the other. Refuse, and hold no segment for it.
            let committed = sh.commit().committed();
            let own = epoch_at(&sh.state().read().epochs, l);
            let foreign = if l > committed {
                Some(format!(
                    "it holds records through seq {l}, beyond this master's history (committed seq {committed})"
                ))
            } else if l > 0 && own != archived_epoch {
                Some(format!("its record at seq {l} is of epoch {archived_epoch}, this master's of epoch {own}"))
            } else {
                None
            };
            if let Some(why) = foreign {
                sh.archive().floor.store(NO_FLOOR, Ordering::Release);
                return Err(ArchiveError::ForeignHistory(format!(
                    "the archive {} belongs to another history: {why} ({}). Archive this nameserver to another \
                     prefix (spec.backup.objectStore.prefix); a restored nameserver archives to a new one",
                    self.store.url(),
                    self.store.key(&n)
                )));
            }
            next = l + 1;
        }
        let first_on_disk = sh.first_log_seq();
        if need_base.is_none() && !has_checkpoint && first_on_disk > 1 {
            need_base = Some("the archive has no checkpoint and the log no longer starts at seq 1");
        }
        if need_base.is_none() && next < first_on_disk {
            need_base = Some("the records after the archive are no longer in the log");
        }
        self.set_archived(next - 1);
        if let Some(why) = need_base {
            info!(why, archived = next - 1, "archive: taking a base checkpoint");
            let (c, _) = self.checkpoint().await?;
            self.set_archived(c.seq.max(next - 1));
        }
        // The first retention on the listing above (newer objects missing from it only keep
        // more); later ones list again.
        if let Err(e) = self.expire(&listing).await {
            self.error(&e);
        }
        let mut last_retention = Instant::now();
        info!(url = %self.store.url(), from = self.archived + 1, epoch = %self.epoch, "archiving");
        let mut feed = sh.feed().subscribe();
        let mut last_checkpoint = Instant::now();
        let retention_every = (self.cfg.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        loop {
            if !self.still_master() {
                info!(archived = self.archived, "archive: mastership ended; archiving stops here");
                return Ok(());
            }
            while let Ok(r) = requests.try_recv() {
                self.backup(r).await?;
            }
            self.read().await?;
            let now = now_ms();
            let due = !self.buf.data.is_empty()
                && (self.buf.data.len() >= CHUNK
                    || now.saturating_sub(self.buf.first_ms) >= self.cfg.timeout.as_millis() as u64
                    || self.pending.iter().any(|(r, _)| r.seq <= self.buf.last));
            if due {
                self.upload().await?;
                continue;
            }
            self.answer_backups();
            if last_checkpoint.elapsed() >= self.cfg.checkpoint_every {
                self.checkpoint().await?;
                last_checkpoint = Instant::now();
            }
            if last_retention.elapsed() >= retention_every {
                last_retention = Instant::now();
                if let Err(e) = self.retention().await {
                    self.error(&e);
                }
            }
            // Wake on new records, a request, or when the oldest buffered record comes due.
            let wait = if self.buf.data.is_empty() {
                Duration::from_millis(250)
            } else {
                let due_at = self.buf.first_ms + self.cfg.timeout.as_millis() as u64;
                Duration::from_millis(due_at.saturating_sub(now).clamp(1, 250))
            };
            tokio::select! {
                _ = feed.changed() => {}
                r = requests.recv() => if let Some(r) = r { self.backup(r).await? },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// TakeBackup: a checkpoint now; answered once the wal is archived through its seq.
    async fn backup(&mut self, r: BackupRequest) -> Result<(), ArchiveError> {
        let (name, bytes) = match self.checkpoint().await {
            Ok(x) => x,
            Err(e) => {
                let _ = r.reply.send(Err(e.to_string()));
                return Err(e);
            }
        };
        let reply = proto::TakeBackupReply {
            epoch: self.epoch.get(),
            seq: name.seq,
            bytes,
            checkpoint_object: self.store.key(&ObjectName::Checkpoint(name)),
            archived_seq: 0,
            time_unix_ms: 0,
        };
        self.pending.push((reply, r));
        self.answer_backups();
        Ok(())
    }

    fn answer_backups(&mut self) {
        let archived = self.archived;
        let (done, wait): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(r, _)| r.seq <= archived);
        self.pending = wait;
        for (mut reply, r) in done {
            reply.archived_seq = archived;
            reply.time_unix_ms = now_ms() as i64;
            info!(seq = reply.seq, object = %reply.checkpoint_object, archived, "backup taken");
            let _ = r.reply.send(Ok(reply));
        }
    }

    /// Deletes what retention no longer needs (plan::expired) of the archive as listed now.
    async fn retention(&self) -> Result<(), ArchiveError> {
        let listing = self.store.list().await?;
        self.expire(&listing).await
    }

    /// Deletes what retention no longer needs (plan::expired) of `listing`.
    async fn expire(&self, listing: &[Listed]) -> Result<(), ArchiveError> {
        let gone = plan::expired(listing, now_ms(), self.cfg.retention.as_millis() as u64);
        for n in &gone {
            self.store.delete(n).await?;
            self.engine.metrics().archive.deleted.inc();
        }
        if !gone.is_empty() {
            info!(deleted = gone.len(), "archive: retention deleted old objects");
        }
        Ok(())
    }
}

/// Lowers or raises the floor to `seq`, unless the writer released it (a demotion to slave sets
/// [`NO_FLOOR`], which only a promotion lowers again): one atomic step, so a session ending with
/// the demotion cannot hold a slave's segments.
fn hold(a: &ArchiveShared, seq: u64) {
    let _ = a.floor.fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| (f != NO_FLOOR).then_some(seq));
}

/// Starts the archiver if the node has an archive configured.
pub fn spawn(engine: &Engine) -> Result<(), ArchiveError> {
    let Some(cfg) = engine.archive().config.clone() else {
        return Ok(());
    };
    let store = Store::open(&cfg.store)?;
    let (tx, rx) = mpsc::channel(16);
    engine.archive().backups.set_sender(tx);
    tokio::spawn(run(engine.clone(), store, cfg, rx));
    Ok(())
}
