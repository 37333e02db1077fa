//! A person in the loop. A tool call that policy or the flow rule says needs approval is
//! stored as a pending approval and waits (bounded) while a person decides: from a terminal
//! (`portcullis approve ID` / `portcullis deny ID`), from the admin page, or — when the client
//! declared the capability — through MCP elicitation in the client's own UI. Whichever
//! decision lands first counts (one conditional update in the store); an approval for one call
//! is used once; "this tool with these arguments for N minutes" lets the same call through
//! until then. Pending approvals are stored, so a restart loses none: a call retried after the
//! approval goes ahead on it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{Outcome, Params};
use portcullis_policy::{Action, Tool};
use portcullis_store::{Approval, ApprovalState, StoreError};
use serde_json::{Value, json};

use crate::dispatch::ctx::ClientCtx;
use crate::dispatch::outbox::Outbox;
use crate::error::GatewayError;
use crate::guard::approve::{self, ROUND_KEY, ROUND_PREFIX, answer_of, call_digest};
use crate::state::Gateway;

/// A call's approval: usable now, or pending.
enum Opened {
    Approved(String),
    Pending(String),
}

/// How often a waiting call looks for a decision.
const POLL: Duration = Duration::from_millis(200);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn new_id() -> String {
    let mut b = [0u8; 9];
    rand::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b).replace(['-', '_'], "x")
}

fn store_err(e: StoreError) -> GatewayError {
    GatewayError::Approvals(e.to_string())
}

/// Whether a 2025-11-25 client can be asked through `elicitation/create` on this request.
fn can_elicit(ctx: &ClientCtx) -> bool {
    ctx.session.is_some() && approve::declares_elicitation(&ctx.meta.capabilities)
}

/// Whether a 2026-07-28 client can be asked through an `input_required` round.
pub fn can_ask_in_round(ctx: &ClientCtx) -> bool {
    ctx.era == portcullis_core::mcp::Era::Modern && approve::declares_elicitation(&ctx.meta.capabilities)
}

fn scrubbed(text: &str) -> String {
    String::from_utf8_lossy(&crate::redact::scrub(text.as_bytes())).into_owned()
}

/// `v` with every vault secret scrubbed from its strings (keys included).
fn scrubbed_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(scrubbed(s)),
        Value::Array(items) => Value::Array(items.iter().map(scrubbed_value).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (scrubbed(k), scrubbed_value(v))).collect()),
        other => other.clone(),
    }
}

/// The question put to the person, secrets scrubbed.
fn approval_message(ctx: &ClientCtx, action: Action, tool: &Tool, arguments: &Value, why: &str) -> String {
    let what = match action {
        Action::Sample => "to have your assistant's model write text for",
        Action::Elicit => "to ask you for input during",
        Action::Roots => "to see your roots during",
        _ => "",
    };
    let recorded = approve::shown_arguments(&scrubbed_value(arguments));
    if what.is_empty() {
        approve::message(&ctx.client_name(), tool, &recorded, &scrubbed(why))
    } else {
        format!(
            "Portcullis: upstream `{}` wants {what} `{}`, with {recorded}.\nIt needs your approval because {}.\nAllow it this once?",
            tool.upstream,
            tool.name,
            scrubbed(why)
        )
    }
}

impl Gateway {
    /// Asks a person to approve `tool` with `arguments` for `ctx`'s principal (`why`: the
    /// policy's or the flow rule's reason) and waits for the answer, at most the configured
    /// timeout. `Ok(id)`: approved (and, for a one-call approval, used now).
    #[expect(clippy::too_many_arguments, reason = "one held call's parts")]
    pub(crate) async fn seek_approval(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        cause: GatewayError,
        progress: Option<Value>,
        out: &Outbox,
    ) -> Result<String, GatewayError> {
        let why = cause.to_string();
        let why = why.as_str();
        let operator = cause.operator_only();
        let id = match self.open_approval(ctx, action, tool, arguments, why, operator).await? {
            Opened::Approved(id) => return Ok(id),
            Opened::Pending(id) => id,
        };
        tracing::warn!(
            approval = %id, principal = %ctx.principal, upstream = %tool.upstream, tool = %tool.name,
            "a call waits for approval: `portcullis approve {id}` or `portcullis deny {id} --reason …` (or the admin page)"
        );
        let _waiting = self.approvals_waiting.enter();
        // A held call never waits silently: the client hears how to decide (and, where it can
        // ask its person in a form and the decision is not reserved for an operator, is asked).
        self.tell_waiting(ctx, tool, &id, operator, progress, out).await;
        let asked = async {
            if can_elicit(ctx) && !operator {
                self.elicit(ctx, action, tool, arguments, why, &id, out).await;
            }
            std::future::pending::<()>().await;
        };
        let decided = self.await_decision(&id, cause);
        tokio::select! {
            r = decided => r,
            () = asked => unreachable_pending(),
        }
    }

