//! Policy sources to one validated Cedar policy set: parsing, ids, annotations, validation.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{
    Effect as CedarEffect, Policy, PolicyId, PolicySet, Schema, ValidationError, ValidationMode, Validator,
};

use crate::PolicyError;
use crate::error::{Problem, first_span, problem};

/// The annotation naming a policy.
pub(crate) const ID: &str = "id";
/// The annotation asking for a person's approval: `required` (a person, in the client's UI
/// or at a terminal or the admin page), or `operator` (at a terminal or the admin page only:
/// never through the client).
pub(crate) const APPROVAL: &str = "approval";
/// The annotation saying why, in words for the client.
pub(crate) const REASON: &str = "reason";
/// `@flow("allow")` on a permit: it lets side-effecting calls through in a session that holds
/// untrusted content (the policy takes responsibility, typically by checking
/// `context.provenance`).
pub(crate) const FLOW: &str = "flow";

/// Parses every source, gives each policy its id, checks annotations and validates the whole
/// set against `schema`. Every problem is reported, not only the first.
pub(crate) fn load(schema: &Schema, sources: &[(String, &str)]) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    let mut set = PolicySet::new();
    // Which source each policy came from, to place validation errors.
    let mut origin: HashMap<String, (&str, &str)> = HashMap::new();
    for (file, text) in sources {
        let parsed = match PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                problems.extend(errors.iter().map(|e| problem(file, text, None, e)));
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            problems.push(Problem {
                file: file.clone(),
                position: None,
                policy: None,
                message: "policy templates (`?principal`, `?resource`) are not supported".to_owned(),
            });
        }
        for (index, policy) in in_source_order(&parsed) {
            let id = policy
                .annotation(ID)
                .map_or_else(|| format!("{file}#{}", index + 1), str::to_owned);
            if let Some(message) = annotation_problem(&id, policy) {
                problems.push(Problem {
                    file: file.clone(),
                    position: None,
                    policy: Some(id.clone()),
                    message,
                });
            }
            if let Some((other, _)) = origin.get(&id) {
                problems.push(Problem {
                    file: file.clone(),
                    position: None,
                    policy: Some(id.clone()),
                    message: format!("policy id `{id}` is used twice (also in `{other}`)"),
                });
                continue;
            }
            if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
                problems.push(Problem {
                    file: file.clone(),
                    position: None,
                    policy: Some(id.clone()),
                    message: e.to_string(),
                });
                continue;
            }
            origin.insert(id, (file.as_str(), text));
        }
    }
    if problems.is_empty() {
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in result.validation_errors() {
            let id = error.policy_id().to_string();
            let (file, text) = origin.get(&id).copied().unwrap_or(("<unknown>", ""));
            if reads_arguments(error, text) {
                continue;
            }
            let found = problem(file, text, Some(id), error);
            // Cedar checks a policy once per action it may apply to; one report per place is enough.
            if !problems
                .iter()
                .any(|p: &Problem| (&p.file, p.position, &p.policy) == (&found.file, found.position, &found.policy))
            {
                problems.push(found);
            }
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

/// The policies of one parsed file with their 0-based position in it. Cedar names them
/// `policy0`, `policy1`, ... in source order.
fn in_source_order(parsed: &PolicySet) -> Vec<(usize, &Policy)> {
    let mut policies: Vec<(usize, &Policy)> = parsed
        .policies()
        .map(|p| {
            (
                AsRef::<str>::as_ref(p.id())
                    .strip_prefix("policy")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX),
                p,
            )
        })
        .collect();
    policies.sort_by_key(|(index, _)| *index);
    policies
}

/// What is wrong with the policy's Portcullis annotations, if anything.
fn annotation_problem(id: &str, policy: &Policy) -> Option<String> {
    match policy.annotation(FLOW) {
        None => {}
        Some("allow") if policy.effect() == CedarEffect::Permit => {}
        Some("allow") => return Some(format!("policy `{id}`: `@flow` applies only to `permit` policies")),
        Some(other) => {
            return Some(format!(
                "policy `{id}`: unknown `@flow(\"{other}\")`: the only value is `\"allow\"`"
            ));
        }
    }
    match policy.annotation(APPROVAL) {
        None => None,
        Some("required" | "operator") if policy.effect() == CedarEffect::Permit => None,
        Some("required" | "operator") => Some(format!("policy `{id}`: `@approval` applies only to `permit` policies")),
        Some(other) => Some(format!(
            "policy `{id}`: unknown `@approval(\"{other}\")`: the values are `\"required\"` and `\"operator\"`"
        )),
    }
}

/// Whether `error` is only the validator not knowing a member of `context.arguments`.
///
/// The schema declares `arguments` as an empty record because a tool's arguments are not known
/// when policies load. Reading `context.arguments.to` is therefore reported as an unknown
/// attribute; that one report is dropped, and the access is checked when the policy is
/// evaluated (an absent member is an evaluation error, which denies). The test is on the
/// source text the error points at, so any other error stays.
fn reads_arguments(error: &ValidationError, text: &str) -> bool {
    if !matches!(
        error,
        ValidationError::UnsafeAttributeAccess(_) | ValidationError::UnsafeOptionalAttributeAccess(_)
    ) {
        return false;
    }
    let Some(expr) = first_span(error).and_then(|(start, len)| text.get(start..start.checked_add(len)?)) else {
        return false;
    };
    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    [
        "context.arguments.",
        "context.arguments[",
        "context[\"arguments\"].",
        "context[\"arguments\"][",
    ]
    .iter()
    .any(|root| compact.starts_with(root))
}

#[cfg(test)]
mod tests;
