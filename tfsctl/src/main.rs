//! tfsctl: the nameserver's command-line client, admin tool, load generator and dataserver
//! simulator. The commands live in the library (lib.rs); this parses the command line.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tfs_nameserver::proto::{self, admin_client::AdminClient, client_client::ClientClient};
use tfsctl::show::{block_json, print_block, print_status};
use tfsctl::{backup, bench, connect, devcerts, probe, sim, status_error, tls, verify};

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
                        .create_block(proto::CreateBlockRequest { replicas, request_id: None })
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
                            request_id: None,
                        })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    print_block(&r.block.context("reply without a block")?, json);
                }
                BlockCmd::Rm { id } => {
                    c.remove_block(proto::RemoveBlockRequest { block_id: id, request_id: None })
                        .await
                        .map_err(status_error)?;
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