    /// The approval a call can go ahead on now (a grant, or one given while nobody waited), or
    /// the pending one it waits on (found, or made now).
    async fn open_approval(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        why: &str,
        operator: bool,
    ) -> Result<Opened, GatewayError> {
        let store = self.store();
        let digest = digest_of(ctx, action, tool, arguments);
        let now = now_ms();
        if let Some(id) = store.take_approval_for(&digest, now).await.map_err(store_err)? {
            self.approval_event(&id, "used", None).await;
            return Ok(Opened::Approved(id));
        }
        if let Some(id) = store.pending_approval_for(&digest, now).await.map_err(store_err)? {
            return Ok(Opened::Pending(id));
        }
        let timeout = self.cfg.approvals.timeout;
        let id = new_id();
        let recorded = crate::state::audit::recorded_arguments(arguments);
        let reason = scrubbed(why);
        store
            .create_approval(&Approval {
                id: id.clone(),
                principal: ctx.principal.clone(),
                client: ctx.client_name(),
                upstream: tool.upstream.clone(),
                tool: tool.name.clone(),
                arguments: recorded.to_string(),
                call_digest: digest,
                reason,
                created_ms: now,
                expires_ms: now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
                state: ApprovalState::Pending,
                decided_by: None,
                decided_ms: None,
                note: None,
                grant_until_ms: None,
                operator_only: operator,
                session: ctx.scope().key,
                arguments_full: scrubbed(&arguments.to_string()),
            })
            .await
            .map_err(store_err)?;
        self.approval_event(&id, "requested", Some(why)).await;
        Ok(Opened::Pending(id))
    }

    /// The approval round of a 2026-07-28 client: the first attempt gets an `input_required`
    /// result asking the person in the client's UI (`Ok(Some(result))`); the retry carries the
    /// answer under `requestState`, which is recorded as a decision (the first one counts; a
    /// terminal or web decision may have come first), and then the call goes ahead
    /// (`Ok(None)`) or is refused.
    pub(crate) async fn approval_round(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        cause: GatewayError,
        params: &Params,
    ) -> Result<Option<Value>, GatewayError> {
        let why = cause.to_string();
        let retry = params
            .get_str("requestState")
            .and_then(|s| s.strip_prefix(ROUND_PREFIX).map(str::to_owned));
        if let Some(id) = retry {
            let store = self.store();
            let digest = digest_of(ctx, action, tool, arguments);
            // The state names an approval of this principal's same call, or it is refused.
            match store.approval(&id).await.map_err(store_err)? {
                Some(a) if a.principal == ctx.principal && a.call_digest == digest => {}
                _ => return Err(GatewayError::StaleRequestState),
            }
            let answer: Option<Value> = params
                .get_as::<Value>("inputResponses")
                .ok()
                .flatten()
                .and_then(|r| r.get(ROUND_KEY).cloned());
            if let Some((approve, note)) = answer.as_ref().and_then(answer_of) {
                let by = format!("client:{}", ctx.client_name());
                store
                    .decide_approval_in_client(&id, approve, &by, note.as_deref(), now_ms())
                    .await
                    .map_err(store_err)?;
            }
            let _waiting = self.approvals_waiting.enter();
            return self.await_decision(&id, cause).await.map(|_| None);
        }
        let id = match self.open_approval(ctx, action, tool, arguments, &why, false).await? {
            Opened::Approved(_) => return Ok(None),
            Opened::Pending(id) => id,
        };
        tracing::warn!(
            approval = %id, principal = %ctx.principal, upstream = %tool.upstream, tool = %tool.name,
            "asking the client's user to approve a call (or `portcullis approve {id}`)"
        );
        Ok(Some(json!({
            "resultType": "input_required",
            "inputRequests": {
                ROUND_KEY: {
                    "method": "elicitation/create",
                    "params": {
                        "mode": "form",
                        "message": approval_message(ctx, action, tool, arguments, &why),
                        "requestedSchema": approve::schema(),
                    }
                }
            },
            "requestState": format!("{ROUND_PREFIX}{id}"),
        })))
    }

