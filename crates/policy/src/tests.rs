//! Decision tables for the policy engine.

use serde_json::{Value, json};

use crate::{Action, Decision, Effect, Outcome, PolicyEngine, Principal, Profile, Provenance, Request, Tool};

pub(crate) fn engine(profile: Option<Profile>, files: &[(&str, &str)]) -> PolicyEngine {
    let files: Vec<(String, String)> = files.iter().map(|(f, t)| ((*f).to_owned(), (*t).to_owned())).collect();
    match PolicyEngine::from_sources(profile, &files) {
        Ok(engine) => engine,
        Err(e) => panic!("policies should load: {e}"),
    }
}

fn alice() -> Principal {
    Principal {
        user: "alice".to_owned(),
        client: "claude-desktop".to_owned(),
        attributes: Default::default(),
    }
}

fn tool(name: &str, effect: Effect) -> Tool {
    Tool {
        upstream: "mail".to_owned(),
        name: name.to_owned(),
        effect,
    }
}

fn decide(engine: &PolicyEngine, action: Action, tool: &Tool, arguments: &Value) -> Decision {
    engine.decide(&Request {
        principal: &alice(),
        action,
        tool,
        arguments,
        labels: &[],
        provenance: &Provenance::default(),
        now_unix: 1_800_000_000,
        calls_in_window: 0,
    })
}

/// Runs one call and returns (outcome, deciding policy ids).
pub(crate) fn call(engine: &PolicyEngine, name: &str, effect: Effect, arguments: Value) -> (Outcome, Vec<String>) {
    let d = decide(engine, Action::CallTool, &tool(name, effect), &arguments);
    (d.outcome, d.policies)
}

pub(crate) fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn profiles_decide_by_effect() {
    use Effect::*;
    use Outcome::*;
    let cases = [
        (Profile::Default, Read, Permit, &["default-allow-non-destructive"][..]),
        (Profile::Default, Write, Permit, &["default-allow-non-destructive"]),
        (Profile::Default, Send, Permit, &["default-allow-non-destructive"]),
        (
            Profile::Default,
            Destructive,
            NeedsApproval,
            &["default-destructive-needs-approval"],
        ),
        (Profile::DenyAll, Read, Forbid, &["deny-all"]),
        (Profile::DenyAll, Write, Forbid, &["deny-all"]),
        (Profile::DenyAll, Send, Forbid, &["deny-all"]),
        (Profile::DenyAll, Destructive, Forbid, &["deny-all"]),
        (Profile::ReadOnly, Read, Permit, &["read-only-allow-reads"]),
        (Profile::ReadOnly, Write, Forbid, &[]),
        (Profile::ReadOnly, Send, Forbid, &[]),
        (Profile::ReadOnly, Destructive, Forbid, &[]),
    ];
    for (profile, effect, outcome, policies) in cases {
        let engine = match PolicyEngine::from_profile(profile) {
            Ok(engine) => engine,
            Err(e) => panic!("profile {profile} should load: {e}"),
        };
        let got = call(&engine, "t", effect, json!({}));
        assert_eq!(got, (outcome, ids(policies)), "{profile} / {effect}");
    }
}

#[test]
fn explanations_name_the_policy_and_why() {
    let cases = [
        (
            Profile::Default,
            Effect::Destructive,
            "needs approval under policy `default-destructive-needs-approval`: destructive tools need a person's approval",
        ),
        (
            Profile::Default,
            Effect::Read,
            "permitted by policy `default-allow-non-destructive`: reads, writes and sends are allowed by the default profile",
        ),
        (
            Profile::DenyAll,
            Effect::Read,
            "forbidden by policy `deny-all`: the deny-all profile forbids every call",
        ),
        (
            Profile::ReadOnly,
            Effect::Write,
            "denied: no policy permits `call_tool` on tool `delete` of upstream `mail` for user `alice`",
        ),
    ];
    for (profile, effect, reason) in cases {
        let d = decide(
            &engine(Some(profile), &[]),
            Action::CallTool,
            &tool("delete", effect),
            &json!({}),
        );
        assert_eq!(d.reason, reason);
        assert!(d.errors.is_empty());
    }
}

