//! The stages a message passes, one module each, as pure decisions over narrow inputs: the
//! catalog, a policy engine, a session's facts, a limiter and a clock handed in. No guard
//! knows the gateway, a transport or a task; the order they run in is written once, in
//! [`crate::dispatch::pipeline`], after the table in [`crate::dispatch::plan`].
//!
//! **Architecture invariant:** nothing under `guard/` imports `state`, `dispatch` or `front`,
//! does I/O or awaits; each decision is unit-tested beside it.

pub mod approve;
pub mod credentials;
pub mod judge;
pub mod mediate;
pub mod misuse;
pub mod observe;
pub mod parse;
pub mod pin;
pub mod poisoning;
pub mod route;
pub mod throttle;
