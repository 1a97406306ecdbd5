//! What the operator knows of each nameserver: its pod's readiness and the Status it reports on
//! its client port (read-only there; roles are only ever changed through the pod's own heart).

use std::time::Duration;

use tfs_nameserver::proto::{self, client_client::ClientClient};

/// The parts of a nameserver's Status the operator decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsStatus {
    pub master: bool,
    pub writable: bool,
    pub epoch: u64,
    pub durable_seq: u64,
    pub sync_set: Vec<String>,
    /// The archive to object storage (spec.backup), as this instance reports it.
    pub archive: Option<Archive>,
}

/// A nameserver's report on its archive (StatusReply.archive): only a master archives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Archive {
    pub url: String,
    pub archived_seq: u64,
    /// The lag, in milliseconds.
    pub lag_ms: u64,
    pub last_checkpoint_seq: u64,
    pub last_checkpoint_object: String,
    pub last_checkpoint_unix_ms: i64,
    pub last_error: String,
    pub last_error_unix_ms: i64,
}

impl Archive {
    pub fn of(a: &proto::ArchiveStatus) -> Option<Self> {
        a.enabled.then(|| Archive {
            url: a.url.clone(),
            archived_seq: a.archived_seq,
            lag_ms: (a.lag_seconds.max(0.0) * 1000.0).round() as u64,
            last_checkpoint_seq: a.last_checkpoint_seq,
            last_checkpoint_object: a.last_checkpoint_object.clone(),
            last_checkpoint_unix_ms: a.last_checkpoint_unix_ms,
            last_error: a.last_error.clone(),
            last_error_unix_ms: a.last_error_unix_ms,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    pub pod: String,
    pub ordinal: usize,
    /// The pod's Ready condition (readiness = the nameserver's /health).
    pub ready: bool,
    /// None: not reachable or not answering.
    pub status: Option<NsStatus>,
}

impl NsStatus {
    pub fn of(s: &proto::StatusReply) -> Self {
        NsStatus {
            master: s.role() == proto::Role::Master,
            writable: s.writable,
            epoch: s.epoch,
            durable_seq: s.durable_seq,
            sync_set: s.sync_set.clone(),
            archive: s.archive.as_ref().and_then(Archive::of),
        }
    }
}

/// Reads a nameserver's Status at `ip:port`, giving up quickly: a slow instance is not a candidate.
/// With `tls`, over TLS verifying the pod's certificate (its name set in the config).
pub async fn probe(ip: &str, port: i32, tls: Option<tonic::transport::ClientTlsConfig>) -> Option<NsStatus> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{ip}:{port}"))
        .ok()?
        .connect_timeout(Duration::from_millis(300));
    if let Some(t) = tls {
        ep = ep.tls_config(t).ok()?;
    }
    let fut = async {
        let ch = ep.connect().await.ok()?;
        ClientClient::new(ch).status(proto::StatusRequest {}).await.ok().map(|r| NsStatus::of(r.get_ref()))
    };
    tokio::time::timeout(Duration::from_millis(500), fut).await.ok().flatten()
}
