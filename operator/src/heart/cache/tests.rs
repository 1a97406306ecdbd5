use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn lease_at(rv: &str, holder: Option<&str>) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some("demo".into()), resource_version: Some(rv.into()), ..Default::default() },
        spec: Some(LeaseSpec { holder_identity: holder.map(String::from), ..Default::default() }),
    }
}

fn rv(l: Option<&Lease>) -> Option<&str> {
    l?.metadata.resource_version.as_deref()
}

#[test]
fn the_lease_is_taken_from_the_watch_only_while_it_vouches_for_it() {
    let t0 = Instant::now();
    let mut c = LeaseCache::default();
    assert!(c.current(t0).is_none(), "nothing known: read it");
    assert!(!c.on_event(Ok(watcher::Event::Init), t0));
    assert!(!c.on_event(Ok(watcher::Event::InitApply(lease_at("5", Some("demo-0")))), t0));
    assert!(c.current(t0).is_none(), "a list in progress vouches for nothing yet");
    assert!(c.on_event(Ok(watcher::Event::InitDone), t0), "known: look now");
    assert_eq!(rv(c.current(t0)), Some("5"));
    assert!(c.on_event(Ok(watcher::Event::Apply(lease_at("6", Some("demo-1")))), t0 + MS));
    assert_eq!(rv(c.current(t0 + MS)), Some("6"));
    // Our own write (conditioned on 6) is newer than anything watched so far, and a watch that
    // shows 6 afterwards (a list begun before the write, say) is behind it.
    c.wrote(Some("6".into()), lease_at("7", Some("demo-1")), t0 + 2 * MS);
    assert_eq!(rv(c.current(t0 + 2 * MS)), Some("7"));
    assert!(c.on_event(Ok(watcher::Event::Apply(lease_at("6", Some("demo-1")))), t0 + 2 * MS));
    assert_eq!(rv(c.current(t0 + 2 * MS)), Some("7"), "kept: the watch is behind our write");
    // Nothing confirmed it for RESYNC (a watch may stall without failing): read it.
    assert!(c.current(t0 + 2 * MS + RESYNC).is_none());
    // A write refused for a changed Lease: read it before acting.
    c.saw(lease_at("8", Some("demo-1")), t0 + 3 * MS);
    c.forget();
    assert!(c.current(t0 + 3 * MS).is_none());
    // A failed watch vouches for nothing until it shows the Lease again.
    c.saw(lease_at("9", Some("demo-1")), t0 + 4 * MS);
    assert!(!c.on_event(Err(watcher::Error::NoResourceVersion), t0 + 4 * MS));
    assert!(c.current(t0 + 4 * MS).is_none());
    c.saw(lease_at("9", Some("demo-1")), t0 + 5 * MS);
    assert!(c.current(t0 + 5 * MS).is_none(), "a read alone does not make the watch work again");
    assert!(c.on_event(Ok(watcher::Event::Apply(lease_at("10", None))), t0 + 6 * MS));
    assert_eq!(rv(c.current(t0 + 6 * MS)), Some("10"));
    // A deleted Lease is read (and found missing) at each step.
    assert!(c.on_event(Ok(watcher::Event::Delete(lease_at("10", None))), t0 + 7 * MS));
    assert!(c.current(t0 + 7 * MS).is_none());
}
