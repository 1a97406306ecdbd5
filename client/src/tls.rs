//! TLS of the client port: the CA the server's certificate must chain to, an optional client
//! certificate (for a server that requires one), and the name to check when the address is an IP.

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How to reach the client port: plain TCP ([`TlsOptions::plain`], the default) or TLS.
///
/// ```
/// let tls = tfs_client::TlsOptions::plain();
/// assert!(!tls.enabled());
/// let tls = tfs_client::TlsOptions::with_ca(b"-----BEGIN CERTIFICATE-----...".to_vec())
///     .server_name("nameserver-0");
/// assert!(tls.enabled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl TlsOptions {
    /// Plain TCP (http://).
    pub fn plain() -> Self {
        Self::default()
    }

    /// TLS (https://), trusting the CA certificate in `ca_pem` (PEM).
    pub fn with_ca(ca_pem: Vec<u8>) -> Self {
        TlsOptions { ca_pem: Some(ca_pem), ..Self::default() }
    }

    /// Presents this client certificate and key (PEM) to a server that requires one.
    pub fn identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// The name the server's certificate must carry, when it is not the host of the address.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether connections use TLS.
    pub fn enabled(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// The channel's TLS configuration, `None` for plain TCP.
    pub(crate) fn config(&self) -> Result<Option<ClientTlsConfig>, crate::Error> {
        let Some(ca) = &self.ca_pem else {
            if self.identity.is_some() || self.server_name.is_some() {
                return Err(crate::Error::Config("a client certificate or a server name needs a CA (TLS)".into()));
            }
            return Ok(None);
        };
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        if let Some(n) = &self.server_name {
            c = c.domain_name(n.clone());
        }
        Ok(Some(c))
    }
}