    /// Polls the store until `id` is decided or expires.
    async fn await_decision(&self, id: &str, cause: GatewayError) -> Result<String, GatewayError> {
        let cause = Box::new(cause);
        let store = self.store();
        loop {
            let now = now_ms();
            let a = store
                .approval(id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| GatewayError::Approvals(format!("approval `{id}` vanished")))?;
            match a.state {
                ApprovalState::Approved => {
                    if store.use_approval(id, now).await.map_err(store_err)? {
                        let by = a.decided_by.unwrap_or_default();
                        self.approval_event(id, "approved", Some(&by)).await;
                        return Ok(id.to_owned());
                    }
                    // Another identical call took this one-call approval first.
                    return Err(GatewayError::NotApproved {
                        id: id.to_owned(),
                        by: a.decided_by.unwrap_or_default(),
                        note: "the approval was used by another identical call; ask again".into(),
                        cause,
                    });
                }
                ApprovalState::Used => {
                    return Err(GatewayError::NotApproved {
                        id: id.to_owned(),
                        by: a.decided_by.unwrap_or_default(),
                        note: "the approval was used by another identical call; ask again".into(),
                        cause,
                    });
                }
                ApprovalState::Denied => {
                    let by = a.decided_by.unwrap_or_default();
                    self.approval_event(id, "denied", Some(&by)).await;
                    return Err(GatewayError::NotApproved {
                        id: id.to_owned(),
                        by,
                        note: a.note.unwrap_or_else(|| "no reason given".into()),
                        cause,
                    });
                }
                ApprovalState::Expired => return Err(self.timed_out(id, cause).await),
                ApprovalState::Pending if now >= a.expires_ms => {
                    store.expire_approval(id, now).await.map_err(store_err)?;
                    return Err(self.timed_out(id, cause).await);
                }
                ApprovalState::Pending => {}
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.shutdown.cancelled() => {
                    return Err(GatewayError::Approvals("the gateway is stopping; the approval stays pending".into()));
                }
            }
        }
    }

    async fn timed_out(&self, id: &str, cause: Box<GatewayError>) -> GatewayError {
        self.approval_event(id, "expired", None).await;
        GatewayError::ApprovalTimedOut {
            id: id.to_owned(),
            after: self.cfg.approvals.timeout,
            cause,
        }
    }

