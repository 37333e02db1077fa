//! The follow-up checks that need more than a match: URLs classified by host and query,
//! invisible characters classified one by one (tag characters decoded), and other upstreams'
//! tool names found whole-word.

use std::cell::OnceCell;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex::Regex;

use super::{MAX_DECODED, MAX_MATCHES, Severity, Sink, rules, text};

/// A secret word naming a form field (`password field`, `password-protected`), not a secret.
pub(super) fn is_form_field(after: &str) -> bool {
    let next = after.trim_start_matches(['s', 'S']).trim_start_matches([' ', '-', '_']);
    let word = next
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    [
        "field",
        "fields",
        "parameter",
        "param",
        "argument",
        "property",
        "input",
        "prompt",
        "policy",
        "reset",
        "manager",
        "protected",
        "hash",
        "strength",
        "rotation",
        "store",
    ]
    .iter()
    .any(|w| w.eq_ignore_ascii_case(word))
}

/// A URL: always a Low `url`; High `url-data-placeholder` / `exfil-host` when it is shaped like
/// a drop box.
pub(super) fn url_hit(sink: &mut Sink<'_>, range: Range<usize>) {
    let text = sink.text;
    let raw = text.get(range.clone()).unwrap_or_default();
    let url = raw.trim_end_matches(['.', ',', ';', ':', '!', '?']);
    let range = range.start..range.start + url.len();
    sink.add(&rules::URL, Severity::Low, range.clone(), None);

    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.split(':').next().unwrap_or_default().to_ascii_lowercase();
    let tail = rest.get(authority_end..).unwrap_or_default();

    let glued_slot = text.get(range.end..).is_some_and(|after| after.starts_with(['<', '{']));
    let lower_tail = tail.to_ascii_lowercase();
    let slot = glued_slot
        || tail.contains(['{', '$'])
        || lower_tail.contains("%7b")
        || lower_tail
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .any(|k| ["data", "q", "d", "payload", "content", "leak", "exfil"].contains(&k));
    if slot {
        sink.add(&rules::URL_DATA_PLACEHOLDER, Severity::High, range.clone(), None);
    }
    let drop_host = rules::EXFIL_HOSTS.iter().any(|h| {
        host.strip_suffix(h)
            .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'))
    }) || (host.ends_with("discord.com") || host.ends_with("discordapp.com"))
        && lower_tail.starts_with("/api/webhooks");
    if drop_host {
        let msg =
            format!("a URL at `{host}`, a request-capture, paste or tunnel host: a typical destination of stolen data");
        sink.add(&rules::EXFIL_HOST, Severity::High, range, Some(msg));
    }
}

/// Every invisible or control character, by class. Tag characters are decoded: they spell ASCII.
pub(super) fn invisible(sink: &mut Sink<'_>, re: &Regex) {
    let text = sink.text;
    let mut decoded = String::new();
    let mut selectors = 0usize;
    let mut first_selector = None;
    for m in re.find_iter(text) {
        let Some(c) = m.as_str().chars().next() else {
            continue;
        };
        let rule = rules::classify_invisible(c);
        if rule.id == rules::TAG_CHARACTERS.id {
            if let Some(ascii) = u32::from(c).checked_sub(0xE0000).and_then(char::from_u32)
                && (' '..='~').contains(&ascii)
                && decoded.len() < MAX_DECODED
            {
                decoded.push(ascii);
            }
            sink.add(rule, rule.severity, m.range(), None);
        } else if rule.id == rules::VARIATION_SELECTORS.id {
            selectors += 1;
            first_selector.get_or_insert(m.range());
        } else if rule.id == rules::ZERO_WIDTH.id
            && matches!(c, '\u{200C}' | '\u{200D}')
            && joins_non_ascii(text, m.range())
        {
            // ZWJ in emoji sequences, ZWNJ/ZWJ in Persian and Indic words: legitimate joiners.
        } else {
            let msg = format!("{}: `U+{:04X}`", rule.message, u32::from(c));
            sink.add(rule, rule.severity, m.range(), Some(msg));
        }
    }
    if !decoded.is_empty()
        && let Some(f) = sink.found.iter_mut().find(|f| f.rule == rules::TAG_CHARACTERS.id)
    {
        f.message = format!(
            "{} spelling `{decoded}`: text the user does not see but the model reads",
            rules::TAG_CHARACTERS.message
        );
    }
    if let Some(range) = first_selector {
        let sev = if selectors >= 8 {
            Severity::High
        } else {
            Severity::Medium
        };
        let msg = format!("{} ({selectors} of them)", rules::VARIATION_SELECTORS.message);
        sink.add(&rules::VARIATION_SELECTORS, sev, range, Some(msg));
    }
}

