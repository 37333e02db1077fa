//! Judge: Cedar policy over who asks, what they ask for (a tool with its effect settled from
//! config, else from the upstream's annotations, which are only hints) and the arguments read
//! strictly; then the flow rule, which holds (needs a person's approval for) a permitted side
//! effect that untrusted content could have steered, unless a permit marked `@flow("allow")`
//! decided it:
//! - every side effect after output in which the scanner found an injection;
//! - a `destructive` call after any untrusted output (damage needs no destination);
//! - a `write` or `send` with an argument that is a destination — an address, a URL, a
//!   domain, an account number, alone or in a short list (not quoted in running text) — seen
//!   in untrusted output and never in trusted context (trusted output, or the arguments of
//!   calls made before the session saw anything untrusted).
//!
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
    /// The first output in which an injection was found.
    pub injected: Option<Source>,
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
    let mut labels: Vec<String> = i.session.label.names().into_iter().map(str::to_owned).collect();
    if i.session.injected.is_some() {
        labels.push("injected".to_owned());
    }
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
                && !engine.allows_untrusted_flow(&decision)
                && let Some(hold) = flow_hold(i.tool, i.session)
            {
                return Err(hold);
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

/// The flow rule on a permitted side effect: its hold, with what made it (the injection, the
/// untrusted content, the arguments that carry destinations from untrusted output), or `None`
/// when nothing untrusted could have steered it.
fn flow_hold(tool: &Tool, session: &Snapshot) -> Option<GatewayError> {
    let call = format!("a `{}` call to `{}`", tool.effect, tool.name);
    let steered: Vec<Hit> = session
        .hits
        .iter()
        .filter(|h| h.value.kind.is_destination() && h.field)
        .cloned()
        .collect();
    let mut reason = if let Some(s) = &session.injected {
        format!(
            "the session saw an injection (in output of {} at {}), so {call} needs a person's approval",
            s.origin,
            clock(s.at_unix)
        )
    } else if tool.effect == Effect::Destructive && session.label.is_untrusted() {
        let source = session.first_untrusted.as_ref().map_or_else(
            || "untrusted content".to_owned(),
            |s| format!("untrusted content (first from {} at {})", s.origin, clock(s.at_unix)),
        );
        format!("the session holds {source}, so {call} needs a person's approval")
    } else if !steered.is_empty() {
        format!("{call} carries a destination from untrusted output, so it needs a person's approval")
    } else {
        return None;
    };
    for h in &steered {
        reason.push_str("; ");
        reason.push_str(&h.to_string());
    }
    Some(GatewayError::Flow {
        reason,
        hits: steered,
        first: session.injected.clone().or_else(|| session.first_untrusted.clone()),
    })
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
    use portcullis_core::provenance::ValueKind;
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

    fn hit(argument: &str, kind: ValueKind, text: &str) -> Hit {
        Hit {
            argument: argument.into(),
            value: portcullis_core::provenance::Value {
                kind,
                text: text.into(),
            },
            source: Source {
                origin: "mail__read".into(),
                at_unix: 0,
            },
            field: true,
        }
    }

    /// The precise flow rule: untrusted content alone holds nothing but a destructive call; a
    /// destination from untrusted output holds a send; an injection holds every side effect;
    /// reads are never held.
    #[test]
    fn the_flow_rule_holds_what_untrusted_content_could_have_steered() {
        let engine = PolicyEngine::from_profile(Profile::Default).unwrap();
        let p = Principal {
            user: "alice".into(),
            client: "c".into(),
            attributes: Default::default(),
        };
        let send = named("mail", "send", Effect::Send);
        let args = json!({"to": "bob@example.com", "body": "the notes"});
        let ok = |session: &Snapshot| {
            let i = inputs(&send, &args, session, &p);
            verdict(&engine, &i, decide(&engine, &i))
        };
        assert!(ok(&Snapshot::default()).is_ok());
        let tainted = Snapshot {
            label: Label::UNTRUSTED,
            ..Snapshot::default()
        };
        assert!(
            ok(&tainted).is_ok(),
            "untrusted content that steered nothing holds nothing"
        );
        // A passage or a token from untrusted output is content, not a destination; so is an
        // address quoted in running text.
        let quoted = Snapshot {
            hits: vec![
                hit("body", ValueKind::Passage, "a b c d e f g h"),
                hit("body", ValueKind::Token, "abcdef0123456789abcdef"),
                Hit {
                    field: false,
                    ..hit("body", ValueKind::Email, "carol@corp.test")
                },
            ],
            ..tainted.clone()
        };
        assert!(ok(&quoted).is_ok());
        let steered = Snapshot {
            hits: vec![hit("to", ValueKind::Email, "attacker@evil.test")],
            ..tainted.clone()
        };
        let e = ok(&steered).unwrap_err();
        assert!(matches!(e, GatewayError::Flow { .. }), "{e}");
        assert_eq!(outcome_name(&e), "needs_approval:flow");
        assert!(
            e.to_string().contains("carries a destination from untrusted output"),
            "{e}"
        );
        let injected = Snapshot {
            injected: Some(Source {
                origin: "files__read".into(),
                at_unix: 0,
            }),
            ..tainted.clone()
        };
        let e = ok(&injected).unwrap_err();
        assert!(
            e.to_string().contains("saw an injection (in output of files__read"),
            "{e}"
        );
        let read = named("mail", "search", Effect::Read);
        let i = inputs(&read, &args, &injected, &p);
        assert!(verdict(&engine, &i, decide(&engine, &i)).is_ok(), "reads are not held");
        // Destructive calls after untrusted content are held whatever their arguments (under a
        // policy that permits them without a person).
        let permissive = PolicyEngine::from_sources(
            None,
            &[("p.cedar".to_owned(), "permit (principal, action, resource);".to_owned())],
        )
        .unwrap();
        let rm = named("files", "delete", Effect::Destructive);
        let i = inputs(&rm, &args, &tainted, &p);
        let e = verdict(&permissive, &i, decide(&permissive, &i)).unwrap_err();
        assert!(e.to_string().contains("the session holds untrusted content"), "{e}");
        let clean = Snapshot::default();
        let i = inputs(&rm, &args, &clean, &p);
        assert!(verdict(&permissive, &i, decide(&permissive, &i)).is_ok());
    }

    #[test]
    fn destructive_calls_need_approval_by_default() {
        let engine = PolicyEngine::from_profile(Profile::Default).unwrap();
        let p = Principal {
            user: "alice".into(),
            client: "c".into(),
            attributes: Default::default(),
        };
        let rm = named("files", "delete", Effect::Destructive);
        let args = json!({});
        let s = Snapshot::default();
        let i = inputs(&rm, &args, &s, &p);
        let e = verdict(&engine, &i, decide(&engine, &i)).unwrap_err();
        assert!(e.needs_approval());
    }
}
