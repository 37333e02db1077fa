//! Namespaces: the upstream's own user (when the gateway is not root), PID, mount, IPC and UTS
//! namespaces, and network namespace where config says so; a fresh `/proc` for its PID
//! namespace (it sees only its own processes), a private `/tmp` and `/dev/shm`, its own
//! hostname, and its own loopback up for `network = "loopback"`.

use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid, getegid, geteuid};

use crate::spec::Network;

/// Why a namespace step failed.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// `unshare` refused.
    #[error("cannot create namespaces ({what}): {source}")]
    Unshare {
        /// Which.
        what: String,
        /// Why.
        source: nix::Error,
    },
    /// Writing the user namespace's identity maps failed.
    #[error("cannot map the user namespace: {0}")]
    Map(std::io::Error),
    /// A mount failed.
    #[error("cannot mount {what}: {source}")]
    Mount {
        /// What.
        what: String,
        /// Why.
        source: nix::Error,
    },
    /// Bringing loopback up failed.
    #[error("cannot bring loopback up: {0}")]
    Loopback(String),
}

/// The namespaces to enter: always PID, mount, IPC and UTS; a user namespace when not root;
/// a network namespace unless the network is the host's.
pub fn flags(user: bool, network: Network) -> CloneFlags {
    let mut f =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if user {
        f |= CloneFlags::CLONE_NEWUSER;
    }
    if network != Network::Any {
        f |= CloneFlags::CLONE_NEWNET;
    }
    f
}

/// Enters new namespaces (this process: the next child it starts is PID 1 of the new PID
/// namespace). With a user namespace, maps this process's user and group to root inside it:
/// root of its own namespaces only (what it creates on disk is the gateway user's), so the
/// helper's second stage keeps the capabilities it needs to mount after `execve`, while on the
/// host it has none.
pub fn enter(flags: CloneFlags) -> Result<(), NsError> {
    let (uid, gid) = (geteuid(), getegid());
    unshare(flags).map_err(|source| NsError::Unshare {
        what: describe(flags),
        source,
    })?;
    if flags.contains(CloneFlags::CLONE_NEWUSER) {
        map_identity(uid, gid).map_err(NsError::Map)?;
    }
    Ok(())
}

fn describe(flags: CloneFlags) -> String {
    let mut names = Vec::new();
    for (f, n) in [
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWNET, "net"),
    ] {
        if flags.contains(f) {
            names.push(n);
        }
    }
    names.join(", ")
}

fn map_identity(uid: Uid, gid: Gid) -> std::io::Result<()> {
    // A non-dumpable process's /proc files belong to root: an unprivileged helper could not
    // write its own maps. Dumpable for these three writes only.
    let _ = nix::sys::prctl::set_dumpable(true);
    let written = (|| {
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))
    })();
    let _ = nix::sys::prctl::set_dumpable(false);
    written
}

fn mount_err(what: &str) -> impl FnOnce(nix::Error) -> NsError + '_ {
    move |source| NsError::Mount {
        what: what.to_owned(),
        source,
    }
}

/// Inside the new namespaces (as PID 1): mounts stop propagating to the host, `/proc` shows
/// this PID namespace only, `/dev/shm` is private and empty, and the hostname is the sandbox's
/// own. (`/tmp` stays the host's — a folder it was given may live there — but Landlock lets it
/// write only its private `TMPDIR`.)
pub fn settle(hostname: &str) -> Result<(), NsError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(mount_err("/ as private"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(mount_err("a fresh /proc"))?;
    if Path::new("/dev/shm").is_dir() {
        mount(
            Some("tmpfs"),
            "/dev/shm",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=256m"),
        )
        .map_err(mount_err("a private /dev/shm"))?;
    }
    // A hostname is cosmetic: a failure here is no reason to refuse the sandbox.
    let _ = nix::unistd::sethostname(hostname);
    Ok(())
}

/// Covers each of `paths` inside this mount namespace: a folder with an empty read-only
/// filesystem, a file with `/dev/null`. Done before Landlock and seccomp, which then forbid
/// undoing it.
pub fn mask(paths: &[std::path::PathBuf]) -> Result<(), NsError> {
    for p in paths {
        let what = format!("a cover over {}", p.display());
        if p.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_path(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=000"),
            )
            .map_err(mount_err(&what))?;
        } else {
            mount(
                Some("/dev/null"),
                p.as_path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(mount_err(&what))?;
        }
    }
    Ok(())
}

/// Brings the network namespace's own loopback interface (index 1) up, over rtnetlink.
pub fn loopback_up() -> Result<(), NsError> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| NsError::Loopback(e.to_string()))?;
    // struct nlmsghdr + struct ifinfomsg: RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, lo up.
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 1 | 4;
    const IFF_UP: u32 = 1;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
    msg.push(0); // family AF_UNSPEC
    msg.push(0); // pad
    msg.extend_from_slice(&0u16.to_ne_bytes()); // type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // change
    use std::os::fd::AsRawFd as _;
    sendto(fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(|e| NsError::Loopback(e.to_string()))?;
    let mut ack = [0u8; 128];
    let n = recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty()).map_err(|e| NsError::Loopback(e.to_string()))?;
    // struct nlmsgerr after the header: error 0 is the acknowledgement.
    let errno = ack
        .get(16..20)
        .filter(|_| n >= 20)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes);
    match errno {
        Some(0) => Ok(()),
        Some(e) => Err(NsError::Loopback(nix::Error::from_raw(-e).to_string())),
        None => Err(NsError::Loopback("no acknowledgement".into())),
    }
}
