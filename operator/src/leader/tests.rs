use std::time::Instant;

use super::*;
use crate::lease::LeaseClock;

const S: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn held(by: &str) -> Seen {
    Seen { holder: by.into(), duration: Some(4 * S) }
}

fn standby(lease: Option<Option<&Seen>>, unchanged_for: Duration) -> Step {
    decide(&Input {
        me: "op-a",
        role: Role::Standby { since_attempt: None },
        lease,
        unchanged_for,
        timing: Timing::default(),
    })
}

fn leader(since_renew: Duration, since_attempt: Duration) -> Step {
    let mine = held("op-a");
    decide(&Input {
        me: "op-a",
        role: Role::Leader { since_renew, since_attempt },
        lease: Some(Some(&mine)),
        unchanged_for: Duration::ZERO,
        timing: Timing::default(),
    })
}

#[test]
fn the_defaults_are_consistent() {
    let t = Timing::default();
    assert_eq!(t.check(), Ok(()));
    assert_eq!((t.lease_duration, t.renew_deadline, t.renew_period, t.retry_period), (4 * S, 3 * S, S, S));
    let bad = Timing { renew_deadline: 4 * S, ..t };
    assert!(bad.check().unwrap_err().contains("longer than its renew deadline"));
    let bad = Timing { renew_period: 3 * S, ..t };
    assert!(bad.check().unwrap_err().contains("longer than the renew period"));
    assert!(Timing { retry_period: Duration::ZERO, ..t }.check().is_err());
}

#[test]
fn a_held_lease_is_taken_only_after_a_full_duration_unchanged_on_our_clock() {
    let other = held("op-b");
    assert_eq!(standby(Some(Some(&other)), Duration::ZERO), Step::Wait(4 * S), "just seen: a whole lease to wait");
    assert_eq!(standby(Some(Some(&other)), ms(3900)), Step::Wait(ms(100)));
    assert_eq!(
        standby(Some(Some(&other)), 4 * S),
        Step::Acquire(Takeover::Expired { holder: "op-b".into(), for_: 4 * S })
    );
}

#[test]
fn the_holders_longer_duration_is_honoured() {
    // A holder configured with a longer lease than ours keeps it for its own duration.
    let other = Seen { holder: "op-b".into(), duration: Some(15 * S) };
    assert_eq!(standby(Some(Some(&other)), 5 * S), Step::Wait(10 * S));
    assert!(matches!(standby(Some(Some(&other)), 15 * S), Step::Acquire(Takeover::Expired { .. })));
    // A shorter declared duration does not shorten ours.
    let short = Seen { holder: "op-b".into(), duration: Some(S) };
    assert_eq!(standby(Some(Some(&short)), 2 * S), Step::Wait(2 * S));
}

#[test]
fn a_released_lease_is_taken_at_once() {
    let released = Seen { holder: String::new(), duration: Some(4 * S) };
    assert_eq!(standby(Some(Some(&released)), Duration::ZERO), Step::Acquire(Takeover::Released));
}

#[test]
fn a_lease_of_our_own_pod_is_taken_at_once() {
    // The container restarted (pod names are identities): the previous process is dead.
    assert_eq!(standby(Some(Some(&held("op-a"))), Duration::ZERO), Step::Acquire(Takeover::OurOwn));
}

#[test]
fn a_missing_lease_is_created_only_after_a_full_duration() {
    // It may have been deleted under a live leader, which re-creates it at its next renew.
    assert_eq!(standby(Some(None), Duration::ZERO), Step::Wait(4 * S));
    assert_eq!(standby(Some(None), 4 * S), Step::Acquire(Takeover::Create));
}

#[test]
fn nothing_is_decided_before_the_lease_was_read() {
    assert_eq!(standby(None, 10 * S), Step::Wait(S));
}

#[test]
fn a_failed_attempt_is_retried_after_the_retry_period() {
    let released = Seen::default();
    let step = |a: Duration| {
        decide(&Input {
            me: "op-a",
            role: Role::Standby { since_attempt: Some(a) },
            lease: Some(Some(&released)),
            unchanged_for: 10 * S,
            timing: Timing::default(),
        })
    };
    assert_eq!(step(ms(300)), Step::Wait(ms(700)));
    assert_eq!(step(S), Step::Acquire(Takeover::Released));
}

