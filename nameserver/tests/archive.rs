//! The archive to object storage, between real processes and a `file://` store: continuous
//! upload under writes, TakeBackup, a failover continuing the archive, restores opened by a
//! nameserver, and damaged objects named by verify and restore.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tfs_nameserver::proto::{self, backup_client::BackupClient};

/// Small segments and frequent local checkpoints, so that segments are removed during the test
/// and the archive floor (and a new master's base checkpoint) matter.
fn flags(archive: &str) -> Vec<String> {
    ["--checkpoint-every", "500", "--segment-bytes", "16384", "--archive", archive, "--archive-timeout", "500ms"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn node(name: &str, root: &Path, extra: &[String]) -> Node {
    let e: Vec<&str> = extra.iter().map(String::as_str).collect();
    Node::new(name, root, &e)
}

async fn wait_archived(n: &Node, seq: u64, within: Duration) -> Duration {
    let t = Instant::now();
    let s = n
        .wait_for(&format!("archived_seq >= {seq}"), within, |s| {
            s.archive.as_ref().is_some_and(|a| a.archived_seq >= seq)
        })
        .await;
    let a = s.archive.unwrap();
    assert!(a.enabled);
    t.elapsed()
}

/// Watches `n`'s Status until `stop`: a moment its log no longer held the record after the
/// archived seq (`first_log_seq > archived_seq + 1`), i.e. a segment holding records not yet
/// archived was removed; `None` if there was none. A gap seen once is read again (Status reads the
/// two apart, as an upload moves both), and counts only if it is still there.
async fn unarchived_removals(n: &Node, stop: &AtomicBool) -> Option<String> {
    let gap = |s: &proto::StatusReply| {
        let archived = s.archive.as_ref().map_or(0, |a| a.archived_seq);
        (s.first_log_seq > archived + 1)
            .then(|| format!("first_log_seq {} with archived_seq {archived}", s.first_log_seq))
    };
    while !stop.load(Ordering::Relaxed) {
        if gap(&n.status().await).is_some()
            && let Some(g) = gap(&n.status().await)
        {
            return Some(g);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn ctl_out(args: &[&str]) -> (bool, String) {
    let o = ctl(args);
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

async fn ids(n: &Node) -> Vec<u64> {
    all_blocks(n).await.iter().map(|b| b.id).collect()
}

/// Restores `target` into a new node's data directory, starts it, returns it.
async fn restored(root: &Path, name: &str, url: &str, target: &[&str]) -> Node {
    let mut r = Node::new(name, root, &[]);
    let dir = r.dir.join("data");
    let (ok, out) =
        ctl_out(&[&["backup", "restore", "--archive", url, "--data-dir", dir.to_str().unwrap()][..], target].concat());
    assert!(ok, "restore {target:?} failed:\n{out}");
    assert!(out.contains("restored to seq"), "{out}");
    println!("{}", out.lines().last().unwrap_or_default());
    r.start_ready().await;
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_follows_writes_and_a_failover_and_restores_any_point() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("archive");
    let url = format!("file://{}", store.display());
    let f = flags(&url);
    let mut a = node("a", root.path(), &f);
    let mut b = node("b", root.path(), &f);
    start_pair(&mut a, &mut b).await;

    // Under writes, the archive reaches the committed seq within the archive timeout (+ slack).
    // Meanwhile local checkpoints remove segments: never one holding a record not yet archived.
    let stop = AtomicBool::new(false);
    let ((mut acked, s1, lag), removed_early) = tokio::join!(
        async {
            let acked = create_blocks(&a, 20, 50).await;
            let s1 = a.status().await.committed_seq;
            let lag = wait_archived(&a, s1, Duration::from_secs(5)).await;
            stop.store(true, Ordering::Relaxed);
            (acked, s1, lag)
        },
        unarchived_removals(&a, &stop)
    );
    assert_eq!(removed_early, None, "a segment holding records not yet archived was removed");
    println!("archived through seq {s1} {lag:?} after the last write was acknowledged (timeout 500ms)");
    assert!(lag < Duration::from_millis(2500), "archive lag {lag:?}");
    let m = a.metrics_text();
    assert!(m.contains("tfs_archive_archived_seq"), "{m}");
    assert!(m.contains("tfs_archive_uploads_total{kind=\"wal\"}"), "{m}");
    let b_status = b.status().await;
    assert_eq!(b_status.archive.as_ref().map(|x| x.archived_seq), Some(0), "a slave archives nothing");

    // TakeBackup: a checkpoint object, archived with the wal through it; concurrent callers share it.
    let mut c1 = BackupClient::new(a.client_channel());
    let mut c2 = BackupClient::new(a.client_channel());
    let (r1, r2) =
        tokio::join!(c1.take_backup(proto::TakeBackupRequest {}), c2.take_backup(proto::TakeBackupRequest {}));
    let (r1, r2) = (r1.unwrap().into_inner(), r2.unwrap().into_inner());
    assert!(r1.checkpoint_object.contains("checkpoints/"), "{r1:?}");
    assert!(r1.seq >= s1 && r1.archived_seq >= r1.seq && r1.bytes > 0 && r1.epoch == 1, "{r1:?}");
    assert_eq!(r1.checkpoint_object, r2.checkpoint_object, "one backup at a time, shared");
    let ckpt_file = store.join(&r1.checkpoint_object);
    assert!(ckpt_file.exists(), "{}", ckpt_file.display());
    let (ok, out) = ctl_out(&["--addr", &a.client, "backup", "now"]);
    assert!(ok && out.contains("backup at seq") && out.contains("checkpoints/"), "{out}");
    // The slave refuses: not the master.
    let e = BackupClient::new(b.client_channel()).take_backup(proto::TakeBackupRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    acked.extend(create_blocks(&a, 5, 20).await);
    let s2 = a.status().await.committed_seq;
    let through_s2 = acked.clone();
    wait_archived(&a, s2, Duration::from_secs(5)).await;
    // A point in time after s2 and before anything else is written.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t2 = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Failover: the new master continues the archive.
    a.kill9();
    b.master(2).await;
    b.dataservers(3).await;
    acked.extend(create_blocks(&b, 5, 20).await);
    let s3 = b.status().await.committed_seq;
    wait_archived(&b, s3, Duration::from_secs(10)).await;

    let (ok, ls) = ctl_out(&["backup", "ls", "--archive", &url]);
    assert!(ok, "{ls}");
    println!("{ls}");
    let (ok, out) = ctl_out(&["backup", "verify", "--archive", &url]);
    assert!(ok, "verify: {out}");

    // A seq of the first master, then the newest point (the second master's).
    let r = restored(root.path(), "r1", &url, &["--target-seq", &s2.to_string()]).await;
    assert_eq!(r.status().await.applied_seq, s2);
    assert_eq!(ids(&r).await, through_s2, "the restore at seq {s2} holds exactly what was acknowledged through it");
    let r1_dir = r.dir.join("data");
    drop(r);
    let r = restored(root.path(), "r-time", &url, &["--target-time", &t2]).await;
    assert_eq!(r.status().await.applied_seq, s2, "the cut at {t2} is after seq {s2}");
    assert_eq!(ids(&r).await, through_s2);
    drop(r);
    let r = restored(root.path(), "r2", &url, &["--latest"]).await;
    assert!(r.status().await.applied_seq >= s3);
    assert_eq!(ids(&r).await, acked);
    drop(r);

    // A restore to an earlier point that archives to its source's prefix: another history. It is
    // refused with a clear error and the archive is left exactly as it was (appending would mix
    // two histories, and a later restore could join a checkpoint of one to records of the other).
    let objects = |d: &Path| -> Vec<String> {
        ["wal", "checkpoints"]
            .iter()
            .flat_map(|k| std::fs::read_dir(d.join(k)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()))
            .collect()
    };
    let before = objects(&store);
    let mut fr = node("r-foreign", root.path(), &f);
    let fd = fr.dir.join("data");
    let (ok, out) = ctl_out(&[
        "backup",
        "restore",
        "--archive",
        &url,
        "--data-dir",
        fd.to_str().unwrap(),
        "--target-seq",
        &s2.to_string(),
    ]);
    assert!(ok, "{out}");
    fr.start_ready().await;
    fr.master(3).await;
    fr.dataservers(3).await;
    create_blocks(&fr, 2, 5).await;
    let st = fr
        .wait_for("the archive refused as another history", Duration::from_secs(10), |s| {
            s.archive.as_ref().is_some_and(|a| a.last_error.contains("another history"))
        })
        .await;
    println!("{}", st.archive.unwrap().last_error);
    assert_eq!(objects(&store), before, "nothing was added to another history's archive");
    drop(fr);

    // An init container's run on a directory that holds data: said, exit 0; without --if-empty: refused.
    let d = r1_dir.to_str().unwrap();
    let (ok, out) = ctl_out(&["backup", "restore", "--archive", &url, "--data-dir", d, "--latest", "--if-empty"]);
    assert!(ok && out.contains("already holds data"), "{out}");
    let (ok, out) = ctl_out(&["backup", "restore", "--archive", &url, "--data-dir", d, "--latest"]);
    assert!(!ok && out.contains("already holds data"), "{out}");

    // A flipped byte in a wal object: verify and restore fail, naming it.
    drop(b);
    let mut wal: Vec<_> = std::fs::read_dir(store.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    wal.sort();
    let victim = &wal[wal.len() - 1];
    let mut body = std::fs::read(victim).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x40;
    std::fs::write(victim, body).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();
    let (ok, out) = ctl_out(&["backup", "verify", "--archive", &url]);
    assert!(!ok && out.contains(name), "verify must name {name}:\n{out}");
    let dir = root.path().join("r3");
    let (ok, out) = ctl_out(&["backup", "restore", "--archive", &url, "--data-dir", dir.to_str().unwrap(), "--latest"]);
    assert!(!ok && out.contains(name), "restore must name {name}:\n{out}");
    assert!(!tfs_nameserver::archive::restore::holds_data(&dir).unwrap(), "a failed restore leaves no data");
}

#[tokio::test(flavor = "multi_thread")]
async fn take_backup_without_an_archive_is_refused_and_bad_flags_stop_the_start() {
    let root = tempfile::tempdir().unwrap();
    let (a, _) = lone_master(root.path()).await;
    let e = BackupClient::new(a.client_channel()).take_backup(proto::TakeBackupRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("no archive configured"), "{e:?}");
    let s = a.status().await.archive.unwrap();
    assert!(!s.enabled);
    for bad in [
        &["--archive", "ftp://x"][..],
        &["--archive", "file://relative"],
        &["--archive", "file:///tmp/x", "--archive-timeout", "soon"],
    ] {
        let o = std::process::Command::new(NS)
            .args(["--data-dir", root.path().join("bad").to_str().unwrap()])
            .args(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("archive"), "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_checkpoints_and_retention_keep_the_newest_point_restorable() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("archive");
    let url = format!("file://{}", store.display());
    let f: Vec<String> = [
        "--archive",
        &url,
        "--archive-timeout",
        "200ms",
        "--archive-checkpoint-every",
        "300ms",
        "--archive-retention",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut a = node("a", root.path(), &f);
    a.start_ready().await;
    a.master(1).await;
    a.dataservers(3).await;
    let mut acked = Vec::new();
    let t = Instant::now();
    let deleted = |a: &Node| {
        a.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("tfs_archive_deleted_total ")?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    while deleted(&a) == 0 {
        assert!(t.elapsed() < Duration::from_secs(15), "retention deleted nothing; log:\n{}", a.log_text());
        acked.extend(create_blocks(&a, 1, 10).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = a.status().await;
    wait_archived(&a, s.committed_seq, Duration::from_secs(5)).await;
    let st = a.status().await.archive.unwrap();
    assert!(st.last_checkpoint_seq > 0 && st.last_checkpoint_object.contains("checkpoints/"), "{st:?}");
    // The oldest objects are gone, yet the newest point restores and the archive verifies.
    assert!(
        !std::fs::read_dir(store.join("wal")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .starts_with("00000000000000000001-")),
        "the first wal object outlived the retention"
    );
    let (ok, out) = ctl_out(&["backup", "verify", "--archive", &url]);
    assert!(ok, "{out}");
    let r = restored(root.path(), "r", &url, &["--latest"]).await;
    assert!(r.status().await.applied_seq >= s.committed_seq);
    assert_eq!(ids(&r).await, acked);
}
