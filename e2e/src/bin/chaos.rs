//! `make chaos`: randomized faults under a recording load on the local cluster, then a history
//! check. See e2e/src/chaos/ and docs/OPERATIONS.md.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use tfs_e2e::chaos::{self, faults, schedule::FaultKind};

#[derive(Debug, Parser)]
#[command(about = "Randomized faults under load on the local cluster, with a history checker")]
struct Cli {
    /// How many faults to inject.
    #[arg(long, env = "CHAOS_FAULTS", default_value_t = 30)]
    faults: usize,
    /// Seed of the schedule (default: the current time in ms; always printed, to replay a run).
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// Only these kinds of fault (comma-separated names; default: all).
    #[arg(long, env = "CHAOS_KINDS", value_delimiter = ',')]
    kinds: Vec<String>,
    /// How long the system may take to converge after each fault.
    #[arg(long, env = "CHAOS_CONVERGE_TIMEOUT", default_value = "240s", value_parser = humantime::parse_duration)]
    converge_timeout: Duration,
    /// Keep the namespace at the end.
    #[arg(long)]
    keep: bool,
    /// Only undo what a run killed with SIGKILL may have left: a stopped kube-apiserver.
    #[arg(long)]
    heal: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.heal {
        let thawed = faults::thaw_apiserver()?;
        println!("chaos --heal: kube-apiserver {}", if thawed { "was stopped: SIGCONT sent" } else { "is running" });
        return Ok(());
    }
    let kinds = if cli.kinds.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        cli.kinds.iter().map(|k| FaultKind::parse(k.trim())).collect::<Result<_>>()?
    };
    let opts = chaos::Opts {
        faults: cli.faults,
        seed: cli.seed,
        kinds,
        converge_timeout: cli.converge_timeout,
        keep: cli.keep,
    };
    let code = match chaos::run(opts).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
