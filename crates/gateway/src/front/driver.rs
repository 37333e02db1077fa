//! The request driver both fronts share: one client request run to its response, with what
//! the gateway sends the client meanwhile (related notifications, and to legacy clients
//! server-to-client requests) queued before the response, in order, on one bounded channel.
//! The front only writes what comes out, its own way (stdio lines, JSON, SSE).

use std::sync::Arc;

use portcullis_core::{Message, Request};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dispatch::ctx::ClientCtx;
use crate::dispatch::outbox::Outbox;
use crate::state::Gateway;

/// A request ready to run, not started: the HTTP front polls it in place while it waits for the
/// first message, and gives it a task of its own only when the response is streamed.
pub struct Ready {
    /// Serving the request; it sends the response last on `rx`'s channel.
    pub serve: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// What goes to the client: related messages, then the response (last).
    pub rx: mpsc::Receiver<Message>,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").finish_non_exhaustive()
    }
}

/// Prepares serving `req` for `ctx`. `hold` is kept until the request ends (however it ends):
/// a concurrency permit, an in-flight slot.
pub fn prepare<H: Send + 'static>(gw: Arc<Gateway>, ctx: ClientCtx, req: Request, hold: H) -> Ready {
    let (tx, rx) = Outbox::channel();
    let peer = ctx.session.as_ref().map(|s| s.requester.clone());
    let outbox = Outbox::new(tx.clone(), peer, gw.cfg.gateway.input_timeout);
    let serve = Box::pin(async move {
        let _hold = hold;
        let resp = gw.handle(&ctx, req, &outbox).await;
        drop(outbox);
        let _ = tx.send(Message::Response(resp)).await;
    });
    Ready { serve, rx }
}

/// Serves `req` for `ctx` in one task that also writes what goes to the client to `out`, each
/// message scrubbed, the response last: the stdio front's shape, without a second task (and a
/// hop) per request. Aborting the task cancels the request.
pub fn serve_into<H: Send + 'static>(
    gw: Arc<Gateway>,
    ctx: ClientCtx,
    req: Request,
    hold: H,
    out: mpsc::Sender<Vec<u8>>,
) -> JoinHandle<()> {
    let Ready { serve, mut rx } = prepare(gw, ctx, req, hold);
    tokio::spawn(async move {
        let pump = async move {
            while let Some(m) = rx.recv().await {
                let last = matches!(m, Message::Response(_));
                if out.send(crate::redact::wire(&m)).await.is_err() || last {
                    break;
                }
            }
            // A client that is gone fails the handler's further sends instead of filling the
            // queue.
            drop(rx);
        };
        tokio::join!(serve, pump);
    })
}
