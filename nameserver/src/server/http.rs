//! HTTP beside the gRPC ports: /metrics (Prometheus text) and /health (the pod's readiness).

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::engine::Engine;

async fn metrics(State(engine): State<Engine>) -> impl IntoResponse {
    super::status::status(&engine); // refreshes the gauges derived from status
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        engine.shared.metrics.encode(),
    )
}

/// Healthy = the engine answers. Role is reported, not judged: a slave is healthy too.
async fn health(State(engine): State<Engine>) -> impl IntoResponse {
    let role = engine.shared.role.lock().clone();
    let body = serde_json::json!({
        "role": format!("{:?}", role.role).to_lowercase(),
        "epoch": role.epoch,
        "writable": role.check_writable(Instant::now()).is_ok(),
        "durable_seq": engine.durable_seq(),
    });
    (StatusCode::OK, axum::Json(body))
}

pub fn router(engine: Engine) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(engine)
}
