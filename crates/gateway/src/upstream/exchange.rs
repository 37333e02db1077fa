//! One forwarded call the request handler drives, and the parking lot that lets a
//! modern client answer a legacy upstream's server-to-client requests.
//!
//! A legacy upstream asks for sampling, elicitation or roots with a JSON-RPC request in the
//! middle of a call, and waits. A modern client cannot receive requests: it expects an
//! `input_required` result and retries the call with `inputResponses`. So the gateway parks the
//! still-running upstream call under a fresh `requestState` token, answers the client with the
//! upstream's questions, and resumes the parked call when the retry brings the answers.
//!
//! Tokens are 128 random bits (unguessable, so they cannot be forged or enumerated), single
//! use, bound to the principal, method and target of the call, and expire.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{Notification, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::upstream::client::{ClientError, ServerRequest};

/// Prefix of the `requestState` tokens the gateway mints.
pub const TOKEN_PREFIX: &str = "pcx1.";
/// Most exchanges parked for one principal at once.
pub const MAX_PARKED_PER_PRINCIPAL: usize = 64;
/// Most exchanges parked at once.
pub const MAX_PARKED: usize = 4096;

/// The upstream call of an exchange, as a future.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response, ClientError>> + Send>>;

/// A forwarded call. The handler polls it in place (no task, no hop) until it is parked; a
/// parked call moves to its own task ([`Exchange::detach`]) so it keeps running while nobody
/// waits on it.
pub struct Exchange {
    /// The call's outcome: poll it (it is `Unpin`) until it is ready, once.
    pub result: CallFuture,
    pub notes: mpsc::Receiver<Notification>,
    pub requests: mpsc::Receiver<ServerRequest>,
    task: Option<AbortHandle>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("detached", &self.task.is_some())
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// An exchange over `call`, its notifications and its server-to-client requests.
    pub fn new(
        call: impl Future<Output = Result<Response, ClientError>> + Send + 'static,
        notes: mpsc::Receiver<Notification>,
        requests: mpsc::Receiver<ServerRequest>,
    ) -> Exchange {
        Exchange {
            result: Box::pin(call),
            notes,
            requests,
            task: None,
        }
    }

    /// Moves the call into its own task, so it goes on while the exchange is parked.
    pub fn detach(&mut self) {
        if self.task.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let call = std::mem::replace(&mut self.result, Box::pin(std::future::pending()));
        let task = tokio::spawn(async move {
            let _ = tx.send(call.await);
        });
        self.task = Some(task.abort_handle());
        self.result = Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(ClientError::Closed("the upstream call ended".into())))
        });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Dropping the exchange cancels the upstream call (in place, the future is dropped).
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A parked exchange waiting for the client's retry.
#[derive(Debug)]
pub struct Parked {
    pub exchange: Exchange,
    /// The upstream's open questions, by the key given to the client.
    pub pending: Vec<(String, ServerRequest)>,
    /// Who may resume it, and for what.
    pub principal: String,
    pub method: String,
    pub target: String,
    pub upstream: usize,
    expires: Instant,
}

impl Parked {
    pub fn new(
        exchange: Exchange,
        pending: Vec<(String, ServerRequest)>,
        principal: String,
        method: String,
        target: String,
        upstream: usize,
        ttl: Duration,
    ) -> Self {
        Self {
            exchange,
            pending,
            principal,
            method,
            target,
            upstream,
            expires: Instant::now() + ttl,
        }
    }
}

/// The parking lot.
#[derive(Debug)]
pub struct Parking {
    ttl: Duration,
    slots: std::sync::Arc<Mutex<HashMap<String, Parked>>>,
}

fn lock(m: &Mutex<HashMap<String, Parked>>) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Parking {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Default::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Parks and returns the token; `None` when the principal (or the gateway) has as many
    /// exchanges parked as it may (the exchange is dropped, which cancels its upstream call).
    pub fn park(&self, parked: Parked) -> Option<String> {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let mut slots = lock(&self.slots);
        let now = Instant::now();
        slots.retain(|_, p| p.expires > now);
        let mine = slots.values().filter(|p| p.principal == parked.principal).count();
        if mine >= MAX_PARKED_PER_PRINCIPAL || slots.len() >= MAX_PARKED {
            return None;
        }
        slots.insert(token.clone(), parked);
        Some(token)
    }

    /// Takes a parked exchange out (single use). Expired ones are gone.
    pub fn take(&self, token: &str) -> Option<Parked> {
        let parked = lock(&self.slots).remove(token)?;
        (parked.expires > Instant::now()).then_some(parked)
    }

    /// How many exchanges are parked.
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Whether none is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired exchanges (cancelling their upstream calls) every few seconds.
    pub fn spawn_sweeper(&self, stop: CancellationToken) {
        let slots = self.slots.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = stop.cancelled() => { lock(&slots).clear(); return; }
                }
                let now = Instant::now();
                lock(&slots).retain(|_, p| p.expires > now);
            }
        });
    }
}
