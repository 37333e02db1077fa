//! Strict JSON: the one way the gateway reads a value it will judge. A peer's parser and ours
//! must never disagree about what a message says, so anything two parsers could read two ways
//! is refused instead of guessed at:
//!
//! - an object with the same member twice (parsers keep the first, the last, or both);
//! - a number that has no exact 64-bit reading: beyond the `f64` range (`1e400`), or an integral
//!   value past ±2^53 that is not a 64-bit integer (`123456789012345678901234567890`, `1e30`);
//! - a string with a lone UTF-16 surrogate (`"\ud800"`), which is no Unicode text at all.
//!
//! INVARIANT: a value that [`parse`] accepts is the value every conforming JSON parser reads
//! from the same bytes, so judging it judges what the peer will act on.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a text is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StrictError(pub String);

/// The largest magnitude up to which every integer is exactly an `f64`.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// Parses `text` strictly (see the module docs).
pub fn parse(text: &str) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict.deserialize(&mut de).map_err(|e| StrictError(e.to_string()))?;
    de.end().map_err(|e| StrictError(e.to_string()))?;
    Ok(v)
}

/// Parses `text` strictly and requires an object.
pub fn parse_object(text: &str) -> Result<Map<String, Value>, StrictError> {
    match parse(text)? {
        Value::Object(m) => Ok(m),
        other => Err(StrictError(format!("expected an object, got {}", kind(&other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json gives an integer literal past 64 bits as an `f64`: such a value (or any
        // float this large) reads differently in parsers with big integers.
        if v.is_finite() && (v.fract() != 0.0 || v.abs() < EXACT_F64) {
            Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("number out of range"))
        } else {
            Err(E::custom(format!(
                "number {v:e} has no exact reading (integers must fit 64 bits, other values ±2^53)"
            )))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member `{key}`")));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn refuses_what_two_parsers_could_read_two_ways() {
        for (text, why) in [
            (r#"{"to":"a@x","to":"eve@evil.test"}"#, "duplicate member `to`"),
            (r#"{"a":{"b":1,"b":2}}"#, "duplicate member `b`"),
            (r#"{"n":1e400}"#, "out of range"),
            (r#"{"n":123456789012345678901234567890}"#, "no exact reading"),
            (r#"{"n":-1e30}"#, "no exact reading"),
            (r#"{"s":"\ud800"}"#, "escape"),
            (r#"{"s":"\udc00x"}"#, "escape"),
            (r#"{"a":1} x"#, "trailing"),
        ] {
            let err = parse(text).expect_err(text).0;
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn accepts_what_every_parser_reads_alike() {
        let v = parse(r#"{"to":["a@x"],"n":18446744073709551615,"m":-9223372036854775808,"f":1.5,"big":9007199254740991.0,"s":"\ud83d\ude00"}"#)
            .unwrap();
        assert_eq!(v["n"], json!(u64::MAX));
        assert_eq!(v["m"], json!(i64::MIN));
        assert_eq!(v["s"], json!("😀"));
        assert!(parse_object("[]").is_err());
        assert!(parse_object("{}").unwrap().is_empty());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-1.0e15f64..1.0e15).prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json writes, the strict parser reads back as the same value.
        #[test]
        fn written_values_read_back_equal(v in arb_json()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(parse(&text).unwrap(), v);
        }

        /// When the strict parser accepts a text, the lenient one reads the same value.
        #[test]
        fn accepted_texts_read_alike_leniently(v in arb_json(), dup in any::<bool>()) {
            let text = serde_json::to_string(&v).unwrap();
            if let (true, Value::Object(m)) = (dup, &v)
                && let Some((k, first)) = m.iter().next()
            {
                // Repeat the first member: now the strict parser must refuse it.
                let repeated = format!(
                    "{{{}:{},{}",
                    serde_json::to_string(k).unwrap(),
                    serde_json::to_string(first).unwrap(),
                    &text[1..]
                );
                prop_assert!(parse(&repeated).is_err());
            } else {
                let lenient: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(parse(&text).unwrap(), lenient);
            }
        }
    }
}
