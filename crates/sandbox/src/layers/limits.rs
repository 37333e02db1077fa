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
    sweep(root);
    let mut salt = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt));
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let dir = root.join(format!("portcullis-{name}-{}-{salt}", std::process::id()));
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

/// Removes the empty groups sandboxes killed outright left behind (a killed helper cannot
/// remove its own). Only groups whose helper is gone: a live helper may have made its group
/// and not joined it yet.
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let Some(helper) = p.file_name().and_then(|n| n.to_str()).and_then(helper_pid) else {
            continue;
        };
        let gone = !Path::new(&format!("/proc/{helper}")).exists();
        if gone && std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|procs| procs.trim().is_empty()) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

/// The helper's pid in a group name `portcullis-{name}-{pid}-{salt}`.
fn helper_pid(group: &str) -> Option<u32> {
    let rest = group.strip_prefix("portcullis-")?;
    let mut parts = rest.rsplit('-');
    let _salt = parts.next()?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::helper_pid;

    #[test]
    fn group_names_give_their_helper() {
        assert_eq!(helper_pid("portcullis-mail-box-4242-0a1b2c3d"), Some(4242));
        assert_eq!(helper_pid("portcullis-4242"), None);
        assert_eq!(helper_pid("other-mail-4242-00"), None);
    }
}
