//! `tfsctl backup`: list, verify and restore the archive in object storage; take a backup now.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use tfs_nameserver::archive::layout::ObjectName;
use tfs_nameserver::archive::plan::{self, Target};
use tfs_nameserver::archive::restore;
use tfs_nameserver::archive::{Store, StoreConfig};
use tfs_nameserver::proto::{self, backup_client::BackupClient};

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The archive: s3://bucket/prefix or file:///abs/dir (credentials: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "TFS_ARCHIVE")]
    archive: String,
    /// The S3 endpoint (e.g. http://10.244.0.1:8333); absent: AWS.
    #[arg(long, env = "TFS_ARCHIVE_ENDPOINT")]
    archive_endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1", env = "TFS_ARCHIVE_REGION")]
    archive_region: String,
}

impl ArchiveArgs {
    fn open(&self) -> Result<Store> {
        Ok(Store::open(&StoreConfig {
            url: self.archive.clone(),
            endpoint: self.archive_endpoint.clone(),
            region: self.archive_region.clone(),
        })?)
    }
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// List the archive's objects and what is restorable.
    Ls(ArchiveArgs),
    /// Download and check every object (crc, records, seq continuity, epochs); exit 1 on a problem.
    Verify(ArchiveArgs),
    /// Write a data directory holding the state at a point of the archive.
    Restore(RestoreArgs),
    /// Ask the master (--addr) for a backup now: a checkpoint, archived with the wal through it.
    Now,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// The nameserver data directory to write (must hold no data).
    #[arg(long)]
    data_dir: PathBuf,
    /// Restore the state at exactly this seq.
    #[arg(long, group = "target")]
    target_seq: Option<u64>,
    /// Restore every record whose time is at or before this instant (RFC 3339, UTC: 2026-01-02T03:04:05Z).
    #[arg(long, group = "target")]
    target_time: Option<String>,
    /// Restore the newest restorable seq.
    #[arg(long, group = "target")]
    latest: bool,
    /// When the data directory already holds data, say so and exit 0 (an init container run on
    /// every start restores only once).
    #[arg(long)]
    if_empty: bool,
}

fn time_str(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

pub async fn run(addr: &str, cmd: BackupCmd, json: bool) -> Result<i32> {
    match cmd {
        BackupCmd::Ls(a) => ls(&a.open()?, json).await,
        BackupCmd::Verify(a) => {
            let store = a.open()?;
            let v = restore::verify(&store, &mut |l| eprintln!("{l}")).await?;
            println!(
                "archive {} is sound: {} objects ({} checkpoints), {} records, {:.1} MB",
                store.url(),
                v.objects,
                v.checkpoints,
                v.records,
                v.bytes as f64 / 1e6
            );
            Ok(0)
        }
        BackupCmd::Restore(r) => match restore_cmd(&r).await {
            Ok(code) => Ok(code),
            Err(e) => {
                termination_log(&format!("restore failed: {e:#}"));
                Err(e)
            }
        },
        BackupCmd::Now => {
            // A checkpoint and its upload take longer than the 2 s every other call gets.
            let ep = crate::endpoint(addr)?.timeout(std::time::Duration::from_secs(130));
            let mut c = BackupClient::new(crate::connect_to(ep, addr).await?);
            let mut req = tonic::Request::new(proto::TakeBackupRequest {});
            req.set_timeout(std::time::Duration::from_secs(130));
            let r = c.take_backup(req).await.map_err(crate::status_error)?.into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"epoch": r.epoch, "seq": r.seq, "bytes": r.bytes,
                        "checkpoint_object": r.checkpoint_object, "archived_seq": r.archived_seq,
                        "time_unix_ms": r.time_unix_ms})
                );
            } else {
                println!(
                    "backup at seq {} (epoch {}): {} ({} bytes); archived through seq {} at {}",
                    r.seq,
                    r.epoch,
                    r.checkpoint_object,
                    r.bytes,
                    r.archived_seq,
                    time_str(r.time_unix_ms as u64)
                );
            }
            Ok(0)
        }
    }
}

