use k8s_openapi::api::core::v1::{PodAffinityTerm, ResourceRequirements};

use super::*;
use crate::crd::{TfsNameserverSpec, VolumeOwnership};

pub fn demo() -> TfsNameserver {
    let spec: TfsNameserverSpec = serde_json::from_value(serde_json::json!({
        "storage": {"size": "1Gi", "storageClassName": "local"},
        "replication": {"mode": "Sync"},
    }))
    .unwrap();
    let mut t = TfsNameserver::new("demo", spec);
    t.metadata.namespace = Some("ns".into());
    t.metadata.uid = Some("uid-1".into());
    t
}

#[test]
fn every_object_is_owned_and_labelled() {
    let t = demo();
    let metas = [
        config_map(&t).metadata,
        service_account(&t).metadata,
        role(&t).metadata,
        role_binding(&t).metadata,
        peers_service(&t).metadata,
        vip_service(&t, None).metadata,
        lease_object(&t).metadata,
        pdb(&t, Some("demo-0")).metadata,
        master_pdb(&t, Some("demo-0")).metadata,
        pod(&t, 1).metadata,
    ];
    for m in metas {
        let o = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.name.as_str(), o.controller), ("TfsNameserver", "demo", Some(true)));
        assert_eq!(m.namespace.as_deref(), Some("ns"));
        assert_eq!(m.labels.as_ref().unwrap()[LABEL_INSTANCE], "demo");
    }
    // Claims are labelled too; their ownership follows the delete policy (below).
    assert_eq!(pvc(&t, 0).metadata.labels.unwrap()[LABEL_INSTANCE], "demo");
}

/// Whether a budget's selector selects a pod with these labels (matchLabels, In, NotIn).
fn selects(b: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    let sel = b.spec.as_ref().unwrap().selector.clone().unwrap();
    sel.match_labels.unwrap_or_default().iter().all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.unwrap_or_default().iter().all(|e| {
            let vs = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| vs.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !vs.contains(v)),
                op => panic!("operator {op}"),
            }
        })
}

/// A pod under two budgets cannot be evicted at all (500 from the eviction API): every instance
/// is under exactly one. The master's allows no disruption; the slaves' one at a time.
#[test]
fn each_instance_is_under_exactly_one_budget_and_the_masters_allows_none() {
    let mut t = demo();
    t.spec.replicas = 3;
    let pods: Vec<_> = (0..3).map(|i| pod(&t, i).metadata.labels.unwrap()).collect();
    for master in ["demo-0", "demo-2"] {
        let (slaves, m) = (pdb(&t, Some(master)), master_pdb(&t, Some(master)));
        assert_eq!(m.metadata.name.as_deref(), Some("demo-master"));
        assert_eq!(slaves.metadata.name.as_deref(), Some("demo"));
        for (i, l) in pods.iter().enumerate() {
            let is_master = names::pod("demo", i) == master;
            assert_eq!(selects(&m, l), is_master, "{master}: demo-{i} under the master's budget");
            assert_eq!(selects(&slaves, l), !is_master, "{master}: demo-{i} under the slaves' budget");
        }
        assert_eq!(m.spec.as_ref().unwrap().min_available, Some(IntOrString::Int(1)));
        // Two slaves, one of which may be disrupted.
        assert_eq!(slaves.spec.as_ref().unwrap().min_available, Some(IntOrString::Int(1)));
    }
    // No master: the master's budget selects nothing, the slaves' every instance.
    let (slaves, m) = (pdb(&t, None), master_pdb(&t, None));
    assert!(pods.iter().all(|l| !selects(&m, l) && selects(&slaves, l)));
    t.spec.replicas = 2;
    assert_eq!(pdb(&t, Some("demo-0")).spec.unwrap().min_available, Some(IntOrString::Int(0)));
}

