use super::*;

#[test]
fn defaults_fill_a_minimal_spec() {
    let s: TfsNameserverSpec = serde_json::from_value(serde_json::json!({"storage": {"size": "1Gi"}})).unwrap();
    assert_eq!(s.replicas, 2);
    assert_eq!(s.lease, LeaseSpec { duration_seconds: 5, renew_deadline_seconds: 3, retry_period_seconds: 1 });
    assert_eq!(s.replication.mode, ReplicationMode::Sync);
    assert_eq!(s.service.port, 8100);
    assert_eq!(s.image, DEFAULT_IMAGE);
    assert_eq!(s.placement, Placement::Required, "spread by default");
}

#[test]
fn crd_carries_the_rules_columns_and_short_name() {
    let y = crd_yaml();
    for needle in [
        "tfsns",
        "replicas must be between 2 and 5",
        "storage.size cannot shrink",
        "storage.storageClassName is immutable",
        "tls.issuerRef is chosen at creation",
        "tls.issuerRef needs tls.enabled: true",
        "tls.issuerRef.name must not be empty",
        "lease.durationSeconds must be greater than lease.renewDeadlineSeconds",
        "greater than 1.2 x lease.retryPeriodSeconds",
        "jsonPath: .status.master",
        "name: LAST-FAILOVER",
        "subresources",
        "x-kubernetes-list-type: map",
        "specReplicasPath: .spec.replicas",
        "labelSelectorPath: .status.labelSelector",
    ] {
        assert!(y.contains(needle), "CRD lacks {needle:?}");
    }
}

/// Every property of spec and status says what it is (`kubectl explain tfsns.spec...`),
/// except inside types Kubernetes defines (resources, conditions), which carry their own.
#[test]
fn every_field_is_described_for_kubectl_explain() {
    use kube::CustomResourceExt;
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(props) = v.get("properties").and_then(|p| p.as_object()) else { return };
        for (k, p) in props {
            let here = format!("{path}.{k}");
            if p.get("description").and_then(|d| d.as_str()).is_none_or(|d| d.trim().is_empty()) {
                missing.push(here.clone());
            }
            if ["resources", "conditions"].contains(&k.as_str()) {
                continue;
            }
            walk(&here, p, missing);
            if let Some(items) = p.get("items") {
                walk(&format!("{here}[]"), items, missing);
            }
        }
    }
    let crd = serde_json::to_value(TfsNameserver::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    for top in ["spec", "status"] {
        walk(top, &schema["properties"][top], &mut missing);
    }
    assert!(missing.is_empty(), "{} fields without a description: {missing:?}", missing.len());
}
