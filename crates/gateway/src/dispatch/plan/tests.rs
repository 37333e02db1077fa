use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::guard::mediate::PEER_REQUESTS;

/// The MCP schemas of both revisions the gateway speaks, from `../shared/mcp-spec`.
fn schemas() -> Vec<(String, Value)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mcp-spec");
    ["2025-11-25", "2026-07-28"]
        .iter()
        .map(|v| {
            let path = root.join(v).join("schema.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            ((*v).to_owned(), serde_json::from_str(&text).unwrap())
        })
        .collect()
}

fn method_of(defs: &Value, reference: &str) -> String {
    let name = reference.rsplit('/').next().unwrap();
    defs[name]["properties"]["method"]["const"].as_str().unwrap().to_owned()
}

/// The methods of a union (`ClientRequest`, `ServerNotification`, …).
fn union(schema: &Value, name: &str) -> BTreeSet<String> {
    let defs = &schema["$defs"];
    defs[name]["anyOf"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| method_of(defs, r["$ref"].as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every request method the schema defines.
fn requests(schema: &Value) -> BTreeSet<String> {
    schema["$defs"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("Request"))
        .filter_map(|(_, d)| d["properties"]["method"]["const"].as_str().map(str::to_owned))
        .collect()
}

/// Every request a client may send, in either revision, is answered by the gateway, planned,
/// or refused with a reason: none is forwarded by default.
#[test]
fn every_client_request_of_both_revisions_has_a_handling() {
    for (version, schema) in schemas() {
        let era = portcullis_core::mcp::Era::of_version(&version);
        let client = union(&schema, "ClientRequest");
        assert!(client.len() >= 10, "{version}: {client:?}");
        for method in &client {
            let listed = METHODS.iter().find(|(m, _, _)| m == method);
            let (_, eras, _) = listed.unwrap_or_else(|| panic!("{version}: `{method}` has no entry in METHODS"));
            assert!(
                eras.includes(era),
                "{version}: `{method}` is in the schema but not served in this era"
            );
        }
    }
}

/// Every request an upstream may make of its client is either relayed under its own plan
/// (judged as its own action) or answered by the link (`ping`); the rest are refused by
/// `guard::mediate::classify`.
#[test]
fn every_server_request_of_both_revisions_is_mediated_or_refused() {
    for (version, schema) in schemas() {
        let client = union(&schema, "ClientRequest");
        for method in requests(&schema).difference(&client) {
            let relayed = PEER_REQUESTS.iter().any(|p| p.method == method);
            let refused = crate::guard::mediate::classify(method, true).is_err();
            assert!(
                relayed || refused || method == "ping",
                "{version}: server request `{method}` is neither relayed nor refused"
            );
            if method.starts_with("tasks/") {
                assert!(refused, "{version}: `{method}`");
            }
        }
    }
}

/// Every notification an upstream may send has a handling: relayed to the client (and
/// observed), taken by the gateway itself, or dropped.
#[test]
fn every_server_notification_has_a_handling() {
    for (version, schema) in schemas() {
        for method in union(&schema, "ServerNotification") {
            assert!(
                UPSTREAM_NOTIFICATIONS.iter().any(|(m, _)| *m == method),
                "{version}: `{method}` has no entry in UPSTREAM_NOTIFICATIONS"
            );
        }
    }
}

#[test]
fn stages_run_in_one_order_and_every_plan_commits_before_it_forwards() {
    for (method, _, h) in METHODS {
        let Handling::Planned(plan) = h else { continue };
        let stages = plan.stages();
        let at = |s: Stage| stages.iter().position(|x| *x == s).unwrap();
        assert!(at(Stage::Judge) < at(Stage::Commit), "{method}");
        assert!(at(Stage::Commit) < at(Stage::Forward), "{method}");
        assert!(at(Stage::Forward) < at(Stage::Observe), "{method}");
        if plan.runs(Stage::Approve) {
            assert!(at(Stage::Approve) < at(Stage::Commit), "{method}");
        }
    }
    let planned: Vec<&str> = METHODS
        .iter()
        .filter(|(_, _, h)| matches!(h, Handling::Planned(_)))
        .map(|(m, _, _)| *m)
        .collect();
    assert_eq!(
        planned,
        [
            "tools/call",
            "prompts/get",
            "resources/read",
            "completion/complete",
            "resources/subscribe"
        ]
    );
}

#[test]
fn unknown_and_miscased_methods_have_no_handling() {
    let cfg = crate::config::Config::parse("", std::path::Path::new("t.toml")).unwrap();
    for m in ["Tools/Call", "tools/call ", "vendor/stats", "tasks/get"] {
        let h = handling(m, portcullis_core::mcp::Era::Modern, &cfg);
        assert!(!matches!(h, Some(Handling::Planned(_))), "{m}: {h:?}");
    }
    assert!(handling("initialize", portcullis_core::mcp::Era::Modern, &cfg).is_none());
    assert!(matches!(
        handling("tasks/get", portcullis_core::mcp::Era::Legacy, &cfg),
        Some(Handling::Refused(_))
    ));
}