#[test]
fn listing_and_reading_follow_the_profile() {
    let default = engine(Some(Profile::Default), &[]);
    let read_only = engine(Some(Profile::ReadOnly), &[]);
    let cases = [
        (&default, Action::ListTools, Effect::Destructive, Outcome::Permit),
        (&default, Action::GetPrompt, Effect::Destructive, Outcome::Permit),
        (&default, Action::ReadResource, Effect::Read, Outcome::Permit),
        (&read_only, Action::ListTools, Effect::Write, Outcome::Forbid),
        (&read_only, Action::ReadResource, Effect::Read, Outcome::Permit),
    ];
    for (engine, action, effect, outcome) in cases {
        assert_eq!(
            decide(engine, action, &tool("t", effect), &json!({})).outcome,
            outcome,
            "{action} / {effect}"
        );
    }
}

const EXAMPLE_COM_ONLY: &str = r#"
@id("mail-to-example-com-only")
@reason("mail may only be sent to example.com")
forbid (principal, action == Action::"call_tool", resource)
when { resource.name == "send_message" && !(context.arguments.to like "*@example.com") };
"#;

#[test]
fn issue_example_forbids_mail_outside_example_com() {
    let engine = engine(Some(Profile::Default), &[("policy.cedar", EXAMPLE_COM_ONLY)]);
    let cases = [
        (
            "send_message",
            json!({"to": "attacker@evil.test"}),
            Outcome::Forbid,
            &["mail-to-example-com-only"][..],
        ),
        (
            "send_message",
            json!({"to": "bob@example.com"}),
            Outcome::Permit,
            &["default-allow-non-destructive"],
        ),
        (
            "send_message",
            json!({"to": "bob@example.com.evil.test"}),
            Outcome::Forbid,
            &["mail-to-example-com-only"],
        ),
        // Other tools never read `to`, so its absence is no error.
        (
            "list_messages",
            json!({}),
            Outcome::Permit,
            &["default-allow-non-destructive"],
        ),
    ];
    for (name, arguments, outcome, policies) in cases {
        assert_eq!(
            call(&engine, name, Effect::Send, arguments.clone()),
            (outcome, ids(policies)),
            "{arguments}"
        );
    }
    let d = decide(
        &engine,
        Action::CallTool,
        &tool("send_message", Effect::Send),
        &json!({"to": "attacker@evil.test"}),
    );
    assert_eq!(
        d.reason,
        "forbidden by policy `mail-to-example-com-only`: mail may only be sent to example.com"
    );
}

#[test]
fn approval_annotation_turns_a_permit_into_needs_approval() {
    let files = [(
        "approval.cedar",
        r#"
        @id("payments-need-approval")
        @approval("required")
        permit (principal, action == Action::"call_tool", resource)
        when { resource.upstream == "bank" };
        "#,
    )];
    let engine = engine(None, &files);
    let pay = Tool {
        upstream: "bank".to_owned(),
        name: "pay".to_owned(),
        effect: Effect::Send,
    };
    let d = decide(&engine, Action::CallTool, &pay, &json!({}));
    assert_eq!(
        (d.outcome, d.policies),
        (Outcome::NeedsApproval, ids(&["payments-need-approval"]))
    );
    // With the default profile a plain permit applies too; the approval still wins.
    let engine = self::engine(Some(Profile::Default), &files);
    let d = decide(&engine, Action::CallTool, &pay, &json!({}));
    assert_eq!(
        (d.outcome, d.policies),
        (Outcome::NeedsApproval, ids(&["payments-need-approval"]))
    );
    // Other upstreams are unaffected.
    assert_eq!(call(&engine, "send", Effect::Send, json!({})).0, Outcome::Permit);
}

