//! spec.backup and spec.bootstrap.fromBackup in the pods (build/archive.rs, build/restore.rs).

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::build::tests::demo;
use crate::build::{pod, pod_outdated};
use crate::crd::TfsNameserver;

fn with_backup() -> TfsNameserver {
    let mut t = demo();
    t.spec.replicas = 3;
    t.spec.backup = Some(
        serde_json::from_value(serde_json::json!({
            "objectStore": {
                "endpoint": "http://10.244.0.1:8333", "bucket": "tfs-backups",
                "credentialsSecret": {"name": "tfs-backup-s3", "accessKeyIdKey": "id"},
            },
            "checkpointEvery": "30m",
        }))
        .unwrap(),
    );
    t
}

fn with_restore(target: serde_json::Value) -> TfsNameserver {
    let mut t = demo();
    t.spec.replicas = 3;
    let mut fb = serde_json::json!({"objectStore": {
        "endpoint": "http://10.244.0.1:8333", "bucket": "tfs-backups", "prefix": "ns/old",
        "region": "eu-1", "credentialsSecret": {"name": "tfs-backup-s3"},
    }});
    fb.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    t.spec.bootstrap = Some(serde_json::from_value(serde_json::json!({ "fromBackup": fb })).unwrap());
    t
}

fn container<'a>(p: &'a Pod, name: &str) -> &'a Container {
    p.spec.as_ref().unwrap().containers.iter().find(|c| c.name == name).unwrap()
}

fn init<'a>(p: &'a Pod, name: &str) -> Option<&'a Container> {
    p.spec.as_ref().unwrap().init_containers.as_ref()?.iter().find(|c| c.name == name)
}

fn secret_ref(c: &Container, var: &str) -> (String, String) {
    let e = c.env.as_ref().unwrap().iter().find(|e| e.name == var).unwrap_or_else(|| panic!("no {var}"));
    assert!(e.value.is_none(), "{var} is never written into the pod spec");
    let r = e.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    (r.name.clone(), r.key.clone())
}

#[test]
fn every_instance_runs_with_the_archive_flags_and_credentials() {
    let t = with_backup();
    for i in 0..3 {
        let p = pod(&t, i);
        let ns = container(&p, "nameserver");
        let args = ns.args.as_ref().unwrap();
        for want in [
            "--archive=s3://tfs-backups/ns/demo",
            "--archive-endpoint=http://10.244.0.1:8333",
            "--archive-region=us-east-1",
            "--archive-timeout=10s",
            "--archive-checkpoint-every=30m",
            "--archive-retention=7d",
        ] {
            assert!(args.iter().any(|a| a == want), "instance {i} lacks {want}: {args:?}");
        }
        assert_eq!(secret_ref(ns, "AWS_ACCESS_KEY_ID"), ("tfs-backup-s3".into(), "id".into()));
        assert_eq!(secret_ref(ns, "AWS_SECRET_ACCESS_KEY"), ("tfs-backup-s3".into(), "secretAccessKey".into()));
        // The heart needs none of it.
        let heart = container(&p, "heart");
        assert!(heart.env.as_ref().unwrap().iter().all(|e| !e.name.starts_with("AWS_")));
        assert!(init(&p, "restore").is_none(), "no restore without bootstrap.fromBackup");
    }
    let plain = pod(&demo(), 0);
    let args = container(&plain, "nameserver").args.clone().unwrap();
    assert!(args.iter().all(|a| !a.starts_with("--archive")), "{args:?}");
}

/// A change of spec.backup reaches the processes the way spec.pod does: the pods roll (slaves
/// first, then a switchover). A pod made before spec.backup existed is not rolled for its absence.
#[test]
fn a_backup_change_rolls_the_pods_and_its_absence_rolls_none() {
    let before = demo();
    let old = pod(&before, 1);
    assert_eq!(pod_outdated(&before, &old), None);
    let t = with_backup();
    assert_eq!(pod_outdated(&t, &old), Some("pod settings"), "spec.backup added");
    let current = pod(&t, 1);
    assert_eq!(pod_outdated(&t, &current), None);
    let mut changed = t.clone();
    changed.spec.backup.as_mut().unwrap().retention = "14d".into();
    assert_eq!(pod_outdated(&changed, &current), Some("pod settings"), "spec.backup changed");
    // The annotation of a resource without spec.backup is what it was before the field existed.
    let ann = old.metadata.annotations.as_ref().unwrap()[crate::names::ANN_POD_SETTINGS].clone();
    assert!(!ann.contains("backup"), "{ann}");
}

#[test]
fn only_instance_0_restores_and_only_while_the_restore_is_pending() {
    let t = with_restore(serde_json::json!({"targetSeq": 500}));
    let p0 = pod(&t, 0);
    let r = init(&p0, "restore").expect("instance 0 restores");
    assert_eq!(r.command.as_ref().unwrap(), &vec!["/usr/local/bin/tfsctl".to_string()]);
    assert_eq!(
        r.args.as_ref().unwrap(),
        &[
            "backup",
            "restore",
            "--archive=s3://tfs-backups/ns/old",
            "--archive-endpoint=http://10.244.0.1:8333",
            "--archive-region=eu-1",
            "--data-dir=/data",
            "--target-seq=500",
            "--if-empty",
        ]
        .map(String::from)
    );
    assert_eq!(r.image, container(&p0, "nameserver").image);
    // Pod Security restricted: the nameserver's own security context.
    assert_eq!(r.security_context, container(&p0, "nameserver").security_context);
    let sc = r.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_non_root, sc.allow_privilege_escalation), (Some(true), Some(false)));
    assert_eq!(r.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
    let m = &r.volume_mounts.as_ref().unwrap()[0];
    assert_eq!((m.name.as_str(), m.mount_path.as_str()), ("data", "/data"));
    assert_eq!(secret_ref(r, "AWS_ACCESS_KEY_ID"), ("tfs-backup-s3".into(), "accessKeyId".into()));
    for i in 1..3 {
        assert!(init(&pod(&t, i), "restore").is_none(), "instance {i} starts empty");
    }
    // Restored: an instance 0 made again later (a new volume) is seeded from the master.
    let mut done = t.clone();
    done.status = Some(crate::crd::TfsNameserverStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Restored".into(),
            status: "True".into(),
            reason: "Restored".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-29T10:00:00Z".parse().unwrap(),
            ),
        }],
        ..Default::default()
    });
    assert!(init(&pod(&done, 0), "restore").is_none());
    // The other targets.
    let latest = pod(&with_restore(serde_json::json!({"latest": true})), 0);
    assert!(init(&latest, "restore").unwrap().args.as_ref().unwrap().contains(&"--latest".to_string()));
    let at = pod(&with_restore(serde_json::json!({"targetTime": "2026-11-29T10:00:00Z"})), 0);
    let args = init(&at, "restore").unwrap().args.clone().unwrap();
    assert!(args.contains(&"--target-time=2026-11-29T10:00:00Z".to_string()), "{args:?}");
}

/// With storage.ownership Chown the volume is handed over before it is restored into.
#[test]
fn the_volume_is_handed_over_before_the_restore() {
    let mut t = with_restore(serde_json::json!({"latest": true}));
    t.spec.storage.ownership = crate::crd::VolumeOwnership::Chown;
    let p = pod(&t, 0);
    let names: Vec<&str> =
        p.spec.as_ref().unwrap().init_containers.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["prepare-data", "restore"]);
    assert!(pod(&demo(), 0).spec.unwrap().init_containers.is_none(), "no init containers by default");
}
