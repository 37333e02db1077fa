//! MCP vocabulary: protocol versions and eras, the reserved `_meta` keys, and the methods the
//! gateway treats specially.

use serde_json::{Map, Value};

use crate::params::Params;

/// The modern (stateless, per-request `_meta`) revision.
pub const V2026_07_28: &str = "2026-07-28";
/// The newest legacy (initialize + session) revision.
pub const V2025_11_25: &str = "2025-11-25";

/// Modern versions the gateway speaks, newest first.
pub const MODERN_VERSIONS: &[&str] = &[V2026_07_28];
/// Legacy versions the gateway accepts in `initialize`, newest first.
pub const LEGACY_VERSIONS: &[&str] = &[V2025_11_25, "2025-06-18", "2025-03-26", "2024-11-05"];

/// The reserved `_meta` keys.
pub mod meta {
    /// Protocol version of a modern request.
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// Client capabilities of a modern request.
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// Client identity of a modern request.
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// Minimum log level for a modern request.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// Subscription correlation on `subscriptions/listen` streams.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    /// Server identity on results.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// Progress opt-in.
    pub const PROGRESS_TOKEN: &str = "progressToken";
}

/// Which lifecycle a peer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// `initialize` handshake and sessions (2025-11-25 and earlier).
    Legacy,
    /// Stateless, per-request `_meta` (2026-07-28 and later).
    Modern,
}

impl Era {
    /// The era a protocol version belongs to; unknown versions sort by date.
    pub fn of_version(version: &str) -> Era {
        if version >= V2026_07_28 {
            Era::Modern
        } else {
            Era::Legacy
        }
    }
}

/// Whether the gateway speaks this modern version.
pub fn is_supported_modern(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version)
}

/// The legacy version to answer an `initialize` with: the requested one when supported,
/// otherwise the newest legacy version.
pub fn negotiate_legacy(requested: &str) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(V2025_11_25)
}

/// All versions the gateway speaks, newest first (for `server/discover` and version errors).
pub fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS.iter().chain(LEGACY_VERSIONS).copied().collect()
}

/// The methods the gateway handles itself or routes by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `initialize` (legacy).
    Initialize,
    /// `ping` (legacy).
    Ping,
    /// `server/discover` (modern).
    Discover,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourceTemplatesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe` (legacy).
    ResourcesSubscribe,
    /// `resources/unsubscribe` (legacy).
    ResourcesUnsubscribe,
    /// `completion/complete`.
    Complete,
    /// `logging/setLevel` (legacy).
    SetLogLevel,
    /// `subscriptions/listen` (modern).
    Listen,
    /// Anything else.
    Other,
}

impl Method {
    /// Classifies a method name.
    pub fn of(name: &str) -> Method {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "server/discover" => Method::Discover,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourceTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "completion/complete" => Method::Complete,
            "logging/setLevel" => Method::SetLogLevel,
            "subscriptions/listen" => Method::Listen,
            _ => Method::Other,
        }
    }

    /// Methods that the 2026-07-28 revision removed.
    pub fn removed_in_modern(self) -> bool {
        matches!(
            self,
            Method::Initialize
                | Method::Ping
                | Method::SetLogLevel
                | Method::ResourcesSubscribe
                | Method::ResourcesUnsubscribe
        )
    }

    /// Methods that may answer with an `input_required` result (MRTR).
    pub fn allows_input_required(self) -> bool {
        matches!(self, Method::ToolsCall | Method::PromptsGet | Method::ResourcesRead)
    }
}

/// The per-request protocol fields of a modern request, read from `params._meta`.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// `io.modelcontextprotocol/protocolVersion`, if a string.
    pub protocol_version: Option<String>,
    /// `io.modelcontextprotocol/clientCapabilities`, if an object.
    pub client_capabilities: Option<Map<String, Value>>,
    /// `io.modelcontextprotocol/clientInfo`.
    pub client_info: Option<Value>,
    /// `io.modelcontextprotocol/logLevel`, if a string.
    pub log_level: Option<String>,
    /// `progressToken`, if a string or integer.
    pub progress_token: Option<Value>,
    /// Whether `_meta` was present at all.
    pub present: bool,
}

impl RequestMeta {
    /// Reads the protocol fields from request params. Never fails: a malformed field reads as
    /// absent, and the caller decides what absence means.
    pub fn read(params: Option<&Params>) -> RequestMeta {
        let Some(meta) = params.and_then(|p| p.get_object("_meta")) else {
            return RequestMeta::default();
        };
        RequestMeta {
            protocol_version: meta
                .get(meta::PROTOCOL_VERSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
            client_capabilities: meta.get(meta::CLIENT_CAPABILITIES).and_then(Value::as_object).cloned(),
            client_info: meta.get(meta::CLIENT_INFO).cloned(),
            log_level: meta.get(meta::LOG_LEVEL).and_then(Value::as_str).map(str::to_owned),
            progress_token: meta
                .get(meta::PROGRESS_TOKEN)
                .filter(|v| v.is_string() || v.is_i64() || v.is_u64())
                .cloned(),
            present: true,
        }
    }

    /// Whether this request declares itself modern (carries a protocol version in `_meta`).
    pub fn is_modern(&self) -> bool {
        self.protocol_version.is_some()
    }
}

/// Every request method of the revisions Portcullis speaks, in either direction. A method
/// here has its plan in the gateway and cannot be re-planned in config.
pub const SPEC_REQUESTS: [&str; 22] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// Log levels, in increasing severity (RFC 5424 names used by MCP).
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The severity rank of a level name; `None` for unknown names.
pub fn log_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

/// Which server-to-client request kinds a capability object allows.
pub fn client_supports(capabilities: &Map<String, Value>, method: &str) -> bool {
    let key = match method {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => return true,
    };
    capabilities.get(key).is_some_and(Value::is_object)
}

/// The capability key a server-to-client request needs.
pub fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_by_version() {
        assert_eq!(Era::of_version("2026-07-28"), Era::Modern);
        assert_eq!(Era::of_version("2025-11-25"), Era::Legacy);
        assert_eq!(Era::of_version("2024-11-05"), Era::Legacy);
    }

    #[test]
    fn legacy_negotiation_falls_back_to_newest() {
        assert_eq!(negotiate_legacy("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate_legacy("1999-01-01"), V2025_11_25);
    }

    #[test]
    fn meta_reads_tolerate_garbage() {
        let p = Params::from_json(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":7,"progressToken":{"x":1}}}"#)
            .unwrap();
        let m = RequestMeta::read(Some(&p));
        assert!(m.present);
        assert_eq!(m.protocol_version, None);
        assert_eq!(m.progress_token, None);
    }
}