#[test]
fn vip_selects_exactly_the_master() {
    let t = demo();
    let s = vip_service(&t, Some(VipTarget { pod: "demo-1", incarnation: None })).spec.unwrap();
    let sel = s.selector.unwrap();
    assert_eq!(sel[LABEL_POD], "demo-1");
    assert_eq!(sel[LABEL_INSTANCE], "demo");
    assert_eq!(s.ports.unwrap()[0].port, 8100);
    assert_eq!(s.publish_not_ready_addresses, Some(true));
    assert_eq!(vip_service(&t, None).spec.unwrap().selector.unwrap()[LABEL_POD], NO_MASTER);
    // The pod carries the label the VIP selects on.
    assert_eq!(pod(&t, 1).metadata.labels.unwrap()[LABEL_POD], "demo-1");
    // With the master pod's incarnation, another pod of that name is not selected.
    let pinned = vip_service(&t, Some(VipTarget { pod: "demo-1", incarnation: Some("18c1") })).spec.unwrap();
    let sel = pinned.selector.unwrap();
    assert_eq!((sel[LABEL_POD].as_str(), sel[LABEL_INCARNATION].as_str()), ("demo-1", "18c1"));
    let by_name = vip_service(&t, Some(VipTarget { pod: "demo-1", incarnation: None })).spec.unwrap().selector.unwrap();
    assert!(!by_name.contains_key(LABEL_INCARNATION), "no incarnation known: by name only");
}

#[test]
fn heart_role_is_least_privilege() {
    let r = role(&demo()).rules.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].resources.as_deref(), Some(&["leases".to_string()][..]));
    assert_eq!(r[0].resource_names.as_deref(), Some(&["demo".to_string()][..]), "only its own Lease");
    assert_eq!(r[0].verbs, vec!["get", "list", "watch", "update"], "its Lease read, watched (by name) and updated");
    assert_eq!(r[1].verbs, vec!["get", "list", "watch"]);
    assert!(r.iter().all(|p| !p.verbs.iter().any(|v| v == "*" || v == "delete" || v == "create")));
}

