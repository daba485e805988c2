//! The accept loop: hyper connections with bounded header time, bounded buffers and a connection cap.
//!
//! `axum::serve` sets no timer, so a client could hold a connection by sending its headers one
//! byte a minute, and nothing caps how many connections are open. This loop adds both:
//! `server.header_read_timeout_secs` (which also closes idle keep-alive connections) and
//! `server.max_connections` (at the cap, accepting pauses until a connection closes: backpressure
//! in the kernel's accept queue instead of unbounded memory). Shutdown stops accepting, lets
//! in-flight connections finish (HTTP/1 ends keep-alive, HTTP/2 sends GOAWAY), and closes the
//! ones still open after the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits for serving connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    /// A connection whose writes make no progress this long is closed ([`super::stall`]).
    pub write_stall_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Largest buffered part of one HTTP/1 message (headers, or body bytes read ahead): hyper's
/// default is 400 KB per connection; bodies stream through in pieces regardless.
const MAX_BUF_BYTES: usize = 64 * 1024;

/// Serves `app` until `shutdown` completes, then drains for at most `limits.shutdown_grace`.
/// `on_shutdown` runs once when draining begins.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_shutdown: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection's task, so the ones still open after the grace period can be closed:
    // each holds the gateway's state, and the ledger drains only once all of it is gone.
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small SSE frames must leave at once: Nagle's algorithm would hold them for the peer's ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        // The client's address, for what is kept per address (failed sign-ins).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(super::Peer(peer));
                req
            },
        ));
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        connections.spawn(async move {
            // hyper's header timer starts with a request's first byte: a connection that never
            // sends one would hold its slot for good. It gets the same time to start.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                tracing::debug!(%peer, "connection closed: nothing sent in time");
                return;
            }
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(super::stall::StallGuard::new(stream, limits.write_stall_timeout)),
                    service,
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    on_shutdown();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(open = connections.len(), "grace period over; closing the remaining connections");
        }
    }
    // Closed, their requests end as client disconnects and their usage events are recorded.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}
