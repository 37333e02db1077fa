//! IMAP + SMTP, for any provider: LOGIN with a password or app password, or SASL XOAUTH2
//! with an access token. Authenticated IMAP sessions are kept for reuse (a few, checked with
//! NOOP before each use, dropped after an error or a long idle), without IDLE.

use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, Fetched, Flags, MailError, MsgRef, Naming, Outgoing, Query};
use crate::config::{Credential, Servers};
use crate::{render, smtp};

fn server(e: async_imap::error::Error) -> MailError {
    use async_imap::error::Error;
    MailError::Server(match e {
        Error::No(raw) => format!("no: {}", refusal(&raw)),
        Error::Bad(raw) => format!("bad command: {}", refusal(&raw)),
        other => other.to_string(),
    })
}

/// A NO or BAD answer as a person reads it. async-imap hands them over as the Rust debug form
/// `code: Some(TryCreate), info: Some("Mailbox doesn't exist: Sent")`: the server's own text,
/// with what its response code means where that helps.
fn refusal(raw: &str) -> String {
    let info = raw
        .split_once("info: Some(\"")
        .and_then(|(_, r)| r.rsplit_once("\")"))
        .map(|(i, _)| i.replace("\\\"", "\""));
    let code = raw
        .strip_prefix("code: Some(")
        .and_then(|r| r.split_once(')'))
        .map(|(c, _)| c);
    let hint = match code {
        Some("TryCreate") | Some("NonExistent") => Some("the folder does not exist"),
        Some("NoPerm") => Some("the account may not do this"),
        Some("OverQuota") => Some("the mailbox is over its quota"),
        Some("Limit") => Some("a server limit was reached"),
        _ => None,
    };
    match (info, hint) {
        (Some(i), Some(h)) => format!("{i} ({h})"),
        (Some(i), None) => i,
        (None, Some(h)) => h.to_owned(),
        (None, None) => "no reason given".to_owned(),
    }
}

/// A connection, plain or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// The TLS client configuration: the public web roots, plus the extra anchors (PEM).
pub fn tls_config(ca_pem: Option<&[u8]>) -> Result<std::sync::Arc<rustls::ClientConfig>, MailError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| MailError::Invalid(format!("the CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| MailError::Invalid(format!("the CA file: {e}")))?;
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| MailError::Invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// The host part of `host:port`.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']'])
}

/// SASL XOAUTH2's initial client response (the format Google and Microsoft document).
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Answers the XOAUTH2 exchange: the token first; an empty response to the error challenge
/// that follows a refusal, so the server ends the exchange with its NO.
struct XOAuth2(Option<String>);

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.0.take().unwrap_or_default()
    }
}

/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest an idle session is kept.
const IDLE_FOR: Duration = Duration::from_secs(120);
/// Idle sessions kept by default.
pub const POOL: usize = 4;

async fn connect(s: &Servers) -> Result<Session, MailError> {
    let secret = s.credential.secret()?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&s.imap))
        .await
        .map_err(|_| MailError::Connect(s.imap.clone(), "timed out".into()))?
        .map_err(|e| MailError::Connect(s.imap.clone(), e.to_string()))?;
    let io: Box<dyn Io> = match s.imap_security {
        crate::config::Security::None => Box::new(tcp),
        _ => {
            let name = rustls::pki_types::ServerName::try_from(host_of(&s.imap).to_owned())
                .map_err(|e| MailError::Invalid(format!("`{}`: {e}", s.imap)))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config(s.ca_pem.as_deref())?)
                .connect(name, tcp)
                .await
                .map_err(|e| MailError::Tls(s.imap.clone(), e.to_string()))?;
            Box::new(tls)
        }
    };
    let mut client = async_imap::Client::new(io);
    // The server's greeting.
    client
        .read_response()
        .await
        .map_err(|e| MailError::Connect(s.imap.clone(), e.to_string()))?;
    if matches!(s.credential, Credential::Token(_)) {
        client
            .authenticate("XOAUTH2", XOAuth2(Some(xoauth2(&s.user, secret))))
            .await
    } else {
        client.login(&s.user, secret).await
    }
    .map_err(|_| MailError::Auth(s.user.clone()))
}

