//! Matching a URI against an RFC 6570 URI template, enough to route `resources/read` to the
//! upstream whose template produced the URI.
//!
//! Supported: literal text, simple `{var}` (one or more characters other than `/`, `?`, `#`),
//! reserved `{+var}` and fragment `{#var}` (anything), path segments `{/var}`, labels `{.var}`,
//! and query forms `{?a,b}` / `{&a}` (an optional query part).

use std::collections::HashSet;

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    /// A simple expression: no `/`, `?` or `#`.
    Simple,
    /// `{+var}` or `{#var}`: anything.
    Any,
    /// `{/var}`: a `/` then a segment.
    Segment,
    /// `{.var}`: a `.` then a label.
    Label,
    /// `{?a}` or `{&a}`: an optional query (`?` or `&` and the rest).
    Query,
}

fn parse(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let close = rest.find('}')?;
                let expr = rest.get(1..close)?;
                let part = match expr.chars().next()? {
                    '+' | '#' => Part::Any,
                    '/' => Part::Segment,
                    '.' => Part::Label,
                    '?' | '&' => Part::Query,
                    ';' => Part::Any,
                    _ => Part::Simple,
                };
                parts.push(part);
                rest = rest.get(close + 1..)?;
            }
            Some(i) => {
                parts.push(Part::Literal(rest.get(..i)?));
                rest = rest.get(i..)?;
            }
            None => {
                parts.push(Part::Literal(rest));
                rest = "";
            }
        }
    }
    Some(parts)
}

/// Whether `uri` could have been produced by `template`.
pub fn matches(template: &str, uri: &str) -> bool {
    // Templates come from possibly hostile upstreams: bound the work.
    if template.len() > 2048 || uri.len() > 8192 || template.matches('{').count() > 16 {
        return false;
    }
    match parse(template) {
        Some(parts) => Matcher {
            parts: &parts,
            input: uri,
            failed: HashSet::new(),
        }
        .at(0, 0),
        None => false,
    }
}

/// Backtracking matcher memoised on (part, position), so the work is bounded by
/// parts × positions × positions however the template is built.
struct Matcher<'p, 'a> {
    parts: &'p [Part<'a>],
    input: &'a str,
    failed: HashSet<(usize, usize)>,
}

impl Matcher<'_, '_> {
    fn at(&mut self, part: usize, pos: usize) -> bool {
        if self.failed.contains(&(part, pos)) {
            return false;
        }
        let ok = self.step(part, pos);
        if !ok {
            self.failed.insert((part, pos));
        }
        ok
    }

    fn step(&mut self, part: usize, pos: usize) -> bool {
        let Some(rest) = self.input.get(pos..) else {
            return false;
        };
        let Some(p) = self.parts.get(part) else {
            return rest.is_empty();
        };
        let next = part + 1;
        match p {
            Part::Literal(lit) => rest.starts_with(lit) && self.at(next, pos + lit.len()),
            Part::Query => {
                self.at(next, pos)
                    || ((rest.starts_with('?') || rest.starts_with('&')) && self.run(next, pos + 1, |_| true, 0))
            }
            Part::Segment => rest.starts_with('/') && self.run(next, pos + 1, |c| !matches!(c, '/' | '?' | '#'), 1),
            Part::Label => rest.starts_with('.') && self.run(next, pos + 1, |c| !matches!(c, '/' | '.' | '?' | '#'), 1),
            Part::Simple => self.run(next, pos, |c| !matches!(c, '/' | '?' | '#'), 1),
            Part::Any => self.run(next, pos, |_| true, 0),
        }
    }

    /// Consumes at least `min` characters satisfying `ok` from `pos`, longest first, and tries
    /// the rest of the template after each.
    fn run(&mut self, next: usize, pos: usize, ok: impl Fn(char) -> bool, min: usize) -> bool {
        let Some(rest) = self.input.get(pos..) else {
            return false;
        };
        let mut ends: Vec<usize> = vec![0];
        ends.extend(
            rest.char_indices()
                .take_while(|(_, c)| ok(*c))
                .map(|(i, c)| i + c.len_utf8()),
        );
        let n = ends.len();
        ends.into_iter()
            .rev()
            .take(n.saturating_sub(min))
            .any(|len| self.at(next, pos + len))
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn table() {
        let cases = [
            ("test://template/{id}/data", "test://template/123/data", true),
            ("test://template/{id}/data", "test://template//data", false),
            ("test://template/{id}/data", "test://template/1/2/data", false),
            ("file:///{+path}", "file:///a/b/c.txt", true),
            (
                "demo://resource/dynamic/text/{resourceId}",
                "demo://resource/dynamic/text/7",
                true,
            ),
            ("x://a{/seg}", "x://a/b", true),
            ("x://s{?q,lang}", "x://s?q=1&lang=en", true),
            ("x://s{?q,lang}", "x://s", true),
            ("x://fixed", "x://fixed", true),
            ("x://fixed", "x://fixedx", false),
            ("x://{a}.{b}", "x://one.two", true),
        ];
        for (t, u, want) in cases {
            assert_eq!(matches(t, u), want, "{t} vs {u}");
        }
    }
}
