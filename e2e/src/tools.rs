//! The tools the harness runs as a user would (kubectl, helm, crictl: `run`), and the kube-rs
//! client, all on the local cluster's kubeconfig.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{bin, kubeconfig, root};

/// Runs a command to completion; fails with its output when it fails.
pub fn run(cmd: &Path, args: &[&str]) -> Result<Output> {
    // .e2e/bin first on PATH: kubectl finds its plugins (kubectl-tfs) there.
    let path = format!("{}:{}", root().join(".e2e/bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(cmd)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", cmd.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed:\n{}{}",
            cmd.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

pub fn kubectl(args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(&bin("kubectl"), args)?.stdout).into_owned())
}

pub fn kubectl_stdin(args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut c = Command::new(bin("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let out = c.wait_with_output()?;
    if !out.status.success() {
        bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn client() -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}
