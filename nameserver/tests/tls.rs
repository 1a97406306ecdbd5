//! TLS on every hop, with real processes and certificates made here: a master and its slave
//! replicating over mutual TLS, clients over TLS; peers refused on the replication port before
//! anything of theirs counts; clientAuth=required; tfsctl's plain words for a TLS mismatch; and
//! a certificate rotated under a running master.

mod common;

use std::time::{Duration, Instant};

use common::certs::*;
use common::*;
use tfs_nameserver::proto;
use tfs_nameserver::replication::frame::{self, FrameType};
use tfs_nameserver::tls::devcerts::{Ca, Issued};
use tokio::io::{AsyncRead, AsyncWrite};

/// Master `a` and slave `b` over mutual TLS; `b` dials `a` by a DNS name its certificate carries.
async fn tls_pair(root: &std::path::Path, ca: &Ca) -> (Node, Secret, Node, Secret) {
    let (mut a, sa) = tls_node("a", root, ca, None, &[]);
    let (mut b, sb) = tls_node("b", root, ca, None, &[]);
    a.start_ready().await;
    b.start_ready().await;
    a.master(1).await;
    let by_name = a.repl.replace("127.0.0.1", "localhost");
    b.assume(proto::Role::Slave, 1, &by_name, Duration::from_secs(3600)).await.unwrap();
    a.dataservers(3).await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set == ["b"]).await;
    (a, sa, b, sb)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_and_its_slave_replicate_over_mutual_tls_and_clients_use_tls() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let (a, _sa, b, _sb) = tls_pair(root.path(), &ca).await;
    let ids = create_blocks(&a, 3, 50).await;
    let mut c = a.client().await;
    let got = c.get_block(proto::GetBlockRequest { block_id: ids[7], stale: false }).await.unwrap().into_inner();
    assert_eq!(got.block.unwrap().id, ids[7]);
    same_state(&a, &b).await;
    // The client port speaks TLS only.
    let mut plain = Node::new("plain", root.path(), &[]);
    plain.client = a.client.clone();
    assert!(plain.try_status().await.is_none(), "a plain client was served by a TLS port");
}

/// The GOAWAY loop of the client port (serve.rs) works over TLS as over plain TCP.
#[tokio::test(flavor = "multi_thread")]
async fn over_tls_a_demoted_master_sends_its_clients_to_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let (a, _sa, b, _sb) = tls_pair(root.path(), &ca).await;
    let tls = a.client_tls.clone();
    the_kept_channel_follows_the_vip(&a, &b, Duration::ZERO, |addr| Node::dial(format!("https://{addr}"), tls.clone()))
        .await;
}

/// Writes a LOGIN as `node` on `s` and returns what comes back: a frame, or the error that ended
/// the connection.
async fn login_on<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, node: &str) -> Result<(FrameType, String), String> {
    let login = proto::ReplLogin { cluster_id: "tfs".into(), node: node.into(), epoch: 1, ..Default::default() };
    // Over TLS 1.3 the server judges the client's certificate after the client's handshake ends:
    // the refusal then comes as the answer to the first write or read.
    frame::write_msg(&mut s, FrameType::Login, &login).await.map_err(|e| e.to_string())?;
    let (t, p) = tokio::time::timeout(Duration::from_secs(10), frame::read_frame(&mut s))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let reason =
        if t == FrameType::Refused { frame::decode::<proto::ReplRefused>(t, p).unwrap().reason } else { String::new() };
    Ok((t, reason))
}

async fn tls_login(a: &Node, ca_pem: &str, id: Option<&Issued>, node: &str) -> Result<(FrameType, String), String> {
    let s = tls_connect(&a.repl, "localhost", rustls_client(ca_pem, id)).await.map_err(|e| e.to_string())?;
    login_on(s, node).await
}

