//! `spec.tls.issuerRef`: the certificates come from cert-manager instead of the operator's own
//! CA. The operator then keeps no CA and issues nothing: it server-side applies one cert-manager
//! `Certificate` (cert-manager.io/v1, handled as a `DynamicObject`, no cert-manager crate) per
//! Secret the pods and clients use, shaped like what certs.rs issues (the same names, IP SANs,
//! usages, key type, lifetime and renewal), and creates a pod only once its Secrets are issued.
//!
//! The Secrets: `<pod>-tls` (the pod's pair, and `ca.crt`), `<name>-vip-tls` (the VIP's pair: a
//! cert-manager Secret holds one pair, so the pods mount it beside their own as vip.crt/vip.key,
//! build.rs `tls_volume`) and `<name>-client`. Every instance trusts the CA in `ca.crt`, so the
//! issuer must write it (a CA issuer does): a Secret without it counts as not issued.
//! cert-manager renews them; the nameserver re-reads its files, so a renewal needs nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};

use crate::build;
use crate::crd::{IssuerKind, IssuerRef, TfsNameserver};
use crate::error::Error;
use crate::names::{self, *};
use crate::pki::{self, Leaf, Pem};

use super::certs;
use super::resources::ssa;

pub const GROUP: &str = "cert-manager.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "Certificate";

/// What the status says when the cluster does not serve the Certificate kind.
pub const NOT_SERVED: &str =
    "spec.tls.issuerRef needs cert-manager: the Certificate kind (cert-manager.io/v1) is not served by this cluster";

/// The Certificate kind, for `Api<DynamicObject>`.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), "certificates")
}

/// A Go duration (what cert-manager's duration fields take), in whole hours.
fn go_hours(d: std::time::Duration) -> String {
    format!("{}h", d.as_secs() / 3600)
}

/// The Certificates of `t` for `replicas` pods, by name (= the Secret each writes): each pod's,
/// the VIP's, the client's — the leaves certs.rs would issue.
pub fn wanted(t: &TfsNameserver, replicas: usize, cluster_ip: Option<IpAddr>) -> Vec<(String, Leaf)> {
    let name = t.name_any();
    (0..replicas)
        .map(|i| {
            let pod = names::pod(&name, i);
            (names::tls_secret(&pod), certs::pod_leaf(t, &pod))
        })
        .chain([
            (names::vip_tls_secret(&name), certs::vip_leaf(t, cluster_ip)),
            (names::client_secret(&name), certs::client_leaf(t)),
        ])
        .collect()
}

/// The Secrets pod `ordinal` mounts, which must be issued before it is created.
pub fn pod_needs(t: &TfsNameserver, ordinal: usize) -> [String; 2] {
    let name = t.name_any();
    [names::tls_secret(&names::pod(&name, ordinal)), names::vip_tls_secret(&name)]
}

/// Key usages, as cert-manager spells them: a signature key (ECDSA), plus server and/or client
/// authentication — both for a pod's certificate, which serves its slaves and dials its master.
pub fn usages(leaf: &Leaf) -> Vec<&'static str> {
    let mut u = vec!["digital signature"];
    if leaf.server {
        u.push("server auth");
    }
    if leaf.client {
        u.push("client auth");
    }
    u
}

