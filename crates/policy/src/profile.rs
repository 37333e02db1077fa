//! The built-in policy profiles, shipped as Cedar text.

use std::fmt;
use std::str::FromStr;

/// A built-in set of policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Safe with no policy file: reads, writes and sends allowed; destructive calls need approval.
    #[default]
    Default,
    /// Forbids everything, whatever other policies permit.
    DenyAll,
    /// Allows only tools whose effect is `read`.
    ReadOnly,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Default, Profile::DenyAll, Profile::ReadOnly];

    /// The name used in config: `default`, `deny-all`, `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::DenyAll => "deny-all",
            Profile::ReadOnly => "read-only",
        }
    }

    /// The profile's Cedar policies.
    pub fn source(self) -> &'static str {
        match self {
            Profile::Default => include_str!("../profiles/default.cedar"),
            Profile::DenyAll => include_str!("../profiles/deny-all.cedar"),
            Profile::ReadOnly => include_str!("../profiles/read-only.cedar"),
        }
    }

    /// The name its policies are reported under, e.g. `<profile default>`.
    pub(crate) fn file_name(self) -> String {
        format!("<profile {}>", self.as_str())
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is none of `default`, `deny-all`, `read-only`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy profile `{0}`: expected one of `default`, `deny-all`, `read-only`")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}
