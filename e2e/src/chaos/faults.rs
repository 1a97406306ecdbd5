//! One function per kind of fault. Each resolves what it needs first (pids, addresses), then
//! notes the wall-clock time and injects, and returns that time with a guard that undoes the
//! fault (a no-op for the kinds the system heals by itself: kills, deletions).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::heal::{Heal, quiet_signal};
use crate::{OPERATOR_NS, container_pid, kill9, kubectl, now_ms, pod_sandbox_pid, root, signal};

/// Who is who when a fault is injected.
#[derive(Debug, Clone)]
pub struct Pair {
    pub ns: String,
    pub master: String,
    pub slave: String,
    pub epoch: tfs_operator::lease::Epoch,
    pub master_ip: String,
    pub slave_ip: String,
}

impl Pair {
    /// Who is who now: the Lease's holder is the master, the other pod the slave.
    pub async fn of(t: &crate::Tfs) -> Result<Pair> {
        let lv = tfs_operator::lease::LeaseView::of(&t.leases.get(&t.name).await?);
        let slave = t.pod_names().await?.into_iter().find(|p| *p != lv.holder).context("no slave pod")?;
        let ip = |p: k8s_openapi::api::core::v1::Pod| p.status.and_then(|s| s.pod_ip).unwrap_or_default();
        Ok(Pair {
            ns: t.ns.clone(),
            master_ip: ip(t.pods.get(&lv.holder).await?),
            slave_ip: ip(t.pods.get(&slave).await?),
            master: lv.holder,
            slave,
            epoch: lv.epoch,
        })
    }
}

/// Where pods reach the API server: the `kubernetes` Service's ClusterIP and port (what
/// in-cluster clients dial; kube-proxy rewrites it on the host, outside the pod) and the real
/// endpoint behind it (in case anything dials it directly).
#[derive(Debug, Clone)]
pub struct ApiAddrs {
    pub service: (String, u16),
    pub endpoints: Vec<(String, u16)>,
}

impl ApiAddrs {
    pub fn discover() -> Result<ApiAddrs> {
        let svc = kubectl(&[
            "get",
            "service",
            "kubernetes",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
        ])?;
        let eps = kubectl(&[
            "get",
            "endpointslices",
            "-n",
            "default",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "jsonpath={range .items[*]}{.ports[0].port}{range .endpoints[*]} {.addresses[0]}{end}{\"\\n\"}{end}",
        ])?;
        let mut s = svc.split_whitespace();
        let service = (
            s.next().context("kubernetes Service without ClusterIP")?.to_string(),
            s.next().context("kubernetes Service without port")?.parse()?,
        );
        let mut endpoints = Vec::new();
        for line in eps.lines() {
            let mut f = line.split_whitespace();
            let Some(port) = f.next().and_then(|p| p.parse::<u16>().ok()) else { continue };
            endpoints.extend(f.map(|ip| (ip.to_string(), port)));
        }
        if endpoints.is_empty() {
            bail!("no endpoint of the kubernetes Service found: {eps:?}");
        }
        Ok(ApiAddrs { service, endpoints })
    }
}

/// What an injection did.
pub struct Injected {
    /// Wall-clock ms at the moment of injection.
    pub t_ms: u64,
    pub detail: String,
    pub guard: Heal,
}

fn injected(t_ms: u64, detail: String, guard: Heal) -> Result<Injected> {
    Ok(Injected { t_ms, detail, guard })
}

pub fn kill9_master(p: &Pair) -> Result<Injected> {
    let pid = container_pid(&p.ns, &p.master, "nameserver")?;
    let t = now_ms();
    kill9(pid)?;
    injected(t, format!("kill -9 {} nameserver (pid {pid})", p.master), Heal::nothing())
}

pub fn kill_master_heart(p: &Pair) -> Result<Injected> {
    let pid = container_pid(&p.ns, &p.master, "heart")?;
    let t = now_ms();
    kill9(pid)?;
    injected(t, format!("kill -9 {} heart (pid {pid})", p.master), Heal::nothing())
}

pub fn delete_master_pod(p: &Pair) -> Result<Injected> {
    let t = now_ms();
    kubectl(&["delete", "pod", &p.master, "-n", &p.ns, "--grace-period=0", "--force", "--wait=false"])?;
    injected(t, format!("kubectl delete pod {} --grace-period=0 --force", p.master), Heal::nothing())
}

