//! Serving one client request: [`plan::handling`] says what the method is — answered by the
//! gateway ([`answered`]), run through its plan ([`pipeline`]), or refused — and nothing else
//! happens. What an upstream asks of the client and sends it during a call is mediated in
//! [`mediate`]; [`forward`] carries a committed request upstream and the era translation.

mod answered;
pub mod approval;
pub mod ctx;
mod forward;
mod mediate;
pub mod outbox;
pub mod pipeline;
pub mod plan;

use portcullis_core::catalog::{self, Kind};
use portcullis_core::{Outcome, Request, Response};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::dispatch::ctx::ClientCtx;
use crate::dispatch::outbox::Outbox;
use crate::dispatch::plan::{Answer, Handling};
use crate::error::GatewayError;
use crate::state::Gateway;

/// What a handler produced.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A result the gateway built.
    Result(Box<RawValue>),
    /// A response from an upstream, passed through (its id is replaced).
    Upstream(Response),
}

impl Reply {
    /// The bytes of the result (or error) that go back to the client.
    fn result_len(&self) -> usize {
        self.outcome_bytes().1.len()
    }

    /// Whether it is a result or an error, and the bytes that say so.
    fn outcome_bytes(&self) -> (&'static str, &[u8]) {
        match self {
            Reply::Result(r) => ("result", r.get().as_bytes()),
            Reply::Upstream(resp) => match &resp.outcome {
                Outcome::Result(r) => ("result", r.get().as_bytes()),
                Outcome::Error(e) => ("error", e.message.as_bytes()),
            },
        }
    }
}

fn raw(v: &impl serde::Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_default()
}

/// The gateway's own identity.
pub fn server_info() -> Value {
    json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")})
}

/// What the gateway declares, whatever its upstreams are: it merges, so every feature may
/// appear as upstreams come and go. No `tasks`: the gateway offers none.
pub fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "completions": {},
        "logging": {},
    })
}

/// What `portcullis policy check` reports.
#[derive(Debug)]
pub struct Explained {
    /// The tool as policy sees it.
    pub tool: portcullis_policy::Tool,
    /// Policy's decision.
    pub decision: portcullis_policy::Decision,
    /// What the gateway would do: go ahead, or the refusal (policy's, or the flow rule's hold).
    pub verdict: Result<(), GatewayError>,
}

