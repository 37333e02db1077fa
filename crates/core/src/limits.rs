//! Hard limits on what the gateway will parse: frame size and nesting depth, checked before any
//! allocation proportional to the input's structure.

/// Parsing limits for one JSON-RPC frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// The deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// The input nests deeper than allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("JSON nesting depth exceeds the limit of {limit}")]
pub struct TooDeep {
    /// The configured limit.
    pub limit: usize,
}

/// Scans the bytes once and fails if arrays/objects nest deeper than `limit`. Brackets inside
/// strings do not count. Malformed JSON is left for the real parser to report.
pub fn check_depth(bytes: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert_eq!(check_depth(br#"{"a":[[1]]}"#, 2), Err(TooDeep { limit: 2 }));
        assert!(check_depth(br#"{"a":"[[[[[[\"]]]"}"#, 1).is_ok());
    }

    #[test]
    fn escaped_quote_does_not_end_string() {
        assert!(check_depth(br#"{"a":"\"[[[["}"#, 1).is_ok());
        assert!(check_depth(br#"{"a":"\\",  "b":[[1]]}"#, 2).is_err());
    }
}