#[test]
fn pods_run_restricted() {
    let p = pod(&demo(), 0).spec.unwrap();
    for c in &p.containers {
        let s = c.security_context.as_ref().unwrap();
        assert_eq!(s.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(s.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(s.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(s.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(s.capabilities.as_ref().unwrap().add.is_none());
        assert_eq!(s.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    }
    // By default no container runs as root, not even an init container: the kubelet applies fsGroup.
    assert!(p.init_containers.is_none(), "an init container by default");
    let sc = p.security_context.as_ref().unwrap();
    assert_eq!((sc.fs_group, sc.fs_group_change_policy.as_deref()), (Some(RUN_AS), Some("OnRootMismatch")));
    let ns = p.containers.iter().find(|c| c.name == "nameserver").unwrap();
    let args = ns.args.as_ref().unwrap();
    assert!(args.contains(&"--admin-listen=127.0.0.1:8102".to_string()), "admin stays on loopback");
    assert!(args.contains(&"--sync-set-publication=lease".to_string()));
    assert_eq!(ns.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    assert_eq!(p.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "demo-0-data");
}

#[test]
fn volumes_that_ignore_fs_group_get_a_chown_init_container_on_request() {
    let mut t = demo();
    t.spec.storage.ownership = VolumeOwnership::Chown;
    let p = pod(&t, 0).spec.unwrap();
    let init = &p.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "prepare-data");
    assert_eq!(
        init.security_context.as_ref().unwrap().capabilities.as_ref().unwrap().add.as_deref(),
        Some(&["CHOWN".to_string()][..])
    );
}

#[test]
fn storage_and_config() {
    let t = demo();
    let c = pvc(&t, 2);
    assert_eq!(c.metadata.name.as_deref(), Some("demo-2-data"));
    let s = c.spec.unwrap();
    assert_eq!(s.storage_class_name.as_deref(), Some("local"));
    assert_eq!(s.resources.unwrap().requests.unwrap()["storage"].0, "1Gi");
    let d = config_map(&t).data.unwrap();
    assert_eq!(d["TFS_REPLICATION_MODE"], "sync");
    assert_eq!(d["TFS_CLUSTER_ID"], "ns.demo");
    assert_eq!(d["TFS_LOG_FORMAT"], "text", "the default");
    assert_eq!(d["TFS_LEASE_DURATION_SECONDS"], "5");
}

#[test]
fn lease_starts_unheld_at_epoch_zero() {
    let l = lease_object(&demo()).spec.unwrap();
    assert_eq!(l.holder_identity, None);
    assert_eq!(l.lease_transitions, Some(0));
    assert_eq!(l.lease_duration_seconds, Some(5));
}

/// Each container runs the settings its pod records (in its own spec, not via the ConfigMap), and a
/// settings change makes the pod outdated like an image change.
#[test]
fn pods_carry_their_settings_and_a_change_outdates_them() {
    let mut t = demo();
    let p = pod(&t, 0);
    let recorded = crate::settings::Settings::of_pod(&p).expect("the pod records its settings");
    assert_eq!(recorded, crate::settings::Settings::of(&t));
    for c in &p.spec.as_ref().unwrap().containers {
        let env = c.env.as_ref().unwrap();
        let get = |k: &str| env.iter().find(|e| e.name == k).and_then(|e| e.value.clone());
        assert_eq!(get("TFS_REPLICATION_MODE").as_deref(), Some("sync"), "{}", c.name);
        assert_eq!(get("TFS_LEASE_DURATION_SECONDS").as_deref(), Some("5"), "{}", c.name);
        assert_eq!(get("TFS_BLOCK_REPLICAS").as_deref(), Some("2"), "{}", c.name);
    }
    assert_eq!(pod_outdated(&t, &p), None);
    t.spec.lease.duration_seconds = 4;
    assert_eq!(pod_outdated(&t, &p), Some("settings"));
    t.spec.image = "other:1".into();
    assert_eq!(pod_outdated(&t, &p), Some("image"));
}

#[test]
fn claims_are_owned_only_under_the_delete_policy() {
    let mut t = demo();
    assert_eq!(t.spec.storage.delete_policy, crate::crd::DeletePolicy::Retain, "Retain is the default");
    assert!(pvc(&t, 0).metadata.owner_references.is_none(), "a retained claim outlives the resource");
    t.spec.storage.delete_policy = crate::crd::DeletePolicy::Delete;
    let owners = pvc(&t, 0).metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "TfsNameserver");
}

#[test]
fn with_tls_a_pod_mounts_its_certificates_and_says_where() {
    let mut t = demo();
    let plain = pod(&t, 1);
    assert!(!pod_has_tls(&plain));
    t.spec.tls.enabled = true;
    t.spec.tls.client_auth = crate::crd::ClientAuth::Required;
    let p = pod(&t, 1);
    assert!(pod_has_tls(&p));
    let spec = p.spec.as_ref().unwrap();
    let vol = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "tls").unwrap();
    assert_eq!(vol.secret.as_ref().unwrap().secret_name.as_deref(), Some("demo-1-tls"), "each pod its own Secret");
    let ns = &spec.containers[0];
    assert!(ns.volume_mounts.as_ref().unwrap().iter().any(|m| m.mount_path == TLS_DIR && m.read_only == Some(true)));
    let env: Vec<(String, Option<String>)> =
        ns.env.as_ref().unwrap().iter().map(|e| (e.name.clone(), e.value.clone())).collect();
    assert!(env.contains(&("TFS_TLS_DIR".into(), Some(TLS_DIR.into()))));
    assert!(env.contains(&("TFS_CLIENT_AUTH".into(), Some("required".into()))));
    // A pod made without TLS is outdated for a resource with TLS (and the other way round).
    assert_eq!(pod_outdated(&t, &plain), Some("tls"));
    assert_eq!(pod_outdated(&t, &p), None);
}

#[test]
fn the_network_policy_admits_replication_only_from_its_own_instances() {
    let t = demo();
    let p = network_policy(&t, Some("tfs-system")).spec.unwrap();
    assert_eq!(p.policy_types, Some(vec!["Ingress".to_string()]));
    assert_eq!(p.pod_selector.as_ref().unwrap().match_labels, Some(selector("demo")));
    let rules = p.ingress.unwrap();
    let on = |port: i32| -> Vec<_> {
        rules
            .iter()
            .filter(|r| r.ports.as_ref().unwrap().iter().any(|p| p.port == Some(IntOrString::Int(port))))
            .collect()
    };
    let repl = on(REPL_PORT);
    assert_eq!(repl.len(), 1);
    let from = repl[0].from.as_ref().expect("replication has sources");
    assert_eq!(from.len(), 1);
    assert_eq!(from[0].pod_selector.as_ref().unwrap().match_labels, Some(selector("demo")));
    assert!(from[0].namespace_selector.is_none(), "only this namespace's instances");
    // No clients listed: the client port is open to any source, and so is metrics.
    assert!(on(CLIENT_PORT).iter().all(|r| r.from.is_none()));
    assert!(on(METRICS_PORT).iter().all(|r| r.from.is_none()));
}

#[test]
fn listed_clients_and_the_operator_alone_reach_the_client_port() {
    let mut t = demo();
    let app = k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "tfs-client".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    t.spec.network_policy.clients = vec![app.clone()];
    let rules = network_policy(&t, Some("tfs-system")).spec.unwrap().ingress.unwrap();
    let client: Vec<_> = rules
        .iter()
        .filter(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(CLIENT_PORT)))
        .flat_map(|r| r.from.clone().expect("no rule open to all"))
        .collect();
    assert_eq!(client.len(), 2);
    assert_eq!(client[0], app);
    let ns = client[1].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(ns["kubernetes.io/metadata.name"], "tfs-system");
}

#[test]
fn pod_settings_reach_every_container_and_the_pod() {
    let mut t = demo();
    t.spec.image = "registry.example/tfs:1.4.2".into();
    let res = |cpu: &str| ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), Quantity(cpu.into()))])),
        ..Default::default()
    };
    t.spec.pod = serde_json::from_value(serde_json::json!({
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "tfs-critical",
        "labels": {"team": "storage", "app.kubernetes.io/instance": "hijack"},
        "annotations": {"example.com/owner": "storage"},
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tfs", "effect": "NoSchedule"}],
    }))
    .unwrap();
    t.spec.pod.heart_resources = Some(res("20m"));
    t.spec.pod.init_resources = Some(res("30m"));
    t.spec.storage.ownership = VolumeOwnership::Chown;
    let p = pod(&t, 0);
    let l = p.metadata.labels.as_ref().unwrap();
    assert_eq!(l["team"], "storage");
    assert_eq!(l["app.kubernetes.io/instance"], "demo", "the operator's labels win");
    assert_eq!(l[LABEL_COMPONENT], "nameserver");
    assert_eq!(l[LABEL_PART_OF], "tfs");
    assert_eq!(l[LABEL_VERSION], "1.4.2");
    assert_eq!(p.metadata.annotations.as_ref().unwrap()["example.com/owner"], "storage");
    let s = p.spec.unwrap();
    assert_eq!(s.image_pull_secrets.unwrap()[0].name, "regcred");
    assert_eq!(s.priority_class_name.as_deref(), Some("tfs-critical"));
    assert_eq!(s.node_selector.unwrap()["disk"], "ssd");
    assert_eq!(s.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
    let heart = s.containers.iter().find(|c| c.name == "heart").unwrap();
    assert_eq!(heart.resources, Some(res("20m")));
    assert_eq!(s.init_containers.unwrap()[0].resources, Some(res("30m")));
}

