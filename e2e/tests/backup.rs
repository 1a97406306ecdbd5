//! Backup and restore end to end on the real local cluster and its real S3 store (SeaweedFS):
//! a TfsNameserver archiving continuously under a recording writer, an on-demand TfsBackup, the
//! loss of the whole TfsNameserver and its volumes, a point-in-time restore into a new one checked
//! write by write, and a damaged archive that stops a restore with a message naming the object.
//! Run with `make e2e` (after the cluster suite).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tfs_e2e::*;

const BUCKET: &str = "tfs-backups";
const SECRET: &str = "tfs-backup-s3";

fn object_store_yaml(prefix: &str) -> Result<String> {
    Ok(format!(
        "    objectStore:\n      endpoint: {}\n      bucket: {BUCKET}\n      prefix: {prefix}\n      credentialsSecret:\n        name: {SECRET}\n",
        objectstore::endpoint()?
    ))
}

fn jsonpath(kind: &str, ns: &str, name: &str, path: &str) -> Result<String> {
    Ok(kubectl(&["get", kind, name, "-n", ns, "-o", &format!("jsonpath={path}")])?.trim().to_string())
}

/// (status, reason, message) of condition `ty`, from one read: three reads could mix two
/// versions of the condition (a RestoreFailed reason with a retry's Restoring message).
fn condition(ns: &str, name: &str, ty: &str) -> Result<(String, String, String)> {
    let base = format!("{{.status.conditions[?(@.type==\"{ty}\")]");
    let all =
        jsonpath("tfsns", ns, name, &format!("{base}.status}}{{\"\\t\"}}{base}.reason}}{{\"\\t\"}}{base}.message}}"))?;
    let mut f = all.splitn(3, '\t').map(str::to_string);
    Ok((f.next().unwrap_or_default(), f.next().unwrap_or_default(), f.next().unwrap_or_default()))
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} {last_err}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// tfsctl with the store's credentials in its environment (as an operator's laptop would have).
fn tfsctl_backup(args: &[&str]) -> Result<(bool, String)> {
    let mut cmd = Command::new(tfsctl());
    cmd.arg("backup").args(args);
    for (k, v) in objectstore::env()? {
        cmd.env(k, v);
    }
    let out = cmd.output().context("cannot run tfsctl backup")?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The largest seq the record saw acknowledged.
fn max_acked_seq(record: &Path) -> u64 {
    Writer::acks(record).iter().map(|a| a.seq).max().unwrap_or(0)
}

fn pvcs(ns: &str) -> Result<Vec<String>> {
    Ok(kubectl(&["get", "pvc", "-n", ns, "-o", "name"])?.lines().map(str::to_string).collect())
}

#[tokio::test]
async fn tr1_archive_then_point_in_time_restore_into_a_new_nameserver() -> Result<()> {
    ensure_operator()?;
    let ns = Namespace::create("backup")?;
    let n = &ns.0;
    objectstore::secret(n, SECRET)?;
    let prefix = format!("e2e/{n}");
    let store = object_store_yaml(&prefix)?;
    let archive_url = format!("s3://{BUCKET}/{prefix}");
    let endpoint = objectstore::endpoint()?;
    let c = client().await?;

    // 1. A pair archiving continuously (2 s archive timeout) under a recording writer.
    let src = Tfs::create_with(&c, n, "src", 2, &format!("  backup:\n{store}    archiveTimeout: 2s\n")).await?;
    src.wait_healthy(2, 1, Duration::from_secs(120)).await?;
    src.wait_sync_set(1, Duration::from_secs(60)).await?;
    let dir = std::env::temp_dir().join(format!("tfs-e2e-{n}"));
    std::fs::create_dir_all(&dir)?;
    let w = Writer::start(&src.vip().await?, &dir, 16)?;
    w.wait_acked(2000, Duration::from_secs(60)).await?;

    // 2. An on-demand backup in the middle of the run.
    kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: tfs.io/v1alpha1\nkind: TfsBackup\nmetadata:\n  name: mid\n  namespace: {n}\nspec:\n  nameserver: src\n"
        ),
    )?;
    let backup_seq: u64 = wait_for("TfsBackup mid Completed", Duration::from_secs(120), || {
        match jsonpath("tfsbackup", n, "mid", "{.status.phase}")?.as_str() {
            "Completed" => Ok(Some(jsonpath("tfsbackup", n, "mid", "{.status.seq}")?.parse()?)),
            "Failed" => bail!("TfsBackup failed: {}", jsonpath("tfsbackup", n, "mid", "{.status.message}")?),
            _ => Ok(None),
        }
    })
    .await?;
    println!("TfsBackup mid: seq {backup_seq}\n{}", kubectl(&["get", "tfsbackup", "-n", n])?);

    // 3. The restore point: after the backup's checkpoint, with writes on both sides of it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let target_ms = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let record = w.stop();
    let acked_seq = max_acked_seq(&record);

    // 4. The archive catches up with every acknowledged write, and says it is healthy.
    let t0 = Instant::now();
    wait_for("archive through the last acknowledged seq", Duration::from_secs(30), || {
        let s: u64 = jsonpath("tfsns", n, "src", "{.status.backup.lastArchivedSeq}")?.parse().unwrap_or(0);
        Ok((s >= acked_seq).then_some(()))
    })
    .await?;
    println!("archived through seq {acked_seq} {:.1} s after the writer stopped", t0.elapsed().as_secs_f64());
    let (healthy, reason, msg) = condition(n, "src", "BackupHealthy")?;
    ensure!(healthy == "True", "BackupHealthy is {healthy} ({reason}: {msg})");

    // 5. The archive checks out from outside the cluster.
    let store_args = ["--archive", archive_url.as_str(), "--archive-endpoint", endpoint.as_str()];
    let (ok, ls) = tfsctl_backup(&[&["ls"][..], &store_args].concat())?;
    ensure!(ok, "tfsctl backup ls failed: {ls}");
    println!("{ls}");
    let (ok, out) = tfsctl_backup(&[&["verify"][..], &store_args].concat())?;
    ensure!(ok, "tfsctl backup verify failed: {out}");
    println!("{out}");

    // 6. Lose everything: the TfsNameserver and its volumes.
    kubectl(&["delete", "tfsns", "src", "-n", n, "--wait=true", "--timeout=90s"])?;
    for p in pvcs(n)? {
        kubectl(&["delete", &p, "-n", n, "--wait=true", "--timeout=60s"])?;
    }
    ensure!(pvcs(n)?.is_empty(), "claims left after the deletion");

    // 7. Restore into a new TfsNameserver at the point in time.
    let restore_spec = format!(
        "  bootstrap:\n    fromBackup:\n{}      targetTime: \"{}\"\n",
        store.lines().map(|l| format!("  {l}\n")).collect::<String>(),
        rfc3339(target_ms)
    );
    let t0 = Instant::now();
    let restored = Tfs::create_with(&c, n, "restored", 2, &restore_spec).await?;
    restored.wait_healthy(2, 1, Duration::from_secs(180)).await?;
    println!("restored to {} and Healthy 2/2 in {:.1} s", rfc3339(target_ms), t0.elapsed().as_secs_f64());
    let (r, reason, msg) = condition(n, "restored", "Restored")?;
    ensure!(r == "True", "Restored is {r} ({reason}: {msg})");

    // 8. Every write acknowledged before the point is there, none sent after it is (once
    // kube-proxy serves the new Service).
    let vip = restored.vip().await?;
    wait_for("the restored VIP answers", Duration::from_secs(30), || {
        Ok(Command::new(tfsctl()).args(["--addr", &vip, "status"]).output()?.status.success().then_some(()))
    })
    .await?;
    let mut cmd = Command::new(tfsctl());
    cmd.args(["--addr", &vip, "verify", "--record"]).arg(&record);
    cmd.args(["--restored-to-ms", &target_ms.to_string()]);
    let out = cmd.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    ensure!(out.status.success(), "verify of the restore failed: {text}");
    ensure!(text.contains("after_restore_point=0"), "verify did not check the writes after the point: {text}");

    // 9. A damaged archived object stops a restore, with a message naming it.
    let keys = objectstore::list(BUCKET, &format!("{prefix}/wal/"))?;
    let victim = keys.last().context("no wal object archived")?.clone();
    let mut body = objectstore::get(BUCKET, &victim)?;
    ensure!(body.len() > 100, "wal object {victim} is only {} bytes", body.len());
    let mid = body.len() / 2;
    body[mid] ^= 0x40;
    objectstore::put(BUCKET, &victim, &body)?;
    let (ok, out) = tfsctl_backup(&[&["verify"][..], &store_args].concat())?;
    ensure!(!ok, "verify accepted a damaged archive: {out}");
    let name = victim.rsplit('/').next().unwrap_or(&victim);
    ensure!(out.contains(name), "verify's message does not name {name}: {out}");
    let latest = format!(
        "  bootstrap:\n    fromBackup:\n{}      latest: true\n",
        store.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let _broken = Tfs::create_with(&c, n, "broken", 2, &latest).await?;
    let msg = wait_for("Restored False RestoreFailed", Duration::from_secs(120), || {
        let (s, reason, msg) = condition(n, "broken", "Restored")?;
        Ok((s == "False" && reason == "RestoreFailed").then_some(msg))
    })
    .await?;
    println!("damaged archive: {msg}");
    ensure!(msg.contains(name), "the condition does not name the damaged object {name}: {msg}");
    Ok(())
}
