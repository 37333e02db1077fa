//! The plan of one sandbox: from what config says of an upstream to the [`Spec`] the helper
//! applies. What it may read: the system's folders, the command's own install folder (a
//! version manager's folder in the home, the `node_modules` a script lives in, the prefix of a
//! `bin` folder), the folders the command line names, its `cwd`, and what config declares.
//! What it may write: its private home and what config declares. A grant never reaches the
//! gateway's state and keys or the person's credentials (`~/.ssh` and the like): where one lies
//! under a granted folder, it is covered inside the sandbox (see [`Spec::mask`]).

use std::path::{Path, PathBuf};

use crate::spec::{Layer, Limits, Network, Spec};

/// The system folders every program may read and execute.
pub const SYSTEM: [&str; 10] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
];

/// Folders under the home that hold credentials: never granted by inference.
pub const CREDENTIALS: [&str; 8] = [
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".config/gcloud",
];

/// What config says of one sandboxed upstream.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// Its name.
    pub name: &'a str,
    /// The command as configured (a name looked up in `path`, or a path).
    pub command: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Its own variables (declared, secrets resolved) and the gateway's it inherits.
    pub env: Vec<(String, String)>,
    /// Its working directory, if configured.
    pub cwd: Option<&'a Path>,
    /// Where the gateway runs (relative commands and arguments resolve against it).
    pub gateway_cwd: &'a Path,
    /// The gateway's `PATH`, to find the command.
    pub path: &'a str,
    /// The person's home, for credentials to protect and install folders to find.
    pub user_home: Option<&'a Path>,
    /// Its private folder: `home/` and `tmp/` are made in it.
    pub private: &'a Path,
    /// More it may read (config `fs_read`).
    pub fs_read: &'a [PathBuf],
    /// More it may write (config `fs_write`).
    pub fs_write: &'a [PathBuf],
    /// Its network.
    pub network: Network,
    /// Its limits.
    pub limits: Limits,
    /// Layers it may start without.
    pub optional: &'a [Layer],
    /// Paths no sandbox may reach (the gateway's `data_dir`, key files).
    pub protected: &'a [PathBuf],
    /// A pids cgroup folder, for a root gateway.
    pub cgroup: Option<PathBuf>,
}

/// Why no sandbox can be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The command is nowhere to be found.
    #[error("cannot find `{0}` on the PATH")]
    NotFound(String),
    /// A configured grant covers a path no upstream may reach.
    #[error(
        "`{grant}` would let the upstream reach `{protected}`, which no upstream may (the gateway's state or keys)"
    )]
    Protected {
        /// The grant.
        grant: String,
        /// What it covers.
        protected: String,
    },
    /// The private folder cannot be made.
    #[error("cannot make the private folder `{0}`")]
    Private(String),
}

