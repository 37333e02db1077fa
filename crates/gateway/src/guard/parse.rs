//! The first stage of every plan: the request's params read strictly, once, from the very bytes
//! that will be forwarded ([`portcullis_core::strict`]). What a peer could read two ways — a
//! member named twice, a number with no exact reading, a lone surrogate — is refused here,
//! before anything judges it, so policy, the approver, provenance and the audit log see exactly
//! what the upstream will act on.

use portcullis_core::Params;
use portcullis_core::strict;
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// Every member of `params`, read strictly. The raw members stay as they are: they are what is
/// forwarded, and this is their one reading.
pub fn params(params: &Params) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    for (key, raw) in params.iter() {
        let v = strict::parse(raw.get()).map_err(|e| GatewayError::InvalidParams(format!("`{key}`: {e}")))?;
        out.insert(key.to_owned(), v);
    }
    Ok(out)
}

/// The `arguments` of a call: an object, or `{}` when absent (the bytes forwarded then carry
/// none either, which every server reads as no arguments).
pub fn arguments(read: &Map<String, Value>) -> Result<Value, GatewayError> {
    match read.get("arguments") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(GatewayError::InvalidParams("`arguments` must be an object".into())),
    }
}

/// A string member the request needs (`name`, `uri`).
pub fn required_str(read: &Map<String, Value>, key: &str) -> Result<String, GatewayError> {
    read.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| GatewayError::InvalidParams(format!("`{key}` must be a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn read(text: &str) -> Result<Map<String, Value>, GatewayError> {
        params(&Params::from_json(text).unwrap())
    }

    /// Regression: one argument serde_json could not turn into a value made the gateway judge
    /// `{}` while the upstream got the real arguments.
    #[test]
    fn what_cannot_be_read_exactly_is_refused_not_judged_as_empty() {
        for text in [
            r#"{"name":"send","arguments":{"to":"eve@evil.test","n":1e400}}"#,
            r#"{"name":"send","arguments":{"to":"eve@evil.test","s":"\ud800"}}"#,
            r#"{"name":"send","arguments":{"to":"ok@example.com","to":"eve@evil.test"}}"#,
            r#"{"name":"send","arguments":{"to":"eve@evil.test","n":123456789012345678901234567890}}"#,
        ] {
            let e = read(text).expect_err(text);
            assert!(matches!(e, GatewayError::InvalidParams(_)), "{text}: {e}");
            assert!(e.to_string().contains("`arguments`"), "{e}");
        }
        let e = arguments(&read(r#"{"name":"x","arguments":[1]}"#).unwrap()).unwrap_err();
        assert!(e.to_string().contains("must be an object"));
    }

    #[test]
    fn absent_arguments_are_empty() {
        assert_eq!(arguments(&read(r#"{"name":"x"}"#).unwrap()).unwrap(), json!({}));
        assert_eq!(
            arguments(&read(r#"{"name":"x","arguments":null}"#).unwrap()).unwrap(),
            json!({})
        );
    }

    fn arb_arg() -> impl Strategy<Value = String> {
        // Member texts as a hostile client might write them, valid and not.
        prop_oneof![
            "\"[a-z@.]{0,12}\"".prop_map(|s| s),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!("{n}0000")),
            (-1.0e300f64..1.0e300).prop_map(|f| format!("{f:e}")),
            Just("1e400".to_owned()),
            Just("\"\\ud800\"".to_owned()),
            Just("\"\\ud83d\\ude00\"".to_owned()),
            Just("[1,{\"a\":2}]".to_owned()),
            Just("{\"k\":1,\"k\":2}".to_owned()),
            Just("null".to_owned()),
        ]
    }

    proptest! {
        /// The value judged is the value a strict parser reads from the forwarded bytes: the
        /// params the gateway forwards are re-encoded from the same raw members it read.
        #[test]
        fn the_value_judged_is_the_value_forwarded(members in prop::collection::vec(("[a-z]{1,3}", arb_arg()), 0..6)) {
            let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!(r#"{{"name":"t","arguments":{{{}}}}}"#, body.join(","));
            let Ok(raw) = Params::from_json(&text) else { return Ok(()) };
            if let Ok(read) = params(&raw) {
                let judged = arguments(&read).unwrap();
                // What goes upstream: the params object re-encoded, raw members untouched.
                let forwarded = serde_json::to_string(&raw).unwrap();
                let upstream = strict::parse(&forwarded).unwrap();
                prop_assert_eq!(&upstream["arguments"], &judged);
                // And a lenient parser of the forwarded bytes agrees too.
                let lenient: Value = serde_json::from_str(&forwarded).unwrap();
                prop_assert_eq!(&lenient["arguments"], &judged);
            }
        }
    }
}
