//! Mediation of what an upstream sends the client while it serves a call: notifications
//! (progress, log messages) are read, labelled, scanned and recorded in the session before
//! they are relayed; requests (sampling, elicitation, roots) go only to the client whose call
//! it is (the registry attributes them; see `upstream::client::registry`), and each is read
//! strictly, shaped (`includeContext` forced to `"none"`), observed, judged as its own Cedar
//! action, approved by a person where policy says so, and recorded — or refused back to the
//! upstream.

use portcullis_core::label::Label;
use portcullis_core::mcp::Era;
use portcullis_core::{ErrorObject, Id, Notification, Outcome, Params, Request};
use portcullis_policy::Action;
use serde_json::{Map, Value};

use super::Reply;
use super::ctx::ClientCtx;
use super::outbox::Outbox;
use super::pipeline::Routed;
use super::plan::{NoteHandling, note_handling};
use crate::error::GatewayError;
use crate::guard::judge::{self, Inputs};
use crate::guard::{mediate, observe};
use crate::state::Gateway;
use crate::state::taint::now_unix;
use crate::upstream::Upstream;
use crate::upstream::client::ServerRequest;

/// One forwarded call's link back to its client.
pub(super) struct Link<'a> {
    pub gw: &'a Gateway,
    pub ctx: &'a ClientCtx,
    pub up: &'a Upstream,
    pub routed: &'a Routed,
    pub out: &'a Outbox,
}

