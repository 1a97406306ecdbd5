//! The chart's alerts (charts/tfs-operator/files/alerts.yaml) and Grafana dashboard
//! (files/dashboard.json): every expression parses as PromQL, and every metric it reads is one
//! that the nameserver, the heart or the operator exports — so a renamed metric cannot leave an
//! alert that never fires.

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

fn chart_file(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/tfs-operator/files").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every series name the binaries can expose, from their registries' exposition (a counter
/// `x` is exposed as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`, an info as `x_info`).
/// A labelled family shows only once it has a series: each gets one here.
fn exported() -> BTreeSet<String> {
    use tfs_nameserver::metrics as ns;
    let n = ns::Metrics::new();
    n.requests.get_or_create(&ns::OpLabels { op: "create", code: "ok" }).inc();
    n.latency.get_or_create(&ns::OpName { op: "create" }).observe(0.001);
    n.repl_refused.get_or_create(&ns::Reason { reason: "identity" }).inc();
    n.peer_lag.get_or_create(&ns::PeerLabel { peer: "b".into() }).set(1);
    let o = tfs_operator::metrics::Metrics::default();
    o.reconcile_errors.get_or_create(&tfs_operator::metrics::ErrorLabels { category: "api" }).inc();
    o.failovers.get_or_create(&tfs_operator::metrics::FailoverLabels { kind: "expired" }).inc();
    o.observe("ns", "demo", &Default::default(), 2, 1);
    o.observe_backup("ns", "demo", true, Some(0.5), Some(10));
    let text = [n.encode(), tfs_operator::metrics::HeartMetrics::default().encode(), o.encode()].concat();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = ();
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
        match e {
            Expr::VectorSelector(v) => self.0.extend(v.name.clone()),
            Expr::MatrixSelector(m) => self.0.extend(m.vs.name.clone()),
            _ => {}
        }
        Ok(true)
    }
}

/// Parses `expr` and returns the metric names it reads.
fn metrics_of(expr: &str) -> BTreeSet<String> {
    let e = parser::parse(expr).unwrap_or_else(|err| panic!("not PromQL: {expr}\n{err}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &e).expect("the visitor never fails");
    assert!(!names.0.is_empty(), "reads no metric: {expr}");
    names.0
}

#[test]
fn every_alert_parses_and_reads_exported_metrics() {
    let exported = exported();
    let rules: serde_yaml::Value = serde_yaml::from_str(&chart_file("alerts.yaml")).expect("alerts.yaml is YAML");
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert").to_string();
            let expr = rule["expr"].as_str().expect("expr");
            for m in metrics_of(expr) {
                assert!(exported.contains(&m), "{name} reads {m}, which nothing exports");
            }
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name} has no severity");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name} has no summary");
            alerts.push(name);
        }
    }
    for wanted in [
        "TfsNameserverNoMaster",
        "TfsNameserverNotHealthy",
        "TfsNameserverSyncSetSmall",
        "TfsNameserverSlaveLagHigh",
        "TfsHeartRenewFailures",
        "TfsNameserverRequestsToNonMaster",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "no alert {wanted}: {alerts:?}");
    }
}

#[test]
fn every_dashboard_query_parses_and_reads_exported_metrics() {
    let exported = exported();
    let d: serde_json::Value = serde_json::from_str(&chart_file("dashboard.json")).expect("dashboard.json is JSON");
    let mut queries = 0;
    for panel in d["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for m in metrics_of(expr) {
                assert!(exported.contains(&m), "panel {:?} reads {m}, which nothing exports", panel["title"]);
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
}

#[test]
fn a_metric_that_nothing_exports_is_caught() {
    let exported = exported();
    assert!(exported.contains("tfs_nameserver_requests_total"));
    assert!(exported.contains("tfs_heart_renew_seconds_bucket"));
    assert!(exported.contains("tfs_nameserver_build_info"));
    assert!(!metrics_of("rate(tfs_nameserver_no_such_metric_total[1m])").is_subset(&exported));
}
