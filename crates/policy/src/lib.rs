//! Portcullis policy: Cedar decisions over domain types.
//!
//! A [`PolicyEngine`] holds the Cedar [`SCHEMA`] and a policy set (a built-in [`Profile`], the
//! operator's policy files, or both), validated when it is built. [`PolicyEngine::decide`] turns
//! a [`Request`] (principal, action, tool, arguments, session labels, time, call count) into a
//! [`Decision`]: permit, forbid or needs approval, with the ids of the deciding policies and a
//! reason. [`PolicyEngine::may_ever_call`] says which tools to hide from a principal's
//! `tools/list`. [`effect_from_annotations`] turns an upstream's untrusted tool hints into an
//! [`Effect`].
//!
//! Decisions fail closed: a policy that cannot be evaluated denies the call (Cedar alone would
//! skip it), and the error is in the decision. A permit annotated `@approval("required")` makes
//! the outcome [`Outcome::NeedsApproval`] whenever it applies, even if other permits apply too.
//!
//! **Architecture invariant:** this crate knows nothing of HTTP, JSON-RPC, tokio or I/O. It takes
//! domain types and returns decisions; the gateway decides what a decision means on the wire.

mod effect;
mod engine;
mod error;
pub mod lint;
mod load;
mod profile;
mod request;
mod value;

pub use effect::{Effect, UnknownEffect, effect_from_annotations};
pub use engine::{PolicyEngine, SCHEMA};
pub use error::{PolicyError, Position, Problem};
pub use profile::{Profile, UnknownProfile};
pub use request::{Action, Attributes, Decision, Outcome, Principal, Provenance, Request, Tool};

#[cfg(test)]
mod tests;
