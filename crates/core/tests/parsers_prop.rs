//! Property tests over the parsers that read untrusted bytes: the JSON-RPC envelope, the SSE
//! decoder, the depth guard, the `Mcp-*` header value codec and the list cursor. They stand in
//! for fuzzing on the stable toolchain: arbitrary input never panics, and what the gateway
//! forwards is what it was given.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use portcullis_core::jsonrpc::code;
use portcullis_core::limits::check_depth;
use portcullis_core::sse::{SseDecoder, encode};
use portcullis_core::{Limits, Message, headers};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, a few levels deep, with awkward strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::String("\u{0}\u{200b}\u{e0041}\"\\\n".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_$/.-]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes at all: a message or a precise error, never a panic.
    #[test]
    fn envelope_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match Message::parse(&bytes, &Limits::default()) {
            Ok(m) => { let _ = m.to_vec(); }
            Err(e) => {
                let code = e.to_response().as_error().map(|e| e.code);
                prop_assert!(matches!(code, Some(code::PARSE_ERROR | code::INVALID_REQUEST)), "{code:?}");
            }
        }
    }

    /// A request's params, whatever they hold, come out of parse-and-serialise byte for byte.
    #[test]
    fn request_params_survive_byte_for_byte(params in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6), id in any::<i64>()) {
        let params = Value::Object(params.into_iter().collect());
        let text = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string();
        let m = Message::parse(text.as_bytes(), &Limits { max_frame_bytes: 1 << 20, max_depth: 64 }).unwrap();
        prop_assert_eq!(String::from_utf8(m.to_vec()).unwrap(), text);
    }

    /// The depth guard agrees with the real nesting depth of any JSON document.
    #[test]
    fn depth_guard_matches_real_depth(v in json_value(), limit in 0usize..8) {
        let text = v.to_string();
        prop_assert_eq!(check_depth(text.as_bytes(), limit).is_ok(), depth(&v) <= limit);
    }

    /// The SSE decoder: arbitrary bytes never panic, events never exceed the limit, and an
    /// encoded event decodes to itself however the stream is chunked.
    #[test]
    fn sse_decoder_is_total_and_chunking_invariant(
        noise in prop::collection::vec(any::<u8>(), 0..256),
        data in "[^\r\n]{0,64}(\n[^\r\n]{0,64}){0,3}",
        chunk in 1usize..17,
    ) {
        let mut d = SseDecoder::new(128);
        for c in noise.chunks(chunk) {
            if let Ok(events) = d.feed(c) {
                for e in events {
                    prop_assert!(e.data.len() <= 128);
                }
            }
        }
        let wire = encode(Some("7"), &data);
        let mut d = SseDecoder::new(1 << 16);
        let events: Vec<_> = wire.chunks(chunk).flat_map(|c| d.feed(c).unwrap()).collect();
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(&events[0].data, &data);
        prop_assert_eq!(events[0].id.as_deref(), Some("7"));
    }

    /// `Mcp-Name` / `Mcp-Param-*` values: every string round-trips through the header codec,
    /// and what is put on the wire is always a legal header value.
    #[test]
    fn header_values_round_trip(s in "\\PC{0,40}|[ \t]{0,2}[ -~]{0,20}[ \t]{0,2}") {
        let wire = headers::encode_value(&s);
        prop_assert!(wire.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b)));
        prop_assert_eq!(headers::decode_value(wire.as_bytes()).unwrap(), s);
    }

    /// Issue 19: a frame that names its id first and then breaks (cut short, bytes that are not
    /// UTF-8, a stray token) is answered with that id, never with `null`.
    #[test]
    fn a_broken_frame_that_names_its_id_first_is_answered_with_it(
        id in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..64,
    ) {
        let mut frame = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":").into_bytes();
        frame.extend_from_slice(&body[..cut.min(body.len())]);
        if let Err(e) = Message::parse(&frame, &Limits::default()) {
            prop_assert_eq!(e.to_response().id, Some(portcullis_core::Id::Int(id)));
        }
    }

    /// The era translation of a result is total: any result, any method, comes out as JSON
    /// that holds everything it held but the members the translation drops.
    #[test]
    fn the_era_translation_of_results_is_total(
        result in prop::collection::btree_map("[a-zA-Z]{1,10}", json_value(), 0..6),
        result_type in prop_oneof![Just(None), Just(Some("complete")), Just(Some("input_required"))],
        method in prop_oneof![Just("tools/call"), Just("resources/read"), Just("prompts/get"), Just("vendor/x")],
    ) {
        let mut obj: serde_json::Map<String, Value> = result.into_iter().collect();
        if let Some(t) = result_type {
            obj.insert("resultType".into(), json!(t));
        }
        let raw = serde_json::value::to_raw_value(&Value::Object(obj.clone())).unwrap();
        let method = portcullis_core::mcp::Method::of(method);
        let out = portcullis_core::translate::modern_result_for_legacy(method, raw);
        let out: serde_json::Map<String, Value> = serde_json::from_str(out.get()).unwrap();
        for (k, v) in &obj {
            let dropped = (k == "resultType" && v == "complete")
                || (method == portcullis_core::mcp::Method::ResourcesRead && (k == "ttlMs" || k == "cacheScope"));
            if dropped {
                prop_assert!(!out.contains_key(k), "{k} kept");
            } else {
                prop_assert_eq!(out.get(k), Some(v), "{} changed", k);
            }
        }
        prop_assert!(out.keys().all(|k| obj.contains_key(k)), "a member was added");
    }
}