    /// Tells the client's person that a call waits and how to decide it: a log message the
    /// client shows (where it takes log messages), a URL-mode elicitation pointing at the
    /// admin page (where the client can open one and the form cannot be used), and a desktop
    /// notification where one can be sent.
    async fn tell_waiting(
        &self,
        ctx: &ClientCtx,
        tool: &Tool,
        id: &str,
        operator: bool,
        progress: Option<Value>,
        out: &Outbox,
    ) {
        let page = self.cfg.admin.map(|a| format!("http://{a}/approvals"));
        let how = match &page {
            Some(p) => format!("approve or deny it at {p}, or run `portcullis approve {id}` / `portcullis deny {id}`"),
            None => format!("run `portcullis approve {id}` or `portcullis deny {id}`"),
        };
        let text = format!(
            "Portcullis: `{}` on `{}` waits for {} approval: {how}",
            tool.name,
            tool.upstream,
            if operator { "an operator's" } else { "a person's" }
        );
        let logged = ctx.wants_log(Some("warning"));
        if logged {
            let mut p = Params::new();
            let _ = p.insert("level", "warning");
            let _ = p.insert("logger", "portcullis");
            let _ = p.insert("data", &text);
            out.notify(portcullis_core::Notification {
                method: "notifications/message".into(),
                params: Some(p),
            });
        }
        // Only where no log line tells it: the upstream's own progress on this token follows,
        // and a second 0 would not be the increase the spec asks for.
        if let Some(token) = progress.filter(|_| !logged) {
            let mut p = Params::new();
            let _ = p.insert("progressToken", &token);
            let _ = p.insert("progress", &0);
            let _ = p.insert("message", &text);
            out.notify(portcullis_core::Notification {
                method: "notifications/progress".into(),
                params: Some(p),
            });
        }
        let url_mode = ctx
            .meta
            .capabilities
            .get("elicitation")
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key("url"));
        if ctx.session.is_some()
            && url_mode
            && (operator || !can_elicit(ctx))
            && let Some(page) = page
        {
            let mut p = Params::new();
            let _ = p.insert("mode", "url");
            let _ = p.insert("message", &text);
            let _ = p.insert("url", &page);
            let _ = p.insert("elicitationId", &format!("portcullis-approval-{id}"));
            let out = out.clone();
            // The decision comes from the page; the answer only says the person saw it.
            tokio::spawn(async move {
                let _ = out.ask("elicitation/create", Some(p)).await;
            });
        }
        notify_desktop(&text);
    }

    /// Asks the client's user through `elicitation/create` (2025-11-25, form mode) and records
    /// the answer as a decision (which counts only if none landed before).
    #[expect(clippy::too_many_arguments, reason = "one question's parts")]
    async fn elicit(
        &self,
        ctx: &ClientCtx,
        action: Action,
        tool: &Tool,
        arguments: &Value,
        why: &str,
        id: &str,
        out: &Outbox,
    ) {
        let message = approval_message(ctx, action, tool, arguments, why);
        let mut p = Params::new();
        let _ = p.insert("mode", "form");
        let _ = p.insert("message", &message);
        let _ = p.insert("requestedSchema", &approve::schema());
        let answer = match out.ask("elicitation/create", Some(p)).await {
            Ok(Outcome::Result(r)) => serde_json::from_str::<Value>(r.get()).unwrap_or(Value::Null),
            Ok(Outcome::Error(e)) => {
                tracing::debug!(error = %e.message, "the client refused the elicitation; waiting for another approver");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "no elicitation answer; waiting for another approver");
                return;
            }
        };
        let by = format!("client:{}", ctx.client_name());
        // Cancelled: the user dismissed it without deciding; others may still decide.
        let Some((approve, note)) = answer_of(&answer) else {
            return;
        };
        if let Err(e) = self
            .store()
            .decide_approval_in_client(id, approve, &by, note.as_deref(), now_ms())
            .await
        {
            tracing::warn!(error = %e, "could not record the elicitation's answer");
        }
    }

    /// One audit record per approval event.
    /// Records an approval's event; a decision names its channel (`cli`, `admin`, `client`:
    /// the prefix of who decided).
    pub(crate) async fn approval_event(&self, id: &str, event: &str, detail: Option<&str>) {
        let channel = match event {
            "approved" | "denied" => detail.and_then(|by| by.split(':').next()),
            _ => None,
        };
        let body = json!({
            "kind": "approval",
            "approval": id,
            "event": event,
            "detail": detail.map(scrubbed),
            "channel": channel,
        });
        if !self.audit.record(body).await {
            tracing::error!(approval = %id, event, "could not record an approval event");
        }
    }
}

fn unreachable_pending() -> Result<String, GatewayError> {
    Err(GatewayError::Approvals(
        "the approval wait ended without a decision".into(),
    ))
}

/// A desktop notification, where `notify-send` is installed and a desktop session is there to
/// show it (best effort; never waited for).
fn notify_desktop(text: &str) {
    let has_desktop = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
    if !has_desktop {
        return;
    }
    let spawned = tokio::process::Command::new("notify-send")
        .args([
            "--app-name=Portcullis",
            "Portcullis: a call waits for your approval",
            text,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    if let Ok(mut child) = spawned {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        });
    }
}

/// What identifies a call for approval. A tool call is its principal, tool and arguments; a
/// request an upstream makes of the client also names its action, so approving one never
/// approves another.
fn digest_of(ctx: &ClientCtx, action: Action, tool: &Tool, arguments: &Value) -> String {
    match action {
        Action::CallTool => call_digest(&ctx.principal, &tool.upstream, &tool.name, arguments),
        other => call_digest(
            &ctx.principal,
            &tool.upstream,
            &format!("{other}:{}", tool.name),
            arguments,
        ),
    }
}
