//! The cluster handle of a scenario: the operator installed, a namespace of its own, and a
//! TfsNameserver in it (`Tfs`: its Lease, pods, VIP and status), with tfsctl's TLS environment.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams};
use tfs_operator::crd::{Phase, TfsNameserver};

use crate::{OPERATOR_NS, bin, kubectl, kubectl_stdin, now_ms, root, run};

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
        // TFS_E2E_KEEP=1 keeps every namespace for a look after the run (delete them by hand).
        if std::env::var_os("TFS_E2E_KEEP").is_some() {
            eprintln!("TFS_E2E_KEEP: namespace {} kept", self.0);
            return;
        }
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

    /// (holder, epoch) from the Lease, read as the operator reads it.
    pub async fn lease(&self) -> Result<(String, u64)> {
        let v = self.lease_view().await?;
        Ok((v.holder, v.epoch.0))
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
                    "{}/{} not Healthy {replicas}/{replicas} at epoch >= {min_epoch} within {timeout:?}; status {:?}\n{}",
                    self.ns,
                    self.name,
                    t.status,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What a failed wait prints besides the status: the pods (restarts, node) and the
    /// namespace's latest events (probe failures, kills), so a failure in CI can be read.
    pub fn diagnostics(&self) -> String {
        let pods = kubectl(&["get", "pods", "-n", &self.ns, "-o", "wide"]).unwrap_or_else(|e| e.to_string());
        let events = kubectl(&[
            "get",
            "events",
            "-n",
            &self.ns,
            "--sort-by=.lastTimestamp",
            "-o",
            "custom-columns=LAST:.lastTimestamp,COUNT:.count,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
        ])
        .unwrap_or_else(|e| e.to_string());
        let last: Vec<&str> = events.lines().rev().take(15).collect();
        format!("pods:\n{pods}latest events:\n{}", last.into_iter().rev().collect::<Vec<_>>().join("\n"))
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
