//! Throttle: which rate and volume limits apply to a request (the principal's overall one
//! under `[rate]`, its upstream's, its tool's), admission before it is forwarded, and the
//! result's bytes charged after. The arithmetic is [`portcullis_core::rate`]; the limiter and
//! the clock are handed in.

use std::time::Instant;

use portcullis_core::rate::{Limiter, Rate, Scope};

use crate::config::UpstreamConfig;
use crate::error::GatewayError;

/// The limits that apply to one request.
#[derive(Debug, Default, Clone)]
pub struct Limits(Vec<(Scope, Rate)>);

/// The limits on a request to `upstream` for `tool` (its own name there; `None` for anything
/// but a tool call, which only the overall and the upstream's limits count).
pub fn limits(overall: Option<Rate>, upstream: Option<&UpstreamConfig>, tool: Option<&str>) -> Limits {
    let mut limits = Vec::new();
    if let Some(r) = overall {
        limits.push((Scope::All, r));
    }
    if let Some(up) = upstream {
        if let Some(r) = up.rate {
            limits.push((Scope::Upstream(up.name.clone()), r));
        }
        if let Some(r) = tool.and_then(|t| up.tool_rates.get(t)) {
            limits.push((Scope::Tool(up.name.clone(), tool.unwrap_or_default().to_owned()), *r));
        }
    }
    Limits(limits)
}

/// Admits one request of `principal` under `limits` (all or nothing), and counts a tool call
/// for `context.calls_in_window`.
pub fn admit(
    limiter: &mut Limiter,
    principal: &str,
    counted: Option<(&str, &str)>,
    limits: &Limits,
    now: Instant,
) -> Result<(), GatewayError> {
    if !limits.0.is_empty() {
        limiter
            .admit(principal, &limits.0, now)
            .map_err(GatewayError::RateLimited)?;
    }
    if let Some((upstream, tool)) = counted {
        limiter.count(principal, &Scope::Tool(upstream.to_owned(), tool.to_owned()), now);
    }
    Ok(())
}

/// Charges a result of `bytes` to the byte allowances of `limits`.
pub fn charge(limiter: &mut Limiter, principal: &str, limits: &Limits, bytes: usize, now: Instant) {
    if limits.0.iter().any(|(_, r)| r.bytes.is_some()) {
        limiter.charge_bytes(principal, &limits.0, bytes as u64, now);
    }
}

/// Whether any limit of `limits` counts bytes (so the charge needs the result's size).
pub fn counts_bytes(limits: &Limits) -> bool {
    limits.0.iter().any(|(_, r)| r.bytes.is_some())
}
