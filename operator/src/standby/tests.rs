use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::crd::ReplicationMode;
use crate::failover::{self, Decision, Reason};
use crate::instance::{Instance, NsStatus};
use crate::lease::{LeaseClock, LeaseView};

const S: Duration = Duration::from_secs(1);
/// The heartbeat Lease's duration (spec.lease.durationSeconds).
const DURATION: Duration = Duration::from_secs(5);

/// The heartbeat Lease `ns/demo` at version `rv`, held by demo-0 with demo-1 in its sync set.
fn lease(rv: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            annotations: Some([(crate::names::ANN_SYNC_SET.to_string(), "demo-1".to_string())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("demo-0".into()),
            lease_transitions: Some(3),
            ..Default::default()
        }),
    }
}

fn apply(s: &mut Sightings, ev: watcher::Event<Lease>, at: Instant) {
    s.apply(&Ok(ev), at);
}

/// A standby whose watch listed the Lease at version `rv` at `at`.
fn listed(rv: &str, at: Instant) -> Sightings {
    let mut s = Sightings::default();
    apply(&mut s, watcher::Event::Init, at);
    apply(&mut s, watcher::Event::InitApply(lease(rv)), at);
    apply(&mut s, watcher::Event::InitDone, at);
    s
}

/// What the new leader's first reconcile decides at `now` with the clocks handed over, reading
/// the Lease at `rv` (controller.rs: `clocks[lease_key].observe(rv, now)`, then `failover::decide`):
/// demo-0 (the holder) is gone, demo-1 is a ready slave of the published sync set.
fn first_reconcile(clocks: &mut HashMap<String, LeaseClock>, rv: &str, now: Instant) -> Decision {
    let unchanged_for = clocks.entry(Sightings::key("ns", "demo")).or_default().observe(rv, now);
    let lv = LeaseView::of(&lease(rv));
    let instances = [Instance {
        pod: "demo-1".into(),
        ordinal: 1,
        ready: true,
        status: Some(NsStatus { durable_seq: 10, epoch: 3, ..Default::default() }),
    }];
    failover::decide(&failover::Input {
        lease: &lv,
        unchanged_for,
        lease_duration: DURATION,
        instances: &instances,
        mode: ReplicationMode::Sync,
        restore: None,
    })
}

fn promoted(d: &Decision) -> bool {
    matches!(d, Decision::Promote { pod, reason: Reason::Expired { .. }, epoch: crate::lease::Epoch(4) } if pod == "demo-1")
}

/// The node of demo-0 and the node of the old leader are lost together: the standby watched the
/// Lease stop changing, took the leadership 4 s later, and the Lease had by then been silent for
/// more than its duration on the standby's clock: the first reconcile promotes, with no second
/// wait of a whole duration.
#[test]
fn a_standby_that_watched_a_lease_silent_for_its_duration_promotes_as_soon_as_it_leads() {
    let t0 = Instant::now();
    let mut s = listed("5", t0);
    apply(&mut s, watcher::Event::Apply(lease("6")), t0 + S); // demo-0's last renew
    // The leader's node is lost too; this process leads 4 s later, its controller starts after 1 s more.
    let mut clocks = s.into_clocks();
    let d = first_reconcile(&mut clocks, "6", t0 + S + DURATION);
    assert!(promoted(&d), "{d:?}");
    // Before the full duration since the last change it saw, it would not have.
    let mut early = Sightings::default();
    apply(&mut early, watcher::Event::Apply(lease("6")), t0 + S);
    let d = first_reconcile(&mut early.into_clocks(), "6", t0 + S + DURATION - Duration::from_millis(10));
    assert!(matches!(d, Decision::Steady { .. }), "{d:?}");
}

/// A standby that began watching only 2 s before it led (a restarted pod, say) counts from its
/// own first sighting: it waits the remainder of the duration, not a whole one, and not less.
#[test]
fn a_standby_that_started_watching_late_waits_the_remainder() {
    let t0 = Instant::now();
    let mut clocks = listed("6", t0).into_clocks();
    match first_reconcile(&mut clocks, "6", t0 + 2 * S) {
        Decision::Steady { recheck, .. } => {
            assert_eq!(recheck, 3 * S + Duration::from_millis(50), "the remainder, and the usual margin")
        }
        d => panic!("{d:?}"),
    }
    let d = first_reconcile(&mut clocks, "6", t0 + DURATION);
    assert!(promoted(&d), "{d:?}");
}