#[test]
fn a_change_of_pod_settings_rolls_the_pods_but_a_pod_from_before_them_is_left() {
    let mut t = demo();
    let mut p = pod(&t, 0);
    assert_eq!(pod_outdated(&t, &p), None);
    t.spec.pod.priority_class_name = Some("tfs-critical".into());
    assert_eq!(pod_outdated(&t, &p), Some("pod settings"));
    t.spec.pod.priority_class_name = None;
    t.spec.resources = Some(ResourceRequirements::default());
    assert_eq!(pod_outdated(&t, &p), Some("pod settings"), "the nameserver's resources too");
    p.metadata.annotations.as_mut().unwrap().remove(ANN_POD_SETTINGS);
    assert_eq!(pod_outdated(&t, &p), None);
}

#[test]
fn the_version_label_is_the_image_tag_when_it_is_a_valid_label() {
    assert_eq!(image_version("localhost/tfs:dev").as_deref(), Some("dev"));
    assert_eq!(image_version("registry:5000/tfs").as_deref(), None, "a port is not a tag");
    assert_eq!(image_version("tfs@sha256:abc").as_deref(), None);
    assert_eq!(image_version("tfs:1.0+build").as_deref(), None);
    assert_eq!(image_version("tfs:_dev").as_deref(), None, "a label value starts and ends alphanumeric");
    assert_eq!(image_version("tfs:dev-").as_deref(), None);
}

