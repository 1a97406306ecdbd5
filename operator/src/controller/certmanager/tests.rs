use std::net::IpAddr;

use k8s_openapi::ByteString;
use serde_json::{Value, json};

use super::*;
use crate::crd::TfsNameserverStatus;
use crate::fixtures::mock_client;

/// demo with TLS from cert-manager's ClusterIssuer `ca`.
fn with_issuer() -> TfsNameserver {
    let mut t = crate::build::tests::demo();
    t.spec.tls = serde_json::from_value(json!({
        "enabled": true,
        "clientAuth": "Required",
        "issuerRef": { "name": "ca", "kind": "ClusterIssuer" },
    }))
    .unwrap();
    t
}

fn issuer(t: &TfsNameserver) -> IssuerRef {
    t.spec.tls.issuer_ref.clone().unwrap()
}

fn as_json(c: &DynamicObject) -> Value {
    serde_json::to_value(c).unwrap()
}

fn vip_ip() -> Option<IpAddr> {
    Some("10.96.0.10".parse().unwrap())
}

#[test]
fn issuer_ref_defaults_to_a_namespaced_cert_manager_issuer() {
    let r: IssuerRef = serde_json::from_value(json!({ "name": "ca" })).unwrap();
    assert_eq!(r, IssuerRef { name: "ca".into(), kind: IssuerKind::Issuer, group: "cert-manager.io".into() });
    assert_eq!(issuer_name(&r), "Issuer/ca");
    let ext = IssuerRef { group: "awspca.cert-manager.io".into(), kind: IssuerKind::ClusterIssuer, ..r };
    assert_eq!(issuer_name(&ext), "ClusterIssuer.awspca.cert-manager.io/ca");
}

/// One Certificate per Secret the pods mount or clients use, named as the Secret.
#[test]
fn the_certificates_are_the_secrets_pods_mount() {
    let t = with_issuer();
    let names: Vec<String> = wanted(&t, 3, None).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["demo-0-tls", "demo-1-tls", "demo-2-tls", "demo-vip-tls", "demo-client"]);
    assert_eq!(pod_needs(&t, 1), ["demo-1-tls".to_string(), "demo-vip-tls".to_string()]);
    // What the pod mounts: its own Secret, and the VIP's under vip.crt/vip.key.
    let pod = crate::build::pod(&t, 1);
    let volumes = pod.spec.unwrap().volumes.unwrap();
    let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
    assert!(tls.secret.is_none());
    let sources = tls.projected.as_ref().unwrap().sources.clone().unwrap();
    let mounted: Vec<(String, Vec<(String, String)>)> = sources
        .iter()
        .map(|s| {
            let s = s.secret.as_ref().unwrap();
            (s.name.clone(), s.items.iter().flatten().map(|i| (i.key.clone(), i.path.clone())).collect())
        })
        .collect();
    let pair = |k: &str, p: &str| (k.to_string(), p.to_string());
    assert_eq!(
        mounted,
        [
            (
                "demo-1-tls".into(),
                vec![pair("ca.crt", "ca.crt"), pair("tls.crt", "tls.crt"), pair("tls.key", "tls.key")]
            ),
            ("demo-vip-tls".into(), vec![pair("tls.crt", "vip.crt"), pair("tls.key", "vip.key")]),
        ]
    );
    assert_eq!(tls.projected.as_ref().unwrap().default_mode, Some(0o440));
    assert!(crate::build::pod_has_tls(&crate::build::pod(&t, 1)));
}

/// Without issuerRef the pod mounts its one Secret, exactly as before.
#[test]
fn without_an_issuer_the_pod_mounts_its_secret_as_before() {
    let mut t = crate::build::tests::demo();
    t.spec.tls.enabled = true;
    let pod = crate::build::pod(&t, 0);
    let volumes = pod.spec.unwrap().volumes.unwrap();
    let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
    assert_eq!(
        serde_json::to_value(tls).unwrap(),
        json!({ "name": "tls", "secret": { "secretName": "demo-0-tls", "defaultMode": 0o440 } })
    );
}