#[test]
fn evaluation_errors_deny() {
    let files = [(
        "tmp.cedar",
        r#"
        @id("tmp-only")
        forbid (principal, action == Action::"call_tool", resource)
        when { resource.name == "write_file" && !(context.arguments.path like "/tmp/*") };
        "#,
    )];
    let engine = engine(Some(Profile::Default), &files);
    let cases = [
        (json!({"path": "/tmp/x"}), Outcome::Permit, 0),
        (json!({"path": "/etc/passwd"}), Outcome::Forbid, 0),
        // Absent member: the policy errors, and the error denies.
        (json!({"content": "x"}), Outcome::Forbid, 1),
        // Wrong type: `like` on a number errors too.
        (json!({"path": 7}), Outcome::Forbid, 1),
        // `null` is left out of the record, so it is absent.
        (json!({"path": null}), Outcome::Forbid, 1),
    ];
    for (arguments, outcome, errors) in cases {
        let d = decide(
            &engine,
            Action::CallTool,
            &tool("write_file", Effect::Write),
            &arguments,
        );
        assert_eq!((d.outcome, d.errors.len()), (outcome, errors), "{arguments}: {d:?}");
        if errors > 0 {
            assert_eq!(d.policies, ids(&["tmp-only"]));
            assert!(
                d.reason.starts_with("denied: policy `tmp-only` could not be evaluated"),
                "{}",
                d.reason
            );
        }
    }
    // A permit that errors denies as well, though Cedar alone would just skip it.
    let permit = [(
        "p.cedar",
        "permit (principal, action, resource) when { context.arguments.ok == true };",
    )];
    let engine = self::engine(Some(Profile::Default), &permit);
    let d = decide(&engine, Action::CallTool, &tool("t", Effect::Read), &json!({}));
    assert_eq!((d.outcome, d.policies), (Outcome::Forbid, ids(&["p.cedar#1"])));
}

#[test]
fn arguments_map_to_cedar_values_fail_closed() {
    let files = [(
        "args.cedar",
        r#"
        @id("small-amounts")
        forbid (principal, action, resource)
        when { context.arguments has amount && context.arguments.amount > 100 };

        @id("no-admin-cc")
        forbid (principal, action, resource)
        when { context.arguments has cc && context.arguments.cc.contains("admin@example.com") };

        @id("no-entity-forgery")
        forbid (principal, action, resource)
        when { context.arguments has who && context.arguments.who == User::"alice" };

        @id("nested")
        forbid (principal, action, resource)
        when { context.arguments has msg && context.arguments.msg.headers.priority == "urgent" };
        "#,
    )];
    let engine = engine(Some(Profile::Default), &files);
    let cases = [
        (json!({"amount": 50}), Outcome::Permit, 0),
        (json!({"amount": 150}), Outcome::Forbid, 0),
        (json!({"amount": 150.0}), Outcome::Forbid, 0),
        // A fraction is not a Cedar number: comparing it errors, and that denies.
        (json!({"amount": 3.5}), Outcome::Forbid, 1),
        (json!({"amount": 18_446_744_073_709_551_615_u64}), Outcome::Forbid, 1),
        (json!({"amount": null}), Outcome::Permit, 0),
        (json!({"cc": ["bob@example.com", null]}), Outcome::Permit, 0),
        (
            json!({"cc": ["bob@example.com", "admin@example.com"]}),
            Outcome::Forbid,
            0,
        ),
        (
            json!({"who": {"__entity": {"type": "User", "id": "alice"}}}),
            Outcome::Permit,
            0,
        ),
        (json!({"who": "User::\"alice\""}), Outcome::Permit, 0),
        (json!({"msg": {"headers": {"priority": "urgent"}}}), Outcome::Forbid, 0),
        (json!({"msg": {"headers": {"priority": "low"}}}), Outcome::Permit, 0),
        (Value::Null, Outcome::Permit, 0),
    ];
    for (arguments, outcome, errors) in cases {
        let d = decide(&engine, Action::CallTool, &tool("t", Effect::Write), &arguments);
        assert_eq!((d.outcome, d.errors.len()), (outcome, errors), "{arguments}: {d:?}");
    }
    let d = decide(
        &engine,
        Action::CallTool,
        &tool("t", Effect::Write),
        &json!(["not", "an", "object"]),
    );
    assert_eq!(d.outcome, Outcome::Forbid);
    assert_eq!(
        d.reason,
        "denied: the request could not be evaluated: tool arguments must be a JSON object"
    );
}

