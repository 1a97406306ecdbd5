//! HTTP beside the gRPC ports: /metrics (Prometheus text) and /health (the pod's readiness).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::engine::Engine;
use crate::replication::peers::Peers;

async fn metrics(State((engine, peers)): State<(Engine, Arc<Peers>)>) -> impl IntoResponse {
    super::status::status(&engine, &peers); // refreshes the gauges derived from status
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], engine.metrics().encode())
}

/// Healthy = the engine answers. Role is reported, not judged: a slave is healthy too.
async fn health(State((engine, _)): State<(Engine, Arc<Peers>)>) -> impl IntoResponse {
    let role = engine.role().lock().clone();
    let body = serde_json::json!({
        "role": format!("{:?}", role.role).to_lowercase(),
        "epoch": role.epoch,
        "writable": role.check_writable(Instant::now()).is_ok(),
        "durable_seq": engine.durable_seq(),
    });
    (StatusCode::OK, axum::Json(body))
}

pub fn router(engine: Engine, peers: Arc<Peers>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state((engine, peers))
}
