//! In-flight calls on one upstream link, and the routing of what the server sends back:
//! responses to their call, progress by the token the gateway minted, subscription traffic by
//! subscription id. A server-to-client request or a log message that names no call (a legacy
//! stdio server cannot name one) goes to the calls in flight only when they all belong to one
//! owner — one principal's one session — and is refused otherwise: what one client's server
//! asks must never reach another client. A `ping` is answered here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::meta;
use portcullis_core::{ErrorObject, Id, Message, Notification, Outcome, Params, Request, Response};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{CallSink, ClientError, ServerRequest};

/// Prefix of the progress tokens the gateway substitutes for the client's own.
const PROGRESS_PREFIX: &str = "portcullis-";

/// One call waiting for its response.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The call's answer, or why none will come (the link ended, the answer was unreadable):
    /// a failure the gateway saw, never dressed up as an answer from the server.
    pub done: oneshot::Sender<Result<Response, ClientError>>,
    pub sink: Option<CallSink>,
    /// The caller's own progress token, restored on progress notifications.
    pub progress: Option<Value>,
    /// Whether unattributed related traffic (log messages, server-to-client requests) may be
    /// given to this call. A `subscriptions/listen` stream takes only the traffic tagged with
    /// its subscription id: it must never swallow what belongs to a tool call.
    takes_related: bool,
    seq: u64,
}

/// What no call claimed.
#[derive(Debug)]
pub(crate) enum Unclaimed {
    /// A notification for the connection as a whole (list changes, resource updates, logs).
    Notification(Notification),
    /// A server-to-client request answered here (a `ping`, or a refusal): send the reply.
    Reply(Response),
    /// A response to a call that no longer waits (cancelled or timed out).
    Stale,
    /// A server-to-client request handed to a call: the link sends its reply when it comes.
    Relayed(Id, oneshot::Receiver<Outcome>),
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_id: AtomicI64,
    seq: AtomicU64,
    calls: Mutex<HashMap<i64, Slot>>,
}

impl Registry {
    pub fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        // A poisoned lock only means another thread panicked mid-update of a map of channels;
        // the map itself is still consistent.
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a call. Rewrites `_meta.progressToken` in `params` to a token unique on this
    /// link and keeps the caller's for the way back.
    pub fn register(
        &self,
        id: i64,
        method: &str,
        params: &mut Option<Params>,
        sink: Option<CallSink>,
    ) -> oneshot::Receiver<Result<Response, ClientError>> {
        let (done, rx) = oneshot::channel();
        let progress = params.as_mut().and_then(|p| swap_progress_token(p, id));
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.calls().insert(
            id,
            Slot {
                done,
                sink,
                progress,
                takes_related: method != "subscriptions/listen",
                seq,
            },
        );
        rx
    }

    pub fn remove(&self, id: i64) -> Option<Slot> {
        self.calls().remove(&id)
    }

    /// Fails every waiting call: the link is gone, for `reason`.
    pub fn fail_all(&self, reason: &str) {
        let slots: Vec<(i64, Slot)> = self.calls().drain().collect();
        for (_, slot) in slots {
            let _ = slot.done.send(Err(ClientError::Closed(reason.to_owned())));
        }
    }

    /// Routes one incoming message.
    pub fn dispatch(&self, msg: Message) -> Option<Unclaimed> {
        match msg {
            Message::Response(r) => {
                let slot = match &r.id {
                    Some(Id::Int(id)) => self.remove(*id),
                    _ => None,
                };
                match slot {
                    Some(slot) => {
                        let _ = slot.done.send(Ok(r));
                        None
                    }
                    None => Some(Unclaimed::Stale),
                }
            }
            Message::Notification(n) => self.route_notification(n).map(Unclaimed::Notification),
            Message::Request(r) if r.method == "ping" => Some(Unclaimed::Reply(Response::result(
                r.id,
                serde_json::value::to_raw_value(&serde_json::json!({})).unwrap_or_default(),
            ))),
            Message::Request(r) => Some(match self.route_request(r) {
                Ok((id, rx)) => Unclaimed::Relayed(id, rx),
                Err(refused) => Unclaimed::Reply(refused),
            }),
        }
    }