#[test]
fn context_carries_principal_labels_time_and_call_count() {
    let files = [(
        "ctx.cedar",
        r#"
        @id("no-send-after-untrusted")
        forbid (principal, action, resource)
        when { context.session.labels.contains("untrusted") && resource.effect == Effect::"send" };

        @id("rate")
        forbid (principal, action, resource) when { context.calls_in_window >= 10 };

        @id("expired")
        forbid (principal, action, resource) when { context.now_unix > 2000000000 };

        @id("no-cursor")
        forbid (principal == User::"alice", action, resource) when { principal.client == "cursor" };
        "#,
    )];
    let engine = engine(Some(Profile::Default), &files);
    let send = tool("send_message", Effect::Send);
    let untrusted = ["untrusted".to_owned()];
    let base = Request {
        principal: &alice(),
        action: Action::CallTool,
        tool: &send,
        arguments: &Value::Null,
        labels: &[],
        provenance: &Provenance::default(),
        now_unix: 1_800_000_000,
        calls_in_window: 0,
    };
    let cursor = Principal {
        user: "alice".to_owned(),
        client: "cursor".to_owned(),
        attributes: Default::default(),
    };
    let cases = [
        (base, Outcome::Permit, &["default-allow-non-destructive"][..]),
        (
            Request {
                labels: &untrusted,
                ..base
            },
            Outcome::Forbid,
            &["no-send-after-untrusted"],
        ),
        (
            Request {
                calls_in_window: 10,
                ..base
            },
            Outcome::Forbid,
            &["rate"],
        ),
        (
            Request {
                calls_in_window: u64::MAX,
                ..base
            },
            Outcome::Forbid,
            &["rate"],
        ),
        (
            Request {
                now_unix: 2_000_000_001,
                ..base
            },
            Outcome::Forbid,
            &["expired"],
        ),
        (
            Request {
                principal: &cursor,
                ..base
            },
            Outcome::Forbid,
            &["no-cursor"],
        ),
    ];
    for (req, outcome, policies) in cases {
        let d = engine.decide(&req);
        assert_eq!((d.outcome, d.policies), (outcome, ids(policies)), "{req:?}");
    }
}

#[test]
fn may_ever_call_hides_only_tools_that_are_always_denied() {
    let files = [(
        "hide.cedar",
        r#"
        @id("never-delete")
        forbid (principal, action, resource) when { resource.name == "delete_all" };

        @id("only-some-recipients")
        forbid (principal, action, resource)
        when { resource.name == "send_message" && !(context.arguments.to like "*@example.com") };

        @id("confirm-first")
        forbid (principal, action, resource)
        when { resource.name == "wipe" && !(context.arguments has confirm) };

        @id("not-for-cursor")
        forbid (principal, action, resource) when { resource.upstream == "bank" && principal.client == "cursor" };
        "#,
    )];
    let with_default = engine(Some(Profile::Default), &files);
    let read_only = engine(Some(Profile::ReadOnly), &[]);
    let read_only_plus = engine(
        Some(Profile::ReadOnly),
        &[(
            "p.cedar",
            "permit (principal, action, resource) when { context.arguments has dry_run };",
        )],
    );
    let deny_all = engine(Some(Profile::DenyAll), &[]);
    let nothing = engine(None, &[]);
    let bank = |client: &str| {
        (
            Principal {
                user: "alice".to_owned(),
                client: client.to_owned(),
                attributes: Default::default(),
            },
            Tool {
                upstream: "bank".to_owned(),
                name: "pay".to_owned(),
                effect: Effect::Send,
            },
        )
    };
    let cases = [
        (
            "forbidden unconditionally",
            &with_default,
            alice(),
            tool("delete_all", Effect::Destructive),
            false,
        ),
        (
            "forbidden for some arguments",
            &with_default,
            alice(),
            tool("send_message", Effect::Send),
            true,
        ),
        (
            "needs approval",
            &with_default,
            alice(),
            tool("drop_table", Effect::Destructive),
            true,
        ),
        (
            "forbidden for this client",
            &with_default,
            bank("cursor").0,
            bank("cursor").1,
            false,
        ),
        (
            "not for other clients",
            &with_default,
            bank("claude").0,
            bank("claude").1,
            true,
        ),
        (
            "read-only, a read",
            &read_only,
            alice(),
            tool("list", Effect::Read),
            true,
        ),
        (
            "read-only, a write",
            &read_only,
            alice(),
            tool("write", Effect::Write),
            false,
        ),
        (
            "a permit for some arguments",
            &read_only_plus,
            alice(),
            tool("write", Effect::Write),
            true,
        ),
        ("deny-all", &deny_all, alice(), tool("list", Effect::Read), false),
        ("no policies", &nothing, alice(), tool("list", Effect::Read), false),
    ];
    for (name, engine, principal, tool, expected) in cases {
        assert_eq!(engine.may_ever_call(&principal, &tool), expected, "{name}");
    }
}

