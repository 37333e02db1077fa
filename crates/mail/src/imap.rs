//! IMAP: one authenticated session per call (no pooling yet), folders, search, fetch.

use futures::TryStreamExt as _;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::render;

/// A mail operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server could not be reached.
    #[error("cannot reach the mail server at {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed (an untrusted or mismatched certificate, say).
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    /// The server refused the credentials.
    #[error("the mail server refused the login for `{0}`")]
    Auth(String),
    /// The server answered an error.
    #[error("the mail server said: {0}")]
    Server(String),
    /// The request cannot be expressed safely.
    #[error("{0}")]
    Invalid(String),
    /// No such message.
    #[error("no message with uid {uid} in `{folder}`")]
    NotFound {
        /// The folder.
        folder: String,
        /// The uid.
        uid: u32,
    },
}

fn server(e: impl std::fmt::Display) -> MailError {
    MailError::Server(e.to_string())
}

/// A connection, plain or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// The TLS client configuration: the public web roots, plus the configured CA file.
pub fn tls_config(s: &Settings) -> Result<std::sync::Arc<rustls::ClientConfig>, MailError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &s.ca_pem {
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

async fn session(s: &Settings) -> Result<Session, MailError> {
    let tcp = tokio::net::TcpStream::connect(&s.imap)
        .await
        .map_err(|e| MailError::Connect(s.imap.clone(), e.to_string()))?;
    let io: Box<dyn Io> = match s.imap_security {
        crate::config::Security::None => Box::new(tcp),
        _ => {
            let name = rustls::pki_types::ServerName::try_from(host_of(&s.imap).to_owned())
                .map_err(|e| MailError::Invalid(format!("`{}`: {e}", s.imap)))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config(s)?)
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
    client
        .login(&s.user, s.password.as_str())
        .await
        .map_err(|_| MailError::Auth(s.user.clone()))
}

/// An IMAP quoted string; CR and LF cannot be quoted and are refused.
pub fn quoted(text: &str) -> Result<String, MailError> {
    if text.contains(['\r', '\n']) {
        return Err(MailError::Invalid("search text must be one line".into()));
    }
    Ok(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// Every folder's name.
pub async fn folders(s: &Settings) -> Result<Vec<String>, MailError> {
    let mut session = session(s).await?;
    let names: Vec<String> = session
        .list(Some(""), Some("*"))
        .await
        .map_err(server)?
        .map_ok(|n| n.name().to_owned())
        .try_collect()
        .await
        .map_err(server)?;
    let _ = session.logout().await;
    Ok(names)
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
}

impl Query {
    /// The IMAP SEARCH criteria, every value quoted.
    pub fn criteria(&self) -> Result<String, MailError> {
        let mut parts = Vec::new();
        for (key, v) in [("FROM", &self.from), ("SUBJECT", &self.subject), ("TEXT", &self.text)] {
            if let Some(v) = v {
                parts.push(format!("{key} {}", quoted(v)?));
            }
        }
        if self.unseen {
            parts.push("UNSEEN".into());
        }
        if parts.is_empty() {
            parts.push("ALL".into());
        }
        Ok(parts.join(" "))
    }
}

fn header_summary(uid: u32, raw: &[u8]) -> Value {
    let m = mail_parser::MessageParser::default().parse(raw);
    let from = m
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_owned();
    json!({
        "uid": uid,
        "from": render::visible(&from),
        "subject": render::visible(m.as_ref().and_then(|m| m.subject()).unwrap_or_default()),
        "date": m.as_ref().and_then(|m| m.date()).map(|d| d.to_rfc3339()).unwrap_or_default(),
    })
}

/// The newest `limit` messages matching `q` in `folder`, newest first.
pub async fn search(s: &Settings, folder: &str, q: &Query, limit: usize) -> Result<Vec<Value>, MailError> {
    let criteria = q.criteria()?;
    let mut session = session(s).await?;
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
    let _ = session.logout().await;
    Ok(out)
}

/// One message, whole, as raw bytes (without marking it read).
pub async fn fetch(s: &Settings, folder: &str, uid: u32) -> Result<Vec<u8>, MailError> {
    let mut session = session(s).await?;
    session.select(folder).await.map_err(server)?;
    let fetched: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
        .await
        .map_err(server)?
        .try_collect()
        .await
        .map_err(server)?;
    let _ = session.logout().await;
    fetched
        .iter()
        .find(|f| f.uid == Some(uid))
        .and_then(|f| f.body())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| MailError::NotFound {
            folder: folder.to_owned(),
            uid,
        })
}

/// Stores a message (`bytes`, RFC 5322) in `folder` with `flags` (e.g. `(\\Draft)`).
pub async fn append(s: &Settings, folder: &str, flags: Option<&str>, bytes: &[u8]) -> Result<(), MailError> {
    let mut session = session(s).await?;
    session.append(folder, flags, None, bytes).await.map_err(server)?;
    let _ = session.logout().await;
    Ok(())
}

/// Moves message `uid` from `folder` to `target`.
pub async fn move_to(s: &Settings, folder: &str, uid: u32, target: &str) -> Result<(), MailError> {
    let mut session = session(s).await?;
    session.select(folder).await.map_err(server)?;
    let found = session.uid_search(format!("UID {uid}")).await.map_err(server)?;
    if !found.contains(&uid) {
        return Err(MailError::NotFound {
            folder: folder.to_owned(),
            uid,
        });
    }
    session.uid_mv(uid.to_string(), target).await.map_err(server)?;
    let _ = session.logout().await;
    Ok(())
}

/// Adds and removes flags (`\\Seen`, `\\Flagged`) on message `uid`.
pub async fn set_flags(s: &Settings, folder: &str, uid: u32, add: &[&str], remove: &[&str]) -> Result<(), MailError> {
    let mut session = session(s).await?;
    session.select(folder).await.map_err(server)?;
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
    let _ = session.logout().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_values_are_quoted_and_cannot_inject_commands() {
        let q = Query {
            from: Some("bob\" OR ALL".into()),
            subject: Some("a\\b".into()),
            text: None,
            unseen: true,
        };
        assert_eq!(
            q.criteria().ok().as_deref(),
            Some(r#"FROM "bob\" OR ALL" SUBJECT "a\\b" UNSEEN"#)
        );
        assert!(quoted("x\r\nA1 DELETE INBOX").is_err());
        assert_eq!(Query::default().criteria().ok().as_deref(), Some("ALL"));
    }
}
