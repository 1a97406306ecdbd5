//! tfs-operator: `run` the controller, `heart` beside a nameserver, print the `crd`, or
//! `prepare-data` (hand a volume to the nameserver's uid).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::{Parser, Subcommand};
use tfs_operator::{backup, controller, crd, heart, leader, lease::Sightings, metrics::Metrics, standby};
use tracing::info;

#[derive(Debug, Parser)]
#[command(version, about = "Operator and heart sidecar for the highly available TFS nameserver")]
struct Cli {
    /// Log lines as text or as JSON objects (for log collectors).
    #[arg(long, global = true, value_enum, default_value = "text", env = "TFS_LOG_FORMAT", ignore_case = true)]
    log_format: tfs_nameserver::logging::LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Leader election between operator replicas (leader.rs): only the leader reconciles.
#[derive(Debug, clap::Args)]
struct Election {
    /// Elect a leader on a Lease before reconciling (a standby serves /metrics and /health and
    /// waits). false: reconcile at once — for a single process out of cluster or in tests; never
    /// with two replicas.
    #[arg(
        long,
        env = "TFS_LEADER_ELECT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    leader_elect: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "TFS_LEADER_ELECTION_LEASE", default_value = leader::LEASE_NAME)]
    leader_election_lease: String,
    /// Namespace of the Lease (default: the operator's own: POD_NAMESPACE, else the client's).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Who this process is in the election (default: POD_NAME, else hostname-pid).
    #[arg(long, env = "POD_NAME")]
    leader_identity: Option<String>,
    /// A standby takes the Lease once it has not changed this long on its own clock.
    #[arg(long, env = "TFS_LEADER_LEASE_DURATION", default_value = "4s", value_parser = humantime::parse_duration)]
    leader_lease_duration: Duration,
    /// The leader stops (its process starts again in place) this long after the start of its last successful renew.
    #[arg(long, env = "TFS_LEADER_RENEW_DEADLINE", default_value = "3s", value_parser = humantime::parse_duration)]
    leader_renew_deadline: Duration,
    /// The leader renews this often.
    #[arg(long, env = "TFS_LEADER_RENEW_PERIOD", default_value = "1s", value_parser = humantime::parse_duration)]
    leader_renew_period: Duration,
    /// A failed attempt to take or renew the Lease is retried after this long.
    #[arg(long, env = "TFS_LEADER_RETRY_PERIOD", default_value = "1s", value_parser = humantime::parse_duration)]
    leader_retry_period: Duration,
}

impl Election {
    fn timing(&self) -> leader::Timing {
        leader::Timing {
            lease_duration: self.leader_lease_duration,
            renew_deadline: self.leader_renew_deadline,
            renew_period: self.leader_renew_period,
            retry_period: self.leader_retry_period,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the controller (and /metrics, /health).
    Run {
        #[arg(long, default_value = "0.0.0.0:8080", env = "TFS_OPERATOR_METRICS_ADDR")]
        metrics_addr: SocketAddr,
        /// Reconcile the TfsNameservers of this namespace only (default: every namespace).
        #[arg(long, env = "TFS_WATCH_NAMESPACE")]
        watch_namespace: Option<String>,
        #[command(flatten)]
        election: Election,
    },
    /// Keep the heartbeat Lease for the nameserver in this pod.
    Heart {
        /// The TfsNameserver (and Lease) name.
        #[arg(long)]
        name: String,
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        #[arg(long, env = "POD_NAME")]
        pod: String,
        #[arg(long, default_value = "127.0.0.1:8102")]
        admin_addr: String,
        #[arg(long, env = "TFS_LEASE_DURATION_SECONDS", default_value_t = 5)]
        lease_duration_seconds: u64,
        #[arg(long, env = "TFS_RENEW_DEADLINE_SECONDS", default_value_t = 3)]
        renew_deadline_seconds: u64,
        #[arg(long, env = "TFS_RETRY_PERIOD_SECONDS", default_value_t = 1)]
        retry_period_seconds: u64,
        /// Where the heart serves /metrics.
        #[arg(long, default_value = "0.0.0.0:9103", env = "TFS_HEART_METRICS_ADDR")]
        metrics_addr: SocketAddr,
    },
    /// Print a CRD as YAML: tfsnameservers (default) or tfsbackups.
    Crd {
        #[arg(default_value = "tfsnameservers", value_parser = ["tfsnameservers", "tfsbackups"])]
        plural: String,
    },
    /// Check that an operator answers at ADDR (host:port of its metrics port): /health is OK
    /// and /metrics counts reconciles (the chart's `helm test`).
    Check {
        #[arg(long)]
        addr: String,
    },
    /// Give a data directory to a uid/gid (init container for volumes that ignore fsGroup).
    PrepareData {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        gid: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tfs_nameserver::logging::init(cli.log_format);
    match cli.cmd {
        Cmd::Check { addr } => tokio::runtime::Runtime::new()?.block_on(async move {
            let health = http_get(&addr, "/health").await?;
            anyhow::ensure!(
                health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"),
                "{addr}/health: {}",
                health.lines().next().unwrap_or("")
            );
            let metrics = http_get(&addr, "/metrics").await?;
            anyhow::ensure!(
                metrics.lines().any(|l| l.starts_with("tfs_operator_reconciles_total")),
                "{addr}/metrics has no tfs_operator_reconciles_total"
            );
            println!("the operator answers at {addr}");
            Ok(())
        }),
        Cmd::Crd { plural } => {
            print!("{}", if plural == "tfsbackups" { crd::backup_crd_yaml() } else { crd::crd_yaml() });
            Ok(())
        }
        Cmd::PrepareData { dir, uid, gid } => {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&dir).with_context(|| format!("{} is not accessible", dir.display()))?;
            if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                    .with_context(|| format!("cannot chown {}", dir.display()))?;
                info!(dir = %dir.display(), uid, gid, "data directory handed over");
            }
            Ok(())
        }
        Cmd::Run { metrics_addr, watch_namespace, election } => {
            let ns = watch_namespace.filter(|n| !n.is_empty());
            if election.leader_elect {
                election.timing().check().map_err(anyhow::Error::msg)?;
            }
            tokio::runtime::Runtime::new()?.block_on(run(metrics_addr, ns, election))
        }
        Cmd::Heart {
            name,
            namespace,
            pod,
            admin_addr,
            lease_duration_seconds,
            renew_deadline_seconds,
            retry_period_seconds,
            metrics_addr,
        } => {
            let cfg = heart::HeartConfig {
                name,
                namespace,
                pod,
                admin_addr,
                lease_duration: Duration::from_secs(lease_duration_seconds),
                renew_deadline: Duration::from_secs(renew_deadline_seconds),
                retry_period: Duration::from_secs(retry_period_seconds),
            };
            if cfg.renew_deadline >= cfg.lease_duration {
                anyhow::bail!(
                    "renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                    cfg.renew_deadline,
                    cfg.lease_duration
                );
            }
            tokio::runtime::Runtime::new()?.block_on(async move {
                let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    signal().await;
                    let _ = tx.send(true);
                });
                let metrics = Arc::new(tfs_operator::metrics::HeartMetrics::default());
                let m = metrics.clone();
                let app = axum::Router::new().route(
                    "/metrics",
                    get(move || {
                        let m = m.clone();
                        async move { m.encode() }
                    }),
                );
                // Metrics are not worth the Lease: without the port, the heart beats unobserved.
                match tokio::net::TcpListener::bind(metrics_addr).await {
                    Ok(listener) => drop(tokio::spawn(async move { axum::serve(listener, app).await })),
                    Err(e) => tracing::warn!(%metrics_addr, error = %e, "cannot serve /metrics; going on without"),
                }
                heart::Heart::new(client, cfg, metrics)?.run(rx).await;
                Ok(())
            })
        }
    }
}

