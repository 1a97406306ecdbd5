//! Harness for the end-to-end suites: the real local cluster (`make cluster`), driven the way a
//! user drives it (helm, kubectl, tfsctl as processes) and observed with kube-rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tfs_operator::crd::{Phase, TfsNameserver};

pub const OPERATOR_NS: &str = "tfs-system";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    root().join(".e2e/bin").join(name)
}

pub fn tfsctl() -> PathBuf {
    root().join("target/release/tfsctl")
}

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| root().join(".e2e/kubeconfig"))
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

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

/// Installs (or upgrades) the operator chart once, as a user would, and waits until it runs.
pub fn ensure_operator() -> Result<()> {
    let chart = root().join("charts/tfs-operator");
    // Helm installs a chart's crds/ once and never upgrades them: apply the current CRD first, as
    // a user upgrading the operator does (docs/OPERATIONS.md).
    let crds = chart.join("crds");
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().expect("utf-8 path")])?;
    run(
        &bin("helm"),
        &[
            "upgrade",
            "--install",
            "tfs",
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ],
    )?;
    // The image tag stays `dev` across builds: restart so the operator runs the image just built.
    kubectl(&["rollout", "restart", "deployment", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/instance=tfs"])?;
    kubectl(&[
        "rollout",
        "status",
        "deployment",
        "-n",
        OPERATOR_NS,
        "-l",
        "app.kubernetes.io/instance=tfs",
        "--timeout=120s",
    ])?;
    Ok(())
}

/// A namespace of its own for one scenario, deleted at the end.
pub struct Namespace(pub String);

impl Namespace {
    pub fn create(scenario: &str) -> Result<Self> {
        let name = format!("e2e-{scenario}-{}", now_ms() % 100_000);
        kubectl(&["create", "namespace", &name])?;
        // Every scenario runs where Pod Security `restricted` is enforced, as many clusters do.
        kubectl(&[
            "label",
            "namespace",
            &name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ])?;
        Ok(Namespace(name))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "tfsns", "--all", "-n", &self.0, "--wait=true", "--timeout=60s"]);
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

/// The example TfsNameserver, in namespace `ns` under `name`, with `more_spec` (YAML lines at the
/// spec's indentation) in its spec: a key given there replaces the example's block of that key.
pub fn demo_manifest(ns: &str, name: &str, replicas: u32, more_spec: &str) -> Result<String> {
    let text = std::fs::read_to_string(root().join("examples/tfsnameserver.yaml"))?;
    let spec_key = |line: &str| -> Option<String> {
        let t = line.strip_prefix("  ")?;
        (!t.starts_with([' ', '#'])).then(|| t.split(':').next().unwrap_or_default().to_string())
    };
    let replaced: Vec<String> = more_spec.lines().filter_map(spec_key).collect();
    let mut out = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if indent.len() <= 2 && !t.is_empty() {
            skipping = spec_key(line).is_some_and(|k| replaced.contains(&k));
        }
        if skipping {
            continue;
        }
        if t.starts_with("name: demo") {
            out.push(format!("{indent}name: {name}"));
        } else if t.starts_with("namespace:") {
            out.push(format!("{indent}namespace: {ns}"));
        } else if t.starts_with("replicas:") {
            out.push(format!("{indent}replicas: {replicas}"));
        } else {
            out.push(line.to_string());
        }
    }
    out.push(more_spec.to_string());
    Ok(out.join("\n"))
}

/// Where the client certificate of `ns/name` is written for tfsctl.
fn client_tls_dir(ns: &str, name: &str) -> PathBuf {
    root().join(".e2e/runs/tls").join(format!("{ns}.{name}"))
}

/// The environment tfsctl reads its TLS settings from.
pub const TLS_ENV: [&str; 4] = ["TFS_CA", "TFS_CERT", "TFS_KEY", "TFS_TLS_SERVER_NAME"];

pub struct Tfs {
    pub ns: String,
    pub name: String,
    pub api: Api<TfsNameserver>,
    pub leases: Api<Lease>,
    pub pods: Api<Pod>,
    pub services: Api<Service>,
}

impl Tfs {
    pub async fn create(client: &kube::Client, ns: &str, name: &str, replicas: u32) -> Result<Tfs> {
        Self::create_with(client, ns, name, replicas, "").await
    }

    /// The example with `more_spec` (YAML lines at the spec's indentation) added to its spec.
    pub async fn create_with(
        client: &kube::Client,
        ns: &str,
        name: &str,
        replicas: u32,
        more_spec: &str,
    ) -> Result<Tfs> {
        let manifest = demo_manifest(ns, name, replicas, more_spec)?;
        kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
        let t = Tfs {
            ns: ns.into(),
            name: name.into(),
            api: Api::namespaced(client.clone(), ns),
            leases: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
        };
        let tls = t.get().await?.spec.tls;
        if tls.enabled {
            t.use_client_certificate(client).await?;
        } else {
            for k in TLS_ENV {
                // SAFETY: harness processes set these before they start any thread that runs tfsctl
                // (the e2e suite runs one test at a time).
                unsafe { std::env::remove_var(k) };
            }
        }
        Ok(t)
    }

