//! One trait over the two ways to a mailbox: IMAP + SMTP for any provider, and the Gmail REST
//! API (the only way to least privilege on Gmail: Gmail's IMAP and SMTP take OAuth only with
//! the full-access scope). The tools are written once against it; what differs is how a
//! message is named (an IMAP uid within a folder, or a Gmail id) and how it travels.

use std::future::Future;

use serde_json::{Map, Value};

/// A mail operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server could not be reached.
    #[error("cannot reach the mail server at {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed (an untrusted or mismatched certificate, say).
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    /// The credential is not in the environment.
    #[error(
        "no credential: `{0}` is not set in this server's environment (Portcullis sets it from its vault, or from `portcullis connect`)"
    )]
    NoCredential(&'static str),
    /// The server refused the credentials.
    #[error("the mail server refused the login for `{0}`")]
    Auth(String),
    /// The credential lacks the permission (an OAuth scope) the operation needs.
    #[error("the mail server refused: {0}")]
    Forbidden(String),
    /// The server answered an error.
    #[error("the mail server said: {0}")]
    Server(String),
    /// The request cannot be expressed safely.
    #[error("{0}")]
    Invalid(String),
    /// The mail server did not answer in time.
    #[error("no answer from the mail server within {secs} s{}", if *.sending { "; the message may or may not have gone out: look in Sent before trying again" } else { "" })]
    Timeout {
        /// The limit.
        secs: u64,
        /// Whether the call was sending (its outcome is unknown).
        sending: bool,
    },
    /// No such message (or folder, or label).
    #[error("{0}")]
    NotFound(String),
}

/// How the tools name a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `folder` + `uid` (an integer): IMAP.
    Uid,
    /// `id` (a string): Gmail.
    Id,
}

/// A message, as a tool call names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgRef {
    /// The folder (IMAP) or label (Gmail) it is in.
    pub folder: String,
    /// Its uid (IMAP, decimal) or id (Gmail).
    pub id: String,
}

/// A whole message as the backend returned it.
#[derive(Debug)]
pub struct Fetched {
    /// RFC 5322 bytes.
    pub raw: Vec<u8>,
    /// The conversation it belongs to, where the backend has one (Gmail).
    pub thread: Option<String>,
}

/// What `search_messages` looks for.
#[derive(Debug, Default)]
pub struct Query {
    /// Sender contains.
    pub from: Option<String>,
    /// Subject contains.
    pub subject: Option<String>,
    /// Anywhere in the message.
    pub text: Option<String>,
    /// Only unread ones.
    pub unseen: bool,
    /// Received on or after this day.
    pub since: Option<chrono::NaiveDate>,
    /// Received before this day.
    pub before: Option<chrono::NaiveDate>,
    /// A query in the backend's own language (Gmail's `q`); `None` where there is none.
    pub native: Option<String>,
}

/// Flag and label changes for `set_flags`: `None` leaves a flag as it is.
#[derive(Debug, Default)]
pub struct Flags {
    /// Read (IMAP `\Seen`; Gmail: without `UNREAD`).
    pub read: Option<bool>,
    /// Starred (IMAP `\Flagged`; Gmail `STARRED`).
    pub starred: Option<bool>,
    /// Labels to add, by name (Gmail).
    pub add_labels: Vec<String>,
    /// Labels to remove, by name (Gmail).
    pub remove_labels: Vec<String>,
}

/// A message ready to leave: built and checked, with the thread it continues.
#[derive(Debug)]
pub struct Outgoing {
    /// The message.
    pub message: lettre::Message,
    /// Its Message-ID.
    pub message_id: String,
    /// The backend's conversation it continues (Gmail `threadId`).
    pub thread: Option<String>,
}

/// Where the mail is. Every method is one tool's effect; the server above does the checking,
/// the parsing and the rendering, the same for every backend.
pub trait Backend: Send + Sync + 'static {
    /// How messages are named in tool arguments.
    const NAMING: Naming;
    /// What the server tells clients it speaks, for its instructions.
    const DESCRIPTION: &'static str;
    /// Whether the backend reads a message's recipients from the message itself (so its
    /// `Bcc` header must be kept for the backend to remove), rather than from an envelope.
    const READS_RECIPIENTS_FROM_MESSAGE: bool;

    /// Every folder's (label's) name.
    fn folders(&self) -> impl Future<Output = Result<Vec<String>, MailError>> + Send;

    /// The newest `limit` messages matching `q` in `folder`, newest first: one summary object
    /// each (the message's name, `from`, `subject`, `date`).
    fn search(
        &self,
        folder: &str,
        q: &Query,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Value>, MailError>> + Send;

    /// One message, whole, without marking it read.
    fn fetch(&self, m: &MsgRef) -> impl Future<Output = Result<Fetched, MailError>> + Send;

    /// Saves a draft; what the result adds (a draft id, say).
    fn save_draft(&self, out: &Outgoing) -> impl Future<Output = Result<Map<String, Value>, MailError>> + Send;

    /// Sends; what the result adds (the sent message's id and thread, say).
    fn send(&self, out: &Outgoing) -> impl Future<Output = Result<Map<String, Value>, MailError>> + Send;

    /// Moves a message to folder (label) `target`.
    fn move_to(&self, m: &MsgRef, target: &str) -> impl Future<Output = Result<(), MailError>> + Send;

    /// Changes flags and labels.
    fn set_flags(&self, m: &MsgRef, flags: &Flags) -> impl Future<Output = Result<(), MailError>> + Send;

    /// Moves a message to the trash (not deleted for good).
    fn trash(&self, m: &MsgRef) -> impl Future<Output = Result<(), MailError>> + Send;
}
