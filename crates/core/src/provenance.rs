//! Argument provenance: which distinctive values of a call's arguments first came from
//! untrusted tool output in this session.
//!
//! Every result the session sees is cut into *values*: email addresses, URLs, domains,
//! IBAN-like account numbers, long opaque tokens, file paths, and shingles (runs of eight
//! words) of longer text. Values from untrusted output are remembered with their source; values
//! from trusted output are remembered as trusted. A call's argument then *carries* an untrusted
//! value when one of its values was seen in untrusted output and never in trusted output — an
//! address a model could only have learned from the attacker's email.
//!
//! Values are kept as keyed 64-bit hashes (SipHash with keys random per index), so memory per
//! value is small and fixed and an attacker cannot aim a collision. Memory is bounded: past
//! `max_values`, the oldest values are forgotten first, and each is counted in `evicted`.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::BuildHasher;

/// What kind of distinctive value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueKind {
    /// An email address.
    Email,
    /// A URL.
    Url,
    /// A domain name.
    Domain,
    /// Something shaped like an IBAN.
    Iban,
    /// A long opaque token (keys, ids, codes).
    Token,
    /// A file path.
    Path,
    /// A run of words from a longer text.
    Passage,
}

impl ValueKind {
    /// Whether a value of this kind names where something goes: an address, a URL, a domain,
    /// an account. The flow rule holds a write or a send that carries one from untrusted output.
    pub fn is_destination(self) -> bool {
        matches!(
            self,
            ValueKind::Email | ValueKind::Url | ValueKind::Domain | ValueKind::Iban
        )
    }

    /// A word for explanations.
    pub fn noun(self) -> &'static str {
        match self {
            ValueKind::Email => "address",
            ValueKind::Url => "URL",
            ValueKind::Domain => "domain",
            ValueKind::Iban => "account number",
            ValueKind::Token => "token",
            ValueKind::Path => "path",
            ValueKind::Passage => "passage",
        }
    }
}

/// One distinctive value, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Value {
    /// What kind.
    pub kind: ValueKind,
    /// The normalised text (lowercased where case does not matter).
    pub text: String,
}

/// Most words of an argument that is a field (a value or a short list), not running text.
pub const MAX_FIELD_WORDS: usize = 4;

/// Words per passage shingle.
pub const SHINGLE_WORDS: usize = 8;
/// The longest value kept (longer ones are cut; the hash covers the cut text).
const MAX_VALUE: usize = 512;
/// Most values taken from one text (a huge output cannot flush the index by itself alone).
pub const MAX_PER_TEXT: usize = 4096;

fn is_word_sep(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | '\'' | '`' | ',' | ';' | '|'
        )
}

fn trim_punct(w: &str) -> &str {
    w.trim_end_matches(['.', ':', '!', '?', '*', '_'])
        .trim_start_matches(['*', '_'])
}

