//! The audit log at run time: one record per decision (journaled before the call is forwarded
//! or refused) and one per completed call (latency, result digest, label), chained by hash
//! ([`portcullis_core::audit`]). A caller appends its record to the process's journal
//! ([`super::journal`]: one `write(2)`, no thread hop) and goes on; one writer task indexes the
//! journal into the database in batches — every record waiting when a transaction starts goes
//! into it — off the call path, and the next start replays what a crash left unindexed.
//! Arguments are scrubbed of vault secrets and long values are digested.
//!
//! With a signer, a signed checkpoint covers the head whenever the chain passes a multiple of
//! `every` records, [`SIGN_AFTER`] after the first record no checkpoint covers yet (so a crash
//! leaves at most about a second unprotected), and at a clean stop. Each checkpoint is also
//! appended to a witness file outside the database ([`WITNESS`] in the data folder, 0600), so
//! a verifier notices a removed tail or removed checkpoints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use portcullis_core::audit;
use portcullis_core::audit::checkpoint;
use portcullis_store::{AuditRow, CheckpointRow, Store, StoreError};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::journal::{self, Entry, Journal, Segment};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Most records journaled and not yet indexed; past it, a caller waits for room (and a decision
/// that finds none within the commit wait refuses its call): a database that stays down fails
/// closed instead of growing the backlog without bound.
const QUEUE: usize = 16_384;
/// How long a call waits for room in the backlog before it is refused, and how long a clean
/// stop waits for the writer.
const COMMIT_WAIT: Duration = Duration::from_secs(10);
/// How long the writer gathers records into one batch after the first arrives.
const GATHER: Duration = Duration::from_millis(5);
/// Longest pause between two tries to index a batch the database refused.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Strings longer than this are recorded as their digest.
const MAX_VALUE: usize = 512;
/// How long a record waits, at most, before a signed checkpoint covers it.
pub const SIGN_AFTER: Duration = Duration::from_secs(1);
/// The witness file's name in the data folder: one JSON line per signed checkpoint.
pub const WITNESS: &str = "audit-witness.jsonl";

enum Msg {
    Record(Entry),
    /// A segment whose records all precede this message: remove it once they are indexed.
    Sealed(Segment),
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
    match vault.peek(SIGNING_KEY).await? {
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
    // Two processes starting at once: the first write is the key, and both read it back (a
    // plain overwrite would leave the first signing with a key the vault no longer holds).
    vault.set_if_absent(SIGNING_KEY, "", &text).await?;
    existing_signing_key(vault)
        .await?
        .ok_or_else(|| portcullis_vault::VaultError::Tampered(SIGNING_KEY.to_owned()))
}

/// The audit log of one gateway (`None` inside: a gateway that only looks writes none, and
/// forwards nothing).
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    journal: Mutex<Journal>,
    tx: mpsc::UnboundedSender<Msg>,
    /// Records that may still be journaled before the writer indexes some.
    room: Arc<Semaphore>,
}

/// The proof that a decision to forward a request is in the audit log (journaled: a crash of
/// the process no longer loses it). Only
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
            Msg::Sealed(_) => "Sealed",
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
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    s.push_str(&hex::encode(Sha256::digest(bytes)));
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
        AuditLog { inner: None }
    }

    /// Opens the journal in `journal_dir`, replays into `store` what stopped processes left
    /// unindexed there, and starts the writer, continuing the store's chain and signing
    /// checkpoints with `signer` (none without a vault).
    pub async fn start(store: Store, signer: Option<Signer>, journal_dir: &Path) -> Result<AuditLog, AuditError> {
        let journal = Journal::open(journal_dir).map_err(AuditError::Journal)?;
        let own = journal.segment();
        let mut head = store.audit_head().await?;
        (head, _) = replay(&store, head, signer.as_ref(), journal_dir, own.as_deref()).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(QUEUE));
        tokio::spawn(writer(store, head, rx, signer, room.clone()));
        Ok(AuditLog {
            inner: Some(Arc::new(Inner {
                journal: Mutex::new(journal),
                tx,
                room,
            })),
        })
    }

    /// Indexes what is journaled, signs the head and removes this process's journal segment:
    /// called when the gateway stops. No record is journaled after it.
    pub async fn close(&self) {
        let Some(inner) = &self.inner else { return };
        let (ack, done) = oneshot::channel();
        {
            let mut j = inner.journal.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(seg) = j.close() {
                let _ = inner.tx.send(Msg::Sealed(seg));
            }
            if inner.tx.send(Msg::Close(ack)).is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(COMMIT_WAIT, done).await;
    }

    /// Journals `body`; `false` when it could not be (the caller refuses the call: no decision
    /// goes unrecorded).
    pub async fn record(&self, body: Value) -> bool {
        let Some(inner) = &self.inner else { return true };
        match inner.room.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => match tokio::time::timeout(COMMIT_WAIT, inner.room.acquire()).await {
                Ok(Ok(p)) => p.forget(),
                _ => {
                    tracing::error!("the audit log's backlog is full (the database is not keeping up); refusing");
                    return false;
                }
            },
        }
        inner.journal(body)
    }

    /// Journals `body` now, without waiting: for what must be recorded where nothing can wait
    /// (a request's end, noted as its handler is dropped). `false` when the backlog is full or
    /// the journal cannot be written.
    pub fn note_now(&self, body: Value) -> bool {
        let Some(inner) = &self.inner else { return true };
        match inner.room.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        inner.journal(body)
    }

    /// Journals the decision to forward a request (`body`, a decision record) and returns the
    /// proof forwarding needs. A gateway that only looks (no log) forwards nothing.
    pub async fn commit(&self, body: Value) -> Result<Committed, crate::error::GatewayError> {
        if self.inner.is_some() && self.record(body).await {
            Ok(Committed { _sealed: () })
        } else {
            Err(crate::error::GatewayError::AuditUnavailable)
        }
    }

    /// Records `body`, what happened after a decision; a failure is logged, not returned.
    pub async fn note(&self, body: Value) {
        let _ = self.record(body).await;
    }
}

