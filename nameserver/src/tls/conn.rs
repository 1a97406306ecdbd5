//! A connection that is plain TCP or TLS over it, so that the servers and the slave handle both
//! alike; and the TLS handshakes of each side.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a peer may take over its handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Conn {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Server(s) => s.get_ref().0,
            Conn::Client(s) => s.get_ref().0,
        }
    }

    /// The peer's address, for logs.
    pub fn peer_addr(&self) -> String {
        self.tcp().peer_addr().map(|a| a.to_string()).unwrap_or_default()
    }

    /// The DNS names the peer's certificate proves: `None` over plain TCP, empty over TLS when the
    /// peer presented no certificate (or one naming nothing).
    pub fn peer_names(&self) -> Option<Vec<String>> {
        match self {
            Conn::Plain(_) => None,
            _ => Some(self.peer_certificate().map(super::dns_names).unwrap_or_default()),
        }
    }

    /// The certificate the peer presented (its leaf), if any.
    pub fn peer_certificate(&self) -> Option<&rustls::pki_types::CertificateDer<'static>> {
        match self {
            Conn::Plain(_) => None,
            Conn::Server(s) => s.get_ref().1.peer_certificates()?.first(),
            Conn::Client(s) => s.get_ref().1.peer_certificates()?.first(),
        }
    }
}

/// The server side of a handshake with `cfg` (none: plain TCP), bounded by [`HANDSHAKE_TIMEOUT`].
pub async fn accept(tcp: TcpStream, cfg: Option<Arc<rustls::ServerConfig>>) -> io::Result<Conn> {
    let Some(cfg) = cfg else { return Ok(Conn::Plain(tcp)) };
    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(cfg).accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within 5s"))??;
    Ok(Conn::Server(Box::new(s)))
}

/// The client side: verifies the server's certificate for the host of `addr` (host:port).
pub async fn connect(tcp: TcpStream, addr: &str, cfg: Option<Arc<rustls::ClientConfig>>) -> io::Result<Conn> {
    let Some(cfg) = cfg else { return Ok(Conn::Plain(tcp)) };
    let name = server_name(addr)?;
    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within 5s"))??;
    Ok(Conn::Client(Box::new(s)))
}

/// The name a server at `addr` (host:port, `[v6]:port`) must prove: its host, a DNS name or an IP.
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a server name: {e}")))
}

/// Runs `$e` with `$s` bound to whichever stream `$conn` holds (the three have different types).
macro_rules! each {
    ($conn:expr, $s:ident => $e:expr) => {
        match $conn {
            Conn::Plain($s) => $e,
            Conn::Server($s) => $e,
            Conn::Client($s) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}
