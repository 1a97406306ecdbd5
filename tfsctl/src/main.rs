//! tfsctl: the nameserver's command-line client, admin tool, load generator and dataserver
//! simulator.

mod backup;
mod bench;
mod devcerts;
mod history;
mod linearize;
mod ops;
mod probe;
mod record;
mod sim;
mod tls;
mod verify;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tfs_nameserver::proto::{self, admin_client::AdminClient, client_client::ClientClient};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(version, about = "Client, admin tool, load generator and dataserver simulator for the TFS nameserver")]
struct Cli {
    /// Nameserver client address (host:port); admin commands use the admin address.
    #[arg(long, global = true, default_value = "127.0.0.1:8100", env = "TFS_ADDR")]
    addr: String,
    /// Admin address (loopback on the nameserver's host) for role, drain and status --admin.
    #[arg(long, global = true, default_value = "127.0.0.1:8102", env = "TFS_ADMIN_ADDR")]
    admin_addr: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Role, epoch, seqs, sync set and peers' lag.
    Status {
        /// Ask the admin port instead of the client port.
        #[arg(long)]
        admin: bool,
    },
    /// Block operations.
    #[command(subcommand)]
    Block(BlockCmd),
    /// The archive in object storage: ls, verify, restore; `now` takes a backup on the master.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Run simulated dataservers that lease, report blocks and execute tasks, until interrupted.
    SimDataservers(sim::SimArgs),
    /// Load generator: ops/s and latency percentiles.
    Bench(bench::BenchArgs),
    /// Check a record of acknowledged mutations against the nameserver, and its history (split
    /// brain, write outages, per fault with --faults).
    Verify(verify::VerifyArgs),
    /// Tell the local nameserver its role (admin port).
    Role {
        #[arg(value_enum)]
        role: RoleArg,
        #[arg(long)]
        epoch: u64,
        /// The master's replication address, for a slave.
        #[arg(long, default_value = "")]
        master: String,
        /// Over TLS: the name the master's certificate carries, when --master is an IP it does not.
        #[arg(long, default_value = "")]
        master_name: String,
        /// How long the role holds without renewal (e.g. 3s, 500ms).
        #[arg(long, value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Stop accepting writes (planned switchover) and print the last seq.
    Drain,
    /// Write a development CA and a TLS directory per node (for --tls-dir, --ca/--cert/--key).
    DevCerts(devcerts::DevCertsArgs),
    /// Audit the replication port: try a slave's LOGIN as --node with this client's TLS settings
    /// (--ca/--cert/--key, none for plain), print what the node answered, and leave. Exit status
    /// 0 when refused, 3 when accepted.
    ProbeLogin(probe::ProbeLoginArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Master,
    Slave,
}

#[derive(Debug, Subcommand)]
enum BlockCmd {
    /// Allocate a block; prints its id.
    Create {
        #[arg(long, default_value_t = 0)]
        replicas: u32,
    },
    /// Show a block (from the master, linearizable; `--stale`: from any node, as it has applied).
    Get {
        id: u64,
        #[arg(long)]
        stale: bool,
    },
    /// Commit a block's new contents.
    Commit {
        id: u64,
        #[arg(long)]
        version: u32,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        files: u32,
        #[arg(long, default_value_t = 0)]
        del_size: u64,
        #[arg(long, default_value_t = 0)]
        del_files: u32,
    },
    /// Remove a block.
    Rm { id: u64 },
    /// List blocks in id order.
    Ls {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Read from any node as it has applied (not linearizable); says so on stderr.
        #[arg(long)]
        stale: bool,
    },
}

/// Checks `addr` looks like host:port and returns the endpoint for it.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    let valid = addr.parse::<SocketAddr>().is_ok()
        || addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !valid {
        bail!("address {addr:?} is not host:port (for example 127.0.0.1:8100)");
    }
    let tls = tls::client_tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))?;
    if let Some(t) = tls {
        ep = ep.tls_config(t)?;
    }
    // Short timeouts: across a failover the old master's address may silently stop answering
    // (a deleted pod), and a client must notice within a second, not a TCP timeout.
    Ok(ep
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true))
}

pub async fn connect(addr: &str) -> Result<Channel> {
    connect_to(endpoint(addr)?, addr).await
}

/// Connects to `ep` (an [`endpoint`] with settings of the caller's), explaining TLS failures.
pub async fn connect_to(ep: Endpoint, addr: &str) -> Result<Channel> {
    ep.connect().await.map_err(|e| match tls::explain(&e) {
        Some(tls) => anyhow::anyhow!("cannot connect to the nameserver at {addr}: {tls}"),
        None => anyhow::Error::new(e).context(format!("cannot connect to the nameserver at {addr}")),
    })
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", tls::describe(&s))
}

