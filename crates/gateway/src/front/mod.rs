//! The transports clients reach the gateway through: stdio (for a host that launches
//! `portcullis stdio`) and Streamable HTTP (`portcullis serve`), each serving both eras, both
//! running requests through one driver ([`driver`]). HTTP connections are accepted under
//! deadlines and bounds ([`listen`]).

pub mod driver;
pub mod http;
pub mod listen;
pub mod stdio;
mod streams;

use portcullis_core::ErrorObject;
use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, RequestMeta};
use serde_json::json;

/// Checks the per-request protocol fields of a modern request.
pub fn validate_modern(meta: &RequestMeta) -> Result<(), ErrorObject> {
    let Some(version) = meta.protocol_version.as_deref() else {
        return Err(ErrorObject::new(
            code::INVALID_PARAMS,
            format!("missing `_meta.{}`", mcp::meta::PROTOCOL_VERSION),
        ));
    };
    if !mcp::is_supported_modern(version) {
        return Err(unsupported_version(version));
    }
    if meta.client_capabilities.is_none() {
        return Err(ErrorObject::new(
            code::INVALID_PARAMS,
            format!("missing `_meta.{}`", mcp::meta::CLIENT_CAPABILITIES),
        ));
    }
    Ok(())
}

/// The `UnsupportedProtocolVersionError` for `requested`.
pub fn unsupported_version(requested: &str) -> ErrorObject {
    ErrorObject::with_data(
        code::UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        &json!({ "supported": mcp::MODERN_VERSIONS, "requested": requested }),
    )
}
