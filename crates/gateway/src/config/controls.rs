//! The configuration of the controls that sit in the call path: tool pinning (`[pins]`) and
//! rate and volume limits (`[rate]`, `[upstreams.X.rate]`, `[upstreams.X.tools.Y.rate]`).

use std::time::Duration;

use portcullis_core::rate::Rate;
use serde::Deserialize;
use toml::Spanned;

use portcullis_core::label::Integrity;
use portcullis_vault::KeySource;

use portcullis_core::anomaly::Thresholds;

use super::{AnomalyConfig, ConfigError, FlowConfig, Lowering, OutputLabel, PinsConfig};
use portcullis_core::scan::Severity;

/// The longest rate window accepted.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPins {
    trust_on_first_use: Option<bool>,
    hold_on: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    key_file: Option<Spanned<String>>,
    #[serde(default)]
    passphrase: bool,
    #[serde(default)]
    keyring: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnomaly {
    on_anomaly: Option<Spanned<String>>,
    webhook: Option<Spanned<String>>,
    factor: Option<Spanned<f64>>,
    calls_per_hour: Option<Spanned<u64>>,
    destinations_per_hour: Option<Spanned<u64>>,
    bytes_per_hour: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlow {
    window: Option<Spanned<String>>,
    max_values: Option<Spanned<u64>>,
    #[serde(default)]
    trusted_destinations: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    calls: Option<Spanned<u64>>,
    bytes: Option<Spanned<u64>>,
    window: Option<Spanned<String>>,
}

impl Lowering<'_> {
    pub(super) fn pins(&self, p: RawPins) -> Result<PinsConfig, ConfigError> {
        let hold_on = match p.hold_on {
            None => Some(Severity::High),
            Some(h) => match h.get_ref().as_str() {
                "never" => None,
                "high" => Some(Severity::High),
                "medium" => Some(Severity::Medium),
                other => {
                    return self.err(
                        h.span(),
                        "pins.hold_on",
                        format!("must be `high`, `medium` or `never`, got `{other}`"),
                    );
                }
            },
        };
        Ok(PinsConfig {
            trust_on_first_use: p.trust_on_first_use.unwrap_or(true),
            hold_on,
        })
    }

    /// `[vault]`: a key file (resolved against the config's folder), a passphrase, the OS
    /// keyring, or (the default) `PORTCULLIS_MASTER_KEY`.
    pub(super) fn vault(&self, v: RawVault) -> Result<KeySource, ConfigError> {
        if v.keyring {
            return match (&v.key_file, v.passphrase) {
                (None, false) => Ok(KeySource::Keyring),
                (Some(f), _) => self.err(
                    f.span(),
                    "vault.keyring",
                    "give one of `key_file`, `passphrase`, `keyring`",
                ),
                (None, true) => self.err(0..0, "vault.keyring", "give one of `key_file`, `passphrase`, `keyring`"),
            };
        }
        match (v.key_file, v.passphrase) {
            (Some(f), true) => self.err(
                f.span(),
                "vault.key_file",
                "give `key_file` or `passphrase = true`, not both",
            ),
            (Some(f), false) if f.get_ref().trim().is_empty() => {
                self.err(f.span(), "vault.key_file", "must not be empty")
            }
            (Some(f), false) => Ok(KeySource::File(self.base_dir().join(f.get_ref()))),
            (None, true) => Ok(KeySource::Passphrase),
            (None, false) => Ok(KeySource::Env),
        }
    }

    /// `[anomaly]`: thresholds, what to do, where to tell.
    pub(super) fn anomaly(&self, a: RawAnomaly) -> Result<AnomalyConfig, ConfigError> {
        let d = Thresholds::default();
        let suspend = match a.on_anomaly {
            None => false,
            Some(s) => match s.get_ref().as_str() {
                "alert" => false,
                "suspend" => true,
                other => {
                    return self.err(
                        s.span(),
                        "anomaly.on_anomaly",
                        format!("must be `alert` or `suspend`, got `{other}`"),
                    );
                }
            },
        };
        let webhook = match a.webhook {
            None => None,
            Some(w) => match reqwest::Url::parse(w.get_ref()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                _ => return self.err(w.span(), "anomaly.webhook", "must be an http:// or https:// URL"),
            },
        };
        let factor = match a.factor {
            None => d.factor,
            Some(f) if f.get_ref().is_finite() && *f.get_ref() >= 1.0 && *f.get_ref() <= 1000.0 => *f.get_ref(),
            Some(f) => return self.err(f.span(), "anomaly.factor", "must be between 1 and 1000"),
        };
        Ok(AnomalyConfig {
            thresholds: Thresholds {
                factor,
                calls_per_hour: self.bounded(
                    a.calls_per_hour,
                    "anomaly.calls_per_hour",
                    1,
                    u64::MAX,
                    d.calls_per_hour,
                )?,
                destinations_per_hour: self.bounded(
                    a.destinations_per_hour,
                    "anomaly.destinations_per_hour",
                    1,
                    u64::MAX,
                    d.destinations_per_hour,
                )?,
                bytes_per_hour: self.bounded(
                    a.bytes_per_hour,
                    "anomaly.bytes_per_hour",
                    1,
                    u64::MAX,
                    d.bytes_per_hour,
                )?,
            },
            suspend,
            webhook,
        })
    }

    pub(super) fn flow(&self, f: RawFlow) -> Result<FlowConfig, ConfigError> {
        let mut trusted_destinations = Vec::new();
        for d in f.trusted_destinations {
            let pattern = d.get_ref().trim().to_ascii_lowercase();
            let bare = pattern.trim_start_matches("*@").trim_start_matches("*.");
            if bare.is_empty() || bare.contains('*') || pattern.chars().any(char::is_whitespace) {
                return self.err(
                    d.span(),
                    "flow.trusted_destinations",
                    format!(
                        "`{}` is not a destination pattern: an address, `*@domain`, a domain, `*.domain` or a URL prefix",
                        d.get_ref()
                    ),
                );
            }
            trusted_destinations.push(pattern);
        }
        Ok(FlowConfig {
            window: self.duration(f.window, "flow.window", Duration::from_secs(30 * 60))?,
            max_values: self.bounded(f.max_values, "flow.max_values", 100, 10_000_000, 20_000)? as usize,
            trusted_destinations,
        })
    }

    /// `output = "trusted" | "untrusted"` and `private`.
    pub(super) fn output_label(
        &self,
        output: Option<Spanned<String>>,
        private: Option<bool>,
        key: &str,
    ) -> Result<OutputLabel, ConfigError> {
        let trust = match output {
            None => None,
            Some(s) => match s.get_ref().as_str() {
                "trusted" => Some(Integrity::Trusted),
                "untrusted" => Some(Integrity::Untrusted),
                other => {
                    return self.err(
                        s.span(),
                        key,
                        format!("must be `trusted` or `untrusted`, got `{other}`"),
                    );
                }
            },
        };
        Ok(OutputLabel { trust, private })
    }

    /// One rate table: `calls` and/or `bytes` per `window`.
    pub(super) fn rate(&self, raw: Option<Spanned<RawRate>>, key: &str) -> Result<Option<Rate>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let r = raw.into_inner();
        let Some(window) = r.window else {
            return self.err(span, &format!("{key}.window"), "is required, e.g. `window = \"1m\"`");
        };
        let window = match super::parse_duration(window.get_ref()) {
            Some(d) if d >= Duration::from_secs(1) && d <= MAX_WINDOW => d,
            _ => {
                return self.err(
                    window.span(),
                    &format!("{key}.window"),
                    format!(
                        "`{}` is not a duration between 1s and 168h, like `30s`, `1m` or `24h`",
                        window.get_ref()
                    ),
                );
            }
        };
        let positive = |v: Option<Spanned<u64>>, k: &str| -> Result<Option<u64>, ConfigError> {
            match v {
                Some(n) if *n.get_ref() == 0 => self.err(
                    n.span(),
                    &format!("{key}.{k}"),
                    "must be at least 1 (to forbid calls, write a policy)",
                ),
                other => Ok(other.map(Spanned::into_inner)),
            }
        };
        let calls = positive(r.calls, "calls")?;
        let bytes = positive(r.bytes, "bytes")?;
        if calls.is_none() && bytes.is_none() {
            return self.err(span, key, "needs `calls`, `bytes`, or both");
        }
        Ok(Some(Rate { calls, bytes, window }))
    }
}
