//! Planning with real processes: compaction, surplus replicas and balance executed by
//! `tfsctl sim-dataservers` and committed through the oplog; safe mode after a promotion; a
//! failover in the middle of planned tasks loses and duplicates none.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tfs_nameserver::proto;
use tokio::net::TcpListener;

const SYNC: &[&str] = &["--checkpoint-every", "2000", "--segment-bytes", "65536"];
/// The nameserver counts a replica as 64 MiB (its block size estimate) in a used ratio.
const BLOCK: u64 = 64 << 20;

/// Simulated dataservers `first..first+count` in the background, renewing every 200 ms, writing
/// their task audit to `audit`.
fn sims(addr: &str, first: u32, count: u32, audit: &Path, extra: &[&str]) -> Child {
    let (first, count) = (first.to_string(), count.to_string());
    let mut args = vec!["--addr", addr, "sim-dataservers", "--first-id", &first, "--count", &count];
    args.extend(["--renew-every", "200ms", "--audit", audit.to_str().unwrap()]);
    args.extend(extra);
    ctl_bg(&args, &audit.with_extension("log"))
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Task audit lines of the simulated dataservers: (task id, epoch, kind, block, source, target).
fn audit(files: &[&PathBuf]) -> Vec<(u64, u64, String, u64, u32, u32)> {
    let mut out = Vec::new();
    for f in files {
        for l in std::fs::read_to_string(f).unwrap_or_default().lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            out.push((
                w[0].parse().unwrap(),
                w[1].parse().unwrap(),
                w[2].to_string(),
                w[3].parse().unwrap(),
                w[4].parse().unwrap(),
                w[5].parse().unwrap(),
            ));
        }
    }
    out
}

/// Replicas each dataserver holds, as the node's blocks say.
async fn replicas_by_ds(n: &Node) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for b in all_blocks(n).await {
        for d in b.dataservers {
            *m.entry(d).or_insert(0) += 1;
        }
    }
    m
}

fn pending(s: &proto::StatusReply) -> u64 {
    s.pending_tasks.values().sum()
}

async fn commit(n: &Node, block_id: u64, version: u32, del_size: u64, del_file_count: u32) {
    let req = proto::CommitBlockRequest {
        block_id,
        version,
        size: 1000,
        file_count: 10,
        del_size,
        del_file_count,
        request_id: None,
    };
    n.client().await.commit_block(req).await.unwrap();
}

/// A master alone (with `flags`) and 3 simulated dataservers (with `sim_flags`) leased from it,
/// writing their audit to `root/audit1`.
async fn master_with_sims(root: &Path, flags: &[&str], sim_flags: &[&str]) -> (Node, Child, PathBuf) {
    let mut a = Node::new("a", root, flags);
    a.start_ready().await;
    a.master(1).await;
    let log = root.join("audit1");
    let s = sims(&a.client, 1, 3, &log, sim_flags);
    a.wait_for("3 dataservers", Duration::from_secs(10), |s| s.live_dataservers == 3).await;
    (a, s, log)
}

/// Blocks past `--compact-ratio` (15 % by default) are compacted by a simulated dataserver and
/// the result (size less the deleted bytes, counters reset) is committed; the others are not.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_is_triggered_and_committed() {
    let root = tempfile::tempdir().unwrap();
    let (a, s, log) = master_with_sims(root.path(), &[], &[]).await;
    let ids = create_blocks(&a, 1, 20).await;
    for &id in &ids[..10] {
        commit(&a, id, 1, 300, 3).await;
    }
    for &id in &ids[10..] {
        commit(&a, id, 1, 100, 1).await; // 10 %: below the ratio
    }
    let t = Instant::now();
    loop {
        let blocks = all_blocks(&a).await;
        let done = blocks.iter().filter(|b| ids[..10].contains(&b.id) && b.del_size == 0).count();
        if done == 10 && pending(&a.status().await) == 0 {
            for b in &blocks {
                if ids[..10].contains(&b.id) {
                    assert_eq!((b.size, b.file_count, b.del_file_count), (700, 7, 0), "block {}", b.id);
                } else {
                    assert_eq!((b.size, b.del_size), (1000, 100), "block {} compacted below the ratio", b.id);
                }
            }
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "compaction did not finish: {done} of 10");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("10 compactions committed in {:?}", t.elapsed());
    stop(s);
    let compacted: HashSet<u64> = audit(&[&log]).iter().filter(|l| l.2 == "TASK_KIND_COMPACT").map(|l| l.3).collect();
    assert_eq!(compacted, ids[..10].iter().copied().collect());
}

