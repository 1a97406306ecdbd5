//! Harness for integration tests: real nameserver processes on 127.0.0.x, killed, frozen and
//! restarted for real, driven over gRPC and through tfsctl.

#![allow(dead_code)]

pub mod certs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tfs_nameserver::proto::{self, admin_client::AdminClient, client_client::ClientClient};
use tonic::transport::Channel;

pub const NS: &str = env!("CARGO_BIN_EXE_tfs-nameserver");

/// The tfsctl binary of this checkout, next to [`NS`] (same target directory and profile). It is
/// another package's (tfsctl/): cargo builds a package's binaries for that package's tests only,
/// so the first call builds it; [`Node::start`] makes that call, so that no build (minutes on a
/// busy machine) runs while a test's nodes and their dataservers' leases already do.
pub fn ctl_bin() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(NS).parent().expect("NS in a profile directory");
        let profile = match dir.file_name().and_then(|n| n.to_str()).expect("a profile directory") {
            "debug" => "dev",
            p => p,
        };
        let ok = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tfsctl", "--bin", "tfsctl", "--profile", profile])
            .status()
            .expect("run cargo build")
            .success();
        let bin = dir.join("tfsctl");
        assert!(ok && bin.exists(), "cannot build tfsctl into {}", dir.display());
        bin
    })
}