async fn ls(store: &Store, json: bool) -> Result<i32> {
    let list = store.list().await?;
    let ranges = plan::ranges(&list);
    let gaps = plan::gaps(&list);
    if json {
        let objs: Vec<_> = list
            .iter()
            .map(|l| match l.name {
                ObjectName::Wal(w) => serde_json::json!({"kind": "wal", "first": w.first, "last": w.last,
                    "epoch": w.epoch, "time_ms": w.last_ms, "size": l.size, "object": store.key(&l.name)}),
                ObjectName::Checkpoint(c) => serde_json::json!({"kind": "checkpoint", "first": c.seq, "last": c.seq,
                    "epoch": c.epoch, "time_ms": c.time_ms, "size": l.size, "object": store.key(&l.name)}),
            })
            .collect();
        let rs: Vec<_> = ranges
            .iter()
            .map(|r| serde_json::json!({"from_seq": r.base.seq(), "to_seq": r.reach, "to_time_ms": r.reach_ms}))
            .collect();
        println!("{}", serde_json::json!({"objects": objs, "restorable": rs, "gaps": gaps}));
        return Ok(0);
    }
    println!("{:<10} {:>12} {:>12} {:>6} {:<24} {:>10}  OBJECT", "KIND", "FIRST", "LAST", "EPOCH", "TIME", "SIZE");
    for l in &list {
        let (kind, first, last, epoch, ms) = match l.name {
            ObjectName::Wal(w) => ("wal", w.first, w.last, w.epoch, w.last_ms),
            ObjectName::Checkpoint(c) => ("checkpoint", c.seq, c.seq, c.epoch, c.time_ms),
        };
        println!(
            "{kind:<10} {first:>12} {last:>12} {epoch:>6} {:<24} {:>10}  {}",
            time_str(ms),
            l.size,
            store.key(&l.name)
        );
    }
    println!();
    println!("{} objects in {}", list.len(), store.url());
    println!("{}", plan::describe_restorable(&list));
    for r in &ranges {
        let from = match r.base {
            plan::Base::Empty => "the empty state".to_string(),
            plan::Base::Checkpoint(c) => format!("checkpoint at seq {} ({})", c.seq, time_str(c.time_ms)),
        };
        println!("  from {from}: seqs {}..={} (until {})", r.base.seq(), r.reach, time_str(r.reach_ms));
    }
    for (a, b) in &gaps {
        println!("  gap: seqs {a}..={b} are in no wal object");
    }
    Ok(0)
}

async fn restore_cmd(r: &RestoreArgs) -> Result<i32> {
    let target = match (r.target_seq, &r.target_time, r.latest) {
        (Some(s), None, false) => Target::Seq(s),
        (None, Some(t), false) => {
            let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
                anyhow::anyhow!("--target-time {t:?}: {e} (expected RFC 3339 in UTC, e.g. 2026-01-02T03:04:05Z)")
            })?;
            Target::Time(at.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64)
        }
        (None, None, true) => Target::Latest,
        _ => bail!("give one of --target-seq, --target-time, --latest"),
    };
    if restore::holds_data(&r.data_dir)? {
        if r.if_empty {
            println!("{} already holds data: nothing restored", r.data_dir.display());
            return Ok(0);
        }
        bail!("{} already holds data (a checkpoint or oplog records): refusing to overwrite it", r.data_dir.display());
    }
    let store = r.archive.open()?;
    let done = restore::restore(&store, target, &r.data_dir, &mut |l| println!("{l}")).await?;
    let line = format!(
        "restored to seq {} (epoch {}, time {}): {} + {} records from {} objects ({:.1} MB, {} blocks)",
        done.seq,
        done.epoch,
        time_str(done.time_ms),
        done.checkpoint.as_deref().map(|c| format!("checkpoint {c}")).unwrap_or_else(|| "the empty state".into()),
        done.records,
        done.objects,
        done.bytes as f64 / 1e6,
        done.blocks
    );
    println!("{line}");
    // The operator reads the restored epoch from here (an init container's termination message):
    // the first promotion goes above it at once.
    termination_log(&line);
    Ok(0)
}

/// Kubernetes shows this file's contents as the container's termination message.
fn termination_log(msg: &str) {
    let p = std::path::Path::new("/dev/termination-log");
    if p.exists() {
        let line = msg.lines().next().unwrap_or(msg);
        let _ = std::fs::write(p, line);
    }
}
