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

/// The password, never printed.
pub struct Password(String);

impl Password {
    /// The value, for the login.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Everything the server needs.
#[derive(Debug)]
pub struct Settings {
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
    /// The account (also the sender address).
    pub user: String,
    /// Its password or app password.
    pub password: Password,
    /// Which tools exist.
    pub profiles: Vec<Profile>,
    /// The folder drafts go to.
    pub drafts: String,
    /// The folder trashed messages go to.
    pub trash: String,
    /// Domains counted as internal in a message's provenance.
    pub internal_domains: Vec<String>,
    /// If set, the only recipient domains `send_message` accepts.
    pub allowed_domains: Vec<String>,
    /// Most recipients in one message.
    pub max_recipients: usize,
    /// Longest body returned before it is cut.
    pub max_body_chars: usize,
}

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No password in the environment.
    #[error("no password: set `{0}` in this server's environment (Portcullis sets it from its vault)")]
    NoPassword(&'static str),
    /// A server that is not on this machine, without TLS.
    #[error(
        "`{0}` is not a loopback address: a password must not cross a network in clear; use TLS (`--imap-security tls`, `--smtp-security starttls|tls`)"
    )]
    NotLoopback(String),
    /// IMAP STARTTLS is not offered (implicit TLS on 993 is the standard).
    #[error("IMAP supports `tls` or `none` (STARTTLS is not supported: use implicit TLS, port 993)")]
    ImapStarttls,
    /// The CA file cannot be read.
    #[error("cannot read the CA file `{0}`: {1}")]
    CaFile(String, String),
}

/// The environment variable holding the password.
pub const PASSWORD_ENV: &str = "MAIL_PASSWORD";

/// Whether `host:port` names this machine.
pub fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

impl Settings {
    /// Whether `p` is among the profiles.
    pub fn has(&self, p: Profile) -> bool {
        self.profiles.contains(&p)
    }

    /// Checks the settings and reads the password from the environment.
    #[allow(clippy::too_many_arguments, reason = "one per flag")]
    pub fn new(
        imap: (String, Security),
        smtp: (String, Security),
        ca_file: Option<std::path::PathBuf>,
        user: String,
        profiles: Vec<Profile>,
        internal_domains: Vec<String>,
        allowed_domains: Vec<String>,
        max_recipients: usize,
        password: Option<String>,
    ) -> Result<Settings, SettingsError> {
        let ((imap, imap_security), (smtp, smtp_security)) = (imap, smtp);
        for (a, sec) in [(&imap, imap_security), (&smtp, smtp_security)] {
            if sec == Security::None && !is_loopback(a) {
                return Err(SettingsError::NotLoopback(a.clone()));
            }
        }
        if imap_security == Security::Starttls {
            return Err(SettingsError::ImapStarttls);
        }
        let ca_pem = match ca_file {
            Some(p) => {
                Some(std::fs::read(&p).map_err(|e| SettingsError::CaFile(p.display().to_string(), e.to_string()))?)
            }
            None => None,
        };
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or(SettingsError::NoPassword(PASSWORD_ENV))?;
        Ok(Settings {
            imap,
            smtp,
            imap_security,
            smtp_security,
            ca_pem,
            user,
            password: Password(password),
            profiles,
            drafts: "Drafts".into(),
            trash: "Trash".into(),
            internal_domains: internal_domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            allowed_domains: allowed_domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            max_recipients: max_recipients.max(1),
            max_body_chars: 20_000,
        })
    }
}