/// `path` absolute, against `base`; `.` and `..` folded without touching the disk.
pub fn absolute(path: &Path, base: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Where `command` is: itself when it names a path, else the first match on `path`.
pub fn resolve_command(command: &str, path: &str, base: &Path) -> Option<PathBuf> {
    if command.contains('/') {
        let p = absolute(Path::new(command), base);
        return p.is_file().then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| absolute(&Path::new(d).join(command), base))
        .find(|p| p.is_file())
}

/// The folder a program was installed in, beyond the system's: the outermost `node_modules`
/// it lives in; a version manager's folder under the home (`~/.pyenv`, `~/.nvm`, …); else the
/// prefix of the `bin` folder it sits in.
pub fn install_root(program: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let mut roots = Vec::new();
    for p in [program, real.as_path()] {
        if let Some(nm) = p
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last()
        {
            roots.push(nm.to_path_buf());
            continue;
        }
        if let Some(h) = home
            && let Ok(rest) = p.strip_prefix(h)
            && let Some(first) = rest.components().next()
        {
            roots.push(h.join(first.as_os_str()));
            continue;
        }
        if let Some(bin) = p.parent().filter(|d| d.file_name().is_some_and(|n| n == "bin"))
            && let Some(prefix) = bin.parent()
            && prefix != Path::new("/")
        {
            roots.push(prefix.to_path_buf());
        }
    }
    roots.sort();
    roots.dedup();
    // The program and its target may differ (a shim, a link): both roots are needed, but the
    // one plan carries one; the caller adds the other from `install_roots`.
    roots.into_iter().next()
}

/// The interpreter a script's `#!` line names (an absolute path; `/usr/bin/env` and other
/// system paths need nothing more, but are returned all the same).
pub fn shebang(program: &Path) -> Option<PathBuf> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head.get(..n)?.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim();
    let path = line.split_whitespace().next()?;
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// Every install folder of `program` (a link and its target may live apart).
pub fn install_roots(program: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let mut out: Vec<PathBuf> = [install_root(program, home), install_root(&real, home)]
        .into_iter()
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

fn covers(grant: &Path, protected: &Path) -> bool {
    protected.starts_with(grant)
}

/// The paths to cover: each protected path, and each of the person's credential folders, that
/// lies under a grant. A protected folder that holds this sandbox's own private folder (the
/// folder of every upstream's private folders) is covered around it: its other entries are.
fn masks(grants: &[&PathBuf], home: Option<&Path>, protected: &[PathBuf], own: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = protected.to_vec();
    if let Some(h) = home {
        candidates.extend(CREDENTIALS.iter().map(|c| h.join(c)));
    }
    let mut out = Vec::new();
    for p in candidates {
        if p.exists() && grants.iter().any(|g| covers(g, &p)) {
            out.extend(cover_except(&p, own));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `p` to cover, or (when `keep` lies inside it) its entries but the ones on the way to `keep`.
fn cover_except(p: &Path, keep: &Path) -> Vec<PathBuf> {
    if !keep.starts_with(p) {
        return vec![p.to_path_buf()];
    }
    if keep == p {
        return Vec::new();
    }
    std::fs::read_dir(p)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .flat_map(|e| cover_except(&e.path(), keep))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the spec.
pub fn build(req: &Request<'_>) -> Result<Spec, PlanError> {
    let home = req.user_home;
    let command = resolve_command(req.command, req.path, req.gateway_cwd)
        .ok_or_else(|| PlanError::NotFound(req.command.to_owned()))?;
    let cwd = req.cwd.map(|c| absolute(c, req.gateway_cwd));

    // Configured grants: one inside a protected path (or the whole disk) is a config error; a
    // protected path inside one is covered.
    let configured = |list: &[PathBuf]| -> Result<Vec<PathBuf>, PlanError> {
        let base = cwd.as_deref().unwrap_or(req.gateway_cwd);
        let mut out = Vec::new();
        for g in list {
            let g = absolute(g, base);
            if let Some(p) = req.protected.iter().find(|p| covers(p, &g) || g == Path::new("/")) {
                return Err(PlanError::Protected {
                    grant: g.display().to_string(),
                    protected: p.display().to_string(),
                });
            }
            out.push(g);
        }
        Ok(out)
    };
    let mut read: Vec<PathBuf> = SYSTEM.iter().map(PathBuf::from).collect();
    read.push("/proc".into());
    // /etc/resolv.conf and friends may point into /run.
    for f in ["/etc/resolv.conf", "/etc/hosts", "/etc/localtime"] {
        if let Ok(real) = std::fs::canonicalize(f)
            && let Some(dir) = real.parent()
            && !dir.starts_with("/etc")
        {
            read.push(dir.to_path_buf());
        }
    }
    let mut inferred: Vec<PathBuf> = install_roots(&command, home);
    if let Some(dir) = command.parent() {
        inferred.push(dir.to_path_buf());
    }
    // A script runs its `#!` interpreter: a virtualenv's `python3` links into the Python it
    // was made from, which must be readable too.
    if let Some(interpreter) = shebang(&command) {
        inferred.extend(install_roots(&interpreter, home));
    }
    // What the command line names: a script's folder, a folder to serve.
    for a in req.args {
        let p = Path::new(a);
        if !p.is_absolute() {
            continue;
        }
        let p = absolute(p, req.gateway_cwd);
        if p.is_dir() {
            inferred.push(p);
        } else if p.is_file()
            && let Some(dir) = p.parent()
        {
            inferred.push(dir.to_path_buf());
            inferred.extend(install_roots(&p, home));
        }
    }
    if let Some(c) = &cwd {
        inferred.push(c.clone());
    }
    for g in inferred {
        // Never the whole disk, nor anything inside the gateway's state.
        if g != Path::new("/") && !req.protected.iter().any(|p| covers(p, &g)) {
            read.push(g);
        }
    }
    read.extend(configured(req.fs_read)?);

    let private_home = req.private.join("home");
    let private_tmp = req.private.join("tmp");
    for d in [&private_home, &private_tmp] {
        std::fs::create_dir_all(d).map_err(|e| PlanError::Private(format!("{}: {e}", d.display())))?;
        set_private(d);
    }
    let mut write = vec![private_home.clone(), private_tmp.clone()];
    write.extend(configured(req.fs_write)?);
    read.sort();
    read.dedup();
    write.sort();
    write.dedup();
    let mask = masks(
        &read.iter().chain(write.iter()).collect::<Vec<_>>(),
        home,
        req.protected,
        req.private,
    );

    // The environment: its own variables over a minimal base.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut path = String::new();
    if let Some(dir) = command.parent() {
        path.push_str(&dir.to_string_lossy());
        path.push(':');
    }
    path.push_str("/usr/local/bin:/usr/bin:/bin");
    env.push(("PATH".into(), path));
    env.push(("HOME".into(), private_home.to_string_lossy().into_owned()));
    env.push(("TMPDIR".into(), private_tmp.to_string_lossy().into_owned()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    for (k, v) in &req.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }

    Ok(Spec {
        name: req.name.to_owned(),
        command,
        args: req.args.to_vec(),
        env,
        cwd,
        read,
        write,
        mask,
        network: req.network,
        limits: req.limits,
        optional: req.optional.to_vec(),
        cgroup: req.cgroup.clone(),
        probe: false,
        report: crate::report::Report::default(),
    })
}

/// Makes a private folder the user's alone (0700).
fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(private: &'a Path, protected: &'a [PathBuf], home: &'a Path, args: &'a [String]) -> Request<'a> {
        Request {
            name: "t",
            command: "sh",
            args,
            env: vec![("TOKEN".into(), "s3cret".into())],
            cwd: None,
            gateway_cwd: Path::new("/"),
            path: "/usr/bin:/bin",
            user_home: Some(home),
            private,
            fs_read: &[],
            fs_write: &[],
            network: Network::None,
            limits: Limits::default(),
            optional: &[],
            protected,
            cgroup: None,
        }
    }

    #[test]
    fn a_grant_over_the_gateways_state_is_refused_and_inferred_ones_skip_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join("project/.portcullis")).unwrap();
        let protected = vec![home.join("project/.portcullis")];
        let private = dir.path().join("sandbox");
        // The command line names the home: granted, with the credentials and the gateway's
        // state in it covered.
        let args = vec![home.to_string_lossy().into_owned()];
        let spec = build(&req(&private, &protected, &home, &args)).unwrap();
        assert!(spec.read.contains(&home), "{:?}", spec.read);
        assert_eq!(spec.mask, vec![home.join(".ssh"), home.join("project/.portcullis")]);
        assert!(spec.read.contains(&PathBuf::from("/usr")));
        assert_eq!(spec.command.file_name().unwrap(), "sh");
        assert!(spec.env.contains(&("TOKEN".into(), "s3cret".into())));
        assert!(
            spec.env
                .iter()
                .any(|(k, v)| k == "HOME" && v.starts_with(&*private.to_string_lossy()))
        );
        // Configured inside the gateway's state: an error.
        let grants = vec![home.join("project/.portcullis/portcullis.db")];
        let mut r = req(&private, &protected, &home, &[]);
        r.fs_read = &grants;
        assert!(matches!(build(&r), Err(PlanError::Protected { .. })));
        let wide = vec![home.join("project")];
        r.fs_read = &wide;
        assert_eq!(build(&r).unwrap().mask, vec![home.join("project/.portcullis")]);
    }

    #[test]
    fn a_script_names_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool");
        std::fs::write(&script, "#!/opt/venv/bin/python3 -u\nprint(1)\n").unwrap();
        assert_eq!(shebang(&script), Some(PathBuf::from("/opt/venv/bin/python3")));
        std::fs::write(&script, "#!python3\n").unwrap();
        assert_eq!(shebang(&script), None);
        std::fs::write(&script, [0x7f, b'E', b'L', b'F']).unwrap();
        assert_eq!(shebang(&script), None);
    }

    #[test]
    fn install_roots() {
        let home = Path::new("/home/a");
        assert_eq!(
            install_root(Path::new("/home/a/.pyenv/shims/python3"), Some(home)),
            Some(PathBuf::from("/home/a/.pyenv"))
        );
        assert_eq!(
            install_root(Path::new("/srv/app/node_modules/.bin/mcp"), Some(home)),
            Some(PathBuf::from("/srv/app/node_modules"))
        );
        assert_eq!(
            install_root(Path::new("/opt/tool/bin/tool"), Some(home)),
            Some(PathBuf::from("/opt/tool"))
        );
        assert_eq!(
            absolute(Path::new("a/../b/./c"), Path::new("/x")),
            PathBuf::from("/x/b/c")
        );
    }
}
