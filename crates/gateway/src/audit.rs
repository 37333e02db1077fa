//! The audit log at run time: one record per decision (written, and committed, before the call
//! is forwarded or refused) and one per completed call (latency, result digest, label), chained
//! by hash ([`portcullis_core::audit`]). One writer task commits records in batches — group
//! commit: every record waiting when a transaction starts goes into it — so concurrent calls
//! share a commit. Arguments are scrubbed of vault secrets and long values are digested.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::audit;
use portcullis_store::{AuditRow, Store, StoreError};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// How long a call waits for its decision to be committed before it is refused.
const COMMIT_WAIT: Duration = Duration::from_secs(10);
/// Strings longer than this are recorded as their digest.
const MAX_VALUE: usize = 512;

type Pending = (i64, Value, oneshot::Sender<bool>);

/// The audit log of one gateway (`None` inside: a gateway that only looks writes none).
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: Option<mpsc::UnboundedSender<Pending>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in Sha256::digest(bytes) {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Arguments as recorded: every vault secret scrubbed, long strings replaced by their digest.
pub fn recorded_arguments(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let scrubbed = crate::secrets::scrub(s.as_bytes());
            let text = String::from_utf8_lossy(&scrubbed).into_owned();
            if text.len() > MAX_VALUE {
                Value::String(format!("{} ({} bytes)", digest(text.as_bytes()), text.len()))
            } else {
                Value::String(text)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(recorded_arguments).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), recorded_arguments(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> AuditLog {
        AuditLog { tx: None }
    }

    /// Starts the writer over `store`, continuing its chain.
    pub async fn start(store: Store) -> Result<AuditLog, StoreError> {
        let head = store.audit_head().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, head, rx));
        Ok(AuditLog { tx: Some(tx) })
    }

    /// Records `body` and waits until it is committed; `false` when it could not be (the caller
    /// refuses the call: no decision goes unrecorded).
    pub async fn record(&self, body: Value) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack, done) = oneshot::channel();
        if tx.send((now_ms(), body, ack)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(COMMIT_WAIT, done).await, Ok(Ok(true)))
    }

    /// Records `body` without waiting (what happened after a decision).
    pub fn note(&self, body: Value) {
        if let Some(tx) = &self.tx {
            let (ack, _) = oneshot::channel();
            let _ = tx.send((now_ms(), body, ack));
        }
    }
}

async fn writer(store: Store, mut head: Option<(i64, String)>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Another process sharing the database (a second `portcullis stdio`, a `portcullis
        // call`) may have appended since: on a conflict, re-read the head and chain again.
        let mut ok = false;
        for attempt in 0..5 {
            if attempt > 0 {
                match store.audit_head().await {
                    Ok(h) => head = h,
                    Err(e) => tracing::warn!(error = %e, "could not re-read the audit head"),
                }
            }
            let (rows, last) = chain(head.as_ref(), &batch);
            match store.append_audit(&rows).await {
                Ok(()) => {
                    head = last;
                    ok = true;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, attempt, "audit append failed; retrying from the current head"),
            }
        }
        if !ok {
            tracing::error!(
                records = batch.len(),
                "could not write the audit log; the calls waiting on it are refused"
            );
        }
        for (_, _, ack) in batch {
            let _ = ack.send(ok);
        }
    }
}

/// The rows for `batch` after `head`, and the new head.
fn chain(head: Option<&(i64, String)>, batch: &[Pending]) -> (Vec<AuditRow>, Option<(i64, String)>) {
    let mut rows = Vec::with_capacity(batch.len());
    let mut cur = head.cloned();
    for (at_ms, body, _) in batch {
        let row = audit::next(cur.as_ref().map(|(s, h)| (s, h.as_str())), *at_ms, body);
        cur = Some((row.seq, row.hash.clone()));
        rows.push(AuditRow {
            seq: row.seq,
            at_ms: row.at_ms,
            body: row.body,
            prev: row.prev,
            hash: row.hash,
        });
    }
    (rows, cur)
}

/// The body of a decision record.
#[expect(clippy::too_many_arguments, reason = "one record's fields")]
pub fn decision_body(
    principal: &str,
    client: &str,
    session: &str,
    action: &str,
    upstream: &str,
    target: &str,
    arguments: &Value,
    decision: &str,
    reason: &str,
    labels: &[&str],
) -> Value {
    json!({
        "kind": "decision",
        "principal": principal,
        "client": client,
        "session": session,
        "action": action,
        "upstream": upstream,
        "target": target,
        "arguments": recorded_arguments(arguments),
        "decision": decision,
        "reason": String::from_utf8_lossy(&crate::secrets::scrub(reason.as_bytes())),
        "labels": labels,
    })
}
