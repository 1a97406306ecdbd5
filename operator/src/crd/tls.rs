//! spec.tls: the certificates (our own CA, or cert-manager's through issuerRef) and client
//! authentication.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.issuerRef) || self.enabled").message("tls.issuerRef needs tls.enabled: true (the certificates are used only with TLS on)"))]
pub struct TlsSpec {
    /// Issue a CA and certificates (per pod `<pod>-tls`, clients `<name>-client`; with issuerRef,
    /// cert-manager issues them) and serve only TLS: mutual TLS between master and slaves, TLS on
    /// the client and dataserver port.
    #[serde(default)]
    pub enabled: bool,
    /// Client certificates on the client port: None, or Required (certificates of the CA, such as
    /// the one in Secret `<name>-client`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Take the certificates from cert-manager instead of a CA of the operator's: it applies a
    /// cert-manager Certificate for each Secret (`<pod>-tls`, `<name>-vip-tls`, `<name>-client`)
    /// and creates a pod once its Secrets are issued. The issuer must write `ca.crt` (a CA
    /// issuer does): every instance trusts exactly that CA. Needs enabled: true; chosen at
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer, as a Certificate's `spec.issuerRef` names it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the Issuer (in the TfsNameserver's namespace) or ClusterIssuer.
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.issuerRef.name must not be empty"))]
    pub name: String,
    /// Issuer (default: namespaced, in the TfsNameserver's namespace) or ClusterIssuer.
    #[serde(default)]
    pub kind: IssuerKind,
    /// API group of the issuer (default cert-manager.io; another for external issuers).
    #[serde(default = "default_issuer_group")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.issuerRef.group must not be empty"))]
    pub group: String,
}

/// Whether the issuer is namespaced (Issuer) or cluster-wide (ClusterIssuer).
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

pub(super) fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// Whether clients of the client port must present a certificate of the CA.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Required,
}
