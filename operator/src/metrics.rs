//! Operator metrics, served on /metrics beside /health.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub kind: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub failovers: Family<FailoverLabels, Counter>,
    /// From the fault being noticed (release seen or expiry reached) to the Lease handed over.
    pub failover_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tfs_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "reconciliations run", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "reconciliations failed, by error category", reconcile_errors.clone());
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("reconcile_seconds", "duration of one reconciliation", reconcile_seconds.clone());
        let failovers = Family::<FailoverLabels, Counter>::default();
        registry.register(
            "failovers",
            "masters promoted, by kind (initial, released, expired, switchover)",
            failovers.clone(),
        );
        let failover_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "failover_seconds",
            "from noticing a failed master to handing the Lease over",
            failover_seconds.clone(),
        );
        Metrics { registry, reconciles, reconcile_errors, reconcile_seconds, failovers, failover_seconds }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
