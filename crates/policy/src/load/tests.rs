//! Tests for loading policies: errors that name the file and place, ids, argument access.

use serde_json::json;

use crate::tests::{call, engine, ids};
use crate::{Effect, Outcome, PolicyEngine, PolicyError, Profile};

fn load_error(files: &[(&str, &str)]) -> String {
    let files: Vec<(String, String)> = files.iter().map(|(f, t)| ((*f).to_owned(), (*t).to_owned())).collect();
    match PolicyEngine::from_sources(Some(Profile::Default), &files) {
        Ok(_) => panic!("policies should not load: {files:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_policy_files_are_precise_errors() {
    let cases = [
        (
            "syntax error",
            "permit (principal, action, resource) when { resource.name == };",
            "bad.cedar:1:",
        ),
        (
            "unknown attribute",
            "\n\npermit (principal, action, resource) when { resource.nmae == \"x\" };",
            "bad.cedar:3:45: for policy `bad.cedar#1`, attribute `nmae` on entity type `Tool` not found",
        ),
        (
            "unknown action",
            "permit (principal, action == Action::\"call\", resource);",
            "bad.cedar:1:30: for policy `bad.cedar#1`, unrecognized action `Action::\"call\"`",
        ),
        (
            "unknown effect",
            "forbid (principal, action, resource) when { resource.effect == Effect::\"raed\" };",
            "bad.cedar:1:",
        ),
        (
            "wrong type",
            "@id(\"p\") forbid (principal, action, resource) when { context.calls_in_window like \"1*\" };",
            "bad.cedar:1:54: for policy `p`, unexpected type",
        ),
        (
            "misspelled context member",
            "forbid (principal, action, resource) when { context.argumens.to == \"x\" };",
            "bad.cedar:1:45: for policy `bad.cedar#1`, attribute `argumens`",
        ),
        (
            "unknown approval value",
            "@approval(\"maybe\") permit (principal, action, resource);",
            "bad.cedar: policy `bad.cedar#1`: unknown `@approval(\"maybe\")`: the values are `\"required\"` and `\"operator\"`",
        ),
        (
            "approval on a forbid",
            "@approval(\"required\") forbid (principal, action, resource);",
            "bad.cedar: policy `bad.cedar#1`: `@approval` applies only to `permit` policies",
        ),
        (
            "id taken by the profile",
            "@id(\"deny-all\") permit (principal, action, resource);",
            "bad.cedar: policy id `deny-all` is used twice",
        ),
        (
            "template",
            "permit (principal == ?principal, action, resource);",
            "bad.cedar: policy templates",
        ),
    ];
    for (name, text, expected) in cases {
        let message = if name == "id taken by the profile" {
            let files = [("bad.cedar".to_owned(), text.to_owned())];
            match PolicyEngine::from_sources(Some(Profile::DenyAll), &files) {
                Ok(_) => panic!("{name}: should not load"),
                Err(e) => e.to_string(),
            }
        } else {
            load_error(&[("bad.cedar", text)])
        };
        assert!(message.starts_with(expected), "{name}: {message}");
        // One problem per place, though Cedar checks a policy once per action it may apply to.
        assert!(!message.contains("; "), "{name}: {message}");
    }
}

#[test]
fn every_problem_is_reported_with_its_policy() {
    let text = "@id(\"a\") permit (principal, action, resource) when { resource.nmae == \"x\" };\n\
                @id(\"b\") permit (principal, action, resource) when { principal.clinet == \"x\" };";
    let files = [("two.cedar".to_owned(), text.to_owned())];
    let Err(PolicyError::Invalid(problems)) = PolicyEngine::from_sources(None, &files) else {
        panic!("should not load");
    };
    let found: Vec<(Option<String>, Option<usize>)> = problems
        .iter()
        .map(|p| (p.policy.clone(), p.position.map(|p| p.line)))
        .collect();
    assert_eq!(found.len(), 2, "{problems:?}");
    assert!(found.contains(&(Some("a".to_owned()), Some(1))), "{found:?}");
    assert!(found.contains(&(Some("b".to_owned()), Some(2))), "{found:?}");
    assert!(
        problems.iter().any(|p| p.message.contains("did you mean `client`?")),
        "{problems:?}"
    );
}

#[test]
fn policy_ids_default_to_file_and_position() {
    let text = "forbid (principal, action, resource) when { resource.name == \"a\" };\n\
                @id(\"named\") forbid (principal, action, resource) when { resource.name == \"b\" };\n\
                forbid (principal, action, resource) when { resource.name == \"c\" };";
    let engine = engine(Some(Profile::Default), &[("user.cedar", text)]);
    let cases = [("a", "user.cedar#1"), ("b", "named"), ("c", "user.cedar#3")];
    for (name, id) in cases {
        assert_eq!(
            call(&engine, name, Effect::Read, json!({})),
            (Outcome::Forbid, ids(&[id]))
        );
    }
}

#[test]
fn any_use_of_an_argument_validates() {
    let uses = [
        r#"context.arguments.to like "*@example.com""#,
        r#"context.arguments["reply-to"] like "*@example.com""#,
        r#"context["arguments"].to == "x""#,
        r#"context.arguments.to.domain == "example.com""#,
        r#"context.arguments.tags.contains("secret")"#,
        r#"context.arguments.tags.containsAny(["a", "b"])"#,
        "context.arguments.n + 1 > 5",
        "context.arguments.flag",
        r#"(if context.arguments has x then context.arguments.x else "y") == "x""#,
        r#"context.arguments has to && context.arguments.to == "x""#,
        r#"[context.arguments.a, "x"].contains("x")"#,
        "context.arguments.a == context.arguments.b",
    ];
    for condition in uses {
        let text = format!("forbid (principal, action, resource) when {{ {condition} }};");
        let files = [("uses.cedar".to_owned(), text)];
        if let Err(e) = PolicyEngine::from_sources(None, &files) {
            panic!("`{condition}` should validate: {e}");
        }
    }
}
