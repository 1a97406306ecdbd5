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
