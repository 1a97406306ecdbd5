//! Growing the instances' volumes when `spec.storage.size` is raised (admission refuses shrinking):
//! claims asking for less are expanded when their StorageClass allows it
//! (`allowVolumeExpansion`), and the `StorageResized` condition says where that stands, or why it
//! cannot happen. Pure: the controller lists the claims and the class, and patches what this says.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

/// Bytes of a Kubernetes quantity (`1Gi`, `500M`, `1e9`, `1073741824`, `1500m`), rounded down;
/// None when not understood.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // (multiplier, divisor): a suffix scales up, `m` (milli) down, `eN`/`EN` is a power of ten.
    let (mult, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        "k" => (10u128.pow(3), 1),
        "M" => (10u128.pow(6), 1),
        "G" => (10u128.pow(9), 1),
        "T" => (10u128.pow(12), 1),
        "P" => (10u128.pow(15), 1),
        "E" => (10u128.pow(18), 1),
        e if e.starts_with(['e', 'E']) => (10u128.checked_pow(e[1..].parse::<u32>().ok().filter(|x| *x <= 30)?)?, 1),
        _ => return None,
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let scale = 10u128.checked_pow(frac.len() as u32)?;
    let digits: u128 = format!("{whole}{frac}").parse().ok()?;
    Some(digits.checked_mul(mult)? / scale / div)
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

impl Plan {
    /// Expansion was tried and failed (an API error): said, and tried again later.
    pub fn failed(message: String) -> Plan {
        Plan { expand: vec![], resized: false, reason: "ExpansionFailed", message }
    }
}

/// The claims' StorageClass as the operator could read it.
pub enum Class {
    Read(Box<StorageClass>),
    /// Why not (a namespace-scoped install may not read classes).
    Unreadable(String),
}

/// `claims` are the claims of this resource's instances; `class` is their StorageClass.
pub fn plan(size: &str, claims: &[PersistentVolumeClaim], class: &Class) -> Plan {
    let Some(want) = quantity_bytes(size) else {
        return Plan {
            expand: vec![],
            resized: false,
            reason: "InvalidSize",
            message: format!("{size} is not a size"),
        };
    };
    let name = |c: &PersistentVolumeClaim| c.metadata.name.clone().unwrap_or_default();
    let request = |c: &PersistentVolumeClaim| {
        storage_of(c.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()))
    };
    let capacity = |c: &PersistentVolumeClaim| storage_of(c.status.as_ref().and_then(|s| s.capacity.as_ref()));
    // A claim is big enough when it asks for the size, or already holds it (a provisioner may
    // round up); only a bound claim can have its request raised.
    let small: Vec<&PersistentVolumeClaim> = claims
        .iter()
        .filter(|c| request(c).is_some_and(|r| r < want) && capacity(c).is_none_or(|have| have < want))
        .collect();
    if small.is_empty() {
        let growing: Vec<String> =
            claims.iter().filter(|c| capacity(c).is_some_and(|have| have < want)).map(name).collect();
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
    let listed = |cs: &[&PersistentVolumeClaim]| cs.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ");
    let class = match class {
        Class::Read(c) => c,
        Class::Unreadable(why) => {
            return Plan {
                expand: vec![],
                resized: false,
                reason: "StorageClassUnreadable",
                message: format!(
                    "{why}: whether {} can grow to {size} is unknown, so they stay as they are",
                    listed(&small)
                ),
            };
        }
    };
    let class_name = class.metadata.name.clone().unwrap_or_default();
    if class.allow_volume_expansion != Some(true) {
        let have: Vec<String> = small
            .iter()
            .map(|c| {
                let r = c.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
                format!("{} at {}", name(c), r.and_then(|r| r.get("storage")).map(|q| q.0.as_str()).unwrap_or("?"))
            })
            .collect();
        return Plan {
            expand: vec![],
            resized: false,
            reason: "ExpansionNotSupported",
            message: format!(
                "StorageClass {class_name} does not allow volume expansion (allowVolumeExpansion is not true): {} stay as they \
                 are and keep serving (new instances get the new size); for more room everywhere, move to a new \
                 TfsNameserver on a class that expands",
                have.join(", ")
            ),
        };
    }
    let bound = |c: &&&PersistentVolumeClaim| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let (ready, pending): (Vec<&PersistentVolumeClaim>, Vec<&PersistentVolumeClaim>) =
        small.iter().partition(|c| bound(c));
    if ready.is_empty() {
        return Plan {
            expand: vec![],
            resized: false,
            reason: "Expanding",
            message: format!("asked for {size}; {} not bound yet", listed(&pending)),
        };
    }
    Plan {
        expand: ready.iter().map(|c| name(c)).collect(),
        resized: false,
        reason: "Expanding",
        message: format!("expanding {} to {size}", listed(&ready)),
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
            status: Some(PersistentVolumeClaimStatus {
                capacity: q(capacity),
                phase: Some("Bound".into()),
                ..Default::default()
            }),
        }
    }

    fn class(expands: Option<bool>) -> Class {
        Class::Read(Box::new(StorageClass {
            metadata: kube::api::ObjectMeta { name: Some("standard".into()), ..Default::default() },
            allow_volume_expansion: expands,
            provisioner: "p".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1024"), Some(1024));
        assert_eq!(quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("2Ei"), Some(2 << 60));
        assert_eq!(quantity_bytes("1500m"), Some(1));
        assert_eq!(quantity_bytes("1Xi"), None);
        assert_eq!(quantity_bytes("abc"), None);
        assert_eq!(quantity_bytes("."), None);
    }

    #[test]
    fn volumes_at_the_size_are_resized() {
        let p = plan("1Gi", &[claim("a", "1Gi", "1Gi"), claim("b", "1024Mi", "2Gi")], &class(None));
        assert_eq!((p.resized, p.reason, p.expand.len()), (true, "Resized", 0));
        // Rounded up by its provisioner: asked 1Gi, holds 10Gi; 2Gi needs nothing.
        let p = plan("2Gi", &[claim("a", "1Gi", "10Gi")], &class(Some(false)));
        assert_eq!((p.resized, p.reason), (true, "Resized"));
    }

    #[test]
    fn a_class_that_expands_gets_the_small_claims_patched() {
        let p = plan("2Gi", &[claim("a", "1Gi", "1Gi"), claim("b", "2Gi", "1Gi")], &class(Some(true)));
        assert_eq!(p.expand, ["a"]);
        assert_eq!((p.resized, p.reason), (false, "Expanding"));
        // Asked everywhere, the capacity not there yet.
        let p = plan("2Gi", &[claim("a", "2Gi", "1Gi")], &class(Some(true)));
        assert_eq!((p.resized, p.reason, p.expand.len()), (false, "Expanding", 0));
        assert!(p.message.contains("waiting for a to grow"), "{}", p.message);
        // A claim not bound yet cannot have its request raised: it waits.
        let mut pending = claim("a", "1Gi", "1Gi");
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let p = plan("2Gi", &[pending], &class(Some(true)));
        assert_eq!((p.reason, p.expand.len()), ("Expanding", 0));
        assert!(p.message.contains("not bound yet"), "{}", p.message);
    }

    #[test]
    fn a_class_that_does_not_expand_is_said_and_nothing_is_patched() {
        for c in [class(Some(false)), class(None)] {
            let p = plan("2Gi", &[claim("a", "1Gi", "1Gi")], &c);
            assert_eq!((p.resized, p.reason, p.expand.len()), (false, "ExpansionNotSupported", 0));
            assert!(p.message.contains("StorageClass standard does not allow volume expansion"), "{}", p.message);
            assert!(p.message.contains("a at 1Gi"), "{}", p.message);
        }
        // A class that could not be read is not said to refuse expansion.
        let p =
            plan("2Gi", &[claim("a", "1Gi", "1Gi")], &Class::Unreadable("cannot read StorageClass standard".into()));
        assert_eq!((p.resized, p.reason, p.expand.len()), (false, "StorageClassUnreadable", 0));
    }
}
