//! Starting the listeners of one nameserver process.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tracing::info;

use super::Listen;
use super::admin::AdminApi;
use super::client::ClientApi;
use super::dataserver::{DataserverApi, check_leases};
use crate::engine::Engine;
use crate::proto;

/// Serves every port until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    listen: Listen,
    default_replicas: u32,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client_l = TcpListener::bind(listen.client)
        .await
        .with_context(|| format!("cannot listen on client address {}", listen.client))?;
    let admin_l = std::net::TcpListener::bind(listen.admin)
        .with_context(|| format!("cannot listen on admin address {}", listen.admin))?;
    let repl_l = if engine.shared.cfg.standalone {
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
    info!(client = %listen.client, repl = %listen.repl, admin = %listen.admin, metrics = %listen.metrics, standalone = engine.shared.cfg.standalone, "nameserver listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stop_rx_follow = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    tokio::spawn(check_leases(engine.clone()));
    if let Some(l) = repl_l {
        tokio::spawn(crate::replication::master::serve(engine.clone(), l));
        tokio::spawn(crate::replication::slave::follow(engine.clone(), stop_rx_follow));
    }

    let client = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(proto::client_server::ClientServer::new(ClientApi { engine: engine.clone(), default_replicas }))
        .add_service(proto::dataserver_server::DataserverServer::new(DataserverApi { engine: engine.clone() }))
        .serve_with_incoming_shutdown(incoming(client_l), stopped());
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
                    .add_service(proto::admin_server::AdminServer::new(AdminApi { engine: engine.clone() }))
                    .serve_with_incoming_shutdown(incoming(TcpListener::from_std(admin_l)?), stopped());
                let http = axum::serve(TcpListener::from_std(http_l)?, super::http::router(engine))
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

/// Accepted connections with TCP_NODELAY set (small RPCs must not wait for Nagle).
fn incoming(l: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(l).map(|s| s.and_then(|s| s.set_nodelay(true).map(|_| s)))
}
