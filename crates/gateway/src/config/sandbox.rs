//! `[upstreams.NAME.sandbox]`: what a stdio upstream's sandbox lets it reach. On by default;
//! `sandbox = false` turns it off (loudly: the log, `doctor` and the admin page say so).
//!
//! ```toml
//! [upstreams.files.sandbox]
//! fs_read = ["~/Documents"]        # more it may read (the system, its install folder, its
//! fs_write = []                    #   cwd and the folders its command line names it may anyway)
//! network = "none"                 # "none" | "loopback" (its own) | "any" (the default)
//! processes = 256                  # and files = 4096, memory = "4GiB"
//! accept_weaker = ["landlock"]     # layers it may start without where the kernel lacks them
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use portcullis_sandbox::{Layer, Limits, Network};

/// One upstream's sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// More it may read.
    pub fs_read: Vec<PathBuf>,
    /// More it may write.
    pub fs_write: Vec<PathBuf>,
    /// Its network.
    pub network: Network,
    /// Its limits.
    pub limits: Limits,
    /// Layers it may start without.
    pub accept_weaker: Vec<Layer>,
    /// Its private folder (home, temporary files): `<sandbox_dir>/<upstream>`.
    pub private: PathBuf,
    /// What no sandbox may reach: the gateway's `data_dir`, the master key file.
    pub protected: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSandbox {
    Switch(bool),
    Table(RawSandboxTable),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSandboxTable {
    #[serde(default)]
    fs_read: Vec<String>,
    #[serde(default)]
    fs_write: Vec<String>,
    network: Option<String>,
    processes: Option<u64>,
    files: Option<u64>,
    memory: Option<String>,
    #[serde(default)]
    accept_weaker: Vec<String>,
}

/// `~/x` against the home; relative paths against `base`.
fn expand(p: &str, base: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    portcullis_sandbox::plan::absolute(Path::new(p), base)
}

/// `4GiB`, `512MiB`, `1G`, or bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Why a sandbox table is unacceptable: the key under it, and what is wrong.
pub(super) type Invalid = (Option<std::ops::Range<usize>>, &'static str, String);

/// Lowers the raw table; `None` for `sandbox = false`.
pub(super) fn lower(
    raw: Option<RawSandbox>,
    base: &Path,
    private: PathBuf,
    protected: Vec<PathBuf>,
) -> Result<Option<SandboxConfig>, Invalid> {
    let t = match raw {
        Some(RawSandbox::Switch(false)) => return Ok(None),
        Some(RawSandbox::Switch(true)) | None => RawSandboxTable::default(),
        Some(RawSandbox::Table(t)) => t,
    };
    let network = match t.network {
        None => Network::Any,
        Some(n) => match n.as_str() {
            "none" => Network::None,
            "loopback" => Network::Loopback,
            "any" => Network::Any,
            other => {
                return Err((
                    None,
                    "network",
                    format!("must be `none`, `loopback` or `any`, got `{other}`"),
                ));
            }
        },
    };
    let defaults = Limits::default();
    let memory = match t.memory {
        None => defaults.memory,
        Some(m) => parse_size(&m).filter(|v| *v >= 16 << 20).ok_or_else(|| {
            (
                None,
                "memory",
                format!("`{m}` is not a size of at least 16MiB, like `2GiB`"),
            )
        })?,
    };
    let mut accept_weaker = Vec::new();
    for l in t.accept_weaker {
        match Layer::parse(&l) {
            Some(layer) => accept_weaker.push(layer),
            None => {
                let names: Vec<&str> = Layer::ALL.iter().map(|l| l.as_str()).collect();
                return Err((
                    None,
                    "accept_weaker",
                    format!("`{l}` is no layer; the layers are {}", names.join(", ")),
                ));
            }
        }
    }
    Ok(Some(SandboxConfig {
        fs_read: t.fs_read.iter().map(|p| expand(p, base)).collect(),
        fs_write: t.fs_write.iter().map(|p| expand(p, base)).collect(),
        network,
        limits: Limits {
            processes: t.processes.unwrap_or(defaults.processes).clamp(8, 100_000),
            files: t.files.unwrap_or(defaults.files).clamp(64, 1 << 20),
            memory,
        },
        accept_weaker,
        private,
        protected,
    }))
}

/// Where the upstreams' private folders live when config does not say: outside the gateway's
/// `data_dir` (no upstream may reach that), one folder per `data_dir`.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("portcullis-{}", nix::unistd::getuid())));
    state.join("portcullis/sandbox").join(format!("{:016x}", h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
    }
}
