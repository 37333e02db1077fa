//! JSON-RPC 2.0 messages as the gateway sees them: the envelope is parsed, every payload
//! (`params` members, `result`, `error.data`) stays raw JSON so that nothing the gateway does not
//! own is ever re-encoded.
//!
//! INVARIANT: a value the gateway did not write is forwarded byte for byte, so unknown fields,
//! number formatting and key order survive the trip through Portcullis.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::limits::{self, Limits};
use crate::params::Params;

/// Standard JSON-RPC error codes and the MCP-defined ones.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: HTTP headers do not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request needs a client capability that was not declared.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the requested protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// 2025-11-25 and earlier: resource not found (2026-07-28 uses `INVALID_PARAMS`).
    pub const LEGACY_RESOURCE_NOT_FOUND: i64 = -32002;
    /// Portcullis: the call was refused by the gateway (policy, limits, quarantine). Outside
    /// the JSON-RPC reserved range, as the 2026-07-28 error code policy asks.
    pub const GATEWAY_DENIED: i64 = -31001;
    /// Portcullis: the upstream that owns the target is unavailable or failed.
    pub const UPSTREAM_UNAVAILABLE: i64 = -31002;
    /// Portcullis: the upstream did not answer within the call timeout.
    pub const UPSTREAM_TIMEOUT: i64 = -31003;
    /// Portcullis: too many concurrent calls from this client.
    pub const OVERLOADED: i64 = -31004;
    /// Portcullis: a rate or volume limit ran out; `data.retryAfterSeconds` says when to retry.
    pub const RATE_LIMITED: i64 = -31005;
}

/// A JSON-RPC request id: a string or an integer (MCP forbids `null` and fractions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Int(n) => s.serialize_i64(*n),
            Id::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v).map(Id::Int).map_err(|_| E::custom("id out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `error` member of an error response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Additional information, kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// An error with structured data.
    pub fn with_data(code: i64, message: impl Into<String>, data: &impl Serialize) -> Self {
        Self {
            code,
            message: message.into(),
            data: serde_json::value::to_raw_value(data).ok(),
        }
    }
}

/// A request: has an id and expects a response.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request id.
    pub id: Id,
    /// The method name.
    pub method: String,
    /// The parameters, if any.
    pub params: Option<Params>,
}

/// A notification: no id, no response.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// The parameters, if any.
    pub params: Option<Params>,
}

/// The outcome carried by a response.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A successful result, raw.
    Result(Box<RawValue>),
    /// An error.
    Error(ErrorObject),
}

/// A response to a request. The id is absent only on errors about an unreadable request.
#[derive(Clone, Debug)]
pub struct Response {
    /// The id of the request this answers.
    pub id: Option<Id>,
    /// Result or error.
    pub outcome: Outcome,
}