impl Link<'_> {
    /// Where this upstream's traffic is said to come from, in the session's provenance.
    fn origin(&self, what: &str) -> String {
        format!("{} ({what} from `{}`)", self.routed.target.exposed, self.up.cfg.name)
    }

    /// The label this upstream's traffic starts with.
    fn base(&self) -> Label {
        observe::base_label(Some(&self.up.cfg), None)
    }

    /// Reads, scans and records `texts` from this upstream in the session.
    fn observe(&self, what: &str, value: &Value) {
        let mut strings = Vec::new();
        observe::texts(value, &mut strings);
        if strings.is_empty() {
            return;
        }
        let seen = observe::scan(&self.gw.output_scanner, &strings, self.base());
        let origin = self.origin(what);
        if !seen.findings.is_empty() {
            let rules: Vec<&str> = seen.findings.iter().map(|f| f.rule).collect();
            tracing::warn!(%origin, findings = ?rules, "upstream traffic carries what an assistant should not act on");
        }
        self.gw.taint.observe_seen(
            &self.ctx.principal,
            &self.ctx.scope(),
            &origin,
            &seen,
            &strings,
            &Value::Null,
        );
    }

    /// A notification of this call: relayed after it is observed, if its kind is relayed at
    /// all and the client wants it.
    pub(super) fn relay_note(&self, n: Notification) {
        if note_handling(&n.method) != NoteHandling::Relayed {
            tracing::debug!(upstream = %self.up.cfg.name, method = %n.method, "upstream notification not relayed");
            return;
        }
        if n.method == "notifications/message" {
            let level = n.params.as_ref().and_then(|p| p.get_str("level"));
            if !self.ctx.wants_log(level.as_deref()) {
                return;
            }
        }
        let read = match n.params.as_ref().map(crate::guard::parse::params) {
            None => Map::new(),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(upstream = %self.up.cfg.name, method = %n.method, error = %e, "upstream notification cannot be read strictly; dropped");
                return;
            }
        };
        self.observe(&n.method, &Value::Object(read));
        self.out.notify(n);
    }

    /// A legacy upstream's request to a legacy client: mediated, then relayed, and the
    /// client's answer (or the refusal) sent back.
    pub(super) async fn relay_request(&self, sr: ServerRequest) {
        let answer = match self.request(&sr.request).await {
            Err(refusal) => Outcome::Error(refusal),
            Ok(shaped) => match self.out.ask(&shaped.method, shaped.params).await {
                Ok(o) => o,
                Err(e) => Outcome::from(e),
            },
        };
        let _ = sr.reply.send(answer);
    }

    /// Mediates one request the upstream makes of the client: the request to put to the
    /// client, or the error to send back upstream.
    pub(super) async fn request(&self, r: &Request) -> Result<Request, ErrorObject> {
        self.mediate(&r.method, r.params.as_ref())
            .await
            .map(|params| Request {
                id: r.id.clone(),
                method: r.method.clone(),
                params,
            })
            .map_err(|e| e.to_error(Era::Legacy))
    }

    /// One entry of a modern upstream's `inputRequests`, mediated.
    pub(super) async fn input_request(&self, key: &str, req: &Value) -> Result<Request, GatewayError> {
        let method = req.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let params = match req.get("params") {
            None => None,
            Some(Value::Object(m)) => Some(Params::from_map(m)),
            Some(_) => {
                return Err(GatewayError::PeerRefused(format!(
                    "input request `{key}` has params that are not an object"
                )));
            }
        };
        let params = self.mediate(&method, params.as_ref()).await?;
        Ok(Request {
            id: Id::Str(key.to_owned()),
            method,
            params,
        })
    }

    /// A modern upstream's `input_required` result for a modern client: each question in it
    /// mediated (one refused refuses the call: the result cannot carry half its questions).
    pub(super) async fn mediate_input_required(&self, reply: Reply) -> Result<Reply, GatewayError> {
        let Reply::Upstream(mut resp) = reply else {
            return Ok(reply);
        };
        let Some(mut ir) = super::forward::input_required(&resp) else {
            return Ok(Reply::Upstream(resp));
        };
        let requests = ir
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut shaped = Map::new();
        for (key, req) in &requests {
            let r = self.input_request(key, req).await?;
            let mut entry = Map::new();
            entry.insert("method".into(), Value::String(r.method));
            if let Some(p) = r.params {
                entry.insert("params".into(), p.to_value());
            }
            shaped.insert(key.clone(), Value::Object(entry));
        }
        if shaped != requests {
            ir.insert("inputRequests".into(), Value::Object(shaped));
            if let Ok(raw) = serde_json::value::to_raw_value(&ir) {
                resp.outcome = Outcome::Result(raw);
            }
        }
        Ok(Reply::Upstream(resp))
    }

    /// The decision on one request an upstream makes of the client: its plan, strict reading,
    /// shaping, observation, judgement (and a person's approval where policy asks), and its
    /// record. The params to put to the client.
    async fn mediate(&self, method: &str, params: Option<&Params>) -> Result<Option<Params>, GatewayError> {
        let peer = mediate::classify(method, self.up.cfg.forward_roots);
        let peer = match peer {
            Ok(p) => p,
            Err(e) => {
                self.record(Action::Roots, method, &Value::Null, &Err(&e)).await?;
                return Err(e);
            }
        };
        let mut read = match params.map(crate::guard::parse::params) {
            None => Map::new(),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.record(peer.action, method, &Value::Null, &Err(&e)).await?;
                return Err(e);
            }
        };
        let reshaped = mediate::shape(&peer, &mut read);
        self.observe(method, &Value::Object(read.clone()));
        let mut arguments = read.clone();
        arguments.remove("_meta");
        let arguments = Value::Object(arguments);
        let tool = judge::named(&self.up.cfg.name, &self.routed.target.original, peer.effect);
        let principal = self.ctx.policy_principal();
        let session = self
            .gw
            .taint
            .snapshot(&self.ctx.principal, &self.ctx.scope(), &arguments, false);
        let engine = &self.gw.cfg.policy.engine;
        let inputs = Inputs {
            principal: &principal,
            action: peer.action,
            tool: &tool,
            arguments: &arguments,
            session: &session,
            now_unix: now_unix(),
            calls_in_window: 0,
        };
        let mut verdict = judge::verdict(engine, &inputs, judge::decide(engine, &inputs));
        if let Err(cause) = &verdict
            && cause.needs_approval()
            && self.gw.cfg.approvals.ask
        {
            self.record(peer.action, method, &arguments, &Err(cause)).await?;
            let cause = std::mem::replace(&mut verdict, Ok(()));
            if let Err(cause) = cause {
                verdict = self
                    .gw
                    .seek_approval(self.ctx, peer.action, &tool, &arguments, cause, None, self.out)
                    .await
                    .map(|_| ());
            }
        }
        self.record(peer.action, method, &arguments, &verdict.as_ref().map(|_| ()))
            .await?;
        verdict?;
        Ok(if reshaped {
            Some(Params::from_map(&read))
        } else {
            params.cloned()
        })
    }

    /// One decision record for a request an upstream makes of the client.
    async fn record(
        &self,
        action: Action,
        method: &str,
        arguments: &Value,
        verdict: &Result<(), &GatewayError>,
    ) -> Result<(), GatewayError> {
        let (decision, reason) = match verdict {
            Ok(()) => ("permit", String::new()),
            Err(e) => (judge::outcome_name(e), e.to_string()),
        };
        let mut body = crate::state::audit::decision_body(
            &self.ctx.principal,
            &self.ctx.client_name(),
            &self.ctx.scope().key,
            &action.to_string(),
            &self.up.cfg.name,
            &self.routed.target.original,
            arguments,
            decision,
            &reason,
            &[],
        );
        if let Some(m) = body.as_object_mut() {
            m.insert("method".into(), Value::String(method.to_owned()));
        }
        self.gw.metrics.decision(&self.up.cfg.name, decision);
        if self.gw.audit.record(body).await {
            Ok(())
        } else {
            Err(GatewayError::AuditUnavailable)
        }
    }
}