/// A dataserver reporting blocks that already have all their replicas makes each a surplus: one
/// replica of each is deleted (from its fullest holder) and every block ends with 2.
#[tokio::test(flavor = "multi_thread")]
async fn surplus_replicas_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let (a, s1, log1) = master_with_sims(root.path(), &[], &[]).await;
    let log2 = root.path().join("audit2");
    let ids = create_blocks(&a, 1, 30).await;
    let range = format!("{}-{}", ids[0], ids[29]);
    let s2 = sims(&a.client, 4, 1, &log2, &["--report-blocks", &range]);
    a.wait_for("the 4th dataserver", Duration::from_secs(10), |s| s.live_dataservers == 4).await;
    let t = Instant::now();
    loop {
        let blocks = all_blocks(&a).await;
        if blocks.iter().all(|b| b.dataservers.len() == 2) && pending(&a.status().await) == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "surplus left: {blocks:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("30 surplus replicas removed in {:?}", t.elapsed());
    stop(s1);
    stop(s2);
    let deletes = audit(&[&log1, &log2]).into_iter().filter(|l| l.2 == "TASK_KIND_DELETE").count();
    assert_eq!(deletes, 30, "one delete a block");
}

/// 3 dataservers hold 300 blocks × 2 replicas (40 % of their capacity each); 3 empty ones join.
/// Balance moves replicas until the used ratios are within --balance-threshold (5 % = 25
/// replicas here). Bound: 60 s (measured: printed). Writes go on meanwhile: their p99 is printed.
#[tokio::test(flavor = "multi_thread")]
async fn balance_after_adding_three_empty_dataservers_converges() {
    let root = tempfile::tempdir().unwrap();
    let cap = (500 * BLOCK).to_string();
    let (a, s1, log1) = master_with_sims(root.path(), &["--max-balance-tasks", "24"], &["--capacity", &cap]).await;
    let log2 = root.path().join("audit2");
    let ids = create_blocks(&a, 3, 100).await;
    assert_eq!(replicas_by_ds(&a).await.values().copied().collect::<Vec<_>>(), vec![200, 200, 200]);
    let mut version = 1;
    let mut quiet = Vec::new();
    for _ in 0..400 {
        let w = Instant::now();
        commit(&a, ids[1], version, 0, 0).await;
        quiet.push(w.elapsed());
        version += 1;
    }
    quiet.sort();
    let t = Instant::now();
    let s2 = sims(&a.client, 4, 3, &log2, &["--capacity", &cap]);
    // Writes while balancing: commits of one block, one at a time.
    let mut lat = Vec::new();
    let converged = loop {
        for _ in 0..20 {
            let w = Instant::now();
            commit(&a, ids[0], version, 0, 0).await;
            lat.push(w.elapsed());
            version += 1;
        }
        let by = replicas_by_ds(&a).await;
        let (lo, hi) = (by.values().min().copied().unwrap_or(0), by.values().max().copied().unwrap_or(0));
        if by.len() == 6 && hi - lo <= 25 && pending(&a.status().await) == 0 {
            break t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "balance did not converge in 60 s: {by:?}");
    };
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100];
    let by = replicas_by_ds(&a).await;
    println!(
        "balance converged in {converged:?}: {by:?}; {} writes meanwhile, p99 {p99:?} (p99 {:?} before balancing)",
        lat.len(),
        quiet[quiet.len() * 99 / 100]
    );
    stop(s1);
    stop(s2);
    assert!(all_blocks(&a).await.iter().all(|b| b.dataservers.len() == 2), "every block keeps its 2 replicas");
    let moves = audit(&[&log1, &log2]).into_iter().filter(|l| l.2 == "TASK_KIND_MOVE").count();
    assert!(moves >= 225, "{moves} moves");
}

