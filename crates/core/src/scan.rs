//! The tool-poisoning scanner: finds instructions aimed at the model, references to secrets,
//! invisible text, exfiltration channels and tool shadowing in the human-readable strings of a
//! tool, prompt or resource template definition.
//!
//! Pure and synchronous like the rest of this crate. The automata are built once in
//! [`Scanner::new`]; each text then costs one Aho-Corasick pass over the literal phrases and one
//! `RegexSet` pass, and only the patterns that matched run again to locate their excerpt. The
//! rules themselves are data, in `scan/rules.rs`.

mod checks;
mod intent;
mod rules;
mod text;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde_json::Value;

use checks::{Shadow, invisible, is_form_field, url_hit};
use intent::{Intent, Own, Place};
use rules::{Check, LITERALS, Literal, PATTERNS, Pattern, Rule};

/// How bad a finding is. Ordered: `Info < Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, nothing to do.
    Info,
    /// Common in honest descriptions; suspicious only with other findings.
    Low,
    /// Worth a human look.
    Medium,
    /// A published attack shape; do not expose the definition unreviewed.
    High,
}

impl Severity {
    /// The lowercase name: `info`, `low`, `medium`, `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A severity name that is none of `info`, `low`, `medium`, `high`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`: expected info, low, medium or high")]
pub struct ParseSeverityError(String);

impl FromStr for Severity {
    type Err = ParseSeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High]
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseSeverityError(s.to_owned()))
    }
}

/// What kind of poisoning a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Instructions aimed at the model: tags, fake role headers, "do not tell the user".
    HiddenInstruction,
    /// Credential files and secrets.
    SensitiveReference,
    /// Characters the user does not see: tag characters, zero-width, bidi controls, look-alikes.
    InvisibleText,
    /// Ways to send data out: URLs with data slots, network commands, remote markdown images.
    Exfiltration,
    /// A definition that speaks of another upstream's tools, or shares a tool's name (tool
    /// shadowing).
    CrossTool,
    /// A definition that is not the one approved (a changed pin, or never approved).
    Pin,
    /// Shell commands that change, download or run things.
    Command,
    /// Text that competes for the model's choice of tool.
    Preference,
}

impl Category {
    /// The kebab-case name, e.g. `hidden-instruction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::HiddenInstruction => "hidden-instruction",
            Category::SensitiveReference => "sensitive-reference",
            Category::InvisibleText => "invisible-text",
            Category::Exfiltration => "exfiltration",
            Category::CrossTool => "cross-tool",
            Category::Pin => "pin",
            Category::Command => "command",
            Category::Preference => "preference",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One thing the scanner found in one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// What kind of poisoning.
    pub category: Category,
    /// The stable rule id, e.g. `important-tag`, `ssh-path`, `tag-characters`.
    pub rule: &'static str,
    /// Where: `description`, `title`, `annotations.title`, `inputSchema.properties.path.description`, …
    pub field: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// The offending text with some context, invisible and control characters as `\u{XXXX}`,
    /// at most 160 characters.
    pub excerpt: String,
}

/// A scanner pattern that does not compile (a bug in `scan/rules.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A regular expression of the rules.
    #[error("scanner pattern `{pattern}` does not compile: {source}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// The literal phrases.
    #[error("scanner phrases do not compile: {0}")]
    Literals(#[from] aho_corasick::BuildError),
}

/// The compiled rules. Build once, share freely (`Scanner` is `Send + Sync`).
#[derive(Debug)]
pub struct Scanner {
    literals: AhoCorasick,
    set: RegexSet,
    regexes: Vec<Regex>,
    instruction_verbs: Regex,
    outbound_verbs: Regex,
    destination: Regex,
    intent: Intent,
}

/// How many matches of one pattern are looked at in one text.
const MAX_MATCHES: usize = 32;
/// How deep `inputSchema` / `outputSchema` are walked.
const MAX_SCHEMA_DEPTH: usize = 32;
/// How many hidden tag characters are decoded into a message.
const MAX_DECODED: usize = 120;

/// `text` with invisible characters (zero-width, bidi controls, tag characters, controls)
/// shown as `\u{XXXX}` escapes, for showing text to a person who must see what a model reads.
pub fn reveal_hidden(text: &str) -> String {
    text::escape(text)
}