fn print_block(b: &proto::Block, json: bool) {
    if json {
        println!("{}", block_json(b));
    } else {
        let reps: Vec<String> = b.dataservers.iter().zip(&b.addrs).map(|(d, a)| format!("{d}@{a}")).collect();
        println!(
            "block {} version {} size {} files {} deleted {}/{} replicas [{}]",
            b.id,
            b.version,
            b.size,
            b.file_count,
            b.del_size,
            b.del_file_count,
            reps.join(", ")
        );
    }
}

fn block_json(b: &proto::Block) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "version": b.version, "size": b.size, "file_count": b.file_count,
        "del_size": b.del_size, "del_file_count": b.del_file_count,
        "dataservers": b.dataservers, "addrs": b.addrs,
    })
}

fn print_status(s: &proto::StatusReply, json: bool) {
    let role = match s.role() {
        proto::Role::Master => "master",
        proto::Role::Slave => "slave",
        proto::Role::Unspecified => "unknown",
    };
    let valid = if s.valid_for_ms == u64::MAX { "forever".to_string() } else { format!("{}ms", s.valid_for_ms) };
    if json {
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|p| serde_json::json!({"node": p.node, "addr": p.addr, "acked_seq": p.acked_seq, "lag": p.lag, "in_sync_set": p.in_sync_set}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "node": s.node, "role": role, "epoch": s.epoch, "writable": s.writable, "draining": s.draining,
                "valid_for_ms": s.valid_for_ms, "master": s.master_addr,
                "applied_seq": s.applied_seq, "durable_seq": s.durable_seq, "committed_seq": s.committed_seq,
                "checkpoint_seq": s.checkpoint_seq, "first_log_seq": s.first_log_seq,
                "replication_mode": s.replication_mode, "sync_set": s.sync_set, "peers": peers,
                "blocks": s.block_count, "dataservers": s.dataserver_count, "live_dataservers": s.live_dataservers,
                "next_block_id": s.next_block_id,
                "safe_mode": s.safe_mode, "safe_mode_remaining_ms": s.safe_mode_remaining_ms,
                "pending_tasks": s.pending_tasks,
                "archive": s.archive.as_ref().map(|a| serde_json::json!({
                    "enabled": a.enabled, "url": a.url, "archived_seq": a.archived_seq, "lag_seconds": a.lag_seconds,
                    "last_checkpoint_seq": a.last_checkpoint_seq, "last_checkpoint_object": a.last_checkpoint_object,
                    "last_checkpoint_unix_ms": a.last_checkpoint_unix_ms, "last_error": a.last_error,
                    "last_error_unix_ms": a.last_error_unix_ms,
                })),
            })
        );
        return;
    }
    println!("node:        {}", s.node);
    println!(
        "role:        {role}{}{}",
        if s.writable { " (writable)" } else { "" },
        if s.draining { " (draining)" } else { "" }
    );
    println!("epoch:       {}   valid for: {valid}", s.epoch);
    if !s.master_addr.is_empty() {
        println!("master:      {}", s.master_addr);
    }
    println!("seq:         applied {}  durable {}  committed {}", s.applied_seq, s.durable_seq, s.committed_seq);
    println!("oplog:       first seq {}  checkpoint seq {}", s.first_log_seq, s.checkpoint_seq);
    println!("replication: {}  sync set [{}]", s.replication_mode, s.sync_set.join(", "));
    for p in &s.peers {
        println!(
            "  peer {} {} acked {} lag {}{}",
            p.node,
            p.addr,
            p.acked_seq,
            p.lag,
            if p.in_sync_set { " in-sync" } else { "" }
        );
    }
    println!("blocks:      {}  (next id {})", s.block_count, s.next_block_id);
    println!("dataservers: {} live of {}", s.live_dataservers, s.dataserver_count);
    if s.safe_mode {
        println!(
            "safe mode:   planning nothing for at most {}ms more (until every live dataserver reported)",
            s.safe_mode_remaining_ms
        );
    }
    let mut tasks: Vec<_> = s.pending_tasks.iter().collect();
    tasks.sort();
    let tasks: Vec<String> = tasks.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("tasks:       {}", if tasks.is_empty() { "none pending".to_string() } else { tasks.join(", ") });
    if let Some(a) = s.archive.as_ref().filter(|a| a.enabled) {
        println!(
            "archive:     {}  archived seq {}  lag {:.1}s  last checkpoint seq {}{}",
            a.url,
            a.archived_seq,
            a.lag_seconds,
            a.last_checkpoint_seq,
            if a.last_error.is_empty() { String::new() } else { format!("  last error: {}", a.last_error) }
        );
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Where a TLS failure could have been: the client port (the admin port is plain).
    let client_port = match &cli.cmd {
        Cmd::Role { .. }
        | Cmd::Drain
        | Cmd::Status { admin: true }
        | Cmd::DevCerts(_)
        | Cmd::ProbeLogin(_)
        | Cmd::Backup(backup::BackupCmd::Ls(_) | backup::BackupCmd::Verify(_) | backup::BackupCmd::Restore(_)) => None,
        _ => Some(cli.addr.clone()),
    };
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            let why = match client_port {
                Some(addr) if !msg.contains("TLS:") => tls::diagnose(&addr).await,
                _ => None,
            };
            eprintln!("tfsctl: {msg}");
            if let Some(why) = why {
                eprintln!("tfsctl: {why}");
            }
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let json = cli.json;
    tls::init(&cli.tls)?;
    match cli.cmd {
        Cmd::Status { admin } => {
            let s = if admin {
                AdminClient::new(connect(&cli.admin_addr).await?).status(proto::StatusRequest {}).await
            } else {
                ClientClient::new(connect(&cli.addr).await?).status(proto::StatusRequest {}).await
            }
            .map_err(status_error)?
            .into_inner();
            print_status(&s, json);
        }
        Cmd::Block(b) => {
            let mut c = ClientClient::new(connect(&cli.addr).await?);
            match b {
                BlockCmd::Create { replicas } => {
                    let r = c
                        .create_block(proto::CreateBlockRequest { replicas })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    let b = r.block.context("reply without a block")?;
                    if json { print_block(&b, true) } else { println!("{}", b.id) }
                }
                BlockCmd::Get { id, stale } => {
                    let r = c
                        .get_block(proto::GetBlockRequest { block_id: id, stale })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    if r.stale {
                        eprintln!("stale read: as applied at seq {} (epoch {})", r.applied_seq, r.epoch);
                    }
                    print_block(&r.block.context("reply without a block")?, json);
                }
                BlockCmd::Commit { id, version, size, files, del_size, del_files } => {
                    let r = c
                        .commit_block(proto::CommitBlockRequest {
                            block_id: id,
                            version,
                            size,
                            file_count: files,
                            del_size,
                            del_file_count: del_files,
                        })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    print_block(&r.block.context("reply without a block")?, json);
                }
                BlockCmd::Rm { id } => {
                    c.remove_block(proto::RemoveBlockRequest { block_id: id }).await.map_err(status_error)?;
                    if !json {
                        println!("removed {id}");
                    }
                }
                BlockCmd::Ls { after, limit, stale } => {
                    let r = c
                        .list_blocks(proto::ListBlocksRequest { after, limit, stale })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    if json {
                        let v: Vec<_> = r.blocks.iter().map(block_json).collect();
                        println!("{}", serde_json::json!({"blocks": v, "more": r.more}));
                    } else {
                        for b in &r.blocks {
                            print_block(b, false);
                        }
                        if r.more {
                            println!("... more after {}", r.blocks.last().map(|b| b.id).unwrap_or(after));
                        }
                    }
                }
            }
        }
        Cmd::SimDataservers(a) => sim::run_until_interrupted(&cli.addr, a).await?,
        Cmd::Bench(a) => return bench::run(&cli.addr, a, json).await,
        Cmd::Verify(a) => return verify::run(&cli.addr, &a, json).await,
        Cmd::Backup(b) => return backup::run(&cli.addr, b, json).await,
        Cmd::Role { role, epoch, master, master_name, valid_for } => {
            let role = match role {
                RoleArg::Master => proto::Role::Master,
                RoleArg::Slave => proto::Role::Slave,
            };
            let r = AdminClient::new(connect(&cli.admin_addr).await?)
                .assume_role(proto::AssumeRoleRequest {
                    role: role as i32,
                    epoch,
                    master_addr: master,
                    master_name,
                    valid_for_ms: valid_for.as_millis() as u64,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("role {:?} epoch {} durable seq {}", r.role(), r.epoch, r.durable_seq);
        }
        Cmd::DevCerts(a) => devcerts::run(&a)?,
        Cmd::ProbeLogin(a) => match probe::run(&a, &cli.tls).await? {
            probe::Outcome::Refused(why) => println!("refused: {why}"),
            probe::Outcome::Accepted => {
                println!("accepted: {} would replicate as slave {}", a.repl, a.node);
                return Ok(3);
            }
        },
        Cmd::Drain => {
            let r = AdminClient::new(connect(&cli.admin_addr).await?)
                .drain(proto::DrainRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            println!("drained: epoch {} last seq {} committed seq {}", r.epoch, r.last_seq, r.committed_seq);
        }
    }
    Ok(0)
}