impl Gateway {
    /// Serves one request; always produces a response with the request's id.
    pub async fn handle(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Response {
        use tracing::Instrument as _;
        let id = req.id.clone();
        // One span per request (exported as an OpenTelemetry span when configured): the
        // method, who asked, and, for planned requests, the target, the decision and the
        // upstream.
        let span = tracing::info_span!(
            "mcp.request",
            otel.name = %req.method,
            rpc.method = %req.method,
            enduser.id = %ctx.principal,
            mcp.target = tracing::field::Empty,
            mcp.decision = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let answered = self.dispatch(ctx, req, out).instrument(span.clone()).await;
        match answered {
            Ok(Reply::Result(r)) => Response::result(id, r),
            Ok(Reply::Upstream(mut r)) => {
                r.id = Some(id);
                r
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                tracing::debug!(parent: &span, error = %e, "request refused");
                Response::error(Some(id), e.to_error(ctx.era))
            }
        }
    }

    async fn dispatch(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        match plan::handling(&req.method, ctx.era, &self.cfg) {
            None => Err(GatewayError::MethodNotFound(req.method)),
            Some(Handling::Refused(why)) => Err(GatewayError::Refused {
                method: req.method,
                why,
            }),
            Some(Handling::Planned(plan)) => pipeline::run(self, ctx, plan, req, out).await,
            Some(Handling::Answered(answer)) => match answer {
                Answer::Initialize => Ok(Reply::Result(raw(&self.initialize_result(ctx)))),
                Answer::Ping => Ok(Reply::Result(raw(&json!({})))),
                Answer::Discover => Ok(Reply::Result(raw(&self.discover_result()))),
                Answer::List(kind) => self.list(ctx, kind, req.params.as_ref()).await,
                Answer::SetLogLevel => self.set_log_level(ctx, req.params.as_ref()),
                Answer::Listen => self.listen(ctx, req, out).await,
                Answer::Unsubscribe => self.unsubscribe(ctx, req.params.as_ref()).await,
            },
        }
    }

    /// An upstream's config, by position.
    pub(crate) fn upstream_cfg(&self, index: usize) -> Option<&crate::config::UpstreamConfig> {
        self.upstreams().get(index).map(|u| &u.cfg)
    }

    /// The upstreams that serve resources now.
    pub(crate) fn resource_servers(&self) -> Vec<usize> {
        self.upstreams()
            .iter()
            .filter(|u| match u.state() {
                crate::upstream::State::Ready(c) => c.server().capabilities.contains_key("resources"),
                _ => false,
            })
            .map(|u| u.index)
            .collect()
    }

    /// An unknown name: a tool held back by its pin says so; a name that carries the prefix of
    /// an upstream that is down says that.
    pub(crate) fn unknown_name(&self, kind: Kind, name: &str) -> GatewayError {
        if kind == Kind::Tool
            && let Some(held) = self.catalog().held_tool(name)
        {
            return GatewayError::Held {
                tool: name.to_owned(),
                reason: held.reason(),
            };
        }
        for up in self.upstreams() {
            let prefix = format!("{}{}", up.cfg.prefix, catalog::SEPARATOR);
            if !up.cfg.prefix.is_empty()
                && name.starts_with(&prefix)
                && let crate::upstream::State::Down { reason, .. }
                | crate::upstream::State::Starting { after: Some(reason) } = up.state()
            {
                return GatewayError::Unavailable(crate::upstream::Unavailable {
                    name: up.cfg.name.clone(),
                    reason,
                });
            }
        }
        match kind {
            Kind::Tool => GatewayError::UnknownTool(name.to_owned()),
            _ => GatewayError::UnknownPrompt(name.to_owned()),
        }
    }

    /// A tool as policy sees it (its effect from config, else from its annotations).
    pub fn policy_tool(&self, entry: &catalog::Entry) -> portcullis_policy::Tool {
        crate::guard::judge::policy_tool(entry, self.upstream_cfg(entry.upstream))
    }

    /// The label config gives what `upstream` (its tool `tool`) returns.
    pub fn base_label(&self, upstream: usize, tool: Option<&catalog::Entry>) -> portcullis_core::label::Label {
        crate::guard::observe::base_label(self.upstream_cfg(upstream), tool.map(|t| t.original.as_str()))
    }

    /// Whether a principal could ever call this tool: tools it never may are left out of lists.
    pub(crate) fn may_list(&self, ctx: &ClientCtx, entry: &catalog::Entry) -> bool {
        self.cfg
            .policy
            .engine
            .may_ever_call(&ctx.policy_principal(), &self.policy_tool(entry))
    }

    /// The decision policy would make for `principal` calling the tool exposed as `exposed`
    /// with `arguments` in a session that holds `session`, the tool as policy saw it, and the
    /// verdict after the flow rule; `None` when no upstream lists the tool. For
    /// `portcullis policy check`.
    pub fn explain_call(
        &self,
        principal: &portcullis_policy::Principal,
        exposed: &str,
        arguments: &Value,
        session: &crate::guard::judge::Snapshot,
    ) -> Option<Explained> {
        let cat = self.catalog();
        // Policy is judged apart from pins: a held-back tool is explained too.
        let entry = cat.tool(exposed).or_else(|| cat.held_tool(exposed).map(|h| &h.entry))?;
        let tool = self.policy_tool(entry);
        let inputs = crate::guard::judge::Inputs {
            principal,
            action: portcullis_policy::Action::CallTool,
            tool: &tool,
            arguments,
            session,
            now_unix: crate::state::taint::now_unix(),
            calls_in_window: 0,
        };
        let decision = crate::guard::judge::decide(&self.cfg.policy.engine, &inputs);
        let verdict = crate::guard::judge::verdict(&self.cfg.policy.engine, &inputs, decision.clone());
        Some(Explained {
            tool,
            decision,
            verdict,
        })
    }

    /// The tools upstream `index` lists (held-back ones too) and whether policy could ever let
    /// `principal` call each: what `portcullis connect` computes the needed scopes from.
    pub fn tools_of(&self, index: usize, principal: &portcullis_policy::Principal) -> Vec<(String, bool)> {
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
}
