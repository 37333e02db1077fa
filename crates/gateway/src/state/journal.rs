//! The audit journal: every audit record is first appended to a file — one `write(2)` on the
//! caller's own thread, a few microseconds — and only then does the call it records go on. The
//! audit writer indexes the journal into the database (the hash chain, checkpoints) off the call
//! path. A crash of the gateway process loses nothing written here: the kernel holds the bytes,
//! and the next start replays what the database did not get. A power loss can lose what the
//! kernel had not written to disk yet (the journal is not `fsync`ed per record, like the
//! database's WAL at `synchronous = NORMAL`).
//!
//! Each process appends to its own segment files in [`DIR`] (0700), named
//! `<ms>-<pid>-<k>.jsonl` (0600), each held under an exclusive `flock` while its process may
//! still index it, so a starting process replays only segments no living process owns. A line
//! is `{"n":N,"at":MS,"body":{…}}`: `n` counts the segment's records from 1, so a replay notices
//! a line removed from the middle. A segment passes [`SEGMENT_BYTES`] and the next record opens
//! a new one; the writer deletes a segment once every record of it is in the database.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

/// The journal's folder in the data folder.
pub const DIR: &str = "audit-journal";
/// A segment past this size is sealed and the next record opens a new one.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Longest segment file a replay reads (a sealed segment is at most one record past
/// [`SEGMENT_BYTES`]; records are bounded far below this).
const MAX_REPLAY_BYTES: u64 = 256 << 20;

/// One journaled record, on its way to the database.
#[derive(Debug)]
pub struct Entry {
    /// The segment holding it.
    pub segment: Arc<str>,
    /// Its number in the segment, from 1.
    pub n: i64,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The record, in canonical JSON (`portcullis_core::audit::canonical`): what its hash
    /// covers, computed once as it is journaled.
    pub body: String,
}

/// A segment file, open and locked: the journal's current one, or one sealed (no more records
/// go into it) that waits until its records are indexed, or a dead process's, being replayed.
#[derive(Debug)]
pub struct Segment {
    /// Its file name (the key of its indexing progress in the database).
    pub name: Arc<str>,
    path: PathBuf,
    file: File,
    /// Records written.
    n: i64,
    /// Bytes written.
    len: u64,
}

impl Segment {
    /// Creates a new segment in `dir`, locked.
    fn create(dir: &Path) -> std::io::Result<Segment> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let pid = std::process::id();
        for k in 0..1000u32 {
            let name = format!("{ms:013}-{pid}-{k}.jsonl");
            let path = dir.join(&name);
            // Made and locked under a name no replay looks at, then linked in place: a process
            // starting meanwhile never sees it unlocked (and takes it for a dead one's).
            let fresh = dir.join(format!("{name}.new"));
            let file = match OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&fresh)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let placed = file.lock().and_then(|()| std::fs::hard_link(&fresh, &path));
            let _ = std::fs::remove_file(&fresh);
            match placed {
                Ok(()) => {
                    return Ok(Segment {
                        name: name.into(),
                        path,
                        file,
                        n: 0,
                        len: 0,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free journal segment name"))
    }

    /// Removes the file (every record of it is indexed) and releases the lock.
    pub fn remove(self) -> std::io::Result<()> {
        // Unlink while still locked: a process that opened the file meanwhile sees no link
        // left once it gets the lock, and skips it.
        std::fs::remove_file(&self.path)
    }
}

/// Why a record could not be journaled.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Writing failed (disk full, I/O error); the record is not in the journal.
    #[error("cannot append to the audit journal: {0}")]
    Write(#[from] std::io::Error),
    /// An earlier write failed half way and could not be undone, or the journal is closed.
    #[error("the audit journal is closed")]
    Closed,
}

/// The journal of one process.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    current: Option<Segment>,
    scratch: Vec<u8>,
}

impl Journal {
    /// Opens the journal in `dir` (created 0700) with a fresh segment of this process.
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let current = Segment::create(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            current: Some(current),
            scratch: Vec::with_capacity(1024),
        })
    }

    /// The current segment's name.
    pub fn segment(&self) -> Option<Arc<str>> {
        self.current.as_ref().map(|s| s.name.clone())
    }

