//! Accepting HTTP connections with bounds a hostile peer cannot walk past: a request's headers
//! must arrive within the header timeout (`[gateway] header_timeout`, 10 s: slow-loris), and at
//! most [`MAX_CONNECTIONS`] are open at once (past it, a new connection is closed at once). The
//! body's own deadline is the route's (`[gateway] body_timeout`, 30 s). Every request carries
//! the peer's address (`ConnectInfo`), for per-address limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to send a request's body, once its headers are in, where no
/// config says (the admin page's forms).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most connections open at once, per listener.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `app` on `listener` until `stop` is cancelled, then lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: {MAX_CONNECTIONS} connections are open");
            drop(tcp);
            continue;
        };
        // Small JSON-RPC frames must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let stop = stop.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The peer address of a request served by [`serve`].
pub fn peer(req: &http::Request<axum::body::Body>) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
