//! `tfsctl probe-login`: an audit of the replication port's authentication. It does what a hostile
//! peer would — connect, with or without a certificate, and ask to replicate as a slave — and
//! reports what the node answered, then leaves. Nothing it sends can count: a LOGIN it is refused
//! never reaches the sync set, and one it is granted is closed before any acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use tfs_nameserver::proto;
use tfs_nameserver::replication::frame::{self, FrameType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::TlsArgs;

#[derive(Debug, clap::Args)]
pub struct ProbeLoginArgs {
    /// The node's replication address (host:port).
    #[arg(long)]
    pub repl: String,
    /// The slave name the LOGIN claims.
    #[arg(long)]
    pub node: String,
    /// The cluster id the LOGIN carries (a TfsNameserver's is `<namespace>.<name>`).
    #[arg(long)]
    pub cluster_id: String,
}

/// What the node did with the LOGIN.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A replication stream was offered: the identity was accepted.
    Accepted,
    /// The node answered with a refusal, or ended the connection (TLS alert, close) and why.
    Refused(String),
}

pub async fn run(a: &ProbeLoginArgs, tls: &TlsArgs) -> Result<Outcome> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&a.repl))
        .await
        .with_context(|| format!("no TCP connection to {} within 5 s", a.repl))?
        .with_context(|| format!("cannot connect to {}", a.repl))?;
    let login = proto::ReplLogin {
        cluster_id: a.cluster_id.clone(),
        node: a.node.clone(),
        epoch: 1,
        incarnation: rand_incarnation(),
        ..Default::default()
    };
    let Some(ca) = &tls.ca else { return Ok(login_on(tcp, &login).await) };
    let read = |p: &std::path::PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let id = match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    let cfg = tfs_nameserver::tls::client_config(&read(ca)?, id.as_ref().map(|(c, k)| (&c[..], &k[..])))?;
    let host = match &tls.tls_server_name {
        Some(n) => n.clone(),
        None => a.repl.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_default(),
    };
    let Ok(name) = ServerName::try_from(host.clone()) else { bail!("{host:?} is not a server name") };
    match tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await {
        Ok(s) => Ok(login_on(s, &login).await),
        Err(e) => Ok(Outcome::Refused(format!("TLS handshake: {e}"))),
    }
}

/// Over TLS 1.3 the server judges the client's certificate after the client's handshake ended:
/// a refusal of the certificate then comes as the answer to the LOGIN.
async fn login_on<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, login: &proto::ReplLogin) -> Outcome {
    if let Err(e) = frame::write_msg(&mut s, FrameType::Login, login).await {
        return Outcome::Refused(format!("connection ended: {e}"));
    }
    match tokio::time::timeout(Duration::from_secs(10), frame::read_frame(&mut s)).await {
        Err(_) => Outcome::Refused("no answer within 10 s".into()),
        Ok(Err(e)) => Outcome::Refused(format!("connection ended: {e}")),
        Ok(Ok((FrameType::Refused, p))) => match frame::decode::<proto::ReplRefused>(FrameType::Refused, p) {
            Ok(r) => Outcome::Refused(r.reason),
            Err(e) => Outcome::Refused(format!("refused (undecodable reason: {e})")),
        },
        Ok(Ok((FrameType::LoginOk, _))) => Outcome::Accepted,
        Ok(Ok((t, _))) => Outcome::Refused(format!("unexpected {t:?} frame")),
    }
}

fn rand_incarnation() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
