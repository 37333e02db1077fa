use super::*;

fn modern() -> ServerInfo {
    ServerInfo {
        era: Era::Modern,
        version: "2026-07-28".into(),
        capabilities: Map::new(),
        server_info: None,
        instructions: None,
    }
}

fn legacy() -> ServerInfo {
    ServerInfo {
        era: Era::Legacy,
        version: "2025-11-25".into(),
        ..modern()
    }
}

#[test]
fn modern_params_get_protocol_fields_and_keep_the_rest() {
    let p = Params::from_json(r#"{"name":"x","_meta":{"progressToken":5,"com.example/k":"v"},"arguments":{"a":1}}"#)
        .unwrap();
    let cm = ClientMeta {
        capabilities: serde_json::from_str(r#"{"elicitation":{}}"#).unwrap(),
        client_info: None,
        log_level: Some("info".into()),
    };
    let out = shape_params(Some(p), &modern(), Some(&cm)).to_value();
    let m = &out["_meta"];
    assert_eq!(m["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    assert_eq!(
        m["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation":{}})
    );
    assert_eq!(m["io.modelcontextprotocol/clientInfo"]["name"], "portcullis");
    assert_eq!(m["io.modelcontextprotocol/logLevel"], "info");
    assert_eq!(m["progressToken"], 5);
    assert_eq!(m["com.example/k"], "v");
    assert_eq!(out["arguments"], json!({"a":1}));
}

/// The client's `_meta` members pass on only when they can be read one way: a `_meta` naming a
/// member twice (which of the two would the upstream take?) or not an object is not passed on,
/// and the gateway's protocol fields stand alone.
#[test]
fn an_ambiguous_or_malformed_meta_is_not_passed_on() {
    for meta in [r#"{"progressToken":1,"progressToken":2}"#, r#""text""#, "[1]"] {
        let p = Params::from_json(&format!(r#"{{"name":"x","_meta":{meta}}}"#)).unwrap();
        let out = shape_params(Some(p), &modern(), None).to_value();
        let m = out["_meta"].as_object().unwrap();
        assert!(!m.contains_key("progressToken"), "{meta}: {out}");
        assert_eq!(m.len(), 3, "{meta}: {out}");
        assert_eq!(m["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
        assert_eq!(out["name"], "x");
        let out = shape_params(
            Some(Params::from_json(&format!(r#"{{"_meta":{meta}}}"#)).unwrap()),
            &legacy(),
            None,
        );
        assert!(!out.contains("_meta"), "{meta}");
    }
}

#[test]
fn legacy_params_lose_modern_fields() {
    let p = Params::from_json(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}"#).unwrap();
    let out = shape_params(Some(p), &legacy(), None).to_value();
    assert_eq!(out, json!({}));
}

#[test]
fn probe_classification() {
    let ok = Response::result(
        portcullis_core::Id::Int(1),
        serde_json::value::to_raw_value(&json!({"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}))
            .unwrap(),
    );
    assert!(matches!(classify_probe(&ok), Ok(Probe::Modern(_))));
    let legacy = Response::error(None, ErrorObject::new(-32601, "Method not found"));
    assert!(matches!(classify_probe(&legacy), Ok(Probe::Legacy)));
    let unsupported = Response::error(
        None,
        ErrorObject::with_data(-32022, "x", &json!({"supported":["2099-01-01"]})),
    );
    assert!(classify_probe(&unsupported).is_err());
    let renegotiate = Response::error(
        None,
        ErrorObject::with_data(-32022, "x", &json!({"supported":["2099-01-01", "2026-07-28"]})),
    );
    assert!(matches!(classify_probe(&renegotiate), Ok(Probe::Retry)));
    let future_only = Response::result(
        portcullis_core::Id::Int(1),
        serde_json::value::to_raw_value(&json!({"supportedVersions":["2099-01-01"],"capabilities":{}})).unwrap(),
    );
    assert!(classify_probe(&future_only).is_err());
}