fn regex(pattern: &str) -> Result<Regex, ScanError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map_err(|source| ScanError::Regex {
            pattern: pattern.to_owned(),
            source,
        })
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    /// Builds the automata.
    #[expect(
        clippy::expect_used,
        reason = "the patterns are constants of `scan/rules.rs`; a unit test builds them"
    )]
    pub fn new() -> Scanner {
        Scanner::try_new().expect("the scanner's own patterns compile")
    }

    /// Builds the automata, reporting a pattern that does not compile instead of panicking.
    pub fn try_new() -> Result<Scanner, ScanError> {
        let literals = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(LITERALS.iter().map(|l| l.phrase))?;
        let set = RegexSetBuilder::new(PATTERNS.iter().map(|p| p.regex))
            .case_insensitive(true)
            .build()
            .map_err(|source| ScanError::Regex {
                pattern: "(the set)".to_owned(),
                source,
            })?;
        let regexes = PATTERNS.iter().map(|p| regex(p.regex)).collect::<Result<Vec<_>, _>>()?;
        Ok(Scanner {
            literals,
            set,
            regexes,
            instruction_verbs: regex(rules::INSTRUCTION_VERBS)?,
            outbound_verbs: regex(rules::OUTBOUND_VERBS)?,
            destination: regex(rules::DESTINATION)?,
            intent: Intent::new()?,
        })
    }

    /// Scans one human-readable string found at `field`.
    pub fn scan_text(&self, field: &str, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.scan_into(field, text, &Ctx::prose(None), &mut out);
        sort(&mut out);
        out
    }

    /// A tool, prompt or resource template definition as the upstream sent it (JSON object).
    /// Scans every human-readable string: `description`, `title`, `annotations.title`, and
    /// recursively every `description`/`title` string inside `inputSchema`/`outputSchema` (and
    /// prompt `arguments[].description`); every value the model reads in a schema (`default`,
    /// `enum`, `const`, `examples`) and every property name, for instructions where none
    /// belong; `name` for invisible characters. `other_tools` are the names of tools of OTHER
    /// upstreams (as exposed and as original names): a description that names one of them is
    /// a CrossTool finding ("tool shadowing").
    pub fn scan_definition(&self, def: &Value, other_tools: &[&str]) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(obj) = def.as_object() else {
            return out;
        };
        let shadow = Shadow::new(other_tools);
        let params = param_names(def);
        let values = schema_values(def);
        let own = Own {
            name: obj.get("name").and_then(Value::as_str),
            params: &params,
            values: &values,
        };
        let prose = Ctx {
            shadow: shadow.as_ref(),
            place: Place::Prose,
            own,
        };
        for key in ["name", "uriTemplate", "uri"] {
            if let Some(Value::String(s)) = obj.get(key) {
                self.scan_name(key, s, &mut out);
            }
        }
        // A name that is another upstream's tool name in another case, spelling or alphabet
        // (one letter apart is common between honest servers: `get_issue` / `get_issues`).
        if let Some(name) = own.name {
            let base = name.rsplit("__").next().unwrap_or(name);
            if let Some(other) = other_tools
                .iter()
                .map(|o| o.rsplit("__").next().unwrap_or(o))
                .find(|o| intent::same_folded(o, base))
            {
                out.push(Finding {
                    severity: rules::LOOK_ALIKE_NAME.severity,
                    category: rules::LOOK_ALIKE_NAME.category,
                    rule: rules::LOOK_ALIKE_NAME.id,
                    field: "name".to_owned(),
                    message: format!(
                        "{} (`{}` looks like `{}`)",
                        rules::LOOK_ALIKE_NAME.message,
                        text::escape(base),
                        text::escape(other)
                    ),
                    excerpt: text::escape(name),
                });
            }
        }
        for key in ["description", "title"] {
            if let Some(Value::String(s)) = obj.get(key) {
                self.scan_into(key, s, &prose, &mut out);
            }
        }
        if let Some(Value::String(s)) = obj.get("annotations").and_then(|a| a.get("title")) {
            self.scan_into("annotations.title", s, &prose, &mut out);
        }
        for key in ["inputSchema", "outputSchema"] {
            if let Some(schema) = obj.get(key) {
                self.walk_schema(schema, key, 0, &prose, &mut out);
            }
        }
        if let Some(Value::Array(args)) = obj.get("arguments") {
            for (i, arg) in args.iter().enumerate() {
                let path = match arg.get("name").and_then(Value::as_str) {
                    Some(name) => {
                        let path = format!("arguments.{}", text::escape(name));
                        self.scan_name(&path, name, &mut out);
                        self.scan_into(&path, name, &prose.at(Place::Name), &mut out);
                        path
                    }
                    None => format!("arguments[{i}]"),
                };
                for key in ["description", "title"] {
                    if let Some(Value::String(s)) = arg.get(key) {
                        self.scan_into(&format!("{path}.{key}"), s, &prose, &mut out);
                    }
                }
            }
        }
        sort(&mut out);
        out
    }

    fn walk_schema(&self, v: &Value, path: &str, depth: usize, ctx: &Ctx<'_, '_>, out: &mut Vec<Finding>) {
        if depth > MAX_SCHEMA_DEPTH {
            return;
        }
        match v {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = format!("{path}.{}", text::escape(key));
                    match (key.as_str(), child) {
                        ("description" | "title", Value::String(s)) => {
                            self.scan_into(&child_path, s, &ctx.at(Place::Param), out);
                        }
                        ("default" | "const" | "examples" | "enum", _) => {
                            self.scan_values(child, &child_path, depth + 1, ctx, out);
                        }
                        ("properties" | "patternProperties" | "$defs" | "definitions", Value::Object(props)) => {
                            for (name, sub) in props {
                                let prop_path = format!("{child_path}.{}", text::escape(name));
                                self.scan_name(&prop_path, name, out);
                                self.scan_into(&prop_path, name, &ctx.at(Place::Name), out);
                                self.walk_schema(sub, &prop_path, depth + 1, ctx, out);
                            }
                        }
                        _ => self.walk_schema(child, &child_path, depth + 1, ctx, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_schema(item, &format!("{path}[{i}]"), depth + 1, ctx, out);
                }
            }
            _ => {}
        }
    }

    /// Every string of a value the model reads (`default`, `enum`, `const`, `examples`).
    fn scan_values(&self, v: &Value, path: &str, depth: usize, ctx: &Ctx<'_, '_>, out: &mut Vec<Finding>) {
        if depth > MAX_SCHEMA_DEPTH {
            return;
        }
        match v {
            Value::String(s) => self.scan_into(path, s, &ctx.at(Place::Value), out),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.scan_values(item, &format!("{path}[{i}]"), depth + 1, ctx, out);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.scan_values(item, &format!("{path}.{}", text::escape(k)), depth + 1, ctx, out);
                }
            }
            _ => {}
        }
    }

    /// A name: only what hides or spoofs characters matters.
    fn scan_name(&self, field: &str, name: &str, out: &mut Vec<Finding>) {
        let mut found = Vec::new();
        self.scan_into(field, name, &Ctx::prose(None), &mut found);
        out.extend(found.into_iter().filter(|f| f.category == Category::InvisibleText));
    }

    fn scan_into(&self, field: &str, text: &str, ctx: &Ctx<'_, '_>, out: &mut Vec<Finding>) {
        if text.is_empty() {
            return;
        }
        let mut sink = Sink {
            field,
            text,
            found: Vec::new(),
            spans: Vec::new(),
        };
        if matches!(ctx.place, Place::Prose | Place::Param) {
            for m in self.literals.find_iter(text) {
                if let Some(lit) = LITERALS.get(m.pattern().as_usize()) {
                    self.literal_hit(&mut sink, lit, m.range());
                }
            }
            for idx in self.set.matches(text).iter() {
                if let (Some(pattern), Some(re)) = (PATTERNS.get(idx), self.regexes.get(idx)) {
                    self.pattern_hit(&mut sink, pattern, re);
                }
            }
            if let Some(shadow) = ctx.shadow {
                shadow.check(&mut sink);
            }
        }
        self.intent.check(&mut sink, ctx.place, &ctx.own);
        // A secret word beside an outbound verb, in a text that already carries a High hidden
        // instruction, is part of that instruction.
        let injected = sink
            .found
            .iter()
            .any(|f| f.category == Category::HiddenInstruction && f.severity == Severity::High);
        if injected {
            for f in &mut sink.found {
                if f.rule == rules::SECRET_WORD.id && f.severity == Severity::Medium {
                    f.severity = Severity::High;
                }
            }
        }
        out.append(&mut sink.found);
    }

    fn literal_hit(&self, sink: &mut Sink<'_>, lit: &Literal, range: Range<usize>) {
        if !text::literal_bounded(sink.text, range.clone(), lit.phrase) {
            return;
        }
        let rule = lit.rule;
        let matched = sink.text.get(range.clone()).unwrap_or_default();
        match lit.check {
            Check::SensitivePath => {
                if self
                    .instruction_verbs
                    .is_match(text::sentence(sink.text, range.clone()))
                {
                    let msg = format!("asks to read or send `{matched}`, a credential no tool description needs");
                    sink.add(rule, Severity::High, range, Some(msg));
                } else {
                    sink.add(rule, Severity::Low, range, None);
                }
            }
            Check::SecretWord => {
                let after = sink.text.get(range.end..).unwrap_or_default();
                if is_form_field(after) {
                    sink.add(rule, Severity::Low, range, None);
                    return;
                }
                let sentence = text::sentence(sink.text, range.clone());
                if self.outbound_verbs.is_match(sentence) {
                    let (sev, msg) = if self.destination.is_match(sentence) {
                        (
                            Severity::High,
                            format!("asks to send `{matched}` to an outside address"),
                        )
                    } else {
                        (Severity::Medium, format!("asks to pass or send `{matched}`"))
                    };
                    sink.add(rule, sev, range, Some(msg));
                } else {
                    sink.add(rule, Severity::Low, range, None);
                }
            }
            Check::NetCommand => self.net_command(sink, rule, range),
            _ => sink.add(rule, rule.severity, range, None),
        }
    }

    fn net_command(&self, sink: &mut Sink<'_>, rule: &'static Rule, range: Range<usize>) {
        let sentence = text::sentence(sink.text, range.clone());
        if sentence.contains("://") {
            let msg = format!("{} toward a URL", rule.message);
            sink.add(rule, Severity::High, range, Some(msg));
        } else {
            sink.add(rule, rule.severity, range, None);
        }
    }

    fn pattern_hit(&self, sink: &mut Sink<'_>, pattern: &Pattern, re: &Regex) {
        let rule = pattern.rule;
        let text = sink.text;
        match pattern.check {
            Check::NetCommand => {
                for m in re.find_iter(text).take(MAX_MATCHES) {
                    self.net_command(sink, rule, m.range());
                }
            }
            Check::Url => {
                for m in re.find_iter(text).take(MAX_MATCHES) {
                    url_hit(sink, m.range());
                }
            }
            Check::Invisible => invisible(sink, re),
            Check::MixedScript => {
                for m in re.find_iter(text).take(MAX_MATCHES) {
                    let word = text::word_around(text, m.range());
                    let letters = text
                        .get(word.clone())
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| c.is_alphabetic());
                    if letters.count() >= 3 {
                        sink.add(rule, rule.severity, word, None);
                    }
                }
            }
            Check::WhenCalls => {
                for m in re.find_iter(text).take(MAX_MATCHES) {
                    let next = text.get(m.end()..).unwrap_or_default().trim_start();
                    let object = next.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default();
                    if !object.eq_ignore_ascii_case("this") && !object.eq_ignore_ascii_case("it") {
                        sink.add(rule, rule.severity, m.range(), None);
                    }
                }
            }
            Check::Plain | Check::SensitivePath | Check::SecretWord => {
                if let Some(m) = re.find(text) {
                    sink.add(rule, rule.severity, m.range(), None);
                }
            }
        }
    }
}

