//! Limits: processes, open files and memory per upstream, and no core dumps. A process limit
//! is not enforced for root by `RLIMIT_NPROC`; a root gateway puts each sandbox in a pids
//! cgroup of its own (`pids.max`) instead, where one can be had.

use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, setrlimit};

use crate::spec::Limits;

/// Why a limit could not be set.
#[derive(Debug, thiserror::Error)]
#[error("limits: {0}")]
pub struct LimitError(String);

/// Sets the resource limits of this process (inherited by what it starts).
pub fn set(limits: &Limits) -> Result<(), LimitError> {
    let set = |r: Resource, v: u64, what: &str| {
        setrlimit(r, v, v).map_err(|e| LimitError(format!("cannot limit {what}: {e}")))
    };
    set(Resource::RLIMIT_CORE, 0, "core dumps")?;
    set(Resource::RLIMIT_NOFILE, limits.files, "open files")?;
    set(Resource::RLIMIT_DATA, limits.memory, "memory")?;
    set(Resource::RLIMIT_NPROC, limits.processes, "processes")?;
    Ok(())
}

/// A pids cgroup of this sandbox's own; dropping it leaves it and removes it.
#[derive(Debug)]
pub struct Group {
    dir: PathBuf,
    parent: PathBuf,
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::write(self.parent.join("cgroup.procs"), std::process::id().to_string());
        // The sandbox's processes are being killed with its PID namespace: give the kernel a
        // moment to empty the group.
        for _ in 0..20 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}

/// Where a root gateway can make pids cgroups: a cgroup v2 folder whose `cgroup.controllers`
/// lists `pids`, or the cgroup v1 `pids` hierarchy; `None` when neither is writable.
pub fn pids_root() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/sys/fs/cgroup"),
        PathBuf::from("/sys/fs/cgroup/unified"),
        PathBuf::from("/sys/fs/cgroup/pids"),
    ];
    candidates.into_iter().find(|c| {
        let v2 = std::fs::read_to_string(c.join("cgroup.controllers"))
            .is_ok_and(|s| s.split_whitespace().any(|w| w == "pids"))
            && std::fs::read_to_string(c.join("cgroup.subtree_control"))
                .is_ok_and(|s| s.split_whitespace().any(|w| w == "pids"));
        let v1 = c.join("pids.max").exists() || c.ends_with("pids") && c.join("cgroup.procs").exists();
        (v2 || v1) && writable(c)
    })
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Moves this process into a new pids cgroup under `root` capped at `max` (what it starts
/// follows it).
pub fn join_pids_group(root: &Path, name: &str, max: u64) -> Result<Group, LimitError> {
    let dir = root.join(format!("portcullis-{name}-{}", std::process::id()));
    std::fs::create_dir(&dir)
        .map_err(|e| LimitError(format!("cannot make a pids cgroup at {}: {e}", dir.display())))?;
    let group = Group {
        dir,
        parent: root.to_path_buf(),
    };
    std::fs::write(group.dir.join("pids.max"), max.to_string())
        .map_err(|e| LimitError(format!("cannot set pids.max: {e}")))?;
    std::fs::write(group.dir.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| LimitError(format!("cannot join the pids cgroup: {e}")))?;
    Ok(group)
}