/// A new master plans nothing until its dataservers reported, for at most --safe-mode-time, and
/// says so in Status; creates are served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_master_is_in_safe_mode_until_its_dataservers_report_or_the_window_ends() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), SYNC);
    let mut b = Node::new("b", root.path(), &[SYNC, &["--safe-mode-time", "3s"]].concat());
    start_pair(&mut a, &mut b).await;
    assert!(!a.status().await.safe_mode, "a first master with dataservers that applied to it");
    a.kill9();
    b.master(2).await;
    let st = b.status().await;
    assert!(st.safe_mode && st.safe_mode_remaining_ms > 0 && st.safe_mode_remaining_ms <= 3000, "{st:?}");
    create_blocks(&b, 1, 5).await;
    // The 3 dataservers never renew with b (their lease is 6 s): the window ends safe mode.
    let t = Instant::now();
    b.wait_for("safe mode over", Duration::from_secs(5), |s| !s.safe_mode).await;
    println!("safe mode ended {:?} after the promotion's first status", t.elapsed());
    assert!(t.elapsed() >= Duration::from_millis(2000), "ended before the window with no report");
    // A further promotion whose dataservers all report ends it at their report.
    let mut c = Node::new("c", root.path(), SYNC);
    c.start_ready().await;
    c.slave_of(&b, 2).await;
    b.wait_for("c in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"c".to_string())).await;
    b.kill9();
    c.master(3).await;
    assert!(c.status().await.safe_mode);
    c.dataservers(3).await;
    assert!(!c.status().await.safe_mode, "every live dataserver reported");
}

/// Master a, slave b, simulated dataservers through a VIP; balance after 3 empty dataservers join
/// is underway (tasks planned, some done) when b takes over. On b every task ends done, exactly
/// once (the audit holds each task id once), every block keeps its replicas, and a and b agree.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_in_the_middle_of_planned_tasks_loses_and_duplicates_none() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[SYNC, &["--max-balance-tasks", "6"]].concat());
    let mut b = Node::new("b", root.path(), &[SYNC, &["--max-balance-tasks", "6"]].concat());
    a.start_ready().await;
    b.start_ready().await;
    a.master(1).await;
    b.slave_of(&a, 1).await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"b".to_string())).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vip_addr = listener.local_addr().unwrap().to_string();
    let backend = Arc::new(std::sync::Mutex::new(a.client.clone()));
    tokio::spawn(vip(listener, backend.clone()));
    let cap = (500 * BLOCK).to_string();
    let (log1, log2) = (root.path().join("audit1"), root.path().join("audit2"));
    let s1 = sims(&vip_addr, 1, 3, &log1, &["--capacity", &cap]);
    a.wait_for("3 dataservers", Duration::from_secs(10), |s| s.live_dataservers == 3).await;
    create_blocks(&a, 3, 100).await;
    let s2 = sims(&vip_addr, 4, 3, &log2, &["--capacity", &cap]);
    let t = Instant::now();
    while audit(&[&log1, &log2]).len() < 40 {
        assert!(t.elapsed() < Duration::from_secs(30), "no tasks executed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = a.status().await;
    assert!(pending(&before) > 0, "tasks in flight at the failover: {before:?}");
    // Failover: b master at epoch 2, a its slave, the VIP to b.
    b.master(2).await;
    a.slave_of(&b, 2).await;
    *backend.lock().unwrap() = b.client.clone();
    let t = Instant::now();
    loop {
        let st = b.status().await;
        let by = replicas_by_ds(&b).await;
        let (lo, hi) = (by.values().min().copied().unwrap_or(0), by.values().max().copied().unwrap_or(0));
        if !st.safe_mode && pending(&st) == 0 && by.len() == 6 && hi - lo <= 25 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "not done on the new master: {st:?} {by:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("balance finished {:?} after the failover ({} tasks were pending)", t.elapsed(), pending(&before));
    stop(s1);
    stop(s2);
    let lines = audit(&[&log1, &log2]);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for l in &lines {
        *seen.entry(l.0).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks executed twice: {twice:?}");
    assert!(lines.iter().any(|l| l.1 == 1) && lines.iter().any(|l| l.1 == 2), "tasks of both masters ran");
    assert!(all_blocks(&b).await.iter().all(|b| b.dataservers.len() == 2), "every block keeps its 2 replicas");
    same_state(&b, &a).await;
}
