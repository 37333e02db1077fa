//! The gateway's errors and their one mapping to the wire. Internal detail goes to the log;
//! the client gets a message it can act on.

use portcullis_core::ErrorObject;
use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::Era;
use serde_json::json;

use crate::upstream::Unavailable;
use crate::upstream::client::ClientError;

/// Why the gateway could not serve a request itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The method is not served (in this era).
    #[error("method `{0}` not found")]
    MethodNotFound(String),
    /// The method is known and refused by its plan.
    #[error("method `{method}` is not served: {why}")]
    Refused {
        /// The method.
        method: String,
        /// Why.
        why: &'static str,
    },
    /// A request an upstream made of the client is not relayed.
    #[error("refused: {0}")]
    PeerRefused(String),
    /// A bound on what one client may hold was reached.
    #[error("{0}")]
    TooMany(String),
    /// The params are unusable.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// No upstream exposes this tool.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// No upstream exposes this prompt.
    #[error("unknown prompt `{0}`")]
    UnknownPrompt(String),
    /// No upstream serves this resource.
    #[error("resource `{0}` not found")]
    ResourceNotFound(String),
    /// The owning upstream is down or starting.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The call to the upstream failed without an answer.
    #[error("upstream `{upstream}`: {error}")]
    Upstream {
        /// Which upstream.
        upstream: String,
        /// What went wrong.
        error: ClientError,
    },
    /// Serving the request needs a client capability the client did not declare.
    #[error("this request needs the client capability `{0}`, which the client did not declare")]
    MissingCapability(&'static str),
    /// Too many requests in flight for this client.
    #[error("too many concurrent requests (limit {0}); retry when one completes")]
    Overloaded(usize),
    /// A `requestState` the gateway issued is unknown, expired or presented by someone else.
    #[error("`requestState` is unknown, expired, or belongs to another request")]
    StaleRequestState,
    /// The tool's definition is not the approved one.
    #[error("{reason}")]
    Held {
        /// The tool as exposed.
        tool: String,
        /// Why, and how to approve it.
        reason: String,
    },
    /// A rate or volume limit ran out.
    #[error("{0}")]
    RateLimited(portcullis_core::rate::Exceeded),
    /// The decision could not be written to the audit log, so the call was not forwarded.
    #[error("the audit log cannot be written; the call was not forwarded")]
    AuditUnavailable,
    /// A credential the upstream holds is suspended for misuse.
    #[error(
        "credential `{credential}` is suspended: {reason}; after checking, lift it with `portcullis vault resume {credential}`"
    )]
    Suspended {
        /// The vault secret.
        credential: String,
        /// What tripped the suspension.
        reason: String,
    },
    /// The flow rule held a side-effecting call in a session that holds untrusted content.
    #[error("denied by the flow rule: {reason}")]
    Flow {
        /// Why, with the untrusted source and the tainted arguments.
        reason: String,
        /// The arguments carrying values from untrusted output.
        hits: Vec<portcullis_core::provenance::Hit>,
        /// The session's first untrusted source.
        first: Option<portcullis_core::provenance::Source>,
    },
    /// The person asked did not approve the call.
    #[error("{cause}; approval `{id}` was declined by `{by}`: {note}")]
    NotApproved {
        /// The approval.
        id: String,
        /// Who decided.
        by: String,
        /// Their reason.
        note: String,
        /// Why it needed approval.
        cause: Box<GatewayError>,
    },
    /// Nobody decided in time.
    #[error("{cause}; no one approved `{id}` within {}s, so the call was not made (approve it, then retry the same call)", .after.as_secs())]
    ApprovalTimedOut {
        /// The approval (still usable if approved later: the same call retried goes ahead).
        id: String,
        /// How long it waited.
        after: std::time::Duration,
        /// Why it needed approval.
        cause: Box<GatewayError>,
    },
    /// Approvals could not be stored or read.
    #[error("approvals are unavailable: {0}")]
    Approvals(String),
    /// Policy did not permit the call.
    #[error("denied by policy: {reason}")]
    Denied {
        /// Why, in one line.
        reason: String,
        /// The ids of the deciding policies.
        policies: Vec<String>,
        /// Whether a person's approval would have permitted it.
        approval: bool,
        /// Whether only an operator (terminal, admin page) may give it.
        operator: bool,
    },
}

impl GatewayError {
    /// Whether only an operator may approve it (`@approval("operator")`; the cause of a
    /// refusal that waited).
    pub fn operator_only(&self) -> bool {
        match self {
            GatewayError::Denied { operator, .. } => *operator,
            GatewayError::NotApproved { cause, .. } | GatewayError::ApprovalTimedOut { cause, .. } => {
                cause.operator_only()
            }
            _ => false,
        }
    }

    /// Whether a person's approval would let the call through (policy's `@approval`, the flow
    /// rule).
    pub fn needs_approval(&self) -> bool {
        matches!(
            self,
            GatewayError::Flow { .. } | GatewayError::Denied { approval: true, .. }
        )
    }

