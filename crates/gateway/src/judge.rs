//! Every call judged by policy before it reaches an upstream: the principal and the tool
//! (with its effect settled from config, else from the upstream's annotations, which are only
//! hints) are handed to the Cedar engine; a forbid, a needed approval (no approval path yet) or
//! a policy that cannot be evaluated stops the call with the deciding policies named.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_core::catalog::Entry;
use portcullis_policy::{Action, Decision, Effect, Outcome, Principal, Request, Tool, effect_from_annotations};
use serde_json::Value;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::session::ClientCtx;

/// The client's name as it introduced itself (`clientInfo.name`), for `principal.client`.
fn client_name(ctx: &ClientCtx) -> String {
    ctx.meta
        .client_info
        .as_ref()
        .and_then(|i| i.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

/// Who is asking.
pub(crate) fn principal(ctx: &ClientCtx) -> Principal {
    Principal {
        user: ctx.principal.clone(),
        client: client_name(ctx),
    }
}

impl Gateway {
    /// The tool as policy sees it: upstream, the upstream's own name, and its effect (config
    /// first; else the annotations, where a missing or contradictory hint means the stricter).
    pub(crate) fn policy_tool(&self, entry: &Entry) -> Tool {
        let upstream = self.upstreams().get(entry.upstream).map(|u| &u.cfg);
        let effect = upstream
            .and_then(|u| u.tool_effects.get(&entry.original).copied())
            .unwrap_or_else(|| {
                let annotations: Option<Value> = entry.definition.get_as("annotations").ok().flatten();
                effect_from_annotations(annotations.as_ref())
            });
        Tool {
            upstream: upstream.map(|u| u.name.clone()).unwrap_or_default(),
            name: entry.original.clone(),
            effect,
        }
    }

    /// The engine's decision for one request, now, with what the gateway knows of the session
    /// (no labels yet) and, for tool calls, the principal's calls to the tool in the last
    /// minute before this one.
    fn decide(&self, principal: &Principal, action: Action, tool: &Tool, arguments: &Value) -> Decision {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let calls_in_window = match action {
            Action::CallTool => self.calls_in_window(&principal.user, &tool.upstream, &tool.name),
            _ => 0,
        };
        self.cfg.policy.engine.decide(&Request {
            principal,
            action,
            tool,
            arguments,
            labels: &[],
            now_unix,
            calls_in_window,
        })
    }

    /// Decides one request; anything but a permit is the error the client gets.
    pub(crate) fn judge(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
    ) -> Result<(), GatewayError> {
        let decision = self.decide(&principal(ctx), action, tool, arguments);
        for e in &decision.errors {
            tracing::warn!(tool = %tool.name, upstream = %tool.upstream, error = %e, "policy could not be evaluated; denied");
        }
        match decision.outcome {
            Outcome::Permit => Ok(()),
            Outcome::Forbid | Outcome::NeedsApproval => {
                tracing::info!(tool = %tool.name, upstream = %tool.upstream, outcome = ?decision.outcome, policies = ?decision.policies, reason = %decision.reason, "call denied by policy");
                Err(denied(decision))
            }
        }
    }

    /// The decision policy would make for `principal` calling the tool exposed as `exposed`
    /// with `arguments`, and the tool as policy saw it; `None` when no upstream lists the tool.
    /// For `portcullis policy check`.
    pub fn explain_call(&self, principal: &Principal, exposed: &str, arguments: &Value) -> Option<(Tool, Decision)> {
        let cat = self.catalog();
        // Policy is judged apart from pins: a held-back tool is explained too.
        let entry = cat.tool(exposed).or_else(|| cat.held_tool(exposed).map(|h| &h.entry))?;
        let tool = self.policy_tool(entry);
        let decision = self.decide(principal, Action::CallTool, &tool, arguments);
        Some((tool, decision))
    }

    /// Whether a principal could ever call this tool: tools it never may are left out of lists.
    pub(crate) fn may_list(&self, ctx: &ClientCtx, entry: &Entry) -> bool {
        self.cfg
            .policy
            .engine
            .may_ever_call(&principal(ctx), &self.policy_tool(entry))
    }
}

/// A resource or prompt as policy sees it: named by URI or prompt name, effect `read`.
pub(crate) fn readable(upstream: &str, name: &str) -> Tool {
    Tool {
        upstream: upstream.to_owned(),
        name: name.to_owned(),
        effect: Effect::Read,
    }
}

fn denied(d: Decision) -> GatewayError {
    let approval = d.outcome == Outcome::NeedsApproval;
    let reason = if approval {
        format!("{}; approving calls is not built yet, so this call is denied", d.reason)
    } else {
        d.reason
    };
    GatewayError::Denied {
        reason,
        policies: d.policies,
        approval,
    }
}
