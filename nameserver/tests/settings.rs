//! Settings the operator hands a pod through its environment reach the nameserver.

mod common;

use common::*;
use tfs_nameserver::proto;

#[tokio::test(flavor = "multi_thread")]
async fn replication_mode_and_block_replicas_come_from_the_environment() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new("a", root.path(), &[]);
    a.env = vec![("TFS_REPLICATION_MODE".into(), "async".into()), ("TFS_BLOCK_REPLICAS".into(), "3".into())];
    a.start_ready().await;
    assert_eq!(a.status().await.replication_mode, "async", "TFS_REPLICATION_MODE was ignored");
    a.master(1).await;
    a.dataservers(3).await;
    let mut c = a.client().await;
    let b = c
        .create_block(proto::CreateBlockRequest { replicas: 0, request_id: None })
        .await
        .unwrap()
        .into_inner()
        .block
        .unwrap();
    assert_eq!(b.dataservers.len(), 3, "TFS_BLOCK_REPLICAS was ignored: {b:?}");
}