/// SIGSTOP of a process, SIGCONT when healed (which may find it gone: the kubelet's liveness
/// probe restarts a container frozen for long).
fn freeze(pid: u32, what: String) -> Result<Heal> {
    signal(pid, "STOP")?;
    Ok(Heal::new(what, move || quiet_signal(pid, "CONT")))
}

pub fn freeze_master(p: &Pair) -> Result<Injected> {
    let pid = container_pid(&p.ns, &p.master, "nameserver")?;
    let t = now_ms();
    let g = freeze(pid, format!("SIGCONT {} nameserver (pid {pid})", p.master))?;
    injected(t, format!("SIGSTOP {} nameserver (pid {pid})", p.master), g)
}

/// The master's whole node lost (e2e/cluster/node-down.sh: its kubelet, containerd and containers
/// frozen, its traffic dropped); healed by bringing the node back, which waits until it is Ready.
pub fn lose_master_node(p: &Pair) -> Result<Injected> {
    let node = crate::pod_node(&p.ns, &p.master)?;
    let t = now_ms();
    let lost = crate::LostNode::lose(&node)?;
    let g = Heal::new(format!("node-up {node}"), move || {
        if let Err(e) = lost.back() {
            eprintln!("chaos: {e:#}");
        }
    });
    injected(t, format!("node-down {node} (the master {}'s node)", p.master), g)
}

/// iptables in the network namespace of the process `pid` (a pod's sandbox).
fn netns_iptables(pid: u32, args: &[String]) -> Result<()> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "iptables", "-w", "5"])
        .args(args)
        .output()
        .context("cannot run nsenter")?;
    if !out.status.success() {
        bail!("nsenter -t {pid} -n iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Whether `url` answers at all (any HTTP status) from the network namespace of `pid`.
pub fn netns_reaches(pid: u32, url: &str) -> bool {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "curl", "-sk", "-o", "/dev/null", "-m", "2", url])
        .status()
        .is_ok_and(|s| s.success())
}

const MARK: [&str; 4] = ["-m", "comment", "--comment", "tfs-chaos"];

/// Appends DROP rules (each `chain args...`) in the pod's network namespace; the guard deletes them.
fn drop_rules(pid: u32, rules: Vec<Vec<String>>, what: String) -> Result<Heal> {
    let with = |op: &str, r: &[String]| -> Vec<String> {
        let mut v = vec![op.to_string(), r[0].clone()];
        v.extend(r[1..].iter().cloned());
        v.extend(MARK.iter().map(|s| s.to_string()));
        v.extend(["-j".into(), "DROP".into()]);
        v
    };
    let undo = {
        let rules = rules.clone();
        move || {
            for r in &rules {
                let _ = netns_iptables(pid, &with("-D", r));
            }
        }
    };
    let guard = Heal::new(what, undo);
    for r in &rules {
        netns_iptables(pid, &with("-A", r))?;
    }
    Ok(guard)
}

