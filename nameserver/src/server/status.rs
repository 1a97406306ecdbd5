//! Status as both the admin and the client port report it.

use std::time::Instant;

use crate::engine::Engine;
use crate::oplog::format::TaskKind;
use crate::proto;
use crate::replication::peers::Peers;
use crate::role::Role;

pub fn status(engine: &Engine, peers: &Peers) -> proto::StatusReply {
    let role = engine.role().lock().clone();
    let now = Instant::now();
    let (applied, blocks, dss, live, next_id, pending_tasks) = {
        let s = engine.state().read();
        (
            s.applied_seq,
            s.blocks().len() as u64,
            s.dataservers.len() as u64,
            s.live_dataservers().count() as u64,
            s.next_block_id,
            s.tasks().by_kind().map(|(k, n)| (task_kind_name(k).to_string(), n)).collect(),
        )
    };
    // A master in safe mode after its promotion plans nothing yet (planning/safe_mode.rs); a
    // node that is no writable master plans nothing either, and is not said to be in safe mode.
    let safe_left = match crate::ops::dataserver::safe_mode(engine, now) {
        Some(left) if !left.is_zero() => Some(left),
        _ => None,
    };
    let durable = engine.commit().durable();
    let committed = engine.commit().committed();
    let sync_set = engine.commit().view();
    let writable = role.check_writable(now).is_ok();
    engine.metrics().durable_seq.set(durable as i64);
    engine.metrics().committed_seq.set(committed as i64);
    engine.metrics().is_master.set(writable as i64);
    engine.metrics().blocks.set(blocks as i64);
    engine.metrics().sync_set_size.set(sync_set.members.len() as i64);
    // Every node, slaves included (a slave's volume fills with the master's records too).
    let free = engine.space().free(&engine.cfg().data_dir);
    engine.metrics().data_free_bytes.set(free.min(i64::MAX as u64) as i64);
    let peers = peers_of(engine, peers, durable);
    // Slaves come and go: the family holds exactly the peers of this moment.
    engine.metrics().peer_lag.clear();
    for p in &peers {
        engine.metrics().peer_lag.get_or_create(&crate::metrics::PeerLabel { peer: p.node.clone() }).set(p.lag as i64);
    }
    let valid = role.valid_for(now);
    proto::StatusReply {
        node: engine.cfg().node.clone(),
        role: role_of(role.role) as i32,
        epoch: role.epoch.get(),
        applied_seq: applied,
        durable_seq: durable,
        committed_seq: committed,
        valid_for_ms: if valid == std::time::Duration::MAX { u64::MAX } else { valid.as_millis() as u64 },
        master_addr: role.master_addr.clone(),
        draining: role.draining,
        writable,
        peers,
        sync_set: sync_set.members,
        block_count: blocks,
        dataserver_count: dss,
        live_dataservers: live,
        next_block_id: next_id,
        safe_mode: safe_left.is_some(),
        safe_mode_remaining_ms: safe_left.map_or(0, |d| d.as_millis() as u64),
        pending_tasks,
        replication_mode: engine.commit().mode().to_string(),
        checkpoint_seq: engine.checkpoint_seq(),
        first_log_seq: engine.first_log_seq(),
        sync_set_version: sync_set.version,
        sync_set_pending_removal: sync_set.pending,
        commit_waiters: engine.commit().waiting() as u64,
        archive: Some(engine.archive().status(crate::engine::now_ms())),
    }
}

/// A role as the API names it (a standalone node is a master).
pub fn role_of(r: Role) -> proto::Role {
    match r {
        Role::Standalone | Role::Master => proto::Role::Master,
        Role::Slave => proto::Role::Slave,
    }
}

/// A task kind (of the state, as logged) as Status and tfsctl name it.
pub fn task_kind_name(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Replicate => "replicate",
        TaskKind::Compact => "compact",
        TaskKind::Delete => "delete",
        TaskKind::Move => "move",
        TaskKind::Unspecified => "unspecified",
    }
}

/// Slaves as the master sees them: connected ones with their lag, plus sync set members that
/// are not connected (still waited for).
pub fn peers_of(engine: &Engine, peers: &Peers, durable: u64) -> Vec<proto::Peer> {
    let now = Instant::now();
    let commit = engine.commit();
    let mut out: Vec<proto::Peer> = peers
        .list()
        .into_iter()
        .map(|(node, p)| proto::Peer {
            in_sync_set: commit.in_sync_set(&node),
            node,
            addr: p.addr,
            acked_seq: p.acked,
            lag: durable.saturating_sub(p.acked),
            lease_id: p.lease_id,
            lease_expires_in_ms: p.lease_until.saturating_duration_since(now).as_millis() as u64,
        })
        .collect();
    for (node, acked) in commit.sync_set() {
        if !out.iter().any(|p| p.node == node) {
            out.push(proto::Peer {
                node,
                acked_seq: acked,
                lag: durable.saturating_sub(acked),
                in_sync_set: true,
                ..Default::default()
            });
        }
    }
    out
}
