//! Mediate, the pure half: what the gateway lets an upstream ask of the client while it serves
//! a call. Three requests exist — `sampling/createMessage` (the client's model writes text for
//! the server), `elicitation/create` (the person is asked for input), `roots/list` (the
//! client's file roots) — each judged as its own Cedar action. Anything else an upstream asks
//! is refused. A sampling request never gets another server's context: `includeContext` is
//! forced to `"none"`. Roots go out only where config says so (`forward_roots = true`).

use portcullis_policy::{Action, Effect};
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// A request an upstream may make of the client, and how it is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRequest {
    /// The method.
    pub method: &'static str,
    /// The Cedar action it is judged as.
    pub action: Action,
    /// The effect policy sees on the resource.
    pub effect: Effect,
    /// The client capability it needs.
    pub capability: &'static str,
}

/// Every request an upstream may make of the client. One table: a method not here is refused.
pub const PEER_REQUESTS: [PeerRequest; 3] = [
    PeerRequest {
        method: "sampling/createMessage",
        action: Action::Sample,
        effect: Effect::Send,
        capability: "sampling",
    },
    PeerRequest {
        method: "elicitation/create",
        action: Action::Elicit,
        effect: Effect::Read,
        capability: "elicitation",
    },
    PeerRequest {
        method: "roots/list",
        action: Action::Roots,
        effect: Effect::Read,
        capability: "roots",
    },
];

/// The plan of a request an upstream makes, or its refusal.
pub fn classify(method: &str, forward_roots: bool) -> Result<PeerRequest, GatewayError> {
    let Some(p) = PEER_REQUESTS.iter().find(|p| p.method == method) else {
        return Err(GatewayError::PeerRefused(format!(
            "the gateway does not relay `{method}` to clients"
        )));
    };
    if p.action == Action::Roots && !forward_roots {
        return Err(GatewayError::PeerRefused(
            "this upstream may not see the client's roots (`forward_roots` is off)".into(),
        ));
    }
    Ok(*p)
}

/// Rewrites what the client will be asked: a sampling request asks for no other server's
/// context, whatever the upstream wanted. Whether anything changed.
pub fn shape(p: &PeerRequest, params: &mut Map<String, Value>) -> bool {
    if p.action != Action::Sample {
        return false;
    }
    let wants = params.get("includeContext").and_then(Value::as_str);
    if matches!(wants, None | Some("none")) {
        return false;
    }
    params.insert("includeContext".into(), Value::String("none".into()));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_three_requests_are_relayed_and_roots_only_when_configured() {
        assert_eq!(
            classify("sampling/createMessage", false).unwrap().action,
            Action::Sample
        );
        assert_eq!(classify("elicitation/create", false).unwrap().action, Action::Elicit);
        assert!(classify("roots/list", false).is_err());
        assert_eq!(classify("roots/list", true).unwrap().action, Action::Roots);
        for m in ["tasks/get", "ping", "tools/call", "Sampling/CreateMessage"] {
            assert!(classify(m, true).is_err(), "{m}");
        }
    }

    #[test]
    fn sampling_never_takes_another_servers_context() {
        let p = classify("sampling/createMessage", false).unwrap();
        let mut params = json!({"messages": [], "includeContext": "allServers"});
        let m = params.as_object_mut().unwrap();
        assert!(shape(&p, m));
        assert_eq!(m["includeContext"], "none");
        let mut params = json!({"messages": [], "includeContext": "thisServer"});
        assert!(shape(&p, params.as_object_mut().unwrap()));
        let mut params = json!({"messages": []});
        assert!(!shape(&p, params.as_object_mut().unwrap()));
    }
}
