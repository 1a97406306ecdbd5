//! Evidence kept when something went wrong (a slow failover trial, a failed safety check): what
//! the cluster said about it, while its pods and their logs are still there.

use anyhow::Result;

use crate::{OPERATOR_NS, kubectl};

/// Keeps what tells why a scenario failed or a trial was slow, into `dir`: the namespace's events, the pods and nodes
/// as they are now, and the logs of the operators and of the instances since a few seconds
/// before the fault (`--timestamps`, each line prefixed with its pod and container). A log that
/// cannot be read is noted in its file, never fatal: the run goes on.
pub fn keep(dir: &std::path::Path, ns: &str, since_s: u64, why: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let get = |args: &[&str]| kubectl(args).unwrap_or_else(|e| format!("kubectl {}: {e}\n", args.join(" ")));
    let since = format!("--since={since_s}s");
    let files = [
        ("why.txt", format!("{why}\n")),
        ("events.txt", get(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp", "-o", "wide"])),
        (
            "pods.txt",
            get(&["get", "pods", "-n", ns, "-o", "wide"]) + &get(&["get", "pods", "-n", OPERATOR_NS, "-o", "wide"]),
        ),
        ("nodes.txt", get(&["get", "nodes", "-o", "wide"])),
        (
            "operator.log",
            get(&[
                "logs",
                "-n",
                OPERATOR_NS,
                "-l",
                "app.kubernetes.io/name=tfs-operator",
                "--all-containers",
                "--prefix",
                "--timestamps",
                "--tail=-1",
                &since,
            ]),
        ),
        (
            "instances.log",
            get(&[
                "logs",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/name=tfs-nameserver",
                "--all-containers",
                "--prefix",
                "--timestamps",
                "--tail=-1",
                &since,
            ]),
        ),
    ];
    // A killed nameserver was restarted: what it said before is its container's previous log
    // (asked pod by pod: a pod without one would fail the whole request).
    let pods = kubectl(&["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=tfs-nameserver", "-o", "name"])
        .unwrap_or_default();
    let previous: String = pods
        .split_whitespace()
        .map(|pod| {
            let args = ["logs", "-n", ns, pod, "-c", "nameserver", "--previous", "--timestamps", "--tail=-1", &since];
            format!("== {pod} (previous nameserver container)\n{}", get(&args))
        })
        .collect();
    for (name, text) in files.into_iter().chain([("instances-previous.log", previous)]) {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
