//! `portcullis connect PROVIDER --upstream NAME`: OAuth 2.1 authorization code with PKCE and a
//! loopback redirect, asking only for the scopes the upstream's enabled tools need; the refresh
//! token goes into the vault. `portcullis disconnect --upstream NAME` revokes the grant.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use portcullis_gateway::config::oauth::{Provider, UpstreamOAuth};
use portcullis_gateway::config::{Config, UpstreamConfig};
use portcullis_gateway::state::pins::PinMode;
use portcullis_gateway::upstream::State;
use portcullis_gateway::upstream::oauth::{self, plan::ScopePlan};
use portcullis_policy::Principal;
use portcullis_store::Grant;

use crate::{ConfigArg, EX_UNAVAILABLE, EX_USAGE};

/// Arguments of `portcullis connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The provider, as named in `[oauth.NAME]` (`google` is a preset).
    provider: String,
    /// The upstream the grant is for.
    #[arg(long)]
    upstream: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Print which scopes would be requested and why, and stop.
    #[arg(long)]
    explain: bool,
    /// The loopback port for the redirect (0: any free port; some providers need a fixed one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// How long to wait for the browser.
    #[arg(long, default_value = "5m", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// How long to wait for the upstream to list its tools (the scopes come from them).
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    wait: Duration,
}

/// Arguments of `portcullis disconnect`.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// The upstream whose grant is revoked.
    #[arg(long)]
    upstream: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Forget the grant here even when the provider cannot be told to revoke it.
    #[arg(long)]
    forget: bool,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::from(code)
}

/// The upstream, its OAuth settings and its provider.
fn find<'c>(
    cfg: &'c Config,
    upstream: &str,
) -> Result<(&'c UpstreamConfig, &'c UpstreamOAuth, &'c Provider), ExitCode> {
    let u = cfg
        .upstreams
        .iter()
        .find(|u| u.name == upstream)
        .ok_or_else(|| fail(EX_USAGE, format!("no upstream `{upstream}` in the configuration")))?;
    let o = u.oauth.as_ref().ok_or_else(|| {
        fail(
            EX_USAGE,
            format!("upstream `{upstream}` has no `[upstreams.{upstream}.oauth]` table: it does not use OAuth"),
        )
    })?;
    let p = cfg
        .oauth
        .get(&o.provider)
        .ok_or_else(|| fail(EX_USAGE, format!("no provider `{}`", o.provider)))?;
    Ok((u, o, p))
}

