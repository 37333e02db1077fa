//! Judge: Cedar policy over who asks, what they ask for (a tool with its effect settled from
//! config, else from the upstream's annotations, which are only hints) and the arguments read
//! strictly; then the flow rule: a permitted side effect in a session that holds untrusted
//! content needs a person's approval unless a permit marked `@flow("allow")` decided it.
//! Anything but a permit is the error the client gets, with the deciding policies named.

use portcullis_core::catalog::Entry;
use portcullis_core::provenance::{Hit, Source, clock};
use portcullis_policy::{
    Action, Decision, Effect, Outcome, PolicyEngine, Principal, Provenance, Request, Tool, effect_from_annotations,
};
use serde_json::Value;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;

/// A session's facts as a request is judged.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The session's label.
    pub label: portcullis_core::label::Label,
    /// Its first untrusted source.
    pub first_untrusted: Option<Source>,
    /// The request's argument values that came from untrusted output.
    pub hits: Vec<Hit>,
}

/// A tool as policy sees it: upstream, the upstream's own name, and its effect (config first;
/// else the annotations, where a missing or contradictory hint means the stricter).
pub fn policy_tool(entry: &Entry, upstream: Option<&UpstreamConfig>) -> Tool {
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

/// Anything else a request names (a prompt, a resource, a completion target, a method), as
/// policy sees it.
pub fn named(upstream: &str, name: &str, effect: Effect) -> Tool {
    Tool {
        upstream: upstream.to_owned(),
        name: name.to_owned(),
        effect,
    }
}

/// Everything one decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// What they do.
    pub action: Action,
    /// To what.
    pub tool: &'a Tool,
    /// With what, read strictly.
    pub arguments: &'a Value,
    /// What their session has seen.
    pub session: &'a Snapshot,
    /// Now, seconds since the Unix epoch.
    pub now_unix: i64,
    /// Their calls to this tool in the last minute.
    pub calls_in_window: u64,
}

/// Whether a request is a side effect the flow rule watches: a tool call or a configured
/// method whose effect is not `read`.
pub fn side_effect(action: Action, tool: &Tool) -> bool {
    matches!(action, Action::CallTool | Action::CallMethod) && tool.effect != Effect::Read
}

/// The engine's decision, with the session's labels and the arguments' provenance.
pub fn decide(engine: &PolicyEngine, i: &Inputs<'_>) -> Decision {
    let labels: Vec<String> = i.session.label.names().into_iter().map(str::to_owned).collect();
    let mut provenance = Provenance::default();
    for h in &i.session.hits {
        if !provenance.tainted.contains(&h.argument) {
            provenance.tainted.push(h.argument.clone());
        }
        if !provenance.sources.contains(&h.source.origin) {
            provenance.sources.push(h.source.origin.clone());
        }
    }
    engine.decide(&Request {
        principal: i.principal,
        action: i.action,
        tool: i.tool,
        arguments: i.arguments,
        labels: &labels,
        provenance: &provenance,
        now_unix: i.now_unix,
        calls_in_window: i.calls_in_window,
    })
}

/// The verdict: `Ok` for a permit the flow rule lets through; else the refusal (a forbid, a
/// needed approval, the flow rule's hold).
pub fn verdict(engine: &PolicyEngine, i: &Inputs<'_>, decision: Decision) -> Result<(), GatewayError> {
    match decision.outcome {
        Outcome::Permit => {
            if side_effect(i.action, i.tool)
                && i.session.label.is_untrusted()
                && !engine.allows_untrusted_flow(&decision)
            {
                return Err(flow_denied(i.tool, i.session));
            }
            Ok(())
        }
        Outcome::Forbid | Outcome::NeedsApproval => Err(GatewayError::Denied {
            approval: decision.outcome == Outcome::NeedsApproval,
            operator: decision.operator,
            reason: decision.reason,
            policies: decision.policies,
        }),
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
pub fn outcome_name(e: &GatewayError) -> &'static str {
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
        GatewayError::InvalidParams(_) => "refused:invalid_params",
        GatewayError::UnknownTool(_) | GatewayError::UnknownPrompt(_) | GatewayError::ResourceNotFound(_) => {
            "refused:unknown_target"
        }
        GatewayError::MissingCapability(_) => "refused:capability",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::label::Label;
    use portcullis_policy::Profile;
    use serde_json::json;

    fn inputs<'a>(tool: &'a Tool, args: &'a Value, session: &'a Snapshot, p: &'a Principal) -> Inputs<'a> {
        Inputs {
            principal: p,
            action: Action::CallTool,
            tool,
            arguments: args,
            session,
            now_unix: 0,
            calls_in_window: 0,
        }
    }

    #[test]
    fn a_permitted_send_in_an_untrusted_session_meets_the_flow_rule() {
        let engine = PolicyEngine::from_profile(Profile::Default).unwrap();
        let p = Principal {
            user: "alice".into(),
            client: "c".into(),
        };
        let send = named("mail", "send", Effect::Send);
        let args = json!({"to": "bob@example.com"});
        let clean = Snapshot::default();
        let i = inputs(&send, &args, &clean, &p);
        assert!(verdict(&engine, &i, decide(&engine, &i)).is_ok());
        let tainted = Snapshot {
            label: Label::UNTRUSTED,
            ..Snapshot::default()
        };
        let i = inputs(&send, &args, &tainted, &p);
        let e = verdict(&engine, &i, decide(&engine, &i)).unwrap_err();
        assert!(matches!(e, GatewayError::Flow { .. }), "{e}");
        assert_eq!(outcome_name(&e), "needs_approval:flow");
        let read = named("mail", "search", Effect::Read);
        let i = inputs(&read, &args, &tainted, &p);
        assert!(verdict(&engine, &i, decide(&engine, &i)).is_ok(), "reads are not held");
    }

    #[test]
    fn destructive_calls_need_approval_by_default() {
        let engine = PolicyEngine::from_profile(Profile::Default).unwrap();
        let p = Principal {
            user: "alice".into(),
            client: "c".into(),
        };
        let rm = named("files", "delete", Effect::Destructive);
        let args = json!({});
        let s = Snapshot::default();
        let i = inputs(&rm, &args, &s, &p);
        let e = verdict(&engine, &i, decide(&engine, &i)).unwrap_err();
        assert!(e.needs_approval());
    }
}
