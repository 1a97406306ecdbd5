use std::sync::Mutex as StdMutex;

use serde_json::{Value, json};
use tfs_nameserver::proto::admin_server::{Admin, AdminServer};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::*;
use crate::fixtures::mock_client;

const MS: Duration = Duration::from_millis(1);

/// A stand-in for the nameserver's admin API: reports `status`, records what it is asked; with
/// `refuse_master`, refuses every mastership as a nameserver does a grant it cannot take (after
/// running the hook, which stands for what happened meanwhile elsewhere).
struct FakeAdmin {
    status: Arc<StdMutex<tfs_nameserver::proto::StatusReply>>,
    assumed: mpsc::UnboundedSender<tfs_nameserver::proto::AssumeRoleRequest>,
    refuse_master: Option<Box<dyn Fn() + Send + Sync>>,
}

#[tonic::async_trait]
impl Admin for FakeAdmin {
    async fn status(
        &self,
        _: Request<tfs_nameserver::proto::StatusRequest>,
    ) -> Result<Response<tfs_nameserver::proto::StatusReply>, Status> {
        Ok(Response::new(self.status.lock().unwrap().clone()))
    }

    async fn assume_role(
        &self,
        req: Request<tfs_nameserver::proto::AssumeRoleRequest>,
    ) -> Result<Response<tfs_nameserver::proto::AssumeRoleReply>, Status> {
        let r = req.into_inner();
        if let Some(meanwhile) = self.refuse_master.as_ref().filter(|_| r.role == proto::Role::Master as i32) {
            meanwhile();
            let _ = self.assumed.send(r);
            return Err(Status::failed_precondition("a master needs valid_for in (0, 3600s]"));
        }
        {
            let mut s = self.status.lock().unwrap();
            s.role = r.role;
            s.epoch = r.epoch;
            s.master_addr = r.master_addr.clone();
        }
        let reply = tfs_nameserver::proto::AssumeRoleReply { role: r.role, epoch: r.epoch, durable_seq: 0 };
        let _ = self.assumed.send(r);
        Ok(Response::new(reply))
    }

    async fn drain(
        &self,
        _: Request<tfs_nameserver::proto::DrainRequest>,
    ) -> Result<Response<tfs_nameserver::proto::DrainReply>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }
}

/// A nameserver process: the fake admin API on a runtime and thread of its own. `kill` ends it as
/// kill -9 does (every socket closed at once, no goodbye); `stop` shuts its server down gracefully.
struct Nameserver {
    addr: String,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    gone: Option<std::sync::mpsc::Receiver<()>>,
}

impl Nameserver {
    fn start(admin: FakeAdmin) -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (gone_tx, gone) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let serve = tonic::transport::Server::builder()
                    .add_service(AdminServer::new(admin))
                    .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(l), async {
                        let _ = stopped.await;
                    });
                tokio::select! {
                    _ = serve => {}
                    _ = killed => {}
                }
            });
            drop(rt); // every connection's task, and so its socket, goes with the process
            let _ = gone_tx.send(());
        });
        Nameserver { addr, kill: Some(kill), stop: Some(stop), gone: Some(gone) }
    }

    fn kill(&mut self) {
        let _ = self.kill.take().unwrap().send(());
    }

    /// Asks for a graceful shutdown; true if the process ended within `limit`.
    fn stop(&mut self, limit: Duration) -> bool {
        let _ = self.stop.take().unwrap().send(());
        self.gone.take().unwrap().recv_timeout(limit).is_ok()
    }
}

fn status(role: tfs_nameserver::proto::Role, epoch: u64) -> tfs_nameserver::proto::StatusReply {
    tfs_nameserver::proto::StatusReply {
        role: role as i32,
        epoch,
        writable: role == tfs_nameserver::proto::Role::Master,
        replication_mode: "sync".into(),
        ..Default::default()
    }
}

/// The idle connection of `watch_nameserver` is a well-behaved HTTP/2 client: a graceful shutdown
/// of the admin server (which waits for its clients to answer a ping) is not held up by it, and
/// its end is signalled.
#[tokio::test]
async fn the_nameserver_watch_lets_a_graceful_shutdown_end_and_signals_it() {
    let (tx, _assumed) = mpsc::unbounded_channel();
    let admin = FakeAdmin {
        status: Arc::new(StdMutex::new(status(tfs_nameserver::proto::Role::Slave, 1))),
        assumed: tx,
        refuse_master: None,
    };
    let mut ns = Nameserver::start(admin);
    let closed = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_nameserver(ns.addr.clone(), closed.clone(), 50 * MS));
    tokio::time::sleep(300 * MS).await; // connected, settings exchanged
    let stopped = tokio::task::spawn_blocking(move || ns.stop(Duration::from_secs(3))).await.unwrap();
    assert!(stopped, "the admin server's graceful shutdown waited on the heart's idle connection");
    tokio::time::timeout(Duration::from_secs(1), closed.notified()).await.expect("the close is signalled");
    watch.abort();
}