/// The scopes the upstream's enabled tools need: starts the upstream alone (without a token,
/// looking only), lists its tools, and keeps those policy could ever allow.
async fn scope_plan(cfg: &Config, upstream: &str, wait: Duration) -> Result<ScopePlan, ExitCode> {
    let mut alone = cfg.clone();
    alone.upstreams.retain(|u| u.name == upstream);
    let (u, o, p) = find(cfg, upstream)?;
    for u in &mut alone.upstreams {
        u.oauth = None;
    }
    let gw = crate::open(alone, PinMode::ReadOnly).await?;
    gw.wait_listed(wait).await;
    let state = gw.upstreams().first().map(|u| u.state());
    let local = Principal {
        user: "local".into(),
        client: String::new(),
        attributes: Default::default(),
    };
    let tools = gw.tools_of(0, &local);
    gw.stop().await;
    match state {
        Some(State::Ready(_)) => {}
        Some(State::Down { reason, .. }) => {
            return Err(fail(
                EX_UNAVAILABLE,
                format!(
                    "cannot list the tools of `{}` ({reason}); the scopes to request are computed from them",
                    u.name
                ),
            ));
        }
        _ => {
            return Err(fail(
                EX_UNAVAILABLE,
                format!("`{}` did not list its tools within {wait:?}", u.name),
            ));
        }
    }
    let enabled: BTreeSet<String> = tools.into_iter().filter(|(_, may)| *may).map(|(t, _)| t).collect();
    Ok(oauth::plan::plan(&p.scopes, &o.tool_scopes, &enabled))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs `connect`.
pub async fn connect(args: ConnectArgs) -> ExitCode {
    let cfg = match crate::load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let provider = match find(&cfg, &args.upstream) {
        Ok((_, o, _)) if o.provider != args.provider => {
            return fail(
                EX_USAGE,
                format!(
                    "upstream `{}` uses provider `{}`, not `{}`",
                    args.upstream, o.provider, args.provider
                ),
            );
        }
        Ok((_, _, p)) => p.clone(),
        Err(code) => return code,
    };
    let plan = match scope_plan(&cfg, &args.upstream, args.wait).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.explain {
        outln!("scopes for upstream `{}` at `{}`:\n", args.upstream, provider.name);
        out!("{}", plan.explain(&provider.scopes));
        return ExitCode::SUCCESS;
    }
    if plan.requested.is_empty() {
        return fail(
            EX_USAGE,
            format!(
                "no enabled tool of `{}` needs a scope; nothing to connect",
                args.upstream
            ),
        );
    }
    let vault = match crate::vault::open_with(&cfg).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    portcullis_gateway::fetch::allow_private(&cfg.gateway.fetch_private);
    let run = async {
        let http = oauth::http_client()?;
        let endpoints = oauth::resolve(&http, &provider).await?;
        let auth = oauth::authorize(&provider, &endpoints, Some(&vault), &plan.requested, args.port).await?;
        eprintln!(
            "Open this address in a browser to let `{}` act for you at `{}` with {}:\n\n{}\n\nWaiting for the browser (up to {:?})...",
            args.upstream,
            provider.name,
            plan.requested.join(" "),
            auth.url,
            args.timeout
        );
        auth.finish(&http, args.timeout).await
    };
    let tokens = match run.await {
        Ok(t) => t,
        Err(e) => return fail(EX_UNAVAILABLE, e),
    };
    let Some(refresh) = &tokens.refresh else {
        return fail(EX_UNAVAILABLE, oauth::OAuthError::NoRefreshToken);
    };
    let granted = tokens.scopes.clone().unwrap_or_else(|| plan.requested.clone());
    let extra: Vec<&String> = granted.iter().filter(|s| !plan.requested.contains(s)).collect();
    if !extra.is_empty() {
        eprintln!(
            "portcullis: warning: the provider granted more than was asked: {}",
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        );
    }
    // The provider's own scopes (`offline_access`) are about the grant, not the token: only
    // the tools' scopes must come back.
    let missing: Vec<&String> = plan.needed_by.keys().filter(|s| !granted.contains(s)).collect();
    if !missing.is_empty() {
        eprintln!(
            "portcullis: warning: the provider did not grant {}; tools needing them will fail",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        );
    }
    let secret = UpstreamOAuth::secret_name(&args.upstream);
    if let Err(e) = vault.set(&secret, "", refresh).await {
        return fail(EX_UNAVAILABLE, e);
    }
    let grant = Grant {
        upstream: args.upstream.clone(),
        owner: String::new(),
        provider: provider.name.clone(),
        scopes: granted.join(" "),
        secret: secret.clone(),
        created_at: now_unix(),
    };
    if let Err(e) = vault.store().put_grant(&grant).await {
        return fail(EX_UNAVAILABLE, e);
    }
    outln!(
        "connected upstream `{}` to `{}`; scopes: {}\nthe refresh token is in the vault as `{secret}`",
        args.upstream,
        provider.name,
        grant.scopes
    );
    ExitCode::SUCCESS
}

/// Runs `disconnect`.
pub async fn disconnect(args: DisconnectArgs) -> ExitCode {
    let cfg = match crate::load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let provider = match find(&cfg, &args.upstream) {
        Ok((_, _, p)) => p.clone(),
        Err(code) => return code,
    };
    let vault = match crate::vault::open_with(&cfg).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let secret = UpstreamOAuth::secret_name(&args.upstream);
    let refresh = match vault.get(&secret, "").await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail(EX_USAGE, format!("upstream `{}` is not connected", args.upstream));
        }
        Err(e) => return fail(EX_UNAVAILABLE, e),
    };
    portcullis_gateway::fetch::allow_private(&cfg.gateway.fetch_private);
    let revoked = async {
        let http = oauth::http_client()?;
        let endpoints = oauth::resolve(&http, &provider).await?;
        oauth::revoke(&http, &provider, &endpoints, Some(&vault), refresh.expose()).await
    }
    .await;
    match &revoked {
        Ok(()) => {}
        Err(e) if args.forget => eprintln!("portcullis: warning: {e}; forgetting the grant here anyway"),
        Err(e) => {
            return fail(
                EX_UNAVAILABLE,
                format!("{e}; the grant is kept (retry, or `--forget` to drop it here only)"),
            );
        }
    }
    let removed = vault.remove(&secret, "").await;
    let forgotten = vault.store().remove_grant(&args.upstream, "").await;
    if let Err(e) = removed {
        return fail(EX_UNAVAILABLE, e);
    }
    if let Err(e) = forgotten {
        return fail(EX_UNAVAILABLE, e);
    }
    outln!(
        "disconnected upstream `{}` from `{}`{}",
        args.upstream,
        provider.name,
        if revoked.is_ok() {
            "; the provider revoked the grant"
        } else {
            " here; the provider was not told"
        }
    );
    ExitCode::SUCCESS
}
