//! Sending through authenticated submission. Recipients are checked first: well-formed, not
//! too many, and within the allowed domains when a list is configured.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::backend::{MailError, Outgoing};
use crate::config::{Credential, Security, Servers, Settings};
use crate::render;

/// The recipients as mailboxes, or why they are refused.
pub fn recipients(s: &Settings, to: &[String]) -> Result<Vec<Mailbox>, MailError> {
    if to.len() > s.max_recipients {
        return Err(MailError::Invalid(format!(
            "{} recipients; this server sends to at most {} at once",
            to.len(),
            s.max_recipients
        )));
    }
    to.iter()
        .map(|r| {
            let m: Mailbox = r
                .parse()
                .map_err(|_| MailError::Invalid(format!("`{r}` is not an email address")))?;
            let d = render::domain(m.email.as_ref());
            if !s.allowed_domains.is_empty() && !s.allowed_domains.contains(&d) {
                return Err(MailError::Invalid(format!(
                    "`{r}` is outside the domains this server may send to ({})",
                    s.allowed_domains.join(", ")
                )));
            }
            Ok(m)
        })
        .collect()
}

/// A reply's threading: the `In-Reply-To` and `References` headers, and the backend's
/// conversation (Gmail's `threadId`).
#[derive(Debug, Default, Clone)]
pub struct Thread {
    /// The Message-ID answered.
    pub in_reply_to: Option<String>,
    /// The thread's Message-IDs, oldest first.
    pub references: Option<String>,
    /// The backend's conversation.
    pub id: Option<String>,
}

/// A file to attach, given as content in the call (never as a path).
#[derive(Debug)]
pub struct Attachment {
    /// Its file name, as the recipient sees it.
    pub name: String,
    /// Its media type.
    pub content_type: ContentType,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// An attachment from a call's `{name, mimeType, base64}`, checked: a plain file name
    /// (no folders, no control characters), a valid media type, valid base64.
    pub fn from_call(name: &str, mime: Option<&str>, base64: &str) -> Result<Attachment, MailError> {
        use base64::Engine as _;
        if name.is_empty()
            || name.len() > 255
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control)
            || name == "."
            || name == ".."
        {
            return Err(MailError::Invalid(format!(
                "attachment name `{}` must be a plain file name",
                name.escape_default()
            )));
        }
        let content_type = ContentType::parse(mime.unwrap_or("application/octet-stream"))
            .map_err(|_| MailError::Invalid(format!("`{}` is not a media type", mime.unwrap_or_default())))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64.trim())
            .map_err(|e| MailError::Invalid(format!("attachment `{name}`: not base64 ({e})")))?;
        Ok(Attachment {
            name: name.to_owned(),
            content_type,
            bytes,
        })
    }
}

/// A received attachment's name made safe to send on: the visible characters, no folders, no
/// control characters; `attachment-N` when nothing is left.
pub fn file_name(name: &str, index: usize) -> String {
    let clean: String = render::visible(name)
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(255)
        .collect();
    match clean.trim() {
        "" | "." | ".." => format!("attachment-{}", index + 1),
        t => t.to_owned(),
    }
}

/// Who a message goes to.
#[derive(Debug, Default, Clone)]
pub struct Addressees {
    /// `To`: at least one.
    pub to: Vec<String>,
    /// `Cc`.
    pub cc: Vec<String>,
    /// `Bcc`: in the envelope; in the message only where [`build`] is told to keep it.
    pub bcc: Vec<String>,
}