/// The Certificate whose Secret `secret` holds `leaf`, issued by `issuer`, owned by `t`.
pub fn certificate(t: &TfsNameserver, issuer: &IssuerRef, secret: &str, leaf: &Leaf) -> DynamicObject {
    let ar = certificate_resource();
    let mut obj = DynamicObject::new(secret, &ar);
    obj.metadata = build::meta_of(t, secret.to_string());
    let mut secret_labels = names::labels(&t.name_any());
    secret_labels.insert("tfs.io/certificates".into(), "true".into());
    let mut spec = serde_json::json!({
        "secretName": secret,
        "secretTemplate": { "labels": secret_labels },
        "commonName": leaf.common_name,
        "usages": usages(leaf),
        "duration": go_hours(pki::LEAF_VALIDITY),
        "renewBefore": go_hours(pki::RENEW_BEFORE),
        // As certs.rs: ECDSA P-256, a new key at each issuance, PKCS#8 like rcgen writes.
        "privateKey": { "algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always" },
        "issuerRef": {
            "name": issuer.name,
            "kind": kind(issuer),
            "group": issuer.group,
        },
    });
    if !leaf.dns.is_empty() {
        spec["dnsNames"] = serde_json::json!(leaf.dns);
    }
    if !leaf.ips.is_empty() {
        spec["ipAddresses"] = serde_json::json!(leaf.ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>());
    }
    obj.data = serde_json::json!({ "spec": spec });
    obj
}

/// Why a Certificate is not issued yet, or None when it is: its `Ready` condition is True and
/// describes its current generation (a changed spec, the VIP's ClusterIP added, is not issued
/// until cert-manager says so again).
pub fn not_ready(c: &DynamicObject) -> Option<String> {
    let conditions = c.data.pointer("/status/conditions").and_then(|v| v.as_array());
    let Some(ready) = conditions.and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")) else {
        return Some("no Ready condition yet".into());
    };
    let said = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    if ready["status"] != "True" {
        let why = [said("reason"), said("message")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
        return Some(if why.is_empty() { "not Ready".into() } else { format!("not Ready: {}", why.join(": ")) });
    }
    match (ready["observedGeneration"].as_i64(), c.metadata.generation) {
        (Some(seen), Some(g)) if seen < g => Some(format!("Ready for generation {seen}, not yet for {g}")),
        _ => None,
    }
}

/// Where the certificates of one resource stand, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issuance {
    /// `Kind/name` of the issuer, for messages.
    pub issuer: String,
    /// Certificates issued, with a usable Secret.
    pub ready: BTreeSet<String>,
    /// Certificates not usable yet, and why.
    pub waiting: BTreeMap<String, String>,
    /// Nothing can be issued: cert-manager absent, no permission... (reason, message).
    pub problem: Option<(&'static str, String)>,
}

impl Issuance {
    pub fn complete(&self) -> bool {
        self.problem.is_none() && self.waiting.is_empty()
    }

    /// Whether every one of `secrets` is issued.
    pub fn has(&self, secrets: &[String]) -> bool {
        secrets.iter().all(|s| self.ready.contains(s))
    }

    /// The `CertificatesReady` condition: (ok, reason, message).
    pub fn condition(&self) -> (bool, &'static str, String) {
        if let Some((reason, message)) = &self.problem {
            return (false, reason, message.clone());
        }
        if self.waiting.is_empty() {
            let names = self.ready.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            return (true, "Issued", format!("cert-manager ({}) issued every certificate: {names}", self.issuer));
        }
        let waiting = self.waiting.iter().map(|(n, why)| format!("{n} ({why})")).collect::<Vec<_>>().join(", ");
        let message = format!(
            "waiting for cert-manager ({}) to issue {} of {} Certificates: {waiting}; a pod is created once its \
             Secrets are issued",
            self.issuer,
            self.waiting.len(),
            self.waiting.len() + self.ready.len()
        );
        (false, "WaitingForCertManager", message)
    }
}

fn text(s: &Secret, key: &str) -> Option<String> {
    String::from_utf8(s.data.as_ref()?.get(key)?.0.clone()).ok().filter(|v| !v.trim().is_empty())
}

fn kind(issuer: &IssuerRef) -> &'static str {
    match issuer.kind {
        IssuerKind::Issuer => "Issuer",
        IssuerKind::ClusterIssuer => "ClusterIssuer",
    }
}

