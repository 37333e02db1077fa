//! The plans: one table of every method a client may send and what the gateway does with it —
//! answer it itself, run it through the stages of its plan to one upstream, or refuse it. A
//! method that is not in the table, and not named under `[methods."…"]` in config, is refused
//! with `-32601`: nothing reaches an upstream unplanned.
//!
//! Every plan runs its stages in one fixed order, [`ORDER`], in
//! [`crate::dispatch::pipeline::run`]. Parse, route, judge, commit, forward, observe and
//! complete are in every plan; the table says which of the others apply:
//!
//! ```text
//! parse → route → pin → judge → approve → credentials → throttle → commit → forward
//!       → charge → misuse → observe → complete
//! ```
//!
//! What an upstream asks of the client while it serves a call has its own table,
//! [`crate::guard::mediate::PEER_REQUESTS`].

use portcullis_core::catalog::Kind;
use portcullis_core::mcp::Era;
use portcullis_policy::{Action, Effect};

use crate::config::Config;

/// One stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Params read strictly, once, from the bytes that will be forwarded.
    Parse,
    /// The upstream, and its own name for the target.
    Route,
    /// A tool's definition is the approved one.
    Pin,
    /// Cedar policy, then the flow rule.
    Judge,
    /// A person decides what policy or the flow rule hold for approval.
    Approve,
    /// No credential the upstream holds is suspended.
    Credentials,
    /// Rate and volume limits admit the request.
    Throttle,
    /// The decision is committed to the audit log; its proof licenses forwarding.
    Commit,
    /// The request goes upstream; what the upstream sends back meanwhile is mediated.
    Forward,
    /// The result's bytes are charged to the volume limits.
    Charge,
    /// The call counts against its credentials' baselines.
    Misuse,
    /// The answer is read strictly, labelled, scanned and recorded in the session.
    Observe,
    /// How the request ended is recorded.
    Complete,
}

/// The order stages run in, in every plan.
pub const ORDER: [Stage; 13] = [
    Stage::Parse,
    Stage::Route,
    Stage::Pin,
    Stage::Judge,
    Stage::Approve,
    Stage::Credentials,
    Stage::Throttle,
    Stage::Commit,
    Stage::Forward,
    Stage::Charge,
    Stage::Misuse,
    Stage::Observe,
    Stage::Complete,
];

/// The stages in every plan.
pub const ALWAYS: [Stage; 7] = [
    Stage::Parse,
    Stage::Route,
    Stage::Judge,
    Stage::Commit,
    Stage::Forward,
    Stage::Observe,
    Stage::Complete,
];

/// How a planned request finds its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `params.name`, a tool's exposed name.
    Tool,
    /// `params.name`, a prompt's exposed name.
    Prompt,
    /// `params.uri`, a resource.
    Resource,
    /// `params.ref`, a prompt or resource template.
    Completion,
    /// `params.uri`, a resource to follow (the gateway keeps one subscription per URI at the
    /// upstream, counted over its clients).
    Subscription,
    /// A configured method: this upstream, judged with this effect.
    Method {
        /// The upstream, by config position.
        upstream: usize,
        /// The effect policy sees.
        effect: Effect,
    },
}

/// The plan of one method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How it finds its upstream.
    pub route: Route,
    /// The Cedar action it is judged as.
    pub action: Action,
    /// The optional stages it runs, beside [`ALWAYS`].
    pub optional: &'static [Stage],
}

impl Plan {
    /// Whether this plan runs `stage`.
    pub fn runs(&self, stage: Stage) -> bool {
        ALWAYS.contains(&stage) || self.optional.contains(&stage)
    }

    /// The stages it runs, in order.
    pub fn stages(&self) -> Vec<Stage> {
        ORDER.into_iter().filter(|s| self.runs(*s)).collect()
    }
}

/// What the gateway answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `initialize`: opens a 2025-11-25 session.
    Initialize,
    /// `ping`.
    Ping,
    /// `server/discover`.
    Discover,
    /// A merged list.
    List(Kind),
    /// `logging/setLevel`: the session's level, passed on to legacy upstreams.
    SetLogLevel,
    /// `subscriptions/listen`: list changes and followed resources, from the gateway's feed
    /// (each resource judged as `subscribe` first).
    Listen,
    /// `resources/unsubscribe`: gives a subscription back.
    Unsubscribe,
}

/// What the gateway does with a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Answered by the gateway; nothing reaches an upstream but what the gateway itself asks.
    Answered(Answer),
    /// Run through its plan.
    Planned(Plan),
    /// Refused, for this reason.
    Refused(&'static str),
}

/// Which eras a method exists in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eras {
    /// Both.
    Both,
    /// 2025-11-25 only (removed in 2026-07-28).
    Legacy,
    /// 2026-07-28 only.
    Modern,
}

