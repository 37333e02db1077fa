//! Redaction: every vault secret, in every form it is likely to travel in — plain, JSON-escaped,
//! base64 (standard and URL-safe, padded or not), hex (lower and upper case) and URL-encoded —
//! replaced by `[redacted:NAME]` in whatever leaves the gateway. One Aho-Corasick automaton over
//! all forms of all secrets, rebuilt when the vault changes. A secret written with some of its
//! characters escaped — JSON `\u` escapes in any mix, percent-encoding in either case — is
//! found in a decoded view of the text ([`views`]) and replaced in the original.

use std::borrow::Cow;
use std::fmt::Write as _;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;

mod views;

/// Secrets shorter than this are not redacted (they would match ordinary text); the gateway
/// warns about them.
pub const MIN_SECRET_LEN: usize = 6;

/// The automaton over every form of every secret.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    ac: Option<AhoCorasick>,
    /// For each pattern, the replacement.
    replacements: Vec<String>,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The forms one secret value travels in.
pub fn forms(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = value.as_bytes();
    let hex = hex::encode(bytes);
    let json = serde_json::to_string(value).unwrap_or_default();
    let mut forms = vec![
        value.to_owned(),
        json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_owned(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.to_ascii_uppercase(),
        hex,
        percent_encode(value),
        // application/x-www-form-urlencoded (query strings, form bodies): space as `+`.
        percent_encode(value).replace("%20", "+"),
    ];
    forms.extend(embedded_base64(bytes));
    forms.sort();
    forms.dedup();
    forms.retain(|f| f.len() >= MIN_SECRET_LEN);
    forms
}

/// The shortest base64 core worth matching: shorter ones would hit ordinary text.
const MIN_CORE: usize = 8;

/// The secret's base64 when it sits inside a longer encoded value (`user:secret` in HTTP Basic
/// auth, a JSON blob): at each of the three byte alignments, the characters that depend on
/// the secret's bytes alone. The one or two bytes at either edge share a group with their
/// neighbours and stay visible; the rest is found.
fn embedded_base64(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut out = Vec::new();
    for shift in 0..3usize {
        // Prefix `shift` zero bytes: the first group is then partly the prefix's (unless
        // shift is 0), and only whole groups of secret bytes are kept.
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(bytes);
        let whole = padded.len() / 3 * 3;
        let skip = if shift == 0 { 0 } else { 3 };
        let Some(core) = padded.get(skip..whole) else {
            continue;
        };
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(core);
            if enc.len() >= MIN_CORE {
                out.push(enc);
            }
        }
    }
    out
}

impl Redactor {
    /// The redactor for `(name, value)` pairs; values shorter than [`MIN_SECRET_LEN`] are
    /// skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let mut patterns = Vec::new();
        let mut replacements = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            for f in forms(value) {
                patterns.push(f);
                replacements.push(format!("[redacted:{name}]"));
            }
        }
        if patterns.is_empty() {
            return Redactor::default();
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Redactor { ac, replacements }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `text` with every secret form replaced.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        }
    }

    /// `bytes` with every secret form replaced.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        let Some(ac) = &self.ac else {
            return Cow::Borrowed(bytes);
        };
        let direct = if ac.find(bytes).is_some() {
            Cow::Owned(ac.replace_all_bytes(bytes, &self.replacements))
        } else {
            Cow::Borrowed(bytes)
        };
        match self.redact_views(ac, &direct) {
            Some(v) => Cow::Owned(v),
            None => direct,
        }
    }

    /// Secrets found in a decoded view of `bytes` (JSON `\u` escapes, percent escapes),
    /// replaced in `bytes`; `None` when there are none.
    fn redact_views(&self, ac: &AhoCorasick, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for view in [views::json(bytes), views::percent(bytes)].into_iter().flatten() {
            for m in ac.find_iter(&view.decoded) {
                let (Some(first), Some(last)) =
                    (view.origin.get(m.start()), view.origin.get(m.end().saturating_sub(1)))
                else {
                    continue;
                };
                spans.push((first.0, last.1, m.pattern().as_usize()));
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for (start, end, pattern) in spans {
            if start < at {
                // Overlaps a span replaced already: extend it.
                at = at.max(end);
                continue;
            }
            out.extend_from_slice(bytes.get(at..start).unwrap_or_default());
            out.extend_from_slice(
                self.replacements
                    .get(pattern)
                    .map_or("[redacted]", String::as_str)
                    .as_bytes(),
            );
            at = end;
        }
        out.extend_from_slice(bytes.get(at..).unwrap_or_default());
        Some(out)
    }
}

/// Words in an environment variable or header name that say its value is a credential.
const SECRET_KEY_WORDS: [&str; 11] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "credential",
    "private_key",
];

