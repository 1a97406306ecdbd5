//! Growing the instances' volumes when `spec.storage.size` is raised (admission refuses shrinking):
//! claims asking for less are expanded when their StorageClass allows it
//! (`allowVolumeExpansion`), and the `StorageResized` condition says where that stands, or why it
//! cannot happen. Pure: the controller lists the claims and the class, and patches what this says.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

/// Bytes of a Kubernetes quantity (`1Gi`, `500M`, `1073741824`); None when not understood.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        _ => return None,
    };
    match num.split_once('.') {
        None => num.parse::<u128>().ok()?.checked_mul(mult),
        Some((whole, frac)) => {
            let scale = 10u128.checked_pow(frac.len() as u32)?;
            let v: u128 = format!("{whole}{frac}").parse().ok()?;
            Some(v.checked_mul(mult)? / scale)
        }
    }
}

fn storage_of(
    map: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<u128> {
    quantity_bytes(&map?.get("storage")?.0)
}

/// What to do about the claims' size, and the condition that says so.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Claims whose request must be raised to the spec's size.
    pub expand: Vec<String>,
    pub resized: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `claims` are this resource's claims; `class` is their StorageClass (None: none could be read).
pub fn plan(size: &str, claims: &[PersistentVolumeClaim], class: Option<&StorageClass>) -> Plan {
    let Some(want) = quantity_bytes(size) else {
        return Plan {
            expand: vec![],
            resized: false,
            reason: "InvalidSize",
            message: format!("{size} is not a size"),
        };
    };
    let name = |c: &PersistentVolumeClaim| c.metadata.name.clone().unwrap_or_default();
    let small: Vec<&PersistentVolumeClaim> = claims
        .iter()
        .filter(|c| {
            storage_of(c.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()))
                .is_some_and(|r| r < want)
        })
        .collect();
    if small.is_empty() {
        let growing: Vec<String> = claims
            .iter()
            .filter(|c| storage_of(c.status.as_ref().and_then(|s| s.capacity.as_ref())).is_some_and(|have| have < want))
            .map(name)
            .collect();
        return if growing.is_empty() {
            Plan { expand: vec![], resized: true, reason: "Resized", message: format!("every volume holds {size}") }
        } else {
            Plan {
                expand: vec![],
                resized: false,
                reason: "Expanding",
                message: format!("asked for {size}; waiting for {} to grow", growing.join(", ")),
            }
        };
    }
    let class_name =
        small[0].spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_else(|| "(default)".into());
    if class.and_then(|c| c.allow_volume_expansion) == Some(true) {
        Plan {
            expand: small.iter().map(|c| name(c)).collect(),
            resized: false,
            reason: "Expanding",
            message: format!("expanding {} to {size}", small.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ")),
        }
    } else {
        let have: Vec<String> = small
            .iter()
            .map(|c| {
                let r = c.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
                format!("{} at {}", name(c), r.and_then(|r| r.get("storage")).map(|q| q.0.as_str()).unwrap_or("?"))
            })
            .collect();
        Plan {
            expand: vec![],
            resized: false,
            reason: "ExpansionNotSupported",
            message: format!(
                "StorageClass {class_name} does not allow volume expansion (allowVolumeExpansion is not true): {} stay as they \
                 are and keep serving (new instances get the new size); for more room everywhere, move to a new \
                 TfsNameserver on a class that expands",
                have.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn claim(name: &str, request: &str, capacity: &str) -> PersistentVolumeClaim {
        let q = |v: &str| Some(BTreeMap::from([("storage".to_string(), Quantity(v.into()))]));
        PersistentVolumeClaim {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("standard".into()),
                resources: Some(VolumeResourceRequirements { requests: q(request), ..Default::default() }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus { capacity: q(capacity), ..Default::default() }),
        }
    }

    fn class(expands: Option<bool>) -> StorageClass {
        StorageClass { allow_volume_expansion: expands, provisioner: "p".into(), ..Default::default() }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1024"), Some(1024));
        assert_eq!(quantity_bytes("1Xi"), None);
        assert_eq!(quantity_bytes("abc"), None);
    }

    #[test]
    fn volumes_at_the_size_are_resized() {
        let p = plan("1Gi", &[claim("a", "1Gi", "1Gi"), claim("b", "1024Mi", "2Gi")], Some(&class(None)));
        assert_eq!((p.resized, p.reason, p.expand.len()), (true, "Resized", 0));
    }

    #[test]
    fn a_class_that_expands_gets_the_small_claims_patched() {
        let p = plan("2Gi", &[claim("a", "1Gi", "1Gi"), claim("b", "2Gi", "1Gi")], Some(&class(Some(true))));
        assert_eq!(p.expand, ["a"]);
        assert_eq!((p.resized, p.reason), (false, "Expanding"));
        // Asked everywhere, the capacity not there yet.
        let p = plan("2Gi", &[claim("a", "2Gi", "1Gi")], Some(&class(Some(true))));
        assert_eq!((p.resized, p.reason, p.expand.len()), (false, "Expanding", 0));
        assert!(p.message.contains("waiting for a to grow"), "{}", p.message);
    }

    #[test]
    fn a_class_that_does_not_expand_is_said_and_nothing_is_patched() {
        for c in [Some(class(Some(false))), Some(class(None)), None] {
            let p = plan("2Gi", &[claim("a", "1Gi", "1Gi")], c.as_ref());
            assert_eq!((p.resized, p.reason, p.expand.len()), (false, "ExpansionNotSupported", 0));
            assert!(p.message.contains("StorageClass standard does not allow volume expansion"), "{}", p.message);
            assert!(p.message.contains("a at 1Gi"), "{}", p.message);
        }
    }
}