    /// The sink of the one owner of every call waiting for related traffic, the most recent
    /// of its calls: `Ok(None)` when none waits, `Err` when calls of two owners wait (the
    /// traffic cannot be attributed).
    fn sole_owner(calls: &HashMap<i64, Slot>) -> Result<Option<&CallSink>, ()> {
        let mut waiting = calls.values().filter(|s| s.takes_related).filter(|s| s.sink.is_some());
        let Some(first) = waiting.next() else { return Ok(None) };
        let owner = first.sink.as_ref().map(|s| &s.owner);
        let mut latest = first;
        for s in waiting {
            if s.sink.as_ref().map(|s| &s.owner) != owner {
                return Err(());
            }
            if s.seq > latest.seq {
                latest = s;
            }
        }
        Ok(latest.sink.as_ref())
    }

    /// Delivers a notification to the call it belongs to; returns it when none.
    pub fn route_notification(&self, n: Notification) -> Option<Notification> {
        let n = self.route_tagged(n)?;
        if n.method == "notifications/message" {
            // Log messages carry no request id on a shared link: attribute them to the calls
            // waiting for related traffic when those all have one owner.
            let calls = self.calls();
            if let Ok(Some(sink)) = Self::sole_owner(&calls) {
                let _ = sink.notes.try_send(n);
                return None;
            }
        }
        Some(n)
    }

    /// Delivers a notification that names its call — by subscription id or by the progress
    /// token the gateway minted — and returns any other.
    pub fn route_tagged(&self, mut n: Notification) -> Option<Notification> {
        let calls = self.calls();
        // Subscription traffic names its `subscriptions/listen` request.
        if let Some(Value::Number(sub)) = n
            .params
            .as_ref()
            .and_then(|p| p.get_object("_meta"))
            .and_then(|m| m.get(meta::SUBSCRIPTION_ID).cloned())
            && let Some(slot) = sub.as_i64().and_then(|id| calls.get(&id))
            && let Some(sink) = &slot.sink
        {
            let _ = sink.notes.try_send(n);
            return None;
        }
        if n.method == "notifications/progress" {
            let target = n
                .params
                .as_ref()
                .and_then(|p| p.get_str("progressToken"))
                .and_then(|t| t.strip_prefix(PROGRESS_PREFIX).and_then(|id| id.parse::<i64>().ok()));
            return match target.and_then(|id| calls.get(&id)) {
                Some(slot) => {
                    if let (Some(sink), Some(original), Some(params)) = (&slot.sink, &slot.progress, n.params.as_mut())
                    {
                        let _ = params.insert("progressToken", original);
                        let _ = sink.notes.try_send(n);
                    }
                    None
                }
                // Progress for a call that is gone, or a token we never minted: dropped.
                None => None,
            };
        }
        Some(n)
    }

    /// Hands a server-to-client request to the call waiting on it: the most recent call of the
    /// one owner of every call in flight. Refused (the reply to send) when no call waits or
    /// calls of two owners do.
    pub fn route_request(&self, r: Request) -> Result<(Id, oneshot::Receiver<Outcome>), Response> {
        let calls = self.calls();
        match Self::sole_owner(&calls) {
            Ok(Some(sink)) => forward_request(sink, r).map_err(|r| unanswerable(&r)),
            Ok(None) => Err(unanswerable(&r)),
            Err(()) => Err(Response::error(
                Some(r.id.clone()),
                ErrorObject::new(
                    code::INVALID_REQUEST,
                    format!(
                        "`{}` cannot be relayed: calls of several clients are in flight on this server and the request names none of them",
                        r.method
                    ),
                ),
            )),
        }
    }
}

/// Passes a server-to-client request to a call's sink. On success the caller owns the reply
/// receiver and must send the reply upstream; a closed sink hands the request back.
pub(crate) fn forward_request(sink: &CallSink, r: Request) -> Result<(Id, oneshot::Receiver<Outcome>), Request> {
    let (reply, rx) = oneshot::channel();
    let id = r.id.clone();
    match sink.requests.try_send(ServerRequest { request: r, reply }) {
        Ok(()) => Ok((id, rx)),
        Err(mpsc::error::TrySendError::Full(req) | mpsc::error::TrySendError::Closed(req)) => Err(req.request),
    }
}

fn swap_progress_token(params: &mut Params, id: i64) -> Option<Value> {
    let mut m = params.get_object("_meta")?;
    let original = m.get(meta::PROGRESS_TOKEN)?.clone();
    m.insert(
        meta::PROGRESS_TOKEN.into(),
        Value::String(format!("{PROGRESS_PREFIX}{id}")),
    );
    params.insert("_meta", &m).ok()?;
    Some(original)
}

