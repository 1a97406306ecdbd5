//! Slave side: follow the master this node was told about; LOGIN, install a snapshot if sent,
//! then receive records, check them, append them durably (group commit), apply, ACK.
//!
//! Invariant: a record is applied only if its crc matches, its seq is exactly the next one and
//! its epoch is neither below the last applied epoch nor above the epoch this slave was told.
//! Anything else drops the connection and the slave logs in again: nothing is ever skipped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::frame::{self, FrameType};
use crate::checkpoint::Snapshot;
use crate::engine::Engine;
use crate::epoch::Epoch;
use crate::oplog::{Record, record};
use crate::proto;
use crate::role::{Role, RoleState};
use crate::tls::{Tls, conn};

/// Runs for the life of the process: whenever this node is a slave with a known master, keeps a
/// replication session with it.
/// With `tls`, the master must prove the host of its address with a certificate of the CA, and
/// this node presents its own.
pub async fn follow(engine: Engine, mut shutdown: watch::Receiver<bool>, tls: Option<std::sync::Arc<Tls>>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let role = engine.role().lock().clone();
        if role.role != Role::Slave || role.master_addr.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let started = Instant::now();
        // The files as they are now: a rotation applies to the next session.
        let cfg = tls.as_ref().map(|t| t.current().repl_client.clone());
        match session(&engine, &role, &mut shutdown, cfg).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                warn!(master = %role.master_addr, error = %e, "replication from master interrupted; logging in again");
                if started.elapsed() > Duration::from_secs(2) {
                    backoff = Duration::from_millis(50);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Decodes the records of one frame and checks them against what must come next.
///
/// Invariant: seqs follow on without a gap, and epochs never fall below the last one accepted nor
/// rise above the one this slave was told (a record of an older epoch is refused).
pub fn check_records(
    payload: &Bytes,
    mut expected: u64,
    min_epoch: Epoch,
    max_epoch: Epoch,
) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    let mut epoch = min_epoch;
    while off < payload.len() {
        let (r, n) = record::decode(&payload.slice(off..)).map_err(|e| format!("record at frame offset {off}: {e}"))?;
        if r.header.seq != expected {
            return Err(format!("record seq {} where {expected} was expected", r.header.seq));
        }
        if r.header.epoch < epoch || r.header.epoch > max_epoch {
            return Err(format!(
                "record seq {} has epoch {} outside [{epoch}, {max_epoch}]",
                r.header.seq, r.header.epoch
            ));
        }
        epoch = r.header.epoch;
        expected += 1;
        off += n;
        out.push(r);
    }
    Ok(out)
}

/// This process's incarnation (see `ReplLogin.incarnation`): random, drawn once.
fn incarnation() -> u64 {
    use std::hash::BuildHasher;
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()))
}

fn same_assignment(a: &RoleState, b: &RoleState) -> bool {
    a.role == b.role && a.epoch == b.epoch && a.master_addr == b.master_addr && a.master_name == b.master_name
}

