//! The sandbox every stdio upstream runs in, in layers, each reported:
//!
//! 1. its own view of processes and mounts: new PID, mount, IPC and UTS namespaces (and a user
//!    namespace where the gateway is not root), a fresh `/proc`, a private `/tmp`;
//! 2. Landlock: read and execute only the system's folders, its own install folder, its `cwd`
//!    and what config declares; write only its private folders and what config declares; no
//!    signals to and no abstract sockets of anything outside;
//! 3. seccomp-bpf with `no_new_privs`: no `ptrace`, no reading other processes' memory, no
//!    mounts, no kernel code, no new namespaces after setup;
//! 4. limits: processes, open files, memory, no core dumps;
//! 5. an environment of its own: its declared variables and secrets, a minimal `PATH`, a
//!    private `HOME` and `TMPDIR`;
//! 6. its network: `none`, `loopback` (its own), or `any`.
//!
//! The gateway builds a [`Spec`] ([`plan`]) and starts the helper (`portcullis __sandbox`,
//! [`stage`]) in place of the upstream; `portcullis doctor` runs the helper as a probe.
//!
//! **Architecture invariant:** no `unsafe`: what the upstream inherits is set up in the
//! helper's own processes before it starts the upstream; the crate knows nothing of MCP.

pub mod layers;
pub mod plan;
pub mod report;
pub mod spec;
pub mod stage;

pub use report::{Report, Status};
pub use spec::{Layer, Limits, Network, Spec};
