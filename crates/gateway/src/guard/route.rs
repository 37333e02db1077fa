//! Route: which upstream serves a request, and under what name, read off the merged catalog.
//! Tools and prompts by their exposed name, resources by URI (the upstream that listed it or
//! whose template matches, else the only upstream that serves resources), completions by the
//! prompt or template their `ref` names.

use portcullis_core::catalog::{Catalog, Entry, Kind};
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The upstream, by config position.
    pub upstream: usize,
    /// What the upstream calls it: its tool or prompt name, or the URI.
    pub original: String,
    /// What the client called it.
    pub exposed: String,
}

/// A name the catalog does not route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// A tool held back by its pin, and why.
    Held(String),
    /// Nothing by that name (yet).
    Unknown,
}

fn target(e: &Entry) -> Target {
    Target {
        upstream: e.upstream,
        original: e.original.clone(),
        exposed: e.exposed.clone(),
    }
}

/// A tool by its exposed name.
pub fn tool<'c>(cat: &'c Catalog, name: &str) -> Result<&'c Entry, Miss> {
    if let Some(e) = cat.tool(name) {
        return Ok(e);
    }
    match cat.held_tool(name) {
        Some(h) => Err(Miss::Held(h.reason())),
        None => Err(Miss::Unknown),
    }
}

/// A prompt by its exposed name.
pub fn prompt<'c>(cat: &'c Catalog, name: &str) -> Result<&'c Entry, Miss> {
    cat.prompt(name).ok_or(Miss::Unknown)
}

/// The entry a target was routed from, for a kind the catalog lists.
pub fn entry(cat: &Catalog, kind: Kind, name: &str) -> Result<Target, Miss> {
    match kind {
        Kind::Tool => tool(cat, name).map(target),
        Kind::Prompt => prompt(cat, name).map(target),
        Kind::Resource | Kind::Template => Err(Miss::Unknown),
    }
}

/// The upstream for a resource URI: the one that listed it or whose template matches, else the
/// only one of `serving` (the upstreams that declare resources).
pub fn resource(cat: &Catalog, uri: &str, serving: &[usize]) -> Option<usize> {
    cat.resource_upstream(uri).or(match serving {
        [only] => Some(*only),
        _ => None,
    })
}

/// A completion's `ref` routed: the upstream, the target as exposed, and the `ref` rewritten
/// to the upstream's own prompt name.
pub fn completion(
    cat: &Catalog,
    reference: &Map<String, Value>,
    serving: &[usize],
) -> Result<(Target, Map<String, Value>), GatewayError> {
    let mut rewritten = reference.clone();
    match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
            let e = prompt(cat, name).map_err(|_| GatewayError::UnknownPrompt(name.to_owned()))?;
            rewritten.insert("name".into(), Value::String(e.original.clone()));
            Ok((target(e), rewritten))
        }
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or_default();
            let up = cat
                .template_upstream(uri)
                .or_else(|| resource(cat, uri, serving))
                .ok_or_else(|| GatewayError::ResourceNotFound(uri.to_owned()))?;
            let t = Target {
                upstream: up,
                original: uri.to_owned(),
                exposed: uri.to_owned(),
            };
            Ok((t, rewritten))
        }
        other => Err(GatewayError::InvalidParams(format!(
            "unknown completion reference type {}",
            other.map_or("(none)".into(), |t| format!("`{t}`"))
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::RawObject;
    use portcullis_core::catalog::{Namespace, UpstreamLists};

    fn cat() -> Catalog {
        let ns = vec![
            Namespace {
                upstream: "a".into(),
                prefix: "a".into(),
            },
            Namespace {
                upstream: "b".into(),
                prefix: "b".into(),
            },
        ];
        let lists = UpstreamLists {
            prompts: vec![RawObject::from_json(r#"{"name":"greet"}"#).unwrap()],
            tools: vec![RawObject::from_json(r#"{"name":"send","inputSchema":{"type":"object"}}"#).unwrap()],
            ..Default::default()
        };
        Catalog::build(&ns, &[Some(&lists), None])
    }

    #[test]
    fn names_route_to_their_upstream_under_their_own_name() {
        let c = cat();
        let t = entry(&c, Kind::Tool, "a__send").unwrap();
        assert_eq!((t.upstream, t.original.as_str()), (0, "send"));
        assert_eq!(entry(&c, Kind::Tool, "b__send"), Err(Miss::Unknown));
        assert_eq!(resource(&c, "file:///x", &[1]), Some(1));
        assert_eq!(resource(&c, "file:///x", &[0, 1]), None);
    }

    #[test]
    fn completion_refs_are_rewritten_to_the_upstreams_name() {
        let c = cat();
        let r: Map<String, Value> = serde_json::from_str(r#"{"type":"ref/prompt","name":"a__greet"}"#).unwrap();
        let (t, rewritten) = completion(&c, &r, &[]).unwrap();
        assert_eq!(t.upstream, 0);
        assert_eq!(rewritten["name"], "greet");
        let bad: Map<String, Value> = serde_json::from_str(r#"{"type":"ref/tool"}"#).unwrap();
        assert!(completion(&c, &bad, &[]).is_err());
    }
}