fn is_domain(s: &str) -> bool {
    let mut labels = s.split('.');
    let Some(tld) = s.rsplit('.').next() else { return false };
    s.contains('.')
        && s.len() <= 253
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
        && labels.all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The host of a URL given after its `scheme://` (no user info, no port), and where the
/// authority ends.
fn url_host(after_scheme: &str) -> (&str, usize) {
    let end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    let authority = after_scheme.get(..end).unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (host.split(':').next().unwrap_or_default(), end)
}

/// The distinctive values in `text`, at most [`MAX_PER_TEXT`]. The domain of every address
/// and URL is a value too (output that names `x@evil.test` taints a bare `evil.test`).
pub fn extract(text: &str) -> Vec<Value> {
    extract_with(text, true)
}

/// `extract`, with or without the domains of addresses and URLs (an argument is judged by its
/// address, not by the address's domain: `bob@corp.test` from the person is not steered
/// because `alice@corp.test` wrote an email).
fn extract_with(text: &str, derived_domains: bool) -> Vec<Value> {
    let mut out = Vec::new();
    each_value(text, derived_domains, &mut |kind, parts| {
        let mut text = String::new();
        for p in parts {
            text.push_str(p);
        }
        out.push(Value {
            kind,
            text: cut(&text, MAX_VALUE).to_owned(),
        });
    });
    out
}

/// Calls `found(kind, parts)` for each distinctive value of `text`, at most [`MAX_PER_TEXT`]:
/// the value is the concatenation of `parts`, which `found` cuts to [`MAX_VALUE`] bytes. A passage comes as its
/// words and the spaces between them, so the index can hash it without building its text
/// (this ran over every result before its reply; most of its cost was strings per word).
fn each_value(text: &str, derived_domains: bool, found: &mut dyn FnMut(ValueKind, &[&str])) {
    let mut count = 0usize;
    let mut push = |kind: ValueKind, parts: &[&str]| {
        if count < MAX_PER_TEXT {
            count += 1;
            found(kind, parts);
        }
    };
    let words: Vec<&str> = text.split(is_word_sep).filter(|w| !w.is_empty()).collect();
    let mut i = 0;
    while let Some(raw) = words.get(i) {
        let w = trim_punct(raw);
        i += 1;
        if w.is_empty() {
            continue;
        }
        // Addresses, URLs and domains are compared lowercased; a word with none of `@`, `:` or
        // `.` is none of them, and needs no lowercase copy.
        let lower = if w.bytes().any(|b| matches!(b, b'@' | b':' | b'.')) {
            Some(w.to_ascii_lowercase())
        } else {
            None
        };
        if let Some(lower) = &lower {
            if let Some(rest) = lower.strip_prefix("mailto:") {
                if let Some((_, domain)) = rest.split_once('@') {
                    push(ValueKind::Email, &[rest]);
                    if derived_domains && is_domain(domain) {
                        push(ValueKind::Domain, &[domain]);
                    }
                }
                continue;
            }
            if lower.starts_with("http://") || lower.starts_with("https://") {
                let after = lower.split_once("://").map_or("", |(_, a)| a);
                let (host, host_end) = url_host(after);
                // The URL keeps the case of its path: only scheme and host are case-free.
                let scheme_host = lower.len() - after.len() + host_end;
                push(
                    ValueKind::Url,
                    &[
                        lower.get(..scheme_host).unwrap_or_default(),
                        w.get(scheme_host..).unwrap_or_default(),
                    ],
                );
                if derived_domains && is_domain(host) {
                    push(ValueKind::Domain, &[host]);
                }
                continue;
            }
            if let Some((local, domain)) = lower.split_once('@')
                && !local.is_empty()
                && is_domain(domain)
            {
                push(ValueKind::Email, &[lower.as_str()]);
                if derived_domains {
                    push(ValueKind::Domain, &[domain]);
                }
                continue;
            }
        }
        if w.starts_with('/') || w.starts_with("~/") || w.starts_with("./") || w.starts_with("../") {
            if w.len() > 2 && w.get(1..).is_some_and(|r| r.contains('/') || r.len() > 3) {
                push(ValueKind::Path, &[w]);
            }
            continue;
        }
        // IBAN: two letters, two digits, then 10–30 letters or digits, maybe in groups of four.
        let bytes = w.as_bytes();
        if bytes.len() == 4 || (15..=34).contains(&bytes.len()) {
            let head = bytes.get(..4).unwrap_or_default();
            if head.len() == 4
                && head.iter().take(2).all(u8::is_ascii_alphabetic)
                && head.iter().skip(2).all(u8::is_ascii_digit)
            {
                let mut iban = w.to_ascii_uppercase();
                let mut j = i;
                while iban.len() < 34
                    && let Some(next) = words.get(j).map(|n| trim_punct(n))
                    && (1..=4).contains(&next.len())
                    && next.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    iban.push_str(&next.to_ascii_uppercase());
                    j += 1;
                }
                if (15..=34).contains(&iban.len()) && iban.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    push(ValueKind::Iban, &[&iban]);
                    i = j;
                    continue;
                }
            }
        }
        if w.len() >= 20
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='))
            && w.bytes().any(|b| b.is_ascii_digit())
            && w.bytes().any(|b| b.is_ascii_alphabetic())
        {
            push(ValueKind::Token, &[w]);
            continue;
        }
        if let Some(lower) = &lower
            && is_domain(lower)
            && lower.bytes().any(|b| b.is_ascii_alphabetic())
        {
            push(ValueKind::Domain, &[lower.as_str()]);
        }
    }
    // Passages: shingles of normalised words, the words kept in one buffer.
    let mut norm = String::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for w in &words {
        let start = norm.len();
        if w.is_ascii() {
            // The same as below for ASCII, a byte at a time.
            norm.extend(
                w.bytes()
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|b| char::from(b.to_ascii_lowercase())),
            );
        } else {
            norm.extend(w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase));
        }
        if norm.len() > start {
            spans.push((start, norm.len()));
        }
    }
    if spans.len() >= SHINGLE_WORDS {
        let mut parts: Vec<&str> = Vec::with_capacity(2 * SHINGLE_WORDS);
        for window in spans.windows(SHINGLE_WORDS) {
            parts.clear();
            for (k, (a, b)) in window.iter().enumerate() {
                if k > 0 {
                    parts.push(" ");
                }
                parts.push(norm.get(*a..*b).unwrap_or_default());
            }
            push(ValueKind::Passage, &parts);
        }
    }
}

