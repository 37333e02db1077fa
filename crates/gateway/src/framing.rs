//! Newline-delimited JSON-RPC framing over any byte stream (a child's stdio, our own stdio):
//! a reader task that parses frames under the size limit, and a writer task that batches
//! frames and flushes when idle.

use std::io;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use portcullis_core::jsonrpc::ParseError;
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

/// Splits a byte stream into lines no longer than a limit. An over-long line is reported once
/// and skipped up to its newline, without buffering it.
#[derive(Debug)]
struct Lines {
    max: usize,
    discarding: bool,
    scanned: usize,
}

enum Frame {
    Line(BytesMut),
    TooLong,
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
                    buf.advance(from + i + 1);
                    self.discarding = false;
                    self.scanned = 0;
                }
                (true, None) => {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                (false, Some(i)) => {
                    let end = from + i;
                    self.scanned = 0;
                    if end > self.max {
                        buf.advance(end + 1);
                        return Ok(Some(Frame::TooLong));
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
                        buf.clear();
                        self.scanned = 0;
                        return Ok(Some(Frame::TooLong));
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
            None if self.discarding || buf.is_empty() => {
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
            discarding: false,
            scanned: 0,
        };
        let mut frames = FramedRead::with_capacity(reader, codec, 64 * 1024);
        loop {
            let item = match frames.next().await {
                None => Inbound::Closed(None),
                Some(Err(e)) => Inbound::Closed(Some(e)),
                Some(Ok(Frame::TooLong)) => Inbound::Malformed(ParseError::Json(format!(
                    "message exceeds the limit of {} bytes",
                    limits.max_frame_bytes
                ))),
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
}
