//! Certificates for the TLS process tests, made with rcgen (the crate's devcerts) and laid out as
//! the kubelet mounts a Secret: each file a symlink into `..data`, itself a symlink to a
//! directory of one version, swapped by a rename on an update.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tfs_nameserver::tls::devcerts::{Ca, Issued};
use tfs_nameserver::tls::{self, certs_from_pem};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Node;

pub struct Secret {
    pub dir: PathBuf,
    version: u32,
}

impl Secret {
    pub fn new(dir: &Path) -> Secret {
        std::fs::create_dir_all(dir).unwrap();
        Secret { dir: dir.into(), version: 0 }
    }

    /// Publishes a new version of the files at once, as a Secret update does.
    pub fn publish(&mut self, ca: &Ca, pod: &Issued, vip: Option<&Issued>) {
        self.version += 1;
        let v = format!("..v{}", self.version);
        tfs_nameserver::tls::devcerts::write_dir(&self.dir.join(&v), &ca.cert_pem, pod, vip).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&v, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for f in [tls::CA_CRT, tls::TLS_CRT, tls::TLS_KEY, tls::VIP_CRT, tls::VIP_KEY] {
            let link = self.dir.join(f);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("..data/{f}"), link).unwrap();
            }
        }
    }
}

/// The names of a test node's certificate: its node name, and how the tests dial it.
pub fn names(node: &str) -> Vec<String> {
    vec![node.to_string(), "localhost".into(), "127.0.0.1".into()]
}

pub fn issue(ca: &Ca, node: &str, days: i64) -> Issued {
    ca.issue(&names(node), days).unwrap()
}

/// A node serving TLS (files re-read every 200 ms) with a certificate of `ca` naming it; the
/// harness dials its client port with `client` as its certificate, if given.
pub fn tls_node(name: &str, root: &Path, ca: &Ca, client: Option<&Issued>, extra: &[&str]) -> (Node, Secret) {
    let mut secret = Secret::new(&root.join(format!("{name}-tls")));
    secret.publish(ca, &issue(ca, name, 30), None);
    let dir = secret.dir.to_str().unwrap().to_string();
    let args: Vec<&str> = extra.iter().copied().chain(["--tls-dir", &dir, "--tls-reload-every", "200ms"]).collect();
    let mut n = Node::new(name, root, &args);
    n.client_tls = Some(client_tls(ca, client));
    (n, secret)
}

pub fn client_tls(ca: &Ca, id: Option<&Issued>) -> tonic::transport::ClientTlsConfig {
    let mut c =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&ca.cert_pem));
    if let Some(id) = id {
        c = c.identity(tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    c
}

/// A rustls client trusting `ca_pem`, presenting `id` if given.
pub fn rustls_client(ca_pem: &str, id: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let id = id.map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes()));
    let mut c = tls::client_config(ca_pem.as_bytes(), id).unwrap();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// A TLS connection to `addr` (127.0.0.1:port) asking for `server_name`.
pub async fn tls_connect(
    addr: &str,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await
}

/// The serial (hex) and expiry (unix seconds) of a certificate.
pub fn serial_and_expiry(der: &[u8]) -> (String, i64) {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    (c.raw_serial_as_string(), c.validity().not_after.timestamp())
}

pub fn pem_serial_and_expiry(pem: &str) -> (String, i64) {
    serial_and_expiry(certs_from_pem(pem.as_bytes(), "crt").unwrap()[0].as_ref())
}

/// The serial and expiry of the certificate a new connection to `addr` is served.
pub async fn served(addr: &str, server_name: &str, cfg: Arc<rustls::ClientConfig>) -> (String, i64) {
    let s = tls_connect(addr, server_name, cfg).await.unwrap();
    let cert = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    serial_and_expiry(cert.as_ref())
}
