//! The policy engine: a validated policy set, and decisions over it.

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect as CedarEffect, Entities, Policy, PolicyId, PolicySet, Response,
    Schema,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::load::{self, APPROVAL, FLOW, REASON};
use crate::value::{self, Names};
use crate::{Action, Decision, Outcome, PolicyError, Principal, Profile, Provenance, Request, Tool};

/// What a policy's annotations say, read once at load.
#[derive(Debug, Clone)]
struct Note {
    approval: bool,
    operator: bool,
    flow: bool,
    reason: Option<String>,
}

/// The Cedar schema policies are validated against (human format).
pub const SCHEMA: &str = include_str!("../schema.cedarschema");

/// A schema and a policy set, validated at construction; decides requests.
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    /// Per policy, read once at load: whether it asks for approval, and its `@reason`.
    /// (Looking annotations up in the policy set parses the key on every call.)
    notes: HashMap<PolicyId, Note>,
    policies: PolicySet,
    /// What `may_ever_call` evaluates: the policies that do not read `context`, and the other
    /// permits with their conditions dropped. `None` when it could not be built: then every
    /// tool may be called as far as listing is concerned.
    probe: Option<PolicySet>,
    names: Names,
    authorizer: Authorizer,
    /// The principal and tool entities of recent requests: building them (with Cedar's
    /// checks) was a tenth of the gateway's CPU per call (BENCHMARKS.md). Cleared when full.
    entities: Arc<Mutex<HashMap<EntityKey, Arc<Entities>>>>,
}

/// What the entities of a request are built from: every attribute the principal entity carries
/// is in the key, so one principal's entity never serves another's request.
type EntityKey = (String, String, Arc<crate::Attributes>, String, String, crate::Effect);

/// Most entity sets cached.
const ENTITY_CACHE: usize = 4096;

impl PolicyEngine {
    /// The engine for one built-in profile.
    pub fn from_profile(profile: Profile) -> Result<Self, PolicyError> {
        Self::from_sources(Some(profile), &[])
    }

