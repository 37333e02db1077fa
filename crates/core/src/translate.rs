//! Translating a 2025-11-25 upstream's answer for a 2026-07-28 client: the fields the newer
//! revision requires that the older one never sends, and the error codes it renamed. Only what
//! the newer schema demands is added; every other byte stays as the upstream sent it.

use serde_json::value::RawValue;

use crate::jsonrpc::{ErrorObject, code};
use crate::mcp::Method;
use crate::params::RawObject;

/// A legacy result made valid for a modern client: `resultType: "complete"` where absent, and
/// for `resources/read` the cache fields `ttlMs: 0` and `cacheScope: "private"` (no caching:
/// the gateway cannot know what the upstream would have allowed). A result that is not a JSON
/// object is returned as it is.
pub fn legacy_result_for_modern(method: Method, result: Box<RawValue>) -> Box<RawValue> {
    let Ok(mut obj) = RawObject::from_raw(&result) else {
        return result;
    };
    let mut changed = false;
    let mut add = |obj: &mut RawObject, key: &str, value: &str| {
        if !obj.contains(key)
            && let Ok(raw) = RawValue::from_string(value.to_owned())
        {
            obj.insert_raw(key, raw);
            changed = true;
        }
    };
    add(&mut obj, "resultType", "\"complete\"");
    if method == Method::ResourcesRead {
        add(&mut obj, "ttlMs", "0");
        add(&mut obj, "cacheScope", "\"private\"");
    }
    if changed { obj.to_raw() } else { result }
}

/// A modern result made right for a legacy client: the 2026-07-28 fields a 2025-11-25 client
/// does not know are dropped — `resultType: "complete"` (an `input_required` result never
/// reaches a legacy client: the gateway relays its questions as requests), and for
/// `resources/read` the cache fields `ttlMs` and `cacheScope`. Everything else stays as sent.
pub fn modern_result_for_legacy(method: Method, result: Box<RawValue>) -> Box<RawValue> {
    // Cheap test before parsing the whole result.
    if !result.get().contains("resultType") && method != Method::ResourcesRead {
        return result;
    }
    let Ok(mut obj) = RawObject::from_raw(&result) else {
        return result;
    };
    let mut changed = false;
    if obj.get("resultType").is_some_and(|v| v.get() == "\"complete\"") {
        obj.remove("resultType");
        changed = true;
    }
    if method == Method::ResourcesRead {
        changed |= obj.remove("ttlMs").is_some();
        changed |= obj.remove("cacheScope").is_some();
    }
    if changed { obj.to_raw() } else { result }
}

/// A legacy error made right for a modern client: "resource not found" was -32002 and is
/// -32602 (invalid params) from 2026-07-28 on.
pub fn legacy_error_for_modern(method: Method, mut error: ErrorObject) -> ErrorObject {
    if method == Method::ResourcesRead && error.code == code::LEGACY_RESOURCE_NOT_FOUND {
        error.code = code::INVALID_PARAMS;
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_client_gets_no_modern_result_fields() {
        let out = modern_result_for_legacy(
            Method::ToolsCall,
            raw(r#"{"content":[],"resultType":"complete","x":{"resultType":1}}"#),
        );
        assert_eq!(out.get(), r#"{"content":[],"x":{"resultType":1}}"#);
        let out = modern_result_for_legacy(
            Method::ResourcesRead,
            raw(r#"{"contents":[],"resultType":"complete","ttlMs":5000,"cacheScope":"public"}"#),
        );
        assert_eq!(out.get(), r#"{"contents":[]}"#);
        // Nothing to drop: the bytes as sent.
        let same = r#"{"content": [ ] }"#;
        assert_eq!(modern_result_for_legacy(Method::ToolsCall, raw(same)).get(), same);
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(Method, &str, &str)] = &[
            (
                Method::ToolsCall,
                r#"{"content":[],"x-vendor":{"a":[1,2]}}"#,
                r#"{"content":[],"x-vendor":{"a":[1,2]},"resultType":"complete"}"#,
            ),
            (
                Method::ToolsCall,
                r#"{"content":[],"resultType":"complete"}"#,
                r#"{"content":[],"resultType":"complete"}"#,
            ),
            (
                Method::ResourcesRead,
                r#"{"contents":[]}"#,
                r#"{"contents":[],"resultType":"complete","ttlMs":0,"cacheScope":"private"}"#,
            ),
            (
                Method::ResourcesRead,
                r#"{"contents":[],"ttlMs":5000,"cacheScope":"public"}"#,
                r#"{"contents":[],"ttlMs":5000,"cacheScope":"public","resultType":"complete"}"#,
            ),
            (Method::PromptsGet, "[1,2]", "[1,2]"),
        ];
        for (method, input, want) in cases {
            assert_eq!(legacy_result_for_modern(*method, raw(input)).get(), *want, "{input}");
        }
    }

    #[test]
    fn resource_not_found_is_renumbered_only_for_resource_reads() {
        let e = || ErrorObject::new(code::LEGACY_RESOURCE_NOT_FOUND, "not found");
        assert_eq!(
            legacy_error_for_modern(Method::ResourcesRead, e()).code,
            code::INVALID_PARAMS
        );
        assert_eq!(
            legacy_error_for_modern(Method::ToolsCall, e()).code,
            code::LEGACY_RESOURCE_NOT_FOUND
        );
    }
}