/// Builds a plain-text message from the account, with its attachments, ready to leave. Every
/// recipient (to, cc and bcc together) is checked, and counts toward `--max-recipients`. The
/// `Bcc` header is kept only with `keep_bcc` — for a draft, and for a backend that reads the
/// recipients from the message itself (the Gmail API, which removes it) — and otherwise only
/// the envelope names the hidden recipients.
pub fn build(
    s: &Settings,
    to: &Addressees,
    subject: &str,
    body: &str,
    thread: &Thread,
    attachments: Vec<Attachment>,
    keep_bcc: bool,
) -> Result<Outgoing, MailError> {
    if to.to.is_empty() {
        return Err(MailError::Invalid("at least one recipient is needed".into()));
    }
    let all: Vec<String> = to.to.iter().chain(&to.cc).chain(&to.bcc).cloned().collect();
    recipients(s, &all)?;
    let (rcpt, cc, bcc) = (recipients(s, &to.to)?, recipients(s, &to.cc)?, recipients(s, &to.bcc)?);
    let total: usize = attachments.iter().map(|a| a.bytes.len()).sum();
    if total > s.max_attachment_bytes {
        return Err(MailError::Invalid(format!(
            "the attachments have {total} bytes; at most {} may be sent",
            s.max_attachment_bytes
        )));
    }
    let from: Mailbox = s
        .user
        .parse()
        .map_err(|_| MailError::Invalid(format!("the account `{}` is not an address", s.user)))?;
    let domain = render::domain(&s.user);
    let id = format!("<{}.{}@{domain}>", std::process::id(), now_nanos());
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(id.clone()));
    for r in rcpt {
        b = b.to(r);
    }
    for r in cc {
        b = b.cc(r);
    }
    for r in bcc {
        b = b.bcc(r);
    }
    if keep_bcc {
        b = b.keep_bcc();
    }
    if let Some(r) = &thread.in_reply_to {
        b = b.in_reply_to(r.clone());
    }
    if let Some(r) = &thread.references {
        b = b.references(r.clone());
    }
    let msg = if attachments.is_empty() {
        b.body(body.to_owned())
    } else {
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body.to_owned()));
        for a in attachments {
            parts = parts.singlepart(lettre::message::Attachment::new(a.name).body(a.bytes, a.content_type));
        }
        b.multipart(parts)
    }
    .map_err(|e| MailError::Invalid(e.to_string()))?;
    Ok(Outgoing {
        message: msg,
        message_id: id,
        thread: thread.id.clone(),
    })
}

/// Idle submission connections kept for the next sends (0: a connection per send). Not kept by
/// default: against the loopback Dovecot submission a send on a kept connection took about 2.5
/// times as long at p50 as one on a new connection (BENCHMARKS.md, "portcullis-mail: keeping SMTP
/// connections").
pub const POOL: usize = 0;

/// The submission transport, built once and kept: its connections are pooled (at most `keep`,
/// each checked with NOOP before it is reused, closed after a minute unused), so a send
/// after the first skips the connection, TLS and authentication. With `keep` 0, a new
/// transport (and connection) for every send.
pub struct Submission {
    keep: usize,
    kept: std::sync::Mutex<Option<AsyncSmtpTransport<Tokio1Executor>>>,
}

impl std::fmt::Debug for Submission {
    // Not the transport: it holds the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl Submission {
    /// Keeping at most `keep` idle connections.
    pub fn new(keep: usize) -> Submission {
        Submission {
            keep,
            kept: std::sync::Mutex::new(None),
        }
    }

    /// Sends one message through authenticated submission: a password with PLAIN/LOGIN, an
    /// access token with XOAUTH2.
    pub async fn send(&self, s: &Servers, msg: &Message) -> Result<(), MailError> {
        let mailer = if self.keep == 0 {
            transport(s, 1)?
        } else {
            let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*kept {
                Some(m) => m.clone(),
                None => {
                    let m = transport(s, u32::try_from(self.keep).unwrap_or(u32::MAX))?;
                    *kept = Some(m.clone());
                    m
                }
            }
        };
        mailer.send(msg.clone()).await.map_err(|e| {
            let text = e.to_string().to_ascii_lowercase();
            if e.is_tls() || text.contains("certificate") {
                MailError::Tls(s.smtp.clone(), e.to_string())
            } else if text.contains("auth")
                // A refused XOAUTH2 token comes back as a 334 challenge carrying the error,
                // which lettre reports as a client error.
                || (matches!(s.credential, Credential::Token(_)) && e.is_client() && text.contains("challenge"))
            {
                MailError::Auth(s.user.clone())
            } else {
                MailError::Server(e.to_string())
            }
        })?;
        Ok(())
    }
}