    /// With TLS on (the example's default): the operator's client Secret, written out as files and
    /// named in TFS_CA/TFS_CERT/TFS_KEY/TFS_TLS_SERVER_NAME, the environment of every tfsctl this
    /// process starts from now on (as a user would export them).
    async fn use_client_certificate(&self, client: &kube::Client) -> Result<PathBuf> {
        let secrets = Api::<Secret>::namespaced(client.clone(), &self.ns);
        let secret_name = format!("{}-client", self.name);
        let deadline = Instant::now() + Duration::from_secs(90);
        let secret = loop {
            if let Some(s) = secrets.get_opt(&secret_name).await? {
                break s;
            }
            if Instant::now() > deadline {
                bail!("the operator did not write Secret {}/{secret_name} within 90 s", self.ns);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let dir = client_tls_dir(&self.ns, &self.name);
        std::fs::create_dir_all(&dir)?;
        let data = secret.data.unwrap_or_default();
        let mut files = Vec::new();
        for (key, file) in [("ca.crt", "ca.crt"), ("tls.crt", "client.crt"), ("tls.key", "client.key")] {
            let v = data.get(key).with_context(|| format!("Secret {secret_name} has no {key}"))?;
            std::fs::write(dir.join(file), &v.0)?;
            files.push(dir.join(file).to_string_lossy().into_owned());
        }
        for (k, v) in TLS_ENV.iter().zip([files[0].as_str(), &files[1], &files[2], &self.name]) {
            // SAFETY: as in create_with.
            unsafe { std::env::set_var(k, v) };
        }
        Ok(dir)
    }

    pub async fn get(&self) -> Result<TfsNameserver> {
        Ok(self.api.get(&self.name).await?)
    }

    /// The Lease as the operator reads it (holder, epoch, sync set, ...).
    pub async fn lease_view(&self) -> Result<tfs_operator::lease::LeaseView> {
        Ok(tfs_operator::lease::LeaseView::of(&self.leases.get(&self.name).await?))
    }

    /// (holder, epoch) from the Lease.
    pub async fn lease(&self) -> Result<(String, i32)> {
        let l = self.leases.get(&self.name).await?;
        let s = l.spec.unwrap_or_default();
        Ok((s.holder_identity.unwrap_or_default(), s.lease_transitions.unwrap_or(0)))
    }

    /// Waits until the status says Healthy with every instance ready, at an epoch >= `min_epoch`.
    pub async fn wait_healthy(&self, replicas: usize, min_epoch: i64, timeout: Duration) -> Result<TfsNameserver> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.get().await?;
            if let Some(s) = &t.status {
                let ready = s.ready.as_deref() == Some(&format!("{replicas}/{replicas}"));
                if s.phase == Some(Phase::Healthy) && ready && s.epoch.unwrap_or(0) >= min_epoch {
                    return Ok(t);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{}/{} not Healthy {replicas}/{replicas} at epoch >= {min_epoch} within {timeout:?}; status {:?}",
                    self.ns,
                    self.name,
                    t.status
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the published sync set holds `n` slaves (a failover is then safe).
    pub async fn wait_sync_set(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.leases.get(&self.name).await?;
            let set = tfs_operator::lease::LeaseView::of(&l).sync_set;
            if set.len() >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sync set {set:?} has not reached {n} slaves within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The VIP Service's ClusterIP:port (reachable from the host through kube-proxy).
    pub async fn vip(&self) -> Result<String> {
        let s = self.services.get(&self.name).await?;
        let spec = s.spec.context("VIP service without spec")?;
        Ok(format!("{}:{}", spec.cluster_ip.context("no ClusterIP")?, spec.ports.context("no ports")?[0].port))
    }

    pub async fn pod_names(&self) -> Result<Vec<String>> {
        let l =
            self.pods.list(&ListParams::default().labels(&tfs_operator::names::selector_string(&self.name))).await?;
        Ok(l.items.into_iter().filter_map(|p| p.metadata.name).collect())
    }
}

/// A writer through the VIP recording every acknowledged mutation, and two mixed clients
/// (reads and commits on shared blocks, `tfsctl bench --op mixed --history`) whose histories
/// `verify` checks for linearizability: one dials a new connection after every error, the other
/// keeps its one HTTP/2 connection as long as the server keeps it.
pub struct Writer {
    child: Child,
    mixed: Vec<Child>,
    pub record: PathBuf,
    pub log: PathBuf,
}

impl Drop for Writer {
    /// A test that fails midway leaves no load running behind it.
    fn drop(&mut self) {
        for c in std::iter::once(&mut self.child).chain(self.mixed.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mixed clients' histories, next to the writer's record (see `verify`).
pub const HISTORIES: [&str; 2] = ["history-redial", "history-keep"];

impl Writer {
    pub fn start(vip: &str, dir: &Path, concurrency: u32) -> Result<Writer> {
        let record = dir.join("acked");
        let log = dir.join("writer.log");
        let f = std::fs::File::create(&log)?;
        let child = Command::new(tfsctl())
            .args([
                "--addr",
                vip,
                "bench",
                "--op",
                "create",
                "--count",
                "1000000000",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .args(["--sim-dataservers", "3", "--record", record.to_str().expect("utf-8"), "--retry-for", "60s"])
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let mut mixed = Vec::new();
        for (name, keep) in HISTORIES.iter().zip([false, true]) {
            let f = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let history = dir.join(name);
            let mut cmd = Command::new(tfsctl());
            cmd.args(["--addr", vip, "bench", "--op", "mixed", "--count", "1000000000", "--concurrency", "8"])
                .args(["--connections", "1", "--shared-blocks", "4", "--mix", "6:3:0", "--retry-for", "60s"])
                .args(["--history", history.to_str().expect("utf-8")])
                .stdout(f.try_clone()?)
                .stderr(f);
            if keep {
                cmd.arg("--keep-connection");
            }
            mixed.push(cmd.spawn()?);
        }
        Ok(Writer { child, mixed, record, log })
    }

    /// Milliseconds from `fault_ms` to the first operation of a mixed client's history answered
    /// at `epoch`.
    pub fn first_op_after(history: &Path, fault_ms: u64, epoch: u64) -> Option<u64> {
        let text = std::fs::read_to_string(history).ok()?;
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // r: epoch is field 4; w: field 5 (after the outcome). Completion is last (us).
                let e = f.get(if f.first() == Some(&"w") { 5 } else { 4 })?.parse::<u64>().ok()?;
                let done_ms = f.last()?.parse::<u64>().ok()? / 1000;
                (e == epoch && done_ms > fault_ms).then(|| done_ms - fault_ms)
            })
            .min()
    }

    /// Requests the create writer counted failed (its progress lines), so far.
    pub fn failed_requests(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(", ").nth(1)?.strip_suffix(" failed")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    pub fn acked(&self) -> usize {
        std::fs::read_to_string(&self.record).map(|s| s.lines().count()).unwrap_or(0)
    }

    pub async fn wait_acked(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            if Instant::now() > deadline {
                bail!(
                    "writer acknowledged only {} of {n} within {timeout:?}:\n{}",
                    self.acked(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the writer and the mixed clients; the record and histories keep what they flushed.
    pub fn stop(self) -> PathBuf {
        self.record.clone()
    }

    /// Milliseconds from `fault_ms` to the first write acknowledged at `epoch` after it.
    pub fn first_ack_after(record: &Path, fault_ms: u64, epoch: u64) -> Option<u64> {
        let text = std::fs::read_to_string(record).ok()?;
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (e, acked) = (f.get(2)?.parse::<u64>().ok()?, f.last()?.parse::<u64>().ok()?);
                (e == epoch && acked > fault_ms).then(|| acked - fault_ms)
            })
            .min()
    }
}

/// `tfsctl verify`: exit 0 only if every acknowledged write is there, no id repeats, and the
/// histories of the `Writer`'s mixed clients next to the record (if any) are linearizable.
pub fn verify(vip: &str, record: &Path) -> Result<String> {
    let mut cmd = Command::new(tfsctl());
    cmd.args(["--addr", vip, "verify", "--record", record.to_str().expect("utf-8")]);
    for h in HISTORIES.iter().filter_map(|n| Some(record.parent()?.join(n))).filter(|p| p.exists()) {
        cmd.arg("--history").arg(h);
    }
    let out = cmd.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("verify failed: {text}");
    }
    Ok(text)
}

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

/// The chaos harness (`make chaos`): randomized faults under load and a history check.
pub mod chaos;

/// The local cluster's provisioner of node-local volumes (a host process of `make cluster`).
pub mod local_volumes;

/// Failover-time trials (`make bench`): the schedule and the parsing of records and bench logs.
pub mod trials;

/// The simulated nodes of the local cluster: where pods run, losing a node and getting it back,
/// the operator's leader.
pub mod nodes;
pub use nodes::{LostNode, containerd_socket, nodes, operator_leader, operator_pods, pod_node};

/// The cluster's S3 object store (backups): endpoint, credentials, raw object access.
pub mod objectstore;