fn metric(a: &Node, line: &str) -> u64 {
    a.metrics_text().lines().find_map(|l| l.strip_prefix(line)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_peers_on_the_replication_port_are_refused_and_count_for_nothing() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let (a, _sa, b, _sb) = tls_pair(root.path(), &ca).await;
    create_blocks(&a, 1, 10).await;

    // No TLS at all.
    let plain = tokio::net::TcpStream::connect(&a.repl).await.unwrap();
    let r = login_on(plain, "b").await;
    assert!(r.is_err(), "a plain LOGIN was answered: {r:?}");
    // TLS without a client certificate.
    let r = tls_login(&a, &ca.cert_pem, None, "c").await;
    assert!(r.is_err(), "a peer without a certificate was answered: {r:?}");
    // A certificate of another CA, naming the node it logs in as.
    let other = Ca::new("another CA").unwrap();
    let r = tls_login(&a, &ca.cert_pem, Some(&issue(&other, "c", 30)), "c").await;
    assert!(r.is_err(), "a certificate of another CA was answered: {r:?}");
    // A valid certificate of the CA, but of another node: under a counted slave's name and under
    // a free one.
    let mallory = issue(&ca, "mallory", 30);
    for node in ["b", "c"] {
        let (t, reason) = tls_login(&a, &ca.cert_pem, Some(&mallory), node).await.unwrap();
        assert_eq!(t, FrameType::Refused, "mallory's certificate logged in as {node}");
        assert!(reason.contains("mallory") && reason.contains(node), "{reason}");
    }

    let st = a.status().await;
    assert_eq!(st.sync_set, ["b"], "{st:?}");
    assert_eq!(st.peers.iter().map(|p| p.node.as_str()).collect::<Vec<_>>(), ["b"], "only b is a peer: {st:?}");
    assert!(metric(&a, "tfs_nameserver_replication_peers_refused_total{reason=\"handshake\"}") >= 3);
    assert_eq!(metric(&a, "tfs_nameserver_replication_peers_refused_total{reason=\"identity\"}"), 2);
    assert!(a.log_text().contains("does not name the node it logs in as"), "the refusal is logged");
    create_blocks(&a, 1, 10).await;
    same_state(&a, &b).await;

    // The same LOGIN with a certificate naming its node is accepted: the identity was the reason.
    let (t, _) = tls_login(&a, &ca.cert_pem, Some(&issue(&ca, "c", 30)), "c").await.unwrap();
    assert_eq!(t, FrameType::LoginOk);

    // `tfsctl probe-login`, the audit a user runs against a live cluster, tells the same.
    let file = |n: &str, text: &str| {
        let p = root.path().join(n);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ca_f = file("ca.pem", &ca.cert_pem);
    let (m_crt, m_key) = (file("m.crt", &mallory.cert_pem), file("m.key", &mallory.key_pem));
    let c = issue(&ca, "c", 30);
    let (c_crt, c_key) = (file("c.crt", &c.cert_pem), file("c.key", &c.key_pem));
    let probe = |extra: &[&str]| {
        let mut v = vec!["probe-login", "--repl", a.repl.as_str(), "--node", "c", "--cluster-id", "tfs"];
        v.extend_from_slice(extra);
        ctl_text(&v)
    };
    let (ok, out) = probe(&[]);
    assert!(ok && out.starts_with("refused: connection ended"), "plain: {out}");
    let (ok, out) = probe(&["--ca", &ca_f, "--cert", &m_crt, "--key", &m_key, "--tls-server-name", "localhost"]);
    assert!(ok && out.contains("refused:") && out.contains("mallory"), "mallory: {out}");
    let (ok, out) = probe(&["--ca", &ca_f, "--cert", &c_crt, "--key", &c_key, "--tls-server-name", "localhost"]);
    assert!(!ok && out.starts_with("accepted:"), "c's own certificate: {out}");
    assert_eq!(a.status().await.sync_set, ["b"], "probes count for nothing");
}

fn ctl_text(args: &[&str]) -> (bool, String) {
    let o = ctl(args);
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_required_refuses_clients_without_a_certificate_and_tfsctl_says_why() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let me = issue(&ca, "tester", 30);
    let (mut a, mut secret) =
        tls_node("a", root.path(), &ca, Some(&me), &["--standalone", "--client-auth", "required"]);
    // With a VIP pair, the client port serves it, unless asked for one of the pod's names.
    let vip = ca.issue(&["tfs-vip".into(), "127.0.0.1".into()], 30).unwrap();
    let pod = issue(&ca, "a", 30);
    secret.publish(&ca, &pod, Some(&vip));
    a.start_ready().await;
    a.dataservers(2).await;
    let id = create_blocks(&a, 1, 1).await[0];

    let cfg = rustls_client(&ca.cert_pem, Some(&me));
    assert_eq!(served(&a.client, "tfs-vip", cfg.clone()).await, pem_serial_and_expiry(&vip.cert_pem));
    assert_eq!(served(&a.client, "127.0.0.1", cfg.clone()).await, pem_serial_and_expiry(&vip.cert_pem));
    assert_eq!(served(&a.client, "localhost", cfg).await, pem_serial_and_expiry(&pod.cert_pem));

    // A client without a certificate is refused.
    let mut anon = Node::new("anon", root.path(), &[]);
    anon.client = a.client.clone();
    anon.client_tls = Some(client_tls(&ca, None));
    assert!(anon.try_status().await.is_none(), "a client without a certificate was served");
    assert!(a.status().await.block_count >= 1);

    let files = |n: &str, text: &str| {
        let p = root.path().join(n);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ca_f, cert_f, key_f) =
        (files("ca.pem", &ca.cert_pem), files("me.crt", &me.cert_pem), files("me.key", &me.key_pem));
    let other_f = files("other.pem", &Ca::new("another CA").unwrap().cert_pem);
    let get = ["block", "get", &id.to_string()];
    let with = |extra: &[&str]| -> Vec<String> {
        ["--addr", a.client.as_str()].iter().chain(extra).chain(get.iter()).map(|s| s.to_string()).collect()
    };
    let run = |v: Vec<String>| ctl_text(&v.iter().map(String::as_str).collect::<Vec<_>>());

    let (ok, out) = run(with(&["--ca", &ca_f, "--cert", &cert_f, "--key", &key_f]));
    assert!(ok && out.contains(&format!("block {id}")), "{out}");
    let (ok, out) = run(with(&["--ca", &ca_f]));
    assert!(!ok && out.contains("requires a client certificate"), "{out}");
    let (ok, out) = run(with(&["--ca", &other_f, "--cert", &cert_f, "--key", &key_f]));
    assert!(!ok && out.contains("unknown CA"), "{out}");
    let (ok, out) = run(with(&["--ca", &ca_f, "--cert", &cert_f, "--key", &key_f, "--tls-server-name", "elsewhere"]));
    assert!(!ok && out.contains("does not carry the name"), "{out}");
    let (ok, out) = run(with(&[]));
    assert!(!ok && out.contains("give --ca"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_serves_new_connections_and_the_master_keeps_its_slave() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let (a, mut sa, b, _sb) = tls_pair(root.path(), &ca).await;
    create_blocks(&a, 1, 10).await;
    let tester = rustls_client(&ca.cert_pem, Some(&issue(&ca, "tester", 30)));
    let (old_serial, old_expiry) = served(&a.client, "localhost", tester.clone()).await;
    assert_eq!(served(&a.repl, "localhost", tester.clone()).await, (old_serial.clone(), old_expiry));
    let peer_before = a.status().await.peers[0].addr.clone();

    let new = issue(&ca, "a", 90);
    let (new_serial, new_expiry) = pem_serial_and_expiry(&new.cert_pem);
    assert_ne!(new_serial, old_serial);
    sa.publish(&ca, &new, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&a.client, "localhost", tester.clone()).await.0 != new_serial {
        assert!(Instant::now() < deadline, "the client port still serves the old certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&a.client, "localhost", tester.clone()).await, (new_serial.clone(), new_expiry));
    assert!(new_expiry > old_expiry + 50 * 86_400, "the new certificate's expiry is seen");
    assert_eq!(served(&a.repl, "localhost", tester).await, (new_serial, new_expiry), "replication port too");

    // The slave's session, opened under the old certificate, goes on: same connection, in the
    // sync set, writes commit on both.
    create_blocks(&a, 1, 10).await;
    let st = a.status().await;
    assert_eq!(st.sync_set, ["b"]);
    assert_eq!(st.peers[0].addr, peer_before, "the slave's connection was replaced");
    assert_eq!(a.log_text().matches("slave logged in").count(), 1, "the slave logged in again");
    same_state(&a, &b).await;
}

/// The operator's heart tells a slave its master's pod IP, which the master's certificate does not
/// name (pods get their IP after their Secret is mounted); it also tells the master's node name,
/// which the certificate does name: the slave verifies that name. Without it, the handshake fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_slave_verifies_its_master_by_node_name_when_dialling_an_ip() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA").unwrap();
    let (mut a, mut sa) = tls_node("a", root.path(), &ca, None, &[]);
    let (mut b, _sb) = tls_node("b", root.path(), &ca, None, &[]);
    // The master's pod certificate (the replication port's) names only its node, like a pod's: no
    // IP; the harness reaches its client port through the VIP certificate.
    let vip = ca.issue(&["127.0.0.1".into()], 30).unwrap();
    sa.publish(&ca, &ca.issue(&["a".into()], 30).unwrap(), Some(&vip));
    a.start_ready().await;
    b.start_ready().await;
    a.master(1).await;
    let assume = |name: &str| {
        let (admin, repl, name) = (b.admin.clone(), a.repl.clone(), name.to_string());
        async move {
            let ch =
                tonic::transport::Endpoint::from_shared(format!("http://{admin}")).unwrap().connect().await.unwrap();
            tfs_nameserver::proto::admin_client::AdminClient::new(ch)
                .assume_role(proto::AssumeRoleRequest {
                    role: proto::Role::Slave as i32,
                    epoch: 1,
                    master_addr: repl,
                    master_name: name,
                    valid_for_ms: 3_600_000,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    };
    assume("").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.status().await.sync_set.is_empty(), "a slave accepted a certificate that does not name 127.0.0.1");
    assume("a").await;
    a.wait_for("b in the sync set", Duration::from_secs(10), |s| s.sync_set == ["b"]).await;
}