    /// The engine for a built-in profile (if any) plus policy files, given as (file name, text).
    ///
    /// Every policy is parsed and validated against [`SCHEMA`]; the error lists every problem
    /// with its file, line and column, and policy id where one is assigned. A policy's id is its
    /// `@id("...")` annotation, else `<file>#<n>` for the n-th policy of the file. With no
    /// profile and no files nothing is permitted.
    pub fn from_sources(profile: Option<Profile>, files: &[(String, String)]) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let names = Names::new().map_err(PolicyError::Schema)?;
        let mut sources: Vec<(String, &str)> = Vec::with_capacity(files.len() + 1);
        if let Some(profile) = profile {
            sources.push((profile.file_name(), profile.source()));
        }
        sources.extend(files.iter().map(|(file, text)| (file.clone(), text.as_str())));
        let policies = load::load(&schema, &sources)?;
        let probe = probe(&policies);
        let notes = policies
            .policies()
            .map(|p| {
                let note = Note {
                    approval: matches!(p.annotation(APPROVAL), Some("required" | "operator")),
                    operator: p.annotation(APPROVAL) == Some("operator"),
                    flow: p.annotation(FLOW) == Some("allow"),
                    reason: p.annotation(REASON).map(str::to_owned),
                };
                (p.id().clone(), note)
            })
            .collect();
        Ok(PolicyEngine {
            notes,
            policies,
            probe,
            names,
            authorizer: Authorizer::new(),
            entities: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Decides one request. Never fails: a request that cannot be built or a policy that cannot
    /// be evaluated denies, and says so in `errors`.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let response = match self.evaluate(&self.policies, req) {
            Ok(response) => response,
            Err(error) => {
                return Decision {
                    outcome: Outcome::Forbid,
                    policies: Vec::new(),
                    reason: format!("denied: the request could not be evaluated: {error}"),
                    errors: vec![error],
                    operator: false,
                };
            }
        };
        let mut decided: Vec<&PolicyId> = response.diagnostics().reason().collect();
        decided.sort();
        let errors: Vec<(String, String)> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    (e.policy_id().to_string(), e.to_string())
                }
            })
            .collect();
        if let Some((id, message)) = errors.first() {
            let mut policies: Vec<String> = errors.iter().map(|(id, _)| id.clone()).collect();
            if response.decision() == CedarDecision::Deny {
                policies.extend(decided.iter().map(ToString::to_string));
            }
            policies.sort();
            policies.dedup();
            return Decision {
                outcome: Outcome::Forbid,
                policies,
                reason: format!("denied: policy `{id}` could not be evaluated ({message})"),
                errors: errors.into_iter().map(|(_, message)| message).collect(),
                operator: false,
            };
        }
        match response.decision() {
            CedarDecision::Deny if decided.is_empty() => Decision {
                outcome: Outcome::Forbid,
                policies: Vec::new(),
                reason: format!(
                    "denied: no policy permits `{}` on tool `{}` of upstream `{}` for user `{}`",
                    req.action, req.tool.name, req.tool.upstream, req.principal.user
                ),
                errors: Vec::new(),
                operator: false,
            },
            CedarDecision::Deny => self.explained(Outcome::Forbid, "forbidden by", &decided),
            CedarDecision::Allow => {
                let approvals: Vec<&PolicyId> = decided
                    .iter()
                    .copied()
                    .filter(|id| self.notes.get(*id).is_some_and(|n| n.approval))
                    .collect();
                if approvals.is_empty() {
                    self.explained(Outcome::Permit, "permitted by", &decided)
                } else {
                    let mut d = self.explained(Outcome::NeedsApproval, "needs approval under", &approvals);
                    d.operator = approvals
                        .iter()
                        .any(|id| self.notes.get(*id).is_some_and(|n| n.operator));
                    d
                }
            }
        }
    }

    /// Whether `principal` could call `tool` with some arguments, in some session, at some time:
    /// `false` only when a policy that does not read `context` forbids it, or when no permit can
    /// apply to it whatever the context. For hiding tools from `tools/list`; conservative, so a
    /// tool it keeps may still be denied when called.
    pub fn may_ever_call(&self, principal: &Principal, tool: &Tool) -> bool {
        let Some(probe) = &self.probe else {
            return true;
        };
        let req = Request {
            principal,
            action: Action::CallTool,
            tool,
            arguments: &Value::Null,
            labels: &[],
            provenance: &Provenance::default(),
            now_unix: 0,
            calls_in_window: 0,
        };
        let Ok(response) = self.evaluate(probe, &req) else {
            return true;
        };
        let forbidden = response.diagnostics().reason().next().is_some();
        let errors = response.diagnostics().errors().next().is_some();
        match response.decision() {
            CedarDecision::Allow => true,
            CedarDecision::Deny => !forbidden && errors,
        }
    }

    /// The entities of a request, from the cache or built (and cached).
    fn entities(&self, principal: &Principal, tool: &Tool) -> Result<Arc<Entities>, String> {
        let key = (
            principal.user.clone(),
            principal.client.clone(),
            principal.attributes.clone(),
            tool.upstream.clone(),
            tool.name.clone(),
            tool.effect,
        );
        let mut cache = self.entities.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = cache.get(&key) {
            return Ok(e.clone());
        }
        let built = Arc::new(self.names.entities(principal, tool)?);
        if cache.len() >= ENTITY_CACHE {
            cache.clear();
        }
        cache.insert(key, built.clone());
        Ok(built)
    }

    fn evaluate(&self, set: &PolicySet, req: &Request<'_>) -> Result<Response, String> {
        let entities = self.entities(req.principal, req.tool)?;
        let request = cedar_policy::Request::new(
            self.names.user(req.principal),
            self.names.action(req.action),
            self.names.tool(req.tool),
            value::context(req)?,
            // Not checked against the schema: `arguments` has members the schema cannot declare.
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(self.authorizer.is_authorized(&request, set, &entities))
    }

    /// Whether a permit lets a side-effecting call through although the session holds untrusted
    /// content: one of the permits that decided carries `@flow("allow")`.
    pub fn allows_untrusted_flow(&self, decision: &Decision) -> bool {
        decision.outcome == Outcome::Permit
            && decision
                .policies
                .iter()
                .any(|p| self.notes.get(&PolicyId::new(p.as_str())).is_some_and(|n| n.flow))
    }

    fn explained(&self, outcome: Outcome, verb: &str, ids: &[&PolicyId]) -> Decision {
        let names = ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ");
        let noun = if ids.len() == 1 { "policy" } else { "policies" };
        let why = ids
            .iter()
            .find_map(|id| self.notes.get(*id).and_then(|n| n.reason.as_deref()));
        let reason = match why {
            Some(why) => format!("{verb} {noun} {names}: {why}"),
            None => format!("{verb} {noun} {names}"),
        };
        Decision {
            outcome,
            policies: ids.iter().map(ToString::to_string).collect(),
            reason,
            errors: Vec::new(),
            operator: false,
        }
    }
}

/// The policy set `may_ever_call` evaluates. A policy that never reads `context` decides the
/// same for every call, so it is kept as is; a permit that reads it might apply to some call,
/// so it is kept without its conditions; a forbid that reads it might not apply, so it is left
/// out.
fn probe(policies: &PolicySet) -> Option<PolicySet> {
    let mut probe = PolicySet::new();
    for policy in policies.policies() {
        let mut est = policy.to_json().ok()?;
        if reads_context(&est) {
            if policy.effect() == CedarEffect::Forbid {
                continue;
            }
            *est.get_mut("conditions")? = Value::Array(Vec::new());
        }
        probe
            .add(Policy::from_json(Some(policy.id().clone()), est).ok()?)
            .ok()?;
    }
    Some(probe)
}

/// Whether a policy's JSON form (EST) mentions the `context` variable anywhere.
fn reads_context(est: &Value) -> bool {
    match est {
        Value::Object(members) => {
            members.get("Var").and_then(Value::as_str) == Some("context") || members.values().any(reads_context)
        }
        Value::Array(items) => items.iter().any(reads_context),
        _ => false,
    }
}
