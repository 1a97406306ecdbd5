use super::*;

fn id(client: u64, seq: u64) -> RequestId {
    RequestId { client, seq }
}

fn created(block_id: u64, record_seq: u64) -> Outcome {
    Outcome { kind: Kind::Create, block_id, record_seq, body: create_body(2) }
}

/// Everything a window answers, for comparing two windows.
fn answers(d: &Dedup, ids: impl Iterator<Item = RequestId>) -> Vec<Lookup> {
    ids.map(|i| d.lookup(i, Kind::Create, 0, create_body(2))).collect()
}

#[test]
fn a_retry_gets_the_first_outcome_and_another_request_under_the_id_is_told_apart() {
    let mut d = Dedup::default();
    d.insert(id(1, 1), created(10, 5));
    let two = create_body(2);
    assert_eq!(d.lookup(id(1, 1), Kind::Create, 0, two), Lookup::Done(created(10, 5)));
    assert_eq!(d.lookup(id(1, 2), Kind::Create, 0, two), Lookup::New);
    assert_eq!(d.lookup(id(2, 1), Kind::Create, 0, two), Lookup::New);
    // Another body (3 replicas), kind or block under the same id: refused, never that outcome.
    assert!(matches!(d.lookup(id(1, 1), Kind::Create, 0, create_body(3)), Lookup::OtherRequest(_)));
    assert!(matches!(d.lookup(id(1, 1), Kind::Remove, 10, 0), Lookup::OtherRequest(_)));
    let commit = Outcome { kind: Kind::Commit, block_id: 10, record_seq: 6, body: commit_body(2, 100, 1, 0, 0) };
    d.insert(id(1, 2), commit);
    assert_eq!(d.lookup(id(1, 2), Kind::Commit, 10, commit_body(2, 100, 1, 0, 0)), Lookup::Done(commit));
    assert!(matches!(d.lookup(id(1, 2), Kind::Commit, 11, commit.body), Lookup::OtherRequest(_)));
    assert!(matches!(d.lookup(id(1, 2), Kind::Commit, 10, commit_body(3, 100, 1, 0, 0)), Lookup::OtherRequest(_)));
}

#[test]
fn the_window_keeps_the_newest_entries_and_refuses_an_evicted_id_as_beyond_it() {
    let mut d = Dedup::default();
    let n = WINDOW as u64 + 10;
    for s in 1..=n {
        // Client 1 sends every other request; client 2 the rest.
        d.insert(id(1 + s % 2, s), created(s, s));
    }
    assert_eq!(d.len(), WINDOW);
    let two = create_body(2);
    // The ten oldest were evicted: beyond the window for their clients, not new.
    for s in 1..=10 {
        assert!(matches!(d.lookup(id(1 + s % 2, s), Kind::Create, 0, two), Lookup::Beyond { .. }), "{s}");
    }
    for s in [11, n / 2, n] {
        assert_eq!(d.lookup(id(1 + s % 2, s), Kind::Create, 0, two), Lookup::Done(created(s, s)));
    }
    // A new request of either client (a higher seq) is new.
    assert_eq!(d.lookup(id(1, n + 1), Kind::Create, 0, two), Lookup::New);
    assert_eq!(d.lookup(id(2, n + 2), Kind::Create, 0, two), Lookup::New);
}

#[test]
fn an_idle_clients_floor_is_kept_for_the_newest_forgotten_clients_only() {
    let mut d = Dedup::default();
    // FORGOTTEN_CLIENTS + 2 clients send one request each, then one busy client evicts them all.
    let idle = FORGOTTEN_CLIENTS as u64 + 2;
    for c in 1..=idle {
        d.insert(id(c, 1), created(c, c));
    }
    for s in 1..=WINDOW as u64 {
        d.insert(id(u64::MAX, s), created(idle + s, idle + s));
    }
    let two = create_body(2);
    // The two idle the longest are forgotten; the others still refuse their old id.
    assert_eq!(d.lookup(id(1, 1), Kind::Create, 0, two), Lookup::New);
    assert_eq!(d.lookup(id(2, 1), Kind::Create, 0, two), Lookup::New);
    assert_eq!(d.lookup(id(3, 1), Kind::Create, 0, two), Lookup::Beyond { floor: 1 });
    assert_eq!(d.lookup(id(idle, 1), Kind::Create, 0, two), Lookup::Beyond { floor: 1 });
    assert_eq!(d.clients.len(), FORGOTTEN_CLIENTS + 1, "the forgotten plus the busy client");
}

#[test]
fn a_view_restores_the_same_window_and_it_evicts_the_same_way() {
    let mut d = Dedup::default();
    let n = WINDOW as u64 + 3 * CHUNK as u64 + 7;
    for s in 1..=n {
        d.insert(id(s % 5 + 1, s), created(s, s));
    }
    let view = d.view();
    let mut r = Dedup::from_view(&view);
    let all = || (1..=n + 40).map(|s| id(s % 5 + 1, s));
    assert_eq!(answers(&r, all()), answers(&d, all()));
    // The snapshot keeps its view while the window goes on (shared chunks are copied first).
    for s in n + 1..=n + 40 {
        d.insert(id(s % 5 + 1, s), created(s, s));
        r.insert(id(s % 5 + 1, s), created(s, s));
    }
    assert_eq!(answers(&r, all()), answers(&d, all()));
    assert_eq!(view.len(), WINDOW);
    assert_eq!(view.entries().next().map(|e| e.id.seq), Some(n - WINDOW as u64 + 1));
}