/// What a Ready Certificate's Secret lacks, if anything.
pub fn secret_lacks(s: &Secret) -> Option<String> {
    let missing: Vec<&str> = ["tls.crt", "tls.key", "ca.crt"].into_iter().filter(|k| text(s, k).is_none()).collect();
    match missing.as_slice() {
        [] => None,
        ["ca.crt"] => Some(
            "its Secret has no ca.crt: the issuer must be a CA issuer (or one that writes ca.crt), since every \
             instance trusts the CA in ca.crt"
                .into(),
        ),
        m => Some(format!("its Secret lacks {}", m.join(", "))),
    }
}

/// The issuer, as messages name it.
pub fn issuer_name(issuer: &IssuerRef) -> String {
    let kind = kind(issuer);
    if issuer.group == GROUP {
        format!("{kind}/{}", issuer.name)
    } else {
        format!("{kind}.{}/{}", issuer.group, issuer.name)
    }
}

/// What a failed request to the Certificate API means.
fn api_problem(e: &kube::Error, what: &str) -> (&'static str, String) {
    match e {
        kube::Error::Api(s) if s.code == 404 => ("CertManagerNotServed", NOT_SERVED.into()),
        kube::Error::Api(s) if s.code == 403 => (
            "CertificatesForbidden",
            format!(
                "the operator may not {what} certificates.cert-manager.io in this namespace (its RBAC: the chart \
                 grants get, list, watch, create, patch): {}",
                s.message
            ),
        ),
        e => ("CertificatesFailed", format!("cannot {what} cert-manager Certificates: {e}")),
    }
}

/// Applies the Certificates (when `apply`), then reads where they stand: their Ready condition,
/// and for each Ready one its Secret (which must hold tls.crt, tls.key and ca.crt). Returns the
/// issuance and, once the client certificate is issued, what the operator probes its pods with.
/// Never fails: what goes wrong is in the issuance (the status says it, the next reconcile tries
/// again).
pub async fn ensure(
    t: &TfsNameserver,
    client: &Client,
    issuer: &IssuerRef,
    replicas: usize,
    cluster_ip: Option<IpAddr>,
    apply: bool,
) -> (Issuance, Option<certs::Material>) {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &certificate_resource());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let wanted = wanted(t, replicas, cluster_ip);
    let mut out = Issuance { issuer: issuer_name(issuer), ..Default::default() };
    if apply {
        for (secret, leaf) in &wanted {
            if let Err(e) = ssa(&certificates, &certificate(t, issuer, secret, leaf)).await {
                let e = match e {
                    Error::Kube(e) => e,
                    other => {
                        out.problem =
                            Some(("CertificatesFailed", format!("cannot apply Certificate {secret}: {other}")));
                        return (out, None);
                    }
                };
                out.problem = Some(api_problem(&e, "apply"));
                return (out, None);
            }
        }
    }
    let found = match certificates.list(&ListParams::default().labels(&selector_string(&name))).await {
        Ok(l) => l.items,
        Err(e) => {
            out.problem = Some(api_problem(&e, "list"));
            return (out, None);
        }
    };
    let mut client_pair = None;
    for (secret, _) in &wanted {
        let why = match found.iter().find(|c| c.metadata.name.as_deref() == Some(secret)).map(not_ready) {
            None => Some("not created yet".to_string()),
            Some(Some(why)) => Some(why),
            Some(None) => match secrets.get_opt(secret).await {
                Ok(None) => Some("Ready, but its Secret does not exist".into()),
                Ok(Some(s)) => {
                    let lacks = secret_lacks(&s);
                    if lacks.is_none() && *secret == names::client_secret(&name) {
                        client_pair = Some(certs::Material {
                            ca: text(&s, "ca.crt").unwrap_or_default(),
                            client: Pem {
                                cert: text(&s, "tls.crt").unwrap_or_default(),
                                key: text(&s, "tls.key").unwrap_or_default(),
                            },
                        });
                    }
                    lacks
                }
                Err(e) => Some(format!("cannot read its Secret: {e}")),
            },
        };
        if let Some(why) = why {
            out.waiting.insert(secret.clone(), why);
        } else {
            out.ready.insert(secret.clone());
        }
    }
    (out, client_pair)
}

#[cfg(test)]
mod tests;
