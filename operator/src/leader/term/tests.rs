//! Unit tests of the term and its guard, on a mocked API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::*;
use crate::fixtures::mock_client;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})).unwrap()
}

#[test]
fn a_term_runs_until_its_end_and_is_never_shortened() {
    let t = Term::default();
    assert!(!t.running(), "not leading yet");
    t.extend_to(Instant::now() + Duration::from_secs(60));
    assert!(t.running());
    t.extend_to(Instant::now()); // an earlier end (a write that started before) changes nothing
    assert!(t.running());
    let ended = Term::default();
    ended.extend_to(Instant::now());
    assert!(!ended.running());
    t.end(); // a release
    assert!(!t.running());
}

/// Within the term a write goes through; past it, the write fails in the process and the API server
/// sees nothing of it, while reads go on (the controller may still look, never act).
#[tokio::test]
async fn a_write_past_the_term_is_refused_unsent_and_reads_go_on() {
    let (client, mut api) = mock_client();
    let term = Term::default();
    term.extend_to(Instant::now() + Duration::from_millis(300));
    let cms: Api<ConfigMap> = Api::namespaced(term.guard(client), "ns");
    let pp = PostParams::default();
    let within = tokio::spawn({
        let cms = cms.clone();
        let pp = pp.clone();
        async move { cms.create(&pp, &config_map("a")).await }
    });
    api.expect("POST", "/api/v1/namespaces/ns/configmaps", |b| (201, b.clone())).await;
    within.await.unwrap().expect("a write within the term");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let past = tokio::spawn({
        let cms = cms.clone();
        async move { cms.create(&pp, &config_map("b")).await }
    });
    api.expect_nothing("a write past the term reached the API server").await;
    let e = past.await.unwrap().expect_err("a write past the term");
    assert!(e.to_string().contains("term as leader has ended"), "{e}");

    let read = tokio::spawn(async move { cms.get("a").await });
    api.expect("GET", "/api/v1/namespaces/ns/configmaps/a", |_| (200, serde_json::to_value(config_map("a")).unwrap()))
        .await;
    read.await.unwrap().expect("a read past the term");
}
