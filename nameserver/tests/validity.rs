//! A master's validity is an absolute deadline on a clock the heart and the nameserver share, so a
//! grant delayed on its way never extends mastership past what the heart computed.

mod common;

use std::time::Duration;

use common::*;
use tfs_nameserver::proto;
use tfs_nameserver::proto::admin_client::AdminClient;

/// The renewal reaches a nameserver that was stopped (as a throttled or stopped process would be)
/// for longer than the validity it carries: once it runs, it must not accept a write.
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_delivered_after_its_deadline_grants_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (a, _) = lone_master(root.path()).await;

    let mut admin = AdminClient::new(Node::channel(&a.admin).await);
    a.signal("STOP");
    let validity = Duration::from_millis(1000);
    let deadline = tfs_nameserver::role::boottime() + validity;
    let renew = tokio::spawn(async move {
        admin
            .assume_role(proto::AssumeRoleRequest {
                role: proto::Role::Master as i32,
                epoch: 1,
                valid_for_ms: validity.as_millis() as u64,
                valid_until_boottime_ns: deadline.as_nanos() as u64,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(validity + Duration::from_millis(500)).await;
    a.signal("CONT");
    let _ = tokio::time::timeout(Duration::from_secs(5), renew).await.expect("the renewal is answered");
    let mut c = a.client().await;
    let w = c.create_block(proto::CreateBlockRequest { replicas: 2, request_id: None }).await;
    assert!(w.is_err(), "a write was accepted past the deadline of the last grant: {w:?}");
    let s = a.status().await;
    assert!(!s.writable, "writable past the deadline: {s:?}");
}
