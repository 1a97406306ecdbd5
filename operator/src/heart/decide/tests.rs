//! One test per row of the table in decide.rs.

use tfs_nameserver::proto::{Role, StatusReply};

use super::*;

const ME: &str = "demo-0";

/// The Lease at epoch 3, held by `holder` ("" when released), with a handover asked to `to`.
fn lease(holder: &str, to: Option<&str>) -> LeaseView {
    LeaseView { holder: holder.into(), epoch: Epoch(3), handover_to: to.map(String::from), ..Default::default() }
}

/// The nameserver up as `role` at `epoch`, in sync mode with demo-1 in its sync set.
fn up(role: Role, epoch: u64) -> Health {
    Health::Up(Box::new(StatusReply {
        role: role as i32,
        epoch,
        replication_mode: "sync".into(),
        sync_set: vec!["demo-1".into()],
        sync_set_version: 4,
        ..Default::default()
    }))
}

fn master() -> Health {
    up(Role::Master, 3)
}

fn renewing(refused: Option<&str>) -> Action {
    let publish = SyncSet { members: vec!["demo-1".into()], version: 4 };
    Action::Renew { epoch: Epoch(3), publish: Some(publish), refused: refused.map(String::from) }
}

#[test]
fn mine_asked_to_hand_over_to_a_slave_of_the_sync_set_hands_over() {
    let (lv, h) = (lease(ME, Some("demo-1")), master());
    assert_eq!(address_needed(&lv, &h, ME), Some("demo-1"));
    assert_eq!(
        decide(&lv, &h, ME, false, Some("10.0.0.2:7002")),
        Action::HandOver { target: "demo-1".into(), addr: "10.0.0.2:7002".into(), epoch: Epoch(4) }
    );
    // In async mode every slave may take over.
    let Health::Up(mut s) = up(Role::Master, 3) else { unreachable!() };
    s.replication_mode = "async".into();
    let h = Health::Up(s);
    let lv = lease(ME, Some("demo-2"));
    assert_eq!(address_needed(&lv, &h, ME), Some("demo-2"));
    assert!(matches!(decide(&lv, &h, ME, false, Some("a:1")), Action::HandOver { .. }));
}

#[test]
fn mine_and_the_nameserver_down_releases() {
    let h = Health::Down("connection refused".into());
    assert_eq!(
        decide(&lease(ME, None), &h, ME, false, None),
        Action::Release { why: "nameserver down: connection refused".into() }
    );
    // A handover asked of a dead nameserver is no handover: it releases (nothing is drained).
    assert_eq!(address_needed(&lease(ME, Some("demo-1")), &h, ME), None);
    assert!(matches!(decide(&lease(ME, Some("demo-1")), &h, ME, true, None), Action::Release { .. }));
}

#[test]
fn mine_and_the_nameserver_hung_does_nothing() {
    assert_eq!(decide(&lease(ME, None), &Health::Hung, ME, true, None), Action::Hung);
    assert_eq!(decide(&lease(ME, Some("demo-1")), &Health::Hung, ME, true, None), Action::Hung);
}

#[test]
fn mine_and_the_master_due_renews_publishing_its_sync_set() {
    assert_eq!(decide(&lease(ME, None), &master(), ME, true, None), renewing(None));
}

#[test]
fn mine_and_a_handover_refused_renews_at_once_with_the_refusal() {
    // Outside the sync set: refused before any address is looked up.
    let lv = lease(ME, Some("demo-2"));
    assert_eq!(address_needed(&lv, &master(), ME), None);
    assert_eq!(
        decide(&lv, &master(), ME, false, None),
        renewing(Some("demo-2: not in the sync set [demo-1]: it may lack acknowledged writes"))
    );
    // In the set, but no address.
    let lv = lease(ME, Some("demo-1"));
    assert_eq!(decide(&lv, &master(), ME, false, None), renewing(Some("demo-1: no such pod, or it has no address")));
}

