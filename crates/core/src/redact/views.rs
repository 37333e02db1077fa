//! Decoded views of a text, each byte mapped back to the span it came from: a secret written
//! with some of its characters escaped — JSON `\u` escapes in any mix (Python's `json.dumps`
//! defaults, Go's `\u0026`), or percent-encoded in either case — is found in the view and
//! replaced in the original, whatever mix of escaped and plain characters the writer chose.

/// A decoded text and, for each of its bytes, the original span it came from.
#[derive(Debug, Default)]
pub(super) struct View {
    pub decoded: Vec<u8>,
    /// `(start, end)` in the original for each decoded byte.
    pub origin: Vec<(usize, usize)>,
}

impl View {
    fn push(&mut self, bytes: &[u8], start: usize, end: usize) {
        for b in bytes {
            self.decoded.push(*b);
            self.origin.push((start, end));
        }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Whether a text has JSON escapes a view should decode: a `\u` escape, or an escaped
/// backslash (JSON inside a JSON string; the plain JSON-escaped form of each secret is matched
/// directly).
fn has_escapes(text: &[u8]) -> bool {
    text.windows(2).any(|w| w == b"\\u" || w == b"\\U" || w == b"\\\\")
}

/// The text with JSON string escapes decoded, twice over where the first decoding still
/// holds escapes (a JSON document inside a JSON string); `None` when it has none.
pub(super) fn json(text: &[u8]) -> Option<View> {
    let outer = json_once(text)?;
    let Some(inner) = json_once(&outer.decoded) else {
        return Some(outer);
    };
    // Map the inner view's spans through the outer one, back to the original text.
    let origin = inner
        .origin
        .iter()
        .map(|(s, e)| {
            let start = outer.origin.get(*s).map_or(0, |o| o.0);
            let end = outer.origin.get(e.saturating_sub(1)).map_or(start, |o| o.1);
            (start, end)
        })
        .collect();
    Some(View {
        decoded: inner.decoded,
        origin,
    })
}

/// One level of JSON string escapes decoded (`\uXXXX`, surrogate pairs, `\n`, `\"`, …).
fn json_once(text: &[u8]) -> Option<View> {
    if !has_escapes(text) {
        return None;
    }
    let mut v = View::default();
    let mut i = 0;
    while i < text.len() {
        let b = text.get(i).copied().unwrap_or_default();
        if b != b'\\' {
            v.push(&[b], i, i + 1);
            i += 1;
            continue;
        }
        let next = text.get(i + 1).copied();
        match next {
            Some(b'u' | b'U') => {
                let Some(hi) = text.get(i + 2..).and_then(hex4) else {
                    v.push(&[b], i, i + 1);
                    i += 1;
                    continue;
                };
                let mut end = i + 6;
                let mut cp = hi;
                if (0xD800..0xDC00).contains(&hi)
                    && text.get(end) == Some(&b'\\')
                    && matches!(text.get(end + 1), Some(b'u' | b'U'))
                    && let Some(lo) = text.get(end + 2..).and_then(hex4)
                    && (0xDC00..0xE000).contains(&lo)
                {
                    cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    end += 6;
                }
                match char::from_u32(cp) {
                    Some(c) => {
                        let mut buf = [0u8; 4];
                        v.push(c.encode_utf8(&mut buf).as_bytes(), i, end);
                    }
                    None => v.push(text.get(i..end).unwrap_or_default(), i, end),
                }
                i = end;
            }
            Some(c) => {
                let decoded = match c {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    other => other,
                };
                v.push(&[decoded], i, i + 2);
                i += 2;
            }
            None => {
                v.push(&[b], i, i + 1);
                i += 1;
            }
        }
    }
    Some(v)
}

/// The text with `%XX` (either case) decoded and `+` read as a space; `None` when it has no
/// percent escape.
pub(super) fn percent(text: &[u8]) -> Option<View> {
    let is_escape = |i: usize| {
        text.get(i) == Some(&b'%')
            && text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    };
    if !(0..text.len()).any(is_escape) {
        return None;
    }
    let mut v = View::default();
    let mut i = 0;
    while i < text.len() {
        if is_escape(i) {
            let b = text
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or_default();
            v.push(&[b], i, i + 3);
            i += 3;
        } else {
            let b = text.get(i).copied().unwrap_or_default();
            v.push(&[if b == b'+' { b' ' } else { b }], i, i + 1);
            i += 1;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_decode_with_their_spans() {
        let v = json(br#"a\u0041\ud83d\ude00\n"#).unwrap();
        assert_eq!(String::from_utf8(v.decoded.clone()).unwrap(), "aA😀\n");
        assert_eq!(v.origin.first(), Some(&(0, 1)));
        assert_eq!(v.origin.get(1), Some(&(1, 7)));
        assert_eq!(v.origin.get(2), Some(&(7, 19)));
        assert!(json(br#"no escapes \n here"#).is_none());
        // JSON inside a JSON string: decoded twice, spans mapped to the original.
        let v = json(br#"{\"k\": \"T\\u00f6k\"}"#).unwrap();
        let decoded = String::from_utf8(v.decoded.clone()).unwrap();
        assert!(decoded.contains("Tök"), "{decoded}");
    }

    #[test]
    fn percent_escapes_decode_in_either_case() {
        let v = percent(b"a%2fb%2F+c").unwrap();
        assert_eq!(v.decoded, b"a/b/ c");
        assert!(percent(b"100% sure").is_none());
    }
}