#[test]
fn the_leader_renews_every_period() {
    assert_eq!(leader(Duration::ZERO, Duration::ZERO), Step::Wait(S));
    assert_eq!(leader(ms(400), ms(400)), Step::Wait(ms(600)));
    assert_eq!(leader(S, S), Step::Renew);
}

#[test]
fn a_failed_renew_is_retried_but_never_past_the_deadline() {
    // Renewed 1.2 s ago, the attempt 0.2 s ago failed: retry 0.8 s later.
    assert_eq!(leader(ms(1200), ms(200)), Step::Wait(ms(800)));
    assert_eq!(leader(ms(2200), S), Step::Renew);
    // The wait is cut at the deadline, where the leader stops.
    assert_eq!(leader(ms(2900), ms(100)), Step::Wait(ms(100)));
}

#[test]
fn the_leader_stops_at_the_renew_deadline_before_anyone_may_take_over() {
    let t = Timing::default();
    assert_eq!(leader(3 * S, ms(500)), Step::Stop(Lost::RenewDeadline { since_renew: 3 * S }));
    // A standby that saw the same renew no earlier than it began waits the whole lease: the
    // leader has stopped a full second before (renew deadline < lease duration).
    assert!(t.renew_deadline < t.lease_duration);
    assert!(matches!(standby(Some(Some(&held("op-b"))), t.renew_deadline), Step::Wait(_)));
}

#[test]
fn a_leader_that_reads_another_holder_stops() {
    let other = held("op-b");
    let step = decide(&Input {
        me: "op-a",
        role: Role::Leader { since_renew: ms(100), since_attempt: ms(100) },
        lease: Some(Some(&other)),
        unchanged_for: Duration::ZERO,
        timing: Timing::default(),
    });
    assert_eq!(step, Step::Stop(Lost::Taken { holder: "op-b".into() }));
    assert!(Lost::Taken { holder: String::new() }.describe().contains("released by someone else"));
}

#[test]
fn takeovers_say_why() {
    let e = Takeover::Expired { holder: "op-b".into(), for_: ms(4100) };
    assert_eq!(e.describe(), "op-b stopped renewing (the Lease unchanged for 4.1s)");
    assert!(Lost::RenewDeadline { since_renew: 3 * S }.describe().contains("3.0s"));
}

/// The whole election over a simulated clock, both processes deciding with `decide`: op-a leads
/// and renews until, at `cut_at`, its renews stop reaching the API server (it may be dead, or alive
/// and cut off). op-b watches (sees each change at once) and takes over. Returns when op-a stopped
/// acting (None if it never noticed: it was dead), when op-b took over, and op-a's last renew.
fn simulate(cut_at: Duration, alive: bool) -> (Option<Duration>, Duration, Duration) {
    let t = Timing::default();
    let tick = ms(10);
    let t0 = Instant::now();
    let mut clock = LeaseClock::default();
    let (mut rv, mut renewed, mut attempted) = (1u64, Duration::ZERO, Duration::ZERO);
    let mut a_stopped = None;
    let mut now = Duration::ZERO;
    loop {
        if (now < cut_at || alive) && a_stopped.is_none() {
            let mine = held("op-a");
            let step = decide(&Input {
                me: "op-a",
                role: Role::Leader { since_renew: now - renewed, since_attempt: now - attempted },
                lease: Some(Some(&mine)),
                unchanged_for: Duration::ZERO,
                timing: t,
            });
            match step {
                Step::Renew if now < cut_at => (rv, renewed, attempted) = (rv + 1, now, now),
                Step::Renew => attempted = now, // fails: the API server is out of reach
                Step::Stop(_) => a_stopped = Some(now),
                Step::Wait(_) => {}
                Step::Acquire(_) => unreachable!("a leader never acquires"),
            }
        }
        let seen = held("op-a");
        let unchanged_for = clock.observe(&rv.to_string(), t0 + now);
        let step = decide(&Input {
            me: "op-b",
            role: Role::Standby { since_attempt: None },
            lease: Some(Some(&seen)),
            unchanged_for,
            timing: t,
        });
        if let Step::Acquire(_) = step {
            return (a_stopped, now, renewed);
        }
        now += tick;
        assert!(now < 60 * S, "no takeover");
    }
}

