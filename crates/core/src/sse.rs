//! Server-Sent Events framing: an incremental decoder with a hard bound on event size, and the
//! encoder the gateway writes with.
//!
//! Hand-written rather than taken from a crate because the gateway needs a bound on buffered
//! bytes per event (a hostile upstream must not make it buffer without limit) and a pure,
//! fuzzable state machine.

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field of this event, if it set one.
    pub id: Option<String>,
    /// The `retry:` field, in milliseconds, if it set one.
    pub retry: Option<u64>,
}

/// The stream broke a framing rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// An event or a line grew past the limit.
    #[error("SSE event exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    pending: SseEvent,
    has_data: bool,
    event_bytes: usize,
    max_event_bytes: usize,
}

impl SseDecoder {
    /// A decoder that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            skip_lf: false,
            pending: SseEvent::default(),
            has_data: false,
            event_bytes: 0,
            max_event_bytes,
        }
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.skip_lf = true;
                    self.end_line(&mut out)?;
                }
                b'\n' => self.end_line(&mut out)?,
                _ => {
                    self.line.push(b);
                    self.event_bytes += 1;
                    if self.event_bytes > self.max_event_bytes {
                        return Err(SseError::TooLarge(self.max_event_bytes));
                    }
                }
            }
        }
        Ok(out)
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            // A blank line dispatches the event, if it carried any field.
            let ev = std::mem::take(&mut self.pending);
            let had_data = std::mem::replace(&mut self.has_data, false);
            self.event_bytes = 0;
            if had_data || ev.id.is_some() || ev.retry.is_some() || ev.event.is_some() {
                out.push(ev);
            }
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(()); // comment, e.g. a keep-alive
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let (f, rest) = line.split_at(i);
                let rest = rest.get(1..).unwrap_or_default();
                (f, rest.strip_prefix(b" ").unwrap_or(rest))
            }
            None => (line.as_slice(), &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.pending.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.pending.id = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.pending.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Encodes one event. Data containing newlines is split over several `data:` lines.
pub fn encode(id: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Encodes a `retry:` hint (with an optional id) that tells the client how long to wait before
/// reconnecting.
pub fn encode_retry(id: Option<&str>, retry_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(format!("retry: {retry_ms}\ndata: \n\n").as_bytes());
    out
}

/// A keep-alive comment.
pub const KEEP_ALIVE: &[u8] = b":\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], chunk: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new(1 << 20);
        input.chunks(chunk).flat_map(|c| d.feed(c).unwrap()).collect()
    }

    #[test]
    fn decodes_across_any_chunking() {
        let input =
            b"id: 1\r\ndata: {\"a\":1}\r\n\r\n: keepalive\n\nevent: message\ndata: x\ndata: y\n\nretry: 500\n\n";
        let want = vec![
            SseEvent {
                id: Some("1".into()),
                data: "{\"a\":1}".into(),
                ..Default::default()
            },
            SseEvent {
                event: Some("message".into()),
                data: "x\ny".into(),
                ..Default::default()
            },
            SseEvent {
                retry: Some(500),
                ..Default::default()
            },
        ];
        for n in 1..input.len() {
            assert_eq!(all(input, n), want, "chunk size {n}");
        }
    }

    #[test]
    fn bare_cr_line_endings() {
        assert_eq!(
            all(b"data: a\r\r", 3),
            vec![SseEvent {
                data: "a".into(),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn oversize_event_is_refused() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.feed(b"data: 0123456789\n"), Err(SseError::TooLarge(8)));
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode(Some("s1_4"), "{\"x\":\"a\"}");
        assert_eq!(
            all(&bytes, 2),
            vec![SseEvent {
                id: Some("s1_4".into()),
                data: "{\"x\":\"a\"}".into(),
                ..Default::default()
            }]
        );
    }
}
