//! `portcullis admin set-password`: the admin web page's password (Argon2id in the store). Read
//! from a hidden prompt (asked twice) or stdin, never from the command line.
//! `portcullis admin link`: a one-time sign-in link for the running gateway, good for ten
//! minutes, printed to this terminal only (its hash goes to the store).

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use clap::Subcommand;
use zeroize::Zeroizing;

use crate::{ConfigArg, EX_CANTCREAT, EX_USAGE};

/// `portcullis admin …`.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Set the admin page's password (from a hidden prompt, or stdin).
    SetPassword {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print a one-time sign-in link to the admin page (good for 10 minutes, once).
    Link {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis admin: {message}");
    ExitCode::from(code)
}

fn read_password() -> Result<Zeroizing<String>, String> {
    if std::io::stdin().is_terminal() {
        let a = Zeroizing::new(rpassword::prompt_password("admin password: ").map_err(|e| e.to_string())?);
        let b = Zeroizing::new(rpassword::prompt_password("again: ").map_err(|e| e.to_string())?);
        if *a != *b {
            return Err("the two entries differ".into());
        }
        Ok(a)
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut s).map_err(|e| e.to_string())?;
        let trimmed = Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned());
        Ok(trimmed)
    }
}

/// Runs the command.
pub async fn run(cmd: AdminCommand) -> ExitCode {
    match cmd {
        AdminCommand::Link { config } => {
            let cfg = match crate::load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let store = match crate::open_store(&config.config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            match portcullis_gateway::admin::mint_link(&store, now).await {
                Ok(path) => {
                    let at = cfg.admin.map_or_else(|| "127.0.0.1:8788".to_owned(), |a| a.to_string());
                    outln!("http://{at}{path}");
                    outln!("(good for 10 minutes, once)");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        AdminCommand::SetPassword { config } => {
            let store = match crate::open_store(&config.config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let password = match read_password() {
                Ok(p) => p,
                Err(e) => return fail(EX_USAGE, e),
            };
            match portcullis_gateway::admin::set_password(&store, &password).await {
                Ok(()) => {
                    outln!("admin password set; sign in at the admin page (default http://127.0.0.1:8788/)");
                    ExitCode::SUCCESS
                }
                Err(portcullis_gateway::admin::PasswordError::TooShort) => {
                    fail(EX_USAGE, portcullis_gateway::admin::PasswordError::TooShort)
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
    }
}
