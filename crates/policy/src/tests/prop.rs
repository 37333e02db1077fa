//! The Cedar context builder under any input: whatever the arguments, labels, provenance and
//! names a hostile client or upstream can put in a request, a decision comes back (no panic),
//! a forbid that matches still forbids, and nothing in the arguments becomes an entity.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::engine;
use crate::{Action, Effect, Outcome, Principal, Profile, Provenance, Request, Tool};

const POLICIES: &str = r#"
@id("no-danger")
forbid (principal, action, resource)
when { context.arguments has danger };

@id("no-big-amount")
forbid (principal, action, resource)
when { context.arguments has amount && context.arguments.amount > 100 };

@id("no-mallory")
forbid (principal == User::"mallory", action, resource);

@id("no-secret-sessions")
forbid (principal, action, resource)
when { context.session.labels.contains("secret") };

@id("no-tainted-to")
forbid (principal, action, resource)
when { context.provenance.tainted.contains("to") };

@id("no-forged-alice")
forbid (principal, action, resource)
when { context.arguments has who && context.arguments.who == User::"alice" };
"#;

/// The default profile with [`POLICIES`], loaded once for every case.
fn shared() -> &'static crate::PolicyEngine {
    static ENGINE: std::sync::OnceLock<crate::PolicyEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| engine(Some(Profile::Default), &[("p.cedar", POLICIES)]))
}

/// Any JSON value, a few levels deep, with keys that look like Cedar's escapes.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("__entity".to_owned()),
        Just("__extn".to_owned()),
        Just("type".to_owned()),
        Just("id".to_owned()),
        Just(String::new()),
        "[a-z]{1,6}",
        ".{0,8}",
    ]
}

/// An arguments object without the members the policies read.
fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), json(), 0..8).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "danger" | "amount" | "who"))
            .collect()
    })
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop_oneof![Just("untrusted".to_owned()), ".{0,10}"], 0..4)
        .prop_map(|v| v.into_iter().filter(|s| s != "secret" && s != "to").collect())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("alice".to_owned()),
        Just("mallory\"".to_owned()),
        Just("User::\"mallory\"".to_owned()),
        ".{0,12}",
    ]
    .prop_filter("not mallory", |s| s != "mallory")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// None of the forbids applies: the default profile permits, whatever else the request
    /// carries (an argument shaped like an entity reference is a record, not `User::"alice"`).
    #[test]
    fn unrelated_content_neither_forbids_nor_breaks(
        args in arguments(),
        forged_who in any::<bool>(),
        labels in strings(),
        tainted in strings(),
        sources in strings(),
        user in name(),
        client in ".{0,12}",
        upstream in ".{0,8}",
        tool_name in ".{0,12}",
        now_unix in any::<i64>(),
        calls_in_window in any::<u64>(),
    ) {
        let engine = shared();
        let mut args = args;
        if forged_who {
            args.insert("who".into(), serde_json::json!({"__entity": {"type": "User", "id": "alice"}}));
        }
        let arguments = Value::Object(args);
        let principal = Principal { user, client, attributes: Default::default() };
        let tool = Tool { upstream, name: tool_name, effect: Effect::Send };
        let provenance = Provenance { tainted, sources };
        let req = Request {
            principal: &principal,
            action: Action::CallTool,
            tool: &tool,
            arguments: &arguments,
            labels: &labels,
            provenance: &provenance,
            now_unix,
            calls_in_window,
        };
        let d = engine.decide(&req);
        prop_assert_eq!(d.outcome, Outcome::Permit, "{:?}", d);
    }

    /// Each forbid still applies whatever else the request carries.
    #[test]
    fn a_matching_forbid_forbids_whatever_surrounds_it(
        args in arguments(),
        which in 0u8..6,
        danger in json(),
        amount in 101i64..,
        labels in strings(),
        tainted in strings(),
        client in ".{0,12}",
    ) {
        let engine = shared();
        let mut args = args;
        let mut labels = labels;
        let mut tainted = tainted;
        let mut user = "alice".to_owned();
        let expect = match which {
            0 if !danger.is_null() => {
                args.insert("danger".into(), danger);
                "no-danger"
            }
            1 => {
                args.insert("amount".into(), Value::from(amount));
                "no-big-amount"
            }
            2 => {
                "mallory".clone_into(&mut user);
                "no-mallory"
            }
            3 => {
                labels.push("secret".into());
                "no-secret-sessions"
            }
            4 => {
                tainted.push("to".into());
                "no-tainted-to"
            }
            // A fraction compared as a number is an evaluation error, which denies.
            _ => {
                args.insert("amount".into(), Value::from(f64::from(u8::try_from(amount % 200).unwrap_or(0)) + 0.5));
                "no-big-amount"
            }
        };
        let arguments = Value::Object(args);
        let principal = Principal { user, client, attributes: Default::default() };
        let tool = Tool { upstream: "mail".into(), name: "send".into(), effect: Effect::Read };
        let provenance = Provenance { tainted, sources: vec![] };
        let req = Request {
            principal: &principal,
            action: Action::CallTool,
            tool: &tool,
            arguments: &arguments,
            labels: &labels,
            provenance: &provenance,
            now_unix: 1_800_000_000,
            calls_in_window: 0,
        };
        let d = engine.decide(&req);
        prop_assert_eq!(d.outcome, Outcome::Forbid, "{:?}", d);
        prop_assert!(d.policies.iter().any(|p| p == expect), "{} not in {:?}", expect, d.policies);
    }

    /// Anything but an object (or `null`) as arguments is denied with a reason, never evaluated.
    #[test]
    fn non_object_arguments_are_denied(v in json().prop_filter("not an object", |v| !v.is_object() && !v.is_null())) {
        let engine = shared();
        let principal = Principal { user: "alice".into(), client: "c".into(), attributes: Default::default() };
        let tool = Tool { upstream: "mail".into(), name: "send".into(), effect: Effect::Read };
        let d = engine.decide(&Request {
            principal: &principal,
            action: Action::CallTool,
            tool: &tool,
            arguments: &v,
            labels: &[],
            provenance: &Provenance::default(),
            now_unix: 0,
            calls_in_window: 0,
        });
        prop_assert_eq!(d.outcome, Outcome::Forbid);
        prop_assert!(d.reason.contains("tool arguments must be a JSON object"), "{}", d.reason);
    }
}
