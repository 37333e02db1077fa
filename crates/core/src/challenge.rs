//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): what a server that wants credentials says,
//! read strictly. An MCP server that needs OAuth answers `401` with a `Bearer` challenge naming
//! its Protected Resource Metadata (`resource_metadata`) and the scopes it wants (`scope`), and
//! `403` with `error="insufficient_scope"` when the token it got is too narrow.
//!
//! A header may hold several challenges, comma-separated, and a challenge's parameters are
//! comma-separated too: a token followed by `=` is a parameter of the current challenge, any
//! other token starts a new one. Parameter names are case-insensitive (kept lowercase); values
//! are tokens or quoted strings (with `\` escapes).

/// One challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercase (`bearer`, `dpop`, `basic`).
    pub scheme: String,
    /// A token68 instead of parameters (rare; `Negotiate abc==`).
    pub token68: Option<String>,
    /// The parameters, names lowercase, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The scopes of the `scope` parameter (space-separated).
    pub fn scopes(&self) -> Vec<String> {
        self.param("scope")
            .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// Why a header is not a list of challenges.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Something other than a challenge where one was expected.
    #[error("malformed WWW-Authenticate at byte {0}")]
    Malformed(usize),
    /// A quoted string that does not end.
    #[error("unterminated quoted string in WWW-Authenticate")]
    Unterminated,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn take(&mut self, ok: fn(u8) -> bool) -> &str {
        let start = self.i;
        while self.peek().is_some_and(ok) {
            self.i += 1;
        }
        // Only ASCII was taken.
        std::str::from_utf8(self.s.get(start..self.i).unwrap_or_default()).unwrap_or_default()
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError::Unterminated),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or(ChallengeError::Unterminated)?;
                    out.push(c);
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Whether, past optional whitespace, an `=` follows that is not the padding of a token68
    /// (`=` then a value, not `=` then the end or a comma).
    fn param_follows(&self) -> bool {
        let mut j = self.i;
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if self.s.get(j) != Some(&b'=') {
            return false;
        }
        j += 1;
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        !matches!(self.s.get(j), None | Some(b',' | b'='))
    }
}

/// Every challenge in one `WWW-Authenticate` value.
pub fn parse(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        c.skip_separators();
        if c.peek().is_none() {
            return Ok(out);
        }
        let at = c.i;
        let word = c.take(is_tchar).to_owned();
        if word.is_empty() {
            return Err(ChallengeError::Malformed(at));
        }
        if c.param_follows() {
            // A parameter of the challenge being read.
            let current = out.last_mut().ok_or(ChallengeError::Malformed(at))?;
            if current.token68.is_some() {
                return Err(ChallengeError::Malformed(at));
            }
            c.skip_ows();
            c.i += 1; // '='
            c.skip_ows();
            let value = match c.peek() {
                Some(b'"') => c.quoted()?,
                _ => {
                    let v = c.take(is_tchar).to_owned();
                    if v.is_empty() {
                        return Err(ChallengeError::Malformed(c.i));
                    }
                    v
                }
            };
            current.params.push((word.to_ascii_lowercase(), value));
            c.skip_ows();
            if !matches!(c.peek(), None | Some(b',')) {
                return Err(ChallengeError::Malformed(c.i));
            }
            continue;
        }
        // A new challenge: its scheme, then a token68, parameters, or nothing.
        let mut challenge = Challenge {
            scheme: word.to_ascii_lowercase(),
            token68: None,
            params: Vec::new(),
        };
        let had_space = matches!(c.peek(), Some(b' ' | b'\t'));
        c.skip_ows();
        if had_space && c.peek().is_some_and(is_token68) {
            let save = c.i;
            let t = c.take(is_token68).to_owned();
            if c.param_follows() {
                // Not a token68: the first parameter's name. Read it as a parameter next.
                c.i = save;
            } else {
                let mut t = t;
                while c.peek() == Some(b'=') {
                    t.push('=');
                    c.i += 1;
                }
                c.skip_ows();
                if !matches!(c.peek(), None | Some(b',')) {
                    return Err(ChallengeError::Malformed(c.i));
                }
                challenge.token68 = Some(t);
            }
        }
        out.push(challenge);
    }
}

/// The first `Bearer` challenge among a response's `WWW-Authenticate` values; values that do not
/// parse are skipped.
pub fn bearer<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    values
        .into_iter()
        .filter_map(|v| parse(v).ok())
        .flatten()
        .find(|c| c.scheme == "bearer")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn challenges_as_servers_write_them() {
        // The TypeScript SDK's 401 (commas inside a quoted value).
        let v = r#"Bearer error="invalid_token", error_description="Missing Authorization header, or not Bearer", scope="mcp:read mcp:write", resource_metadata="http://localhost:3000/.well-known/oauth-protected-resource/mcp""#;
        let c = &parse(v).unwrap()[0];
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("error"), Some("invalid_token"));
        assert_eq!(
            c.param("error_description"),
            Some("Missing Authorization header, or not Bearer")
        );
        assert_eq!(c.scopes(), ["mcp:read", "mcp:write"]);
        assert_eq!(
            c.param("resource_metadata"),
            Some("http://localhost:3000/.well-known/oauth-protected-resource/mcp")
        );
        // Several challenges in one value, token values, escapes, odd spacing and case.
        let all = parse(r#"Basic realm="a\"b", DPoP algs="ES256" , error = use_dpop_nonce, BEARER Realm=x"#).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].param("realm"), Some("a\"b"));
        assert_eq!(all[1].scheme, "dpop");
        assert_eq!(all[1].param("error"), Some("use_dpop_nonce"));
        assert_eq!(all[2].scheme, "bearer");
        assert_eq!(all[2].param("realm"), Some("x"));
        // A bare scheme, and a token68 (which may look like a parameter with no value).
        assert_eq!(parse("Bearer realm=").unwrap()[0].token68.as_deref(), Some("realm="));
        assert_eq!(parse("Bearer").unwrap()[0].params, vec![]);
        let n = &parse("Negotiate YIIabc+/==, Bearer").unwrap();
        assert_eq!(n[0].token68.as_deref(), Some("YIIabc+/=="));
        assert_eq!(n[1].scheme, "bearer");
        assert_eq!(
            bearer(["Basic realm=\"x\"", "Bearer scope=\"a\""]).unwrap().scopes(),
            ["a"]
        );
        assert!(bearer(["Basic realm=\"x\"", "not = valid ="]).is_none());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            r#"Bearer realm="open"#,
            "=x",
            "realm=x",
            "Bearer realm=\"a\" junk",
            "Bearer abc== x",
            "Bearer \u{e9}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(s in ".{0,200}") {
            let _ = parse(&s);
        }
    }
}
