use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

fn pod_leaf() -> Leaf {
    Leaf {
        common_name: "demo-0".into(),
        dns: vec!["demo-0".into(), "demo-0.demo-peers.ns.svc".into()],
        ips: vec![],
        server: true,
        client: true,
    }
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

/// Verifies `leaf`'s signature with `ca`'s public key.
fn signed_by(leaf: &Pem, ca: &Pem) -> bool {
    let (l, c) = (der(&leaf.cert), der(&ca.cert));
    let (_, l) = x509_parser::parse_x509_certificate(&l).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&c).unwrap();
    l.verify_signature(Some(c.public_key())).is_ok()
}

#[test]
fn a_leaf_is_signed_by_its_own_ca_only() {
    let (ca, other) = (new_ca("ns/demo", now()).unwrap(), new_ca("ns/other", now()).unwrap());
    let leaf = issue(&ca, &pod_leaf(), now()).unwrap();
    assert!(signed_by(&leaf, &ca));
    assert!(!signed_by(&leaf, &other), "a certificate of another TfsNameserver's CA must not verify");
    let d = der(&ca.cert);
    let (_, c) = x509_parser::parse_x509_certificate(&d).unwrap();
    assert!(c.is_ca(), "the CA certificate says it is one");
    assert_eq!(read(&ca.cert).unwrap().not_after, after(now(), CA_VALIDITY));
}

#[test]
fn a_leaf_carries_its_names_usages_and_lifetime() {
    let ca = new_ca("ns/demo", now()).unwrap();
    let mut want = pod_leaf();
    want.ips = vec!["10.96.0.7".parse().unwrap()];
    let leaf = issue(&ca, &want, now()).unwrap();
    let got = read(&leaf.cert).unwrap();
    assert_eq!((got.dns, got.ips), (want.dns.clone(), want.ips.clone()));
    assert_eq!(got.not_after, after(now(), LEAF_VALIDITY));
    let d = der(&leaf.cert);
    let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth, "a pod serves and dials: {eku:?}");
    let client = issue(&ca, &Leaf { server: false, dns: vec![], ..want }, now()).unwrap();
    let d = der(&client.cert);
    let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(!eku.server_auth && eku.client_auth, "a client certificate is not a server's: {eku:?}");
}

#[test]
fn a_leaf_is_reissued_when_missing_renamed_or_near_expiry() {
    let ca = new_ca("ns/demo", now()).unwrap();
    let leaf = pod_leaf();
    let fresh = issue(&ca, &leaf, now()).unwrap();
    assert_eq!(reissue_reason(Some(&fresh.cert), &leaf, now()), None);
    assert!(reissue_reason(None, &leaf, now()).is_some());
    assert!(reissue_reason(Some("garbage"), &leaf, now()).is_some());
    let renamed = Leaf { dns: vec!["demo-0".into()], ..leaf.clone() };
    assert!(reissue_reason(Some(&fresh.cert), &renamed, now()).unwrap().contains("names"));
    // 61 days later, 29 are left: under RENEW_BEFORE.
    let later = now() + time::Duration::days(61);
    assert!(reissue_reason(Some(&fresh.cert), &leaf, later).unwrap().contains("expires"));
    assert_eq!(reissue_reason(Some(&fresh.cert), &leaf, now() + time::Duration::days(59)), None);
}