#[test]
fn a_pods_certificate_names_the_pod_and_serves_both_ways() {
    let t = with_issuer();
    let (name, leaf) = wanted(&t, 2, vip_ip()).remove(0);
    let c = as_json(&certificate(&t, &issuer(&t), &name, &leaf));
    assert_eq!(c["apiVersion"], "cert-manager.io/v1");
    assert_eq!(c["kind"], "Certificate");
    assert_eq!(c["metadata"]["name"], "demo-0-tls");
    assert_eq!(c["metadata"]["namespace"], "ns");
    let owner = &c["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"], &owner["controller"]),
        (&json!("TfsNameserver"), &json!("demo"), &json!("uid-1"), &json!(true))
    );
    assert_eq!(c["metadata"]["labels"][LABEL_INSTANCE], "demo");
    let spec = &c["spec"];
    assert_eq!(spec["secretName"], "demo-0-tls");
    assert_eq!(spec["commonName"], "demo-0");
    assert_eq!(
        spec["dnsNames"],
        json!(["demo-0", "demo-0.demo-peers", "demo-0.demo-peers.ns.svc", "demo-0.demo-peers.ns.svc.cluster.local"])
    );
    assert!(spec.get("ipAddresses").is_none(), "a pod's certificate carries no IP, as the operator's");
    assert_eq!(spec["usages"], json!(["digital signature", "server auth", "client auth"]));
    assert_eq!(spec["issuerRef"], json!({ "name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io" }));
    // The operator's own lifetimes: 90 days, renewed with a third (30 days) left.
    assert_eq!((&spec["duration"], &spec["renewBefore"]), (&json!("2160h"), &json!("720h")));
    assert_eq!(
        spec["privateKey"],
        json!({ "algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always" })
    );
    assert_eq!(spec["secretTemplate"]["labels"]["tfs.io/certificates"], "true");
    assert_eq!(spec["secretTemplate"]["labels"][LABEL_INSTANCE], "demo");
}

#[test]
fn the_vips_certificate_names_the_service_and_its_cluster_ip_and_the_clients_no_host() {
    let t = with_issuer();
    let all = wanted(&t, 2, vip_ip());
    let (vname, vleaf) = &all[2];
    let vip = as_json(&certificate(&t, &issuer(&t), vname, vleaf));
    assert_eq!(vip["spec"]["secretName"], "demo-vip-tls");
    assert_eq!(vip["spec"]["dnsNames"], json!(["demo", "demo.ns", "demo.ns.svc", "demo.ns.svc.cluster.local"]));
    assert_eq!(vip["spec"]["ipAddresses"], json!(["10.96.0.10"]));
    assert_eq!(vip["spec"]["usages"], json!(["digital signature", "server auth"]));
    let (cname, cleaf) = &all[3];
    let client = as_json(&certificate(&t, &issuer(&t), cname, cleaf));
    assert_eq!(client["spec"]["secretName"], "demo-client");
    assert_eq!(client["spec"]["commonName"], "demo-client");
    assert!(client["spec"].get("dnsNames").is_none() && client["spec"].get("ipAddresses").is_none());
    assert_eq!(client["spec"]["usages"], json!(["digital signature", "client auth"]));
    // Before the VIP Service has a ClusterIP, no IP SAN (added, and issued again, once it has).
    let early = wanted(&t, 2, None);
    assert!(as_json(&certificate(&t, &issuer(&t), &early[2].0, &early[2].1))["spec"].get("ipAddresses").is_none());
}

fn cert_with(status: Value, generation: i64) -> DynamicObject {
    let mut c = DynamicObject::new("demo-0-tls", &certificate_resource());
    c.metadata.generation = Some(generation);
    c.data = json!({ "spec": {}, "status": status });
    c
}

