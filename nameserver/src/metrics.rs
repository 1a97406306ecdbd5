//! Prometheus metrics, served as text on the metrics port (default 9102).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpName {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// The archive's metrics, `tfs_archive_*` (a registry of their own: the names are not under
/// `tfs_nameserver_`).
pub struct ArchiveMetrics {
    pub registry: Registry,
    pub archived_seq: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub uploads: Family<Kind, Counter>,
    pub upload_bytes: Counter,
    pub errors: Counter,
    pub deleted: Counter,
}

impl ArchiveMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tfs_archive");
        let archived_seq = Gauge::default();
        registry.register("archived_seq", "every committed record through this seq is archived", archived_seq.clone());
        let lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "lag_seconds",
            "age of the oldest committed record not yet archived (0 when caught up)",
            lag_seconds.clone(),
        );
        let uploads = Family::<Kind, Counter>::default();
        registry.register("uploads", "objects uploaded, by kind (wal, checkpoint)", uploads.clone());
        let upload_bytes = Counter::default();
        registry.register("upload_bytes", "bytes uploaded to the archive", upload_bytes.clone());
        let errors = Counter::default();
        registry.register("errors", "failed archive operations (uploads, listings, deletions)", errors.clone());
        let deleted = Counter::default();
        registry.register("deleted", "objects deleted by retention", deleted.clone());
        ArchiveMetrics { registry, archived_seq, lag_seconds, uploads, upload_bytes, errors, deleted }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// The operations timed per request (server `Timer`, the session's tally): their metric handles are
/// resolved once ([`OpMetrics`]).
pub const OPS: [&str; 15] = [
    "create_block",
    "batch_create_blocks",
    "get_block",
    "batch_get_blocks",
    "commit_block",
    "remove_block",
    "list_blocks",
    "ds_apply",
    "ds_renew",
    "ds_give_up",
    "session_create",
    "session_commit",
    "session_remove",
    "session_get",
    "session_invalid",
];

/// The status codes requests are counted by (server `code_index`).
pub const CODES: [&str; 8] = [
    "ok",
    "invalid_argument",
    "not_found",
    "failed_precondition",
    "unavailable",
    "already_exists",
    "resource_exhausted",
    "other",
];

/// One operation's request counters (by code) and latency histogram, taken from their families on
/// first use and kept: a request then costs an atomic load and the counter's add, not a family
/// lookup (a lock and a hash of the labels) per metric. Created on first use, as the family's
/// would be, so /metrics shows the same series.
pub struct OpMetrics {
    op: &'static str,
    codes: [OnceLock<Counter>; CODES.len()],
    latency: OnceLock<Histogram>,
}

impl OpMetrics {
    fn new(op: &'static str) -> Self {
        OpMetrics { op, codes: Default::default(), latency: OnceLock::new() }
    }

    /// Counts `n` requests answered with `code` (an index in [`CODES`]).
    pub fn count(&self, m: &Metrics, code: usize, n: u64) {
        let c = self.codes[code]
            .get_or_init(|| m.requests.get_or_create(&OpLabels { op: self.op, code: CODES[code] }).clone());
        c.inc_by(n);
    }

