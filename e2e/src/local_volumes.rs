//! A dynamic provisioner of node-local volumes for the local test cluster (part of the cluster,
//! not of the product): a claim of a StorageClass whose provisioner is [`PROVISIONER`] gets a
//! directory `<root>/<node>/<pv>` on the node the scheduler chose for its first pod, exposed as a
//! `local` PersistentVolume with node affinity to that node; a released volume of reclaim policy
//! Delete loses its directory, then its PersistentVolume.
//!
//! Why not the in-tree hostPath provisioner: its volumes are root-owned 0750 directories, and the
//! kubelet applies no `fsGroup` to hostPath volumes, so a non-root pod (Pod Security `restricted`)
//! cannot write them. The kubelet does apply `fsGroup` to `local` volumes. Node affinity also keeps
//! a volume's data on its node, as real node-local storage does (needed once the cluster has
//! several nodes).
//!
//! Protocol (the one external provisioners follow): the StorageClass binds on first consumer; the
//! scheduler writes `volume.kubernetes.io/selected-node` on the claim; we create the PV with a
//! `claimRef` to the claim, and the PV controller binds the two. Capacity is not enforced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

/// The provisioner name a StorageClass names to get these volumes.
pub const PROVISIONER: &str = "tfs.io/local-volumes";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The directory of a volume: one folder per node, so a node's data can be told apart (and lost
/// with its node).
pub fn volume_dir(root: &Path, node: &str, pv: &str) -> PathBuf {
    root.join(node).join(pv)
}

/// A node name as Kubernetes allows it (a DNS-1123 subdomain): nothing that could make
/// `root.join(node)` leave the root (`/etc`, `..`).
pub fn node_name_ok(n: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    n.len() <= 253
        && alnum(n.chars().next())
        && alnum(n.chars().last())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !n.contains("..")
}

/// The directory a volume of ours must have: `<root>/<its node>/<its name>`, its name `pvc-<uid>`.
/// Anything else (a PV edited by hand, one of another provisioner) is never removed.
pub fn owned_dir(pv: &PersistentVolume, root: &Path) -> Option<PathBuf> {
    let name = pv.metadata.name.as_deref().filter(|n| n.starts_with("pvc-") && !n.contains('/'))?;
    let spec = pv.spec.as_ref()?;
    let node = spec.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms.first()?;
    let node = node.match_expressions.as_ref()?.first()?.values.as_ref()?.first().filter(|n| node_name_ok(n))?;
    let dir = volume_dir(root, node, name);
    (Path::new(&spec.local.as_ref()?.path) == dir).then_some(dir)
}

/// The PersistentVolume for `claim` on `node`, or None when the claim is not ours to provision
/// (another class, already bound, no node chosen yet, being deleted).
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    classes: &BTreeMap<String, String>,
    root: &Path,
) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let class = spec.storage_class_name.as_ref()?;
    let reclaim = classes.get(class)?;
    if claim.metadata.deletion_timestamp.is_some() || spec.volume_name.as_ref().is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let node = claim.metadata.annotations.as_ref()?.get(SELECTED_NODE).filter(|n| node_name_ok(n))?;
    let uid = claim.metadata.uid.as_ref()?;
    let size = spec.resources.as_ref()?.requests.as_ref()?.get("storage")?.clone();
    let name = format!("pvc-{uid}");
    let path = volume_dir(root, node, &name);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY.to_string(), PROVISIONER.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(reclaim.clone()),
            storage_class_name: Some(class.clone()),
            volume_mode: Some("Filesystem".into()),
            local: Some(LocalVolumeSource { path: path.to_string_lossy().into_owned(), fs_type: None }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.clone()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Whether `pv` is one of ours that was released under reclaim policy Delete.
pub fn released_for_deletion(pv: &PersistentVolume) -> bool {
    let ours = pv.metadata.annotations.as_ref().and_then(|a| a.get(PROVISIONED_BY)).is_some_and(|p| p == PROVISIONER);
    let delete = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    ours && delete && matches!(phase, Some("Released" | "Failed"))
}

/// Runs the provisioner until the process is stopped: each change of a claim, a volume or a class
/// triggers one pass over all of them (the cluster is small), and a pass runs every 10 s anyway.
pub async fn run(client: kube::Client, root: PathBuf) -> Result<()> {
    let claims = Api::<PersistentVolumeClaim>::all(client.clone());
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let classes = Api::<StorageClass>::all(client.clone());
    let cfg = watcher::Config::default();
    // (with backoff: an unreachable API server must not make the watchers spin)
    let mut changes = futures::stream::select_all([
        watcher(claims.clone(), cfg.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(volumes.clone(), cfg.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(classes.clone(), cfg).default_backoff().map(|_| ()).boxed(),
    ]);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = changes.next() => {}
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&claims, &volumes, &classes, &root).await {
            eprintln!("local-volumes: {e:#}");
        }
    }
}

async fn pass(
    claims: &Api<PersistentVolumeClaim>,
    volumes: &Api<PersistentVolume>,
    classes: &Api<StorageClass>,
    root: &Path,
) -> Result<()> {
    let ours: BTreeMap<String, String> = classes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.provisioner == PROVISIONER)
        .map(|c| (c.metadata.name.unwrap_or_default(), c.reclaim_policy.unwrap_or_else(|| "Delete".into())))
        .collect();
    let existing = volumes.list(&ListParams::default()).await?.items;
    // One claim or volume that fails is said and skipped: the others go on.
    for claim in claims.list(&ListParams::default()).await?.items {
        let Some(pv) = volume_for(&claim, &ours, root) else { continue };
        let name = pv.metadata.name.clone().unwrap_or_default();
        if existing.iter().any(|v| v.metadata.name.as_deref() == Some(&name)) {
            continue;
        }
        if let Err(e) = provision(volumes, &pv).await {
            eprintln!("local-volumes: {name}: {e:#}");
        }
    }
    for pv in existing.iter().filter(|v| released_for_deletion(v)) {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        if let Err(e) = reclaim(volumes, name, root).await {
            eprintln!("local-volumes: {name}: {e:#}");
        }
    }
    Ok(())
}