    /// The JSON-RPC error for a client of `era`.
    pub fn to_error(&self, era: Era) -> ErrorObject {
        let msg = self.to_string();
        match self {
            GatewayError::MethodNotFound(_) | GatewayError::Refused { .. } => {
                ErrorObject::new(code::METHOD_NOT_FOUND, msg)
            }
            GatewayError::PeerRefused(_) => ErrorObject::new(code::GATEWAY_DENIED, msg),
            GatewayError::TooMany(_) => ErrorObject::new(code::OVERLOADED, msg),
            GatewayError::InvalidParams(_)
            | GatewayError::UnknownTool(_)
            | GatewayError::UnknownPrompt(_)
            | GatewayError::StaleRequestState => ErrorObject::new(code::INVALID_PARAMS, msg),
            GatewayError::ResourceNotFound(uri) => {
                let code = match era {
                    Era::Legacy => code::LEGACY_RESOURCE_NOT_FOUND,
                    Era::Modern => code::INVALID_PARAMS,
                };
                ErrorObject::with_data(code, msg, &json!({ "uri": uri }))
            }
            GatewayError::Unavailable(_) => ErrorObject::new(code::UPSTREAM_UNAVAILABLE, msg),
            GatewayError::Upstream { upstream, error } => crate::upstream::client::error_for(error, upstream),
            GatewayError::MissingCapability(cap) => match era {
                Era::Modern => ErrorObject::with_data(
                    code::MISSING_REQUIRED_CLIENT_CAPABILITY,
                    msg,
                    &json!({ "requiredCapabilities": { *cap: {} } }),
                ),
                Era::Legacy => ErrorObject::new(code::INVALID_REQUEST, msg),
            },
            GatewayError::Overloaded(_) => ErrorObject::new(code::OVERLOADED, msg),
            GatewayError::Held { tool, .. } => ErrorObject::with_data(
                code::GATEWAY_DENIED,
                msg,
                &json!({ "outcome": "quarantined", "tool": tool }),
            ),
            GatewayError::RateLimited(e) => ErrorObject::with_data(
                code::RATE_LIMITED,
                msg,
                &json!({
                    "retryAfterSeconds": e.retry_after.as_secs(),
                    "scope": e.scope.to_string(),
                    "limit": e.limit,
                    "measure": match e.measure {
                        portcullis_core::rate::Measure::Calls => "calls",
                        portcullis_core::rate::Measure::Bytes => "bytes",
                    },
                    "windowSeconds": e.window.as_secs(),
                }),
            ),
            GatewayError::AuditUnavailable => ErrorObject::new(code::INTERNAL_ERROR, msg),
            GatewayError::Suspended { credential, .. } => ErrorObject::with_data(
                code::GATEWAY_DENIED,
                msg,
                &json!({ "outcome": "suspended", "credential": credential }),
            ),
            GatewayError::Flow { hits, first, .. } => ErrorObject::with_data(
                code::GATEWAY_DENIED,
                msg,
                &json!({
                    "outcome": "needs_approval",
                    "policies": ["portcullis:flow-rule"],
                    "untrustedSource": first.as_ref().map(|s| json!({"origin": s.origin, "at": s.at_unix})),
                    "provenance": hits.iter().map(|h| json!({
                        "argument": h.argument,
                        "kind": h.value.kind.noun(),
                        "value": h.value.text,
                        "origin": h.source.origin,
                        "at": h.source.at_unix,
                    })).collect::<Vec<_>>(),
                }),
            ),
            GatewayError::NotApproved { id, by, note, cause } => with_approval(
                cause.to_error(era),
                msg,
                json!({ "id": id, "state": "denied", "decidedBy": by, "note": note }),
            ),
            GatewayError::ApprovalTimedOut { id, after, cause } => with_approval(
                cause.to_error(era),
                msg,
                json!({ "id": id, "state": "timed_out", "waitedSeconds": after.as_secs() }),
            ),
            GatewayError::Approvals(_) => ErrorObject::new(code::INTERNAL_ERROR, msg),
            GatewayError::Denied {
                policies,
                approval,
                operator,
                ..
            } => ErrorObject::with_data(
                code::GATEWAY_DENIED,
                msg,
                &json!({
                    "outcome": if *approval { "needs_approval" } else { "forbid" },
                    "policies": policies,
                    "approver": if *operator { "operator" } else { "person" },
                }),
            ),
        }
    }
}

/// The error of the call that needed approval, with what became of the approval added to its
/// data (`data.approval`) and message.
fn with_approval(cause: ErrorObject, msg: String, approval: serde_json::Value) -> ErrorObject {
    let mut data: serde_json::Value = cause
        .data
        .as_ref()
        .and_then(|d| serde_json::from_str(d.get()).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(m) = data.as_object_mut() {
        m.insert("approval".into(), approval);
    }
    ErrorObject::with_data(cause.code, msg, &data)
}
