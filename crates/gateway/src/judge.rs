//! Every call judged by policy before it reaches an upstream: the principal and the tool
//! (with its effect settled from config, else from the upstream's annotations, which are only
//! hints) are handed to the Cedar engine; a forbid, a needed approval (no approval path yet) or
//! a policy that cannot be evaluated stops the call with the deciding policies named.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_core::catalog::{Entry, Kind};
use portcullis_policy::{
    Action, Decision, Effect, Outcome, Principal, Provenance, Request, Tool, effect_from_annotations,
};
use serde_json::Value;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::session::ClientCtx;
use crate::taint::Snapshot;
use portcullis_core::provenance::clock;

/// The client's name as it introduced itself (`clientInfo.name`), for `principal.client`.
pub(crate) fn client_name(ctx: &ClientCtx) -> String {
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

    /// The engine's decision for one request, now, with the session's labels and the
    /// arguments' provenance, and, for tool calls, the principal's calls to the tool in the
    /// last minute before this one.
    fn decide(
        &self,
        principal: &Principal,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        session: &Snapshot,
    ) -> Decision {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let calls_in_window = match action {
            Action::CallTool => self.calls_in_window(&principal.user, &tool.upstream, &tool.name),
            _ => 0,
        };
        let labels: Vec<String> = session.label.names().into_iter().map(str::to_owned).collect();
        let mut provenance = Provenance::default();
        for h in &session.hits {
            if !provenance.tainted.contains(&h.argument) {
                provenance.tainted.push(h.argument.clone());
            }
            if !provenance.sources.contains(&h.source.origin) {
                provenance.sources.push(h.source.origin.clone());
            }
        }
        self.cfg.policy.engine.decide(&Request {
            principal,
            action,
            tool,
            arguments,
            labels: &labels,
            provenance: &provenance,
            now_unix,
            calls_in_window,
        })
    }

    /// Decides one request; anything but a permit is the error the client gets. A permitted
    /// side-effecting call in a session that holds untrusted content then meets the flow rule:
    /// it needs a person's approval unless a permit marked `@flow("allow")` decided it.
    pub(crate) fn judge(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
    ) -> Result<(), GatewayError> {
        let side_effect = action == Action::CallTool && tool.effect != Effect::Read;
        let session = self.taint.snapshot(ctx, arguments, side_effect);
        let decision = self.decide(&principal(ctx), action, tool, arguments, &session);
        for e in &decision.errors {
            tracing::warn!(tool = %tool.name, upstream = %tool.upstream, error = %e, "policy could not be evaluated; denied");
        }
        match decision.outcome {
            Outcome::Permit => {
                if side_effect
                    && session.label.is_untrusted()
                    && !self.cfg.policy.engine.allows_untrusted_flow(&decision)
                {
                    let e = flow_denied(tool, &session);
                    tracing::info!(tool = %tool.name, upstream = %tool.upstream, error = %e, "call held by the flow rule");
                    return Err(e);
                }
                Ok(())
            }
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
        let decision = self.decide(principal, Action::CallTool, &tool, arguments, &Snapshot::default());
        Some((tool, decision))
    }

    /// The tools upstream `index` lists (held-back ones too) and whether policy could ever let
    /// `principal` call each: what `portcullis connect` computes the needed scopes from.
    pub fn tools_of(&self, index: usize, principal: &Principal) -> Vec<(String, bool)> {
        let cat = self.catalog();
        let listed = cat.entries(Kind::Tool).iter();
        let held = cat.held.iter().map(|h| &h.entry);
        let mut out: Vec<(String, bool)> = listed
            .chain(held)
            .filter(|e| e.upstream == index)
            .map(|e| {
                let may = self.cfg.policy.engine.may_ever_call(principal, &self.policy_tool(e));
                (e.original.clone(), may)
            })
            .collect();
        out.sort();
        out.dedup();
        out
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
    let reason = d.reason;
    GatewayError::Denied {
        reason,
        policies: d.policies,
        approval,
    }
}

/// The flow rule's refusal: what made the session untrusted, and which arguments carry values
/// from untrusted output.
fn flow_denied(tool: &Tool, session: &Snapshot) -> GatewayError {
    let source = session.first_untrusted.as_ref().map_or_else(
        || "untrusted content".to_owned(),
        |s| format!("untrusted content (first from {} at {})", s.origin, clock(s.at_unix)),
    );
    let mut reason = format!(
        "the session holds {source}, so a `{}` call to `{}` needs a person's approval",
        tool.effect, tool.name
    );
    for h in &session.hits {
        reason.push_str("; ");
        reason.push_str(&h.to_string());
    }
    GatewayError::Flow {
        reason,
        hits: session.hits.clone(),
        first: session.first_untrusted.clone(),
    }
}

/// The outcome of a refusal, as the audit log names it.
fn outcome_name(e: &GatewayError) -> &'static str {
    match e {
        GatewayError::Denied { approval: true, .. } => "needs_approval",
        GatewayError::Denied { approval: false, .. } => "forbid",
        GatewayError::Flow { .. } => "needs_approval:flow",
        GatewayError::RateLimited(_) => "rate_limited",
        GatewayError::Suspended { .. } => "suspended",
        GatewayError::Held { .. } => "quarantined",
        GatewayError::NotApproved { .. } => "not_approved",
        GatewayError::ApprovalTimedOut { .. } => "approval_timed_out",
        GatewayError::Approvals(_) => "error:approvals",
        _ => "error",
    }
}

impl Gateway {
    /// Records the decision on one call and waits for it to be committed; a decision that
    /// cannot be recorded refuses the call.
    pub(crate) async fn audit_decision(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        verdict: &Result<(), GatewayError>,
    ) -> Result<(), GatewayError> {
        let (decision, reason) = match verdict {
            Ok(()) => ("permit", String::new()),
            Err(e) => (outcome_name(e), e.to_string()),
        };
        self.metrics.decision(&tool.upstream, decision);
        tracing::Span::current().record("mcp.decision", decision);
        let labels = self.taint.snapshot(ctx, &Value::Null, false).label.names();
        let body = crate::audit::decision_body(
            &ctx.principal,
            &client_name(ctx),
            &crate::taint::scope(ctx).0,
            &action.to_string(),
            &tool.upstream,
            &tool.name,
            arguments,
            decision,
            &reason,
            &labels,
        );
        if self.audit.record(body).await {
            Ok(())
        } else {
            Err(GatewayError::AuditUnavailable)
        }
    }
}
