//! The audit log at run time: one record per decision (written, and committed, before the call
//! is forwarded or refused) and one per completed call (latency, result digest, label), chained
//! by hash ([`portcullis_core::audit`]). One writer task commits records in batches — group
//! commit: every record waiting when a transaction starts goes into it — so concurrent calls
//! share a commit. Arguments are scrubbed of vault secrets and long values are digested.
//!
//! With a signer, a signed checkpoint covers the head whenever the chain passes a multiple of
//! `every` records, [`SIGN_AFTER`] after the first record no checkpoint covers yet (so a crash
//! leaves at most about a second unprotected), and at a clean stop. Each checkpoint is also
//! appended to a witness file outside the database ([`WITNESS`] in the data folder, 0600), so
//! a verifier notices a removed tail or removed checkpoints.

use std::path::PathBuf;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use portcullis_core::audit;
use portcullis_core::audit::checkpoint;
use portcullis_store::{AuditRow, CheckpointRow, Store, StoreError};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Most records queued for the writer; past it, a caller waits for room (and a decision that
/// cannot be queued within the commit wait refuses its call).
const QUEUE: usize = 65_536;
/// How long a call waits for its decision to be committed before it is refused.
const COMMIT_WAIT: Duration = Duration::from_secs(10);
/// Strings longer than this are recorded as their digest.
const MAX_VALUE: usize = 512;
/// How long a record waits, at most, before a signed checkpoint covers it.
pub const SIGN_AFTER: Duration = Duration::from_secs(1);
/// The witness file's name in the data folder: one JSON line per signed checkpoint.
pub const WITNESS: &str = "audit-witness.jsonl";

type Pending = (i64, Value, oneshot::Sender<bool>);

enum Msg {
    Record(Pending),
    /// Sign the head (at shutdown), then answer.
    Close(oneshot::Sender<()>),
}

/// The vault secret holding the audit log's Ed25519 signing key.
pub const SIGNING_KEY: &str = "audit.signing-key";

/// What signs checkpoints, and how often.
pub struct Signer {
    key: SigningKey,
    /// A checkpoint whenever the chain passes a multiple of this many records.
    every: i64,
    /// The witness file every checkpoint is appended to, if any.
    witness: Option<PathBuf>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &checkpoint::key_id(&self.key.verifying_key()))
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `key` (32 bytes), every `every` records.
    pub fn new(key: &[u8; 32], every: u64) -> Signer {
        Signer {
            key: SigningKey::from_bytes(key),
            every: i64::try_from(every.max(1)).unwrap_or(i64::MAX),
            witness: None,
        }
    }

    /// The same signer, appending every checkpoint to the witness file at `path`.
    #[must_use]
    pub fn with_witness(mut self, path: PathBuf) -> Signer {
        self.witness = Some(path);
        self
    }

    fn make(&self) -> impl Fn(i64, &str, i64) -> CheckpointRow + Send + Sync + '_ {
        move |seq, hash, prev| {
            let c = checkpoint::sign(&self.key, seq, hash, now_ms(), prev);
            CheckpointRow {
                seq: c.seq,
                hash: c.hash,
                at_ms: c.at_ms,
                prev: c.prev,
                key_id: c.key_id,
                signature: c.signature,
            }
        }
    }

    /// Appends `c`, just committed, to the witness file (created 0600). A witness that cannot
    /// be written is logged, never fatal: the database holds the checkpoint.
    async fn witness(&self, c: CheckpointRow) {
        let Some(path) = &self.witness else { return };
        let line = match serde_json::to_string(&verifiable(c)) {
            Ok(l) => l + "\n",
            Err(e) => {
                tracing::warn!(error = %e, "could not write an audit checkpoint as JSON");
                return;
            }
        };
        let written = async {
            use tokio::io::AsyncWriteExt as _;
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .await?;
            f.write_all(line.as_bytes()).await?;
            f.sync_data().await
        };
        if let Err(e) = written.await {
            tracing::warn!(path = %path.display(), error = %e, "could not append the audit checkpoint to its witness file");
        }
    }
}

fn decode_key(text: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, portcullis_vault::VaultError> {
    use base64::Engine as _;
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap_or_default(),
    );
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(portcullis_vault::VaultError::Tampered(SIGNING_KEY.to_owned()));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The audit signing key in the vault, if the gateway has made one (never makes one).
pub async fn existing_signing_key(
    vault: &portcullis_vault::Vault,
) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, portcullis_vault::VaultError> {
    match vault.get(SIGNING_KEY, "").await? {
        Some(s) => decode_key(s.expose()).map(Some),
        None => Ok(None),
    }
}

/// The audit signing key from the vault, made (32 random bytes) and stored on first use.
pub async fn signing_key(
    vault: &portcullis_vault::Vault,
) -> Result<zeroize::Zeroizing<[u8; 32]>, portcullis_vault::VaultError> {
    use base64::Engine as _;
    if let Some(k) = existing_signing_key(vault).await? {
        return Ok(k);
    }
    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(fresh.as_mut());
    let text = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(fresh.as_ref()));
    vault.set(SIGNING_KEY, "", &text).await?;
    // Two processes starting at once: whichever write landed is the key.
    existing_signing_key(vault)
        .await?
        .ok_or_else(|| portcullis_vault::VaultError::Tampered(SIGNING_KEY.to_owned()))
}