/// Whether the joiner at `range` sits between two non-ASCII characters.
fn joins_non_ascii(text: &str, range: Range<usize>) -> bool {
    let prev = text.get(..range.start).and_then(|s| s.chars().next_back());
    let next = text.get(range.end..).and_then(|s| s.chars().next());
    prev.is_some_and(|c| !c.is_ascii() && !text::is_hidden(c))
        && next.is_some_and(|c| !c.is_ascii() && !text::is_hidden(c))
}

/// Below this many bytes × names, a text is searched name by name (`str::match_indices`) rather
/// than with an automaton: building one costs more than scanning a few short descriptions.
const NAIVE_WORK: usize = 1 << 16;

/// The names of other upstreams' tools, matched whole-word and case-sensitively.
pub(super) struct Shadow<'n> {
    names: Vec<&'n str>,
    /// Built on the first text too long for the name-by-name search; `None` inside if it failed.
    automaton: OnceCell<Option<AhoCorasick>>,
}

impl<'n> Shadow<'n> {
    pub(super) fn new(other_tools: &[&'n str]) -> Option<Shadow<'n>> {
        let mut names: Vec<&str> = other_tools.iter().copied().filter(|n| n.chars().count() >= 3).collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return None;
        }
        Some(Shadow {
            names,
            automaton: OnceCell::new(),
        })
    }

    /// Every occurrence of a name in `text`, as (name, range), at most `limit`.
    fn occurrences(&self, text: &str, limit: usize) -> Vec<(&'n str, Range<usize>)> {
        if text.len().saturating_mul(self.names.len()) <= NAIVE_WORK {
            return self
                .names
                .iter()
                .flat_map(|&name| text.match_indices(name).map(move |(i, _)| (name, i..i + name.len())))
                .take(limit)
                .collect();
        }
        let automaton = self.automaton.get_or_init(|| {
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                .build(&self.names)
                .ok()
        });
        let Some(automaton) = automaton else {
            return Vec::new();
        };
        automaton
            .find_overlapping_iter(text)
            .filter_map(|m| self.names.get(m.pattern().as_usize()).map(|&name| (name, m.range())))
            .take(limit)
            .collect()
    }

    pub(super) fn check(&self, sink: &mut Sink<'_>) {
        for (name, range) in self.occurrences(sink.text, MAX_MATCHES * 4) {
            if !text::name_bounded(sink.text, range.clone()) {
                continue;
            }
            // INVARIANT: a plain dictionary word (`echo`, `search`) can appear by chance, an
            // identifier (`send_email`, `getUser`, `files.read`) cannot.
            let (sev, why) = if looks_like_identifier(name) {
                (
                    Severity::High,
                    "a description that talks about another server's tool is tool shadowing",
                )
            } else {
                (
                    Severity::Medium,
                    "a plain word, so possibly by chance; check the sentence",
                )
            };
            let msg = format!("names `{name}`, a tool of another upstream: {why}");
            sink.add(&rules::TOOL_SHADOWING, sev, range, Some(msg));
        }
    }
}

fn looks_like_identifier(name: &str) -> bool {
    name.contains(['_', '-', '.', '/', ':'])
        || name.chars().any(|c| c.is_ascii_digit())
        || name.chars().skip(1).any(|c| c.is_uppercase())
}
