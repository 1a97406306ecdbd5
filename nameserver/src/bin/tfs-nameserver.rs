//! tfs-nameserver: one nameserver process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tfs_nameserver::config::{EngineConfig, ReplicationMode};
use tfs_nameserver::engine::Engine;
use tfs_nameserver::mutation::Mutation;
use tfs_nameserver::oplog::format;
use tfs_nameserver::server::{Listen, serve::serve};
use tfs_nameserver::tls::{ClientAuth, Tls, TlsSettings};
use tracing::info;

// mimalloc, not glibc's malloc: a create's buffers are allocated on a runtime worker and freed on
// the writer thread (or the other way round), which glibc pays for in arena locks and
// consolidation. Measured on loopback (creates at c = 256, master + sync slave): the master's CPU
// per create from about 45 to about 36 µs, the echo's unchanged.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Sync,
    Async,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Publication {
    None,
    Lease,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClientAuthArg {
    None,
    Required,
}

#[derive(Debug, Parser)]
#[command(version, about = "TFS nameserver: block and dataserver metadata with a durable, replicated oplog")]
struct Args {
    /// Directory for the oplog and checkpoints (created if missing).
    #[arg(long, env = "TFS_DATA_DIR")]
    data_dir: PathBuf,
    /// Client and dataserver gRPC address.
    #[arg(long, default_value = "0.0.0.0:8100")]
    listen: SocketAddr,
    /// Replication address (slaves dial the master here).
    #[arg(long, default_value = "0.0.0.0:8101")]
    repl_listen: SocketAddr,
    /// Admin gRPC address (AssumeRole, Drain). Must be loopback.
    #[arg(long, default_value = "127.0.0.1:8102")]
    admin_listen: SocketAddr,
    /// Prometheus /metrics and /health.
    #[arg(long, default_value = "0.0.0.0:9102")]
    metrics_listen: SocketAddr,
    /// Master forever at epoch 1, no replication (development).
    #[arg(long)]
    standalone: bool,
    /// This node's name (defaults to the host name).
    #[arg(long, env = "TFS_NODE")]
    node: Option<String>,
    /// sync: acknowledge once durable on the master and every slave in the sync set.
    #[arg(long, value_enum, default_value = "sync", env = "TFS_REPLICATION_MODE", ignore_case = true)]
    replication_mode: Mode,
    /// Replicas of a new block when the client does not say.
    #[arg(long, default_value_t = 2, env = "TFS_BLOCK_REPLICAS", value_parser = clap::value_parser!(u32).range(1..=4))]
    block_replicas: u32,
    /// Records between checkpoints.
    #[arg(long, default_value_t = 2_000_000)]
    checkpoint_every: u64,
    /// Cluster identity: slaves of another cluster are refused at LOGIN.
    #[arg(long, default_value = "tfs", env = "TFS_CLUSTER_ID")]
    cluster_id: String,
    /// Keepalive lease a master grants each slave (e.g. 1500ms).
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    slave_lease: std::time::Duration,
    /// Where a removal from the sync set must be published before commits stop waiting for the
    /// removed slave: `lease` (the heart publishes it on the Kubernetes Lease) or `none`.
    #[arg(long, value_enum, default_value = "none")]
    sync_set_publication: Publication,
    /// Records of admitted writes not yet answered; a write beyond it is refused at once with
    /// RESOURCE_EXHAUSTED (and a `retry-after-ms` hint), never queued.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_inflight_records: u32,
    /// Free bytes the data volume keeps: below them, writes are refused at once with
    /// RESOURCE_EXHAUSTED (reads go on) instead of failing an oplog append.
    #[arg(long, default_value_t = 64 << 20, env = "TFS_MIN_FREE_BYTES")]
    min_free_bytes: u64,
    /// Most replicate tasks a dataserver takes part in at once (as source or target); the copies
    /// a leave calls for are planned as tasks finish.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_replicate_tasks: u64,
    /// Share (0..=1) of a block's bytes or of its files deleted from which it is compacted (a
    /// COMPACT task to one of its dataservers). TFS's `compact_delete_ratio` default: 15 %.
    #[arg(long, default_value_t = tfs_nameserver::planning::DEFAULT_COMPACT_RATIO, value_parser = unit_ratio)]
    compact_ratio: f64,
    /// Most compactions a dataserver runs at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    max_compact_tasks: u64,
    /// Balance when the used ratios of the fullest and the emptiest live dataserver are further
    /// apart than this (0..=1): moves copy a block to the emptiest, then drop it from the fullest.
    #[arg(long, default_value_t = 0.05, value_parser = unit_ratio)]
    balance_threshold: f64,
    /// Most balance moves in flight in the whole cluster (balance's rate limit); 0 = no balance.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    max_balance_tasks: u64,
    /// Longest safe mode after a promotion: the new master plans no replication, deletion,
    /// compaction or balance until every live dataserver has reported to it or been declared
    /// dead (one dataserver lease at most), and never longer than this. TFS's default: 300 s.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    safe_mode_time: std::time::Duration,
    /// Records grouped under one fdatasync at most (bounds how long a group holds the state).
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_group_records: u64,
    /// Under load (at least --commit-siblings records of writes in flight), a group commit waits
    /// this long for more writes to join it: fewer fdatasyncs, shipments and acks for the same
    /// writes, at the price of this much latency; 0 = never wait.
    #[arg(long, default_value = "200us", value_parser = humantime::parse_duration, env = "TFS_COMMIT_DELAY")]
    commit_delay: std::time::Duration,
    /// Records of admitted writes in flight from which --commit-delay applies (below it, a write
    /// is committed as soon as the writer is free).
    #[arg(long, default_value_t = 64, env = "TFS_COMMIT_SIBLINGS")]
    commit_siblings: u32,
    /// A master closes its client connections this often (GOAWAY; clients dial again through the
    /// VIP), so long-lived connections spread again; 0 = never. Nodes that are not a writable
    /// master close theirs at once on a role change, and every 2 s while it lasts.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    max_connection_age: std::time::Duration,
    /// TLS on the client and replication ports, from a directory laid out as a mounted Secret:
    /// ca.crt, tls.crt, tls.key (this pod's; its DNS names include --node), optionally
    /// vip.crt/vip.key (served on the client port). Re-read while running. Absent: plain TCP.
    #[arg(long, env = "TFS_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// With --tls-dir: whether client-port clients must present a certificate of the CA.
    #[arg(long, value_enum, default_value = "none", env = "TFS_CLIENT_AUTH", ignore_case = true)]
    client_auth: ClientAuthArg,
    /// How often the --tls-dir files are read again (rotation without restart).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    tls_reload_every: std::time::Duration,
    /// Oplog segment size in bytes (older segments are removed after a checkpoint).
    #[arg(long, default_value_t = 64 << 20, hide = true)]
    segment_bytes: u64,
    /// Turn fdatasync off (benchmarks of everything but the disk only; loses data on a crash).
    #[arg(long, hide = true)]
    unsafe_no_fsync: bool,
    /// Archive the committed oplog and checkpoints continuously to object storage:
    /// s3://bucket/prefix or file:///abs/dir. Absent: no archive. S3 credentials come from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "TFS_ARCHIVE")]
    archive: Option<String>,
    /// The S3 endpoint of --archive (e.g. http://10.244.0.1:8333); absent: AWS.
    #[arg(long, env = "TFS_ARCHIVE_ENDPOINT")]
    archive_endpoint: Option<String>,
    /// The S3 region of --archive.
    #[arg(long, default_value = "us-east-1", env = "TFS_ARCHIVE_REGION")]
    archive_region: String,
    /// The oldest committed record not yet archived is uploaded within about this long (the
    /// open segment's tail is archived at least this often).
    #[arg(long, default_value = "10s", env = "TFS_ARCHIVE_TIMEOUT", value_parser = positive_duration)]
    archive_timeout: std::time::Duration,
    /// A checkpoint is taken and archived this often (and on TakeBackup).
    #[arg(long, default_value = "1h", env = "TFS_ARCHIVE_CHECKPOINT_EVERY", value_parser = positive_duration)]
    archive_checkpoint_every: std::time::Duration,
    /// Archived objects older than this are deleted, except the newest checkpoint older than it and
    /// everything after that checkpoint (the base of the oldest restorable point).
    #[arg(long, default_value = "7d", env = "TFS_ARCHIVE_RETENTION", value_parser = positive_duration)]
    archive_retention: std::time::Duration,
    /// Log lines as text or as JSON objects (for log collectors).
    #[arg(long, value_enum, default_value = "text", env = "TFS_LOG_FORMAT", ignore_case = true)]
    log_format: tfs_nameserver::logging::LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tfs_nameserver::logging::init(args.log_format);
    if !args.admin_listen.ip().is_loopback() {
        anyhow::bail!(
            "--admin-listen {} must be a loopback address: AssumeRole and Drain are for the local heart only",
            args.admin_listen
        );
    }
    let tls = match (&args.tls_dir, args.client_auth) {
        (None, ClientAuthArg::Required) => anyhow::bail!("--client-auth required needs --tls-dir"),
        (None, _) => None,
        (Some(dir), auth) => Some(Tls::load(TlsSettings {
            dir: dir.clone(),
            client_auth: match auth {
                ClientAuthArg::None => ClientAuth::None,
                ClientAuthArg::Required => ClientAuth::Required,
            },
            reload_every: args.tls_reload_every,
        })?),
    };
    let mut cfg = EngineConfig::new(&args.data_dir);
    if let Some(n) = args.node {
        cfg.node = n;
    }
    if let Some(t) = &tls
        && !t.pod_names().contains(&cfg.node)
    {
        tracing::warn!(node = %cfg.node, certificate = ?t.pod_names(), "tls.crt does not name this node: a master will refuse its LOGIN");
    }
    cfg.standalone = args.standalone;
    cfg.fsync = !args.unsafe_no_fsync;
    cfg.checkpoint_every = args.checkpoint_every.max(1);
    cfg.segment_bytes = args.segment_bytes.max(4096);
    cfg.max_inflight_records = args.max_inflight_records;
    cfg.min_free_bytes = args.min_free_bytes;
    cfg.max_replicate_tasks = args.max_replicate_tasks as usize;
    cfg.max_group_records = args.max_group_records;
    cfg.commit_delay = args.commit_delay;
    cfg.commit_siblings = args.commit_siblings;
    cfg.compact_ratio = args.compact_ratio;
    cfg.max_compact_tasks = args.max_compact_tasks as usize;
    cfg.balance_threshold = args.balance_threshold;
    cfg.max_balance_tasks = args.max_balance_tasks as usize;
    cfg.safe_mode_time = args.safe_mode_time;
    if let Some(url) = &args.archive {
        let store = tfs_nameserver::archive::StoreConfig {
            url: url.clone(),
            endpoint: args.archive_endpoint.clone(),
            region: args.archive_region.clone(),
        };
        // Checked now: a bad URL or endpoint is a startup error, not a warning in the log later.
        tfs_nameserver::archive::Store::open(&store).with_context(|| "--archive")?;
        let mut a = tfs_nameserver::archive::ArchiveConfig::new(store);
        a.timeout = args.archive_timeout;
        a.checkpoint_every = args.archive_checkpoint_every;
        a.retention = args.archive_retention;
        cfg.archive = Some(a);
    } else if args.archive_endpoint.is_some() {
        anyhow::bail!("--archive-endpoint needs --archive");
    }
    cfg.replication_mode = match args.replication_mode {
        Mode::Sync => ReplicationMode::Sync,
        Mode::Async => ReplicationMode::Async,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let t0 = Instant::now();
        let data_dir = cfg.data_dir.clone();
        let repl = tfs_nameserver::config::ReplicationConfig {
            cluster_id: args.cluster_id,
            slave_lease: args.slave_lease,
            ..Default::default()
        };
        let engine = tokio::task::spawn_blocking(move || Engine::open_with(cfg, repl))
            .await?
            .with_context(|| format!("cannot recover the state in {}", data_dir.display()))?;
        info!(elapsed_ms = t0.elapsed().as_millis() as u64, "engine ready");
        engine.commit().set_publish_removals(matches!(args.sync_set_publication, Publication::Lease));
        if engine.cfg().standalone && engine.state().read().epoch == tfs_nameserver::epoch::Epoch::ZERO {
            let node = engine.cfg().node.clone();
            engine
                .write_unmetered(move |t| Ok(t.log(Mutation::EpochStart(format::EpochStart { epoch: 1, node }))?))
                .await
                .map_err(|e| anyhow::anyhow!("cannot start epoch 1: {e}"))?;
        }
        let listen = Listen {
            client: args.listen,
            repl: args.repl_listen,
            admin: args.admin_listen,
            metrics: args.metrics_listen,
            tls,
        };
        if let Some(t) = &listen.tls {
            t.watch();
        }
        serve(engine, listen, args.block_replicas, args.max_connection_age, shutdown_signal()).await
    })
}

fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (a duration such as 10s, 1h, 7d)")),
    }
}

fn unit_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is not within 0..=1")),
        Err(e) => Err(e.to_string()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
}
