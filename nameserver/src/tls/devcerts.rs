//! Certificates for development, benchmarks and tests: a CA and the certificates it issues
//! (`tfsctl dev-certs`, the process tests). A cluster gets its own from its issuer (e.g.
//! cert-manager); these only lay out the same files.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

fn params(common_name: &str, names: &[String], days: i64) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    // An hour back: the clocks of the machines that check it may be a little behind.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days);
    // A random positive serial: a rotated certificate is told apart by it.
    p.serial_number = Some(SerialNumber::from((fastrand::u64(..) >> 1) | 1));
    Ok(p)
}

impl Ca {
    pub fn new(name: &str) -> Result<Ca, rcgen::Error> {
        let mut p = params(name, &[], 3650)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert_pem = p.self_signed(&key)?.pem();
        Ok(Ca { issuer: Issuer::new(p, key), cert_pem })
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `names` (DNS names; IP addresses become IP SANs), valid `days`, usable
    /// by a server and as a client certificate (a nameserver is both on the replication port).
    pub fn issue(&self, names: &[String], days: i64) -> Result<Issued, rcgen::Error> {
        let mut p = params(names.first().map(String::as_str).unwrap_or("tfs"), names, days)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Writes `dir` as a TLS Secret is mounted: ca.crt, tls.crt/tls.key and, if given, vip.crt/vip.key.
pub fn write_dir(dir: &Path, ca_pem: &str, pod: &Issued, vip: Option<&Issued>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut files = vec![(super::CA_CRT, ca_pem), (super::TLS_CRT, &pod.cert_pem), (super::TLS_KEY, &pod.key_pem)];
    if let Some(v) = vip {
        files.extend([(super::VIP_CRT, v.cert_pem.as_str()), (super::VIP_KEY, v.key_pem.as_str())]);
    }
    files.into_iter().try_for_each(|(name, text)| write_file(dir, name, text))
}

/// Replaces `dir/name` by a rename, so a running nameserver never reads half of it; a `.key`
/// readable by its owner only, as a Secret volume's defaultMode 0600 would make it.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?
        .write_all(text.as_bytes())?;
    std::fs::rename(&tmp, dir.join(name))
}