impl Eras {
    /// Whether a client of `era` may send it.
    pub fn includes(self, era: Era) -> bool {
        match self {
            Eras::Both => true,
            Eras::Legacy => era == Era::Legacy,
            Eras::Modern => era == Era::Modern,
        }
    }
}

use Stage::{Approve, Charge, Credentials, Misuse, Pin, Throttle};

const TASKS: &str = "the gateway offers no tasks: call the tool without `task` and it answers in the call";

/// Every method a client may send, and what becomes of it.
#[rustfmt::skip]
pub const METHODS: [(&str, Eras, Handling); 19] = [
    ("initialize", Eras::Legacy, Handling::Answered(Answer::Initialize)),
    ("ping", Eras::Legacy, Handling::Answered(Answer::Ping)),
    ("server/discover", Eras::Modern, Handling::Answered(Answer::Discover)),
    ("tools/list", Eras::Both, Handling::Answered(Answer::List(Kind::Tool))),
    ("prompts/list", Eras::Both, Handling::Answered(Answer::List(Kind::Prompt))),
    ("resources/list", Eras::Both, Handling::Answered(Answer::List(Kind::Resource))),
    ("resources/templates/list", Eras::Both, Handling::Answered(Answer::List(Kind::Template))),
    ("logging/setLevel", Eras::Legacy, Handling::Answered(Answer::SetLogLevel)),
    ("subscriptions/listen", Eras::Modern, Handling::Answered(Answer::Listen)),
    ("resources/unsubscribe", Eras::Legacy, Handling::Answered(Answer::Unsubscribe)),
    //  method                  route                        action                   optional stages
    ("tools/call", Eras::Both, Handling::Planned(Plan { route: Route::Tool, action: Action::CallTool, optional: &[Pin, Approve, Credentials, Throttle, Charge, Misuse] })),
    ("prompts/get", Eras::Both, Handling::Planned(Plan { route: Route::Prompt, action: Action::GetPrompt, optional: &[Approve, Credentials, Throttle, Charge] })),
    ("resources/read", Eras::Both, Handling::Planned(Plan { route: Route::Resource, action: Action::ReadResource, optional: &[Approve, Credentials, Throttle, Charge] })),
    ("completion/complete", Eras::Both, Handling::Planned(Plan { route: Route::Completion, action: Action::Complete, optional: &[Credentials, Throttle] })),
    ("resources/subscribe", Eras::Legacy, Handling::Planned(Plan { route: Route::Subscription, action: Action::Subscribe, optional: &[Credentials] })),
    ("tasks/get", Eras::Legacy, Handling::Refused(TASKS)),
    ("tasks/result", Eras::Legacy, Handling::Refused(TASKS)),
    ("tasks/list", Eras::Legacy, Handling::Refused(TASKS)),
    ("tasks/cancel", Eras::Legacy, Handling::Refused(TASKS)),
];

/// What becomes of a notification an upstream sends during a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteHandling {
    /// Observed (read, labelled, scanned, recorded in the session), then relayed to the client.
    Relayed,
    /// The gateway's own business (list changes, resource updates, acknowledgements,
    /// cancellations): never relayed as is.
    Gateway,
    /// Dropped.
    Dropped,
}

/// Every notification an upstream may send, and what becomes of it; one not here is dropped.
pub const UPSTREAM_NOTIFICATIONS: [(&str, NoteHandling); 11] = [
    ("notifications/progress", NoteHandling::Relayed),
    ("notifications/message", NoteHandling::Relayed),
    ("notifications/elicitation/complete", NoteHandling::Relayed),
    ("notifications/tools/list_changed", NoteHandling::Gateway),
    ("notifications/prompts/list_changed", NoteHandling::Gateway),
    ("notifications/resources/list_changed", NoteHandling::Gateway),
    ("notifications/resources/updated", NoteHandling::Gateway),
    ("notifications/subscriptions/acknowledged", NoteHandling::Gateway),
    ("notifications/cancelled", NoteHandling::Gateway),
    ("notifications/tasks/status", NoteHandling::Dropped),
    ("notifications/initialized", NoteHandling::Dropped),
];

/// What becomes of an upstream's notification `method`.
pub fn note_handling(method: &str) -> NoteHandling {
    UPSTREAM_NOTIFICATIONS
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(NoteHandling::Dropped, |(_, h)| *h)
}

/// What becomes of `method` from a client of `era`: the table, then the methods config
/// plans; `None` for a method neither knows (refused with `-32601`).
pub fn handling(method: &str, era: Era, cfg: &Config) -> Option<Handling> {
    if let Some((_, eras, h)) = METHODS.iter().find(|(m, _, _)| *m == method) {
        return eras.includes(era).then_some(*h);
    }
    cfg.methods.get(method).map(|m| {
        Handling::Planned(Plan {
            route: Route::Method {
                upstream: m.upstream,
                effect: m.effect,
            },
            action: Action::CallMethod,
            optional: &[Approve, Credentials, Throttle, Charge],
        })
    })
}

#[cfg(test)]
mod tests;
