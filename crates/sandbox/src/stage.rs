//! The helper the gateway starts in place of a stdio upstream (`portcullis __sandbox`), in two
//! stages, because a process enters a new PID namespace only through its children:
//!
//! 1. **outside**: reads its spec, becomes non-dumpable and dies with the gateway, joins a pids
//!    cgroup of its own (root), enters the new namespaces (`unshare`), and starts stage 2;
//!    then waits, and exits as stage 2 does.
//! 2. **inside**, as PID 1 of the new PID namespace: mounts a fresh `/proc` and a private
//!    `/dev/shm`, brings loopback up where asked, sets the limits, restricts itself with Landlock
//!    and seccomp, reports what holds on stderr, starts the upstream with its own environment,
//!    and reaps until it exits. When stage 2 exits, the kernel ends everything in the
//!    namespace.
//!
//! A layer that must hold and cannot stops the helper with a message on stderr (the gateway
//! shows it as the reason the upstream is down). No `unsafe`: the child setup the upstream
//! inherits is done in the helper's own process before it starts the upstream.

use std::io::Write as _;
use std::process::{Command, Stdio};

use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, geteuid};

use crate::layers::{fs, limits, ns, seccomp};
use crate::report::{LINE_PREFIX, Report, Status};
use crate::spec::{Layer, Network, SPEC_ENV, Spec};

/// The argument that makes `portcullis` the helper's first stage.
pub const STAGE1: &str = "__sandbox";
/// The argument of the second stage.
pub const STAGE2: &str = "__sandbox-init";

/// The exit code of a helper that could not set up a layer that must hold (`EX_OSERR`).
pub const EX_SANDBOX: i32 = 71;

/// Runs the helper and exits, when this process was started as one; returns otherwise. Call
/// it first thing in `main`, before any thread starts (a namespace is entered by one thread).
pub fn run_if_helper() {
    match std::env::args_os().nth(1).as_deref().and_then(|a| a.to_str()) {
        Some(STAGE1) => stage1(),
        Some(STAGE2) => stage2(),
        _ => {}
    }
}

fn die(message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "{LINE_PREFIX}{message}");
    std::process::exit(EX_SANDBOX)
}

fn spec() -> Spec {
    let Ok(text) = std::env::var(SPEC_ENV) else {
        die("no spec: the helper is started by the gateway only");
    };
    serde_json::from_str(&text).unwrap_or_else(|e| die(&format!("unreadable spec: {e}")))
}

/// Signals a stage waits through: it ends when its child does.
fn waited_through() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        s.add(sig);
    }
    s
}

/// Waits for `child`, reaping every other child meanwhile; the exit code to pass on.
fn reap_until(child: u32) -> i32 {
    let child = Pid::from_raw(i32::try_from(child).unwrap_or(i32::MAX));
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(_) => return EX_SANDBOX,
        }
    }
}

fn stage1() -> ! {
    // Nobody outside reads this process's memory or environment (the spec holds the
    // upstream's secrets), and it does not outlive the gateway.
    let _ = prctl::set_dumpable(false);
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    let mut spec = spec();
    let _ = waited_through().thread_block();
    let root = geteuid().is_root();
    let mut report = Report::default();

    // Limits: a root process's processes are capped by a pids cgroup of its own.
    if root && spec.probe {
        report.set(
            Layer::Limits,
            match &spec.cgroup {
                Some(c) => Status::Active(format!("pids cgroup under {}", c.display())),
                None => Status::Unavailable("root, and no writable pids cgroup to cap its processes".into()),
            },
        );
    }
    let group = if root && !spec.probe {
        match spec
            .cgroup
            .as_deref()
            .map(|c| limits::join_pids_group(c, &spec.name, spec.limits.processes))
        {
            Some(Ok(g)) => Some(g),
            Some(Err(e)) if spec.requires(Layer::Limits) => die(&e.to_string()),
            Some(Err(e)) => {
                report.set(Layer::Limits, Status::Unavailable(e.to_string()));
                None
            }
            None if spec.requires(Layer::Limits) => {
                die("limits: the gateway runs as root and no pids cgroup is writable, so the process limit cannot hold")
            }
            None => {
                report.set(
                    Layer::Limits,
                    Status::Unavailable("no writable pids cgroup (root)".into()),
                );
                None
            }
        }
    } else {
        None
    };

    // Namespaces, always with a user namespace: even a root gateway's upstream is root only
    // of its own namespace, without the host's capabilities (`/proc/kcore`, raw devices).
    let wanted = ns::flags(true, spec.network);
    match ns::enter(wanted) {
        Ok(()) => {
            report.set(
                Layer::UserNamespace,
                Status::Active(if root {
                    "root of its own namespaces only, without host capabilities".into()
                } else {
                    "the gateway's user, root of its own namespaces only".into()
                }),
            );
            report.set(Layer::Namespaces, Status::Active("pid, mount, ipc, uts".into()));
            if spec.network != Network::Any {
                report.set(Layer::NetworkNamespace, Status::Active(spec.network.as_str().into()));
            }
        }
        Err(e) => {
            let needed = spec.requires(Layer::Namespaces)
                || spec.requires(Layer::UserNamespace)
                || (spec.network != Network::Any && spec.requires(Layer::NetworkNamespace));
            if needed && !spec.probe {
                die(&e.to_string());
            }
            for l in [Layer::UserNamespace, Layer::Namespaces, Layer::NetworkNamespace] {
                report.set(l, Status::Unavailable(e.to_string()));
            }
        }
    }
    if spec.network == Network::Any {
        report.set(Layer::NetworkNamespace, Status::Off("network = \"any\"".into()));
    }
    spec.report = report;
    let text = serde_json::to_string(&spec).unwrap_or_else(|e| die(&e.to_string()));
    let child = Command::new("/proc/self/exe")
        .arg(STAGE2)
        .env_clear()
        .env(SPEC_ENV, text)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot start the sandbox: {e}")));
    let code = reap_until(child.id());
    // `exit` runs no destructors: leave and remove the pids cgroup first.
    drop(group);
    std::process::exit(code)
}

