//! Dialling the nameserver: the address check, the endpoint every command uses (TLS from the
//! flags, short timeouts), and a failed call in words.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use tonic::transport::{Channel, Endpoint};

use crate::tls;

/// Checks `addr` looks like host:port and returns the endpoint for it.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    let valid = addr.parse::<SocketAddr>().is_ok()
        || addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !valid {
        bail!("address {addr:?} is not host:port (for example 127.0.0.1:8100)");
    }
    let tls = tls::client_tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))?;
    if let Some(t) = tls {
        ep = ep.tls_config(t)?;
    }
    // Short timeouts: across a failover the old master's address may silently stop answering
    // (a deleted pod), and a client must notice within a second, not a TCP timeout; a connect
    // gives up as the library's does (tfs_client::CONNECT_TIMEOUT says why).
    Ok(ep
        .connect_timeout(tfs_client::CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true))
}

/// Connects to `addr` (host:port) with the process's TLS settings.
pub async fn connect(addr: &str) -> Result<Channel> {
    connect_to(endpoint(addr)?, addr).await
}

/// Connects to `ep` (an [`endpoint`] with settings of the caller's), explaining TLS failures.
pub async fn connect_to(ep: Endpoint, addr: &str) -> Result<Channel> {
    ep.connect().await.map_err(|e| match tls::explain(&e) {
        Some(tls) => anyhow::anyhow!("cannot connect to the nameserver at {addr}: {tls}"),
        None => anyhow::Error::new(e).context(format!("cannot connect to the nameserver at {addr}")),
    })
}

pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", tls::describe(&s))
}