/// Known credential prefixes (GitHub, OpenAI, Anthropic, Stripe, Slack, GitLab, AWS, Google).
const SECRET_PREFIXES: [&str; 14] = [
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "github_pat_",
    "sk-",
    "sk_live_",
    "rk_live_",
    "xoxb-",
    "xoxp-",
    "glpat-",
    "AKIA",
    "AIza",
    "Bearer ",
];

/// Whether a config value looks like a credential: its key names one (`GITHUB_TOKEN`,
/// `Authorization`, `DB_PASSWORD`, …) or its value has a known credential format. Used by
/// `portcullis import` to move values into the vault.
pub fn looks_like_secret(key: &str, value: &str) -> bool {
    if value.trim().is_empty() || value.starts_with("vault:") {
        return false;
    }
    let k = key.to_ascii_lowercase();
    if SECRET_KEY_WORDS.iter().any(|w| k.contains(w)) || k.ends_with("_key") || k == "key" {
        return true;
    }
    SECRET_PREFIXES
        .iter()
        .any(|p| value.starts_with(p) && value.len() >= p.len() + 16)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    const TOKEN: &str = "ghp_S3cr3tT0kenValue/with+odd=chars";

    #[test]
    fn every_form_is_redacted() {
        let r = Redactor::new([("github", TOKEN)]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(TOKEN);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TOKEN);
        let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
        let url = percent_encode(TOKEN);
        for leak in [
            format!("env: TOKEN={TOKEN}"),
            format!("{{\"auth\":\"{b64}\"}}"),
            format!("cookie={b64url}"),
            format!("dump {hex} and {}", hex.to_uppercase()),
            format!("https://x.test/?t={url}"),
        ] {
            let out = r.redact(&leak);
            assert!(out.contains("[redacted:github]"), "{leak} -> {out}");
            for f in forms(TOKEN) {
                assert!(!out.contains(&f), "{leak} -> {out} still has {f}");
            }
        }
        assert_eq!(r.redact("nothing here"), Cow::Borrowed("nothing here"));
    }

    #[test]
    fn a_secret_inside_a_longer_base64_value_is_found() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let r = Redactor::new([("github", TOKEN)]);
        // HTTP Basic auth carries `user:secret`; a blob carries it between other bytes.
        for prefix in ["", "b", "bo", "bot:", "{\"k\":\""] {
            for suffix in ["", "\"}", "x"] {
                for enc in [
                    STANDARD.encode(format!("{prefix}{TOKEN}{suffix}")),
                    URL_SAFE_NO_PAD.encode(format!("{prefix}{TOKEN}{suffix}")),
                ] {
                    let text = format!("Authorization: Basic {enc}");
                    let out = r.redact(&text);
                    assert!(out.contains("[redacted:github]"), "{prefix}|{suffix}: {out}");
                    // What is left is the neighbours' encoding and at most the two groups
                    // (eight characters) shared with them.
                    let kept = out.len() - "Authorization: Basic [redacted:github]".len();
                    assert!(kept <= (prefix.len() + suffix.len()) * 4 / 3 + 8, "{out}");
                }
            }
        }
    }

    #[test]
    fn json_escaped_secrets_are_found_in_json_text() {
        let value = "pa\"ss\\word!";
        let r = Redactor::new([("db", value)]);
        let json = serde_json::json!({ "env": value }).to_string();
        assert_eq!(r.redact(&json), "{\"env\":\"[redacted:db]\"}");
    }

    /// Regression: a secret with one non-ASCII character, as Python's `json.dumps` writes it
    /// by default (`\u`-escaped), Go-style `\u0026` escapes, and lower-case `%xx` escapes
    /// went through.
    #[test]
    fn secrets_in_mixed_escapes_are_found() {
        let secret = "s3cr\u{e9}t&Token/42";
        let r = Redactor::new([("api", secret)]);
        let python = "s3cr\\u00e9t&Token/42";
        let go = "s3cr\u{e9}t\\u0026Token/42";
        let mixed = "\\u0073\\u0033cr\\u00E9t\\u0026T\\u006fken\\/42";
        let lower_percent = "s3cr%c3%a9t%26Token%2f42";
        let upper_percent = "s3cr%C3%A9t%26Token%2F42";
        for leak in [python, go, mixed, lower_percent, upper_percent] {
            let text = format!("{{\"result\":\"value: {leak} end\"}}");
            let out = r.redact(&text);
            assert!(out.contains("[redacted:api]"), "{leak} -> {out}");
            assert!(!out.contains("Token"), "{leak} -> {out}");
            assert!(out.ends_with(" end\"}"), "{leak} -> {out}");
        }
        // An astral character escaped as a surrogate pair.
        let r = Redactor::new([("emoji", "key-\u{1F600}-value")]);
        let out = r.redact(r#"{"t":"key-\ud83d\ude00-value"}"#);
        assert_eq!(out, r#"{"t":"[redacted:emoji]"}"#);
    }

    #[test]
    fn short_values_are_not_redacted() {
        let r = Redactor::new([("pin", "1234")]);
        assert!(r.is_empty());
        assert_eq!(r.redact("1234"), "1234");
    }

    #[test]
    fn secret_looking_values() {
        for (k, v, want) in [
            ("GITHUB_PERSONAL_ACCESS_TOKEN", "anything", true),
            ("Authorization", "Bearer abc", true),
            ("DB_PASSWORD", "hunter2", true),
            ("OPENAI_API_KEY", "x", true),
            ("STRIPE_KEY", "x", true),
            ("SOME_VALUE", "ghp_abcdefghijklmnopqrstuvwxyz0123", true),
            ("SOME_VALUE", "AKIAIOSFODNN7EXAMPLE1", true),
            ("LOG_LEVEL", "debug", false),
            ("PATH", "/usr/bin", false),
            ("GITHUB_TOKEN", "vault:github", false),
            ("GITHUB_TOKEN", "", false),
            ("HOST", "sk-short", false),
        ] {
            assert_eq!(looks_like_secret(k, v), want, "{k}={v}");
        }
    }

    proptest! {
        /// A secret with any of its characters `\u`-escaped or percent-encoded (either case)
        /// does not survive.
        #[test]
        fn no_mix_of_escapes_survives(secret in "[A-Za-z0-9/&<>é-]{6,24}", mask in prop::collection::vec(0u8..4, 24)) {
            let r = Redactor::new([("s", secret.as_str())]);
            let mut json = String::new();
            let mut pct = String::new();
            for (i, c) in secret.chars().enumerate() {
                let m = mask.get(i).copied().unwrap_or(0);
                let mut buf = [0u16; 2];
                match m {
                    1 => c.encode_utf16(&mut buf).iter().for_each(|u| json.push_str(&format!("\\u{u:04x}"))),
                    2 => c.encode_utf16(&mut buf).iter().for_each(|u| json.push_str(&format!("\\u{u:04X}"))),
                    _ => json.push(c),
                }
                let mut b = [0u8; 4];
                if m == 0 || m == 3 {
                    pct.push(c);
                }
                for byte in c.encode_utf8(&mut b).bytes().filter(|_| m == 1 || m == 2) {
                    pct.push_str(&if m == 1 { format!("%{byte:02x}") } else { format!("%{byte:02X}") });
                }
            }
            for leak in [json, pct] {
                let text = format!("{{\"v\":\"<{leak}>\"}}");
                let out = r.redact(&text);
                prop_assert!(out.contains("[redacted:s]"), "{text} -> {out}");
            }
        }

        /// Wherever a secret sits in text, no form of it survives.
        #[test]
        fn no_form_survives(prefix in "\\PC{0,40}", suffix in "\\PC{0,40}", secret in "[A-Za-z0-9+/=_-]{6,40}") {
            let r = Redactor::new([("s", secret.as_str())]);
            for f in forms(&secret) {
                let text = format!("{prefix}{f}{suffix}");
                let out = r.redact(&text);
                prop_assert!(!out.contains(&f), "{text} -> {out}");
            }
        }
    }
}
