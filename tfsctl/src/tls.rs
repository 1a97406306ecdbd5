//! tfsctl's side of TLS: the flags, the https channel every command dials through
//! (`crate::endpoint`), and plain words for a TLS failure instead of a bare transport error.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::io::AsyncReadExt;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) the server's certificate must chain to; turns TLS on (https).
    #[arg(long, global = true, env = "TFS_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (with --key).
    #[arg(long, global = true, env = "TFS_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, global = true, env = "TFS_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the host of --addr (an IP).
    #[arg(long, global = true, env = "TFS_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

/// The TLS every channel of this process uses, set once from the flags: the commands reach
/// `crate::endpoint` from many places (bench workers, simulated dataservers, verify), all alike.
static CLIENT_TLS: OnceLock<Option<Settings>> = OnceLock::new();

struct Settings {
    channel: ClientTlsConfig,
    /// The same, for the client library's connections.
    library: tfs_client::TlsOptions,
    /// The same, for [`diagnose`]'s handshake of its own.
    probe: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

pub fn init(a: &TlsArgs) -> Result<()> {
    let settings = match &a.ca {
        None => {
            if a.cert.is_some() || a.tls_server_name.is_some() {
                bail!("--cert/--key and --tls-server-name need --ca (TLS)");
            }
            None
        }
        Some(ca) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
            let ca = read(ca)?;
            let id = match (&a.cert, &a.key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            let mut channel = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
            if let Some((c, k)) = &id {
                channel = channel.identity(Identity::from_pem(c, k));
            }
            if let Some(n) = &a.tls_server_name {
                channel = channel.domain_name(n.clone());
            }
            let mut library = tfs_client::TlsOptions::with_ca(ca.clone());
            if let Some((c, k)) = &id {
                library = library.identity(c.clone(), k.clone());
            }
            if let Some(n) = &a.tls_server_name {
                library = library.server_name(n.clone());
            }
            let mut probe = tfs_nameserver::tls::client_config(&ca, id.as_ref().map(|(c, k)| (&c[..], &k[..])))?;
            probe.alpn_protocols = vec![b"h2".to_vec()];
            Some(Settings { channel, library, probe: Arc::new(probe), server_name: a.tls_server_name.clone() })
        }
    };
    CLIENT_TLS.set(settings).map_err(|_| anyhow::anyhow!("TLS settings made twice"))
}

pub fn client_tls() -> Option<ClientTlsConfig> {
    CLIENT_TLS.get()?.as_ref().map(|s| s.channel.clone())
}

/// The same settings for the client library (plain when no --ca).
pub fn client_options() -> tfs_client::TlsOptions {
    CLIENT_TLS.get().and_then(|s| s.as_ref()).map_or_else(tfs_client::TlsOptions::plain, |s| s.library.clone())
}

/// After a failure whose cause went unnamed, the TLS reason if there is one: a handshake of our
/// own with the server and a short read. (Over TLS 1.3 a server judges the client's certificate
/// after the client's handshake ended, and HTTP/2 reports only a closed connection.)
pub async fn diagnose(addr: &str) -> Option<String> {
    let s = CLIENT_TLS.get()?.as_ref()?;
    let name = match &s.server_name {
        Some(n) => ServerName::try_from(n.clone()).ok()?,
        None => tfs_nameserver::tls::conn::server_name(addr).ok()?,
    };
    let probe = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut t = tokio_rustls::TlsConnector::from(s.probe.clone()).connect(name, tcp).await?;
        t.read(&mut [0u8; 1]).await
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Err(e)) => explain(&e),
        _ => None,
    }
}

/// What went wrong in plain words, if a TLS failure is among the causes of `e`.
pub fn explain(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(words(r));
        }
        // An io::Error's source() skips the error it wraps (rustls's, from the handshake).
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(words(r));
        }
        cur = e.source();
    }
    None
}

fn words(e: &rustls::Error) -> String {
    use rustls::Error::*;
    let what = match e {
        InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by the CA given with --ca (unknown CA)".to_string()
        }
        InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate does not carry the name dialled (the host of --addr); name the one it \
             carries with --tls-server-name"
                .to_string()
        }
        InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate: give --cert and --key".to_string()
        }
        AlertReceived(AlertDescription::UnknownCA | AlertDescription::BadCertificate) => {
            "the server refused the client certificate (--cert): not of its CA".to_string()
        }
        InvalidMessage(_) => "the server does not speak TLS (drop --ca?)".to_string(),
        other => format!("{other}"),
    };
    format!("TLS: {what}")
}

/// A failed call in words: the code and message, and the TLS cause in plain words if there is one.
pub fn describe(s: &tonic::Status) -> String {
    if let Some(tls) = s.source().and_then(explain) {
        return format!("{}: {tls}", s.code());
    }
    // A server with TLS on drops a plain client's first bytes: HTTP/2 sees only a broken
    // connection (a reset, a protocol error, a cancelled call), never a gRPC answer.
    let broken = matches!(s.code(), tonic::Code::Unknown | tonic::Code::Cancelled);
    let hint = if broken && client_tls().is_none() { " (does the server have TLS on? give --ca)" } else { "" };
    format!("{}: {}{hint}", s.code(), s.message())
}
