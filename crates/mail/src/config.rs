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
    /// A server that is not on this machine: TLS is required for it, and not built yet.
    #[error(
        "`{0}` is not a loopback address: only loopback servers without TLS are supported so far (TLS is not built yet)"
    )]
    NotLoopback(String),
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
        imap: String,
        smtp: String,
        user: String,
        profiles: Vec<Profile>,
        internal_domains: Vec<String>,
        allowed_domains: Vec<String>,
        max_recipients: usize,
        password: Option<String>,
    ) -> Result<Settings, SettingsError> {
        for a in [&imap, &smtp] {
            if !is_loopback(a) {
                return Err(SettingsError::NotLoopback(a.clone()));
            }
        }
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or(SettingsError::NoPassword(PASSWORD_ENV))?;
        Ok(Settings {
            imap,
            smtp,
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