/// The audit log of one gateway (`None` inside: a gateway that only looks writes none, and
/// forwards nothing).
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
}

/// The proof that a decision to forward a request is committed to the audit log. Only
/// [`AuditLog::commit`] makes one, and `dispatch::forward` takes one for every request it
/// sends upstream: "judged, then recorded, then forwarded" holds by construction.
#[derive(Debug)]
#[must_use = "a committed decision is the licence to forward; forward with it or drop the call"]
pub struct Committed {
    _sealed: (),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(_) => "Record",
            Msg::Close(_) => "Close",
        })
    }
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
            let scrubbed = crate::redact::scrub(s.as_bytes());
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

    /// Starts the writer over `store`, continuing its chain, signing checkpoints with `signer`
    /// (none without a vault).
    pub async fn start(store: Store, signer: Option<Signer>) -> Result<AuditLog, StoreError> {
        let head = store.audit_head().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, head, rx, signer));
        Ok(AuditLog { tx: Some(tx) })
    }

    /// Writes what is queued and signs the head: called when the gateway stops.
    pub async fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Close(ack)).await.is_ok() {
            let _ = tokio::time::timeout(COMMIT_WAIT, done).await;
        }
    }

    /// Records `body` and waits until it is committed; `false` when it could not be (the caller
    /// refuses the call: no decision goes unrecorded).
    pub async fn record(&self, body: Value) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack, done) = oneshot::channel();
        let queued = tokio::time::timeout(COMMIT_WAIT, tx.send(Msg::Record((now_ms(), body, ack))));
        if !matches!(queued.await, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(COMMIT_WAIT, done).await, Ok(Ok(true)))
    }

    /// Commits the decision to forward a request (`body`, a decision record) and returns the
    /// proof forwarding needs. A gateway that only looks (no log) forwards nothing.
    pub async fn commit(&self, body: Value) -> Result<Committed, crate::error::GatewayError> {
        if self.tx.is_some() && self.record(body).await {
            Ok(Committed { _sealed: () })
        } else {
            Err(crate::error::GatewayError::AuditUnavailable)
        }
    }

    /// Records `body` without waiting for the commit (what happened after a decision); waits
    /// only for room in the queue.
    pub async fn note(&self, body: Value) {
        if let Some(tx) = &self.tx {
            let (ack, _) = oneshot::channel();
            let _ = tx.send(Msg::Record((now_ms(), body, ack))).await;
        }
    }
}

async fn writer(store: Store, mut head: Option<(i64, String)>, mut rx: mpsc::Receiver<Msg>, signer: Option<Signer>) {
    let mut closing: Option<oneshot::Sender<()>> = None;
    // When the oldest record no checkpoint covers was committed (none: the head is signed).
    let mut unsigned_since: Option<tokio::time::Instant> = None;
    loop {
        let next = match (unsigned_since, &signer) {
            (Some(since), Some(s)) => match tokio::time::timeout_at(since + SIGN_AFTER, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    sign_head(&store, s, "audit head signed after a quiet second").await;
                    unsigned_since = None;
                    continue;
                }
            },
            _ => rx.recv().await,
        };
        let Some(first) = next else { break };
        let mut batch = Vec::new();
        match first {
            Msg::Record(p) => batch.push(p),
            Msg::Close(ack) => closing = Some(ack),
        }
        while batch.len() < MAX_BATCH && closing.is_none() {
            match rx.try_recv() {
                Ok(Msg::Record(p)) => batch.push(p),
                Ok(Msg::Close(ack)) => closing = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let (h, ok, signed) = commit(&store, head, &batch, signer.as_ref()).await;
            head = h;
            for (_, _, ack) in batch {
                let _ = ack.send(ok);
            }
            if let Some(s) = &signer {
                if let Some(c) = signed {
                    s.witness(c).await;
                    unsigned_since = None;
                } else if ok && unsigned_since.is_none() {
                    unsigned_since = Some(tokio::time::Instant::now());
                }
                // Under steady traffic the quiet-second timer never fires: sign once the oldest
                // unsigned record is a second old, between batches.
                if unsigned_since.is_some_and(|t| t.elapsed() >= SIGN_AFTER) {
                    sign_head(&store, s, "audit head signed a second after its first unsigned record").await;
                    unsigned_since = None;
                }
            }
        }
        if let Some(ack) = closing.take() {
            if let Some(s) = &signer {
                sign_head(&store, s, "audit head signed at shutdown").await;
                unsigned_since = None;
            }
            let _ = ack.send(());
        }
    }
}