#[test]
fn a_standby_takes_over_one_lease_after_the_last_renew_it_saw() {
    let t = Timing::default();
    for cut in [ms(10_000), ms(10_450), ms(10_990)] {
        let (_, took, renewed) = simulate(cut, false);
        assert!(took >= renewed + t.lease_duration, "cut {cut:?}: taken at {took:?}, last renew {renewed:?}");
        assert!(took <= cut + t.lease_duration, "cut {cut:?}: taken at {took:?}, not within one lease of the loss");
    }
}

#[test]
fn a_cut_off_leader_stops_acting_before_the_standby_takes_over() {
    let t = Timing::default();
    for cut in [ms(10_000), ms(10_450), ms(10_990)] {
        let (stopped, took, renewed) = simulate(cut, true);
        let stopped = stopped.expect("the cut-off leader stops");
        assert_eq!(stopped, renewed + t.renew_deadline, "cut {cut:?}");
        assert!(
            took >= stopped + (t.lease_duration - t.renew_deadline),
            "cut {cut:?}: stopped {stopped:?}, taken {took:?}"
        );
    }
}

/// The driver against a mocked API server: a released Lease is taken at once (an update
/// conditioned on the version listed, at the next epoch), the term renewed every period, and a
/// shutdown hands the Lease back.
#[tokio::test]
async fn the_driver_takes_a_released_lease_renews_it_and_releases_it_on_shutdown() {
    use crate::fixtures::mock_client;
    let (client, mut api) = mock_client();
    let metrics = Arc::new(Metrics::default());
    let cfg = Config {
        namespace: "ops".into(),
        lease_name: LEASE_NAME.into(),
        identity: "op-a".into(),
        timing: Timing::default(),
    };
    let released = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "ops", "resourceVersion": "5"},
        "spec": {"holderIdentity": null, "leaseTransitions": 3, "leaseDurationSeconds": 4},
    });
    let (writes_tx, mut writes) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    let server = tokio::spawn(async move {
        let mut rv = 5;
        let mut held = Vec::new(); // watch requests, never answered
        while let Some((req, send)) = api.0.next_request().await {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let method = req.method().as_str().to_string();
            let event = path.starts_with("/apis/events.k8s.io/v1/namespaces/ops/");
            assert!(event || path.starts_with("/apis/coordination.k8s.io/v1/namespaces/ops/leases"), "{path}");
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let reply = |code: u16, v: &serde_json::Value| {
                http::Response::builder()
                    .status(code)
                    .body(kube::client::Body::from(serde_json::to_vec(v).unwrap()))
                    .unwrap()
            };
            match method.as_str() {
                "GET" if query.contains("watch=true") => held.push(send),
                "GET" => {
                    assert!(query.contains("fieldSelector=metadata.name%3Dtfs-operator-leader"), "{query}");
                    let list = serde_json::json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                        "metadata": {"resourceVersion": "5"}, "items": [released.clone()],
                    });
                    send.send_response(reply(200, &list));
                }
                "PUT" => {
                    let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(path, format!("/apis/coordination.k8s.io/v1/namespaces/ops/leases/{LEASE_NAME}"));
                    assert_eq!(body["metadata"]["resourceVersion"], rv.to_string(), "conditioned on the version read");
                    rv += 1;
                    body["metadata"]["resourceVersion"] = rv.to_string().into();
                    send.send_response(reply(200, &body));
                    let _ = writes_tx.send(body);
                }
                "POST" if event => {
                    let ev: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(ev["reason"], "LeaderElected");
                    assert_eq!(
                        (ev["regarding"]["kind"].as_str(), ev["regarding"]["name"].as_str()),
                        (Some("Lease"), Some(LEASE_NAME))
                    );
                    assert!(
                        ev["note"].as_str().unwrap().contains("op-a leads: the previous leader released the Lease"),
                        "{ev}"
                    );
                    send.send_response(reply(201, &ev));
                    let _ = events_tx.send(());
                }
                other => panic!("unexpected {other} {path}"),
            }
        }
    });
    let mut election = Election::start(client, cfg, metrics.clone());
    let term = election.term.clone();
    assert!(!term.running(), "no term before the Lease is taken");
    assert!(tokio::time::timeout(Duration::from_secs(3), election.leading()).await.expect("leads in time"));
    assert!(term.running(), "the term runs once the Lease is taken");
    let taken = writes.recv().await.unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "op-a");
    assert_eq!(taken["spec"]["leaseTransitions"], 4, "the next epoch");
    assert_eq!(taken["spec"]["leaseDurationSeconds"], 4);
    assert_eq!(metrics.leader.get(), 1);
    tokio::time::timeout(Duration::from_secs(3), events.recv()).await.expect("an Event on the Lease");
    let t0 = Instant::now();
    let renewed = tokio::time::timeout(Duration::from_secs(3), writes.recv()).await.expect("a renew").unwrap();
    assert_eq!(renewed["spec"]["holderIdentity"], "op-a");
    assert_eq!(renewed["spec"]["leaseTransitions"], 4, "a renew keeps the epoch");
    assert!(t0.elapsed() >= Duration::from_millis(800), "renewed after {:?}", t0.elapsed());
    election.shutdown().await;
    let gone = tokio::time::timeout(Duration::from_secs(3), writes.recv()).await.expect("a release").unwrap();
    assert_eq!(gone["spec"]["holderIdentity"], serde_json::Value::Null);
    assert!(!term.running(), "the term ends with the release");
    assert_eq!(metrics.leader.get(), 0);
    server.abort();
}

