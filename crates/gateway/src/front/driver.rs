//! The request driver both fronts share: one client request run to its response in a task of
//! its own, with what the gateway sends the client meanwhile (related notifications, and to
//! legacy clients server-to-client requests) queued before the response, in order, on one
//! bounded channel. The front only writes what comes out, its own way (stdio lines, JSON, SSE).

use std::sync::Arc;

use portcullis_core::{Message, Request};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dispatch::ctx::ClientCtx;
use crate::dispatch::outbox::Outbox;
use crate::state::Gateway;

/// One request in flight.
#[derive(Debug)]
pub struct Flight {
    /// The task serving it; aborting it cancels the request (and its upstream call).
    pub task: JoinHandle<()>,
    /// What goes to the client: related messages, then the response (last).
    pub rx: mpsc::Receiver<Message>,
}

/// Starts serving `req` for `ctx`. `hold` is kept until the request ends (however it ends):
/// a concurrency permit, an in-flight slot.
pub fn start<H: Send + 'static>(gw: Arc<Gateway>, ctx: ClientCtx, req: Request, hold: H) -> Flight {
    let (tx, rx) = Outbox::channel();
    let peer = ctx.session.as_ref().map(|s| s.requester.clone());
    let outbox = Outbox::new(tx.clone(), peer, gw.cfg.gateway.input_timeout);
    let task = tokio::spawn(async move {
        let _hold = hold;
        let resp = gw.handle(&ctx, req, &outbox).await;
        drop(outbox);
        let _ = tx.send(Message::Response(resp)).await;
    });
    Flight { task, rx }
}