#[test]
fn mine_and_the_master_draining_or_not_due_does_nothing() {
    assert_eq!(decide(&lease(ME, None), &master(), ME, false, None), Action::Nothing);
    let Health::Up(mut s) = master() else { unreachable!() };
    s.draining = true;
    assert_eq!(decide(&lease(ME, None), &Health::Up(s), ME, true, None), Action::Nothing);
    // A handover to itself is no request.
    assert_eq!(decide(&lease(ME, Some(ME)), &master(), ME, false, None), Action::Nothing);
}

#[test]
fn mine_and_the_nameserver_below_the_epoch_takes_the_mastership_publishing_nothing() {
    for h in [up(Role::Slave, 2), up(Role::Master, 2), up(Role::Slave, 0)] {
        assert_eq!(
            decide(&lease(ME, None), &h, ME, false, None),
            Action::Renew { epoch: Epoch(3), publish: None, refused: None }
        );
    }
}

#[test]
fn mine_and_the_nameserver_above_the_epoch_or_a_slave_at_it_releases() {
    assert_eq!(
        decide(&lease(ME, None), &up(Role::Master, 4), ME, true, None),
        Action::Release { why: "nameserver is at epoch 4 as Master, the lease at 3".into() }
    );
    assert_eq!(
        decide(&lease(ME, None), &up(Role::Slave, 3), ME, true, None),
        Action::Release { why: "nameserver is at epoch 3 as Slave, the lease at 3".into() }
    );
}

#[test]
fn another_pods_lease_is_followed_until_the_nameserver_is_its_slave() {
    let lv = lease("demo-1", None);
    let h = up(Role::Master, 2);
    assert_eq!(address_needed(&lv, &h, ME), Some("demo-1"));
    let follow = Action::Follow { master: "demo-1".into(), addr: "10.0.0.2:7002".into(), epoch: Epoch(3) };
    assert_eq!(decide(&lv, &h, ME, true, Some("10.0.0.2:7002")), follow);
    // A slave of another master, or of an older epoch, follows too.
    let Health::Up(mut s) = up(Role::Slave, 3) else { unreachable!() };
    s.master_addr = "10.0.0.9:7002".into();
    assert_eq!(decide(&lv, &Health::Up(s), ME, true, Some("10.0.0.2:7002")), follow);
    assert_eq!(decide(&lv, &up(Role::Slave, 2), ME, true, Some("10.0.0.2:7002")), follow);
    // Each alone: at the holder's address already, but a master, or a slave of an older epoch.
    for (role, epoch) in [(Role::Master, 3), (Role::Master, 2), (Role::Slave, 2)] {
        let Health::Up(mut s) = up(role, epoch) else { unreachable!() };
        s.master_addr = "10.0.0.2:7002".into();
        assert_eq!(decide(&lv, &Health::Up(s), ME, true, Some("10.0.0.2:7002")), follow, "{role:?} at {epoch}");
    }
}

#[test]
fn another_pods_lease_already_followed_or_unreachable_does_nothing() {
    let lv = lease("demo-1", Some(ME));
    let Health::Up(mut s) = up(Role::Slave, 3) else { unreachable!() };
    s.master_addr = "10.0.0.2:7002".into();
    assert_eq!(decide(&lv, &Health::Up(s), ME, true, Some("10.0.0.2:7002")), Action::Nothing);
    assert_eq!(decide(&lv, &up(Role::Slave, 2), ME, true, None), Action::Nothing, "the holder has no address");
    for h in [Health::Down("gone".into()), Health::Hung] {
        assert_eq!(address_needed(&lv, &h, ME), None);
        assert_eq!(decide(&lv, &h, ME, true, None), Action::Nothing);
    }
}

#[test]
fn a_released_lease_is_left_to_the_operator() {
    for h in [master(), up(Role::Slave, 3), Health::Down("gone".into()), Health::Hung] {
        assert_eq!(address_needed(&lease("", None), &h, ME), None);
        assert_eq!(decide(&lease("", None), &h, ME, true, None), Action::Nothing);
        // Nobody to follow, whatever address is at hand.
        assert_eq!(decide(&lease("", None), &h, ME, true, Some("10.0.0.2:7002")), Action::Nothing);
    }
}
