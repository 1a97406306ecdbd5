//! The Secrets that hold a TfsNameserver's certificates (made by pki.rs): the CA once, then each
//! pod's pair (its own, naming the pod; the VIP's) and a client pair, each issued again when pki
//! says so (missing, renamed, a third of its life left). Pods mount `<pod>-tls`; the nameserver
//! re-reads the files, so a reissued certificate is served without a restart.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use time::OffsetDateTime;
use tracing::info;

use crate::crd::TfsNameserver;
use crate::error::{Error, Result};
use crate::pki::{self, Leaf, Pem};
use crate::{build, names};

use super::resources::{create_missing, ssa};

/// What the operator itself needs to talk to its pods: the CA, and a client certificate.
pub struct Material {
    pub ca: String,
    pub client: Pem,
}

fn text(s: &Secret, key: &str) -> Option<String> {
    String::from_utf8(s.data.as_ref()?.get(key)?.0.clone()).ok()
}

fn secret(t: &TfsNameserver, name: String, type_: &str, data: &[(&str, &str)]) -> Secret {
    let mut m = build::meta_of(t, name);
    m.labels.get_or_insert_default().insert("tfs.io/certificates".into(), "true".into());
    Secret {
        metadata: m,
        type_: Some(type_.into()),
        data: Some(
            data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

/// The names a pod's certificate carries: its node name and its names under the peers Service.
pub fn pod_leaf(t: &TfsNameserver, pod: &str) -> Leaf {
    let (name, ns) = (t.name_any(), t.namespace().unwrap_or_default());
    let peers = names::peers(&name);
    Leaf {
        common_name: pod.into(),
        dns: vec![
            pod.into(),
            format!("{pod}.{peers}"),
            format!("{pod}.{peers}.{ns}.svc"),
            format!("{pod}.{peers}.{ns}.svc.cluster.local"),
        ],
        ips: vec![],
        server: true,
        client: true,
    }
}

/// The VIP's certificate: the Service's names and its ClusterIP.
pub fn vip_leaf(t: &TfsNameserver, cluster_ip: Option<IpAddr>) -> Leaf {
    let (name, ns) = (names::vip(&t.name_any()), t.namespace().unwrap_or_default());
    Leaf {
        common_name: name.clone(),
        dns: vec![
            name.clone(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
        ],
        ips: cluster_ip.into_iter().collect(),
        server: true,
        client: false,
    }
}

pub fn client_leaf(t: &TfsNameserver) -> Leaf {
    Leaf { common_name: names::client_secret(&t.name_any()), dns: vec![], ips: vec![], server: false, client: true }
}

/// Issues what is missing or due, for `replicas` pods.
pub async fn ensure(
    t: &TfsNameserver,
    secrets: &Api<Secret>,
    replicas: usize,
    cluster_ip: Option<IpAddr>,
) -> Result<Material> {
    let name = t.name_any();
    let now = OffsetDateTime::now_utc();
    let ca_name = names::ca_secret(&name);
    let s = match secrets.get_opt(&ca_name).await? {
        Some(s) => s,
        None => {
            let ca = pki::new_ca(&format!("{}/{name}", t.namespace().unwrap_or_default()), now)?;
            let data = [("ca.crt", ca.cert.as_str()), ("ca.key", &ca.key)];
            create_missing(secrets, &secret(t, ca_name.clone(), "Opaque", &data)).await?;
            info!(secret = %ca_name, "CA created");
            // Read back: if another operator process created it first, its CA is the one.
            secrets.get(&ca_name).await?
        }
    };
    let ca = Pem {
        cert: text(&s, "ca.crt").ok_or(Error::MissingField("ca.crt in the CA Secret"))?,
        key: text(&s, "ca.key").ok_or(Error::MissingField("ca.key in the CA Secret"))?,
    };
    let vip = vip_leaf(t, cluster_ip);
    for i in 0..replicas {
        let pod = names::pod(&name, i);
        let sname = names::tls_secret(&pod);
        let have = secrets.get_opt(&sname).await?;
        let leaf = pod_leaf(t, &pod);
        let due = pki::reissue_reason(have.as_ref().and_then(|s| text(s, "tls.crt")).as_deref(), &leaf, now)
            .or_else(|| pki::reissue_reason(have.as_ref().and_then(|s| text(s, "vip.crt")).as_deref(), &vip, now))
            .or_else(|| {
                (have.as_ref().and_then(|s| text(s, "ca.crt")) != Some(ca.cert.clone())).then(|| "another CA".into())
            });
        if let Some(why) = due {
            let (p, v) = (pki::issue(&ca, &leaf, now)?, pki::issue(&ca, &vip, now)?);
            let data = [
                ("ca.crt", ca.cert.as_str()),
                ("tls.crt", &p.cert),
                ("tls.key", &p.key),
                ("vip.crt", &v.cert),
                ("vip.key", &v.key),
            ];
            ssa(secrets, &secret(t, sname.clone(), "kubernetes.io/tls", &data)).await?;
            info!(secret = %sname, %why, "certificates issued");
        }
    }
    let cname = names::client_secret(&name);
    let have = secrets.get_opt(&cname).await?;
    let leaf = client_leaf(t);
    let current = have.as_ref().and_then(|s| Some(Pem { cert: text(s, "tls.crt")?, key: text(s, "tls.key")? }));
    let client = match (&current, pki::reissue_reason(current.as_ref().map(|p| p.cert.as_str()), &leaf, now)) {
        (Some(p), None) if have.as_ref().and_then(|s| text(s, "ca.crt")) == Some(ca.cert.clone()) => p.clone(),
        (_, why) => {
            let p = pki::issue(&ca, &leaf, now)?;
            let data = [("ca.crt", ca.cert.as_str()), ("tls.crt", &p.cert), ("tls.key", &p.key)];
            ssa(secrets, &secret(t, cname.clone(), "kubernetes.io/tls", &data)).await?;
            info!(secret = %cname, why = why.as_deref().unwrap_or("another CA"), "client certificate issued");
            p
        }
    };
    Ok(Material { ca: ca.cert, client })
}
