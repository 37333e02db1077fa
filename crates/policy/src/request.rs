//! The domain types a decision is made over, and the decision itself.

use std::fmt;

use crate::Effect;

/// Who is calling: the authenticated user and the MCP client they call through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The user (`User::"<user>"` in policies). On stdio, the local user.
    pub user: String,
    /// The client, e.g. `claude-desktop` (`principal.client` in policies).
    pub client: String,
    /// What the user's identity provider says of them (`principal.groups`, `principal.roles`);
    /// empty for the local user and API keys.
    pub attributes: std::sync::Arc<Attributes>,
}

/// What an identity provider's token says of its principal, for policies: the groups and roles
/// it lists, sorted and without repeats (so equal sets compare and hash equal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    groups: Vec<String>,
    roles: Vec<String>,
}

impl Attributes {
    /// The attributes of a principal in these groups with these roles.
    pub fn new(groups: Vec<String>, roles: Vec<String>) -> Self {
        let canonical = |mut v: Vec<String>| {
            v.sort_unstable();
            v.dedup();
            v
        };
        Attributes {
            groups: canonical(groups),
            roles: canonical(roles),
        }
    }

    /// `principal.groups`.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// `principal.roles`.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
}

/// The thing acted on: a tool of an upstream, with its effect already settled
/// (from config, else [`crate::effect_from_annotations`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tool {
    /// The upstream's name in config (`resource.upstream`).
    pub upstream: String,
    /// The upstream's own name for the tool, not namespaced (`resource.name`).
    pub name: String,
    /// `resource.effect`, compared as `Effect::"destructive"`.
    pub effect: Effect,
}

/// What the principal wants to do (`Action::"call_tool"` and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `tools/call`.
    CallTool,
    /// `resources/read`.
    ReadResource,
    /// `prompts/get`.
    GetPrompt,
    /// `tools/list`.
    ListTools,
    /// `completion/complete`, on the prompt or resource template its `ref` names.
    Complete,
    /// `resources/subscribe` and the resource subscriptions of `subscriptions/listen`.
    Subscribe,
    /// A method configured under `[methods."…"]` (a vendor extension).
    CallMethod,
    /// An upstream's `sampling/createMessage`, during a call it serves.
    Sample,
    /// An upstream's `elicitation/create`, during a call it serves.
    Elicit,
    /// An upstream's `roots/list`, during a call it serves.
    Roots,
}

impl Action {
    /// Every action, in schema order.
    pub const ALL: [Action; 10] = [
        Action::CallTool,
        Action::ReadResource,
        Action::GetPrompt,
        Action::ListTools,
        Action::Complete,
        Action::Subscribe,
        Action::CallMethod,
        Action::Sample,
        Action::Elicit,
        Action::Roots,
    ];
}

impl Action {
    /// The action's id in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
            Action::ListTools => "list_tools",
            Action::Complete => "complete",
            Action::Subscribe => "subscribe",
            Action::CallMethod => "call_method",
            Action::Sample => "sample",
            Action::Elicit => "elicit",
            Action::Roots => "roots",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who is calling.
    pub principal: &'a Principal,
    /// What they want to do.
    pub action: Action,
    /// What they want to do it to.
    pub tool: &'a Tool,
    /// The call's arguments, a JSON object (`null` counts as `{}`); `context.arguments`.
    pub arguments: &'a serde_json::Value,
    /// The session's trust labels (`untrusted`, `private`, `injected`); `context.session.labels`.
    pub labels: &'a [String],
    /// Which arguments carry values from untrusted output, and from where;
    /// `context.provenance`.
    pub provenance: &'a Provenance,
    /// Seconds since the Unix epoch; `context.now_unix`.
    pub now_unix: i64,
    /// Calls in the current rate window; `context.calls_in_window` (saturates at `i64::MAX`).
    pub calls_in_window: u64,
}

/// What the gateway knows of where a call's argument values came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Arguments (dotted paths) carrying a value first seen in untrusted output and never in
    /// trusted output; `context.provenance.tainted`.
    pub tainted: Vec<String>,
    /// The tools, resources or prompts whose untrusted output those values came from;
    /// `context.provenance.sources`.
    pub sources: Vec<String>,
}

/// What happens to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A permit applies, none that asks for approval, and no forbid.
    Permit,
    /// A forbid applies, no permit applies, or a policy could not be evaluated.
    Forbid,
    /// Permitted only with a person's approval (a permit annotated `@approval("required")`).
    NeedsApproval,
}

/// A decision and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happens to the call.
    pub outcome: Outcome,
    /// The ids of the policies that decided: the forbids that applied (or could not be
    /// evaluated) for [`Outcome::Forbid`], the approval permits for [`Outcome::NeedsApproval`],
    /// the permits for [`Outcome::Permit`]. Empty when nothing permitted the call.
    pub policies: Vec<String>,
    /// One line a client can act on.
    pub reason: String,
    /// Evaluation errors, one line each, naming the policy; non-empty means the call was denied
    /// because a policy could not be evaluated.
    pub errors: Vec<String>,
    /// For [`Outcome::NeedsApproval`]: only an operator may approve (a policy said
    /// `@approval("operator")`): at a terminal or on the admin page, never in the client.
    pub operator: bool,
}