fn stage2() -> ! {
    let _ = prctl::set_dumpable(false);
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    let spec = spec();
    let mut report = spec.report.clone();
    let in_namespaces = matches!(report.get(Layer::Namespaces), Some(Status::Active(_)));

    // What lies under a grant and must stay out of reach is covered, or nothing starts.
    if !spec.mask.is_empty() && !in_namespaces && !spec.probe {
        die(
            "the gateway's state or the person's credentials lie under a granted folder and cannot be covered without a mount namespace",
        );
    }
    if in_namespaces {
        if let Err(e) = ns::settle(&format!("portcullis-{}", spec.name)) {
            if spec.requires(Layer::Namespaces) && !spec.probe {
                die(&e.to_string());
            }
            report.set(Layer::Namespaces, Status::Unavailable(e.to_string()));
        }
        if let Err(e) = ns::mask(&spec.mask)
            && !spec.probe
        {
            die(&e.to_string());
        }
        if spec.network == Network::Loopback
            && let Err(e) = ns::loopback_up()
        {
            if spec.requires(Layer::NetworkNamespace) && !spec.probe {
                die(&e.to_string());
            }
            report.set(Layer::NetworkNamespace, Status::Unavailable(e.to_string()));
        }
    }

    match limits::set(&spec.limits) {
        Ok(()) if report.get(Layer::Limits).is_none() => report.set(
            Layer::Limits,
            Status::Active(format!(
                "{} processes, {} files, {} MiB",
                spec.limits.processes,
                spec.limits.files,
                spec.limits.memory >> 20
            )),
        ),
        Ok(()) => {}
        Err(e) if spec.requires(Layer::Limits) && !spec.probe => die(&e.to_string()),
        Err(e) => report.set(Layer::Limits, Status::Unavailable(e.to_string())),
    }

    let mut write = spec.write.clone();
    if in_namespaces {
        write.push("/dev/shm".into());
    }
    match fs::restrict(
        &spec.read,
        &write,
        spec.network,
        spec.requires(Layer::Landlock) && !spec.probe,
    ) {
        Ok(status) => report.set(
            Layer::Landlock,
            match status.ruleset {
                landlock::RulesetStatus::FullyEnforced => Status::Active("abi 6 rules".into()),
                other => Status::Unavailable(format!("{other:?}")),
            },
        ),
        Err(e) if spec.requires(Layer::Landlock) && !spec.probe => die(&e.to_string()),
        Err(e) => report.set(Layer::Landlock, Status::Unavailable(e.to_string())),
    }

    let _ = waited_through().thread_unblock();
    match seccomp::apply() {
        Ok(()) => report.set(Layer::Seccomp, Status::Active("no_new_privs".into())),
        Err(e) if spec.requires(Layer::Seccomp) && !spec.probe => die(&e.to_string()),
        Err(e) => report.set(Layer::Seccomp, Status::Unavailable(e.to_string())),
    }

    if spec.probe {
        let _ = writeln!(std::io::stdout(), "{}", report.to_json());
        std::process::exit(0);
    }
    let _ = writeln!(std::io::stderr(), "{LINE_PREFIX}{}", report.summary());
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot start `{}`: {e}", spec.command.display())));
    let code = reap_until(child.id());
    std::process::exit(code)
}