    /// Appends `body` (canonical JSON) as one line, in one `write(2)`. Returns the entry for the
    /// indexer and, when this record filled the segment, the sealed segment (a new one takes the
    /// next record).
    pub fn append(&mut self, at_ms: i64, body: String) -> Result<(Entry, Option<Segment>), JournalError> {
        let seg = self.current.as_mut().ok_or(JournalError::Closed)?;
        let n = seg.n + 1;
        // `{"n":…,"at":…,"body":…}`: the body as given, canonical JSON, the same text the
        // writer hashes.
        self.scratch.clear();
        self.scratch
            .extend_from_slice(format!("{{\"n\":{n},\"at\":{at_ms},\"body\":").as_bytes());
        self.scratch.extend_from_slice(body.as_bytes());
        self.scratch.extend_from_slice(b"}\n");
        if let Err(e) = seg.file.write_all(&self.scratch) {
            // Undo a partial line so the next record does not follow garbage; when even that
            // fails, no more records go into this journal (calls are refused).
            if seg.file.set_len(seg.len).is_err() {
                tracing::error!(segment = %seg.name, "a failed audit journal write could not be undone; refusing further records");
                self.current = None;
            }
            return Err(e.into());
        }
        seg.n = n;
        seg.len += self.scratch.len() as u64;
        let entry = Entry {
            segment: seg.name.clone(),
            n,
            at_ms,
            body,
        };
        let sealed = if seg.len >= SEGMENT_BYTES {
            match Segment::create(&self.dir) {
                Ok(next) => self.current.replace(next),
                Err(e) => {
                    tracing::warn!(error = %e, "could not open a new audit journal segment; the current one grows");
                    None
                }
            }
        } else {
            None
        };
        Ok((entry, sealed))
    }

    /// Takes the current segment out (at shutdown): no more records are journaled.
    pub fn close(&mut self) -> Option<Segment> {
        self.current.take()
    }
}

#[derive(serde::Deserialize)]
struct OwnedLine {
    n: i64,
    at: i64,
    body: Value,
}

