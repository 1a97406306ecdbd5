//! Where the instances go: spec.placement as anti-affinity between the instances of one resource,
//! merged with spec.pod.affinity, and the topology spread constraints.

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use crate::crd::{Placement, TfsNameserver};
use crate::names::*;

/// Node label of the per-node spread, and of the per-zone one.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The instances of one resource, as anti-affinity and spread terms select them.
pub(super) fn instances_selector(t: &TfsNameserver) -> LabelSelector {
    LabelSelector { match_labels: Some(selector(&t.name_any())), ..Default::default() }
}

/// `spec.placement` as pod anti-affinity between the instances of one resource (one per node:
/// required or preferred), merged with `spec.pod.affinity`: the user's node and pod affinity are
/// kept as they are, their anti-affinity terms follow ours.
pub fn affinity(t: &TfsNameserver) -> Affinity {
    let term = PodAffinityTerm {
        label_selector: Some(instances_selector(t)),
        topology_key: HOSTNAME_KEY.into(),
        ..Default::default()
    };
    let mut ours = match t.spec.placement {
        Placement::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
        Placement::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term,
            }]),
            ..Default::default()
        },
    };
    let mut a = t.spec.pod.affinity.clone().unwrap_or_default();
    if let Some(theirs) = a.pod_anti_affinity.take() {
        let required = theirs.required_during_scheduling_ignored_during_execution.unwrap_or_default();
        let preferred = theirs.preferred_during_scheduling_ignored_during_execution.unwrap_or_default();
        if !required.is_empty() {
            ours.required_during_scheduling_ignored_during_execution.get_or_insert_default().extend(required);
        }
        if !preferred.is_empty() {
            ours.preferred_during_scheduling_ignored_during_execution.get_or_insert_default().extend(preferred);
        }
    }
    a.pod_anti_affinity = Some(ours);
    a
}

/// The instances spread over zones, as evenly as the scheduler can without refusing a node
/// (ScheduleAnyway: a preference in scoring, never a reason to stay Pending). Where no node has
/// a zone label, it does nothing.
pub fn topology_spread(t: &TfsNameserver) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(instances_selector(t)),
        ..Default::default()
    }]
}