    /// Records `n` requests' latency of `secs`.
    pub fn observe(&self, m: &Metrics, secs: f64, n: u64) {
        let h = self.latency.get_or_init(|| m.latency.get_or_create(&OpName { op: self.op }).clone());
        for _ in 0..n {
            h.observe(secs);
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    /// The handles of [`OPS`], in that order.
    pub ops: Vec<OpMetrics>,
    pub requests: Family<OpLabels, Counter>,
    pub latency: Family<OpName, Histogram>,
    pub fsync_seconds: Histogram,
    pub batch_records: Histogram,
    pub batch_requests: Histogram,
    pub last_seq: Gauge,
    pub durable_seq: Gauge,
    pub committed_seq: Gauge,
    pub epoch: Gauge,
    pub is_master: Gauge,
    pub blocks: Gauge,
    pub recovery_seconds: Gauge<f64, AtomicU64>,
    pub overloaded: Counter,
    pub abandoned: Counter,
    pub commit_delays: Counter,
    pub repl_refused: Family<Reason, Counter>,
    pub client_handshakes_failed: Counter,
    pub sync_set_size: Gauge,
    pub peer_lag: Family<PeerLabel, Gauge>,
    pub refused_not_master: Counter,
    pub data_free_bytes: Gauge,
    pub refused_low_space: Counter,
    pub archive: ArchiveMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tfs_nameserver");
        let requests = Family::<OpLabels, Counter>::default();
        registry.register("requests", "gRPC requests by method and status code", requests.clone());
        let latency =
            Family::<OpName, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18)));
        registry.register("request_seconds", "gRPC request latency by method", latency.clone());
        let fsync_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register("oplog_fsync_seconds", "time of one oplog append + fdatasync", fsync_seconds.clone());
        let batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "oplog_batch_records",
            "records made durable by one fdatasync (group commit)",
            batch_records.clone(),
        );
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register("oplog_batch_requests", "requests served by one fdatasync", batch_requests.clone());
        let last_seq = Gauge::default();
        registry.register("oplog_last_seq", "seq of the last record appended", last_seq.clone());
        let durable_seq = Gauge::default();
        registry.register("oplog_durable_seq", "highest seq durable on this node", durable_seq.clone());
        let committed_seq = Gauge::default();
        registry.register("oplog_committed_seq", "highest committed seq", committed_seq.clone());
        let epoch = Gauge::default();
        registry.register("epoch", "epoch of this node's role", epoch.clone());
        let is_master = Gauge::default();
        registry.register("is_master", "1 when this node accepts writes", is_master.clone());
        let blocks = Gauge::default();
        registry.register("blocks", "blocks in the state", blocks.clone());
        let recovery_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register("recovery_seconds", "time taken to recover the state at start", recovery_seconds.clone());
        let overloaded = Counter::default();
        registry.register(
            "writes_refused_overloaded",
            "writes refused at once because too many records were in flight",
            overloaded.clone(),
        );
        let abandoned = Counter::default();
        registry.register(
            "writes_abandoned",
            "writes skipped by the writer because their caller had gone (cancelled, timed out)",
            abandoned.clone(),
        );
        let commit_delays = Counter::default();
        registry.register(
            "oplog_commit_delays",
            "group commits that waited --commit-delay for more writes to join (at least --commit-siblings in flight)",
            commit_delays.clone(),
        );
        let repl_refused = Family::<Reason, Counter>::default();
        registry.register(
            "replication_peers_refused",
            "replication peers refused before anything counted: handshake (no certificate of the CA), identity (the certificate does not name the LOGIN's node)",
            repl_refused.clone(),
        );
        let client_handshakes_failed = Counter::default();
        registry.register(
            "client_tls_handshakes_failed",
            "client-port connections dropped in their TLS handshake",
            client_handshakes_failed.clone(),
        );
        let sync_set_size = Gauge::default();
        registry.register(
            "sync_set_size",
            "slaves a commit waits for (the master's sync set; 0 on a slave)",
            sync_set_size.clone(),
        );
        let peer_lag = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "peer_lag",
            "records a slave is behind this master's durable seq, per connected or awaited slave",
            peer_lag.clone(),
        );
        register_build_info(&mut registry);
        let refused_not_master = Counter::default();
        registry.register(
            "requests_refused_not_master",
            "requests (writes and linearizable reads) refused because this node is not a writable master (clients still sent here after a failover)",
            refused_not_master.clone(),
        );
        let data_free_bytes = Gauge::default();
        registry.register(
            "data_free_bytes",
            "free bytes of the data volume, as last measured (each Status and scrape, and by writes)",
            data_free_bytes.clone(),
        );
        let refused_low_space = Counter::default();
        registry.register(
            "writes_refused_low_space",
            "writes refused because the data volume was below its free-space reserve",
            refused_low_space.clone(),
        );
        Metrics {
            registry,
            ops: OPS.iter().map(|op| OpMetrics::new(op)).collect(),
            requests,
            latency,
            fsync_seconds,
            batch_records,
            batch_requests,
            last_seq,
            durable_seq,
            committed_seq,
            epoch,
            is_master,
            blocks,
            recovery_seconds,
            overloaded,
            abandoned,
            commit_delays,
            repl_refused,
            client_handshakes_failed,
            sync_set_size,
            peer_lag,
            refused_not_master,
            data_free_bytes,
            refused_low_space,
            archive: ArchiveMetrics::new(),
        }
    }

    /// The cached handles of `op` (one of [`OPS`]; a scan of 15 names, no lock, no hash).
    pub fn op(&self, op: &str) -> Option<&OpMetrics> {
        self.ops.iter().find(|o| std::ptr::eq(o.op, op) || o.op == op)
    }

    pub fn encode(&self) -> String {
        // One exposition: the first registry's `# EOF` would end it early.
        let mut out = encode(&self.registry);
        if let Some(body) = out.strip_suffix("# EOF\n") {
            out.truncate(body.len());
        }
        out.push_str(&encode(&self.archive.registry));
        out
    }
}

/// `<prefix>_build_info{version}` 1: the running build, in every binary's registry.
pub fn register_build_info(registry: &mut Registry) {
    registry.register(
        "build",
        "the running build (value 1)",
        prometheus_client::metrics::info::Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }),
    );
}

/// A registry as Prometheus text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}
