//! Newline-delimited JSON-RPC framing over any byte stream (a child's stdio, our own stdio):
//! a reader task that parses frames under the size limit, and a writer task that batches
//! frames and flushes when idle.

use std::io;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use portcullis_core::jsonrpc::{Id, ParseError, id_of_partial};
use portcullis_core::{Limits, Message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, FramedRead};

/// What the reader delivers.
#[derive(Debug)]
pub enum Inbound {
    /// A well-formed message.
    Message(Message),
    /// A frame that is not a valid message; the peer should be told (servers) or it is logged
    /// (clients).
    Malformed(ParseError),
    /// The stream ended (cleanly, or with the error).
    Closed(Option<io::Error>),
}

/// Splits a byte stream into lines no longer than a limit. An over-long line is skipped up to
/// its newline without buffering it, and reported once at its end, with the request id read
/// from its first and last bytes where it can be (so the error answers that request).
#[derive(Debug, Default)]
struct Lines {
    max: usize,
    discarding: bool,
    scanned: usize,
    /// The first bytes of the line being skipped.
    head: Vec<u8>,
    /// Its last bytes so far.
    tail: Vec<u8>,
}

/// How the error for an over-long message begins.
pub const TOO_LONG: &str = "message exceeds the limit of";

/// How much of an over-long line's start is kept to find its id.
const HEAD: usize = 64 * 1024;
/// How much of its end.
const TAIL: usize = 1024;

enum Frame {
    Line(BytesMut),
    TooLong(Option<Id>),
}

impl Lines {
    fn keep_tail(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
    }

    /// The over-long line ended: its id, and a fresh state.
    fn finish(&mut self) -> Frame {
        let id = id_of_partial(&self.head, &self.tail);
        self.head = Vec::new();
        self.tail = Vec::new();
        self.discarding = false;
        self.scanned = 0;
        Frame::TooLong(id)
    }
}

impl Decoder for Lines {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        loop {
            let from = self.scanned.min(buf.len());
            let newline = buf.get(from..).and_then(|tail| tail.iter().position(|b| *b == b'\n'));
            match (self.discarding, newline) {
                (true, Some(i)) => {
                    let end = from + i;
                    self.keep_tail(buf.get(..end).unwrap_or_default());
                    buf.advance(end + 1);
                    return Ok(Some(self.finish()));
                }
                (true, None) => {
                    self.keep_tail(buf);
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                (false, Some(i)) => {
                    let end = from + i;
                    self.scanned = 0;
                    if end > self.max {
                        let line = buf.get(..end).unwrap_or_default();
                        self.head = line.get(..HEAD.min(end)).unwrap_or_default().to_vec();
                        self.keep_tail(line);
                        buf.advance(end + 1);
                        return Ok(Some(self.finish()));
                    }
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    return Ok(Some(Frame::Line(line)));
                }
                (false, None) => {
                    if buf.len() > self.max {
                        self.discarding = true;
                        self.head = buf.get(..HEAD.min(buf.len())).unwrap_or_default().to_vec();
                        self.keep_tail(buf);
                        buf.clear();
                        self.scanned = 0;
                        continue;
                    }
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        match self.decode(buf)? {
            Some(f) => Ok(Some(f)),
            // An over-long last line without its newline is still reported.
            None if self.discarding => {
                buf.clear();
                Ok(Some(self.finish()))
            }
            None if buf.is_empty() => {
                buf.clear();
                Ok(None)
            }
            None => {
                // A last line without a newline still counts.
                let line = buf.split();
                self.scanned = 0;
                Ok(Some(Frame::Line(line)))
            }
        }
    }
}

/// Spawns the reader: every frame is parsed and sent to `tx`; blank lines are ignored. Ends
/// after delivering [`Inbound::Closed`], or when `tx` is dropped.
pub fn spawn_reader<R>(reader: R, limits: Limits, tx: mpsc::Sender<Inbound>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let codec = Lines {
            max: limits.max_frame_bytes,
            ..Lines::default()
        };
        let mut frames = FramedRead::with_capacity(reader, codec, 64 * 1024);
        loop {
            let item = match frames.next().await {
                None => Inbound::Closed(None),
                Some(Err(e)) => Inbound::Closed(Some(e)),
                Some(Ok(Frame::TooLong(id))) => {
                    let message = format!("{TOO_LONG} {} bytes", limits.max_frame_bytes);
                    Inbound::Malformed(match id {
                        Some(id) => ParseError::Invalid { id: Some(id), message },
                        None => ParseError::Json(message),
                    })
                }
                Some(Ok(Frame::Line(line))) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match Message::parse(&line, &limits) {
                        Ok(m) => Inbound::Message(m),
                        Err(e) => Inbound::Malformed(e),
                    }
                }
            };
            let closed = matches!(item, Inbound::Closed(_));
            if tx.send(item).await.is_err() || closed {
                return;
            }
        }
    })
}

