//! Who is asking: the legacy session (from `initialize` until the stdio connection closes or
//! the HTTP session is deleted), and the per-request context the fronts build from it or from a
//! modern request's `_meta` — the principal, the client, its capabilities, and the scope its
//! session facts live in.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use portcullis_core::mcp::{self, Era, RequestMeta};
use serde_json::{Map, Value};

use crate::dispatch::outbox::Requester;
use crate::state::taint::Scope;
use crate::upstream::client::ClientMeta;

/// Most resources one session follows.
pub const MAX_SUBSCRIPTIONS: usize = 1_000;

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

    /// Adds a resource subscription: `Some(false)` if it was there, `None` when the session
    /// follows as many resources as it may ([`MAX_SUBSCRIPTIONS`]).
    pub fn subscribe(&self, uri: &str) -> Option<bool> {
        let mut subs = lock(&self.subscriptions);
        if subs.contains(uri) {
            return Some(false);
        }
        if subs.len() >= MAX_SUBSCRIPTIONS {
            return None;
        }
        Some(subs.insert(uri.to_owned()))
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
    /// What the principal's identity provider says of them, as of this request's token.
    pub attributes: Arc<portcullis_policy::Attributes>,
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
            attributes: Arc::default(),
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
            attributes: Arc::default(),
            session: None,
            connection: None,
        }
    }

    /// The same context, for a principal whose identity provider says this of them.
    #[must_use]
    pub fn with_attributes(mut self, attributes: Arc<portcullis_policy::Attributes>) -> ClientCtx {
        self.attributes = attributes;
        self
    }

    /// The same context, on a connection that is one client's for its whole life.
    #[must_use]
    pub fn on_connection(mut self, connection: &str) -> ClientCtx {
        self.connection = Some(connection.to_owned());
        self
    }

    /// The client's name as it introduced itself (`clientInfo.name`), for `principal.client`.
    pub fn client_name(&self) -> String {
        self.client_info("name").unwrap_or("unknown").to_owned()
    }

    fn client_info(&self, key: &str) -> Option<&str> {
        self.meta
            .client_info
            .as_ref()
            .and_then(|i| i.get(key))
            .and_then(Value::as_str)
    }

    /// Who is asking, as policy sees them.
    pub fn policy_principal(&self) -> portcullis_policy::Principal {
        portcullis_policy::Principal {
            user: self.principal.clone(),
            client: self.client_name(),
            attributes: self.attributes.clone(),
        }
    }

    /// Where this request's session facts live: the connection (stdio), else the legacy
    /// session, else — stateless — the principal with the client's name and version, ending
    /// when idle.
    pub fn scope(&self) -> Scope {
        if let Some(c) = &self.connection {
            return Scope {
                key: format!("conn:{c}"),
                expires: false,
            };
        }
        if let Some(s) = &self.session {
            return Scope {
                key: session_scope(&s.id),
                expires: false,
            };
        }
        Scope {
            key: format!(
                "client:{}\u{0}{}\u{0}{}",
                self.principal,
                self.client_info("name").unwrap_or(""),
                self.client_info("version").unwrap_or("")
            ),
            expires: true,
        }
    }

    /// Whose request this is, for an upstream's traffic that names no request: the principal
    /// and the session scope.
    pub fn owner(&self) -> String {
        format!("{}\u{0}{}", self.principal, self.scope().key)
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

/// The taint scope of a 2025-11-25 session.
pub fn session_scope(id: &str) -> String {
    format!("session:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::mcp::RequestMeta;
    use serde_json::json;

    fn modern(name: &str) -> ClientCtx {
        let params = portcullis_core::Params::from_json(
            &json!({"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": name, "version": "1.0"},
            }})
            .to_string(),
        )
        .unwrap();
        ClientCtx::modern(&RequestMeta::read(Some(&params)), "alice")
    }

    #[test]
    fn scopes() {
        assert_eq!(modern("claude").scope().key, "client:alice\u{0}claude\u{0}1.0");
        assert!(modern("claude").scope().expires);
        assert_eq!(modern("claude").on_connection("stdio").scope().key, "conn:stdio");
        let legacy = ClientCtx::legacy(Arc::new(Session::from_initialize("s-1".into(), None)), "alice");
        assert_eq!(legacy.scope().key, "session:s-1");
        assert_ne!(legacy.owner(), modern("claude").owner());
    }
}