impl Response {
    /// A successful response.
    pub fn result(id: Id, result: Box<RawValue>) -> Self {
        Self {
            id: Some(id),
            outcome: Outcome::Result(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Self {
            id,
            outcome: Outcome::Error(error),
        }
    }

    /// The error, if this is an error response.
    pub fn as_error(&self) -> Option<&ErrorObject> {
        match &self.outcome {
            Outcome::Error(e) => Some(e),
            Outcome::Result(_) => None,
        }
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response (result or error).
    Response(Response),
}

/// Why a frame could not be read as a JSON-RPC message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all, or too deep, or too large. Carries the id when it could still be read
    /// (a message cut short or with bytes that are not UTF-8 after its id), so the error
    /// answers the request it belongs to.
    #[error("parse error: {message}")]
    Json {
        /// The id of the offending message, when readable.
        id: Option<Id>,
        /// What is wrong.
        message: String,
    },
    /// JSON, but not a valid JSON-RPC 2.0 message. Carries the id when it could be read.
    #[error("invalid request: {message}")]
    Invalid {
        /// The id of the offending message, when readable.
        id: Option<Id>,
        /// What is wrong.
        message: String,
    },
}

impl ParseError {
    /// The JSON-RPC error response that answers this frame.
    pub fn to_response(&self) -> Response {
        match self {
            ParseError::Json { id, message } => Response::error(
                id.clone(),
                ErrorObject::new(code::PARSE_ERROR, format!("parse error: {message}")),
            ),
            ParseError::Invalid { id, message } => Response::error(
                id.clone(),
                ErrorObject::new(code::INVALID_REQUEST, format!("invalid request: {message}")),
            ),
        }
    }
}

/// The envelope as read off the wire, before classification.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    jsonrpc: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    method: Option<Box<RawValue>>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// Keeps an explicit `null` as a present raw value, so `"id": null` is distinguishable from a
/// missing id.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl Message {
    /// Parses one frame, enforcing the size and depth limits first.
    pub fn parse(frame: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        if frame.len() > limits.max_frame_bytes {
            return Err(ParseError::Json {
                id: id_of_partial(frame, frame),
                message: format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    frame.len(),
                    limits.max_frame_bytes
                ),
            });
        }
        limits::check_depth(frame, limits.max_depth).map_err(|e| ParseError::Json {
            id: id_of_partial(frame, frame),
            message: e.to_string(),
        })?;
        let env: Envelope = match serde_json::from_slice(frame) {
            Ok(env) => env,
            Err(e) if e.is_data() => {
                // Valid JSON, but not an object (an array, a batch, a scalar), or an object
                // that names an envelope member twice.
                let message = match frame.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{') => format!("malformed envelope: {e}"),
                    _ => batch_or_shape(frame),
                };
                return Err(ParseError::Invalid {
                    id: id_of_partial(frame, frame),
                    message,
                });
            }
            Err(e) => {
                return Err(ParseError::Json {
                    id: id_of_partial(frame, frame),
                    message: e.to_string(),
                });
            }
        };
        Self::from_envelope(env)
    }

    fn from_envelope(env: Envelope) -> Result<Self, ParseError> {
        // An explicit `"id": null` is only legal on an error response about an unreadable
        // request; it reads as "no id" there and is refused everywhere else.
        let null_id = env.id.as_deref().is_some_and(|raw| raw.get() == "null");
        let id = match env.id.as_deref() {
            None => None,
            Some(_) if null_id => None,
            Some(raw) => match serde_json::from_str::<Id>(raw.get()) {
                Ok(id) => Some(id),
                Err(_) => {
                    return Err(ParseError::Invalid {
                        id: None,
                        message: format!("`id` must be a string or an integer, got `{}`", raw.get()),
                    });
                }
            },
        };
        let invalid = |message: String| ParseError::Invalid {
            id: id.clone(),
            message,
        };
        match env.jsonrpc.as_deref().map(RawValue::get) {
            Some("\"2.0\"") => {}
            Some(other) => return Err(invalid(format!("`jsonrpc` must be \"2.0\", got `{other}`"))),
            None => return Err(invalid("missing `jsonrpc` member".into())),
        }
        let method = match env.method.as_deref() {
            None => None,
            Some(raw) => Some(
                serde_json::from_str::<String>(raw.get()).map_err(|_| invalid("`method` must be a string".into()))?,
            ),
        };
        let params = match env.params {
            None => None,
            Some(raw) => Some(Params::from_raw(&raw).map_err(|e| {
                if e.to_string().starts_with("duplicate member") {
                    invalid(format!("`params`: {e}"))
                } else {
                    invalid("`params` must be an object".into())
                }
            })?),
        };
        match (method, env.result, env.error) {
            (Some(_), None, None) if null_id => Err(invalid("a request `id` must not be null".into())),
            (Some(method), None, None) => Ok(match id {
                Some(id) => Message::Request(Request { id, method, params }),
                None => Message::Notification(Notification { method, params }),
            }),
            (Some(_), _, _) => Err(invalid(
                "a message cannot carry both `method` and `result` or `error`".into(),
            )),
            (None, Some(result), None) => match id {
                Some(id) if params.is_none() => Ok(Message::Response(Response::result(id, result))),
                Some(_) => Err(invalid("a response cannot carry `params`".into())),
                None => Err(invalid("a result response needs an `id`".into())),
            },
            (None, None, Some(error)) => {
                let error: ErrorObject =
                    serde_json::from_str(error.get()).map_err(|e| invalid(format!("malformed `error` member: {e}")))?;
                Ok(Message::Response(Response::error(id, error)))
            }
            (None, Some(_), Some(_)) => Err(invalid("a response cannot carry both `result` and `error`".into())),
            (None, None, None) => Err(invalid("missing `method`, `result` or `error`".into())),
        }
    }

