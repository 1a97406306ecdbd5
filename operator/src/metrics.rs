//! Operator metrics, served on /metrics beside /health.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// One TfsNameserver.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: &'static str,
}

/// Per TfsNameserver, as its last reconcile left its status: what dashboards and alerts read.
#[derive(Default)]
pub struct ResourceGauges {
    /// 1 for the current phase, 0 for the others.
    pub phase: Family<PhaseLabels, Gauge>,
    /// 1 when some pod holds the Lease.
    pub has_master: Family<ResourceLabels, Gauge>,
    pub epoch: Family<ResourceLabels, Gauge>,
    pub replicas: Family<ResourceLabels, Gauge>,
    pub ready_instances: Family<ResourceLabels, Gauge>,
    pub sync_set_size: Family<ResourceLabels, Gauge>,
    pub failovers: Family<ResourceLabels, Gauge>,
    /// spec.backup: 1 while the BackupHealthy condition is True (only resources with spec.backup).
    pub backup_healthy: Family<ResourceLabels, Gauge>,
    /// spec.backup: the master's archive lag, in seconds.
    pub archive_lag_seconds: Family<ResourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// spec.backup: every committed record through this seq is archived.
    pub archived_seq: Family<ResourceLabels, Gauge>,
}

pub const PHASES: [&str; 5] = ["Creating", "Healthy", "FailingOver", "SwitchingOver", "Degraded"];

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub failovers: Family<FailoverLabels, Counter>,
    /// From the fault being noticed (release seen or expiry reached) to the Lease handed over.
    pub failover_seconds: Histogram,
    pub resources: ResourceGauges,
    /// 1 while this process leads (runs the controller), 0 while it stands by.
    pub leader: Gauge,
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
        let resources = ResourceGauges::default();
        let r = &resources;
        let mut sub = |name: &str, help: &str, f: Family<ResourceLabels, Gauge>| {
            registry.register(format!("tfsnameserver_{name}"), help, f)
        };
        sub("has_master", "1 when a pod holds the TfsNameserver's Lease", r.has_master.clone());
        sub("epoch", "the master's epoch (the Lease's transitions)", r.epoch.clone());
        sub("replicas", "instances asked for", r.replicas.clone());
        sub("ready_instances", "instances whose pod is Ready", r.ready_instances.clone());
        sub("sync_set_size", "slaves in the master's published sync set", r.sync_set_size.clone());
        sub("failovers", "unplanned master changes since the resource was created", r.failovers.clone());
        sub(
            "backup_healthy",
            "1 while the archive of spec.backup is healthy (BackupHealthy True)",
            r.backup_healthy.clone(),
        );
        sub("archived_seq", "every committed record through this seq is in the archive", r.archived_seq.clone());
        registry.register(
            "tfsnameserver_archive_lag_seconds",
            "age of the oldest committed record the master has not archived yet",
            r.archive_lag_seconds.clone(),
        );
        registry.register("tfsnameserver_phase", "1 for the TfsNameserver's current phase", r.phase.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this operator process is the leader (runs the controller), 0 on a standby",
            leader.clone(),
        );
        tfs_nameserver::metrics::register_build_info(&mut registry);
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            failovers,
            failover_seconds,
            resources,
            leader,
        }
    }
}

/// The heart's metrics, on its own port beside the nameserver's.
pub struct HeartMetrics {
    pub registry: Registry,
    pub renews: Counter,
    pub renew_failures: Counter,
    /// One Lease update (the renew's API round trip).
    pub renew_seconds: Histogram,
    /// 1 while this pod holds the Lease.
    pub holder: Gauge,
}

impl Default for HeartMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tfs_heart");
        let renews = Counter::default();
        registry.register("renews", "Lease renewals the API server accepted", renews.clone());
        let renew_failures = Counter::default();
        registry.register(
            "renew_failures",
            "Lease renewals that failed (conflict, API unreachable)",
            renew_failures.clone(),
        );
        let renew_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("renew_seconds", "duration of one Lease renewal", renew_seconds.clone());
        let holder = Gauge::default();
        registry.register("holder", "1 while this pod holds the Lease (is master)", holder.clone());
        tfs_nameserver::metrics::register_build_info(&mut registry);
        HeartMetrics { registry, renews, renew_failures, renew_seconds, holder }
    }
}

impl HeartMetrics {
    pub fn encode(&self) -> String {
        tfs_nameserver::metrics::encode(&self.registry)
    }
}

impl Metrics {
    /// Sets the gauges of one TfsNameserver from the status its reconcile wrote.
    pub fn observe(
        &self,
        namespace: &str,
        name: &str,
        s: &crate::crd::TfsNameserverStatus,
        replicas: i32,
        sync_set: usize,
    ) {
        let l = ResourceLabels { namespace: namespace.into(), name: name.into() };
        let r = &self.resources;
        r.has_master.get_or_create(&l).set(s.master.as_ref().is_some_and(|m| !m.is_empty()) as i64);
        r.epoch.get_or_create(&l).set(s.epoch.unwrap_or(0));
        r.replicas.get_or_create(&l).set(replicas as i64);
        r.ready_instances.get_or_create(&l).set(s.instances.iter().filter(|i| i.ready).count() as i64);
        r.sync_set_size.get_or_create(&l).set(sync_set as i64);
        r.failovers.get_or_create(&l).set(s.failovers);
        let current = s.phase.map(|p| format!("{p:?}"));
        for phase in PHASES {
            let pl = PhaseLabels { namespace: namespace.into(), name: name.into(), phase };
            r.phase.get_or_create(&pl).set((current.as_deref() == Some(phase)) as i64);
        }
    }

    /// Sets the backup gauges of one TfsNameserver with spec.backup (lag and seq when reported).
    pub fn observe_backup(&self, namespace: &str, name: &str, healthy: bool, lag: Option<f64>, seq: Option<i64>) {
        let l = ResourceLabels { namespace: namespace.into(), name: name.into() };
        let r = &self.resources;
        r.backup_healthy.get_or_create(&l).set(healthy as i64);
        if let Some(lag) = lag {
            r.archive_lag_seconds.get_or_create(&l).set(lag);
        }
        if let Some(seq) = seq {
            r.archived_seq.get_or_create(&l).set(seq);
        }
    }

    /// Drops the backup series of a TfsNameserver (deleted, or without spec.backup now).
    pub fn forget_backup(&self, namespace: &str, name: &str) {
        let l = ResourceLabels { namespace: namespace.into(), name: name.into() };
        let r = &self.resources;
        r.backup_healthy.remove(&l);
        r.archive_lag_seconds.remove(&l);
        r.archived_seq.remove(&l);
    }

    /// Drops the series of a deleted TfsNameserver.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.forget_backup(namespace, name);
        let l = ResourceLabels { namespace: namespace.into(), name: name.into() };
        let r = &self.resources;
        for f in [&r.has_master, &r.epoch, &r.replicas, &r.ready_instances, &r.sync_set_size, &r.failovers] {
            f.remove(&l);
        }
        for phase in PHASES {
            r.phase.remove(&PhaseLabels { namespace: namespace.into(), name: name.into(), phase });
        }
    }

    pub fn encode(&self) -> String {
        tfs_nameserver::metrics::encode(&self.registry)
    }
}
