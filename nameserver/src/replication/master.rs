//! Master side: accept slaves, grant them keepalive leases, stream the oplog, track their acks and
//! the sync set.
//!
//! Invariants:
//! - a slave's stream starts right after a record both logs hold, identified by (seq, epoch);
//!   otherwise the slave gets a snapshot first. So a slave never holds a record this master
//!   does not, once it acks anything of this epoch;
//! - a slave joins the sync set only once it acked everything already committed; from then on
//!   nothing is committed without it, until it is removed (lease lapsed, acks stalled, logout).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::frame::{self, FrameType};
use super::peers::{Peer, Peers};
use crate::checkpoint::Snapshot;
use crate::engine::Engine;
use crate::epoch::Epoch;
use crate::oplog::feed::FeedRead;
use crate::oplog::segment::Cursor;
use crate::proto;
use crate::role::Role;
use crate::state::{EpochMark, epoch_at};
use crate::tls::Tls;
use crate::tls::conn::{self, Conn};

type Reader = BufReader<ReadHalf<Conn>>;
type Writer = WriteHalf<Conn>;

const CHUNK: usize = 1 << 20;

/// Where a slave's stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Records from this seq on.
    Stream(u64),
    /// A snapshot of the current state first.
    Snapshot,
}

/// Decides where a slave whose last durable record is (`slave_last`, `slave_epoch`) starts, given
/// this master's log: its epoch marks, its last seq and the oldest seq it still has on disk.
pub fn plan_start(
    epochs: &[EpochMark],
    master_last: u64,
    first_on_disk: u64,
    slave_last: u64,
    slave_epoch: Epoch,
) -> Start {
    if slave_last == 0 {
        return if first_on_disk <= 1 { Start::Stream(1) } else { Start::Snapshot };
    }
    if slave_last > master_last || epoch_at(epochs, slave_last) != slave_epoch || slave_last + 1 < first_on_disk {
        return Start::Snapshot;
    }
    Start::Stream(slave_last + 1)
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Accepts slaves; with `tls`, only those presenting a certificate of the CA (mutual TLS).
/// `peers`: this master's slaves as Status reports them, kept here.
pub async fn serve(engine: Engine, peers: Arc<Peers>, listener: TcpListener, tls: Option<Arc<Tls>>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (engine, peers) = (engine.clone(), peers.clone());
                // The files as they are now: a rotation applies to the next connection.
                let cfg = tls.as_ref().map(|t| t.current().repl_server.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let conn = match conn::accept(stream, cfg).await {
                        Ok(c) => c,
                        Err(e) => {
                            warn!(%peer, error = %e, "replication peer refused: TLS handshake failed (no certificate, or not one of this cluster's CA?)");
                            refused(&engine, "handshake");
                            return;
                        }
                    };
                    if let Err(e) = session(engine, &peers, conn).await {
                        warn!(%peer, error = %e, "replication session ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "replication accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn refused(engine: &Engine, reason: &'static str) {
    engine.metrics().repl_refused.get_or_create(&crate::metrics::Reason { reason }).inc();
}

async fn refuse(w: &mut Writer, reason: String) -> Result<(), String> {
    let _ = frame::write_msg(w, FrameType::Refused, &proto::ReplRefused { reason: reason.clone() }).await;
    Err(format!("login refused: {reason}"))
}

async fn session(engine: Engine, peers: &Peers, conn: Conn) -> Result<(), String> {
    let addr = conn.peer_addr();
    let identity = conn.peer_names();
    let (rd, mut wr) = tokio::io::split(conn);
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let login: proto::ReplLogin =
        tokio::time::timeout(Duration::from_secs(5), frame::read_msg(&mut rd, FrameType::Login))
            .await
            .map_err(|_| "no LOGIN within 5s".to_string())?
            .map_err(|e| e.to_string())?;
    // Invariant: with TLS, a LOGIN counts only from a certificate of the CA that names the node
    // it logs in as; any other peer of the cluster would otherwise answer for that node's acks.
    if let Some(names) = identity
        && !names.contains(&login.node)
    {
        warn!(%addr, login = %login.node, certificate = ?names, "replication LOGIN refused: the peer's certificate does not name the node it logs in as");
        refused(&engine, "identity");
        return refuse(&mut wr, format!("the certificate names {names:?}, not {:?}", login.node)).await;
    }
    if login.cluster_id != engine.repl().cluster_id {
        return refuse(
            &mut wr,
            format!("cluster id {:?} is not this cluster's ({:?})", login.cluster_id, engine.repl().cluster_id),
        )
        .await;
    }
    let role = engine.role().lock().clone();
    if role.role != Role::Master {
        return refuse(&mut wr, "this nameserver is not a replicating master".into()).await;
    }
    // Exactly the master's epoch: an older slave may hold a diverged tail; a newer one, a deposed master.
    if Epoch(login.epoch) != role.epoch {
        return refuse(&mut wr, format!("slave epoch {} is not the master's epoch {}", login.epoch, role.epoch)).await;
    }
    if let Some(reason) = counted_elsewhere(&engine, peers, &login) {
        return refuse(&mut wr, reason).await;
    }
    let (epochs, last) = {
        let s = engine.state().read();
        (s.epochs.clone(), s.applied_seq)
    };
    let first_on_disk = engine.first_log_seq();
    let start = plan_start(&epochs, last, first_on_disk, login.last_seq, Epoch(login.last_epoch));
    let lease = engine.repl().slave_lease;
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let lease_id = session;
    let node = login.node.clone();
    let snapshot = match start {
        Start::Snapshot => {
            let s = Snapshot::of(&engine.state().read());
            let seq = s.meta.seq;
            let bytes = tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                s.write_to(&mut v).map(|_| v)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Some((seq, bytes))
        }
        Start::Stream(_) => None,
    };
    let from = match (&snapshot, start) {
        (Some((seq, _)), _) => seq + 1,
        (None, Start::Stream(s)) => s,
        (None, Start::Snapshot) => unreachable!("a snapshot start always has a snapshot"),
    };
    let ok = proto::ReplLoginOk {
        lease_id,
        lease_ms: lease.as_millis() as u64,
        epoch: role.epoch.get(),
        start_seq: from,
        snapshot: snapshot.is_some(),
    };
    frame::write_msg(&mut wr, FrameType::LoginOk, &ok).await.map_err(|e| e.to_string())?;
    info!(slave = %node, %addr, from, snapshot = snapshot.is_some(), slave_last = login.last_seq, "slave logged in");
    if let Some((_, bytes)) = snapshot {
        for c in bytes.chunks(4 << 20) {
            frame::write_frame(&mut wr, FrameType::SnapshotChunk, c).await.map_err(|e| e.to_string())?;
        }
        frame::write_frame(&mut wr, FrameType::SnapshotEnd, &[]).await.map_err(|e| e.to_string())?;
    }
    let acked = from.saturating_sub(1);
    let incarnation = login.incarnation;
    peers.upsert(&node, Peer { addr, acked, lease_id, lease_until: Instant::now() + lease, session, incarnation });
    // The highest seq this connection carried: the slave holds at most that much.
    let sent = AtomicU64::new(acked);
    let result = tokio::select! {
        r = send_loop(&engine, &mut wr, from, &sent) => r,
        r = recv_loop(&engine, peers, rd, &node, session, incarnation, &sent) => r,
    };
    // The slave is gone or failed: stop waiting for it. (With the heart, the removal is published
    // on the Lease by the master's Status before the operator may act on it; see commit.rs.)
    if peers.remove(&node, session) {
        engine.commit().remove_from_sync_set(&node);
        info!(slave = %node, "slave left the sync set");
    }
    let _ = wr.shutdown().await;
    result
}

/// Why a LOGIN must not take `login.node`'s place: another process of that name still counts,
/// through a live session or a place in the sync set not yet released. Without this, any peer
/// could log in under a slave's name and have its acks counted as that slave's.
fn counted_elsewhere(engine: &Engine, peers: &Peers, login: &proto::ReplLogin) -> Option<String> {
    let node = &login.node;
    if let Some(p) = peers.get(node)
        && p.incarnation != login.incarnation
        && p.lease_until > Instant::now()
    {
        return Some(format!(
            "{node} already has a live session from {} (another process); retry once its lease lapses",
            p.addr
        ));
    }
    match engine.commit().counted_incarnation(node) {
        Some(i) if i != login.incarnation => Some(format!(
            "{node}'s place in the sync set belongs to another process until its removal is published; retry then"
        )),
        _ => None,
    }
}

async fn send_loop(engine: &Engine, wr: &mut Writer, mut next: u64, sent: &AtomicU64) -> Result<(), String> {
    let mut last_rx = engine.feed().subscribe();
    let mut cursor: Option<Cursor> = None;
    loop {
        if !engine.role().lock().is_master() {
            return Err("no longer master".into());
        }
        let chunk: Option<(Bytes, u64)> = match engine.feed().read(next, CHUNK) {
            FeedRead::Records { data, last, .. } => {
                cursor = None;
                Some((data, last))
            }
            FeedRead::NotYet => None,
            FeedRead::TooOld => {
                // File reads: off the async runtime, which also serves clients.
                let dir = engine.cfg().oplog_dir();
                let c = cursor.take();
                let (c, chunk) = tokio::task::spawn_blocking(move || -> Result<_, String> {
                    let mut c = match c {
                        Some(c) if c.next_seq() == next => c,
                        _ => Cursor::seek(&dir, next).map_err(|e| e.to_string())?.ok_or_else(|| {
                            format!("records from seq {next} are no longer on disk; the slave needs a snapshot")
                        })?,
                    };
                    let chunk = c.next_chunk(CHUNK)?;
                    Ok((c, chunk))
                })
                .await
                .map_err(|e| e.to_string())??;
                cursor = Some(c);
                chunk.map(|(d, _, l)| (d, l))
            }
        };
        match chunk {
            Some((data, last)) => {
                sent.store(last, Ordering::Release);
                frame::write_frame(wr, FrameType::Records, &data).await.map_err(|e| e.to_string())?;
                next = last + 1;
            }
            None => {
                tokio::select! {
                    _ = last_rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {
                        let hb = proto::ReplHeartbeat { epoch: engine.role().lock().epoch.get(), last_seq: engine.feed().last(), committed_seq: engine.commit().committed() };
                        frame::write_msg(wr, FrameType::Heartbeat, &hb).await.map_err(|e| e.to_string())?;
                    }
                }
            }
        }
    }
}

/// Reads frames in a task of its own: a frame read is not cancel-safe, so it must never be a
/// branch of a `select!` that another branch can win mid-frame.
type Frames = mpsc::Receiver<Result<(FrameType, Bytes), String>>;

fn spawn_reader(mut rd: Reader) -> (Frames, AbortOnDrop) {
    let (tx, rx) = mpsc::channel(64);
    let h = tokio::spawn(async move {
        loop {
            let f = frame::read_frame(&mut rd).await.map_err(|e| e.to_string());
            let stop = f.is_err();
            if tx.send(f).await.is_err() || stop {
                return;
            }
        }
    });
    (rx, AbortOnDrop(h))
}

pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn recv_loop(
    engine: &Engine,
    peers: &Peers,
    rd: Reader,
    node: &str,
    session: u64,
    incarnation: u64,
    sent: &AtomicU64,
) -> Result<(), String> {
    let (mut frames, _reader) = spawn_reader(rd);
    let lease = engine.repl().slave_lease;
    let mut lease_until = Instant::now() + lease;
    let mut acked = peers.get(node).map(|p| p.acked).unwrap_or(0);
    let mut last_progress = Instant::now();
    let mut check = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            f = frames.recv() => {
                let (t, payload) = f.ok_or("replication reader stopped")??;
                match t {
                    FrameType::Renew => {
                        lease_until = Instant::now() + lease;
                        peers.update(node, session, |p| p.lease_until = lease_until);
                    }
                    FrameType::Ack => {
                        let a: proto::ReplAck = frame::decode(t, payload).map_err(|e| e.to_string())?;
                        // Invariant: an ack counts only for seqs this connection carried; a peer
                        // claiming more is lying or broken, and is dropped before it counts.
                        let carried = sent.load(Ordering::Acquire);
                        if a.durable_seq > carried {
                            return Err(format!("{node} acked seq {} but was sent up to {carried}", a.durable_seq));
                        }
                        if a.durable_seq > acked {
                            acked = a.durable_seq;
                            last_progress = Instant::now();
                            peers.update(node, session, |p| p.acked = acked);
                            engine.commit().ack(node, acked);
                        }
                        // Caught up with every acknowledged write: from now on, commits wait for it.
                        if engine.commit().join_if_caught_up(node, acked, incarnation) {
                            info!(slave = %node, acked, "slave joined the sync set");
                        }
                    }
                    FrameType::Logout => return Ok(()),
                    other => return Err(format!("unexpected {other:?} frame from a slave")),
                }
            }
            _ = check.tick() => {
                let now = Instant::now();
                if now >= lease_until {
                    return Err(format!("slave {node}'s lease lapsed"));
                }
                // Alive but not acking while behind: as good as gone for the commit rule.
                if engine.commit().in_sync_set(node) && acked < engine.commit().durable() && now.duration_since(last_progress) >= lease {
                    return Err(format!("slave {node} acked nothing for {lease:?} while behind"));
                }
                if acked >= engine.commit().durable() {
                    last_progress = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(v: &[(u64, u64)]) -> Vec<EpochMark> {
        v.iter().map(|&(epoch, start_seq)| EpochMark { epoch: Epoch(epoch), start_seq }).collect()
    }

    #[test]
    fn start_points() {
        let m = marks(&[(1, 1), (2, 50)]);
        // An empty slave streams from the start while the log is whole.
        assert_eq!(plan_start(&m, 80, 1, 0, Epoch(0)), Start::Stream(1));
        assert_eq!(plan_start(&m, 80, 30, 0, Epoch(0)), Start::Snapshot);
        // A slave on the same history continues.
        assert_eq!(plan_start(&m, 80, 1, 60, Epoch(2)), Start::Stream(61));
        assert_eq!(plan_start(&m, 80, 1, 49, Epoch(1)), Start::Stream(50));
        // The old master: records 50.. of epoch 1 that the new master never had: diverged.
        assert_eq!(plan_start(&m, 80, 1, 55, Epoch(1)), Start::Snapshot);
        // Ahead of the master: diverged.
        assert_eq!(plan_start(&m, 80, 1, 81, Epoch(2)), Start::Snapshot);
        // Behind what is on disk.
        assert_eq!(plan_start(&m, 80, 40, 20, Epoch(1)), Start::Snapshot);
    }
}