/// The driver against a mocked API server: a Lease held by another is taken only once unchanged
/// for the lease duration after the last change the watch showed, conditioned on that version.
#[tokio::test]
async fn the_driver_waits_a_full_lease_after_the_last_change_it_watched() {
    use crate::fixtures::mock_client;
    let (client, mut api) = mock_client();
    let timing = Timing {
        lease_duration: Duration::from_millis(400),
        renew_deadline: Duration::from_millis(300),
        renew_period: Duration::from_millis(100),
        retry_period: Duration::from_millis(100),
    };
    let cfg = Config { namespace: "ops".into(), lease_name: LEASE_NAME.into(), identity: "op-a".into(), timing };
    let lease = |rv: &str| {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": "ops", "resourceVersion": rv},
            "spec": {"holderIdentity": "op-b", "leaseTransitions": 7},
        })
    };
    let t0 = Instant::now();
    let (put_tx, mut puts) = tokio::sync::mpsc::unbounded_channel::<(Duration, serde_json::Value)>();
    let server = tokio::spawn(async move {
        let mut watches = 0;
        let mut held = Vec::new();
        let reply = |code: u16, bytes: Vec<u8>| {
            http::Response::builder().status(code).body(kube::client::Body::from(bytes)).unwrap()
        };
        while let Some((req, send)) = api.0.next_request().await {
            let query = req.uri().query().unwrap_or_default().to_string();
            let method = req.method().as_str().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            match method.as_str() {
                "GET" if query.contains("watch=true") => {
                    watches += 1;
                    if watches == 1 {
                        // op-b renews 200 ms in.
                        let ev = serde_json::json!({"type": "MODIFIED", "object": lease("6")});
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let mut line = serde_json::to_vec(&ev).unwrap();
                            line.push(b'\n');
                            send.send_response(reply(200, line));
                        });
                    } else {
                        held.push(send);
                    }
                }
                "GET" => {
                    let list = serde_json::json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                        "metadata": {"resourceVersion": "5"}, "items": [lease("5")],
                    });
                    send.send_response(reply(200, serde_json::to_vec(&list).unwrap()));
                }
                "PUT" => {
                    let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let _ = put_tx.send((t0.elapsed(), body.clone()));
                    body["metadata"]["resourceVersion"] = "7".into();
                    send.send_response(reply(200, serde_json::to_vec(&body).unwrap()));
                }
                _ => send.send_response(reply(201, bytes.to_vec())),
            }
        }
    });
    let mut election = Election::start(client, cfg, Arc::new(Metrics::default()));
    assert!(tokio::time::timeout(Duration::from_secs(3), election.leading()).await.expect("leads in time"));
    let (at, body) = puts.recv().await.unwrap();
    assert!(at >= Duration::from_millis(580), "taken {at:?} after start: before the lease ran out");
    assert!(at < Duration::from_millis(1500), "taken {at:?} after start");
    assert_eq!(body["metadata"]["resourceVersion"], "6", "conditioned on the version last watched");
    assert_eq!(
        (body["spec"]["holderIdentity"].as_str(), body["spec"]["leaseTransitions"].as_i64()),
        (Some("op-a"), Some(8))
    );
    // (stopped before the mock goes: a leader that cannot renew exits the process)
    election.shutdown().await;
    server.abort();
}