fn rule(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Drops, inside the master pod's network namespace, its traffic to and from the API server:
/// the Service ClusterIP (the destination its packets carry there: kube-proxy's DNAT happens
/// later, on the host) and the real endpoints. Checked with a probe from inside the pod.
pub fn cut_master_from_apiserver(p: &Pair, api: &ApiAddrs) -> Result<Injected> {
    let pid = pod_sandbox_pid(&p.ns, &p.master)?;
    let svc_url = format!("https://{}:{}/readyz", api.service.0, api.service.1);
    if !netns_reaches(pid, &svc_url) {
        bail!("{} cannot reach the API server at {svc_url} even before the cut", p.master);
    }
    let mut rules = Vec::new();
    for (ip, port) in std::iter::once(&api.service).chain(&api.endpoints) {
        let (ip, port) = (format!("{ip}/32"), port.to_string());
        rules.push(rule(&["OUTPUT", "-p", "tcp", "-d", &ip, "--dport", &port]));
        rules.push(rule(&["INPUT", "-p", "tcp", "-s", &ip, "--sport", &port]));
    }
    let t = now_ms();
    let guard = drop_rules(pid, rules, format!("reconnect {} to the API server", p.master))?;
    for url in
        std::iter::once(svc_url).chain(api.endpoints.iter().map(|(ip, port)| format!("https://{ip}:{port}/readyz")))
    {
        if netns_reaches(pid, &url) {
            bail!("the cut is not effective: {} still reaches {url}", p.master);
        }
    }
    injected(
        t,
        format!("iptables DROP in {}'s netns to/from the API server {api:?} (probe: unreachable)", p.master),
        guard,
    )
}

/// Drops all traffic between the master and the slave, in the master pod's network namespace.
pub fn cut_master_from_slave(p: &Pair) -> Result<Injected> {
    let pid = pod_sandbox_pid(&p.ns, &p.master)?;
    let url = format!("http://{}:{}/health", p.slave_ip, tfs_operator::names::METRICS_PORT);
    if !netns_reaches(pid, &url) {
        bail!("{} cannot reach its slave at {url} even before the cut", p.master);
    }
    let ip = format!("{}/32", p.slave_ip);
    let rules = vec![rule(&["OUTPUT", "-d", &ip]), rule(&["INPUT", "-s", &ip])];
    let t = now_ms();
    let guard = drop_rules(pid, rules, format!("reconnect {} to {}", p.master, p.slave))?;
    if netns_reaches(pid, &url) {
        bail!("the cut is not effective: {} still reaches {url}", p.master);
    }
    injected(t, format!("iptables DROP in {}'s netns to/from {} ({})", p.master, p.slave, p.slave_ip), guard)
}

/// Freezes the slave; once the master has had `delay` to drop it from its sync set (or not: the
/// delay is drawn), kills the master. The guard thaws the slave.
pub async fn freeze_slave_kill_master(p: &Pair, delay: Duration) -> Result<Injected> {
    let slave_pid = container_pid(&p.ns, &p.slave, "nameserver")?;
    let master_pid = container_pid(&p.ns, &p.master, "nameserver")?;
    let t = now_ms();
    let guard = freeze(slave_pid, format!("SIGCONT {} nameserver (pid {slave_pid})", p.slave))?;
    tokio::time::sleep(delay).await;
    let kill_ms = now_ms();
    kill9(master_pid)?;
    injected(
        t,
        format!(
            "SIGSTOP {} nameserver (pid {slave_pid}), kill -9 {} nameserver (pid {master_pid}) {} ms later",
            p.slave,
            p.master,
            kill_ms - t
        ),
        guard,
    )
}

/// Kills the master's nameserver, then force-deletes the operator pod `delay` later, while it
/// is failing over.
pub async fn kill_operator_mid_failover(p: &Pair, delay: Duration) -> Result<Injected> {
    let pid = container_pid(&p.ns, &p.master, "nameserver")?;
    let ops = kubectl(&["get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=tfs-operator", "-o", "name"])?;
    let ops: Vec<&str> = ops.split_whitespace().collect();
    if ops.is_empty() {
        bail!("no operator pod in {OPERATOR_NS}");
    }
    let t = now_ms();
    kill9(pid)?;
    tokio::time::sleep(delay).await;
    let del_ms = now_ms();
    let mut args = vec!["delete", "-n", OPERATOR_NS, "--grace-period=0", "--force", "--wait=false"];
    args.extend(&ops);
    kubectl(&args)?;
    injected(
        t,
        format!("kill -9 {} nameserver (pid {pid}), {} force-deleted {} ms later", p.master, ops.join(" "), del_ms - t),
        Heal::nothing(),
    )
}

/// The kube-apiserver process of the local cluster, from the pid file `make cluster` wrote.
pub fn apiserver_pid() -> Result<u32> {
    let f = root().join(".e2e/pids/kube-apiserver.pid");
    let pid: u32 =
        std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?.trim().parse()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmd).contains("kube-apiserver") {
        bail!("pid {pid} from {} is not a kube-apiserver", f.display());
    }
    Ok(pid)
}

pub fn stop_apiserver() -> Result<Injected> {
    let pid = apiserver_pid()?;
    let t = now_ms();
    let g = freeze(pid, format!("SIGCONT kube-apiserver (pid {pid})"))?;
    injected(t, format!("SIGSTOP kube-apiserver (pid {pid})"), g)
}

/// For `chaos --heal`: a kube-apiserver left stopped by a run killed with SIGKILL.
pub fn thaw_apiserver() -> Result<bool> {
    let pid = apiserver_pid()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let state = stat.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("");
    if state == "T" {
        signal(pid, "CONT")?;
        return Ok(true);
    }
    Ok(false)
}
