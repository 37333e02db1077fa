//! Newline-delimited JSON-RPC framing over any byte stream (a child's stdio, our own stdio):
//! a reader task that parses frames under the size limit, and a writer task that batches
//! frames and flushes when idle.

use std::io;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use futures::{Stream, StreamExt};
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
    /// Whether it was reported already, when its id could be read from its head: a line that
    /// never ends (a hostile or broken peer) still fails its request at once.
    reported: bool,
    /// How many of its bytes were skipped so far: past [`ENDLESS`] times the limit, the
    /// stream is taken for broken.
    skipped: usize,
}

/// How the error for an over-long message begins.
pub const TOO_LONG: &str = "message exceeds the limit of";

/// How much of an over-long line's start is kept to find its id.
const HEAD: usize = 64 * 1024;
/// How much of its end.
const TAIL: usize = 1024;
/// A line this many times over the limit (and over [`ENDLESS_FLOOR`]) ends the stream: the
/// peer is broken (a line that never ends would otherwise block every later message on the
/// stream for good).
pub const ENDLESS: usize = 64;
/// The least a line may run over before it ends the stream.
pub const ENDLESS_FLOOR: usize = 64 << 20;

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

    /// The over-long line ended: its report (unless made when it began), and a fresh state.
    fn finish(&mut self) -> Option<Frame> {
        let frame = (!self.reported).then(|| Frame::TooLong(id_of_partial(&self.head, &self.tail)));
        self.head = Vec::new();
        self.tail = Vec::new();
        self.discarding = false;
        self.reported = false;
        self.skipped = 0;
        self.scanned = 0;
        frame
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
                    match self.finish() {
                        Some(frame) => return Ok(Some(frame)),
                        None => continue,
                    }
                }
                (true, None) => {
                    self.keep_tail(buf);
                    self.skipped = self.skipped.saturating_add(buf.len());
                    buf.clear();
                    let endless = self.max.saturating_mul(ENDLESS).max(ENDLESS_FLOOR);
                    if self.skipped > endless {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a line passed {endless} bytes and never ended"),
                        ));
                    }
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
                        return Ok(self.finish());
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
                        self.skipped = buf.len();
                        buf.clear();
                        self.scanned = 0;
                        if let Some(id) = id_of_partial(&self.head, &[]) {
                            self.reported = true;
                            return Ok(Some(Frame::TooLong(Some(id))));
                        }
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
                Ok(self.finish())
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

/// The parsed frames of a byte stream; blank lines are skipped. Ends after yielding
/// [`Inbound::Closed`]. Read it in the task that handles the frames: a reader task and a
/// channel would cost every message a wake-up.
pub fn frames<R>(reader: R, limits: Limits) -> Pin<Box<dyn Stream<Item = Inbound> + Send>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let codec = Lines {
        max: limits.max_frame_bytes,
        ..Lines::default()
    };
    let framed = FramedRead::with_capacity(reader, codec, 64 * 1024);
    Box::pin(futures::stream::unfold(Some(framed), move |state| async move {
        let mut frames = state?;
        let item = loop {
            break match frames.next().await {
                None => Inbound::Closed(None),
                Some(Err(e)) => Inbound::Closed(Some(e)),
                Some(Ok(Frame::TooLong(id))) => {
                    let message = format!("{TOO_LONG} {} bytes", limits.max_frame_bytes);
                    Inbound::Malformed(match id {
                        Some(id) => ParseError::Invalid { id: Some(id), message },
                        None => ParseError::Json { id: None, message },
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
        };
        let closed = matches!(item, Inbound::Closed(_));
        Some((item, (!closed).then_some(frames)))
    }))
}

/// Spawns a reader task that sends every frame of [`frames`] to `tx`. Ends after delivering
/// [`Inbound::Closed`], or when `tx` is dropped.
pub fn spawn_reader<R>(reader: R, limits: Limits, tx: mpsc::Sender<Inbound>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut frames = frames(reader, limits);
        while let Some(item) = frames.next().await {
            if tx.send(item).await.is_err() {
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

    /// Issue 19: a peer that starts an answer and never ends its line (a hostile or broken
    /// server) fails that request as soon as the line passes the limit, not when (if ever) it
    /// ends; and the end of the line is not reported a second time.
    #[tokio::test]
    async fn a_line_that_never_ends_is_reported_when_it_passes_the_limit() {
        let (tx, mut rx) = mpsc::channel(16);
        let limits = Limits {
            max_frame_bytes: 1024,
            max_depth: 16,
        };
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        spawn_reader(ours, limits, tx);
        peer.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"text\":\"")
            .await
            .unwrap();
        let writer = tokio::spawn(async move {
            for _ in 0..64 {
                peer.write_all(&[b'x'; 1024]).await?;
            }
            // The line ends after all, followed by an honest message.
            peer.write_all(b"\"}}\n{\"jsonrpc\":\"2.0\",\"method\":\"c\"}\n")
                .await?;
            Ok::<_, io::Error>(peer)
        });
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("reported at once");
        match first {
            Some(Inbound::Malformed(e)) => assert_eq!(e.to_response().id, Some(Id::Int(9)), "{e}"),
            other => panic!("expected the over-long line's error, got {other:?}"),
        }
        let _peer = writer.await.unwrap().unwrap();
        match rx.recv().await {
            Some(Inbound::Message(m)) => assert_eq!(m.method(), Some("c")),
            other => panic!("expected the next message, got {other:?}"),
        }
    }

    /// Issue 19: a frame that is not JSON (here: bytes that are not UTF-8) but whose id can be
    /// read answers that request.
    #[tokio::test]
    async fn a_frame_that_is_not_json_is_answered_with_its_id_when_readable() {
        let got = {
            let (tx, mut rx) = mpsc::channel(16);
            let limits = Limits {
                max_frame_bytes: 1024,
                max_depth: 16,
            };
            spawn_reader(
                &b"{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"t\":\"caf\xe9\"}}\n"[..],
                limits,
                tx,
            );
            match rx.recv().await {
                Some(Inbound::Malformed(e)) => e.to_response(),
                other => panic!("expected an error, got {other:?}"),
            }
        };
        assert_eq!(got.id, Some(Id::Int(4)));
        assert_eq!(
            got.as_error().map(|e| e.code),
            Some(portcullis_core::jsonrpc::code::PARSE_ERROR)
        );
    }
}