impl Inner {
    /// Appends `body` to the journal and hands it to the writer; its room in the backlog is
    /// already taken.
    fn journal(&self, body: Value) -> bool {
        // Put in canonical form before the lock: other callers wait only for the write.
        let body = audit::canonical(&body);
        let mut j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        match j.append(now_ms(), body) {
            Ok((entry, sealed)) => {
                // Sent under the journal's lock: the writer sees records in the journal's order.
                let sent = self.tx.send(Msg::Record(entry)).is_ok();
                if let Some(seg) = sealed {
                    let _ = self.tx.send(Msg::Sealed(seg));
                }
                // A writer that is gone still leaves the record in the journal (replayed at the
                // next start), but a gateway without one stops forwarding.
                sent
            }
            Err(e) => {
                drop(j);
                self.room.add_permits(1);
                tracing::error!(error = %e, "could not journal an audit record; refusing");
                false
            }
        }
    }
}

/// Indexes into `store` what stopped processes journaled in `journal_dir` and the database
/// does not hold yet (what a gateway's next start does first), for commands that read the log
/// while no gateway may run. Returns how many records it indexed.
pub async fn recover(store: &Store, journal_dir: &Path) -> Result<usize, AuditError> {
    if !journal_dir.exists() {
        return Ok(0);
    }
    let head = store.audit_head().await?;
    let (_, indexed) = replay(store, head, None, journal_dir, None).await?;
    Ok(indexed)
}