/// Whether `v` is covered by a trusted-destination `pattern` (lowercase): an address
/// (`alice@corp.test`), every address of a domain (`*@corp.test`), a domain with its addresses
/// and URLs (`corp.test`), the same with subdomains (`*.corp.test`), or a URL prefix
/// (`https://wiki.corp.test/`). An account number matches itself.
pub fn destination_matches(pattern: &str, v: &Value) -> bool {
    let text = v.text.to_ascii_lowercase();
    let in_domain = |domain: &str, subdomains: bool| -> bool {
        let d = match v.kind {
            ValueKind::Email => text.rsplit_once('@').map(|(_, d)| d.to_owned()),
            ValueKind::Url => Some(
                url_host(text.split_once("://").map_or(text.as_str(), |(_, a)| a))
                    .0
                    .to_owned(),
            ),
            ValueKind::Domain => Some(text.clone()),
            _ => None,
        };
        d.is_some_and(|d| d == domain || (subdomains && d.ends_with(&format!(".{domain}"))))
    };
    if let Some(domain) = pattern.strip_prefix("*@") {
        return v.kind == ValueKind::Email && in_domain(domain, false);
    }
    if let Some(domain) = pattern.strip_prefix("*.") {
        return in_domain(domain, true);
    }
    if pattern.contains("://") {
        return v.kind == ValueKind::Url && text.starts_with(pattern);
    }
    if pattern.contains('@') {
        return v.kind == ValueKind::Email && text == pattern;
    }
    if v.kind == ValueKind::Iban {
        return text == pattern;
    }
    in_domain(pattern, false)
}

/// Where an untrusted value was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The tool (as exposed), resource or prompt whose output carried it.
    pub origin: String,
    /// When, Unix seconds.
    pub at_unix: i64,
}

/// An argument value that came from untrusted output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The argument (a dotted path into the arguments, e.g. `to` or `message.recipients.0`).
    pub argument: String,
    /// The value as found in the argument.
    pub value: Value,
    /// Where it was first seen.
    pub source: Source,
    /// Whether the argument is a field (the value alone, or a short list of values) rather
    /// than running text: `to: "eve@evil.test"` names where something goes; a body that
    /// quotes an address does not.
    pub field: bool,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: String = self.value.text.chars().take(60).collect();
        if shown.len() < self.value.text.len() {
            shown.push('…');
        }
        write!(
            f,
            "argument `{}`: {} `{}` came from untrusted output of {} at {}",
            self.argument,
            self.value.kind.noun(),
            shown,
            self.source.origin,
            clock(self.source.at_unix)
        )
    }
}

