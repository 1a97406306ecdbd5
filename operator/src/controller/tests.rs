use super::*;
use crate::instance::NsStatus;

fn inst(pod: &str, ordinal: usize, durable: u64, master: bool) -> Instance {
    Instance {
        pod: pod.into(),
        ordinal,
        ready: true,
        status: Some(NsStatus { master, writable: master, durable_seq: durable, ..Default::default() }),
    }
}

#[test]
fn status_reports_roles_lag_and_sync_set() {
    let t = crate::build::tests::demo();
    let lv =
        LeaseView { holder: "demo-0".into(), transitions: 3, sync_set: vec!["demo-1".into()], ..Default::default() };
    let xs = [inst("demo-0", 0, 100, true), inst("demo-1", 1, 90, false)];
    let s = compute_status(&t, &TfsNameserverStatus::default(), Phase::Healthy, &lv, &xs, 2);
    assert_eq!(s.master.as_deref(), Some("demo-0"));
    assert_eq!(s.epoch, Some(3));
    assert_eq!(s.ready.as_deref(), Some("2/2"));
    assert_eq!(s.instances[1].lag, 10);
    assert!(s.instances[1].in_sync_set);
    assert_eq!(s.instances[0].role, "master");
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    let avail = s.conditions.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(avail.reason, "MasterServing");
    // Transition times survive an unchanged condition.
    let again = compute_status(&t, &s, Phase::Healthy, &lv, &xs, 2);
    assert_eq!(again.conditions, s.conditions);
}
