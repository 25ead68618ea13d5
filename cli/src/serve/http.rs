//! The HTTP server around the router: hyper's HTTP/1.1 connections, over TLS when configured,
//! with the bounds a server that faces untrusted clients needs. A client has
//! `header_read_timeout` to send a request's headers (the clock also runs while a kept-alive
//! connection sits idle, so idle connections are closed too); the request line and headers
//! together may not exceed [`MAX_HEADER_BYTES`] (431); at most `max_connections` connections
//! (TLS handshakes included) are served at once — further clients wait in the listen backlog
//! until a connection ends, so the server never runs out of file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::rt::{Read, Write};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service as _;

use super::tls::Tls;

/// The request line and headers of one request, at most (larger: 431).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Connections served at once when the limit on open files allows more.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// File descriptors kept for everything but client connections: the stores' files and
/// connections, the key files, the listener.
const RESERVED_DESCRIPTORS: u64 = 64;

/// What one server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    header_read_timeout: Duration,
    max_connections: usize,
}

impl Limits {
    /// Raises the soft limit on open files to the hard limit, and bounds the connections by
    /// what it leaves room for (`max_connections` when it fits, else at most 10,000).
    pub fn new(header_read_timeout: Duration, max_connections: Option<u64>) -> Self {
        let room = raise_open_files_limit();
        let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).min(room).max(1);
        Self { header_read_timeout, max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX) }
    }
}

/// Raises the soft limit on open files to the hard limit, and returns how many connections it
/// leaves room for.
fn raise_open_files_limit() -> u64 {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|error| {
        tracing::warn!(%error, "could not raise the limit on open files");
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
    });
    limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)
}

/// Serves `router` on `listener` (HTTPS when `tls` is given) until `shutdown` resolves, then
/// stops accepting and waits for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let tls = tls.map(Arc::new);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_header_size(MAX_HEADER_BYTES);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory for a moment: the connections in flight
                    // free some; spinning on the error would only burn the CPU they need.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(service) = make_service.call(peer).await;
        let service = TowerToHyperService::new(service);
        let (http, watcher, tls) = (http.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&http, watcher, TokioIo::new(stream), service, peer).await,
                Some(tls) => {
                    if let Some(stream) = tls.handshake(stream, peer).await {
                        serve_connection(&http, watcher, TokioIo::new(stream), service, peer).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection<I, S>(
    http: &hyper::server::conn::http1::Builder,
    watcher: Watcher,
    io: I,
    service: TowerToHyperService<S>,
    peer: SocketAddr,
) where
    I: Read + Write + Unpin + Send + 'static,
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if let Err(error) = watcher.watch(http.serve_connection(io, service)).await {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}
