//! The gateway as a stdio MCP server: one client, one connection, both eras. A legacy client
//! opens a session with `initialize` that lasts as long as the connection; modern requests
//! carry their own `_meta` and may be interleaved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{Method, RequestMeta};
use portcullis_core::{ErrorObject, Id, Message, Notification, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::dispatch::ctx::{ClientCtx, Session};
use crate::framing::{self, Inbound};
use crate::state::{Change, Gateway};

/// The principal of a stdio client: the local user who launched the gateway.
pub const LOCAL_PRINCIPAL: &str = "local";

struct Conn {
    /// This connection's own name: the scope of its session's facts and approvals.
    id: String,
    gw: Arc<Gateway>,
    out: mpsc::Sender<Vec<u8>>,
    session: Mutex<Option<Arc<Session>>>,
    in_flight: Mutex<HashMap<Id, AbortHandle>>,
    active: AtomicUsize,
}

/// Releases a request's slot when its task ends or is aborted.
struct InFlight {
    conn: Arc<Conn>,
    id: Id,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.conn.in_flight).remove(&self.id);
        self.conn.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves one client over `reader`/`writer` until the client closes its end.
pub async fn serve<R, W>(gw: Arc<Gateway>, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer_task = framing::spawn_writer(writer, out_rx);
    let mut inbound = framing::frames(reader, gw.cfg.gateway.limits);
    let mut salt = [0u8; 6];
    rand::fill(&mut salt);
    let conn = Arc::new(Conn {
        id: format!("stdio-{}", salt.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        gw,
        out: out_tx,
        session: Mutex::new(None),
        in_flight: Mutex::new(HashMap::new()),
        active: AtomicUsize::new(0),
    });
    while let Some(item) = inbound.next().await {
        match item {
            Inbound::Message(Message::Request(r)) => conn.clone().request(r).await,
            Inbound::Message(Message::Notification(n)) => conn.notification(n),
            Inbound::Message(Message::Response(r)) => {
                let session = lock(&conn.session).clone();
                let delivered = session.is_some_and(|s| s.requester.complete(r));
                if !delivered {
                    tracing::debug!("response from the client matches no request of ours");
                }
            }
            Inbound::Malformed(e) => {
                conn.send(&Message::from(e.to_response())).await;
            }
            Inbound::Closed(_) => break,
        }
    }
    for (_, task) in lock(&conn.in_flight).drain() {
        task.abort();
    }
    if let Some(s) = lock(&conn.session).take() {
        s.requester.close();
        release_session(&conn.gw, &s);
    }
    conn.gw.end_session(&format!("conn:{}", conn.id)).await;
    let out = conn.out.clone();
    drop(conn);
    let _ = out.send(Vec::new()).await;
    let _ = writer_task.await;
}

/// Releases what a session held at the gateway. Its untrusted history stays with its
/// principal for the flow window.
pub(crate) fn release_session(gw: &Arc<Gateway>, s: &Session) {
    for uri in s.subscriptions() {
        gw.release_resource(&uri);
    }
    gw.session_ended(&crate::dispatch::ctx::session_scope(&s.id));
}

impl Conn {
    async fn send(&self, m: &Message) {
        let _ = self.out.send(crate::redact::wire(m)).await;
    }

    async fn request(self: Arc<Self>, req: Request) {
        let method = Method::of(&req.method);
        let meta = RequestMeta::read(req.params.as_ref());
        let session = lock(&self.session).clone();
        let ctx = if method == Method::Initialize && !meta.is_modern() {
            let s = Arc::new(Session::from_initialize("stdio".into(), req.params.as_ref()));
            *lock(&self.session) = Some(s.clone());
            spawn_change_pump(self.gw.clone(), s.clone(), self.out.clone());
            ClientCtx::legacy(s, LOCAL_PRINCIPAL)
        } else if meta.is_modern() {
            if let Err(e) = super::validate_modern(&meta) {
                return self.send(&Message::from(Response::error(Some(req.id), e))).await;
            }
            ClientCtx::modern(&meta, LOCAL_PRINCIPAL)
        } else if let Some(s) = session {
            ClientCtx::legacy(s, LOCAL_PRINCIPAL)
        } else {
            let e = ErrorObject::new(
                code::INVALID_PARAMS,
                "send `initialize` first (2025-11-25), or carry `_meta` protocol fields on every request (2026-07-28)",
            );
            return self.send(&Message::from(Response::error(Some(req.id), e))).await;
        };
        let ctx = ctx.on_connection(&self.id);
        let limit = self.gw.cfg.gateway.max_concurrent_calls;
        if self.active.fetch_add(1, Ordering::SeqCst) >= limit {
            self.active.fetch_sub(1, Ordering::SeqCst);
            let e = crate::error::GatewayError::Overloaded(limit).to_error(ctx.era);
            return self.send(&Message::from(Response::error(Some(req.id), e))).await;
        }
        let id = req.id.clone();
        let done = InFlight {
            conn: self.clone(),
            id: id.clone(),
        };
        // The slot is taken under the lock, so the task cannot end (and release it) before it
        // is recorded.
        let mut in_flight = lock(&self.in_flight);
        // Related messages go out before the response, in order; each is scrubbed.
        let task = super::driver::serve_into(self.gw.clone(), ctx, req, done, self.out.clone());
        in_flight.insert(id, task.abort_handle());
        drop(in_flight);
    }

    fn notification(&self, n: Notification) {
        match n.method.as_str() {
            "notifications/cancelled" => {
                let id = n
                    .params
                    .as_ref()
                    .and_then(|p| p.get_as::<Id>("requestId").ok().flatten());
                if let Some(task) = id.and_then(|id| lock(&self.in_flight).remove(&id)) {
                    task.abort();
                }
            }
            "notifications/initialized" | "notifications/roots/list_changed" => {}
            other => tracing::debug!(method = other, "client notification ignored"),
        }
    }
}

/// Sends list changes and followed resource updates to a legacy client.
fn spawn_change_pump(gw: Arc<Gateway>, session: Arc<Session>, out: mpsc::Sender<Vec<u8>>) {
    let mut changes = gw.changes();
    let weak = Arc::downgrade(&session);
    drop(session);
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                () = gw.shutdown.cancelled() => return,
            };
            let Some(session) = weak.upgrade() else { return };
            let note = match change {
                Ok(c) => change_notification(&c, &session),
                Err(e @ tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    crate::state::catalog::lagged(&e);
                    None
                }
                Err(_) => return,
            };
            if let Some(n) = note
                && out.send(crate::redact::wire(&Message::from(n))).await.is_err()
            {
                return;
            }
        }
    });
}

/// The legacy notification for a change, if this session wants it.
pub(crate) fn change_notification(change: &Change, session: &Session) -> Option<Notification> {
    let method = match change {
        Change::Tools => "notifications/tools/list_changed",
        Change::Prompts => "notifications/prompts/list_changed",
        Change::Resources => "notifications/resources/list_changed",
        Change::ResourceUpdated { uri, params } => {
            return session.is_subscribed(uri).then(|| Notification {
                method: "notifications/resources/updated".into(),
                params: Some(params.clone()),
            });
        }
    };
    Some(Notification {
        method: method.into(),
        params: None,
    })
}