/// What a text is scanned with: the other upstreams' tool names, where it sits, whose it is.
struct Ctx<'s, 'd> {
    shadow: Option<&'s Shadow<'s>>,
    place: Place,
    own: Own<'d>,
}

impl<'s, 'd> Ctx<'s, 'd> {
    fn prose(shadow: Option<&'s Shadow<'s>>) -> Ctx<'s, 'd> {
        Ctx {
            shadow,
            place: Place::Prose,
            own: Own::default(),
        }
    }

    fn at(&self, place: Place) -> Ctx<'s, 'd> {
        Ctx {
            shadow: if place == Place::Param { self.shadow } else { None },
            place,
            own: self.own,
        }
    }
}

/// Strings gathered from a definition's `inputSchema` at any depth (bounded): `pick` sees
/// each member (key, value), adds what it wants, and says whether to walk into the value.
fn from_input_schema<'v>(def: &'v Value, pick: fn(&'v str, &'v Value, &mut Vec<&'v str>) -> bool) -> Vec<&'v str> {
    fn walk<'v>(
        v: &'v Value,
        depth: usize,
        pick: fn(&'v str, &'v Value, &mut Vec<&'v str>) -> bool,
        out: &mut Vec<&'v str>,
    ) {
        if depth > MAX_SCHEMA_DEPTH || out.len() > 512 {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if pick(k, child, out) {
                        walk(child, depth + 1, pick, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, depth + 1, pick, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(schema) = def.get("inputSchema") {
        walk(schema, 0, pick, &mut out);
    }
    out
}

/// The string values a definition's schema lists (`enum`, `const`) at any depth.
fn schema_values(def: &Value) -> Vec<&str> {
    from_input_schema(def, |k, child, out| match (k, child) {
        ("enum", Value::Array(items)) => {
            out.extend(items.iter().filter_map(Value::as_str));
            false
        }
        ("const", Value::String(s)) => {
            out.push(s);
            false
        }
        _ => true,
    })
}

/// The names of a definition's parameters at any depth (`inputSchema` properties, prompt
/// `arguments`, a resource template's `{variables}`).
fn param_names(def: &Value) -> Vec<&str> {
    let mut out = from_input_schema(def, |k, child, out| {
        if k == "properties"
            && let Value::Object(props) = child
        {
            out.extend(props.keys().map(String::as_str));
        }
        true
    });
    if let Some(Value::Array(args)) = def.get("arguments") {
        out.extend(args.iter().filter_map(|a| a.get("name").and_then(Value::as_str)));
    }
    if let Some(template) = def.get("uriTemplate").and_then(Value::as_str) {
        // RFC 6570 expressions: `{name}`, `{+name}`, `{?a,b*}`, `{name:3}`.
        for expr in template
            .split('{')
            .skip(1)
            .filter_map(|e| e.split_once('}').map(|(v, _)| v))
        {
            let vars = expr.trim_start_matches(['+', '#', '.', '/', ';', '?', '&']);
            out.extend(
                vars.split(',')
                    .map(|v| v.split([':', '*']).next().unwrap_or_default())
                    .filter(|v| !v.is_empty()),
            );
        }
    }
    out
}

/// The findings of one text, at most one per rule (the most severe, then the first).
struct Sink<'t> {
    field: &'t str,
    text: &'t str,
    found: Vec<Finding>,
    /// Where each finding was found: (category, severity, span).
    spans: Vec<(Category, Severity, Range<usize>)>,
}

impl Sink<'_> {
    /// Adds a finding unless one of the same category and at least its severity already
    /// covers an overlapping span (the model-level rules of `scan/intent.rs` restate what a
    /// specific rule found; the specific one is the better explanation).
    fn note(&mut self, rule: &'static Rule, severity: Severity, range: Range<usize>, message: Option<String>) {
        let covered = self.spans.iter().any(|(cat, sev, r)| {
            *cat == rule.category && *sev >= severity && r.start < range.end && range.start < r.end
        });
        if !covered {
            self.add(rule, severity, range, message);
        }
    }

    fn add(&mut self, rule: &'static Rule, severity: Severity, range: Range<usize>, message: Option<String>) {
        self.spans.push((rule.category, severity, range.clone()));
        let existing = self.found.iter().position(|f| f.rule == rule.id);
        if let Some(i) = existing
            && self.found.get(i).is_some_and(|f| f.severity >= severity)
        {
            return;
        }
        let finding = Finding {
            severity,
            category: rule.category,
            rule: rule.id,
            field: self.field.to_owned(),
            message: message.unwrap_or_else(|| rule.message.to_owned()),
            excerpt: text::excerpt(self.text, range),
        };
        match existing.and_then(|i| self.found.get_mut(i)) {
            Some(slot) => *slot = finding,
            None => self.found.push(finding),
        }
    }
}

/// Most severe first, then by field and rule; one finding per (rule, field).
fn sort(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.field.cmp(&b.field))
            .then_with(|| a.rule.cmp(b.rule))
    });
    let mut seen = HashSet::new();
    findings.retain(|f| seen.insert((f.rule, f.field.clone())));
}