async fn session(
    engine: &Engine,
    role: &RoleState,
    shutdown: &mut watch::Receiver<bool>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&role.master_addr))
        .await
        .map_err(|_| format!("connect to {} timed out", role.master_addr))?
        .map_err(|e| format!("connect to {}: {e}", role.master_addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    // The master proves its node name when it is given (its address is then an IP its certificate
    // need not carry), else the host of its address.
    let name = if role.master_name.is_empty() { &role.master_addr } else { &role.master_name };
    let stream = conn::connect(stream, name, tls)
        .await
        .map_err(|e| format!("TLS handshake with the master at {}: {e}", role.master_addr))?;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(1 << 20, rd);
    let (last_seq, last_epoch) = {
        let s = engine.state().read();
        (s.applied_seq, s.epoch)
    };
    let login = proto::ReplLogin {
        cluster_id: engine.repl().cluster_id.clone(),
        node: engine.cfg().node.clone(),
        epoch: role.epoch.get(),
        last_seq,
        last_epoch: last_epoch.get(),
        incarnation: incarnation(),
    };
    frame::write_msg(&mut wr, FrameType::Login, &login).await.map_err(|e| e.to_string())?;
    let (t, p) = tokio::time::timeout(Duration::from_secs(10), frame::read_frame(&mut rd))
        .await
        .map_err(|_| "no answer to LOGIN within 10s".to_string())?
        .map_err(|e| e.to_string())?;
    let ok: proto::ReplLoginOk = match t {
        FrameType::LoginOk => frame::decode(t, p).map_err(|e| e.to_string())?,
        FrameType::Refused => {
            let r: proto::ReplRefused = frame::decode(t, p).map_err(|e| e.to_string())?;
            return Err(format!("master refused LOGIN: {}", r.reason));
        }
        other => return Err(format!("unexpected {other:?} frame in answer to LOGIN")),
    };
    if Epoch(ok.epoch) != role.epoch {
        return Err(format!("master answered with epoch {}, this slave follows epoch {}", ok.epoch, role.epoch));
    }
    if ok.snapshot {
        let mut buf = Vec::new();
        loop {
            let (t, p) = frame::read_frame(&mut rd).await.map_err(|e| e.to_string())?;
            match t {
                FrameType::SnapshotChunk => buf.extend_from_slice(&p),
                FrameType::SnapshotEnd => break,
                other => return Err(format!("unexpected {other:?} frame inside a snapshot")),
            }
        }
        let snap = Snapshot::read_from(&mut &buf[..]).map_err(|e| format!("snapshot from the master: {e}"))?;
        if snap.meta.seq + 1 != ok.start_seq {
            return Err(format!("snapshot at seq {} does not precede start seq {}", snap.meta.seq, ok.start_seq));
        }
        engine.install_snapshot(snap).await?;
    } else if ok.start_seq != last_seq + 1 {
        return Err(format!("master starts at seq {} but this log ends at {last_seq}", ok.start_seq));
    }
    // A LOGIN can be answered late (a master frozen meanwhile): if this node's role changed since
    // (e.g. it was promoted and logged records of its own), its durable seq is another history's.
    if !same_assignment(&engine.role().lock(), role) {
        let _ = frame::write_msg(&mut wr, FrameType::Logout, &proto::ReplLogout { lease_id: ok.lease_id }).await;
        return Ok(());
    }
    let mut durable = engine.durable_seq();
    frame::write_msg(&mut wr, FrameType::Ack, &proto::ReplAck { durable_seq: durable })
        .await
        .map_err(|e| e.to_string())?;
    info!(master = %role.master_addr, epoch = %role.epoch, from = ok.start_seq, snapshot = ok.snapshot, "following master");

    // Reader: frames → checked records, in order, into a channel the appender drains in groups.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<Record>, String>>(256);
    let (max_epoch, min_epoch) = (role.epoch, engine.state().read().epoch);
    let silence = engine.repl().slave_lease * 2;
    let reader = tokio::spawn(async move {
        let mut expected = ok.start_seq;
        let mut min_epoch = min_epoch;
        loop {
            let f = match tokio::time::timeout(silence, frame::read_frame(&mut rd)).await {
                Ok(f) => f.map_err(|e| e.to_string()),
                Err(_) => Err(format!("nothing from the master for {silence:?}")),
            };
            let item = f.and_then(|(t, p)| match t {
                FrameType::Records => check_records(&p, expected, min_epoch, max_epoch),
                FrameType::Heartbeat => Ok(Vec::new()),
                other => Err(format!("unexpected {other:?} frame from the master")),
            });
            if let Ok(rs) = &item
                && let Some(last) = rs.last()
            {
                expected = last.header.seq + 1;
                min_epoch = last.header.epoch;
            }
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    let _guard = super::master::AbortOnDrop(reader);

    let mut renew = tokio::time::interval(engine.repl().slave_lease / 3);
    let mut role_check = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            item = rx.recv() => {
                let mut records = item.ok_or("replication reader stopped")??;
                // Group commit on the slave: take what else already arrived, up to the group
                // bound. Unbounded, a large backlog became one append that could outlast the
                // master's patience for acks (a lease), so the slave was dropped and sent the same
                // backlog again, and never caught up.
                let max = engine.cfg().max_group_records as usize;
                while records.len() < max && let Ok(more) = rx.try_recv() {
                    records.extend(more?);
                }
                if records.is_empty() {
                    continue;
                }
                durable = engine.append_replicated(records).await?;
                frame::write_msg(&mut wr, FrameType::Ack, &proto::ReplAck { durable_seq: durable }).await.map_err(|e| e.to_string())?;
            }
            _ = renew.tick() => {
                frame::write_msg(&mut wr, FrameType::Renew, &proto::ReplRenew { lease_id: ok.lease_id }).await.map_err(|e| e.to_string())?;
            }
            _ = role_check.tick() => {
                let now = engine.role().lock().clone();
                if !same_assignment(&now, role) {
                    let _ = frame::write_msg(&mut wr, FrameType::Logout, &proto::ReplLogout { lease_id: ok.lease_id }).await;
                    info!(durable, "role changed; replication session closed");
                    return Ok(());
                }
            }
            _ = shutdown.changed() => {
                let _ = frame::write_msg(&mut wr, FrameType::Logout, &proto::ReplLogout { lease_id: ok.lease_id }).await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::RecordType;

    fn frame_of(seqs: &[(u64, u64)]) -> Bytes {
        let mut v = Vec::new();
        for &(seq, epoch) in seqs {
            record::encode(&mut v, RecordType::BlockRemove, Epoch(epoch), seq, 0, b"x");
        }
        Bytes::from(v)
    }

    #[test]
    fn records_must_continue_and_stay_within_epochs() {
        assert_eq!(check_records(&frame_of(&[(5, 2), (6, 2)]), 5, Epoch(2), Epoch(2)).unwrap().len(), 2);
        assert!(check_records(&frame_of(&[(5, 2), (7, 2)]), 5, Epoch(2), Epoch(2)).unwrap_err().contains("7 where 6"));
        assert!(check_records(&frame_of(&[(4, 2)]), 5, Epoch(2), Epoch(2)).is_err(), "a replayed record is refused");
        assert!(check_records(&frame_of(&[(5, 1)]), 5, Epoch(2), Epoch(3)).unwrap_err().contains("epoch 1"));
        assert!(check_records(&frame_of(&[(5, 4)]), 5, Epoch(2), Epoch(3)).unwrap_err().contains("epoch 4"));
        assert!(check_records(&frame_of(&[(5, 3), (6, 2)]), 5, Epoch(2), Epoch(3)).is_err(), "epochs never go back");
        let mut bad = frame_of(&[(5, 2)]).to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(check_records(&Bytes::from(bad), 5, Epoch(2), Epoch(2)).unwrap_err().contains("crc"));
    }
}