/// Creates the directory, then the PV; a PV that cannot be created takes its new directory away.
async fn provision(volumes: &Api<PersistentVolume>, pv: &PersistentVolume) -> Result<()> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let path = pv.spec.as_ref().and_then(|s| s.local.as_ref()).map(|l| PathBuf::from(&l.path)).unwrap_or_default();
    let existed = path.exists();
    // The kubelet gives the directory to the pod's fsGroup when it mounts it.
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match volumes.create(&PostParams::default(), pv).await {
        Ok(_) => {
            let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            let of = |f: Option<&String>| f.cloned().unwrap_or_default();
            println!(
                "local-volumes: {name} at {} for {}/{}",
                path.display(),
                of(claim.and_then(|c| c.namespace.as_ref())),
                of(claim.and_then(|c| c.name.as_ref()))
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_dir(&path);
            }
            Err(e.into())
        }
    }
}

/// A released volume of ours: its directory (only the one it must have, see [`owned_dir`]),
/// then the PV — read again first, so that a volume re-bound meanwhile keeps its data.
async fn reclaim(volumes: &Api<PersistentVolume>, name: &str, root: &Path) -> Result<()> {
    let Some(pv) = volumes.get_opt(name).await? else { return Ok(()) };
    if !released_for_deletion(&pv) {
        return Ok(());
    }
    match owned_dir(&pv, root) {
        Some(dir) => match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
        },
        None => eprintln!("local-volumes: {name}: not a directory this provisioner made; left on disk"),
    }
    let rv = pv.metadata.resource_version.clone();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: rv, uid: None }),
        ..Default::default()
    };
    match volumes.delete(name, &dp).await {
        Ok(_) => println!("local-volumes: {name} deleted with its directory"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn claim(class: &str, node: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-demo-0".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                annotations: node.map(|n| BTreeMap::from([(SELECTED_NODE.to_string(), n.to_string())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                volume_name: volume.map(Into::into),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_claim_gets_a_local_volume_on_the_chosen_node_bound_to_it() {
        let classes = BTreeMap::from([("standard".to_string(), "Delete".to_string())]);
        let pv = volume_for(&claim("standard", Some("node-b"), None), &classes, Path::new("/v")).unwrap();
        let spec = pv.spec.unwrap();
        assert_eq!(spec.local.unwrap().path, "/v/node-b/pvc-u1");
        let term = &spec.node_affinity.unwrap().required.unwrap().node_selector_terms[0];
        assert_eq!(term.match_expressions.as_ref().unwrap()[0].values, Some(vec!["node-b".to_string()]));
        assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some("u1"));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    }

    #[test]
    fn claims_not_ours_or_not_ready_are_left_alone() {
        let classes = BTreeMap::from([("standard".to_string(), "Retain".to_string())]);
        assert!(volume_for(&claim("other", Some("n"), None), &classes, Path::new("/v")).is_none());
        assert!(volume_for(&claim("standard", None, None), &classes, Path::new("/v")).is_none());
        assert!(volume_for(&claim("standard", Some("n"), Some("pv-1")), &classes, Path::new("/v")).is_none());
    }

    #[test]
    fn only_our_released_delete_volumes_are_deleted() {
        let pv = |by: &str, policy: &str, phase: &str| PersistentVolume {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(PROVISIONED_BY.to_string(), by.to_string())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                persistent_volume_reclaim_policy: Some(policy.into()),
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        };
        assert!(released_for_deletion(&pv(PROVISIONER, "Delete", "Released")));
        assert!(!released_for_deletion(&pv(PROVISIONER, "Retain", "Released")));
        assert!(!released_for_deletion(&pv(PROVISIONER, "Delete", "Bound")));
        assert!(!released_for_deletion(&pv("kubernetes.io/host-path", "Delete", "Released")));
    }

    #[test]
    fn a_node_name_cannot_lead_out_of_the_root() {
        assert!(node_name_ok("vm") && node_name_ok("node-1.example"));
        for bad in ["/etc", "..", "a/../b", "../x", "", "-a", "A"] {
            assert!(!node_name_ok(bad), "{bad}");
        }
        let classes = BTreeMap::from([("standard".to_string(), "Delete".to_string())]);
        assert!(volume_for(&claim("standard", Some("/etc"), None), &classes, Path::new("/v")).is_none());
    }

    #[test]
    fn only_the_directory_a_volume_must_have_is_ever_removed() {
        let classes = BTreeMap::from([("standard".to_string(), "Delete".to_string())]);
        let root = Path::new("/v");
        let pv = volume_for(&claim("standard", Some("node-b"), None), &classes, root).unwrap();
        assert_eq!(owned_dir(&pv, root), Some(PathBuf::from("/v/node-b/pvc-u1")));
        // The root itself, or a node's folder, under a PV renamed to match: never.
        let mut at_root = pv.clone();
        at_root.spec.as_mut().unwrap().local.as_mut().unwrap().path = "/v".into();
        assert_eq!(owned_dir(&at_root, root), None);
        let mut named = pv.clone();
        named.metadata.name = Some("node-b".into());
        named.spec.as_mut().unwrap().local.as_mut().unwrap().path = "/v/node-b".into();
        assert_eq!(owned_dir(&named, root), None);
    }
}
