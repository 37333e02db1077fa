//! Portcullis core: the pure protocol layer of the gateway.
//!
//! Message views over raw JSON-RPC, MCP eras and vocabulary, SSE framing, request-metadata
//! headers, the merged catalog with its routing tables, tool pinning, and the tool-poisoning scanner.
//!
//! **Architecture invariant:** this crate does no I/O, spawns nothing, and knows nothing of
//! tokio, HTTP servers or processes. Everything here is a function of its inputs, so it can be
//! unit-tested, property-tested and fuzzed in isolation.

pub mod anomaly;
pub mod audit;
pub mod catalog;
pub mod challenge;
pub mod headers;
pub mod jsonrpc;
pub mod label;
pub mod limits;
pub mod mcp;
pub mod output;
pub mod params;
pub mod pin;
pub mod provenance;
pub mod rate;
pub mod redact;
pub mod scan;
pub mod sse;
pub mod strict;
pub mod template;
pub mod translate;

pub use jsonrpc::{ErrorObject, Id, Message, Notification, Outcome, Request, Response};
pub use limits::Limits;
pub use params::{Params, RawObject};
