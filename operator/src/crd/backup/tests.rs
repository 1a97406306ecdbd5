use super::*;
use crate::crd::TfsNameserverSpec;

fn spec(v: serde_json::Value) -> TfsNameserverSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn backup_defaults_fill_a_minimal_object_store() {
    let s = spec(serde_json::json!({
        "storage": {"size": "1Gi"},
        "backup": {"objectStore": {"endpoint": "http://s3:8333", "bucket": "b", "credentialsSecret": {"name": "creds"}}},
    }));
    let b = s.backup.unwrap();
    assert_eq!((b.checkpoint_every.as_str(), b.retention.as_str(), b.archive_timeout.as_str()), ("1h", "7d", "10s"));
    assert_eq!(b.object_store.region, "us-east-1");
    let c = &b.object_store.credentials_secret;
    assert_eq!((c.access_key_id_key.as_str(), c.secret_access_key_key.as_str()), ("accessKeyId", "secretAccessKey"));
    assert_eq!(b.object_store.url("ns", "demo"), "s3://b/ns/demo");
    assert!(b.validate().is_ok());
    assert_eq!(b.timeout(), Duration::from_secs(10));
}

#[test]
fn a_prefix_is_used_as_given_without_its_slashes() {
    let mut o: ObjectStore = serde_json::from_value(serde_json::json!({
        "endpoint": "http://s3:8333", "bucket": "b", "prefix": "/prod/tfs/", "credentialsSecret": {"name": "c"},
    }))
    .unwrap();
    assert_eq!(o.url("ns", "demo"), "s3://b/prod/tfs");
    o.prefix = Some("/".into());
    assert_eq!(o.url("ns", "demo"), "s3://b/ns/demo");
}

/// What the admission rule lets through (digits and units) is what the nameserver's flags parse.
#[test]
fn durations_the_rule_admits_parse_and_others_are_refused() {
    let re = |s: &str| {
        // The rule's pattern, by hand: one or more <digits><unit>.
        let mut rest = s;
        if rest.is_empty() {
            return false;
        }
        while !rest.is_empty() {
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
            let unit = ["ms", "s", "m", "h", "d"].iter().find(|u| rest.starts_with(*u));
            match unit {
                Some(u) => rest = &rest[u.len()..],
                None => return false,
            }
        }
        true
    };
    for ok in ["10s", "1h", "7d", "1h30m", "500ms", "90s"] {
        assert!(re(ok), "{ok}");
        assert!(parse_duration("x", ok).is_ok(), "{ok}");
    }
    for bad in ["", "10", "1 hour", "-1s", "1y"] {
        assert!(!re(bad), "{bad}");
    }
    assert!(parse_duration("backup.retention", "0s").unwrap_err().contains("above zero"));
    assert!(parse_duration("backup.retention", "soon").unwrap_err().contains("backup.retention"));
}

#[test]
fn a_restore_has_exactly_one_target() {
    let fb = |v: serde_json::Value| -> FromBackup {
        let mut o = serde_json::json!({"objectStore": {"endpoint": "http://s3", "bucket": "b", "credentialsSecret": {"name": "c"}}});
        o.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        serde_json::from_value(o).unwrap()
    };
    assert_eq!(fb(serde_json::json!({"targetSeq": 42})).target(), Ok(RestoreTarget::Seq(42)));
    assert_eq!(fb(serde_json::json!({"latest": true})).target(), Ok(RestoreTarget::Latest));
    assert_eq!(
        fb(serde_json::json!({"targetTime": "2026-11-29T10:00:00Z"})).target(),
        Ok(RestoreTarget::Time("2026-11-29T10:00:00Z".into()))
    );
    assert_eq!(
        fb(serde_json::json!({"targetTime": "2026-11-29T11:00:00+01:00"})).target(),
        Ok(RestoreTarget::Time("2026-11-29T10:00:00Z".into())),
        "in UTC, as the restore tool takes it"
    );
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"latest": false}),
        serde_json::json!({"targetSeq": 1, "latest": true}),
        serde_json::json!({"targetSeq": 1, "targetTime": "2026-11-29T10:00:00Z"}),
        serde_json::json!({"targetTime": "yesterday"}),
    ] {
        assert!(fb(bad.clone()).target().is_err(), "{bad}");
    }
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human_size(512), "512B");
    assert_eq!(human_size(1536), "1.5KiB");
    assert_eq!(human_size(3 * 1024 * 1024 + 200 * 1024), "3.2MiB");
    assert_eq!(human_size(5 << 40), "5.0TiB");
}

#[test]
fn the_crds_carry_the_backup_rules_and_columns() {
    let y = crate::crd::crd_yaml();
    for needle in [
        "bootstrap is chosen at creation",
        "bootstrap.fromBackup needs exactly one of targetSeq, targetTime or latest: true",
        "objectStore.bucket must not be empty",
        "backup.retention must be a duration",
        "bootstrap.fromBackup.targetTime must be an RFC 3339 time",
        "maxLength: 63",
    ] {
        assert!(y.contains(needle), "TfsNameserver CRD lacks {needle:?}");
    }
    let b = backup_crd_yaml();
    for needle in [
        "kind: TfsBackup",
        "plural: tfsbackups",
        "name: PHASE",
        "name: SEQ",
        "name: SIZE",
        "jsonPath: .status.size",
        "nameserver is immutable",
        "subresources",
    ] {
        assert!(b.contains(needle), "TfsBackup CRD lacks {needle:?}");
    }
}

/// `kubectl explain tfsbackup.status...` describes every field.
#[test]
fn every_tfsbackup_field_is_described() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(TfsBackup::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    for top in ["spec", "status"] {
        for (k, p) in schema["properties"][top]["properties"].as_object().unwrap() {
            if k != "conditions" && p.get("description").is_none() {
                missing.push(format!("{top}.{k}"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:?}");
}

/// The examples read as the types (the API server's schema is the same types').
#[test]
fn the_backup_examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let b: crate::crd::TfsNameserver = serde_yaml::from_str(&read("tfsnameserver-backup.yaml")).unwrap();
    let spec = b.spec.backup.unwrap();
    assert!(spec.validate().is_ok());
    assert_eq!(spec.object_store.credentials_secret.name, "tfs-backup-s3");
    let r: crate::crd::TfsNameserver = serde_yaml::from_str(&read("tfsnameserver-restore.yaml")).unwrap();
    assert_eq!(r.spec.bootstrap.unwrap().from_backup.unwrap().target(), Ok(RestoreTarget::Latest));
    let k: TfsBackup = serde_yaml::from_str(&read("tfsbackup.yaml")).unwrap();
    assert_eq!(k.spec.nameserver, "demo-backup");
}