/// An IMAP quoted string; CR and LF cannot be quoted and are refused.
pub fn quoted(text: &str) -> Result<String, MailError> {
    if text.contains(['\r', '\n']) {
        return Err(MailError::Invalid("search text must be one line".into()));
    }
    Ok(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// The IMAP SEARCH criteria of `q`, every value quoted.
pub fn criteria(q: &Query) -> Result<String, MailError> {
    if q.native.is_some() {
        return Err(MailError::Invalid(
            "`query` is Gmail's search language; over IMAP use from, subject, text and unseen".into(),
        ));
    }
    let mut parts = Vec::new();
    for (key, v) in [("FROM", &q.from), ("SUBJECT", &q.subject), ("TEXT", &q.text)] {
        if let Some(v) = v {
            parts.push(format!("{key} {}", quoted(v)?));
        }
    }
    if q.unseen {
        parts.push("UNSEEN".into());
    }
    // RFC 3501 dates: `1-Feb-2026`, English month names.
    for (key, day) in [("SINCE", &q.since), ("BEFORE", &q.before)] {
        if let Some(d) = day {
            parts.push(format!("{key} {}", d.format("%-d-%b-%Y")));
        }
    }
    if parts.is_empty() {
        parts.push("ALL".into());
    }
    Ok(parts.join(" "))
}

fn header_summary(uid: u32, raw: &[u8]) -> Value {
    let mut out = Map::new();
    out.insert("uid".into(), json!(uid));
    out.extend(render::summary(raw));
    Value::Object(out)
}

fn uid_of(m: &MsgRef) -> Result<u32, MailError> {
    m.id.parse()
        .map_err(|_| MailError::Invalid(format!("`{}` is not a message uid", m.id)))
}

fn not_found(m: &MsgRef) -> MailError {
    MailError::NotFound(format!("no message with uid {} in `{}`", m.id, m.folder))
}

/// The IMAP + SMTP backend: the servers, and the idle IMAP sessions kept for reuse.
#[derive(Debug)]
pub struct ImapSmtp {
    servers: Servers,
    drafts: String,
    trash: String,
    /// Where a copy of each sent message is filed, when the provider does not do it.
    sent: SentCopy,
    submission: smtp::Submission,
    idle: tokio::sync::Mutex<Vec<(Session, Instant)>>,
    keep_at_most: usize,
}

impl ImapSmtp {
    /// The backend over `servers`, with these Drafts and Trash folders, keeping at most
    /// `pool` idle sessions (0: a new session for every call).
    pub fn new(servers: Servers, drafts: String, trash: String, pool: usize) -> ImapSmtp {
        ImapSmtp {
            servers,
            drafts,
            trash,
            sent: SentCopy::Auto,
            submission: smtp::Submission::new(smtp::POOL),
            idle: tokio::sync::Mutex::new(Vec::new()),
            keep_at_most: pool,
        }
    }

    /// Keeps at most `keep` idle submission connections (default [`smtp::POOL`]; 0: a
    /// connection per send).
    pub fn keeping_smtp(mut self, keep: usize) -> ImapSmtp {
        self.submission = smtp::Submission::new(keep);
        self
    }

    /// Where a copy of each sent message is filed (default [`SentCopy::Auto`]).
    pub fn saving_sent(mut self, sent: SentCopy) -> ImapSmtp {
        self.sent = sent;
        self
    }

    /// The folder a sent message should be filed in under [`SentCopy::Auto`]: the mailbox's
    /// `\Sent` folder (RFC 6154), unless the provider files sent mail itself — Gmail (its
    /// `X-GM-EXT-1` capability) always does, and a provider that already filed this message
    /// (found there by its Message-ID) did. `Ok(None)`: nothing to file.
    async fn auto_sent_folder(&self, message_id: &str) -> Result<Option<String>, MailError> {
        let mut session = self.session().await?;
        if session.capabilities().await.map_err(server)?.has_str("X-GM-EXT-1") {
            self.keep(session).await;
            return Ok(None);
        }
        let sent: Vec<String> = session
            .list(Some(""), Some("*"))
            .await
            .map_err(server)?
            .try_filter(|n| {
                let is_sent = n
                    .attributes()
                    .iter()
                    .any(|a| matches!(a, async_imap::types::NameAttribute::Sent));
                std::future::ready(is_sent)
            })
            .map_ok(|n| n.name().to_owned())
            .try_collect()
            .await
            .map_err(server)?;
        let Some(folder) = sent.into_iter().next() else {
            self.keep(session).await;
            return Err(MailError::Server(
                "the mailbox has no folder marked \\Sent (RFC 6154); pass --sent-folder NAME, or --no-sent-copy".into(),
            ));
        };
        session.select(&folder).await.map_err(server)?;
        let id = message_id.replace(['"', '\\', '\r', '\n'], "");
        let found = session
            .uid_search(format!("HEADER Message-ID \"{id}\""))
            .await
            .map_err(server)?;
        self.keep(session).await;
        Ok(found.is_empty().then_some(folder))
    }

    /// An authenticated session: a kept one that still answers NOOP, else a new one.
    async fn session(&self) -> Result<Session, MailError> {
        loop {
            let kept = self.idle.lock().await.pop();
            match kept {
                Some((mut session, since)) if since.elapsed() < IDLE_FOR => {
                    if session.noop().await.is_ok() {
                        return Ok(session);
                    }
                }
                Some(_) => {}
                None => return connect(&self.servers).await,
            }
        }
    }

    /// Keeps a session that finished its work cleanly, for the next call (a session that
    /// failed is dropped where it failed, so nothing half-done is reused); one not kept is
    /// logged out.
    async fn keep(&self, mut session: Session) {
        let mut idle = self.idle.lock().await;
        if idle.len() < self.keep_at_most {
            idle.push((session, Instant::now()));
        } else {
            drop(idle);
            let _ = session.logout().await;
        }
    }

    /// Selects `m`'s folder and checks the message is there.
    async fn select(&self, session: &mut Session, m: &MsgRef) -> Result<u32, MailError> {
        let uid = uid_of(m)?;
        session.select(&m.folder).await.map_err(server)?;
        let found = session.uid_search(format!("UID {uid}")).await.map_err(server)?;
        if !found.contains(&uid) {
            return Err(not_found(m));
        }
        Ok(uid)
    }

    async fn append(&self, folder: &str, flags: Option<&str>, bytes: &[u8]) -> Result<(), MailError> {
        let mut session = self.session().await?;
        session.append(folder, flags, None, bytes).await.map_err(server)?;
        self.keep(session).await;
        Ok(())
    }
}

/// Where a copy of a sent message goes: Dovecot's and many providers' submission servers do
/// not file one, Gmail's and Outlook's do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentCopy {
    /// The `\Sent` folder, unless the provider filed the message itself.
    Auto,
    /// Always this folder.
    Folder(String),
    /// Never.
    Off,
}

impl Backend for ImapSmtp {
    const NAMING: Naming = Naming::Uid;
    const DESCRIPTION: &'static str = "Email over IMAP and SMTP.";
    const READS_RECIPIENTS_FROM_MESSAGE: bool = false;

    async fn folders(&self) -> Result<Vec<String>, MailError> {
        let mut session = self.session().await?;
        let names: Vec<String> = session
            .list(Some(""), Some("*"))
            .await
            .map_err(server)?
            .map_ok(|n| n.name().to_owned())
            .try_collect()
            .await
            .map_err(server)?;
        self.keep(session).await;
        Ok(names)
    }

    async fn search(&self, folder: &str, q: &Query, limit: usize) -> Result<Vec<Value>, MailError> {
        let criteria = criteria(q)?;
        let mut session = self.session().await?;
        session.select(folder).await.map_err(server)?;
        let mut uids: Vec<u32> = session
            .uid_search(&criteria)
            .await
            .map_err(server)?
            .into_iter()
            .collect();
        uids.sort_unstable_by(|a, b| b.cmp(a));
        uids.truncate(limit);
        let mut out = Vec::new();
        if !uids.is_empty() {
            let set: Vec<String> = uids.iter().map(u32::to_string).collect();
            let fetched: Vec<_> = session
                .uid_fetch(set.join(","), "(UID BODY.PEEK[HEADER])")
                .await
                .map_err(server)?
                .try_collect()
                .await
                .map_err(server)?;
            for f in &fetched {
                if let (Some(uid), Some(h)) = (f.uid, f.header()) {
                    out.push(header_summary(uid, h));
                }
            }
            out.sort_by_key(|v| std::cmp::Reverse(v["uid"].as_u64()));
        }
        self.keep(session).await;
        Ok(out)
    }

    async fn fetch(&self, m: &MsgRef) -> Result<Fetched, MailError> {
        let uid = uid_of(m)?;
        let mut session = self.session().await?;
        session.select(&m.folder).await.map_err(server)?;
        let fetched: Vec<_> = session
            .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
            .await
            .map_err(server)?
            .try_collect()
            .await
            .map_err(server)?;
        self.keep(session).await;
        fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(|raw| Fetched {
                raw: raw.to_vec(),
                thread: None,
            })
            .ok_or_else(|| not_found(m))
    }

    async fn save_draft(&self, out: &Outgoing) -> Result<Map<String, Value>, MailError> {
        self.append(&self.drafts, Some("(\\Draft)"), &out.message.formatted())
            .await?;
        Ok(Map::new())
    }

    async fn send(&self, out: &Outgoing) -> Result<Map<String, Value>, MailError> {
        self.submission.send(&self.servers, &out.message).await?;
        let mut result = Map::new();
        // The message is gone: a failure to file it must not read as a failed send (a retry
        // would send it twice), so it is reported beside the success.
        let folder = match &self.sent {
            SentCopy::Off => None,
            SentCopy::Folder(folder) => Some(folder.clone()),
            SentCopy::Auto => match self.auto_sent_folder(&out.message_id).await {
                Ok(folder) => folder,
                Err(e) => {
                    result.insert("notSaved".into(), json!(format!("sent, but not filed: {e}")));
                    None
                }
            },
        };
        if let Some(folder) = folder {
            match self.append(&folder, Some("(\\Seen)"), &out.message.formatted()).await {
                Ok(()) => result.insert("savedTo".into(), json!(folder)),
                Err(e) => result.insert(
                    "notSaved".into(),
                    json!(format!("sent, but not filed in `{folder}`: {e}")),
                ),
            };
        }
        Ok(result)
    }

    async fn move_to(&self, m: &MsgRef, target: &str) -> Result<(), MailError> {
        let mut session = self.session().await?;
        let uid = self.select(&mut session, m).await?;
        session.uid_mv(uid.to_string(), target).await.map_err(server)?;
        self.keep(session).await;
        Ok(())
    }

    async fn set_flags(&self, m: &MsgRef, flags: &Flags) -> Result<(), MailError> {
        if !flags.add_labels.is_empty() || !flags.remove_labels.is_empty() {
            return Err(MailError::Invalid(
                "labels are a Gmail feature; IMAP has folders".into(),
            ));
        }
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for (set, flag) in [(flags.read, "\\Seen"), (flags.starred, "\\Flagged")] {
            match set {
                Some(true) => add.push(flag),
                Some(false) => remove.push(flag),
                None => {}
            }
        }
        let mut session = self.session().await?;
        let uid = self.select(&mut session, m).await?;
        for (sign, flags) in [("+", add), ("-", remove)] {
            if flags.is_empty() {
                continue;
            }
            let changed: Vec<_> = session
                .uid_store(uid.to_string(), format!("{sign}FLAGS.SILENT ({})", flags.join(" ")))
                .await
                .map_err(server)?
                .try_collect()
                .await
                .map_err(server)?;
            drop(changed);
        }
        self.keep(session).await;
        Ok(())
    }

    async fn trash(&self, m: &MsgRef) -> Result<(), MailError> {
        self.move_to(m, &self.trash).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_refusals_read_as_the_servers_words_not_rust_debug_output() {
        assert_eq!(
            refusal(r#"code: Some(TryCreate), info: Some("Mailbox doesn't exist: Sent")"#),
            "Mailbox doesn't exist: Sent (the folder does not exist)"
        );
        assert_eq!(refusal(r#"code: None, info: Some("Say \"hi\"")"#), r#"Say "hi""#);
        assert_eq!(refusal("code: None, info: None"), "no reason given");
        let e = server(async_imap::error::Error::No(
            r#"code: Some(TryCreate), info: Some("Mailbox doesn't exist: Sent")"#.into(),
        ));
        assert!(!e.to_string().contains("Some("), "{e}");
    }

    #[test]
    fn search_values_are_quoted_and_cannot_inject_commands() {
        let q = Query {
            from: Some("bob\" OR ALL".into()),
            subject: Some("a\\b".into()),
            unseen: true,
            ..Query::default()
        };
        assert_eq!(
            criteria(&q).ok().as_deref(),
            Some(r#"FROM "bob\" OR ALL" SUBJECT "a\\b" UNSEEN"#)
        );
        assert!(quoted("x\r\nA1 DELETE INBOX").is_err());
        assert_eq!(criteria(&Query::default()).ok().as_deref(), Some("ALL"));
        let days = Query {
            since: chrono::NaiveDate::from_ymd_opt(2026, 2, 1),
            before: chrono::NaiveDate::from_ymd_opt(2026, 12, 17),
            ..Query::default()
        };
        assert_eq!(
            criteria(&days).ok().as_deref(),
            Some("SINCE 1-Feb-2026 BEFORE 17-Dec-2026")
        );
        let native = Query {
            native: Some("is:unread".into()),
            ..Query::default()
        };
        assert!(criteria(&native).is_err());
    }

    #[test]
    fn xoauth2_is_the_documented_initial_response() {
        assert_eq!(
            xoauth2("alice@example.test", "ya29.t"),
            "user=alice@example.test\u{1}auth=Bearer ya29.t\u{1}\u{1}"
        );
    }
}