/// Waits, at most `wait`, until every record journaled so far — by running gateways too — is
/// indexed into `store`: a reader of the log then sees every decision made before it started.
/// `false` when some were still waiting at the end.
pub async fn settle(store: &Store, journal_dir: &Path, wait: Duration) -> Result<bool, AuditError> {
    if !journal_dir.exists() {
        return Ok(true);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let written = journal::written(journal_dir).map_err(AuditError::Journal)?;
    loop {
        let mut behind = false;
        for (segment, n) in &written {
            // A segment removed meanwhile was indexed whole.
            if store.audit_journal_upto(segment).await? < *n && journal_dir.join(segment).exists() {
                behind = true;
                break;
            }
        }
        if !behind {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The journal folder or a segment could not be opened.
    #[error("cannot open the audit journal: {0}")]
    Journal(std::io::Error),
    /// The database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Indexes the records of segments left by stopped processes (a crash, a kill) that the
/// database does not hold yet, then removes the segments. A segment that does not read to its
/// end is kept, renamed `….damaged`, after its readable records are indexed. Returns the new
/// head and how many records it indexed.
async fn replay(
    store: &Store,
    mut head: Option<(i64, String)>,
    signer: Option<&Signer>,
    dir: &Path,
    own: Option<&str>,
) -> Result<(Option<(i64, String)>, usize), AuditError> {
    let found = journal::orphans(dir, own).map_err(AuditError::Journal)?;
    let mut indexed = 0;
    for o in found {
        let upto = store.audit_journal_upto(&o.segment.name).await?;
        let todo: Vec<Entry> = o.entries.into_iter().filter(|e| e.n > upto).collect();
        for batch in todo.chunks(MAX_BATCH) {
            let (h, _) = index(store, head, batch, signer).await?;
            head = h;
        }
        indexed += todo.len();
        if !todo.is_empty() {
            tracing::warn!(
                segment = %o.segment.name,
                records = todo.len(),
                "indexed audit records a stopped gateway had journaled but not indexed"
            );
        }
        let name = o.segment.name.clone();
        if let Some(why) = o.damage {
            let kept = dir.join(format!("{name}.damaged"));
            tracing::error!(segment = %name, kept = %kept.display(), "audit journal segment damaged: {why}; the records after it were not indexed");
            std::fs::rename(dir.join(&*name), &kept).map_err(AuditError::Journal)?;
        } else {
            o.segment.remove().map_err(AuditError::Journal)?;
        }
        store.forget_audit_journal(&name).await?;
    }
    Ok((head, indexed))
}

async fn writer(
    store: Store,
    mut head: Option<(i64, String)>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    signer: Option<Signer>,
    room: Arc<Semaphore>,
) {
    // When the oldest record no checkpoint covers was indexed (none: the head is signed).
    let mut unsigned_since: Option<tokio::time::Instant> = None;
    // A message read ahead while gathering a batch.
    let mut ahead: Option<Msg> = None;
    loop {
        let next = match (ahead.take(), unsigned_since, &signer) {
            (Some(m), _, _) => Some(m),
            (None, Some(since), Some(s)) => match tokio::time::timeout_at(since + SIGN_AFTER, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    sign_head(&store, s, "audit head signed after a quiet second").await;
                    unsigned_since = None;
                    continue;
                }
            },
            _ => rx.recv().await,
        };
        let Some(msg) = next else { break };
        match msg {
            Msg::Record(first) => {
                // A batch holds one segment's records: its progress is one number.
                let segment = first.segment.clone();
                let mut batch = vec![first];
                // Gather for a moment: sequential calls then share a transaction too, which
                // costs the writer (and the cores the calls run on) far less than one each.
                let deadline = tokio::time::Instant::now() + GATHER;
                while batch.len() < MAX_BATCH {
                    let m = match rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            match tokio::time::timeout_at(deadline, rx.recv()).await {
                                Ok(m) => m,
                                Err(_) => break,
                            }
                        }
                    };
                    match m {
                        Some(Msg::Record(e)) if e.segment == segment => batch.push(e),
                        Some(other) => {
                            ahead = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let mut pause = Duration::from_millis(50);
                let signed = loop {
                    match index(&store, head.clone(), &batch, signer.as_ref()).await {
                        Ok((h, signed)) => {
                            head = h;
                            break signed;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, records = batch.len(), "could not index audit records into the database; they wait in the journal, retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(RETRY_MAX);
                        }
                    }
                };
                room.add_permits(batch.len());
                if let Some(s) = &signer {
                    if let Some(c) = signed {
                        s.witness(c).await;
                        unsigned_since = None;
                    } else if unsigned_since.is_none() {
                        unsigned_since = Some(tokio::time::Instant::now());
                    }
                    // Under steady traffic the quiet-second timer never fires: sign once the
                    // oldest unsigned record is a second old, between batches.
                    if unsigned_since.is_some_and(|t| t.elapsed() >= SIGN_AFTER) {
                        sign_head(&store, s, "audit head signed a second after its first unsigned record").await;
                        unsigned_since = None;
                    }
                }
            }
            Msg::Sealed(seg) => {
                // Every record of it is indexed (they came before this message). The file goes
                // first: a crash between the two leaves a stale progress row, never a segment
                // without one (which a replay would index twice).
                let name = seg.name.clone();
                if let Err(e) = seg.remove() {
                    tracing::warn!(segment = %name, error = %e, "could not remove an indexed audit journal segment");
                } else if let Err(e) = store.forget_audit_journal(&name).await {
                    tracing::warn!(segment = %name, error = %e, "could not forget an indexed audit journal segment");
                }
            }
            Msg::Close(ack) => {
                if let Some(s) = &signer {
                    sign_head(&store, s, "audit head signed at shutdown").await;
                    unsigned_since = None;
                }
                let _ = ack.send(());
            }
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

/// Indexes one batch of one segment's records (a checkpoint with it when it passes a multiple
/// of the signer's interval, and the segment's progress); returns the new head and the
/// checkpoint stored with it.
async fn index(
    store: &Store,
    mut head: Option<(i64, String)>,
    batch: &[Entry],
    signer: Option<&Signer>,
) -> Result<(Option<(i64, String)>, Option<CheckpointRow>), StoreError> {
    let progress = batch.last().map(|e| (e.segment.clone(), e.n));
    // Another process sharing the database (a second `portcullis stdio`, a `portcullis
    // call`) may have appended since: on a conflict, re-read the head and chain again.
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            head = store.audit_head().await?;
        }
        let (rows, last) = chain(head.as_ref(), batch);
        let before = head.as_ref().map_or(0, |(s, _)| *s);
        let after = last.as_ref().map_or(0, |(s, _)| *s);
        let make = signer.filter(|s| before / s.every != after / s.every).map(Signer::make);
        let progress = progress.as_ref().map(|(s, n)| (&**s, *n));
        match store
            .append_audit_journaled(&rows, make.as_ref().map(|m| m as _), progress)
            .await
        {
            Ok(c) => return Ok((last, c)),
            Err(e) if attempt >= 4 => return Err(e),
            Err(e) => tracing::debug!(error = %e, attempt, "audit append failed; retrying from the current head"),
        }
        attempt += 1;
    }
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

/// Reads every record in storage order, a page at a time, and hands each to `each`, as it is:
/// nothing is checked (an export shows everything; `core::audit::verdict` judges).
pub async fn rows(store: &Store, mut each: impl FnMut(&audit::Row)) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, WALK_PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            each(&audit::Row {
                seq: r.seq,
                at_ms: r.at_ms,
                body: r.body,
                prev: r.prev,
                hash: r.hash,
            });
        }
    }
    Ok(())
}

/// Reads every record in order, verifying the hash chain, and hands each to `each` — all of
/// them, also those after a break.
pub async fn walk(store: &Store, mut each: impl FnMut(&audit::Row)) -> Result<Walked, StoreError> {
    let mut verifier = audit::Verifier::new();
    let mut broken = None;
    rows(store, |row| {
        if broken.is_none()
            && let Err(b) = verifier.push(row)
        {
            broken = Some(b);
        }
        each(row);
    })
    .await?;
    Ok(Walked {
        verified: verifier.verified(),
        broken,
    })
}

/// The rows for `batch` after `head`, and the new head.
fn chain(head: Option<&(i64, String)>, batch: &[Entry]) -> (Vec<AuditRow>, Option<(i64, String)>) {
    let mut rows = Vec::with_capacity(batch.len());
    let mut cur = head.cloned();
    for e in batch {
        let row = audit::next_canonical(cur.as_ref().map(|(s, h)| (s, h.as_str())), e.at_ms, e.body.clone());
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
    async fn bodies(store: &Store) -> Vec<Value> {
        let rows = store.audit_rows(0, 1000).await.unwrap();
        let mut v = audit::Verifier::new();
        for r in &rows {
            let row = audit::Row {
                seq: r.seq,
                at_ms: r.at_ms,
                body: r.body.clone(),
                prev: r.prev.clone(),
                hash: r.hash.clone(),
            };
            v.push(&row).unwrap();
        }
        rows.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect()
    }

    fn segments(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    /// A process that journaled five records and indexed two before it died: the next start
    /// indexes the other three, once each, in order, and removes the dead segment.
    #[tokio::test]
    async fn a_dead_processs_journal_is_indexed_once_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let jdir = dir.path().join(journal::DIR);
        let mut j = Journal::open(&jdir).unwrap();
        let entries: Vec<Entry> = (0..5)
            .map(|i| j.append(i, audit::canonical(&json!({"i": i}))).unwrap().0)
            .collect();
        index(&store, None, &entries[..2], None).await.unwrap();
        drop(j);

        let log = AuditLog::start(store.clone(), None, &jdir).await.unwrap();
        let want: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
        assert_eq!(bodies(&store).await, want);
        // Only the new process's own segment is left, and a clean stop removes it.
        assert_eq!(segments(&jdir), 1);
        assert!(log.record(json!({"i": 5})).await);
        log.close().await;
        assert_eq!(segments(&jdir), 0);
        assert_eq!(bodies(&store).await.len(), 6);
    }

    /// A record is journaled when `record` returns: a process that dies before its writer
    /// indexed anything loses nothing, and `recover` (what `portcullis audit` runs) finds it.
    #[tokio::test]
    async fn a_journaled_record_survives_a_writer_that_never_ran() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let jdir = dir.path().join(journal::DIR);
        {
            // A writer that never runs: a runtime stopped right after the calls.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let other = store.clone();
            let jdir = jdir.clone();
            std::thread::spawn(move || {
                rt.block_on(async {
                    let log = AuditLog::start(other, None, &jdir).await.unwrap();
                    for i in 0..3 {
                        assert!(log.record(json!({"i": i})).await);
                    }
                    // Gone without `close`, and the runtime with it: the writer never ran.
                    drop(log);
                });
            })
            .join()
            .unwrap();
        }
        assert!(bodies(&store).await.is_empty());
        // The process is gone, and its segment's lock with it.
        assert_eq!(recover(&store, &jdir).await.unwrap(), 3);
        assert_eq!(
            bodies(&store).await,
            vec![json!({"i": 0}), json!({"i": 1}), json!({"i": 2})]
        );
        assert_eq!(recover(&store, &jdir).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn steady_traffic_is_signed_within_about_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let witness = dir.path().join(WITNESS);
        let log = AuditLog::start(
            store.clone(),
            Some(Signer::new(&[7u8; 32], 1000).with_witness(witness.clone())),
            &dir.path().join(journal::DIR),
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
