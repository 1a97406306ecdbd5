//! `tfsctl dev-certs`: a CA and a TLS directory per node, for development and benchmarks (a
//! cluster's certificates come from its own issuer).

use std::path::PathBuf;

use anyhow::{Context, Result};
use tfs_nameserver::tls::devcerts::{Ca, write_dir, write_file};

#[derive(Debug, Clone, clap::Args)]
pub struct DevCertsArgs {
    /// Where to write: DIR/ca.crt and ca.key, and DIR/NODE/ for each node (ca.crt, tls.crt,
    /// tls.key: a --tls-dir for tfs-nameserver, or --ca/--cert/--key for tfsctl).
    #[arg(long)]
    pub dir: PathBuf,
    /// Node names (comma-separated); each node's certificate names it (the LOGIN identity).
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// More names every node's certificate carries (DNS names or IP addresses, comma-separated),
    /// e.g. the addresses slaves dial.
    #[arg(long, value_delimiter = ',')]
    pub san: Vec<String>,
    /// Names of a VIP certificate, written as vip.crt/vip.key into every node's directory.
    #[arg(long, value_delimiter = ',')]
    pub vip: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

pub fn run(a: &DevCertsArgs) -> Result<()> {
    let ca = Ca::new("tfs development CA").context("cannot make the CA")?;
    let vip = if a.vip.is_empty() { None } else { Some(ca.issue(&a.vip, a.days).context("VIP certificate")?) };
    for node in &a.nodes {
        let names: Vec<String> = std::iter::once(node.clone()).chain(a.san.iter().cloned()).collect();
        let pod = ca.issue(&names, a.days).with_context(|| format!("certificate of {node}"))?;
        let dir = a.dir.join(node);
        write_dir(&dir, &ca.cert_pem, &pod, vip.as_ref()).with_context(|| format!("cannot write {}", dir.display()))?;
        println!("{}: {}", dir.display(), names.join(", "));
    }
    write_file(&a.dir, "ca.crt", &ca.cert_pem)?;
    write_file(&a.dir, "ca.key", &ca.key_pem())?;
    Ok(())
}
