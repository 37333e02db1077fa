//! `portcullis import HOST`: take over an AI host's MCP configuration. Each server the host
//! launches or reaches becomes an upstream in `portcullis.toml`; every secret-looking `env` or
//! `headers` value moves into the vault (the config says `vault:NAME`); and the host config is
//! rewritten to launch `portcullis stdio` as its only server — after a backup, and not at all
//! with `--dry-run`, which shows the change instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use portcullis_core::redact::looks_like_secret;
use portcullis_gateway::config::Config;
use portcullis_gateway::config::refs as secrets;
use serde_json::{Map, Value, json};

use crate::{EX_CANTCREAT, EX_USAGE};

/// The hosts whose MCP configuration `import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Host {
    /// Claude Desktop: `claude_desktop_config.json`, `mcpServers`.
    ClaudeDesktop,
    /// Claude Code: `~/.claude.json` or a project's `.mcp.json`, `mcpServers`.
    ClaudeCode,
    /// Cursor: `~/.cursor/mcp.json`, `mcpServers`.
    Cursor,
    /// VS Code: `.vscode/mcp.json`, `servers`.
    Vscode,
}

impl Host {
    /// The member holding the servers.
    fn servers_key(self) -> &'static str {
        match self {
            Host::Vscode => "servers",
            _ => "mcpServers",
        }
    }

    /// Where the host keeps its config by default.
    fn default_path(self) -> Option<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        Some(match self {
            Host::ClaudeDesktop => {
                let mac = home.join("Library/Application Support/Claude/claude_desktop_config.json");
                if mac.exists() {
                    mac
                } else {
                    home.join(".config/Claude/claude_desktop_config.json")
                }
            }
            Host::ClaudeCode => home.join(".claude.json"),
            Host::Cursor => home.join(".cursor/mcp.json"),
            Host::Vscode => PathBuf::from(".vscode/mcp.json"),
        })
    }
}

/// Arguments of `portcullis import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Which host's configuration.
    host: Host,
    /// The host's config file (default: where the host keeps it).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The Portcullis configuration to add the servers to (created when missing).
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
    /// Show what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// One server taken from the host.
#[derive(Debug)]
struct Imported {
    name: String,
    table: toml::Table,
    /// (vault name, value) to move into the vault.
    secrets: Vec<(String, String)>,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis import: {message}");
    ExitCode::from(code)
}

/// A name Portcullis accepts: letters, digits, `-`, `_`.
fn upstream_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() { "server".to_owned() } else { n }
}

fn vault_name(server: &str, key: &str) -> String {
    let raw = format!("{server}_{key}").to_ascii_lowercase();
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// A host's server entry as an upstream table, with its secrets split out.
fn import_server(name: &str, entry: &Map<String, Value>) -> Result<Imported, String> {
    let name = upstream_name(name);
    let mut table = toml::Table::new();
    let mut secrets = Vec::new();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let values = |v: Option<&Value>, secrets: &mut Vec<(String, String)>| -> toml::Table {
        let mut t = toml::Table::new();
        for (k, val) in v.and_then(Value::as_object).into_iter().flatten() {
            let Some(val) = val.as_str() else { continue };
            let value = if looks_like_secret(k, val) {
                let vname = vault_name(&name, k);
                secrets.push((vname.clone(), val.to_owned()));
                format!("{}{vname}", secrets::PREFIX)
            } else {
                val.to_owned()
            };
            t.insert(k.clone(), toml::Value::String(value));
        }
        t
    };
    if let Some(command) = entry.get("command").and_then(Value::as_str) {
        table.insert("command".into(), toml::Value::String(command.to_owned()));
        let args = strings(entry.get("args"));
        if !args.is_empty() {
            table.insert(
                "args".into(),
                toml::Value::Array(args.into_iter().map(toml::Value::String).collect()),
            );
        }
        let env = values(entry.get("env"), &mut secrets);
        if !env.is_empty() {
            table.insert("env".into(), toml::Value::Table(env));
        }
        if let Some(cwd) = entry.get("cwd").and_then(Value::as_str) {
            table.insert("cwd".into(), toml::Value::String(cwd.to_owned()));
        }
    } else if let Some(url) = entry.get("url").and_then(Value::as_str) {
        if portcullis_gateway::config::oauth::is_clear_text_beyond_loopback(url) {
            return Err(format!(
                "server `{name}` uses plain http:// to a host that is not loopback (its credentials and calls would cross the network in clear text); skipped: use https://, or add it by hand with `insecure_http = true`"
            ));
        }
        table.insert("url".into(), toml::Value::String(url.to_owned()));
        let headers = values(entry.get("headers"), &mut secrets);
        if !headers.is_empty() {
            table.insert("headers".into(), toml::Value::Table(headers));
        }
    } else {
        return Err(format!("server `{name}` has neither `command` nor `url`; skipped"));
    }
    Ok(Imported { name, table, secrets })
}

/// Whether a host entry is Portcullis itself (an earlier import).
fn is_portcullis(entry: &Map<String, Value>) -> bool {
    entry
        .get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| Path::new(c).file_name().is_some_and(|f| f == "portcullis"))
}