/// The error sent back for a server-to-client request no client can answer.
pub(crate) fn unanswerable(r: &Request) -> Response {
    Response::error(
        Some(r.id.clone()),
        ErrorObject::new(
            code::METHOD_NOT_FOUND,
            format!(
                "`{}` cannot be relayed: no client request is waiting on this server",
                r.method
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_of(owner: &str) -> (CallSink, mpsc::Receiver<Notification>, mpsc::Receiver<ServerRequest>) {
        let (notes, notes_rx) = mpsc::channel(16);
        let (requests, requests_rx) = mpsc::channel(16);
        (
            CallSink {
                notes,
                requests,
                owner: Some(owner.to_owned()),
            },
            notes_rx,
            requests_rx,
        )
    }

    fn sink() -> (CallSink, mpsc::Receiver<Notification>, mpsc::Receiver<ServerRequest>) {
        sink_of("alice")
    }

    fn ask(id: i64) -> Request {
        Request {
            id: Id::Int(id),
            method: "elicitation/create".into(),
            params: None,
        }
    }

    /// Regression: an upstream's `elicitation/create` went to the most recent call on the
    /// link, which could be another principal's.
    #[test]
    fn requests_reach_only_the_owner_of_every_call_in_flight() {
        let reg = Registry::default();
        let (alice, _an, mut alice_reqs) = sink_of("alice\u{0}session:1");
        let (bob, _bn, mut bob_reqs) = sink_of("bob\u{0}session:2");
        let _a = reg.register(1, "tools/call", &mut None, Some(alice));
        let _b = reg.register(2, "tools/call", &mut None, Some(bob));
        let refused = reg.route_request(ask(7)).unwrap_err();
        assert!(refused.as_error().unwrap().message.contains("several clients"));
        assert!(alice_reqs.try_recv().is_err() && bob_reqs.try_recv().is_err());
        reg.remove(2);
        assert!(reg.route_request(ask(8)).is_ok());
        assert!(alice_reqs.try_recv().is_ok());
        // Two calls of one owner: the most recent gets it.
        let (again, _n, mut again_reqs) = sink_of("alice\u{0}session:1");
        let _c = reg.register(3, "tools/call", &mut None, Some(again));
        assert!(reg.route_request(ask(9)).is_ok());
        assert!(again_reqs.try_recv().is_ok());
    }

    #[test]
    fn a_ping_is_answered_by_the_link() {
        let reg = Registry::default();
        let ping = Message::Request(Request {
            id: Id::Int(1),
            method: "ping".into(),
            params: None,
        });
        assert!(matches!(reg.dispatch(ping), Some(Unclaimed::Reply(r)) if r.as_error().is_none()));
    }

    fn log_message() -> Notification {
        let mut p = Params::new();
        let _ = p.insert("level", "info");
        let _ = p.insert("data", "hello");
        Notification {
            method: "notifications/message".into(),
            params: Some(p),
        }
    }

    /// Regression: the gateway's own long-lived `subscriptions/listen` call made two calls with
    /// a sink, so a tool call's log messages were never attributed and never reached the client.
    #[test]
    fn a_listen_stream_does_not_take_a_tool_calls_logs_or_requests() {
        let reg = Registry::default();
        let (listen_sink, mut listen_notes, mut listen_reqs) = sink();
        let (call_sink, mut call_notes, mut call_reqs) = sink();
        let _listen = reg.register(1, "subscriptions/listen", &mut None, Some(listen_sink));
        let _call = reg.register(2, "tools/call", &mut None, Some(call_sink));

        assert!(reg.route_notification(log_message()).is_none(), "the log is claimed");
        assert_eq!(
            call_notes.try_recv().map(|n| n.method).ok().as_deref(),
            Some("notifications/message")
        );
        assert!(listen_notes.try_recv().is_err());

        let ask = Request {
            id: Id::Int(7),
            method: "elicitation/create".into(),
            params: None,
        };
        assert!(reg.route_request(ask).is_ok());
        assert!(call_reqs.try_recv().is_ok(), "the tool call is asked");
        assert!(listen_reqs.try_recv().is_err());
    }

    #[test]
    fn logs_stay_unattributed_when_two_calls_could_own_them() {
        let reg = Registry::default();
        let (a, _an, _ar) = sink_of("alice");
        let (b, _bn, _br) = sink_of("bob");
        let _a = reg.register(1, "tools/call", &mut None, Some(a));
        let _b = reg.register(2, "tools/call", &mut None, Some(b));
        assert!(reg.route_notification(log_message()).is_some());
    }
}
