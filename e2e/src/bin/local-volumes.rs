//! `local-volumes`: the local test cluster's provisioner of node-local volumes (see
//! e2e/src/local_volumes.rs). Started by `make cluster` as a host process, like the kubelet.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Provisions node-local PersistentVolumes (provisioner tfs.io/local-volumes) for the local cluster")]
struct Cli {
    /// Where the volumes' directories live: <root>/<node>/<pv>.
    #[arg(long)]
    root: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.root)?;
    let client = kube::Client::try_default().await?;
    println!("local-volumes: provisioning {} under {}", tfs_e2e::local_volumes::PROVISIONER, cli.root.display());
    tfs_e2e::local_volumes::run(client, cli.root).await
}