#[test]
fn a_certificate_is_ready_when_cert_manager_says_so_for_its_generation() {
    assert_eq!(not_ready(&cert_with(json!({}), 1)).as_deref(), Some("no Ready condition yet"));
    let pending = json!({ "conditions": [{ "type": "Ready", "status": "False", "reason": "DoesNotExist",
        "message": "Issuing certificate as Secret does not exist" }] });
    assert_eq!(
        not_ready(&cert_with(pending, 1)).as_deref(),
        Some("not Ready: DoesNotExist: Issuing certificate as Secret does not exist")
    );
    let ready = |g: i64| {
        json!({ "conditions": [{ "type": "Issuing", "status": "True" },
        { "type": "Ready", "status": "True", "observedGeneration": g }] })
    };
    assert_eq!(not_ready(&cert_with(ready(2), 2)), None);
    assert_eq!(not_ready(&cert_with(ready(1), 2)).as_deref(), Some("Ready for generation 1, not yet for 2"));
}

fn secret(data: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

#[test]
fn a_secret_without_ca_crt_is_not_usable_and_says_what_the_issuer_must_be() {
    assert_eq!(secret_lacks(&secret(&[("tls.crt", "c"), ("tls.key", "k"), ("ca.crt", "ca")])), None);
    let why = secret_lacks(&secret(&[("tls.crt", "c"), ("tls.key", "k"), ("ca.crt", "")])).unwrap();
    assert!(why.contains("no ca.crt: the issuer must be a CA issuer"), "{why}");
    assert_eq!(secret_lacks(&secret(&[("ca.crt", "ca")])).as_deref(), Some("its Secret lacks tls.crt, tls.key"));
}

#[test]
fn the_condition_names_what_is_awaited() {
    let mut x = Issuance { issuer: "ClusterIssuer/ca".into(), ..Default::default() };
    x.ready.insert("demo-0-tls".into());
    x.waiting.insert("demo-1-tls".into(), "no Ready condition yet".into());
    x.waiting.insert("demo-vip-tls".into(), "not Ready: Pending".into());
    let (ok, reason, message) = x.condition();
    assert!(!ok);
    assert_eq!(reason, "WaitingForCertManager");
    assert_eq!(
        message,
        "waiting for cert-manager (ClusterIssuer/ca) to issue 2 of 3 Certificates: demo-1-tls (no Ready condition \
         yet), demo-vip-tls (not Ready: Pending); a pod is created once its Secrets are issued"
    );
    assert!(x.has(&["demo-0-tls".into()]) && !x.has(&["demo-0-tls".into(), "demo-vip-tls".into()]));
    x.waiting.clear();
    let (ok, reason, _) = x.condition();
    assert!(ok && reason == "Issued" && x.complete());
    let absent = Issuance { problem: Some(("CertManagerNotServed", NOT_SERVED.into())), ..Default::default() };
    assert_eq!(absent.condition(), (false, "CertManagerNotServed", NOT_SERVED.to_string()));
    // Through the controller: the condition on the status.
    let t = with_issuer();
    let c = super::super::status::certificates_condition(&t, &TfsNameserverStatus::default(), &absent);
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("CertificatesReady", "False", "CertManagerNotServed")
    );
    assert_eq!(
        c.message,
        "spec.tls.issuerRef needs cert-manager: the Certificate kind (cert-manager.io/v1) is not served by this cluster"
    );
}

const CERTS: &str = "/apis/cert-manager.io/v1/namespaces/ns/certificates";

fn api_status(code: u16, message: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": if code == 404 { "NotFound" } else { "Forbidden" }, "code": code })
}

