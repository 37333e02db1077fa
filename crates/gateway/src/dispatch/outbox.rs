//! What the gateway sends a client while one of its requests is in flight: related
//! notifications, and (to legacy clients) server-to-client requests whose answers come back on
//! the transport. The queue is bounded ([`OUTBOX`]): a client that does not read loses
//! notifications, never the gateway its memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::jsonrpc::code;
use portcullis_core::{ErrorObject, Id, Message, Notification, Outcome, Params, Request, Response};
use tokio::sync::{mpsc, oneshot};

/// Most messages queued for one request's client; past it, notifications are dropped.
pub const OUTBOX: usize = 1024;
/// Most server-to-client requests open on one connection or session.
pub const MAX_PENDING: usize = 256;

/// Pending server-to-client requests of one client connection or session.
#[derive(Debug, Default)]
pub struct Requester {
    next: AtomicU64,
    pending: Mutex<HashMap<Id, oneshot::Sender<Response>>>,
}

impl Requester {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, oneshot::Sender<Response>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(&self) -> Option<(Id, oneshot::Receiver<Response>)> {
        let id = Id::Str(format!("portcullis-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1));
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING {
            return None;
        }
        pending.insert(id.clone(), tx);
        Some((id, rx))
    }

    /// Delivers the client's answer. `false` when no request of ours has that id.
    pub fn complete(&self, r: Response) -> bool {
        let Some(id) = r.id.clone() else { return false };
        match self.lock().remove(&id) {
            Some(tx) => {
                let _ = tx.send(r);
                true
            }
            None => false,
        }
    }

    fn abandon(&self, id: &Id) {
        self.lock().remove(id);
    }

    /// Fails every pending request (the connection closed).
    pub fn close(&self) {
        self.lock().clear();
    }
}

/// The channel to a client for one request.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    peer: Option<std::sync::Arc<Requester>>,
    timeout: Duration,
}

/// A server-to-client request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The client cannot receive requests (a modern client, or the stream is gone).
    #[error("the client cannot receive requests")]
    NoPeer,
    /// No answer in time.
    #[error("the client did not answer within {0:?}")]
    Timeout(Duration),
    /// Too many requests to this client are open.
    #[error("too many requests to the client are open")]
    TooMany,
}

impl Outbox {
    /// An outbox writing to `tx`; with a `peer`, it can also send requests.
    pub fn new(tx: mpsc::Sender<Message>, peer: Option<std::sync::Arc<Requester>>, timeout: Duration) -> Self {
        Self { tx, peer, timeout }
    }

    /// Sends a notification related to the request.
    pub fn notify(&self, n: Notification) {
        if let Err(mpsc::error::TrySendError::Full(m)) = self.tx.try_send(Message::Notification(n)) {
            tracing::debug!(method = ?m.method(), "notification dropped: the client is not reading");
        }
    }

    /// A bounded channel for one request's outbox.
    pub fn channel() -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
        mpsc::channel(OUTBOX)
    }

    /// Sends a request to the client and waits for its answer.
    pub async fn ask(&self, method: &str, params: Option<Params>) -> Result<Outcome, AskError> {
        let peer = self.peer.as_ref().ok_or(AskError::NoPeer)?;
        let (id, rx) = peer.begin().ok_or(AskError::TooMany)?;
        // However this ends (answered, timed out, or dropped because the call it serves
        // ended), the request is no longer pending.
        let _pending = Abandon { peer, id: id.clone() };
        let req = Request {
            id,
            method: method.to_owned(),
            params,
        };
        if self.tx.send(Message::Request(req)).await.is_err() {
            return Err(AskError::NoPeer);
        }
        let answer = tokio::time::timeout(self.timeout, rx).await;
        match answer {
            Ok(Ok(resp)) => Ok(resp.outcome),
            Ok(Err(_)) => Err(AskError::NoPeer),
            Err(_) => Err(AskError::Timeout(self.timeout)),
        }
    }
}

/// Forgets a pending server-to-client request when dropped.
struct Abandon<'a> {
    peer: &'a Requester,
    id: Id,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.peer.abandon(&self.id);
    }
}

impl From<AskError> for Outcome {
    fn from(e: AskError) -> Self {
        Outcome::Error(ErrorObject::new(
            code::INTERNAL_ERROR,
            format!("relaying to the client failed: {e}"),
        ))
    }
}
