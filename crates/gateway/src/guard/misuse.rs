//! Misuse, the pure half: what a call tells the credential baselines
//! ([`portcullis_core::anomaly`]) — its size and the destinations its arguments name. Counting
//! and acting on what is far outside a baseline is `state::misuse`.

use portcullis_core::provenance::{ValueKind, extract, walk_strings};
use serde_json::Value;

/// The destinations a call's arguments name: addresses, URLs, domains.
pub fn destinations(arguments: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(arguments, &mut String::new(), &mut |_, s| {
        out.extend(
            extract(s)
                .into_iter()
                .filter(|v| matches!(v.kind, ValueKind::Email | ValueKind::Url | ValueKind::Domain))
                .map(|v| v.text),
        );
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn destinations_are_addresses_urls_and_domains() {
        let d = destinations(&json!({"to": ["eve@evil.test"], "body": "see https://x.example/a", "n": 3}));
        assert!(d.iter().any(|v| v == "eve@evil.test"), "{d:?}");
        assert!(d.iter().any(|v| v.contains("x.example")), "{d:?}");
    }
}
