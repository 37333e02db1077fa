//! Settings: where the servers are and who we are, from flags; the password only from the
//! environment (set there by Portcullis from its vault), never from a flag or a file.

use std::fmt;

/// Which tools exist, beyond the reading ones (profiles add up: `--profile compose --profile
/// organize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Profile {
    /// Only the reading tools.
    ReadOnly,
    /// Adds drafts (`create_draft`); never sends.
    Compose,
    /// Adds sending (`send_message`, `reply`, `forward`).
    Send,
    /// Adds moving, flagging and trashing messages.
    Organize,
}

/// How a connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// TLS from the first byte (IMAP 993, SMTP 465).
    Tls,
    /// Plain, then STARTTLS before anything else (SMTP submission 587).
    Starttls,
    /// None: only for servers on this machine.
    None,
}

/// A credential, never printed: a password (or app password), or an OAuth access token.
pub enum Credential {
    /// `LOGIN` / SMTP `AUTH PLAIN`.
    Password(String),
    /// A bearer token: SASL `XOAUTH2` for IMAP and SMTP, `Authorization: Bearer` for the
    /// Gmail API.
    Token(String),
    /// Not in the environment (the variable named): the server still starts and lists its
    /// tools (so `portcullis connect` can compute the scopes before there is a token); every
    /// call that needs the mailbox says what is missing.
    Missing(&'static str),
}

impl Credential {
    /// The value, for the login; what is missing, if it is.
    pub fn secret(&self) -> Result<&str, crate::backend::MailError> {
        match self {
            Credential::Password(s) | Credential::Token(s) => Ok(s),
            Credential::Missing(env) => Err(crate::backend::MailError::NoCredential(env)),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(<redacted>)"),
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Missing(env) => write!(f, "Missing({env})"),
        }
    }
}

/// How the IMAP and SMTP servers are reached, and with which credential.
#[derive(Debug)]
pub struct Servers {
    /// IMAP `host:port`.
    pub imap: String,
    /// SMTP submission `host:port`.
    pub smtp: String,
    /// How the IMAP connection is protected.
    pub imap_security: Security,
    /// How the SMTP connection is protected.
    pub smtp_security: Security,
    /// Extra trust anchors (PEM), besides the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The account name for the login.
    pub user: String,
    /// Its password, app password or access token.
    pub credential: Credential,
}

/// Everything the server needs, whatever the backend.
#[derive(Debug)]
pub struct Settings {
    /// The account (also the sender address).
    pub user: String,
    /// Which tools exist.
    pub profiles: Vec<Profile>,
    /// The folder drafts go to (IMAP).
    pub drafts: String,
    /// The folder trashed messages go to (IMAP).
    pub trash: String,
    /// Domains counted as internal in a message's provenance.
    pub internal_domains: Vec<String>,
    /// If set, the only recipient domains `send_message` accepts.
    pub allowed_domains: Vec<String>,
    /// Most recipients in one message.
    pub max_recipients: usize,
    /// Longest body returned before it is cut.
    pub max_body_chars: usize,
    /// Largest attachment accepted for sending, in bytes (decoded).
    pub max_attachment_bytes: usize,
    /// Longest a tool call may take, connecting included.
    pub timeout: std::time::Duration,
}

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A server that is not on this machine, without TLS.
    #[error(
        "`{0}` is not a loopback address: a credential must not cross a network in clear; use TLS (`--imap-security tls`, `--smtp-security starttls|tls`, an https Gmail API URL)"
    )]
    NotLoopback(String),
    /// IMAP STARTTLS is not offered (implicit TLS on 993 is the standard).
    #[error("IMAP supports `tls` or `none` (STARTTLS is not supported: use implicit TLS, port 993)")]
    ImapStarttls,
    /// The CA file cannot be read.
    #[error("cannot read the CA file `{0}`: {1}")]
    CaFile(String, String),
    /// A flag the backend needs is missing.
    #[error("`--{0}` is required with the {1} backend")]
    Missing(&'static str, &'static str),
    /// The Gmail API URL is not usable.
    #[error("`{0}` is not an http(s) URL without credentials, query or fragment")]
    ApiUrl(String),
}

/// The environment variable holding the password or app password.
pub const PASSWORD_ENV: &str = "MAIL_PASSWORD";
/// The environment variable holding an OAuth access token.
pub const TOKEN_ENV: &str = "MAIL_ACCESS_TOKEN";