/// The API server as the heart sees it, for one Lease (`ns/demo`) and one pod: reads, the list and
/// watch of the Lease (the first watch is answered when the test pushes an event), and updates
/// conditioned on the resourceVersion (a stale one: 409). Every request is recorded.
struct FakeApi {
    lease: Arc<StdMutex<Value>>,
    watch: Arc<StdMutex<Option<tower_test::mock::SendResponse<http::Response<kube::client::Body>>>>>,
    requests: mpsc::UnboundedReceiver<(Instant, String, String, Value)>,
}

fn reply(code: u16, v: &Value) -> http::Response<kube::client::Body> {
    http::Response::builder().status(code).body(kube::client::Body::from(serde_json::to_vec(v).unwrap())).unwrap()
}

fn lease_json(rv: u64, holder: Option<&str>, epoch: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "demo", "namespace": "ns", "resourceVersion": rv.to_string()},
        "spec": {"holderIdentity": holder, "leaseTransitions": epoch, "leaseDurationSeconds": 5},
    })
}

fn fake_api(initial: Value) -> (Client, FakeApi) {
    let (client, mut api) = mock_client();
    let lease = Arc::new(StdMutex::new(initial));
    let watch = Arc::new(StdMutex::new(None));
    let (tx, requests) = mpsc::unbounded_channel();
    let (l, w) = (lease.clone(), watch.clone());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = api.0.next_request().await {
            let (method, path) = (req.method().to_string(), req.uri().path().to_string());
            let query = req.uri().query().unwrap_or_default().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let _ = tx.send((Instant::now(), method.clone(), format!("{path}?{query}"), body.clone()));
            let current = l.lock().unwrap().clone();
            match (method.as_str(), path.as_str()) {
                ("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases") if query.contains("watch=true") => {
                    assert!(query.contains("fieldSelector=metadata.name%3Ddemo"), "{query}");
                    let mut slot = w.lock().unwrap();
                    if slot.is_none() { *slot = Some(send) } else { held.push(send) }
                }
                ("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases") => {
                    let list = json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                        "items": [current],
                    });
                    send.send_response(reply(200, &list));
                }
                ("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo") => {
                    send.send_response(reply(200, &current))
                }
                ("GET", p) if p.starts_with("/api/v1/namespaces/ns/pods/") => {
                    let pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": p.rsplit('/').next().unwrap(), "namespace": "ns"},
                        "status": {"podIP": "10.0.0.9"},
                    });
                    send.send_response(reply(200, &pod));
                }
                ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo") => {
                    if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "Conflict", "code": 409, "message": "the object has been modified"});
                        send.send_response(reply(409, &status));
                        continue;
                    }
                    let next: u64 =
                        current["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() + 1;
                    let mut written = body.clone();
                    written["metadata"]["resourceVersion"] = next.to_string().into();
                    *l.lock().unwrap() = written.clone();
                    send.send_response(reply(200, &written));
                }
                (m, p) => panic!("unexpected {m} {p}"),
            }
        }
    });
    (client, FakeApi { lease, watch, requests })
}

impl FakeApi {
    /// Someone else writes the Lease; the watch shows it (the watch then ends, and the heart's
    /// next watch is never answered).
    async fn write_and_watch(&self, l: Value) {
        *self.lease.lock().unwrap() = l.clone();
        let deadline = Instant::now() + Duration::from_secs(3);
        let send = loop {
            if let Some(s) = self.watch.lock().unwrap().take() {
                break s;
            }
            assert!(Instant::now() < deadline, "the heart never watched its Lease");
            tokio::time::sleep(10 * MS).await;
        };
        let mut line = serde_json::to_vec(&json!({"type": "MODIFIED", "object": l})).unwrap();
        line.push(b'\n');
        send.send_response(http::Response::builder().status(200).body(kube::client::Body::from(line)).unwrap());
    }

    /// The next update of the Lease, and whether the Lease was read by name before it.
    async fn next_put(&mut self) -> (Instant, Value, bool) {
        let mut read = false;
        loop {
            let (at, method, path, body) =
                tokio::time::timeout(Duration::from_secs(3), self.requests.recv()).await.expect("an update").unwrap();
            if method == "PUT" {
                return (at, body, read);
            }
            read |= method == "GET" && path.starts_with("/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo");
        }
    }

