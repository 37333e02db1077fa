//! The gateway's own process, hardened before anything else runs: not dumpable (no same-user
//! process reads its memory or its `/proc/<pid>/environ`, and no core file holds its keys),
//! and the master key out of its environment — `portcullis` re-executes itself once without
//! `PORTCULLIS_MASTER_KEY`, handing the key over on a pipe, so the environment block the kernel
//! shows never holds it again. No child is ever given the gateway's environment anyway.

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;

use portcullis_vault::ENV_KEY;
use zeroize::Zeroizing;

/// Where the re-executed process finds the key: an inherited pipe's descriptor.
const KEY_FD: &str = "PORTCULLIS_MASTER_KEY_FD";

/// Hardens this process; may re-execute it (and so not return) the first time.
pub fn at_start() {
    let _ = nix::sys::prctl::set_dumpable(false);
    if let Ok(fd) = std::env::var(KEY_FD) {
        take_key(&fd);
        return;
    }
    if std::env::var_os(ENV_KEY).is_none() {
        return;
    }
    if let Err(e) = reexec_without_key() {
        // The key stays where it was; the process is still not dumpable.
        eprintln!("portcullis: could not take the master key out of the environment ({e}); continuing");
    }
}

fn take_key(fd: &str) {
    let Ok(n) = fd.parse::<i32>() else { return };
    let mut text = Zeroizing::new(String::new());
    if let Ok(mut f) = std::fs::File::open(format!("/proc/self/fd/{n}")) {
        let _ = f.read_to_string(&mut text);
    }
    let _ = nix::unistd::close(n);
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if !trimmed.is_empty() {
        portcullis_vault::keep_env_key(trimmed);
    }
}

fn reexec_without_key() -> std::io::Result<()> {
    let key = Zeroizing::new(std::env::var(ENV_KEY).unwrap_or_default());
    let (read, write) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    {
        let mut w = std::fs::File::from(write);
        std::io::Write::write_all(&mut w, key.as_bytes())?;
    }
    let err = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env_remove(ENV_KEY)
        .env(KEY_FD, read.as_raw_fd().to_string())
        .exec();
    drop(read);
    Err(err)
}
