//! TLS for the client and replication ports, from a directory laid out as Kubernetes mounts a
//! Secret — `ca.crt` (the cluster's CA), `tls.crt`/`tls.key` (this pod's certificate), optionally
//! `vip.crt`/`vip.key` (the VIP Service's) — and re-read while the process runs.
//!
//! Off unless `--tls-dir` is given. When on:
//! - the replication port is mutual TLS: each end presents its `tls.crt` and accepts only a
//!   certificate of the CA; the master then holds a slave to the node names its certificate
//!   carries (replication/master.rs), the slave checks the master's certificate against the host
//!   of the master address;
//! - the client port serves `vip.crt` (or `tls.crt` when there is no VIP pair, or when the client
//!   asks by one of the pod's own names) and, with `--client-auth required`, accepts only clients
//!   presenting a certificate of the CA.
//!
//! Rotation: the files are read again every `reload_every`; when they changed and make a valid
//! set, new connections use them. Established connections keep the certificates they were
//! opened with (a Secret update must not drop the master's slaves).

pub mod conn;
pub mod devcerts;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

/// The files of a TLS directory (the keys of a `kubernetes.io/tls` Secret, plus the CA and the
/// VIP's pair).
pub const CA_CRT: &str = "ca.crt";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const VIP_CRT: &str = "vip.crt";
pub const VIP_KEY: &str = "vip.key";

/// Whether client-port clients must present a certificate of the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Required,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub dir: PathBuf,
    pub client_auth: ClientAuth,
    /// How often the files are read again (rotation).
    pub reload_every: Duration,
}

/// What one reading of the files makes: a configuration per role of this process.
#[derive(Debug)]
pub struct Configs {
    /// Master side of the replication port: presents tls.crt, requires a client certificate.
    pub repl_server: Arc<ServerConfig>,
    /// Slave side: verifies the master against the CA, presents tls.crt.
    pub repl_client: Arc<ClientConfig>,
    /// Client and dataserver port.
    pub client_server: Arc<ServerConfig>,
}

/// The current configurations, replaced when the files change.
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<Configs>>,
    /// The bytes of the files the current configurations were built from.
    loaded: Mutex<Files>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, for libraries that take the default (the
/// archive's S3 client over https). Idempotent; a provider installed first stays.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The contents of the directory's files (`vip` absent when either half is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    ca: Vec<u8>,
    crt: Vec<u8>,
    key: Vec<u8>,
    vip: Option<(Vec<u8>, Vec<u8>)>,
}

impl Files {
    fn read(dir: &Path) -> anyhow::Result<Files> {
        let read =
            |n: &str| std::fs::read(dir.join(n)).with_context(|| format!("cannot read {}", dir.join(n).display()));
        let optional = |n: &str| match std::fs::read(dir.join(n)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.join(n).display())),
        };
        let vip = match (optional(VIP_CRT)?, optional(VIP_KEY)?) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("{} holds only one of {VIP_CRT} and {VIP_KEY}", dir.display()),
        };
        Ok(Files { ca: read(CA_CRT)?, crt: read(TLS_CRT)?, key: read(TLS_KEY)?, vip })
    }
}

/// Certificates of a PEM file, in order (leaf first for a chain).
pub fn certs_from_pem(pem: &[u8], what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: bad PEM"))?;
    if certs.is_empty() {
        bail!("{what}: no certificate");
    }
    Ok(certs)
}

pub fn key_from_pem(pem: &[u8], what: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).with_context(|| format!("{what}: no private key"))
}

pub fn roots_from_pem(pem: &[u8], what: &str) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(pem, what)? {
        roots.add(c).with_context(|| format!("{what}: not a usable CA certificate"))?;
    }
    Ok(Arc::new(roots))
}

fn certified_key(crt: &[u8], key: &[u8], what: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    let ck = CertifiedKey::from_der(certs_from_pem(crt, what)?, key_from_pem(key, what)?, &provider())
        .with_context(|| format!("{what}: the key does not belong to the certificate"))?;
    Ok(Arc::new(ck))
}

/// A client trusting the CA of `ca_pem`, presenting `id` (certificate chain, key; PEM) if given.
pub fn client_config(ca_pem: &[u8], id: Option<(&[u8], &[u8])>) -> anyhow::Result<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots_from_pem(ca_pem, CA_CRT)?);
    Ok(match id {
        Some((crt, key)) => b
            .with_client_auth_cert(certs_from_pem(crt, TLS_CRT)?, key_from_pem(key, TLS_KEY)?)
            .context("not usable as a client certificate")?,
        None => b.with_no_client_auth(),
    })
}

/// The DNS names (subjectAltName) of a certificate: the identities it proves.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Vec::new() };
    let Ok(Some(san)) = c.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The client port's certificate: the VIP's, unless the client asked (SNI) for one of the pod's
/// own names (e.g. a probe of this very pod through its headless DNS name).
#[derive(Debug)]
struct VipOrPod {
    vip: Option<Arc<CertifiedKey>>,
    pod: Arc<CertifiedKey>,
    pod_names: Vec<String>,
}

impl ResolvesServerCert for VipOrPod {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asks_pod = hello.server_name().is_some_and(|n| self.pod_names.iter().any(|p| p.eq_ignore_ascii_case(n)));
        match &self.vip {
            Some(vip) if !asks_pod => Some(vip.clone()),
            _ => Some(self.pod.clone()),
        }
    }
}

