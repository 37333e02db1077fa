//! Resumable SSE streams for legacy (2025-11-25) sessions.
//!
//! Every message the gateway sends on a legacy stream is first appended to that stream's log
//! with an event id `s<stream>-<seq>`; readers tail the log. A client whose connection broke
//! reconnects with `GET` + `Last-Event-ID` and a new reader continues after that event, on the
//! same stream, as the transport requires. Logs are bounded (events and bytes), oldest first.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use portcullis_core::{Message, sse};
use tokio::sync::Notify;

/// Events kept per stream for replay.
const MAX_EVENTS: usize = 1024;
/// Bytes kept per stream for replay.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Streams kept per session (with [`MAX_BYTES`], at most 128 MiB of replay per session; a
/// principal holds at most 64 sessions).
const MAX_STREAMS: usize = 32;
/// Keep-alive comment interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct Inner {
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    next_seq: u64,
    closed: bool,
}

/// One stream's log.
#[derive(Debug)]
pub struct StreamLog {
    id: u64,
    inner: Mutex<Inner>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StreamLog {
    /// Appends a message as an event.
    pub fn push(&self, m: &Message) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let data = String::from_utf8_lossy(&crate::redact::wire(m)).into_owned();
        let ev = Bytes::from(sse::encode(Some(&format!("s{}-{seq}", self.id)), &data));
        inner.bytes += ev.len();
        inner.events.push_back((seq, ev));
        while inner.events.len() > MAX_EVENTS || inner.bytes > MAX_BYTES {
            match inner.events.pop_front() {
                Some((_, old)) => inner.bytes -= old.len(),
                None => break,
            }
        }
        drop(inner);
        self.wake.notify_waiters();
    }

    /// Ends the stream: readers finish after the last event.
    pub fn close(&self) {
        lock(&self.inner).closed = true;
        self.wake.notify_waiters();
    }

    fn next_after(&self, after: Option<u64>) -> Option<Result<(u64, Bytes), bool>> {
        let inner = lock(&self.inner);
        let next = inner
            .events
            .iter()
            .find(|(seq, _)| after.is_none_or(|a| *seq > a))
            .cloned();
        match next {
            Some(ev) => Some(Ok(ev)),
            None if inner.closed => None,
            None => Some(Err(false)),
        }
    }

    /// Tails the log from after `after` (from the start when `None`), with keep-alives, until
    /// the stream is closed and drained.
    pub fn reader(self: Arc<Self>, after: Option<u64>) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        futures::stream::unfold((self, after), |(log, mut after)| async move {
            loop {
                let woke = {
                    let notified = log.wake.notified();
                    tokio::pin!(notified);
                    // Register interest before looking, so a push in between is not missed.
                    notified.as_mut().enable();
                    match log.next_after(after) {
                        Some(Ok((seq, ev))) => Ok((seq, ev)),
                        None => return None,
                        Some(Err(_)) => Err(tokio::time::timeout(KEEP_ALIVE, notified).await.is_ok()),
                    }
                };
                match woke {
                    Ok((seq, ev)) => {
                        after = Some(seq);
                        return Some((Ok(ev), (log, after)));
                    }
                    Err(true) => {}
                    Err(false) => return Some((Ok(Bytes::from_static(sse::KEEP_ALIVE)), (log, after))),
                }
            }
        })
    }
}

/// The streams of one session.
#[derive(Debug, Default)]
pub struct Streams {
    next: AtomicU64,
    logs: Mutex<HashMap<u64, Arc<StreamLog>>>,
}

impl Streams {
    /// Opens a new stream.
    pub fn open(&self) -> Arc<StreamLog> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let log = Arc::new(StreamLog {
            id,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
        });
        let mut logs = lock(&self.logs);
        if logs.len() >= MAX_STREAMS
            && let Some(oldest) = logs.keys().min().copied()
        {
            logs.remove(&oldest);
        }
        logs.insert(id, log.clone());
        log
    }

    /// Finds the stream and position a `Last-Event-ID` names.
    pub fn resume(&self, last_event_id: &str) -> Option<(Arc<StreamLog>, u64)> {
        let (stream, seq) = last_event_id.strip_prefix('s')?.split_once('-')?;
        let (stream, seq) = (stream.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
        lock(&self.logs).get(&stream).cloned().map(|l| (l, seq))
    }

    /// Closes every stream.
    pub fn close_all(&self) {
        for log in lock(&self.logs).drain().map(|(_, l)| l) {
            log.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use portcullis_core::Notification;

    fn note(i: u32) -> Message {
        Message::Notification(Notification {
            method: format!("n{i}"),
            params: None,
        })
    }

    #[tokio::test]
    async fn resume_replays_only_what_followed_on_that_stream() {
        let streams = Streams::default();
        let a = streams.open();
        let b = streams.open();
        for i in 0..3 {
            a.push(&note(i));
        }
        b.push(&note(99));
        a.close();
        let (log, seq) = streams.resume("s1-0").unwrap();
        let got: Vec<String> = log
            .reader(Some(seq))
            .map(|b| String::from_utf8(b.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("id: s1-1\n") && got[0].contains("\"n1\""), "{got:?}");
        assert!(got[1].contains("\"n2\""));
        assert!(streams.resume("s9-0").is_none());
        assert!(streams.resume("garbage").is_none());
    }
}