/// Spawns the writer: each frame is written followed by a newline; the buffer is flushed
/// whenever no further frame is immediately waiting. An empty frame (never a valid message)
/// closes the stream; so does dropping every sender.
pub fn spawn_writer<W>(writer: W, mut rx: mpsc::Receiver<Vec<u8>>) -> JoinHandle<io::Result<()>>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, writer);
        while let Some(frame) = rx.recv().await {
            if frame.is_empty() {
                break;
            }
            w.write_all(&frame).await?;
            w.write_all(b"\n").await?;
            let mut closing = false;
            while let Ok(frame) = rx.try_recv() {
                if frame.is_empty() {
                    closing = true;
                    break;
                }
                w.write_all(&frame).await?;
                w.write_all(b"\n").await?;
            }
            w.flush().await?;
            if closing {
                break;
            }
        }
        w.shutdown().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &'static [u8], max: usize) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(16);
        let limits = Limits {
            max_frame_bytes: max,
            max_depth: 16,
        };
        spawn_reader(input, limits, tx);
        let mut out = Vec::new();
        while let Some(item) = rx.recv().await {
            match item {
                Inbound::Message(m) => out.push(m.method().unwrap_or("response").to_owned()),
                Inbound::Malformed(e) => out.push(format!("malformed: {e}")),
                Inbound::Closed(_) => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn frames_errors_and_recovery() {
        let input = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\r\n\n{oops}\n{\"jsonrpc\":\"2.0\",\"method\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"c\"}";
        let got = read_all(input, 64).await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], "a");
        assert!(got[1].starts_with("malformed: parse error"), "{got:?}");
        assert!(got[2].contains("exceeds the limit of 64 bytes"), "{got:?}");
        assert_eq!(got[3], "c");
    }

    /// Regression (issue 19): the error for an over-long request carried no id, so the client
    /// waited for its own timeout. It answers the request when its id can be read — at the
    /// start, or at the very end — whether the line came whole or in pieces.
    #[tokio::test]
    async fn an_over_long_request_is_answered_with_its_id() {
        let (tx, mut rx) = mpsc::channel(16);
        let limits = Limits {
            max_frame_bytes: 64,
            max_depth: 16,
        };
        let big = "x".repeat(300_000);
        let input = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{{\"a\":\"{big}\"}}}}\n\
             {{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{{\"a\":\"{big}\"}},\"id\":\"late\"}}\n\
             {{\"jsonrpc\":\"2.0\",\"method\":\"c\"}}\n\
             {{\"params\":\"{big}\""
        );
        spawn_reader(std::io::Cursor::new(input.into_bytes()), limits, tx);
        let mut ids = Vec::new();
        while let Some(item) = rx.recv().await {
            match item {
                Inbound::Malformed(e) => ids.push(e.to_response().id),
                Inbound::Message(m) => assert_eq!(m.method(), Some("c")),
                Inbound::Closed(_) => break,
            }
        }
        assert_eq!(
            ids,
            [Some(Id::Int(7)), Some(Id::Str("late".into())), None],
            "the last line has no id and no newline, and is still reported"
        );
    }
}