impl Configs {
    fn build(f: &Files, client_auth: ClientAuth) -> anyhow::Result<Configs> {
        let p = provider();
        let roots = roots_from_pem(&f.ca, CA_CRT)?;
        let pod = certified_key(&f.crt, &f.key, TLS_CRT)?;
        let vip = f.vip.as_ref().map(|(c, k)| certified_key(c, k, VIP_CRT)).transpose()?;
        let verifier = || {
            WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
                .build()
                .context("cannot build the client certificate verifier")
        };
        let server = || ServerConfig::builder_with_provider(p.clone()).with_safe_default_protocol_versions();
        let repl_server = server()?.with_client_cert_verifier(verifier()?).with_cert_resolver(Arc::new(VipOrPod {
            vip: None,
            pod: pod.clone(),
            pod_names: Vec::new(),
        }));
        let client_server = match client_auth {
            ClientAuth::None => server()?.with_no_client_auth(),
            ClientAuth::Required => server()?.with_client_cert_verifier(verifier()?),
        };
        let pod_names = dns_names(&pod.cert[0]);
        let mut client_server =
            client_server.with_cert_resolver(Arc::new(VipOrPod { vip, pod: pod.clone(), pod_names }));
        // tonic speaks HTTP/2 only; its TLS clients insist on negotiating it.
        client_server.alpn_protocols = vec![b"h2".to_vec()];
        let repl_client = client_config(&f.ca, Some((&f.crt, &f.key)))?;
        Ok(Configs {
            repl_server: Arc::new(repl_server),
            repl_client: Arc::new(repl_client),
            client_server: Arc::new(client_server),
        })
    }
}

impl Tls {
    /// Reads the directory; an error here stops the start (a pod must not serve without TLS it
    /// was told to use).
    pub fn load(settings: TlsSettings) -> anyhow::Result<Arc<Tls>> {
        let files = Files::read(&settings.dir)?;
        let configs = Configs::build(&files, settings.client_auth)
            .with_context(|| format!("TLS files in {}", settings.dir.display()))?;
        info!(dir = %settings.dir.display(), vip = files.vip.is_some(), client_auth = ?settings.client_auth, "TLS on");
        Ok(Arc::new(Tls { settings, current: RwLock::new(Arc::new(configs)), loaded: Mutex::new(files) }))
    }

    pub fn current(&self) -> Arc<Configs> {
        self.current.read().clone()
    }

    /// The DNS names of the loaded tls.crt: the node names this process can log in as.
    pub fn pod_names(&self) -> Vec<String> {
        certs_from_pem(&self.loaded.lock().crt, TLS_CRT).map(|c| dns_names(&c[0])).unwrap_or_default()
    }

    /// Reads the files again; true when they changed and now serve. A set that does not make a
    /// valid configuration (a half-written update) leaves the current one in place.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let files = Files::read(&self.settings.dir)?;
        let mut loaded = self.loaded.lock();
        if *loaded == files {
            return Ok(false);
        }
        let configs = Configs::build(&files, self.settings.client_auth)?;
        *self.current.write() = Arc::new(configs);
        *loaded = files;
        Ok(true)
    }

    /// Re-reads the files every `reload_every`, for the life of the process.
    pub fn watch(self: &Arc<Self>) {
        let tls = Arc::downgrade(self);
        let every = self.settings.reload_every;
        let spawned = std::thread::Builder::new().name("tls-reload".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(tls) = tls.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => info!(dir = %tls.settings.dir.display(), "TLS files changed: new connections use them"),
                    Ok(false) => {}
                    Err(e) => warn!(error = format!("{e:#}"), "TLS files unusable; still serving the previous ones"),
                }
            }
        });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the TLS reload thread; certificates will not rotate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::devcerts::{Ca, write_dir, write_file};
    use super::*;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings { dir: dir.into(), client_auth: ClientAuth::None, reload_every: Duration::from_secs(3600) }
    }

    #[test]
    fn a_change_loads_and_a_set_that_does_not_load_leaves_the_previous_one() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::new("ca").unwrap();
        let first = ca.issue(&["n1".into()], 1).unwrap();
        write_dir(d.path(), &ca.cert_pem, &first, None).unwrap();
        let tls = Tls::load(settings(d.path())).unwrap();
        assert_eq!(tls.pod_names(), ["n1"]);
        assert!(!tls.reload().unwrap(), "nothing changed");
        let before = tls.current();
        // Half an update: the new certificate with the old key.
        let second = ca.issue(&["n1".into(), "n1.headless".into()], 1).unwrap();
        write_file(d.path(), TLS_CRT, &second.cert_pem).unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current()), "the previous set still serves");
        write_file(d.path(), TLS_KEY, &second.key_pem).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.current()));
        assert_eq!(tls.pod_names(), ["n1", "n1.headless"]);
    }

    #[test]
    fn a_vip_pair_must_be_whole() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::new("ca").unwrap();
        write_dir(d.path(), &ca.cert_pem, &ca.issue(&["n1".into()], 1).unwrap(), None).unwrap();
        write_file(d.path(), VIP_CRT, &ca.issue(&["vip".into()], 1).unwrap().cert_pem).unwrap();
        assert!(format!("{:#}", Tls::load(settings(d.path())).unwrap_err()).contains("only one of"));
    }

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        use rustls::pki_types::ServerName;
        let name = |a: &str| conn::server_name(a).unwrap().to_str().into_owned();
        assert_eq!(name("tfs-0.tfs-headless.ns.svc:8101"), "tfs-0.tfs-headless.ns.svc");
        assert_eq!(name("10.1.2.3:8101"), "10.1.2.3");
        assert!(matches!(conn::server_name("[::1]:8101").unwrap(), ServerName::IpAddress(_)));
    }
}
