//! What `tfsctl status` and `tfsctl block` print, as text or JSON.

use tfs_nameserver::proto;

pub fn print_block(b: &proto::Block, json: bool) {
    if json {
        println!("{}", block_json(b));
    } else {
        let reps: Vec<String> = b.dataservers.iter().zip(&b.addrs).map(|(d, a)| format!("{d}@{a}")).collect();
        println!(
            "block {} version {} size {} files {} deleted {}/{} replicas [{}]",
            b.id,
            b.version,
            b.size,
            b.file_count,
            b.del_size,
            b.del_file_count,
            reps.join(", ")
        );
    }
}

pub fn block_json(b: &proto::Block) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "version": b.version, "size": b.size, "file_count": b.file_count,
        "del_size": b.del_size, "del_file_count": b.del_file_count,
        "dataservers": b.dataservers, "addrs": b.addrs,
    })
}

pub fn print_status(s: &proto::StatusReply, json: bool) {
    let role = match s.role() {
        proto::Role::Master => "master",
        proto::Role::Slave => "slave",
        proto::Role::Unspecified => "unknown",
    };
    let valid = if s.valid_for_ms == u64::MAX { "forever".to_string() } else { format!("{}ms", s.valid_for_ms) };
    if json {
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|p| serde_json::json!({"node": p.node, "addr": p.addr, "acked_seq": p.acked_seq, "lag": p.lag, "in_sync_set": p.in_sync_set}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "node": s.node, "role": role, "epoch": s.epoch, "writable": s.writable, "draining": s.draining,
                "valid_for_ms": s.valid_for_ms, "master": s.master_addr,
                "applied_seq": s.applied_seq, "durable_seq": s.durable_seq, "committed_seq": s.committed_seq,
                "checkpoint_seq": s.checkpoint_seq, "first_log_seq": s.first_log_seq,
                "replication_mode": s.replication_mode, "sync_set": s.sync_set, "peers": peers,
                "blocks": s.block_count, "dataservers": s.dataserver_count, "live_dataservers": s.live_dataservers,
                "next_block_id": s.next_block_id,
                "safe_mode": s.safe_mode, "safe_mode_remaining_ms": s.safe_mode_remaining_ms,
                "pending_tasks": s.pending_tasks,
                "archive": s.archive.as_ref().map(|a| serde_json::json!({
                    "enabled": a.enabled, "url": a.url, "archived_seq": a.archived_seq, "lag_seconds": a.lag_seconds,
                    "last_checkpoint_seq": a.last_checkpoint_seq, "last_checkpoint_object": a.last_checkpoint_object,
                    "last_checkpoint_unix_ms": a.last_checkpoint_unix_ms, "last_error": a.last_error,
                    "last_error_unix_ms": a.last_error_unix_ms,
                })),
            })
        );
        return;
    }
    println!("node:        {}", s.node);
    println!(
        "role:        {role}{}{}",
        if s.writable { " (writable)" } else { "" },
        if s.draining { " (draining)" } else { "" }
    );
    println!("epoch:       {}   valid for: {valid}", s.epoch);
    if !s.master_addr.is_empty() {
        println!("master:      {}", s.master_addr);
    }
    println!("seq:         applied {}  durable {}  committed {}", s.applied_seq, s.durable_seq, s.committed_seq);
    println!("oplog:       first seq {}  checkpoint seq {}", s.first_log_seq, s.checkpoint_seq);
    println!("replication: {}  sync set [{}]", s.replication_mode, s.sync_set.join(", "));
    for p in &s.peers {
        println!(
            "  peer {} {} acked {} lag {}{}",
            p.node,
            p.addr,
            p.acked_seq,
            p.lag,
            if p.in_sync_set { " in-sync" } else { "" }
        );
    }
    println!("blocks:      {}  (next id {})", s.block_count, s.next_block_id);
    println!("dataservers: {} live of {}", s.live_dataservers, s.dataserver_count);
    if s.safe_mode {
        println!(
            "safe mode:   planning nothing for at most {}ms more (until every live dataserver reported)",
            s.safe_mode_remaining_ms
        );
    }
    let mut tasks: Vec<_> = s.pending_tasks.iter().collect();
    tasks.sort();
    let tasks: Vec<String> = tasks.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("tasks:       {}", if tasks.is_empty() { "none pending".to_string() } else { tasks.join(", ") });
    if let Some(a) = s.archive.as_ref().filter(|a| a.enabled) {
        println!(
            "archive:     {}  archived seq {}  lag {:.1}s  last checkpoint seq {}{}",
            a.url,
            a.archived_seq,
            a.lag_seconds,
            a.last_checkpoint_seq,
            if a.last_error.is_empty() { String::new() } else { format!("  last error: {}", a.last_error) }
        );
    }
}