/// The apply path: each Certificate server-side applied with the operator's field manager, then
/// read; the Secrets of the Ready ones read; the client's pair becomes what the operator probes with.
#[tokio::test]
async fn certificates_are_applied_then_their_secrets_read() {
    let (client, mut api) = mock_client();
    let t = with_issuer();
    let verifier = tokio::spawn(async move {
        let mut applied = Vec::new();
        for name in ["demo-0-tls", "demo-1-tls", "demo-vip-tls", "demo-client"] {
            let body = api.expect("PATCH", &format!("{CERTS}/{name}"), |b| (200, b.clone())).await;
            assert_eq!((&body["kind"], &body["spec"]["secretName"]), (&json!("Certificate"), &json!(name)));
            applied.push(body);
        }
        let ready = json!({ "conditions": [{ "type": "Ready", "status": "True", "observedGeneration": 1 }] });
        let items: Vec<Value> = applied
            .iter()
            .filter(|c| c["metadata"]["name"] != "demo-1-tls")
            .map(|c| {
                let mut c = c.clone();
                c["metadata"]["generation"] = json!(1);
                c["status"] = ready.clone();
                c
            })
            .collect();
        let list =
            json!({ "apiVersion": "cert-manager.io/v1", "kind": "CertificateList", "metadata": {}, "items": items });
        api.expect("GET", CERTS, |_| (200, list)).await;
        for (name, ca) in [("demo-0-tls", true), ("demo-vip-tls", false), ("demo-client", true)] {
            let mut s = secret(&[("tls.crt", "CERT"), ("tls.key", "KEY"), ("ca.crt", if ca { "CA" } else { "" })]);
            s.metadata.name = Some(name.into());
            let s = serde_json::to_value(s).unwrap();
            api.expect("GET", &format!("/api/v1/namespaces/ns/secrets/{name}"), |_| (200, s)).await;
        }
        applied
    });
    let (x, material) = ensure(&t, &client, &issuer(&t), 2, None, true).await;
    let applied = verifier.await.unwrap();
    assert_eq!(applied[0]["spec"]["issuerRef"]["name"], "ca");
    assert_eq!(x.ready, BTreeSet::from(["demo-0-tls".to_string(), "demo-client".to_string()]));
    assert_eq!(x.waiting["demo-1-tls"], "not created yet");
    assert!(x.waiting["demo-vip-tls"].contains("no ca.crt"), "{:?}", x.waiting);
    assert!(x.has(&["demo-0-tls".into()]) && !x.has(&pod_needs(&t, 0)), "pod 0 also needs the VIP's Secret");
    let m = material.expect("the client pair is issued");
    assert_eq!((m.ca.as_str(), m.client.cert.as_str(), m.client.key.as_str()), ("CA", "CERT", "KEY"));
}

/// An apply is server-side, forced, with the operator's one field manager.
#[tokio::test]
async fn an_apply_is_a_forced_server_side_apply_of_the_field_manager() {
    let (client, mut api) = mock_client();
    let t = with_issuer();
    let verifier = tokio::spawn(async move {
        let (req, send) = api.0.next_request().await.unwrap();
        assert_eq!(req.method(), "PATCH");
        assert_eq!(req.uri().path(), format!("{CERTS}/demo-0-tls"));
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("fieldManager=tfs-operator") && query.contains("force=true"), "{query}");
        assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml");
        let body = http::Response::builder().status(403).body(kube::client::Body::from(
            serde_json::to_vec(&api_status(403, "certificates.cert-manager.io is forbidden")).unwrap(),
        ));
        send.send_response(body.unwrap());
    });
    let (x, material) = ensure(&t, &client, &issuer(&t), 2, None, true).await;
    verifier.await.unwrap();
    assert!(material.is_none());
    let (reason, message) = x.problem.unwrap();
    assert_eq!(reason, "CertificatesForbidden");
    assert!(message.contains("may not apply certificates.cert-manager.io"), "{message}");
}

/// No cert-manager: the first apply finds no such kind; nothing else is tried, and the status
/// will say what is missing.
#[tokio::test]
async fn without_cert_manager_the_issuance_says_so() {
    let (client, mut api) = mock_client();
    let t = with_issuer();
    let verifier = tokio::spawn(async move {
        api.expect("PATCH", &format!("{CERTS}/demo-0-tls"), |_| {
            (404, api_status(404, "the server could not find the requested resource"))
        })
        .await;
        let next = tokio::time::timeout(std::time::Duration::from_millis(200), api.0.next_request()).await;
        assert!(next.is_err(), "a request after the kind was found missing");
    });
    let (x, material) = ensure(&t, &client, &issuer(&t), 2, None, true).await;
    verifier.await.unwrap();
    assert!(material.is_none() && !x.complete());
    assert_eq!(x.problem, Some(("CertManagerNotServed", NOT_SERVED.to_string())));
}
