//! The Portcullis runtime: transports toward clients and upstream servers, the upstream pool
//! with its supervision, sessions, and the forwarding pipeline that every call passes through.
//!
//! **Architecture invariant:** protocol decisions (parsing, naming, routing tables, header
//! encoding) live in `portcullis-core`; this crate moves bytes, owns tasks and processes, and
//! keeps time.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod exchange;
pub mod framing;
pub mod gateway;
mod judge;
pub mod metrics;
mod misuse;
pub mod oauth;
pub mod outbox;
pub mod pins;
pub mod poisoning;
pub mod proxy;
pub mod secrets;
pub mod server;
pub mod session;
pub mod taint;
mod throttle;
pub mod upstream;

/// Installs the process-wide TLS crypto provider (ring). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