/// Runs the command.
pub async fn run(args: ImportArgs) -> ExitCode {
    let Some(path) = args.path.clone().or_else(|| args.host.default_path()) else {
        return fail(EX_USAGE, "no `--path` and no `HOME` to find the host's config in");
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return fail(EX_USAGE, format!("cannot read `{}`: {e}", path.display())),
    };
    let mut host: Value = match serde_json::from_str(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return fail(EX_USAGE, format!("`{}` is not a JSON object", path.display())),
        Err(e) => return fail(EX_USAGE, format!("`{}` is not JSON: {e}", path.display())),
    };
    let key = args.host.servers_key();
    let servers = host.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
    let mut imported = Vec::new();
    for (name, entry) in &servers {
        let Some(entry) = entry.as_object() else { continue };
        if is_portcullis(entry) {
            eprintln!("portcullis import: `{name}` is Portcullis already; left out");
            continue;
        }
        match import_server(name, entry) {
            Ok(i) => imported.push(i),
            Err(e) => eprintln!("portcullis import: {e}"),
        }
    }
    if imported.is_empty() {
        return fail(
            EX_USAGE,
            format!("no MCP servers to import in `{}` (`{key}`)", path.display()),
        );
    }

    // The new upstream tables, appended to the Portcullis config.
    let existing = std::fs::read_to_string(&args.config).unwrap_or_default();
    let existing_table: toml::Table = existing.parse().unwrap_or_default();
    let taken = existing_table.get("upstreams").and_then(toml::Value::as_table);
    for i in &imported {
        if taken.is_some_and(|t| t.contains_key(&i.name)) {
            return fail(
                EX_USAGE,
                format!(
                    "`{}` already has an upstream `{}`; rename one first",
                    args.config.display(),
                    i.name
                ),
            );
        }
    }
    let mut addition = String::new();
    if existing.trim().is_empty() {
        addition.push_str("# Written by `portcullis import`.\n[gateway]\ndata_dir = \".portcullis\"\n");
    }
    for i in &imported {
        let mut upstreams = toml::Table::new();
        let mut wrapper = toml::Table::new();
        wrapper.insert(i.name.clone(), toml::Value::Table(i.table.clone()));
        upstreams.insert("upstreams".into(), toml::Value::Table(wrapper));
        addition.push('\n');
        addition.push_str(&toml::to_string(&upstreams).unwrap_or_default());
    }
    let new_config = format!("{existing}{addition}");

    // The host config, launching Portcullis instead.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("portcullis"));
    let config_abs = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
    let mut ours = json!({
        "command": exe.to_string_lossy(),
        "args": ["stdio", "--config", config_abs.to_string_lossy()],
    });
    if args.host == Host::Vscode
        && let Some(o) = ours.as_object_mut()
    {
        o.insert("type".into(), json!("stdio"));
    }
    if let Some(o) = host.as_object_mut() {
        o.insert(key.to_owned(), json!({ "portcullis": ours }));
    }
    let new_host = serde_json::to_string_pretty(&host).unwrap_or_default() + "\n";

    let moved: Vec<&str> = imported
        .iter()
        .flat_map(|i| i.secrets.iter().map(|(n, _)| n.as_str()))
        .collect();
    if args.dry_run {
        outln!("# would add to {}:\n{addition}", args.config.display());
        outln!(
            "# would move into the vault: {}",
            if moved.is_empty() {
                "nothing".to_owned()
            } else {
                moved.join(", ")
            }
        );
        outln!("\n# would rewrite {} (backup kept) to:\n{new_host}", path.display());
        return ExitCode::SUCCESS;
    }

    // Secrets first: nothing is rewritten unless every secret is safely in the vault.
    if !moved.is_empty()
        && let Err(code) = store_secrets(&args.config, &new_config, &imported).await
    {
        return code;
    }
    if let Some(parent) = args.config.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        return fail(EX_CANTCREAT, format!("cannot create `{}`: {e}", parent.display()));
    }
    if let Err(e) = std::fs::write(&args.config, &new_config) {
        return fail(EX_CANTCREAT, format!("cannot write `{}`: {e}", args.config.display()));
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let backup = PathBuf::from(format!("{}.portcullis-backup-{stamp}", path.display()));
    // The backup still holds the plaintext secrets: readable by its owner only.
    let copied = std::fs::copy(&path, &backup).and_then(|_| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o600))
    });
    if let Err(e) = copied {
        return fail(
            EX_CANTCREAT,
            format!("cannot back up `{}`: {e}; the host config is unchanged", path.display()),
        );
    }
    if let Err(e) = std::fs::write(&path, new_host) {
        return fail(EX_CANTCREAT, format!("cannot rewrite `{}`: {e}", path.display()));
    }
    outln!(
        "imported {} server(s) into {}; moved {} secret(s) into the vault; {} now launches Portcullis (backup: {})",
        imported.len(),
        args.config.display(),
        moved.len(),
        path.display(),
        backup.display()
    );
    if !moved.is_empty() {
        eprintln!(
            "portcullis import: the backup still holds the secrets in plain text; delete it once the host works through Portcullis"
        );
    }
    ExitCode::SUCCESS
}

/// Puts the imported secrets in the vault of the config being written.
async fn store_secrets(config_path: &Path, new_config: &str, imported: &[Imported]) -> Result<(), ExitCode> {
    let cfg = Config::parse(new_config, config_path).map_err(|e| fail(EX_USAGE, e))?;
    let vault = crate::vault::open_with(&cfg).await?;
    for i in imported {
        for (name, value) in &i.secrets {
            vault.set(name, "", value).await.map_err(|e| fail(EX_CANTCREAT, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    #[test]
    fn plain_http_beyond_loopback_is_not_imported() {
        let entry = |url: &str| json!({"url": url}).as_object().cloned().unwrap();
        let Err(e) = import_server("r", &entry("http://mcp.example.test/mcp")) else {
            panic!("imported");
        };
        assert!(e.contains("plain http://") && e.contains("skipped"), "{e}");
        assert!(import_server("r", &entry("http://127.0.0.1:3001/mcp")).is_ok());
        assert!(import_server("r", &entry("https://mcp.example.test/mcp")).is_ok());
    }
}
