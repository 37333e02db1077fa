//! Landlock: the filesystem allow-list (read and execute the system's folders, the command's
//! own install folder, its `cwd`, what the command line names and what config declares; write
//! only the private `/tmp`, the private home and what config declares), no TCP at all for
//! `network = "none"`, and scoping: no signals to, and no abstract Unix sockets of, anything
//! outside the sandbox.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};

use crate::spec::Network;

/// The ABI the rules are written for (Linux 6.12: scoping).
const TARGET: ABI = ABI::V6;

/// Why Landlock could not be put in force.
#[derive(Debug, thiserror::Error)]
#[error("landlock: {0}")]
pub struct FsError(String);

/// Device files every program expects.
const DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

fn existing(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).filter(|p| p.exists()).collect()
}

/// Restricts this process (and what it starts) to `read` and `write`. With `required`, a
/// kernel that cannot enforce all of it is an error; otherwise what it can is enforced.
/// Returns how it went (`FullyEnforced`, or `PartiallyEnforced`/`NotEnforced` when optional).
pub fn restrict(
    read: &[PathBuf],
    write: &[PathBuf],
    network: Network,
    required: bool,
) -> Result<RestrictionStatus, FsError> {
    let err = |e: &dyn std::fmt::Display| FsError(e.to_string());
    let compat = if required {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let all = AccessFs::from_all(TARGET);
    let read_access = AccessFs::from_read(TARGET);
    let mut ruleset = Ruleset::default()
        .set_compatibility(compat)
        .handle_access(all)
        .map_err(|e| err(&e))?;
    if network == Network::None {
        // A second wall beside the empty network namespace: no TCP bind or connect at all.
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| err(&e))?;
    }
    let ruleset = ruleset
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rules(path_beneath_rules(existing(read), read_access))
        .map_err(|e| err(&e))?
        .add_rules(path_beneath_rules(existing(write), all))
        .map_err(|e| err(&e))?
        .add_rules(path_beneath_rules(
            DEVICES.iter().map(Path::new).filter(|p| p.exists()),
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))
        .map_err(|e| err(&e))?;
    let status = ruleset.restrict_self().map_err(|e| err(&e))?;
    if required && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(FsError(format!("only {:?} on this kernel", status.ruleset)));
    }
    Ok(status)
}

/// The Landlock ABI this kernel offers (0: none).
pub fn kernel_abi() -> i32 {
    // The crate keeps ABI detection internal; a throwaway ruleset answers whether the target
    // ABI is fully enforceable, which is what `doctor` wants to know.
    match Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(TARGET))
        .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal))
        .and_then(|r| r.create())
    {
        Ok(_) => TARGET as i32,
        Err(_) => 0,
    }
}
