//! Sending through authenticated submission. Recipients are checked first: well-formed, not
//! too many, and within the allowed domains when a list is configured.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::config::{Security, Settings};
use crate::imap::MailError;
use crate::render;

/// The recipients as mailboxes, or why they are refused.
pub fn recipients(s: &Settings, to: &[String]) -> Result<Vec<Mailbox>, MailError> {
    if to.is_empty() {
        return Err(MailError::Invalid("at least one recipient is needed".into()));
    }
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

/// A reply's threading: the `In-Reply-To` and `References` headers.
#[derive(Debug, Default, Clone)]
pub struct Thread {
    /// The Message-ID answered.
    pub in_reply_to: Option<String>,
    /// The thread's Message-IDs, oldest first.
    pub references: Option<String>,
}

/// Builds a plain-text message from the account; it and its Message-ID.
pub fn build(
    s: &Settings,
    to: &[String],
    subject: &str,
    body: &str,
    thread: &Thread,
) -> Result<(Message, String), MailError> {
    let rcpt = recipients(s, to)?;
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
    if let Some(r) = &thread.in_reply_to {
        b = b.in_reply_to(r.clone());
    }
    if let Some(r) = &thread.references {
        b = b.references(r.clone());
    }
    let msg = b.body(body.to_owned()).map_err(|e| MailError::Invalid(e.to_string()))?;
    Ok((msg, id))
}

/// Sends one plain-text message; its Message-ID.
pub async fn send(
    s: &Settings,
    to: &[String],
    subject: &str,
    body: &str,
    thread: &Thread,
) -> Result<String, MailError> {
    let (msg, id) = build(s, to, subject, body, thread)?;
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
    let mailer = builder
        .port(port)
        .credentials(Credentials::new(s.user.clone(), s.password.as_str().to_owned()))
        .build();
    mailer.send(msg).await.map_err(|e| {
        let text = e.to_string().to_ascii_lowercase();
        if e.is_tls() || text.contains("certificate") {
            MailError::Tls(s.smtp.clone(), e.to_string())
        } else if text.contains("auth") {
            MailError::Auth(s.user.clone())
        } else {
            MailError::Server(e.to_string())
        }
    })?;
    Ok(id)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