/// Whether `host:port` names this machine.
pub fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Reads the CA file, if one is named.
pub fn read_ca(ca_file: Option<std::path::PathBuf>) -> Result<Option<Vec<u8>>, SettingsError> {
    match ca_file {
        Some(p) => std::fs::read(&p)
            .map(Some)
            .map_err(|e| SettingsError::CaFile(p.display().to_string(), e.to_string())),
        None => Ok(None),
    }
}

/// The credential from the environment values: an access token when `oauth`, else a password;
/// `Missing` (naming the variable) when it is not there.
pub fn credential(oauth: bool, password: Option<String>, token: Option<String>) -> Credential {
    let (value, env) = if oauth {
        (token, TOKEN_ENV)
    } else {
        (password, PASSWORD_ENV)
    };
    match value.filter(|v| !v.is_empty()) {
        Some(v) if oauth => Credential::Token(v),
        Some(v) => Credential::Password(v),
        None => Credential::Missing(env),
    }
}

impl Servers {
    /// Checks where the servers are: without TLS, only on this machine; IMAP without
    /// STARTTLS.
    pub fn new(
        imap: (String, Security),
        smtp: (String, Security),
        ca_pem: Option<Vec<u8>>,
        user: String,
        credential: Credential,
    ) -> Result<Servers, SettingsError> {
        let ((imap, imap_security), (smtp, smtp_security)) = (imap, smtp);
        for (a, sec) in [(&imap, imap_security), (&smtp, smtp_security)] {
            if sec == Security::None && !is_loopback(a) {
                return Err(SettingsError::NotLoopback(a.clone()));
            }
        }
        if imap_security == Security::Starttls {
            return Err(SettingsError::ImapStarttls);
        }
        Ok(Servers {
            imap,
            smtp,
            imap_security,
            smtp_security,
            ca_pem,
            user,
            credential,
        })
    }
}

/// Checks the Gmail API's base URL: https, or http only on this machine; no user, query or
/// fragment. Returns it without a trailing slash.
pub fn gmail_api(url: &str) -> Result<String, SettingsError> {
    let bad = || SettingsError::ApiUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || rest.contains(['?', '#']) {
        return Err(bad());
    }
    match scheme {
        "https" => {}
        "http" if is_loopback(authority) || is_loopback(&format!("{authority}:0")) => {}
        "http" => return Err(SettingsError::NotLoopback(url.to_owned())),
        _ => return Err(bad()),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Settings {
    /// The settings every backend shares.
    pub fn new(
        user: String,
        profiles: Vec<Profile>,
        internal_domains: Vec<String>,
        allowed_domains: Vec<String>,
        max_recipients: usize,
    ) -> Settings {
        Settings {
            user,
            profiles,
            drafts: "Drafts".into(),
            trash: "Trash".into(),
            internal_domains: internal_domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            allowed_domains: allowed_domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            max_recipients: max_recipients.max(1),
            max_body_chars: 20_000,
            max_attachment_bytes: 10 * 1024 * 1024,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gmail_api_url_is_https_or_loopback() {
        assert_eq!(
            gmail_api("https://gmail.googleapis.com/").ok().as_deref(),
            Some("https://gmail.googleapis.com")
        );
        assert!(gmail_api("http://127.0.0.1:8080").is_ok());
        assert!(gmail_api("http://localhost").is_ok());
        assert!(matches!(
            gmail_api("http://gmail.googleapis.com"),
            Err(SettingsError::NotLoopback(_))
        ));
        for bad in [
            "ftp://x",
            "https://u:p@x",
            "https://x/?q=1",
            "gmail.googleapis.com",
            "https://",
        ] {
            assert!(gmail_api(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_credential_comes_from_the_right_variable_and_is_never_printed() {
        assert!(matches!(
            credential(false, None, Some("t".into())),
            Credential::Missing(PASSWORD_ENV)
        ));
        let missing = credential(true, Some("p".into()), Some(String::new()));
        assert!(matches!(missing, Credential::Missing(TOKEN_ENV)));
        assert!(missing.secret().is_err_and(|e| e.to_string().contains(TOKEN_ENV)));
        let c = credential(true, None, Some("ya29.secret".into()));
        assert_eq!(c.secret().ok(), Some("ya29.secret"));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
