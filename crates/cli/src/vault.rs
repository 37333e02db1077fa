//! `portcullis vault`: put secrets in the vault and manage it. A value is read from stdin or a
//! hidden prompt, never from the command line; `list` shows names, owners and times, never a
//! value.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use portcullis_gateway::config::Config;
use portcullis_gateway::state::secrets;
use portcullis_store::Store;
use portcullis_vault::{KeySource, MasterKey, Vault};
use zeroize::Zeroizing;

use crate::{EX_CANTCREAT, EX_USAGE};

/// Exit code when the vault cannot be opened with the key given (sysexits EX_NOPERM).
const EX_NOPERM: u8 = 77;

/// `portcullis vault …`.
#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Create a new random master key: in a file (mode 0600; point `[vault] key_file` at it),
    /// or in the OS keyring (`[vault] keyring = true`).
    Init {
        #[command(flatten)]
        config: Common,
        /// Where to write it: outside `data_dir`.
        #[arg(long, required_unless_present = "keyring", conflicts_with = "keyring")]
        key_file: Option<PathBuf>,
        /// Store it in the OS keyring instead (Secret Service, Keychain, Credential Manager).
        #[arg(long)]
        keyring: bool,
    },
    /// Set a secret; the value comes from stdin, or a hidden prompt on a terminal.
    Set {
        #[command(flatten)]
        config: Common,
        /// The secret's name, as config refers to it (`vault:NAME`).
        name: String,
        /// The principal it belongs to (default: shared by all).
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// List secrets: names, owners, when set and last used. Never values.
    List {
        #[command(flatten)]
        config: Common,
    },
    /// Remove a secret.
    Rm {
        #[command(flatten)]
        config: Common,
        /// The secret's name.
        name: String,
        /// Its owner (default: the shared one).
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// Lift a suspension for misuse (after checking what tripped it).
    Resume {
        #[command(flatten)]
        config: Common,
        /// The secret's name.
        name: String,
    },
    /// Re-encrypt every secret under a new master key.
    RotateKey {
        #[command(flatten)]
        config: Common,
        /// Write the new key to this file (mode 0600, must not exist); then point
        /// `[vault] key_file` at it.
        #[arg(long, conflicts_with = "print_new_key")]
        new_key_file: Option<PathBuf>,
        /// Print the new key (base64) once on stdout, for `PORTCULLIS_MASTER_KEY`.
        #[arg(long)]
        print_new_key: bool,
    },
}

/// The configuration argument every vault command takes.
#[derive(Args, Debug)]
pub struct Common {
    /// The configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis vault: {message}");
    ExitCode::from(code)
}

/// Runs the command.
pub async fn run(cmd: VaultCommand) -> ExitCode {
    match cmd {
        VaultCommand::Init {
            config,
            key_file,
            keyring,
        } => {
            let cfg = match crate::load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(key_file) = key_file.filter(|_| !keyring) else {
                // The keyring entry is named by the data_dir's real path: create it first.
                if let Err(e) = Store::open(&cfg.gateway.data_dir).await {
                    return fail(EX_CANTCREAT, e);
                }
                return match MasterKey::create_in_keyring(&cfg.gateway.data_dir) {
                    Ok(_) => {
                        outln!(
                            "created a master key in the OS keyring (service `{}`, account: the data_dir); add to your config:\n\n[vault]\nkeyring = true",
                            portcullis_vault::KEYRING_SERVICE
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(EX_CANTCREAT, e),
                };
            };
            match MasterKey::create_file(&key_file, &cfg.gateway.data_dir) {
                Ok(_) => {
                    outln!(
                        "created {}; add to your config:\n\n[vault]\nkey_file = {:?}",
                        key_file.display(),
                        key_file.display().to_string()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        VaultCommand::Set { config, name, owner } => {
            let (_, vault) = match open(&config).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            if !portcullis_vault::valid_name(&name) {
                return fail(
                    EX_USAGE,
                    format!("`{name}` is not a secret name (letters, digits, `_`, `-`, `.`)"),
                );
            }
            let value = match read_value(&name) {
                Ok(v) => v,
                Err(e) => return fail(EX_USAGE, e),
            };
            match vault.set(&name, &owner, &value).await {
                Ok(()) => {
                    outln!(
                        "set `{name}`{}",
                        if owner.is_empty() {
                            String::new()
                        } else {
                            format!(" for `{owner}`")
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        VaultCommand::List { config } => {
            let (_, vault) = match open(&config).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            match vault.list().await {
                Ok(list) => {
                    outln!(
                        "{:<32}  {:<12}  {:<20}  {:<20}  {:<20}  STATE",
                        "NAME",
                        "OWNER",
                        "CREATED",
                        "UPDATED",
                        "LAST USED"
                    );
                    for s in list {
                        let owner = if s.owner.is_empty() {
                            "(shared)"
                        } else {
                            s.owner.as_str()
                        };
                        outln!(
                            "{:<32}  {:<12}  {:<20}  {:<20}  {:<20}  {}",
                            s.name,
                            owner,
                            crate::tools::unix_date(s.created_at),
                            crate::tools::unix_date(s.updated_at),
                            s.last_used_at
                                .map_or_else(|| "never".to_owned(), crate::tools::unix_date),
                            s.suspended
                                .map_or_else(|| "ok".to_owned(), |r| format!("suspended: {r}"))
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        VaultCommand::Rm { config, name, owner } => {
            let (_, vault) = match open(&config).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            match vault.remove(&name, &owner).await {
                Ok(true) => {
                    outln!("removed `{name}`");
                    ExitCode::SUCCESS
                }
                Ok(false) => fail(EX_USAGE, format!("no secret `{name}`")),
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        VaultCommand::Resume { config, name } => {
            let (_, vault) = match open(&config).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            match vault.resume(&name).await {
                Ok(true) => {
                    outln!("resumed `{name}`; a running gateway uses it again within 2s");
                    ExitCode::SUCCESS
                }
                Ok(false) => fail(EX_USAGE, format!("`{name}` is not suspended")),
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        VaultCommand::RotateKey {
            config,
            new_key_file,
            print_new_key,
        } => {
            let (cfg, vault) = match open(&config).await {
                Ok(v) => v,
                Err(code) => return code,
            };
            let (new, source) = match (&new_key_file, print_new_key) {
                (Some(path), _) => match MasterKey::create_file(path, &cfg.gateway.data_dir) {
                    Ok(k) => (k, KeySource::File(path.clone()).to_string()),
                    Err(e) => return fail(EX_CANTCREAT, e),
                },
                (None, true) => (MasterKey::generate(), format!("`{}`", portcullis_vault::ENV_KEY)),
                (None, false) => return fail(EX_USAGE, "give `--new-key-file PATH` or `--print-new-key`"),
            };
            let printed = new.to_base64();
            match vault.rotate(new, &source).await {
                Ok(_) => {
                    if print_new_key {
                        outln!("{}", printed.as_str());
                        eprintln!(
                            "portcullis vault: every secret is now sealed under this key; set it as `PORTCULLIS_MASTER_KEY`"
                        );
                    } else {
                        eprintln!(
                            "portcullis vault: every secret is now sealed under the new key file; point `[vault] key_file` at it"
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
    }
}

/// Loads the config and opens its vault (see [`open_with`]).
async fn open(common: &Common) -> Result<(Config, Vault), ExitCode> {
    let cfg = crate::load(&common.config)?;
    let vault = open_with(&cfg).await?;
    Ok((cfg, vault))
}

/// Opens the store and the vault of `cfg` with its configured key source (a passphrase is
/// asked on a terminal when `PORTCULLIS_VAULT_PASSPHRASE` is not set). Failures are reported
/// and become the exit code.
pub async fn open_with(cfg: &Config) -> Result<Vault, ExitCode> {
    let store = Store::open(&cfg.gateway.data_dir)
        .await
        .map_err(|e| fail(EX_CANTCREAT, e))?;
    let salt = match cfg.vault {
        KeySource::Passphrase => Some(
            Vault::passphrase_salt(&store)
                .await
                .map_err(|e| fail(EX_CANTCREAT, e))?,
        ),
        _ => None,
    };
    let key = match secrets::master_key(&cfg.vault, &cfg.gateway.data_dir, salt.as_deref()) {
        Ok(Some(k)) => k,
        Ok(None) if cfg.vault == KeySource::Passphrase && std::io::stdin().is_terminal() => {
            let p = rpassword::prompt_password("vault passphrase: ").map_err(|e| fail(EX_USAGE, e))?;
            let p = Zeroizing::new(p);
            MasterKey::from_passphrase(p.as_bytes(), salt.as_deref().unwrap_or_default())
                .map_err(|e| fail(EX_USAGE, e))?
        }
        Ok(None) => {
            return Err(fail(
                EX_USAGE,
                format!("no master key: {}", secrets::no_key_hint(&cfg.vault)),
            ));
        }
        Err(e) => return Err(fail(EX_USAGE, e)),
    };
    Vault::open(store, key, &cfg.vault.to_string())
        .await
        .map_err(|e| fail(EX_NOPERM, e))
}

/// The value: a hidden prompt on a terminal, else all of stdin less one trailing newline.
fn read_value(name: &str) -> Result<Zeroizing<String>, String> {
    let value = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!("value of `{name}`: ")).map_err(|e| e.to_string())?)
    } else {
        let mut v = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut v)
            .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
        if v.ends_with('\n') {
            v.pop();
            if v.ends_with('\r') {
                v.pop();
            }
        }
        v
    };
    if value.is_empty() {
        return Err("the value is empty".to_owned());
    }
    Ok(value)
}
