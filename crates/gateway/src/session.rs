//! Client-side state the gateway keeps: the legacy session (from `initialize` until the stdio
//! connection closes or the HTTP session is deleted), and the per-request context built from it
//! or from a modern request's `_meta`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use portcullis_core::mcp::{self, Era, RequestMeta};
use serde_json::{Map, Value};

use crate::client::ClientMeta;
use crate::outbox::Requester;

/// A legacy client's session.
#[derive(Debug)]
pub struct Session {
    /// The session id (HTTP) or a connection label (stdio).
    pub id: String,
    /// The negotiated protocol version.
    pub version: String,
    /// Capabilities declared in `initialize`.
    pub capabilities: Map<String, Value>,
    /// `clientInfo` from `initialize`.
    pub client_info: Option<Value>,
    log_level: Mutex<Option<String>>,
    subscriptions: Mutex<BTreeSet<String>>,
    /// Pending server-to-client requests.
    pub requester: Arc<Requester>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Session {
    /// A session from the `initialize` params.
    pub fn from_initialize(id: String, params: Option<&portcullis_core::Params>) -> Session {
        let requested = params.and_then(|p| p.get_str("protocolVersion")).unwrap_or_default();
        Session {
            id,
            version: mcp::negotiate_legacy(&requested).to_owned(),
            capabilities: params.and_then(|p| p.get_object("capabilities")).unwrap_or_default(),
            client_info: params.and_then(|p| p.get_as::<Value>("clientInfo").ok().flatten()),
            log_level: Mutex::new(None),
            subscriptions: Mutex::new(BTreeSet::new()),
            requester: Arc::new(Requester::default()),
        }
    }

    /// The level set with `logging/setLevel`.
    pub fn log_level(&self) -> Option<String> {
        lock(&self.log_level).clone()
    }

    /// Sets the level.
    pub fn set_log_level(&self, level: String) {
        *lock(&self.log_level) = Some(level);
    }

    /// Adds a resource subscription; `false` if it was there.
    pub fn subscribe(&self, uri: &str) -> bool {
        lock(&self.subscriptions).insert(uri.to_owned())
    }

    /// Removes a resource subscription; `false` if it was not there.
    pub fn unsubscribe(&self, uri: &str) -> bool {
        lock(&self.subscriptions).remove(uri)
    }

    /// Whether the session subscribed to `uri`.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.subscriptions).contains(uri)
    }

    /// All subscriptions (to release them when the session ends).
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.subscriptions).iter().cloned().collect()
    }
}

/// Who is asking, for one request.
#[derive(Clone, Debug)]
pub struct ClientCtx {
    /// The client's era for this request.
    pub era: Era,
    /// The protocol version of this request.
    pub version: String,
    /// Capabilities, identity and log level.
    pub meta: ClientMeta,
    /// The authenticated principal (`local` for stdio and unauthenticated loopback HTTP).
    pub principal: String,
    /// The legacy session, when there is one.
    pub session: Option<Arc<Session>>,
    /// The connection the request came on, when it is one client's for its whole life (stdio):
    /// the scope of session taint.
    pub connection: Option<String>,
}

impl ClientCtx {
    /// The context of a request made within a legacy session.
    pub fn legacy(session: Arc<Session>, principal: &str) -> ClientCtx {
        ClientCtx {
            era: Era::Legacy,
            version: session.version.clone(),
            meta: ClientMeta {
                capabilities: session.capabilities.clone(),
                client_info: session.client_info.clone(),
                log_level: session.log_level(),
            },
            principal: principal.to_owned(),
            session: Some(session),
            connection: None,
        }
    }

    /// The context of a modern request, from its `_meta`.
    pub fn modern(meta: &RequestMeta, principal: &str) -> ClientCtx {
        ClientCtx {
            era: Era::Modern,
            version: meta.protocol_version.clone().unwrap_or_default(),
            meta: ClientMeta {
                capabilities: meta.client_capabilities.clone().unwrap_or_default(),
                client_info: meta.client_info.clone(),
                log_level: meta.log_level.clone(),
            },
            principal: principal.to_owned(),
            session: None,
            connection: None,
        }
    }

    /// The same context, on a connection that is one client's for its whole life.
    #[must_use]
    pub fn on_connection(mut self, connection: &str) -> ClientCtx {
        self.connection = Some(connection.to_owned());
        self
    }

    /// Whether a log message at `level` may be relayed to this client.
    pub fn wants_log(&self, level: Option<&str>) -> bool {
        let wanted = match (self.era, self.meta.log_level.as_deref()) {
            // Modern servers must not log for requests that did not ask.
            (Era::Modern, None) => return false,
            (Era::Legacy, None) => return true,
            (_, Some(w)) => w,
        };
        match (level.and_then(mcp::log_rank), mcp::log_rank(wanted)) {
            (Some(l), Some(w)) => l >= w,
            _ => true,
        }
    }
}