/// A segment no living process holds, opened and locked for replay, with its records.
#[derive(Debug)]
pub struct Orphan {
    /// The segment (remove it once its records are indexed).
    pub segment: Segment,
    /// Its records, in order.
    pub entries: Vec<Entry>,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

/// Every segment in `dir` that no living process holds, except `own`: locked, read and parsed.
/// A segment another process holds is skipped (it is that process's to index).
pub fn orphans(dir: &Path, own: Option<&str>) -> std::io::Result<Vec<Orphan>> {
    let mut names = segment_names(dir)?;
    names.retain(|n| Some(n.as_str()) != own);
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let mut file = match open_listed(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // Removed by its owner between listing and locking: fully indexed.
        if file.metadata()?.nlink() == 0 {
            continue;
        }
        let mut bytes = Vec::new();
        (&mut file).take(MAX_REPLAY_BYTES).read_to_end(&mut bytes)?;
        let name: Arc<str> = name.into();
        let (entries, damage) = parse(&name, &bytes);
        out.push(Orphan {
            segment: Segment {
                name,
                path,
                file,
                n: 0,
                len: 0,
            },
            entries,
            damage,
        });
    }
    Ok(out)
}

/// Every segment in `dir` with the number of complete records written to it so far (a
/// running process's segment goes on growing).
pub fn written(dir: &Path) -> std::io::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for name in segment_names(dir)? {
        let mut bytes = Vec::new();
        match open_listed(&dir.join(&name)) {
            Ok(f) => (&f).take(MAX_REPLAY_BYTES).read_to_end(&mut bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        out.push((name, i64::try_from(lines).unwrap_or(i64::MAX)));
    }
    Ok(out)
}

/// The names of the segment files in `dir`, oldest first (names start with the creation time).
/// Only regular files: a FIFO or a link planted here would block or redirect a reader.
fn segment_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".jsonl") && e.file_type()?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Opens a listed segment: not through a link, not blocking on a FIFO (either swapped in after
/// the listing).
fn open_listed(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
}

/// The records of a segment's bytes, up to the first line that does not read or is out of
/// order; a last line without its newline is a write the crash cut short.
fn parse(segment: &Arc<str>, bytes: &[u8]) -> (Vec<Entry>, Option<String>) {
    let mut entries = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return (
                entries,
                Some(format!("line {line_no} is cut short (a write the crash interrupted)")),
            );
        };
        let (line, tail) = rest.split_at(end);
        rest = tail.get(1..).unwrap_or_default();
        let parsed: OwnedLine = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(e) => return (entries, Some(format!("line {line_no} does not read: {e}"))),
        };
        let expected = i64::try_from(entries.len()).unwrap_or(i64::MAX).saturating_add(1);
        if parsed.n != expected {
            return (
                entries,
                Some(format!(
                    "line {line_no} is record {} where {expected} was due",
                    parsed.n
                )),
            );
        }
        entries.push(Entry {
            segment: segment.clone(),
            n: parsed.n,
            at_ms: parsed.at,
            body: portcullis_core::audit::canonical(&parsed.body),
        });
    }
    (entries, None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use portcullis_core::audit::canonical;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_living_segment_is_not_an_orphan_and_a_dead_one_is_replayed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        for i in 0..3 {
            j.append(i, canonical(&json!({"i": i}))).unwrap();
        }
        // Held by this journal: another process would skip it.
        assert!(orphans(dir.path(), None).unwrap().is_empty());
        // Dropped without removal (a crash): it is an orphan, every record in order.
        drop(j);
        let found = orphans(dir.path(), None).unwrap();
        assert_eq!(found.len(), 1);
        let o = &found[0];
        assert!(o.damage.is_none());
        assert_eq!(o.entries.iter().map(|e| e.n).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(o.entries[2].body, r#"{"i":2}"#);
        // Locked by the replaying process now.
        assert!(orphans(dir.path(), None).unwrap().is_empty());
    }

    #[test]
    fn a_fifo_or_a_link_in_the_journal_folder_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.jsonl");
        std::fs::write(&elsewhere, "{\"n\":1,\"at\":1,\"body\":{\"forged\":true}}\n").unwrap();
        let jdir = dir.path().join("j");
        std::fs::create_dir(&jdir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, jdir.join("1-1-0.jsonl")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(jdir.join("2-2-0.jsonl"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(orphans(&jdir, None).unwrap().is_empty());
    }

    #[test]
    fn a_removed_segment_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(1, canonical(&json!({}))).unwrap();
        j.close().unwrap().remove().unwrap();
        assert!(orphans(dir.path(), None).unwrap().is_empty());
    }

    #[test]
    fn a_torn_or_missing_line_stops_the_replay_there() {
        let seg: Arc<str> = "s".into();
        let (e, d) = parse(&seg, b"{\"n\":1,\"at\":1,\"body\":{}}\n{\"n\":2,\"at\":2,\"bo");
        assert_eq!(e.len(), 1);
        assert!(d.unwrap().contains("cut short"));
        let (e, d) = parse(
            &seg,
            b"{\"n\":1,\"at\":1,\"body\":{}}\n{\"n\":3,\"at\":2,\"body\":{}}\n",
        );
        assert_eq!(e.len(), 1);
        assert!(d.unwrap().contains("record 3 where 2"));
        let (e, d) = parse(&seg, b"{\"n\":1,\"at\":1,\"body\":{}}\n\xff\n");
        assert_eq!(e.len(), 1);
        assert!(d.unwrap().contains("does not read"));
    }

    #[test]
    fn a_full_segment_is_sealed_and_the_next_record_opens_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let first = j.segment().unwrap();
        let big = "x".repeat(1 << 20);
        let mut sealed = None;
        for i in 0..20 {
            let (_, s) = j.append(i, canonical(&json!({"pad": big}))).unwrap();
            if s.is_some() {
                sealed = s;
                break;
            }
        }
        let sealed = sealed.unwrap();
        assert_eq!(sealed.name, first);
        let (e, _) = j.append(99, canonical(&json!({}))).unwrap();
        assert_ne!(e.segment, first);
        assert_eq!(e.n, 1);
    }
}