#[test]
fn shipped_schema_and_profiles_load() {
    for profile in Profile::ALL {
        assert_eq!(profile.as_str().parse::<Profile>(), Ok(profile));
        assert!(PolicyEngine::from_profile(profile).is_ok(), "{profile}");
    }
    assert!("permissive".parse::<Profile>().is_err());
}

#[test]
fn provenance_reaches_policy_and_flow_allow_marks_an_explicit_permit() {
    let files = [(
        "flow.cedar",
        r#"
        @id("send-to-example-com-after-untrusted")
        @flow("allow")
        permit (principal, action == Action::"call_tool", resource)
        when {
          resource.name == "send_message" && context.provenance.tainted.isEmpty()
          && context.arguments has to && context.arguments.to like "*@example.com"
        };
        "#,
    )];
    let engine = engine(Some(Profile::Default), &files);
    let send = tool("send_message", Effect::Send);
    let untrusted = ["untrusted".to_owned()];
    let tainted = Provenance {
        tainted: vec!["to".to_owned()],
        sources: vec!["mail__read_message".to_owned()],
    };
    let clean = Provenance::default();
    let who = alice();
    let request = |to: &'static str, provenance| Request {
        principal: &who,
        action: Action::CallTool,
        tool: &send,
        arguments: Box::leak(Box::new(json!({ "to": to }))),
        labels: &untrusted,
        provenance,
        now_unix: 1_800_000_000,
        calls_in_window: 0,
    };
    let d = engine.decide(&request("bob@example.com", &clean));
    assert_eq!(d.outcome, Outcome::Permit);
    assert!(engine.allows_untrusted_flow(&d), "{d:?}");
    // A tainted recipient: the profile still permits, but no flow permit applies.
    let d = engine.decide(&request("bob@example.com", &tainted));
    assert_eq!(d.outcome, Outcome::Permit);
    assert!(!engine.allows_untrusted_flow(&d), "{d:?}");
    let d = engine.decide(&request("eve@evil.test", &clean));
    assert!(!engine.allows_untrusted_flow(&d), "{d:?}");
}