/// A renew seen while standing by restarts the count; one made after the hand-over (the controller
/// reads another version than the standby saw) restarts it too: nothing a sighting says outlives
/// a change of version.
#[test]
fn a_version_change_resets_the_count() {
    let t0 = Instant::now();
    let mut s = Sightings::default();
    apply(&mut s, watcher::Event::InitApply(lease("5")), t0);
    apply(&mut s, watcher::Event::Apply(lease("6")), t0 + 3 * S);
    let mut clocks = s.clone().into_clocks();
    match first_reconcile(&mut clocks, "6", t0 + 6 * S) {
        Decision::Steady { recheck, .. } => assert_eq!(recheck, 2 * S + Duration::from_millis(50)),
        d => panic!("{d:?}"),
    }
    // Renewed between the hand-over and the first read: counted from that read.
    let mut clocks = s.into_clocks();
    match first_reconcile(&mut clocks, "7", t0 + 9 * S) {
        Decision::Steady { recheck, .. } => assert_eq!(recheck, DURATION + Duration::from_millis(50)),
        d => panic!("{d:?}"),
    }
}

/// A watch that fails, or lists again, may have missed changes: every sighting goes, and the
/// relist's are made at the instant it shows them (reset, never extended).
#[test]
fn a_watch_restart_drops_every_sighting() {
    let t0 = Instant::now();
    let mut s = Sightings::default();
    apply(&mut s, watcher::Event::InitApply(lease("5")), t0);
    s.apply(&Err(watcher::Error::NoResourceVersion), t0 + S);
    assert!(s.is_empty(), "a failed watch keeps nothing");
    apply(&mut s, watcher::Event::Apply(lease("5")), t0 + 2 * S);
    apply(&mut s, watcher::Event::Init, t0 + 3 * S);
    assert!(s.is_empty(), "a relist starts from nothing");
    apply(&mut s, watcher::Event::InitApply(lease("5")), t0 + 4 * S);
    let clocks = s.clone().into_clocks();
    assert_eq!(clocks[&Sightings::key("ns", "demo")].sighting(), Some(("5", t0 + 4 * S)), "seen anew at the relist");
    // A deleted Lease is forgotten.
    apply(&mut s, watcher::Event::Delete(lease("5")), t0 + 5 * S);
    assert!(s.is_empty());
}

/// The watch against a mocked API server: the heartbeat Leases of the namespace, selected by the
/// controller's label, each recorded at the instant the list or an event showed it; `take` hands
/// over what was seen.
#[tokio::test]
async fn the_watch_records_each_version_when_it_arrives() {
    use crate::fixtures::mock_client;
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        let (mut watches, mut held) = (0, Vec::new());
        let reply = |v: Vec<u8>| http::Response::builder().status(200).body(kube::client::Body::from(v)).unwrap();
        while let Some((req, send)) = api.0.next_request().await {
            let (path, query) = (req.uri().path().to_string(), req.uri().query().unwrap_or_default().to_string());
            assert_eq!(path, "/apis/coordination.k8s.io/v1/namespaces/ns/leases");
            assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dtfs-operator"), "{query}");
            if query.contains("watch=true") {
                watches += 1;
                if watches == 1 {
                    // demo renews 300 ms after the list (one event, then the watch ends and the
                    // watcher watches again from there: that one is never answered).
                    let mut ev =
                        serde_json::to_vec(&serde_json::json!({"type": "MODIFIED", "object": lease("6")})).unwrap();
                    ev.push(b'\n');
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        send.send_response(reply(ev));
                    });
                } else {
                    held.push(send);
                }
            } else {
                let list = serde_json::json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                    "metadata": {"resourceVersion": "5"}, "items": [lease("5")],
                });
                send.send_response(reply(serde_json::to_vec(&list).unwrap()));
            }
        }
    });
    let t0 = Instant::now();
    let w = Watch::start(client, Some("ns"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listed = w.seen.lock().clone().into_clocks();
    let (rv, since) = listed[&Sightings::key("ns", "demo")].sighting().expect("seen in the list");
    assert_eq!(rv, "5");
    assert!(since >= t0 && since <= t0 + Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let clocks = w.take().into_clocks();
    let (rv, since) = clocks[&Sightings::key("ns", "demo")].sighting().expect("seen in the watch");
    assert_eq!(rv, "6", "the renew the watch showed");
    assert!(since >= t0 + Duration::from_millis(300), "recorded when it arrived: {:?}", since - t0);
    server.abort();
}