    /// Forgets the requests made so far.
    fn drain(&mut self) {
        while self.requests.try_recv().is_ok() {}
    }
}

/// A pod's heart, its nameserver (reporting `role` at `epoch`) and the API server, where demo-0
/// holds the Lease at epoch 3 (version 10); what the nameserver is asked arrives on `assumed`.
struct HeartPod {
    ns: Nameserver,
    api: FakeApi,
    assumed: Assumed,
    heart: Heart,
}

type Assumed = mpsc::UnboundedReceiver<tfs_nameserver::proto::AssumeRoleRequest>;

fn pod(name: &str, role: tfs_nameserver::proto::Role, epoch: u64) -> HeartPod {
    let (tx, assumed) = mpsc::unbounded_channel();
    let ns = Nameserver::start(FakeAdmin {
        status: Arc::new(StdMutex::new(status(role, epoch))),
        assumed: tx,
        refuse_master: None,
    });
    let (client, api) = fake_api(lease_json(10, Some("demo-0"), 3));
    let heart = heart(client, name, &ns.addr);
    HeartPod { ns, api, assumed, heart }
}

impl HeartPod {
    /// Runs the heart until the test ends; returns the rest.
    fn run(self) -> (Nameserver, FakeApi, Assumed) {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _stop = stop;
            self.heart.run(shutdown).await
        });
        (self.ns, self.api, self.assumed)
    }
}

fn heart(client: Client, pod: &str, admin: &str) -> Heart {
    let cfg = HeartConfig {
        name: "demo".into(),
        namespace: "ns".into(),
        pod: pod.into(),
        admin_addr: admin.into(),
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
    };
    // A tick of a minute: past the first look at start, only an event explains an action.
    let mut h = Heart::new(client, cfg, Default::default()).unwrap();
    h.tick = Duration::from_secs(60);
    h
}

/// The crash path's second half: the operator hands the Lease to this pod's slave; the heart
/// renews it as master on the watch event — no tick, no read of the Lease — conditioned on the
/// version the event showed, then grants its nameserver the mastership at the new epoch.
#[tokio::test]
async fn a_promoted_slaves_heart_takes_the_mastership_on_the_watch_event() {
    let (_ns, mut api, mut assumed) = pod("demo-1", tfs_nameserver::proto::Role::Slave, 3).run();
    // At start it follows the holder.
    let first = tokio::time::timeout(Duration::from_secs(3), assumed.recv()).await.expect("follows").unwrap();
    assert_eq!((first.role, first.epoch), (tfs_nameserver::proto::Role::Slave as i32, 3));
    tokio::time::sleep(200 * MS).await;
    api.drain();
    let promoted_at = Instant::now();
    api.write_and_watch(lease_json(11, Some("demo-1"), 4)).await;
    let (at, body, read) = api.next_put().await;
    assert!(at - promoted_at < Duration::from_millis(500), "renewed {:?} after the promotion", at - promoted_at);
    assert!(!read, "acted on the watched Lease, without reading it");
    assert_eq!(body["metadata"]["resourceVersion"], "11", "conditioned on the version the watch showed");
    assert_eq!(body["spec"]["holderIdentity"], "demo-1");
    let grant = tokio::time::timeout(Duration::from_secs(1), assumed.recv()).await.expect("a grant").unwrap();
    assert_eq!((grant.role, grant.epoch), (tfs_nameserver::proto::Role::Master as i32, 4));
    assert!(grant.valid_until_boottime_ns > 0);
}

/// The crash path's first half: the master's nameserver dies (kill -9); its heart notices the
/// admin connection close and releases the Lease at once — no tick, no read of the Lease: the
/// update is conditioned on the version its own last renew wrote.
#[tokio::test]
async fn a_dead_nameserver_is_released_on_the_connection_close() {
    let (mut ns, mut api, mut assumed) = pod("demo-0", tfs_nameserver::proto::Role::Master, 3).run();
    // At start it renews and grants.
    let (_, renewed, _) = api.next_put().await;
    assert_eq!(renewed["spec"]["holderIdentity"], "demo-0");
    tokio::time::timeout(Duration::from_secs(1), assumed.recv()).await.expect("a grant").unwrap();
    tokio::time::sleep(300 * MS).await;
    api.drain();
    let killed_at = Instant::now();
    ns.kill();
    let (at, body, read) = api.next_put().await;
    assert!(at - killed_at < Duration::from_millis(500), "released {:?} after the kill", at - killed_at);
    assert!(!read, "released on the Lease as its own renew wrote it, without reading it");
    assert_eq!(body["metadata"]["resourceVersion"], "11");
    assert!(body["spec"]["holderIdentity"].is_null(), "{body}");
    assert_eq!(body["metadata"]["annotations"][ANN_RELEASED_BY], "demo-0");
    let why = body["metadata"]["annotations"][ANN_RELEASE_REASON].as_str().unwrap().to_string();
    assert!(why.starts_with("nameserver down"), "{why}");
}