/// Signs the head if no checkpoint covers it yet, and witnesses the checkpoint.
async fn sign_head(store: &Store, s: &Signer, what: &'static str) {
    match store.checkpoint_head(&s.make()).await {
        Ok(Some(c)) => {
            s.witness(c).await;
            tracing::debug!("{what}");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not sign the audit head"),
    }
}

/// Commits one batch (a checkpoint with it when it passes a multiple of the signer's
/// interval); returns the new head, whether the batch was committed, and the checkpoint
/// committed with it.
async fn commit(
    store: &Store,
    mut head: Option<(i64, String)>,
    batch: &[Pending],
    signer: Option<&Signer>,
) -> (Option<(i64, String)>, bool, Option<CheckpointRow>) {
    // Another process sharing the database (a second `portcullis stdio`, a `portcullis
    // call`) may have appended since: on a conflict, re-read the head and chain again.
    let mut ok = false;
    let mut signed = None;
    for attempt in 0..5 {
        if attempt > 0 {
            match store.audit_head().await {
                Ok(h) => head = h,
                Err(e) => tracing::warn!(error = %e, "could not re-read the audit head"),
            }
        }
        let (rows, last) = chain(head.as_ref(), batch);
        let before = head.as_ref().map_or(0, |(s, _)| *s);
        let after = last.as_ref().map_or(0, |(s, _)| *s);
        let make = signer.filter(|s| before / s.every != after / s.every).map(Signer::make);
        match store.append_audit_signed(&rows, make.as_ref().map(|m| m as _)).await {
            Ok(c) => {
                head = last;
                ok = true;
                signed = c;
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
    (head, ok, signed)
}

/// A stored checkpoint as the verifier (and the witness file) reads it.
fn verifiable(c: CheckpointRow) -> checkpoint::Checkpoint {
    checkpoint::Checkpoint {
        seq: c.seq,
        hash: c.hash,
        at_ms: c.at_ms,
        prev: c.prev,
        key_id: c.key_id,
        signature: c.signature,
    }
}

/// Every signed checkpoint in the store, in order, as the verifier reads them.
pub async fn checkpoints(store: &Store) -> Result<Vec<checkpoint::Checkpoint>, StoreError> {
    Ok(store.audit_checkpoints().await?.into_iter().map(verifiable).collect())
}

/// Records read per page when walking the whole log.
const WALK_PAGE: i64 = 10_000;

/// What walking the whole chain found.
#[derive(Debug)]
pub struct Walked {
    /// Records that verify, from the first on.
    pub verified: i64,
    /// The first break, if any.
    pub broken: Option<audit::Broken>,
}

/// Reads every record in order, verifying the hash chain, and hands each to `each` — all of
/// them, also those after a break (an export shows everything; a verifier stops at the break).
pub async fn walk(store: &Store, mut each: impl FnMut(&audit::Row)) -> Result<Walked, StoreError> {
    let mut verifier = audit::Verifier::new();
    let mut broken = None;
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, WALK_PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            let row = audit::Row {
                seq: r.seq,
                at_ms: r.at_ms,
                body: r.body,
                prev: r.prev,
                hash: r.hash,
            };
            if broken.is_none()
                && let Err(b) = verifier.push(&row)
            {
                broken = Some(b);
            }
            each(&row);
        }
    }
    Ok(Walked {
        verified: verifier.verified(),
        broken,
    })
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
        "reason": String::from_utf8_lossy(&crate::redact::scrub(reason.as_bytes())),
        "labels": labels,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Under steady traffic (a record every 200 ms, never a quiet second) no record stays
    /// unsigned for much more than a second, and every checkpoint reaches the witness file.
    #[tokio::test(flavor = "multi_thread")]
    async fn steady_traffic_is_signed_within_about_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let witness = dir.path().join(WITNESS);
        let log = AuditLog::start(
            store.clone(),
            Some(Signer::new(&[7u8; 32], 1000).with_witness(witness.clone())),
        )
        .await
        .unwrap();
        for i in 0..15 {
            assert!(log.record(json!({"n": i})).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let signed = store.audit_checkpoints().await.unwrap();
        let head = store.audit_head().await.unwrap().unwrap().0;
        let through = signed.last().map_or(0, |c| c.seq);
        assert!(head == 15 && through >= 9, "head {head}, signed through {through}");
        let lines = std::fs::read_to_string(&witness).unwrap();
        assert_eq!(lines.lines().count(), signed.len(), "{lines}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&witness).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