#[test]
fn instances_go_to_different_nodes_by_default_and_spread_over_zones() {
    let t = demo();
    let s = pod(&t, 1).spec.unwrap();
    let anti = s.affinity.unwrap().pod_anti_affinity.unwrap();
    let required = anti.required_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(required.len(), 1);
    assert_eq!(required[0].topology_key, "kubernetes.io/hostname");
    let sel = required[0].label_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(sel, &selector("demo"), "against the other instances of this resource only");
    assert!(anti.preferred_during_scheduling_ignored_during_execution.is_none());
    // The pod carries the labels its own term selects (so the instances repel each other).
    let labels = pod(&t, 0).metadata.labels.unwrap();
    assert!(sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let spread = s.topology_spread_constraints.unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(
        (spread[0].topology_key.as_str(), spread[0].when_unsatisfiable.as_str(), spread[0].max_skew),
        ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)
    );
    assert_eq!(spread[0].label_selector.as_ref().unwrap().match_labels.as_ref(), Some(&selector("demo")));
}

#[test]
fn preferred_placement_only_prefers_other_nodes() {
    let mut t = demo();
    t.spec.placement = crate::crd::Placement::Preferred;
    let anti = pod(&t, 0).spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0].weight, 100);
    assert_eq!(preferred[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
}

#[test]
fn the_users_affinity_is_kept_and_their_anti_affinity_follows_ours() {
    let mut t = demo();
    t.spec.pod = serde_json::from_value(serde_json::json!({
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
            ]}},
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": {"app": "dataserver"}}}}
            ]},
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "etcd"}}}
                ],
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "batch"}}}}
                ]
            }
        }
    }))
    .unwrap();
    let a = pod(&t, 0).spec.unwrap().affinity.unwrap();
    assert_eq!(a.node_affinity, t.spec.pod.affinity.as_ref().unwrap().node_affinity, "node affinity kept");
    assert_eq!(a.pod_affinity, t.spec.pod.affinity.as_ref().unwrap().pod_affinity, "pod affinity kept");
    let anti = a.pod_anti_affinity.unwrap();
    let required = anti.required_during_scheduling_ignored_during_execution.unwrap();
    let app = |t: &PodAffinityTerm| t.label_selector.as_ref()?.match_labels.as_ref()?.get("app").cloned();
    assert_eq!(required.len(), 2);
    assert_eq!(
        required[0].label_selector.as_ref().unwrap().match_labels.as_ref(),
        Some(&selector("demo")),
        "ours first"
    );
    assert_eq!(app(&required[1]).as_deref(), Some("etcd"), "theirs after");
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(
        (preferred.len(), preferred[0].weight, app(&preferred[0].pod_affinity_term).as_deref()),
        (1, 50, Some("batch"))
    );
    // Preferred placement: our term joins theirs among the preferred ones.
    t.spec.placement = crate::crd::Placement::Preferred;
    let anti = pod(&t, 0).spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
    assert_eq!(anti.required_during_scheduling_ignored_during_execution.unwrap().len(), 1, "theirs alone");
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(preferred.iter().map(|w| w.weight).collect::<Vec<_>>(), vec![100, 50]);
}

/// Placement is decided when a pod is scheduled: a change (or the operator's upgrade that
/// brought the field) replaces no pod. A pod whose volume is bound to its node could not move
/// anyway, and under Required it would stay Pending if another instance now ran there.
#[test]
fn placement_rolls_no_pod() {
    let mut t = demo();
    let p = pod(&t, 0);
    // What the operator recorded before spec.placement existed, for a resource with no pod settings.
    assert_eq!(p.metadata.annotations.as_ref().unwrap()[ANN_POD_SETTINGS], r#"{"pod":{},"resources":null}"#);
    t.spec.placement = crate::crd::Placement::Preferred;
    assert_eq!(pod_outdated(&t, &p), None);
    assert_eq!(pod(&t, 0).metadata.annotations.unwrap()[ANN_POD_SETTINGS], r#"{"pod":{},"resources":null}"#);
}