#[test]
fn flow_annotation_is_checked_at_load() {
    for (text, want) in [
        (
            "@flow(\"always\") permit (principal, action, resource);",
            "unknown `@flow(\"always\")`",
        ),
        (
            "@flow(\"allow\") forbid (principal, action, resource);",
            "`@flow` applies only to `permit` policies",
        ),
    ] {
        let err = PolicyEngine::from_sources(None, &[("f.cedar".to_owned(), text.to_owned())])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

mod prop;

/// Issue 21: the README's Cedar examples load against the shipped schema, and the mail
/// examples do what they say for portcullis-mail, whose `to` is a list (a Cedar set): `like`
/// on it was an evaluation error, so the forbid blocked every send and the permit never applied.
#[test]
fn the_readme_examples_load_and_work_on_list_valued_recipients() {
    let readme = include_str!("../../../README.md");
    let blocks: Vec<&str> = readme
        .split("```cedar\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .collect();
    assert!(blocks.len() >= 3, "{}", blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let files = [(format!("readme-{i}.cedar"), (*b).to_owned())];
        if let Err(e) = PolicyEngine::from_sources(Some(Profile::Default), &files) {
            panic!("README example {i} does not load: {e}\n{b}");
        }
    }
    let only_team = blocks
        .iter()
        .find(|b| b.contains("mail-only-to-the-team"))
        .expect("the forbid example");
    let team = engine(Some(Profile::Default), &[("team.cedar", only_team)]);
    let send = |to: Value| {
        call(
            &team,
            "send_message",
            Effect::Send,
            json!({"to": to, "subject": "s", "body": "b"}),
        )
    };
    assert_eq!(send(json!(["alice@example.com"])).0, Outcome::Permit);
    assert_eq!(send(json!(["alice@example.com", "bob@example.com"])).0, Outcome::Permit);
    let (outcome, policies) = send(json!(["alice@example.com", "mallory@evil.test"]));
    assert_eq!((outcome, policies), (Outcome::Forbid, ids(&["mail-only-to-the-team"])));

    let colleagues = blocks
        .iter()
        .find(|b| b.contains("colleagues-after-untrusted"))
        .expect("the flow example");
    let flow = engine(None, &[("c.cedar", colleagues)]);
    let (outcome, policies) = send_with(&flow, json!(["bob@example.com"]));
    assert_eq!(
        (outcome, policies),
        (Outcome::Permit, ids(&["colleagues-after-untrusted"]))
    );
    assert_eq!(send_with(&flow, json!(["mallory@evil.test"])).0, Outcome::Forbid);
}

fn send_with(engine: &PolicyEngine, to: Value) -> (Outcome, Vec<String>) {
    call(engine, "send_message", Effect::Send, json!({"to": to}))
}

#[test]
fn groups_and_roles_from_the_identity_provider_reach_policies() {
    let engine = engine(
        None,
        &[(
            "team.cedar",
            r#"
@id("ops-call")
permit(principal, action == Action::"call_tool", resource) when { principal.groups.contains("ops") };
@id("no-contractors")
forbid(principal, action == Action::"call_tool", resource) when { principal.roles.contains("contractor") };
"#,
        )],
    );
    let as_user = |groups: &[&str], roles: &[&str]| {
        let p = Principal {
            attributes: std::sync::Arc::new(crate::Attributes::new(
                groups.iter().map(|s| (*s).to_owned()).collect(),
                roles.iter().map(|s| (*s).to_owned()).collect(),
            )),
            ..alice()
        };
        engine
            .decide(&Request {
                principal: &p,
                action: Action::CallTool,
                tool: &tool("search", Effect::Read),
                arguments: &json!({}),
                labels: &[],
                provenance: &Provenance::default(),
                now_unix: 1_800_000_000,
                calls_in_window: 0,
            })
            .outcome
    };
    // The same user, one request after another: the entity cache keys on the attributes too,
    // so one token's groups never answer for another's.
    assert_eq!(as_user(&["ops"], &[]), Outcome::Permit);
    assert_eq!(as_user(&[], &[]), Outcome::Forbid);
    assert_eq!(as_user(&["ops"], &["contractor"]), Outcome::Forbid);
    assert_eq!(as_user(&["eng", "ops"], &[]), Outcome::Permit);
    assert_eq!(as_user(&["opsx"], &[]), Outcome::Forbid);
    // Order and repeats do not make two principals of one.
    assert_eq!(
        crate::Attributes::new(vec!["b".into(), "a".into(), "b".into()], vec![]),
        crate::Attributes::new(vec!["a".into(), "b".into()], vec![])
    );
}
