//! Domain values as Cedar values: the request's entities and its context.
//!
//! Arguments are built with Cedar's value constructors, never through Cedar's JSON entity
//! format, so an argument such as `{"__entity": {...}}` stays a plain record and cannot forge
//! an entity reference.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::Value;

use crate::{Action, Principal, Request, Tool};

/// The entity type names of the schema, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    user: EntityTypeName,
    tool: EntityTypeName,
    action: EntityTypeName,
    effect: EntityTypeName,
}

impl Names {
    pub(crate) fn new() -> Result<Self, String> {
        let name = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Names {
            user: name("User")?,
            tool: name("Tool")?,
            action: name("Action")?,
            effect: name("Effect")?,
        })
    }

    pub(crate) fn user(&self, principal: &Principal) -> EntityUid {
        EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(&principal.user))
    }

    /// `Tool::"<upstream>__<name>"`, the name a client sees (`portcullis_core::catalog::SEPARATOR`).
    pub(crate) fn tool(&self, tool: &Tool) -> EntityUid {
        let id = format!("{}__{}", tool.upstream, tool.name);
        EntityUid::from_type_name_and_id(self.tool.clone(), EntityId::new(id))
    }

    pub(crate) fn action(&self, action: Action) -> EntityUid {
        EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(action.as_str()))
    }

    /// The principal and the tool as entities.
    pub(crate) fn entities(&self, principal: &Principal, tool: &Tool) -> Result<Entities, String> {
        let strings =
            |v: &[String]| RestrictedExpression::new_set(v.iter().cloned().map(RestrictedExpression::new_string));
        let user = Entity::new(
            self.user(principal),
            HashMap::from([
                (
                    "client".to_owned(),
                    RestrictedExpression::new_string(principal.client.clone()),
                ),
                ("groups".to_owned(), strings(principal.attributes.groups())),
                ("roles".to_owned(), strings(principal.attributes.roles())),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let effect = EntityUid::from_type_name_and_id(self.effect.clone(), EntityId::new(tool.effect.as_str()));
        let tool = Entity::new(
            self.tool(tool),
            HashMap::from([
                (
                    "upstream".to_owned(),
                    RestrictedExpression::new_string(tool.upstream.clone()),
                ),
                ("name".to_owned(), RestrictedExpression::new_string(tool.name.clone())),
                ("effect".to_owned(), RestrictedExpression::new_entity_uid(effect)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        // Not checked against the schema per call: both entities are built here, typed by
        // construction, and the policies were validated against the schema at load. Checking
        // (and adding the schema's action entities) on every call cost more than the rest of the
        // decision (BENCHMARKS.md); the schema has no action groups, so `action in [...]` needs
        // no action entities.
        Entities::from_entities([user, tool], None).map_err(|e| e.to_string())
    }
}

/// The request's context: `arguments`, `session.labels`, `provenance.tainted`,
/// `provenance.sources`, `now_unix`, `calls_in_window`.
pub(crate) fn context(req: &Request<'_>) -> Result<Context, String> {
    let strings = |v: &[String]| RestrictedExpression::new_set(v.iter().cloned().map(RestrictedExpression::new_string));
    let session =
        RestrictedExpression::new_record([("labels".to_owned(), strings(req.labels))]).map_err(|e| e.to_string())?;
    let provenance = RestrictedExpression::new_record([
        ("tainted".to_owned(), strings(&req.provenance.tainted)),
        ("sources".to_owned(), strings(&req.provenance.sources)),
    ])
    .map_err(|e| e.to_string())?;
    let calls = i64::try_from(req.calls_in_window).unwrap_or(i64::MAX);
    Context::from_pairs([
        ("arguments".to_owned(), arguments(req.arguments)?),
        ("session".to_owned(), session),
        ("provenance".to_owned(), provenance),
        ("now_unix".to_owned(), RestrictedExpression::new_long(req.now_unix)),
        ("calls_in_window".to_owned(), RestrictedExpression::new_long(calls)),
    ])
    .map_err(|e| e.to_string())
}

/// The call's arguments as a Cedar record. `null` (no arguments) is the empty record; anything
/// but an object is refused, and the call denied.
fn arguments(arguments: &Value) -> Result<RestrictedExpression, String> {
    match arguments {
        Value::Null => record(&serde_json::Map::new()),
        Value::Object(members) => record(members),
        _ => Err("tool arguments must be a JSON object".to_owned()),
    }
}

/// One JSON value as a Cedar value; `None` for `null`, which is left out.
///
/// - objects become records, and a member whose value is `null` is left out of its record
///   (so `has` is false for it and reading it is an error, which denies);
/// - arrays become sets (order and duplicates are lost; `null` elements are left out);
/// - integers in the `i64` range, and floats with no fractional part inside it, become `Long`;
/// - any other number becomes its decimal text as a `String`, so comparing it as a number is
///   an evaluation error and the call is denied rather than compared wrongly.
fn value(v: &Value) -> Result<Option<RestrictedExpression>, String> {
    Ok(match v {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => Some(match long(n) {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        }),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                set.extend(value(item)?);
            }
            Some(RestrictedExpression::new_set(set))
        }
        Value::Object(members) => Some(record(members)?),
    })
}

fn record(members: &serde_json::Map<String, Value>) -> Result<RestrictedExpression, String> {
    let mut fields = Vec::with_capacity(members.len());
    for (key, v) in members {
        if let Some(v) = value(v)? {
            fields.push((key.clone(), v));
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

/// The number as an `i64` when it is one exactly.
fn long(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // INVARIANT: `i64::MIN as f64` is exactly -2^63 and `i64::MAX as f64` rounds up to 2^63, so
    // this half-open range holds exactly the floats that convert without saturating.
    let in_range = (i64::MIN as f64..i64::MAX as f64).contains(&f);
    (in_range && f.fract() == 0.0).then_some(f as i64)
}
