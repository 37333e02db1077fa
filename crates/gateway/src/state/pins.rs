//! Tool pins at run time: every tool in the catalog is fingerprinted when its upstream's list is
//! read and assessed against its pin ([`portcullis_core::pin::assess`]); tools whose definition
//! is not the approved one are held back from lists and calls. First-use pins and sightings of
//! changed definitions are written to the store by one background task, so catalog rebuilds
//! never wait on the disk; approvals made by another process (`portcullis tools approve`) are
//! picked up by polling the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::catalog::{Catalog, Entry, Kind};
use portcullis_core::pin::{Assessment, Fingerprint, Hold, assess};
use portcullis_store::{Pin, Store, StoreError};
use serde_json::Value;
use tokio::sync::mpsc;

/// How often the store is re-read for approvals made elsewhere.
pub const POLL: Duration = Duration::from_secs(2);

/// What this gateway may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinMode {
    /// Pin on first use (when configured) and record sightings: a serving gateway.
    Record,
    /// Assess only, write nothing: `portcullis scan` looks before anything is trusted.
    ReadOnly,
}

/// `(upstream name, tool name at the upstream)`.
type Key = (String, String);

enum Write {
    FirstUse(Pin),
    Sighting {
        pin: Pin,
    },
    /// Answered once every write queued before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The pin book of one gateway.
#[derive(Debug)]
pub struct Pins {
    store: Store,
    book: Mutex<HashMap<Key, String>>,
    trust_on_first_use: bool,
    hold_on: Option<portcullis_core::scan::Severity>,
    writes: Option<mpsc::UnboundedSender<Write>>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::FirstUse(p) => write!(f, "FirstUse({}/{})", p.upstream, p.tool),
            Write::Sighting { pin } => write!(f, "Sighting({}/{})", pin.upstream, pin.tool),
            Write::Flush(_) => f.write_str("Flush"),
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Pins {
    /// Loads the pins from `store`. In [`PinMode::Record`] a writer task is started (call from
    /// inside a tokio runtime).
    pub async fn load(
        store: Store,
        trust_on_first_use: bool,
        hold_on: Option<portcullis_core::scan::Severity>,
        mode: PinMode,
    ) -> Result<Pins, StoreError> {
        let book = store
            .pins()
            .await?
            .into_iter()
            .map(|p| ((p.upstream, p.tool), p.hash))
            .collect();
        let writes = match mode {
            PinMode::ReadOnly => None,
            PinMode::Record => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(writer(store.clone(), rx));
                Some(tx)
            }
        };
        Ok(Pins {
            store,
            book: Mutex::new(book),
            trust_on_first_use,
            hold_on,
            writes,
        })
    }

    /// The store the pins live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The fingerprint of a catalog entry: the definition as its upstream listed it (its own
    /// name, not the exposed one).
    pub fn fingerprint(entry: &Entry) -> Fingerprint {
        let mut def = entry.definition.to_value();
        if let Value::Object(m) = &mut def {
            m.insert("name".into(), Value::String(entry.original.clone()));
        }
        Fingerprint::of(&def)
    }

    /// The severity at which a new tool's findings hold it back (`None`: never).
    pub fn hold_on(&self) -> Option<portcullis_core::scan::Severity> {
        self.hold_on
    }

    /// Assesses every tool of a freshly built catalog and holds back those not approved.
    /// `upstream_name` maps an entry's upstream index to its configured name; `flagged` gives,
    /// by exposed name, the worst scanner finding at or above `hold_on` (rule, message): a
    /// tool seen for the first time with one is held instead of pinned.
    pub fn apply(
        &self,
        catalog: &mut Catalog,
        upstream_name: impl Fn(usize) -> String,
        flagged: &HashMap<String, (String, String)>,
    ) {
        let mut held = HashMap::new();
        {
            let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in catalog.entries(Kind::Tool) {
                let fp = Pins::fingerprint(entry);
                let key = (upstream_name(entry.upstream), entry.original.clone());
                let pin = Pin {
                    upstream: key.0.clone(),
                    tool: key.1.clone(),
                    hash: fp.hash.clone(),
                    definition: fp.canonical,
                    approved_at: now_unix(),
                    approved_by: "first-use".into(),
                };
                let mut assessment = assess(book.get(&key).map(String::as_str), &fp.hash, self.trust_on_first_use);
                if matches!(assessment, Assessment::PinNow | Assessment::Held(Hold::Unapproved))
                    && let Some((rule, message)) = flagged.get(&entry.exposed)
                {
                    assessment = Assessment::Held(Hold::Flagged {
                        rule: rule.clone(),
                        message: message.clone(),
                    });
                }
                match assessment {
                    Assessment::Trusted => {}
                    Assessment::PinNow => {
                        if self.writes.is_some() {
                            tracing::info!(upstream = %key.0, tool = %key.1, hash = %fp.hash, "tool pinned on first use");
                            book.insert(key, fp.hash);
                            self.send(Write::FirstUse(pin));
                        }
                        // Read-only: trusted on first use for this look, pinned by nobody.
                    }
                    Assessment::Held(hold) => {
                        match &hold {
                            Hold::Changed { pinned } => {
                                tracing::error!(upstream = %key.0, tool = %key.1, pinned = %pinned, current = %fp.hash, "tool definition changed since approval; quarantined");
                            }
                            Hold::Unapproved => {
                                tracing::warn!(upstream = %key.0, tool = %key.1, hash = %fp.hash, "new tool held until approved");
                            }
                            Hold::Flagged { rule, message } => {
                                tracing::error!(upstream = %key.0, tool = %key.1, hash = %fp.hash, rule = %rule, "new tool held: its definition looks poisoned: {message}");
                            }
                        }
                        self.send(Write::Sighting { pin });
                        held.insert(entry.exposed.clone(), hold);
                    }
                }
            }
        }
        catalog.hold_tools(held);
    }

    fn send(&self, w: Write) {
        if let Some(tx) = &self.writes
            && tx.send(w).is_err()
        {
            tracing::error!("the pin writer has stopped; pins are kept in memory only");
        }
    }

    /// Waits until every pin and sighting queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writes.as_ref().is_some_and(|w| w.send(Write::Flush(tx)).is_ok()) {
            let _ = rx.await;
        }
    }

    /// Re-reads the store; returns whether any pin differs from the book (another process
    /// approved a definition).
    pub async fn reload(&self) -> Result<bool, StoreError> {
        let stored = self.store.pins().await?;
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = false;
        for p in stored {
            let key = (p.upstream, p.tool);
            if book.get(&key) != Some(&p.hash) {
                book.insert(key, p.hash);
                changed = true;
            }
        }
        Ok(changed)
    }
}

impl Pins {
    /// Whether a tool has a pin (in this process's view).
    pub fn is_pinned(&self, upstream: &str, tool: &str) -> bool {
        self.book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&(upstream.to_owned(), tool.to_owned()))
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(w) = rx.recv().await {
        let result = match &w {
            Write::Flush(_) => Ok(()),
            Write::FirstUse(pin) => store.pin_first_use(pin).await.map(|_| ()),
            Write::Sighting { pin } => {
                store
                    .record_sighting(&pin.upstream, &pin.tool, &pin.hash, &pin.definition, pin.approved_at)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(write = ?w, error = %e, "could not persist a pin");
        }
        if let Write::Flush(done) = w {
            let _ = done.send(());
        }
    }
}