/// The transport to the submission server, keeping at most `keep` idle connections.
fn transport(s: &Servers, keep: u32) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let (host, port) = s
        .smtp
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_owned(), p)))
        .ok_or_else(|| MailError::Invalid(format!("`{}` is not host:port", s.smtp)))?;
    let builder = match s.smtp_security {
        // Plain: Settings admits it only for a server on this machine.
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        sec => {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(pem) = &s.ca_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| MailError::Invalid(format!("the CA file: {e}")))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| MailError::Tls(s.smtp.clone(), e.to_string()))?;
            let tls = if sec == Security::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(tls)
        }
    };
    let secret = s.credential.secret()?.to_owned();
    let mechanisms = if matches!(s.credential, Credential::Token(_)) {
        vec![Mechanism::Xoauth2]
    } else {
        vec![Mechanism::Plain, Mechanism::Login]
    };
    Ok(builder
        .port(port)
        .timeout(Some(std::time::Duration::from_secs(30)))
        .credentials(Credentials::new(s.user.clone(), secret))
        .authentication(mechanisms)
        .pool_config(
            lettre::transport::smtp::PoolConfig::new()
                .max_size(keep.max(1))
                .idle_timeout(std::time::Duration::from_secs(60)),
        )
        .build())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_attachment_names_are_made_plain_file_names() {
        assert_eq!(file_name("invoice.pdf", 0), "invoice.pdf");
        assert_eq!(file_name("../../etc/passwd", 0), ".._.._etc_passwd");
        assert_eq!(file_name("a\u{200B}b\r\n.txt", 0), "ab__.txt");
        assert_eq!(file_name("", 1), "attachment-2");
        assert_eq!(file_name("..", 0), "attachment-1");
    }

    fn settings(max_recipients: usize, allowed: &[&str]) -> Settings {
        Settings::new(
            "alice@example.test".into(),
            Vec::new(),
            Vec::new(),
            allowed.iter().map(|d| (*d).to_owned()).collect(),
            max_recipients,
        )
    }

    fn everyone() -> Addressees {
        Addressees {
            to: vec!["bob@example.test".into()],
            cc: vec!["carol@example.test".into()],
            bcc: vec!["dave@example.test".into()],
        }
    }

    /// Hidden recipients are in the envelope; in the message only where asked (a draft, or a
    /// backend that reads recipients from the message and removes `Bcc` itself).
    #[test]
    fn bcc_is_in_the_envelope_and_in_the_message_only_when_kept() {
        let s = settings(10, &[]);
        for keep in [false, true] {
            let out = build(&s, &everyone(), "s", "b", &Thread::default(), Vec::new(), keep).unwrap();
            let envelope: Vec<String> = out.message.envelope().to().iter().map(ToString::to_string).collect();
            assert_eq!(envelope.len(), 3, "{envelope:?}");
            assert!(envelope.contains(&"dave@example.test".to_owned()), "{envelope:?}");
            let text = String::from_utf8(out.message.formatted()).unwrap();
            assert!(text.contains("Cc: carol@example.test"), "{text}");
            assert_eq!(text.contains("dave@example.test"), keep, "{text}");
        }
    }

    /// Every recipient counts toward the limit and is held to the allowed domains, whether in
    /// to, cc or bcc.
    #[test]
    fn cc_and_bcc_are_checked_like_to() {
        let refused = |s: &Settings, to: &Addressees| {
            build(s, to, "s", "b", &Thread::default(), Vec::new(), false)
                .unwrap_err()
                .to_string()
        };
        let e = refused(&settings(2, &[]), &everyone());
        assert!(e.contains("3 recipients"), "{e}");
        let hidden = Addressees {
            to: vec!["bob@example.test".into()],
            cc: Vec::new(),
            bcc: vec!["mallory@evil.test".into()],
        };
        let e = refused(&settings(10, &["example.test"]), &hidden);
        assert!(e.contains("`mallory@evil.test` is outside"), "{e}");
        let e = refused(&settings(10, &[]), &Addressees::default());
        assert!(e.contains("at least one recipient"), "{e}");
    }
}
