//! Tests for effect names and the annotation table.

use serde_json::json;

use super::*;

#[test]
fn effect_from_annotations_table() {
    let cases = [
        ("read only", Some(json!({"readOnlyHint": true})), Effect::Read),
        (
            "read only, not destructive",
            Some(json!({"readOnlyHint": true, "destructiveHint": false})),
            Effect::Read,
        ),
        (
            "read only, open world",
            Some(json!({"readOnlyHint": true, "openWorldHint": true})),
            Effect::Read,
        ),
        (
            "destructive",
            Some(json!({"destructiveHint": true})),
            Effect::Destructive,
        ),
        (
            "writes to a closed world",
            Some(json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": false})),
            Effect::Write,
        ),
        (
            "writes to an open world",
            Some(json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true})),
            Effect::Send,
        ),
        (
            "not destructive, open world missing",
            Some(json!({"destructiveHint": false})),
            Effect::Send,
        ),
        ("no annotations", None, Effect::Destructive),
        ("empty annotations", Some(json!({})), Effect::Destructive),
        (
            "annotations not an object",
            Some(json!("read-only")),
            Effect::Destructive,
        ),
        (
            "contradictory",
            Some(json!({"readOnlyHint": true, "destructiveHint": true})),
            Effect::Destructive,
        ),
        (
            "hint as a string",
            Some(json!({"readOnlyHint": "true"})),
            Effect::Destructive,
        ),
        (
            "read only false only",
            Some(json!({"readOnlyHint": false})),
            Effect::Destructive,
        ),
        (
            "non-boolean destructive hint",
            Some(json!({"destructiveHint": "no", "openWorldHint": false})),
            Effect::Destructive,
        ),
    ];
    for (name, annotations, expected) in cases {
        assert_eq!(effect_from_annotations(annotations.as_ref()), expected, "{name}");
    }
}

#[test]
fn effect_names_round_trip_and_order_by_strictness() {
    for effect in Effect::ALL {
        assert_eq!(effect.to_string().parse::<Effect>(), Ok(effect));
    }
    assert!(Effect::Read < Effect::Write && Effect::Write < Effect::Send && Effect::Send < Effect::Destructive);
    assert_eq!(
        "Read".parse::<Effect>().map_err(|e| e.to_string()),
        Err("unknown effect `Read`: expected one of `read`, `write`, `send`, `destructive`".to_owned())
    );
}
