//! The certificates of a TfsNameserver, issued by the operator from a CA of its own (one per
//! TfsNameserver, like CloudNativePG's): pure functions over PEM text, so that what the
//! controller stores in Secrets is tested without a cluster.
//!
//! Identities. A pod's certificate names the pod (its DNS SANs: the pod name, which is the
//! nameserver's node name, and its names under the peers Service): the replication port accepts a
//! LOGIN only from a certificate naming the node that logs in, and a slave verifies its master by
//! name. The VIP certificate names the Service (and its ClusterIP). The client certificate
//! (`<name>-client`) names no host: it only proves "a client of this cluster".

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use thiserror::Error;
use time::OffsetDateTime;

/// The CA lives long: replacing it means reissuing everything at once.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaf certificates are short-lived and rotated well before they expire.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// A leaf is reissued once less than this is left (a third of its life).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("not a PEM certificate: {0}")]
    Parse(String),
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub common_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Presented by a server (serverAuth).
    pub server: bool,
    /// Presented by a client (clientAuth); a pod's certificate is both (it dials its master).
    pub client: bool,
}

fn after(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    now + time::Duration::seconds(d.as_secs() as i64)
}

/// A new CA for the TfsNameserver `cluster` (`<namespace>/<name>`): ECDSA P-256.
pub fn new_ca(cluster: &str, now: OffsetDateTime) -> Result<Pem, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name.remove(DnType::CommonName);
    p.distinguished_name.push(DnType::CommonName, format!("TFS nameserver CA {cluster}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    // A little back-dated: clocks of the pods may be a bit behind the operator's.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = after(now, CA_VALIDITY);
    let cert = p.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// Issues `leaf` from `ca`, valid for LEAF_VALIDITY from `now`.
pub fn issue(ca: &Pem, leaf: &Leaf, now: OffsetDateTime) -> Result<Pem, PkiError> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name.remove(DnType::CommonName);
    p.distinguished_name.push(DnType::CommonName, leaf.common_name.clone());
    p.subject_alt_names = leaf
        .dns
        .iter()
        .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
        .chain(leaf.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages =
        [(leaf.server, ExtendedKeyUsagePurpose::ServerAuth), (leaf.client, ExtendedKeyUsagePurpose::ClientAuth)]
            .into_iter()
            .filter_map(|(on, u)| on.then_some(u))
            .collect();
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = after(now, LEAF_VALIDITY);
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// What an issued certificate says: its names and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_after: OffsetDateTime,
}

pub fn read(cert_pem: &str) -> Result<Issued, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| PkiError::Parse(e.to_string()))?;
    let x = pem.parse_x509().map_err(|e| PkiError::Parse(e.to_string()))?;
    let not_after = OffsetDateTime::from_unix_timestamp(x.validity().not_after.timestamp())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Issued { dns, ips, not_after })
}

/// Why `cert_pem` must be issued again for `leaf` at `now`, if it must: absent or unreadable,
/// naming other hosts, or close to its expiry.
pub fn reissue_reason(cert_pem: Option<&str>, leaf: &Leaf, now: OffsetDateTime) -> Option<String> {
    let Some(pem) = cert_pem else { return Some("no certificate yet".into()) };
    let issued = match read(pem) {
        Ok(i) => i,
        Err(e) => return Some(format!("unreadable certificate: {e}")),
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (mut have_ips, mut want_ips) = (issued.ips.clone(), leaf.ips.clone());
    have_ips.sort();
    want_ips.sort();
    if sorted(issued.dns) != sorted(leaf.dns.clone()) || have_ips != want_ips {
        return Some("the names it must carry changed".into());
    }
    if issued.not_after < after(now, RENEW_BEFORE) {
        return Some(format!("it expires at {}", issued.not_after));
    }
    None
}

#[cfg(test)]
mod tests;
