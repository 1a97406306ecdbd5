use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::*;

#[test]
fn expiry_counts_from_the_last_change_seen() {
    let t0 = Instant::now();
    let mut c = LeaseClock::default();
    assert_eq!(c.observe("1", t0), Duration::ZERO);
    assert_eq!(c.observe("1", t0 + Duration::from_secs(3)), Duration::from_secs(3));
    assert_eq!(c.observe("2", t0 + Duration::from_secs(4)), Duration::ZERO, "a renew restarts the count");
    assert_eq!(c.observe("2", t0 + Duration::from_secs(10)), Duration::from_secs(6));
}

#[test]
fn sets_parse_leniently() {
    assert_eq!(split_set(" a, b,,c "), vec!["a", "b", "c"]);
    assert!(split_set("").is_empty());
}

/// A Lease held by `holder` at `epoch`, with every annotation of the protocol set.
fn held(holder: Option<&str>, epoch: i32) -> Lease {
    let ann: BTreeMap<String, String> = [
        (ANN_SYNC_SET, "demo-1,demo-2"),
        (ANN_SYNC_SET_VERSION, "7"),
        (ANN_HANDOVER_TO, "demo-1"),
        (ANN_HANDOVER_REFUSED, "earlier refusal"),
        (ANN_RELEASE_REASON, "nameserver down"),
        (ANN_RELEASED_BY, "demo-2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Lease {
        metadata: ObjectMeta {
            name: Some("demo-lease".into()),
            resource_version: Some("42".into()),
            annotations: Some(ann),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_transitions: Some(epoch),
            lease_duration_seconds: Some(5),
            ..Default::default()
        }),
    }
}

fn at(secs: i64) -> MicroTime {
    MicroTime(Timestamp::from_second(secs).unwrap())
}

#[test]
fn a_promotion_takes_the_lease_at_its_epoch_with_nothing_published_or_pending() {
    let l = take(&held(None, 3), "demo-1", Epoch(4), Taken::Promoted { duration_seconds: 9 }, at(100));
    let v = LeaseView::of(&l);
    assert_eq!((v.holder.as_str(), v.epoch), ("demo-1", Epoch(4)));
    assert_eq!(v.resource_version, "42", "written conditioned on the version decided on");
    assert!(v.sync_set.is_empty() && v.sync_set_version == 0, "the old master's set vouches for nothing now");
    assert_eq!((v.handover_to, v.handover_refused, v.release_reason, v.released_by), (None, None, None, None));
    let spec = l.spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(9));
    assert_eq!((spec.acquire_time, spec.renew_time), (Some(at(100)), Some(at(100))));
}

#[test]
fn a_handover_takes_the_lease_for_the_target_and_says_who_released_it() {
    let l = take(&held(Some("demo-0"), 3), "demo-1", Epoch(4), Taken::HandedOver { by: "demo-0" }, at(100));
    let v = LeaseView::of(&l);
    assert_eq!((v.holder.as_str(), v.epoch), ("demo-1", Epoch(4)));
    assert!(v.sync_set.is_empty() && v.sync_set_version == 0);
    assert_eq!((v.handover_to, v.handover_refused), (None, None), "the request is done");
    assert_eq!((v.released_by.as_deref(), v.release_reason.as_deref()), (Some("demo-0"), Some(SWITCHOVER)));
    assert_eq!(l.spec.unwrap().lease_duration_seconds, Some(5), "the duration stays the operator's");
}

#[test]
fn a_renewal_publishes_the_sync_set_and_turns_down_a_refused_handover() {
    let members = vec!["demo-2".to_string()];
    let set = SyncSet { members: members.clone(), version: 8 };
    let l = renew(&held(Some("demo-0"), 3), at(200), 6, Some(&set), Some("demo-1: not in the sync set".into()));
    let v = LeaseView::of(&l);
    assert_eq!((v.holder.as_str(), v.epoch), ("demo-0", Epoch(3)), "a renewal keeps holder and epoch");
    assert_eq!(v.resource_version, "42", "written conditioned on the version decided on");
    assert_eq!((v.sync_set, v.sync_set_version), (members, 8));
    assert_eq!(v.handover_to, None);
    assert_eq!(v.handover_refused.as_deref(), Some("demo-1: not in the sync set"));
    let spec = l.spec.unwrap();
    assert_eq!((spec.renew_time, spec.lease_duration_seconds), (Some(at(200)), Some(6)));
}

#[test]
fn a_renewal_before_the_nameserver_is_master_publishes_nothing_and_keeps_a_request() {
    let l = renew(&held(Some("demo-0"), 3), at(200), 5, None, None);
    let v = LeaseView::of(&l);
    assert_eq!((v.sync_set.len(), v.sync_set_version), (2, 7), "what was published stays");
    assert_eq!(v.handover_to.as_deref(), Some("demo-1"), "a request not refused stays for the next step");
    assert_eq!(v.handover_refused.as_deref(), Some("earlier refusal"));
}

#[test]
fn a_release_empties_the_holder_keeps_the_epoch_and_says_why() {
    let l = release(&held(Some("demo-0"), 3), "demo-0", "nameserver down: connection refused").unwrap();
    let v = LeaseView::of(&l);
    assert!(v.released());
    assert_eq!(v.epoch, Epoch(3), "the next holder's epoch is above this one");
    assert_eq!(v.resource_version, "42", "written conditioned on the version decided on");
    assert_eq!(v.released_by.as_deref(), Some("demo-0"));
    assert_eq!(v.release_reason.as_deref(), Some("nameserver down: connection refused"));
}

#[test]
fn only_the_holder_releases() {
    assert!(release(&held(Some("demo-1"), 3), "demo-0", "nameserver refused mastership").is_none(), "another's");
    assert!(release(&held(None, 3), "demo-0", "nameserver down").is_none(), "already released");
}

#[test]
fn asking_for_a_handover_names_the_target_and_drops_an_old_refusal() {
    let l = ask_handover(&held(Some("demo-0"), 3), "demo-2");
    let v = LeaseView::of(&l);
    assert_eq!(v.handover_to.as_deref(), Some("demo-2"));
    assert_eq!(v.handover_refused, None);
    assert_eq!((v.holder.as_str(), v.epoch, v.resource_version.as_str()), ("demo-0", Epoch(3), "42"));
}

#[test]
fn a_missing_or_negative_count_is_epoch_zero_and_a_huge_epoch_saturates() {
    assert_eq!(epoch_of(None), Epoch::ZERO);
    assert_eq!(epoch_of(Some(-3)), Epoch::ZERO);
    assert_eq!(epoch_of(Some(7)), Epoch(7));
    assert_eq!(transitions_of(Epoch(7)), 7);
    assert_eq!(transitions_of(Epoch(u64::MAX)), i32::MAX);
}