/// A free port below the kernel's ephemeral range (32768+), so that no client connection of a
/// load generator can take it between this check and the node binding it; unique within this
/// test binary, and spread by pid across binaries.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 400) as u16 * 50;
    loop {
        let p = base + NEXT.fetch_add(1, Ordering::SeqCst) % 2_000;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub client: String,
    pub repl: String,
    pub admin: String,
    pub metrics: String,
    pub extra: Vec<String>,
    /// Environment of the next start (e.g. `TFS_CRASH_AT`); cleared by [`Node::start`]'s caller.
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// How this harness dials the client port when the node serves TLS there.
    pub client_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Node {
    pub fn new(name: &str, root: &Path, extra: &[&str]) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            name: name.into(),
            log: root.join(format!("{name}.log")),
            dir,
            client: format!("127.0.0.1:{}", free_port()),
            repl: format!("127.0.0.1:{}", free_port()),
            admin: format!("127.0.0.1:{}", free_port()),
            metrics: format!("127.0.0.1:{}", free_port()),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            child: None,
            client_tls: None,
        }
    }

    pub fn start(&mut self) {
        ctl_bin();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(NS)
            .args(["--data-dir", self.dir.join("data").to_str().unwrap(), "--node", &self.name])
            .args([
                "--listen",
                &self.client,
                "--repl-listen",
                &self.repl,
                "--admin-listen",
                &self.admin,
                "--metrics-listen",
                &self.metrics,
            ])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn tfs-nameserver");
        self.child = Some(child);
    }

    /// Starts and waits until the client port answers.
    pub async fn start_ready(&mut self) {
        self.start();
        if !self.wait_ready(Duration::from_secs(20)).await {
            panic!("{} did not start; log:\n{}", self.name, self.log_text());
        }
    }

    /// Waits until the client port answers; false if it did not within `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.try_status().await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit on its own (a crash point); returns whether it did in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn channel(addr: &str) -> Channel {
        Self::dial(format!("http://{addr}"), None)
    }

    pub fn dial(url: String, tls: Option<tonic::transport::ClientTlsConfig>) -> Channel {
        let mut ep = tonic::transport::Endpoint::from_shared(url).unwrap();
        if let Some(t) = tls {
            ep = ep.tls_config(t).unwrap();
        }
        ep.connect_timeout(Duration::from_secs(1)).connect_lazy()
    }

    /// A channel to the client port, over TLS if the node serves it.
    pub fn client_channel(&self) -> Channel {
        let scheme = if self.client_tls.is_some() { "https" } else { "http" };
        Self::dial(format!("{scheme}://{}", self.client), self.client_tls.clone())
    }

    pub async fn client(&self) -> ClientClient<Channel> {
        ClientClient::new(self.client_channel())
    }

    pub async fn try_status(&self) -> Option<proto::StatusReply> {
        let mut c = self.client().await;
        tokio::time::timeout(Duration::from_secs(1), c.status(proto::StatusRequest {}))
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    /// The node's /metrics text.
    pub fn metrics_text(&self) -> String {
        let body = Command::new("curl").args(["-s", &format!("http://{}/metrics", self.metrics)]).output().unwrap();
        String::from_utf8_lossy(&body.stdout).into_owned()
    }

    pub async fn status(&self) -> proto::StatusReply {
        self.try_status().await.unwrap_or_else(|| panic!("{}: no status", self.name))
    }

    pub async fn assume(
        &self,
        role: proto::Role,
        epoch: u64,
        master: &str,
        valid_for: Duration,
    ) -> Result<proto::AssumeRoleReply, tonic::Status> {
        let mut a = AdminClient::new(Self::channel(&self.admin).await);
        a.assume_role(proto::AssumeRoleRequest {
            role: role as i32,
            epoch,
            master_addr: master.into(),
            valid_for_ms: valid_for.as_millis() as u64,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn master(&self, epoch: u64) {
        self.assume(proto::Role::Master, epoch, "", Duration::from_secs(3600)).await.unwrap();
    }

    pub async fn slave_of(&self, m: &Node, epoch: u64) {
        self.assume(proto::Role::Slave, epoch, &m.repl, Duration::from_secs(3600)).await.unwrap();
    }

    /// Polls status until `f` holds.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&proto::StatusReply) -> bool,
    ) -> proto::StatusReply {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(s) = self.try_status().await {
                if f(&s) {
                    return s;
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{}: timed out waiting for {what}; last status {last:?}\nlog:\n{}", self.name, self.log_text());
    }

    /// Registers `n` dataservers (ids from 1) with a lease that outlives the test.
    pub async fn dataservers(&self, n: u32) {
        let mut d = tfs_nameserver::proto::dataserver_client::DataserverClient::new(self.client_channel());
        for id in 1..=n {
            d.apply(proto::DataserverApplyRequest {
                id,
                addr: format!("10.0.0.{id}:3200"),
                capacity: 1 << 40,
                used: 0,
                blocks: vec![],
            })
            .await
            .unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            // Never leave a frozen process behind.
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
        }
        self.kill9();
    }
}

/// `a` master at epoch 1 with `b` following it in the sync set, 3 dataservers.
pub async fn start_pair(a: &mut Node, b: &mut Node) {
    a.start_ready().await;
    b.start_ready().await;
    a.master(1).await;
    b.slave_of(a, 1).await;
    a.dataservers(3).await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set.contains(&"b".to_string())).await;
}

/// A master `a` alone (epoch 1), 3 dataservers, one block created; returns it and the block id.
pub async fn lone_master(root: &Path) -> (Node, u64) {
    let mut a = Node::new("a", root, &[]);
    a.start_ready().await;
    a.master(1).await;
    a.dataservers(3).await;
    let id = create_blocks(&a, 1, 1).await[0];
    (a, id)
}

/// Creates `batches` × `per` blocks with BatchCreateBlocks; returns their ids.
pub async fn create_blocks(n: &Node, batches: u32, per: u32) -> Vec<u64> {
    let mut c = n.client().await;
    let mut ids = Vec::new();
    for _ in 0..batches {
        let r = c
            .batch_create_blocks(proto::BatchCreateBlocksRequest { count: per, replicas: 2, request_id: None })
            .await
            .unwrap();
        ids.extend(r.into_inner().blocks.iter().map(|b| b.id));
    }
    ids
}

/// Every block, paged through ListBlocks.
pub async fn all_blocks(n: &Node) -> Vec<proto::Block> {
    let mut c = n.client().await;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        // Stale: the harness compares what each node holds, slaves included.
        let r =
            c.list_blocks(proto::ListBlocksRequest { after, limit: 10_000, stale: true }).await.unwrap().into_inner();
        out.extend(r.blocks);
        if !r.more {
            return out;
        }
        after = out.last().unwrap().id;
    }
}

/// Waits until `b` applied what `a` did, then compares their blocks.
pub async fn same_state(a: &Node, b: &Node) {
    let sa = a.status().await;
    b.wait_for("caught up", Duration::from_secs(30), |s| s.applied_seq == sa.applied_seq).await;
    assert_eq!(all_blocks(a).await, all_blocks(b).await, "slave state differs from the master's");
}

/// Runs tfsctl to completion.
pub fn ctl(args: &[&str]) -> Output {
    Command::new(ctl_bin()).args(args).stdin(Stdio::null()).output().expect("run tfsctl")
}

/// Starts tfsctl in the background (a load generator).
pub fn ctl_bg(args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    Command::new(ctl_bin()).args(args).stdout(f.try_clone().unwrap()).stderr(f).spawn().expect("spawn tfsctl")
}

pub fn verify(addr: &str, record: &Path) -> (bool, String) {
    let o = ctl(&["--addr", addr, "verify", "--record", record.to_str().unwrap()]);
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

pub fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

/// Waits until the record file holds at least `n` acknowledged mutations.
pub async fn wait_acked(p: &Path, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while lines(p) < n {
        assert!(Instant::now() < deadline, "only {} acknowledged after {timeout:?}", lines(p));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A VIP the way kube-proxy makes one: a new connection goes to the current backend, an
/// established one stays with the backend it was made to.
pub async fn vip(listener: tokio::net::TcpListener, backend: std::sync::Arc<std::sync::Mutex<String>>) {
    loop {
        let (mut down, _) = listener.accept().await.unwrap();
        let to = backend.lock().unwrap().clone();
        tokio::spawn(async move {
            if let Ok(mut up) = tokio::net::TcpStream::connect(&to).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}

/// Master `a` at epoch 1 with slave `b`: a channel kept through a VIP (dialled by `dial`) reaches
/// `b` within a second once `b` is master at epoch 2 and the VIP moved: the demoted master closes
/// its client connections (GOAWAY), so the channel dials again, through the VIP.
pub async fn the_kept_channel_follows_the_vip(a: &Node, b: &Node, vip_lag: Duration, dial: impl Fn(&str) -> Channel) {
    let id = create_blocks(a, 1, 1).await[0];
    same_state(a, b).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let backend = std::sync::Arc::new(std::sync::Mutex::new(a.client.clone()));
    tokio::spawn(vip(listener, backend.clone()));
    let mut c = ClientClient::new(dial(&addr));
    let get = proto::GetBlockRequest { block_id: id, stale: false };
    assert_eq!(c.get_block(get).await.unwrap().into_inner().epoch, 1);
    b.master(2).await;
    a.slave_of(b, 2).await;
    if !vip_lag.is_zero() {
        // kube-proxy moves the VIP a little after the demotion: a client that redials at once
        // (after the demoted master's GOAWAY) lands on the old master again, and is refused.
        let _ = c.get_block(get).await;
        tokio::time::sleep(vip_lag).await;
        let _ = c.get_block(get).await;
    }
    *backend.lock().unwrap() = b.client.clone();
    let t = Instant::now();
    let mut last = None;
    while t.elapsed() < Duration::from_secs(5) {
        match c.get_block(get).await {
            Ok(r) if r.get_ref().epoch == 2 => break,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    println!("the kept channel reached the new master {took:?} after the VIP moved");
    assert!(
        took < Duration::from_secs(1),
        "the kept channel stayed on the old master ({took:?}); last answer {last:?}"
    );
}
