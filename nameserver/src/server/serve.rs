//! Starting the listeners of one nameserver process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tonic::transport::Server;
use tracing::{debug, info, warn};

use super::Listen;
use super::admin::AdminApi;
use super::client::ClientApi;
use super::dataserver::DataserverApi;
use crate::engine::Engine;
use crate::proto;
use crate::replication::peers::Peers;
use crate::tls::conn::{self, Conn};

/// Serves every port until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    listen: Listen,
    default_replicas: u32,
    max_connection_age: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client_l = TcpListener::bind(listen.client)
        .await
        .with_context(|| format!("cannot listen on client address {}", listen.client))?;
    let admin_l = std::net::TcpListener::bind(listen.admin)
        .with_context(|| format!("cannot listen on admin address {}", listen.admin))?;
    let repl_l = if engine.cfg().standalone {
        None
    } else {
        Some(
            TcpListener::bind(listen.repl)
                .await
                .with_context(|| format!("cannot listen on replication address {}", listen.repl))?,
        )
    };
    let http_l = std::net::TcpListener::bind(listen.metrics)
        .with_context(|| format!("cannot listen on metrics address {}", listen.metrics))?;
    info!(client = %listen.client, repl = %listen.repl, admin = %listen.admin, metrics = %listen.metrics, standalone = engine.cfg().standalone, tls = listen.tls.is_some(), "nameserver listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (stop_rx_follow, stop_rx_client) = (stop_rx.clone(), stop_rx.clone());
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // This master's slaves, kept by the replication server, shown by Status.
    let peers = Arc::new(Peers::default());
    tokio::spawn(crate::ops::dataserver::check_leases(engine.clone()));
    crate::archive::archiver::spawn(&engine).context("cannot open the archive")?;
    if let Some(l) = repl_l {
        tokio::spawn(crate::replication::master::serve(engine.clone(), peers.clone(), l, listen.tls.clone()));
        tokio::spawn(crate::replication::slave::follow(engine.clone(), stop_rx_follow, listen.tls.clone()));
    }

    let client = {
        let (engine, peers, stopped) = (engine.clone(), peers.clone(), stopped.clone());
        let client_l = accepted(client_l, listen.tls.clone(), engine.metrics().client_handshakes_failed.clone());
        let mut cuts = connection_cuts(engine.clone(), max_connection_age);
        let node = http::HeaderValue::try_from(engine.cfg().node.as_str())
            .unwrap_or_else(|_| http::HeaderValue::from_static("-"));
        let node_header = tower::util::MapResponseLayer::new(move |mut r: http::Response<tonic::body::Body>| {
            r.headers_mut().insert(super::NODE_HEADER, node.clone());
            r
        });
        async move {
            // Invariant (clean demotion): a node that is not a writable master keeps no client
            // connection: each role change away from writable mastership, and every few seconds
            // while it lasts, the client server shuts down gracefully (GOAWAY; requests in flight
            // finish) and serves again on the same socket. A client then dials again — through the
            // VIP, to the master — instead of keeping a flow that kube-proxy leaves on this pod.
            loop {
                let (stop, cut) = (stopped(), cuts.changed());
                // Sessions (long-lived streams the graceful shutdown would wait for) end themselves
                // when this run ends: see session.rs.
                let (ending_tx, ending) = tokio::sync::watch::channel(false);
                let signal = async move {
                    tokio::select! {
                        _ = stop => {}
                        _ = cut => {}
                    }
                    let _ = ending_tx.send(true);
                };
                Server::builder()
                    .tcp_nodelay(true)
                    .http2_keepalive_interval(Some(Duration::from_secs(10)))
                    .layer(node_header.clone())
                    .add_service(proto::client_server::ClientServer::new(ClientApi {
                        engine: engine.clone(),
                        peers: peers.clone(),
                        default_replicas,
                    }))
                    .add_service(proto::session_server::SessionServer::new(super::session::SessionApi {
                        engine: engine.clone(),
                        default_replicas,
                        ending,
                    }))
                    .add_service(proto::dataserver_server::DataserverServer::new(DataserverApi {
                        engine: engine.clone(),
                    }))
                    .add_service(proto::backup_server::BackupServer::new(super::backup::BackupApi {
                        engine: engine.clone(),
                    }))
                    .serve_with_incoming_shutdown(incoming(client_l.clone()), signal)
                    .await?;
                if *stop_rx_client.borrow() {
                    return Ok::<(), tonic::transport::Error>(());
                }
                let cut = cuts.borrow_and_update().clone();
                // The periodic cuts of a node that stays a slave are routine: not worth a line each.
                if cut.routine {
                    tracing::debug!(reason = %cut.why, "client connections closed (GOAWAY); serving again");
                } else {
                    info!(reason = %cut.why, "client connections closed (GOAWAY); serving again");
                }
            }
        }
    };
    // Health, metrics and roles get a runtime of their own: however busy the client port is,
    // the heart and the kubelet's probes must get their answers in time (a master whose
    // readiness probe times out drops out of the VIP's endpoints).
    let control = {
        let (engine, stopped) = (engine.clone(), stopped.clone());
        std::thread::Builder::new().name("control".into()).spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                admin_l.set_nonblocking(true)?;
                http_l.set_nonblocking(true)?;
                let admin = Server::builder()
                    .add_service(proto::admin_server::AdminServer::new(AdminApi {
                        engine: engine.clone(),
                        peers: peers.clone(),
                    }))
                    .serve_with_incoming_shutdown(
                        incoming(accepted(TcpListener::from_std(admin_l)?, None, Default::default())),
                        stopped(),
                    );
                let http = axum::serve(TcpListener::from_std(http_l)?, super::http::router(engine, peers))
                    .with_graceful_shutdown(stopped());
                let (a, b) = tokio::join!(admin, http);
                a.context("admin server")?;
                b.context("metrics server")?;
                Ok(())
            })
        })?
    };
    client.await.context("client server")?;
    tokio::task::spawn_blocking(move || control.join())
        .await?
        .map_err(|_| anyhow::anyhow!("control thread panicked"))??;
    Ok(())
}

