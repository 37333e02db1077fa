//! What a sandboxed upstream gets: its command, its environment, the paths it may read,
//! execute and write, its network, its limits, and which layers must hold. The gateway builds
//! a [`Spec`] ([`crate::plan`]); the helper applies it ([`crate::stage`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where an upstream may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Nothing: a network namespace of its own with no interface up, and no TCP at all.
    None,
    /// Only itself: a network namespace of its own with its own loopback up (not the host's).
    Loopback,
    /// The host's network, as the gateway has it.
    #[default]
    Any,
}

impl Network {
    /// The word config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Loopback => "loopback",
            Network::Any => "any",
        }
    }
}

/// A layer of the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// Its own user namespace (when the gateway is not root).
    UserNamespace,
    /// Its own PID, mount, IPC and UTS namespaces, with a fresh `/proc` and a private `/tmp`.
    Namespaces,
    /// Its own network namespace (`network = "none"` or `"loopback"`).
    NetworkNamespace,
    /// The Landlock filesystem allow-list, and its signal and abstract-socket scoping.
    Landlock,
    /// The seccomp filter (with `no_new_privs`).
    Seccomp,
    /// Processes, open files, memory, no core dumps.
    Limits,
}

impl Layer {
    /// Every layer, in the order they are set up.
    pub const ALL: [Layer; 6] = [
        Layer::UserNamespace,
        Layer::Namespaces,
        Layer::NetworkNamespace,
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Limits,
    ];

    /// Its name, as config and `doctor` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::UserNamespace => "user-namespace",
            Layer::Namespaces => "namespaces",
            Layer::NetworkNamespace => "network-namespace",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Limits => "limits",
        }
    }

    /// The layer a config word names.
    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most processes (and threads) at once.
    pub processes: u64,
    /// Most open files.
    pub files: u64,
    /// Most memory (data segment: the heap and private writable mappings), bytes.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            processes: 256,
            files: 4096,
            memory: 4 << 30,
        }
    }
}

/// Everything the helper needs to start one sandboxed upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// A name for logs and the hostname (`portcullis-<name>`).
    pub name: String,
    /// The program, an absolute path.
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Paths it may read (and execute).
    pub read: Vec<PathBuf>,
    /// Paths it may write (and read).
    pub write: Vec<PathBuf>,
    /// Paths under a grant that it must still not reach (the gateway's state and keys, the
    /// person's credentials): covered inside its mount namespace by an empty read-only folder
    /// or `/dev/null`. If they cannot be covered, it does not start.
    #[serde(default)]
    pub mask: Vec<PathBuf>,
    /// Its network.
    pub network: Network,
    /// Its limits.
    pub limits: Limits,
    /// Layers it may start without when this kernel or user cannot have them (config's
    /// `accept_weaker`); every other layer must hold or the upstream does not start.
    pub optional: Vec<Layer>,
    /// A pids cgroup (v1 or v2) folder the helper may create a group under, when the gateway
    /// is root (the process limit of a root process is not enforced by `RLIMIT_NPROC`).
    pub cgroup: Option<PathBuf>,
    /// A probe (`portcullis doctor`): apply what can be had, report, start nothing.
    #[serde(default)]
    pub probe: bool,
    /// What the helper's first stage set up, for the second to report.
    #[serde(default)]
    pub report: crate::report::Report,
}

impl Spec {
    /// Whether `layer` must hold.
    pub fn requires(&self, layer: Layer) -> bool {
        !self.optional.contains(&layer)
    }
}

/// The environment variable the gateway hands the helper its spec in (JSON). The helper runs
/// with nothing else in its environment, makes itself non-dumpable at once, and gives the
/// upstream a fresh environment: the spec is never in the upstream's.
pub const SPEC_ENV: &str = "PORTCULLIS_SANDBOX_SPEC";
