//! The 2026-07-28 Streamable HTTP request-metadata headers: `Mcp-Method`, `Mcp-Name` and
//! `Mcp-Param-{Name}` mirrored from the body, their value encoding, and the `x-mcp-header`
//! annotations in tool input schemas.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// Encodes a value for an `Mcp-Name` or `Mcp-Param-*` header: as is when it is plain visible
/// ASCII without surrounding whitespace, otherwise as `=?base64?…?=`.
pub fn encode_value(value: &str) -> String {
    let visible = value.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b));
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let looks_encoded = value.starts_with(SENTINEL_START) && value.ends_with(SENTINEL_END);
    let plain = visible && !padded && !looks_encoded;
    if plain {
        value.to_owned()
    } else {
        format!("{SENTINEL_START}{}{SENTINEL_END}", STANDARD.encode(value.as_bytes()))
    }
}

/// A header value could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderValueError {
    /// The Base64 payload or its UTF-8 is invalid.
    #[error("invalid base64-encoded header value")]
    BadBase64,
    /// The value carries characters a header may not carry.
    #[error("header value contains invalid characters")]
    InvalidCharacters,
}

/// Decodes an `Mcp-Name` / `Mcp-Param-*` header value.
pub fn decode_value(raw: &[u8]) -> Result<String, HeaderValueError> {
    if !raw.iter().all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b)) {
        return Err(HeaderValueError::InvalidCharacters);
    }
    let text = std::str::from_utf8(raw).map_err(|_| HeaderValueError::InvalidCharacters)?;
    match text
        .strip_prefix(SENTINEL_START)
        .and_then(|t| t.strip_suffix(SENTINEL_END))
    {
        Some(b64) => {
            let bytes = STANDARD.decode(b64).map_err(|_| HeaderValueError::BadBase64)?;
            String::from_utf8(bytes).map_err(|_| HeaderValueError::BadBase64)
        }
        None => Ok(text.to_owned()),
    }
}

/// One `x-mcp-header` annotation: the header name part and the property path it mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamHeader {
    /// `{Name}` in `Mcp-Param-{Name}`.
    pub name: String,
    /// The chain of `properties` keys from the schema root.
    pub path: Vec<String>,
}

/// Why a tool's `x-mcp-header` annotations make the tool definition invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamHeaderError {
    /// The annotation value is not a non-empty HTTP token.
    #[error("x-mcp-header `{0}` is not a valid HTTP header name token")]
    BadName(String),
    /// Two annotations differ only in case.
    #[error("x-mcp-header `{0}` is not unique (case-insensitively)")]
    Duplicate(String),
    /// The annotated property is not an integer, string or boolean.
    #[error("x-mcp-header `{0}` is on a property that is not an integer, string or boolean")]
    NotPrimitive(String),
    /// The annotation sits where a properties-only chain cannot reach.
    #[error("x-mcp-header is used outside a chain of `properties` from the schema root")]
    Unreachable,
    /// The annotation value is not a string.
    #[error("x-mcp-header value must be a string")]
    NotAString,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads and validates the `x-mcp-header` annotations of a tool input schema.
pub fn param_headers(input_schema: &Value) -> Result<Vec<ParamHeader>, ParamHeaderError> {
    let mut found = Vec::new();
    collect_reachable(input_schema, &mut Vec::new(), &mut found)?;
    if count_annotations(input_schema) != found.len() {
        return Err(ParamHeaderError::Unreachable);
    }
    let mut seen: Vec<String> = Vec::new();
    for h in &found {
        let lower = h.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(ParamHeaderError::Duplicate(h.name.clone()));
        }
        seen.push(lower);
    }
    Ok(found)
}

fn collect_reachable(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<ParamHeader>,
) -> Result<(), ParamHeaderError> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(ann) = prop.get("x-mcp-header") {
            let name = ann.as_str().ok_or(ParamHeaderError::NotAString)?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(ParamHeaderError::BadName(name.to_owned()));
            }
            let primitive = matches!(
                prop.get("type").and_then(Value::as_str),
                Some("string" | "integer" | "boolean")
            );
            if !primitive {
                return Err(ParamHeaderError::NotPrimitive(name.to_owned()));
            }
            out.push(ParamHeader {
                name: name.to_owned(),
                path: path.clone(),
            });
        }
        collect_reachable(prop, path, out)?;
        path.pop();
    }
    Ok(())
}

fn count_annotations(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(m.contains_key("x-mcp-header")) + m.values().map(count_annotations).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_annotations).sum(),
        _ => 0,
    }
}

/// The largest integer a JavaScript number represents exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The header value for one annotation, read from the call arguments; `None` when the
/// argument is absent, `null`, or of a type that cannot be mirrored.
pub fn param_value(arguments: &Map<String, Value>, header: &ParamHeader) -> Option<String> {
    let (last, parents) = header.path.split_last()?;
    let mut obj = arguments;
    for key in parents {
        obj = obj.get(key)?.as_object()?;
    }
    let text = match obj.get(last)? {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let i = n.as_i64()?;
            if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
                return None;
            }
            i.to_string()
        }
        _ => return None,
    };
    Some(encode_value(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_encoding_matches_the_spec_table() {
        assert_eq!(encode_value("us-west1"), "us-west1");
        assert_eq!(encode_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(encode_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(encode_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            encode_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }

    #[test]
    fn decode_inverts_encode() {
        for v in ["plain", "Hello, 世界", " x", "a\r\nb", "=?base64?x?="] {
            assert_eq!(decode_value(encode_value(v).as_bytes()).unwrap(), v);
        }
        assert_eq!(decode_value(b"=?base64?!!!?="), Err(HeaderValueError::BadBase64));
        assert_eq!(decode_value(b"a\x01b"), Err(HeaderValueError::InvalidCharacters));
    }

    #[test]
    fn reachable_annotations_are_read() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "q":{"type":"string"}}});
        let hs = param_headers(&schema).unwrap();
        assert_eq!(hs.len(), 2);
        let args = json!({"region":"eu","opts":{"n":42},"q":"x"});
        let args = args.as_object().unwrap();
        assert_eq!(param_value(args, &hs[0]).as_deref(), Some("eu"));
        assert_eq!(param_value(args, &hs[1]).as_deref(), Some("42"));
        assert_eq!(param_value(&Map::new(), &hs[0]), None);
    }

    #[test]
    fn invalid_annotations_are_rejected() {
        let cases = [
            (
                json!({"properties":{"a":{"type":"number","x-mcp-header":"A"}}}),
                "number",
            ),
            (json!({"properties":{"a":{"type":"string","x-mcp-header":""}}}), "empty"),
            (
                json!({"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}),
                "space",
            ),
            (
                json!({"properties":{"a":{"type":"string","x-mcp-header":"X"},"b":{"type":"string","x-mcp-header":"x"}}}),
                "dup",
            ),
            (
                json!({"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"X"}}}}),
                "items",
            ),
            (
                json!({"anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"X"}}}]}),
                "anyOf",
            ),
        ];
        for (schema, why) in cases {
            assert!(param_headers(&schema).is_err(), "{why} should be rejected");
        }
    }
}