/// Connections accepted on `l` with TCP_NODELAY set (small RPCs must not wait for Nagle) and, with
/// `tls`, their handshake done — each in a task of its own, so a slow or silent peer holds up no
/// other. They queue for whichever run of the server is current: the listener and this queue
/// outlive each run (the GOAWAY loop in [`serve`]).
fn accepted(l: TcpListener, tls: Option<Arc<crate::tls::Tls>>, failed: Counter) -> Accepted {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (s, peer) = match l.accept().await {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            // The files as they are now: a rotation applies to the next connection.
            let cfg = tls.as_ref().map(|t| t.current().client_server.clone());
            let (tx, failed) = (tx.clone(), failed.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                match conn::accept(s, cfg).await {
                    Ok(c) => {
                        let _ = tx.send(c).await;
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "client TLS handshake failed");
                        failed.inc();
                    }
                }
            });
        }
    });
    Arc::new(Mutex::new(rx))
}

type Accepted = Arc<Mutex<mpsc::Receiver<Conn>>>;

/// One run's view of the accepted connections.
fn incoming(a: Accepted) -> impl tokio_stream::Stream<Item = std::io::Result<Conn>> {
    futures_util::stream::unfold(a, |a| async move {
        let c = a.lock().await.recv().await?;
        Some((Ok(c), a))
    })
}

/// Why client connections are closed; `routine` for the repeated cuts of a node that stays a slave.
#[derive(Debug, Clone, Default)]
struct Cut {
    why: String,
    routine: bool,
}

/// While not a writable master, how often client connections are closed again (clients that
/// reconnected while the VIP still pointed here).
const NOT_MASTER_CUT_EVERY: Duration = Duration::from_secs(2);
/// A node that is not a writable master cuts its client connections this soon after it refused a
/// request for that reason (no more often: a client must get its answer before the cut).
const NOT_MASTER_CUT_AFTER_REFUSAL: Duration = Duration::from_millis(200);

/// Changes whenever client connections should be closed (the value says why): on every change of
/// role that leaves this node unable to write (deposed, fenced, draining, made a slave), every
/// [`NOT_MASTER_CUT_EVERY`] while that lasts, and on a writable master every `max_age` (if not zero)
/// so that long-lived connections are spread again.
fn connection_cuts(engine: Engine, max_age: Duration) -> tokio::sync::watch::Receiver<Cut> {
    let (tx, rx) = tokio::sync::watch::channel(Cut::default());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last_role = engine.role().lock().clone();
        let mut last_cut = tokio::time::Instant::now();
        let refused = || engine.refused_not_master();
        let mut last_refused = refused();
        loop {
            tick.tick().await;
            let role = engine.role().lock().clone();
            let writable = role.check_writable(std::time::Instant::now());
            let cut = match &writable {
                Err(e) if role != last_role || last_role.check_writable(std::time::Instant::now()).is_ok() => {
                    Some(Cut { why: format!("no longer a writable master: {e}"), routine: false })
                }
                Err(e) if last_cut.elapsed() >= NOT_MASTER_CUT_EVERY => {
                    Some(Cut { why: format!("not a writable master: {e}"), routine: true })
                }
                // A client refused here reconnected to this node (kube-proxy had not yet moved the
                // VIP when it redialled): send it through the VIP again soon, not in 2 s.
                Err(e) if refused() != last_refused && last_cut.elapsed() >= NOT_MASTER_CUT_AFTER_REFUSAL => {
                    Some(Cut { why: format!("a client was refused: not a writable master: {e}"), routine: true })
                }
                Ok(()) if !max_age.is_zero() && last_cut.elapsed() >= max_age => {
                    Some(Cut { why: format!("connections older than {max_age:?}"), routine: false })
                }
                _ => None,
            };
            last_role = role;
            if let Some(cut) = cut {
                last_cut = tokio::time::Instant::now();
                last_refused = refused();
                if tx.send(cut).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