/// A stale view costs one refused write and a read, never a write on it: the watch still shows
/// the Lease as this master last renewed it, but the operator has since written it (a handover
/// request the watch has not shown yet). The renew is refused (409); the heart reads the Lease
/// and renews on what it read, at once.
#[tokio::test]
async fn a_write_on_a_stale_view_is_refused_then_made_on_the_lease_read_afresh() {
    let mut p = pod("demo-0", tfs_nameserver::proto::Role::Master, 3);
    p.heart.cfg.retry_period = Duration::from_millis(300);
    p.heart.tick = 100 * MS;
    let (_ns, mut api, mut assumed) = p.run();
    let (_, first, _) = api.next_put().await;
    assert_eq!(first["metadata"]["resourceVersion"], "10");
    tokio::time::timeout(Duration::from_secs(1), assumed.recv()).await.expect("a grant").unwrap();
    // Written behind the heart's back (rv 12), not shown by its watch.
    let mut other = api.lease.lock().unwrap().clone();
    other["metadata"]["resourceVersion"] = "12".into();
    other["metadata"]["annotations"] = json!({"tfs.io/note": "written by someone else"});
    *api.lease.lock().unwrap() = other;
    let (refused_at, stale, _) = api.next_put().await;
    assert_eq!(stale["metadata"]["resourceVersion"], "11", "the view its own renew left");
    let (at, fresh, read) = api.next_put().await;
    assert!(read, "read afresh after the conflict");
    assert!(at - refused_at < Duration::from_millis(100), "at once, not a tick later: {:?}", at - refused_at);
    assert_eq!(fresh["metadata"]["resourceVersion"], "12");
    assert_eq!(fresh["metadata"]["annotations"]["tfs.io/note"], "written by someone else");
}

/// Only the holder releases (lease.rs), on the refusal path too: the master's heart renews, the
/// operator meanwhile gives the Lease to demo-1 at epoch 4 (the renew came too late for it), and
/// the nameserver refuses the mastership the heart then grants. The heart reads the Lease afresh
/// and, finding demo-1 holding it, writes nothing: a release there would name demo-0, the old
/// master, as the master of epoch 4, and the operator would give it the Lease back.
#[tokio::test]
async fn a_refused_mastership_releases_nothing_once_another_holds_the_lease() {
    let (client, api) = fake_api(lease_json(10, Some("demo-0"), 3));
    let lease = api.lease.clone();
    let (tx, assumed) = mpsc::unbounded_channel();
    let ns = Nameserver::start(FakeAdmin {
        status: Arc::new(StdMutex::new(status(tfs_nameserver::proto::Role::Master, 3))),
        assumed: tx,
        refuse_master: Some(Box::new(move || {
            let mut l = lease.lock().unwrap();
            let next = l["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() + 1;
            *l = lease_json(next, Some("demo-1"), 4);
        })),
    });
    let heart = heart(client, "demo-0", &ns.addr);
    let (_ns, mut api, mut assumed) = HeartPod { ns, api, assumed, heart }.run();
    let (_, renewed, _) = api.next_put().await;
    assert_eq!(renewed["spec"]["holderIdentity"], "demo-0");
    let refused = tokio::time::timeout(Duration::from_secs(1), assumed.recv()).await.expect("a grant").unwrap();
    assert_eq!((refused.role, refused.epoch), (tfs_nameserver::proto::Role::Master as i32, 3));
    // The heart reads the Lease after the refusal; then nothing is written for a second.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut read = false;
    while let Ok(Some((_, method, path, body))) =
        tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), api.requests.recv()).await
    {
        assert_ne!(method, "PUT", "wrote the Lease another holds: {path} {body}");
        read |= method == "GET" && path.starts_with("/apis/coordination.k8s.io/v1/namespaces/ns/leases/demo");
    }
    assert!(read, "the Lease was not read after the refusal: the test saw no refusal path");
    let l = api.lease.lock().unwrap().clone();
    assert_eq!(
        (l["spec"]["holderIdentity"].as_str(), l["metadata"]["resourceVersion"].as_str()),
        (Some("demo-1"), Some("12"))
    );
}
