//! The processes of the cluster's pods, from the host: their pids through the CRI of their node,
//! and signals (kill -9, freeze and thaw).

use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::{bin, containerd_socket, pod_node, run};

/// crictl against the containerd of the node `pod` runs on.
fn crictl_for(ns: &str, pod: &str, args: &[&str]) -> Result<Output> {
    let endpoint = format!("unix://{}", containerd_socket(&pod_node(ns, pod)?).display());
    let mut all = vec!["--runtime-endpoint", endpoint.as_str()];
    all.extend_from_slice(args);
    run(&bin("crictl"), &all)
}

/// Host pid of a container of a pod, through the CRI of its node.
pub fn container_pid(ns: &str, pod: &str, container: &str) -> Result<u32> {
    let id = String::from_utf8_lossy(
        &crictl_for(
            ns,
            pod,
            &[
                "ps",
                "-q",
                "--name",
                container,
                "--label",
                &format!("io.kubernetes.pod.name={pod}"),
                "--label",
                &format!("io.kubernetes.pod.namespace={ns}"),
            ],
        )?
        .stdout,
    )
    .lines()
    .next()
    .context("container not found")?
    .to_string();
    let pid = String::from_utf8_lossy(
        &crictl_for(ns, pod, &["inspect", "-o", "go-template", "--template", "{{.info.pid}}", &id])?.stdout,
    )
    .trim()
    .to_string();
    Ok(pid.parse()?)
}

pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status()?.success();
    if !ok {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

pub fn kill9(pid: u32) -> Result<()> {
    let ok = Command::new("kill").args(["-9", &pid.to_string()]).status()?.success();
    if !ok {
        bail!("kill -9 {pid} failed");
    }
    Ok(())
}

/// Host pid of a pod's sandbox (pause) process: it holds the pod's network namespace for as long
/// as the pod lives, whatever its containers do.
pub fn pod_sandbox_pid(ns: &str, pod: &str) -> Result<u32> {
    let ids =
        crictl_for(ns, pod, &["pods", "-q", "--state", "ready", "--name", &format!("^{pod}$"), "--namespace", ns])?;
    let id = String::from_utf8_lossy(&ids.stdout).lines().next().context("pod sandbox not found")?.to_string();
    let pid = crictl_for(ns, pod, &["inspectp", "-o", "go-template", "--template", "{{.info.pid}}", &id])?;
    Ok(String::from_utf8_lossy(&pid.stdout).trim().parse()?)
}