/// One HTTP/1.0 GET, the whole response as text (a health check needs no more).
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .with_context(|| format!("no answer from {addr}{path} within 5 s"))?
        .with_context(|| format!("GET {addr}{path}"))
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run(metrics_addr: SocketAddr, namespace: Option<String>, election: Election) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { m.encode() }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {metrics_addr}"))?;
    info!(%metrics_addr, "serving /metrics and /health");
    tokio::spawn(async move { axum::serve(listener, app).await });
    if !election.leader_elect {
        info!("leader election off (--leader-elect=false): reconciling at once");
        metrics.leader.set(1);
        info!(namespace = namespace.as_deref().unwrap_or("(all)"), "watching TfsNameservers");
        futures::join!(
            controller::run(client.clone(), metrics, namespace.clone(), Sightings::default()),
            backup::run(client, namespace),
        );
        return Ok(());
    }
    let timing = election.timing();
    let cfg = leader::Config {
        namespace: election
            .leader_election_namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_string()),
        lease_name: election.leader_election_lease,
        identity: election.leader_identity.filter(|n| !n.is_empty()).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "tfs-operator".into());
            format!("{}-{}", host.trim(), std::process::id())
        }),
        timing,
    };
    // While standing by, watch the heartbeat Leases the controller would judge: when this process
    // leads, a Lease it saw go silent is not judged from zero again (standby.rs).
    let watching = standby::Watch::start(client.clone(), namespace.as_deref());
    let mut elected = leader::Election::start(client.clone(), cfg, metrics.clone());
    tokio::select! {
        leads = elected.leading() => anyhow::ensure!(leads, "the leader election ended before this process led"),
        _ = signal() => {
            elected.shutdown().await;
            return Ok(());
        }
    }
    // Leading: the controller starts from nothing a predecessor saw (a fresh Context, every Lease
    // read again), its Lease clocks seeded with this process's own sightings.
    let sightings = watching.take();
    info!(namespace = namespace.as_deref().unwrap_or("(all)"), "leading: watching TfsNameservers");
    // The TfsBackup controller beside it, under the same leadership (and the same shutdown). Both
    // write only while this process's term runs (leader/term.rs).
    let client = elected.guard(client);
    futures::join!(
        controller::run(client.clone(), metrics, namespace.clone(), sightings),
        backup::run(client, namespace),
    );
    // The controller has stopped (shutdown signal): hand the Lease over at once.
    elected.shutdown().await;
    Ok(())
}
