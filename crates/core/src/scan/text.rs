//! Text helpers of the scanner: excerpts with invisible characters made visible, sentence
//! bounds, word boundaries. Every function takes byte offsets into `text` and never slices off
//! a character boundary (out-of-range or split offsets give empty slices, not panics).

use std::fmt::Write as _;
use std::ops::Range;

/// Characters of context on each side of an excerpt.
const CONTEXT: usize = 40;
/// The longest excerpt, in characters, ellipses included.
pub(super) const MAX_EXCERPT: usize = 160;
/// How far a sentence is looked for around a match, in bytes.
const SENTENCE_REACH: usize = 300;

/// Whether `c` is shown escaped in excerpts and field paths.
pub(super) fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{AD}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Appends `c` to `out`, escaped as `\u{XXXX}` if it is hidden; returns the characters written.
fn render(c: char, out: &mut String) -> usize {
    if is_hidden(c) {
        let before = out.len();
        let _ = write!(out, "\\u{{{:04X}}}", u32::from(c));
        out.len() - before
    } else {
        out.push(c);
        1
    }
}

/// The characters `render` would write for `c`.
fn rendered_len(c: char) -> usize {
    if is_hidden(c) {
        // `\u{` + at least four hex digits + `}`
        let bits = 32 - u32::from(c).leading_zeros() as usize;
        4 + bits.div_ceil(4).max(4)
    } else {
        1
    }
}

/// `text` with hidden characters escaped (for field paths built from property names).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        render(c, &mut out);
    }
    out
}

fn slice(text: &str, range: Range<usize>) -> &str {
    text.get(range).unwrap_or_default()
}

/// The matched text with up to [`CONTEXT`] characters either side, hidden characters escaped,
/// at most [`MAX_EXCERPT`] characters, `…` where something was cut.
pub(super) fn excerpt(text: &str, range: Range<usize>) -> String {
    let start = range.start.min(text.len());
    let end = range.end.clamp(start, text.len());
    let (before, matched, after) = (
        slice(text, 0..start),
        slice(text, start..end),
        slice(text, end..text.len()),
    );

    // Context before, counted backwards, in rendered characters.
    let mut pre = Vec::new();
    let mut pre_len = 0;
    let mut cut_before = false;
    for c in before.chars().rev() {
        let n = rendered_len(c);
        if pre_len + n > CONTEXT {
            cut_before = true;
            break;
        }
        pre_len += n;
        pre.push(c);
    }

    let mut out = String::new();
    let mut used = 0;
    if cut_before {
        out.push('…');
        used += 1;
    }
    for &c in pre.iter().rev() {
        used += render(c, &mut out);
    }
    // The match gets what is left after the context on both sides and two ellipses.
    let mid_budget = MAX_EXCERPT - used - 1 - CONTEXT - 1;
    let mut mid_used = 0;
    for c in matched.chars() {
        let n = rendered_len(c);
        if mid_used + n > mid_budget {
            out.push('…');
            return out;
        }
        mid_used += render(c, &mut out);
    }
    let mut post_used = 0;
    for c in after.chars() {
        let n = rendered_len(c);
        if post_used + n > CONTEXT {
            out.push('…');
            break;
        }
        post_used += render(c, &mut out);
    }
    out
}

fn is_terminator(bytes: &[u8], i: usize) -> bool {
    match bytes.get(i) {
        Some(b'\n') => true,
        Some(b'.' | b'!' | b'?' | b';') => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()),
        _ => false,
    }
}

/// The sentence around `range`: from after the previous `.`, `!`, `?` or `;` followed by a space
/// (or a line break) to the next one, looking at most [`SENTENCE_REACH`] bytes either way. A `.`
/// inside a path or URL does not end a sentence.
pub(super) fn sentence(text: &str, range: Range<usize>) -> &str {
    let bytes = text.as_bytes();
    let mut start = range.start.min(text.len());
    let floor = start.saturating_sub(SENTENCE_REACH);
    while start > floor && !is_terminator(bytes, start - 1) {
        start -= 1;
    }
    let mut end = range.end.clamp(start, text.len());
    let ceiling = (end + SENTENCE_REACH).min(text.len());
    while end < ceiling && !is_terminator(bytes, end) {
        end += 1;
    }
    while !text.is_char_boundary(start) {
        start += 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    slice(text, start..end.max(start))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the literal `phrase` found at `range` stands as a word: no letter or digit glued to it
/// where the phrase itself starts or ends with one (a plural `s` after it is allowed).
pub(super) fn literal_bounded(text: &str, range: Range<usize>, phrase: &str) -> bool {
    let starts_word = phrase.chars().next().is_some_and(is_word);
    let ends_word = phrase.chars().next_back().is_some_and(is_word);
    // A leading `.` (`.env`, `.npmrc`) must not be glued to a word either: `process.env` is code.
    let starts_dot = phrase.starts_with('.');
    if (starts_word || starts_dot) && slice(text, 0..range.start).chars().next_back().is_some_and(is_word) {
        return false;
    }
    if ends_word {
        let mut rest = slice(text, range.end..text.len()).chars();
        match rest.next() {
            Some('s' | 'S') => return !rest.next().is_some_and(is_word),
            Some(next) => return !is_word(next),
            None => {}
        }
    }
    true
}

/// Whether a tool name found at `range` stands alone: no identifier character (`A-Z a-z 0-9 _ -`)
/// glued to either side.
pub(super) fn name_bounded(text: &str, range: Range<usize>) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let prev = slice(text, 0..range.start).chars().next_back();
    let next = slice(text, range.end..text.len()).chars().next();
    !prev.is_some_and(ident) && !next.is_some_and(ident)
}

/// The word (run of letters, digits and marks) around `range`.
pub(super) fn word_around(text: &str, range: Range<usize>) -> Range<usize> {
    let inside = |c: char| c.is_alphanumeric() || is_mark(c);
    let mut start = range.start.min(text.len());
    for (i, c) in slice(text, 0..start).char_indices().rev() {
        if !inside(c) {
            break;
        }
        start = i;
    }
    let mut end = range.end.clamp(start, text.len());
    for c in slice(text, end..text.len()).chars() {
        if !inside(c) {
            break;
        }
        end += c.len_utf8();
    }
    start..end
}

/// Combining marks in the blocks that matter here (Latin, Greek, Cyrillic diacritics).
fn is_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36F}' | '\u{483}'..='\u{489}')
}