/// `HH:MM:SS UTC` of Unix seconds: the time of day in explanations.
pub fn clock(at_unix: i64) -> String {
    let s = at_unix.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

/// Hashes a `u64` that is already a keyed hash (the index's own, random per index) as itself:
/// hashing it again would only cost time, and no one outside can aim at its buckets.
#[derive(Clone, Copy, Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here; anything else is folded in rather than lost.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PrehashedState = std::hash::BuildHasherDefault<Prehashed>;

/// One session's provenance index.
#[derive(Debug)]
pub struct ProvenanceIndex {
    keys: RandomState,
    untrusted: HashMap<u64, u32, PrehashedState>,
    trusted: HashSet<u64, PrehashedState>,
    order: VecDeque<(u64, bool)>,
    /// Each source and how many values point to it.
    sources: HashMap<u32, (Source, usize)>,
    next_source: u32,
    max_values: usize,
    /// Values forgotten to stay within `max_values`.
    pub evicted: u64,
}

impl ProvenanceIndex {
    /// An empty index that keeps at most `max_values` values (at least 1).
    pub fn new(max_values: usize) -> ProvenanceIndex {
        ProvenanceIndex {
            keys: RandomState::new(),
            untrusted: HashMap::default(),
            trusted: HashSet::default(),
            order: VecDeque::new(),
            sources: HashMap::new(),
            next_source: 0,
            max_values: max_values.max(1),
            evicted: 0,
        }
    }

    fn hash(&self, v: &Value) -> u64 {
        self.hash_parts(v.kind, &[v.text.as_str()])
    }

    /// The keyed hash of a value given as parts: of their concatenation cut to [`MAX_VALUE`]
    /// bytes (as [`Value`]s are), without building it.
    fn hash_parts(&self, kind: ValueKind, parts: &[&str]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = self.keys.build_hasher();
        kind.hash(&mut h);
        let mut budget = MAX_VALUE;
        for p in parts {
            let piece = cut(p, budget);
            h.write(piece.as_bytes());
            if piece.len() < p.len() {
                break;
            }
            budget -= piece.len();
        }
        h.write_u8(0xff);
        h.finish()
    }

    /// The hashes of the values of `text`.
    fn hashes(&self, text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        each_value(text, true, &mut |kind, parts| out.push(self.hash_parts(kind, parts)));
        out
    }

    /// Values held now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Remembers the values of `text`, output of `origin` at `at_unix`, as untrusted or not.
    pub fn observe(&mut self, text: &str, untrusted: bool, origin: &str, at_unix: i64) {
        let hashes = self.hashes(text);
        self.remember(hashes, untrusted, origin, at_unix);
    }

    /// `observe` for the `texts` of the output of a call made with `arguments`: trusted output
    /// does not make trusted a value the call was given (an echo is not a confirmation — a
    /// trusted tool that repeats an attacker's address would otherwise launder it).
    pub fn observe_echo(
        &mut self,
        texts: &[&str],
        untrusted: bool,
        origin: &str,
        at_unix: i64,
        arguments: &serde_json::Value,
    ) {
        let mut given: HashSet<u64> = HashSet::new();
        if !untrusted && !arguments.is_null() {
            walk_strings(arguments, &mut String::new(), &mut |_, s| {
                given.extend(self.hashes(s));
            });
        }
        for text in texts {
            let mut hashes = self.hashes(text);
            if !given.is_empty() {
                hashes.retain(|h| !given.contains(h));
            }
            self.remember(hashes, untrusted, origin, at_unix);
        }
    }

    /// Remembers the values (by their hashes) of one output, with their source.
    fn remember(&mut self, values: Vec<u64>, untrusted: bool, origin: &str, at_unix: i64) {
        if values.is_empty() {
            return;
        }
        // A source is kept while values point to it (`refs`); one no fresh value points to is
        // never stored.
        let id = self.next_source;
        let mut refs = 0usize;
        for h in values {
            let fresh = if untrusted {
                match self.untrusted.entry(h) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(id);
                        refs += 1;
                        true
                    }
                }
            } else {
                self.trusted.insert(h)
            };
            if fresh {
                self.order.push_back((h, untrusted));
            }
        }
        if refs > 0 {
            self.next_source = self.next_source.wrapping_add(1);
            self.sources.insert(
                id,
                (
                    Source {
                        origin: origin.to_owned(),
                        at_unix,
                    },
                    refs,
                ),
            );
        }
        while self.order.len() > self.max_values {
            if let Some((h, was_untrusted)) = self.order.pop_front() {
                if was_untrusted {
                    if let Some(src) = self.untrusted.remove(&h)
                        && let Some((_, n)) = self.sources.get_mut(&src)
                    {
                        *n -= 1;
                        if *n == 0 {
                            self.sources.remove(&src);
                        }
                    }
                } else {
                    self.trusted.remove(&h);
                }
                self.evicted += 1;
            }
        }
    }

    fn source(&self, id: u32) -> Option<&Source> {
        self.sources.get(&id).map(|(s, _)| s)
    }

    /// Sources held now (each has at least one value pointing to it).
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The untrusted values `text` (the argument at `argument`) carries: seen in untrusted
    /// output, never in trusted output.
    pub fn lookup(&self, argument: &str, text: &str) -> Vec<Hit> {
        if self.untrusted.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<Hit> = Vec::new();
        let field = text
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';'))
            .filter(|w| !w.is_empty())
            .count()
            <= MAX_FIELD_WORDS;
        for v in extract_with(text, false) {
            let h = self.hash(&v);
            if self.trusted.contains(&h) {
                continue;
            }
            if let Some(source) = self.untrusted.get(&h).and_then(|id| self.source(*id))
                && !hits.iter().any(|x| x.value == v)
            {
                hits.push(Hit {
                    argument: argument.to_owned(),
                    value: v,
                    source: source.clone(),
                    field,
                });
            }
        }
        hits
    }

    /// The untrusted values carried by every string in a call's arguments, each named by its
    /// path.
    pub fn lookup_arguments(&self, arguments: &serde_json::Value) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.untrusted.is_empty() {
            return hits;
        }
        walk_strings(arguments, &mut String::new(), &mut |path, s| {
            hits.extend(self.lookup(path, s));
        });
        hits
    }
}

/// Calls `f(path, text)` for every string in `v` (object keys too, as they are argument text),
/// with a dotted path.
pub fn walk_strings(v: &serde_json::Value, path: &mut String, f: &mut dyn FnMut(&str, &str)) {
    match v {
        serde_json::Value::String(s) => f(path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&i.to_string());
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, item) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                f(path, k);
                walk_strings(item, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
