//! The Portcullis runtime: transports toward clients and upstream servers, the upstream pool
//! with its supervision, sessions, and the one pipeline every forwarded message passes through.
//!
//! The folders follow the path of a request, and dependencies point one way, down this list:
//!
//! - [`front`]: the transports clients reach (stdio, Streamable HTTP), their sessions and
//!   client authentication; both share one request driver.
//! - [`admin`]: the admin web page, beside the fronts.
//! - [`dispatch`]: what each method is — answered by the gateway, run through its plan of
//!   stages, or refused — and the code that runs a plan ([`dispatch::plan`] is the table).
//! - [`state`]: the composition root: the running gateway's shared state (catalog, sessions'
//!   taint, limits, audit writer, pins, approvals' store).
//! - [`guard`]: one module per stage, each a pure decision over narrow inputs; no guard knows
//!   the gateway.
//! - [`upstream`]: the pool of upstream servers: the MCP client, spawning, supervision, OAuth
//!   toward services.
//! - [`config`]: the configuration, raw and typed.
//!
//! - [`bearer`]: client access tokens of identity providers (`auth = "oauth"`), validated for
//!   the fronts.
//!
//! Leaves any folder may use: [`error`] (the one mapping to the wire), [`redact`] (the
//! process-wide redactor) and [`framing`] (newline-delimited JSON-RPC).
//!
//! **Architecture invariant:** protocol decisions (parsing, naming, routing tables, header
//! encoding) live in `portcullis-core`; this crate moves bytes, owns tasks and processes, and
//! keeps time. `tests/layers.rs` checks that no module imports one above it.

pub mod admin;
pub mod bearer;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod fetch;
pub mod framing;
pub mod front;
pub mod guard;
pub mod redact;
pub mod state;
pub mod upstream;

/// Installs the process-wide TLS crypto provider (ring). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
