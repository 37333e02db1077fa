//! Rate and volume limits in the call path: which configured limits apply to a call (the
//! principal's overall one, its upstream's, its tool's), admitting or refusing it before it is
//! forwarded, and charging the result's bytes after. The arithmetic is
//! [`portcullis_core::rate`]; this module owns the clock and the lock.

use std::sync::PoisonError;
use std::time::Instant;

use portcullis_core::rate::{Rate, Scope};

use crate::error::GatewayError;
use crate::gateway::Gateway;

/// The limits that apply to one tool call.
#[derive(Debug, Default)]
pub(crate) struct Limits(Vec<(Scope, Rate)>);

impl Gateway {
    /// The configured limits on calls to `tool` (its name at upstream `upstream`).
    pub(crate) fn limits_for(&self, upstream: usize, tool: &str) -> Limits {
        let mut limits = Vec::new();
        if let Some(r) = self.cfg.rate {
            limits.push((Scope::All, r));
        }
        if let Some(up) = self.upstreams().get(upstream) {
            if let Some(r) = up.cfg.rate {
                limits.push((Scope::Upstream(up.cfg.name.clone()), r));
            }
            if let Some(r) = up.cfg.tool_rates.get(tool) {
                limits.push((Scope::Tool(up.cfg.name.clone(), tool.to_owned()), *r));
            }
        }
        Limits(limits)
    }

    /// Admits one call of `principal` under `limits`, counting it for `calls_in_window`.
    pub(crate) fn admit(
        &self,
        principal: &str,
        upstream: &str,
        tool: &str,
        limits: &Limits,
    ) -> Result<(), GatewayError> {
        let now = Instant::now();
        let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        if !limits.0.is_empty() {
            limiter.admit(principal, &limits.0, now).map_err(|e| {
                tracing::info!(%principal, %upstream, %tool, scope = %e.scope, retry_after_s = e.retry_after.as_secs(), "call refused: rate limit");
                GatewayError::RateLimited(e)
            })?;
        }
        limiter.count(principal, &Scope::Tool(upstream.to_owned(), tool.to_owned()), now);
        Ok(())
    }

    /// Charges a result of `bytes` to the byte allowances of `limits`.
    pub(crate) fn charge(&self, principal: &str, limits: &Limits, bytes: usize) {
        if limits.0.iter().all(|(_, r)| r.bytes.is_none()) {
            return;
        }
        let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        limiter.charge_bytes(principal, &limits.0, bytes as u64, Instant::now());
    }

    /// Calls of `principal` to one tool in the last minute, for `context.calls_in_window`.
    pub(crate) fn calls_in_window(&self, principal: &str, upstream: &str, tool: &str) -> u64 {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls_in_window(
                principal,
                &Scope::Tool(upstream.to_owned(), tool.to_owned()),
                Instant::now(),
            )
    }
}