    /// Serialises the message as one line of JSON (no embedded newlines).
    pub fn to_vec(&self) -> Vec<u8> {
        // Serialising this type cannot fail: every member is a string, an integer, or
        // already-valid raw JSON.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) => None,
        }
    }
}

fn batch_or_shape(frame: &[u8]) -> String {
    match frame.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "JSON-RPC batches are not supported by MCP".into(),
        _ => "a JSON-RPC message must be a JSON object".into(),
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request(r) => {
                m.serialize_entry("id", &r.id)?;
                m.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    m.serialize_entry("params", p)?;
                }
            }
            Message::Notification(n) => {
                m.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    m.serialize_entry("params", p)?;
                }
            }
            Message::Response(r) => {
                if let Some(id) = &r.id {
                    m.serialize_entry("id", id)?;
                }
                match &r.outcome {
                    Outcome::Result(v) => m.serialize_entry("result", v)?,
                    Outcome::Error(e) => m.serialize_entry("error", e)?,
                }
            }
        }
        m.end()
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Message::Notification(n)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

/// The top-level `"id"` of a JSON-RPC object of which only `head` (its first bytes) and `tail`
/// (its last bytes) are at hand: a message over the size limit, which is never buffered whole,
/// still gets its error answered to the request it belongs to. The head is walked as JSON
/// (strings and nesting tracked) up to the `id` member at the top level; the tail is read only
/// in the shape `, "id": VALUE }` at its very end. Anything else: `None`.
pub fn id_of_partial(head: &[u8], tail: &[u8]) -> Option<Id> {
    id_in_head(head).or_else(|| id_at_end(tail))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `i` (its opening quote).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                j += 1;
            }
            // A scalar cut by the end of the head is not known to be whole.
            b.get(j).map(|_| j)
        }
    }
}

/// An id value: an integer or a string.
fn id_value(v: &[u8]) -> Option<Id> {
    match serde_json::from_slice::<serde_json::Value>(v).ok()? {
        serde_json::Value::Number(n) => n.as_i64().map(Id::Int),
        serde_json::Value::String(s) => Some(Id::Str(s)),
        _ => None,
    }
}

fn id_in_head(b: &[u8]) -> Option<Id> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = b.get(i..key_end)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = value_end(b, i)?;
        if key == b"\"id\"" {
            return id_value(b.get(i..end)?);
        }
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn id_at_end(b: &[u8]) -> Option<Id> {
    let body = b.trim_ascii_end().strip_suffix(b"}")?.trim_ascii_end();
    // The value: a string without escapes, or an integer.
    let start = if body.last() == Some(&b'"') {
        let open = body.get(..body.len() - 1)?.iter().rposition(|c| *c == b'"')?;
        if body.get(open..)?.contains(&b'\\') {
            return None;
        }
        open
    } else {
        body.iter()
            .rposition(|c| !(c.is_ascii_digit() || *c == b'-'))
            .map_or(0, |p| p + 1)
    };
    let value = body.get(start..)?;
    let before = body.get(..start)?.trim_ascii_end().strip_suffix(b":")?.trim_ascii_end();
    let before = before.strip_suffix(b"\"id\"")?.trim_ascii_end();
    if before.last() != Some(&b',') {
        return None;
    }
    id_value(value)
}

#[cfg(test)]
mod tests;
