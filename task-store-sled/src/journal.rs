//! The write-ahead journal: what makes an acknowledged group durable.
//!
//! sled 0.34's `Db::flush` ends in `sync_file_range`, which writes the pages out but neither
//! flushes the disk's volatile write cache nor commits the file's metadata: on a disk with a
//! write-back cache a power cut can still lose a flushed group. So every group is also
//! appended, as one checksummed *frame* holding exactly the keys and values of its sled batch,
//! to a journal segment that the flusher thread `fdatasync`s before any caller is answered.
//! sled itself is only flushed at a *checkpoint*: once a segment is full, sled is flushed, its
//! files are fsynced, and the segments it covers are deleted.
//!
//! sled records under [`SEQ_KEY`] the sequence number of the last frame it holds whole, so an
//! open knows where to start: it replays the later frames in order (each sets keys to absolute
//! values, so the result is exactly the state after the last durable frame), checkpoints and
//! starts an empty journal. Only checkpoints write that number, after the task records held
//! back from sled (see `deferred`): frames after it may be partly in sled, and replaying them
//! again is harmless. sled may hold a few frames more than the journal
//! (applied, but the crash came before their fsync): those were never acknowledged and form a
//! consistent prefix all the same.
//!
//! Only the last flush can be cut by a crash, and it was never acknowledged: so a damaged
//! frame in the last segment ends the replay there (logged with its offset), while a damaged
//! frame in any earlier segment refuses the open.
//!
//! Frame: body length (u32 LE), CRC-32 of the body (u32 LE), then the body: the sequence
//! number (u64 LE), the number of writes (u32 LE), and per write a flag (1 insert, 0 remove),
//! the key (u32 LE length, bytes) and for an insert the value (u32 LE length, bytes). A zero
//! length marks the end of a segment's frames. Segments are named by their first frame's
//! sequence number.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sled::IVec;
use task_core::store::StoreError;

use crate::error::Ctx;

/// The journal's directory inside the database directory.
pub(crate) const JOURNAL_DIR: &str = "journal";
/// The key (in the data tree) holding the sequence number of the last frame applied to sled.
pub(crate) const SEQ_KEY: &[u8] = b"S";
/// A segment is closed, and a checkpoint taken, once it holds this many bytes (by default).
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;
const HEADER: usize = 8;
const SEGMENT_SUFFIX: &str = ".wal";

/// A group's writes, encoded as one frame.
pub(crate) struct FrameBuilder {
    bytes: Vec<u8>,
    writes: u32,
}

impl FrameBuilder {
    /// A frame for the group numbered `seq`.
    pub fn new(seq: u64) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&[0; HEADER]);
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        Self { bytes, writes: 0 }
    }

    /// Adds the write of `key` (None: its removal).
    pub fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.bytes.push(u8::from(value.is_some()));
        push_field(&mut self.bytes, key);
        if let Some(value) = value {
            push_field(&mut self.bytes, value);
        }
        self.writes += 1;
    }

    /// The finished frame.
    pub fn finish(mut self) -> Vec<u8> {
        let body_len = (self.bytes.len() - HEADER) as u32;
        self.bytes[HEADER + 8..HEADER + 12].copy_from_slice(&self.writes.to_le_bytes());
        let crc = crc32fast::hash(&self.bytes[HEADER..]);
        self.bytes[..4].copy_from_slice(&body_len.to_le_bytes());
        self.bytes[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        self.bytes
    }
}

fn push_field(bytes: &mut Vec<u8>, field: &[u8]) {
    bytes.extend_from_slice(&(field.len() as u32).to_le_bytes());
    bytes.extend_from_slice(field);
}

/// One write of a decoded frame: a key and its new value (None: removed).
pub(crate) type JournalWrite = (Vec<u8>, Option<IVec>);

/// Decodes a frame body (after the header), or says what is wrong with it.
pub(crate) fn decode_body(body: &[u8]) -> Result<(u64, Vec<JournalWrite>), &'static str> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        let slice = body.get(at..at + n).ok_or("a write runs past the frame")?;
        at += n;
        Ok(slice)
    };
    let seq = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "short sequence")?);
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "short count")?);
    // The count comes from the file: a crafted frame with a valid checksum must not make the
    // replay reserve gigabytes (each write takes at least 5 bytes of the body).
    let mut writes = Vec::with_capacity((count as usize).min(body.len() / 5));
    for _ in 0..count {
        let flag = take(1)?[0];
        let key_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "short length")?);
        let key = take(key_len as usize)?.to_vec();
        let value = match flag {
            0 => None,
            1 => {
                let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "short length")?);
                Some(IVec::from(take(len as usize)?))
            }
            _ => return Err("unknown write flag"),
        };
        writes.push((key, value));
    }
    if at != body.len() {
        return Err("bytes left after the last write");
    }
    Ok((seq, writes))
}

/// The journal's segments in order.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The little-endian u32 at `at`, if `bytes` holds one there.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// What [`replay`] did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// The last sequence number sled holds now (applied before or replayed).
    pub last_seq: u64,
    /// Frames replayed.
    pub frames: usize,
    /// Where a torn last frame was dropped (a write whose fsync never completed): its byte
    /// offset in the last segment.
    pub torn_at: Option<usize>,
}

/// Replays, through `apply`, every frame after `applied` (the sequence number sled holds),
/// in order. A torn frame at the end of the last segment ends the replay; anything else that
/// does not decode, or a gap in the sequence, is corruption.
pub(crate) fn replay(
    ctx: &Ctx,
    dir: &Path,
    applied: u64,
    until: Option<u64>,
    mut apply: impl FnMut(Vec<JournalWrite>) -> Result<(), StoreError>,
) -> Result<Replayed, StoreError> {
    let mut replayed = Replayed {
        last_seq: applied,
        ..Replayed::default()
    };
    let found = segments(dir).map_err(|e| ctx.io("listing the journal", dir, e))?;
    let count = found.len();
    for (index, (_, path)) in found.into_iter().enumerate() {
        let bytes = fs::read(&path).map_err(|e| ctx.io("reading the journal", &path, e))?;
        let last_segment = index + 1 == count;
        let corrupt = |offset: usize, what: &str| {
            ctx.corrupt_file(&path, format!("journal frame at byte {offset}: {what}"))
        };
        let mut at = 0usize;
        while let (Some(len), Some(crc)) = (u32_at(&bytes, at), u32_at(&bytes, at + 4)) {
            let len = len as usize;
            if len == 0 {
                break;
            }
            let body = bytes.get(at + HEADER..at + HEADER + len);
            let intact = body.filter(|body| crc32fast::hash(body) == crc);
            let Some(body) = intact else {
                if last_segment {
                    replayed.torn_at = Some(at);
                    break;
                }
                return Err(corrupt(at, "checksum mismatch in a closed segment"));
            };
            let (seq, writes) = decode_body(body).map_err(|what| corrupt(at, what))?;
            if until.is_some_and(|until| seq >= until) {
                // Frames of a flush whose callers were told it failed: never replayed.
                return Ok(replayed);
            }
            if seq > replayed.last_seq {
                if seq != replayed.last_seq + 1 {
                    return Err(corrupt(
                        at,
                        &format!(
                            "frame {seq} follows {}: frames in between are missing",
                            replayed.last_seq
                        ),
                    ));
                }
                apply(writes)?;
                replayed.last_seq = seq;
                replayed.frames += 1;
            }
            at += HEADER + len;
        }
    }
    Ok(replayed)
}

/// The sequence number of the journal's first frame (its oldest segment's name), if any.
pub(crate) fn first_seq(dir: &Path) -> io::Result<Option<u64>> {
    Ok(segments(dir)?.first().map(|(seq, _)| *seq))
}

/// Deletes every segment of the journal (after a checkpoint covering them all).
pub(crate) fn clear(ctx: &Ctx, dir: &Path) -> Result<(), StoreError> {
    let found = segments(dir).map_err(|e| ctx.io("listing the journal", dir, e))?;
    for (_, path) in found {
        fs::remove_file(&path).map_err(|e| ctx.io("deleting a journal segment", &path, e))?;
    }
    Ok(())
}

/// Makes everything sled wrote under `db_dir` durable: fsyncs its files (the journal aside)
/// and directories. `Db::flush` must have run first.
pub(crate) fn sync_sled_files(db_dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(db_dir)? {
        let entry = entry?;
        if entry.file_name() == JOURNAL_DIR {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_sled_files(&entry.path())?;
        } else if kind.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(db_dir)?.sync_all()
}

/// Flushes `db` and fsyncs its files under `dir`: everything written to it is durable.
pub(crate) fn checkpoint_sled(
    ctx: &Ctx,
    db: &sled::Db,
    dir: &Path,
    operation: &'static str,
) -> Result<(), StoreError> {
    db.flush().map_err(|e| ctx.backend(operation, e))?;
    sync_sled_files(dir).map_err(|e| ctx.io(operation, dir, e))
}

/// `err` with what was being done to which segment.
fn naming(path: &Path, doing: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{doing} {}: {err}", path.display()))
}

/// The flusher's side: appends frames to the open segment and fsyncs it.
pub(crate) struct JournalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    current: Option<(File, PathBuf, u64)>,
    closed: Vec<PathBuf>,
    observer: Option<crate::durability::Observer>,
}

impl JournalWriter {
    /// A writer over `dir` (created if missing), which must hold no segment, closing segments
    /// once they hold `segment_bytes`.
    pub fn create(
        dir: PathBuf,
        segment_bytes: u64,
        observer: Option<crate::durability::Observer>,
    ) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(Self {
            dir,
            segment_bytes,
            current: None,
            closed: Vec::new(),
            observer,
        })
    }

    /// Appends frames (already concatenated) whose first sequence number is `first_seq`.
    pub fn append(&mut self, first_seq: u64, frames: &[u8]) -> io::Result<()> {
        let (file, path, len) = match &mut self.current {
            Some(current) => current,
            None => {
                let path = self.dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"));
                let file = self
                    .create_segment(&path)
                    .map_err(|e| naming(&path, "creating", e))?;
                self.current.insert((file, path, 0))
            }
        };
        file.write_all_at(frames, *len)
            .map_err(|e| naming(path, "writing", e))?;
        *len += frames.len() as u64;
        Ok(())
    }

    /// Creates the segment file at `path`, durably.
    fn create_segment(&self, path: &Path) -> io::Result<File> {
        let file = OpenOptions::new().create_new(true).write(true).open(path)?;
        // Sized up front (sparse): a write inside the file's length does not change its size,
        // so its fdatasync has no size to commit. The zeros past the frames read as the end of
        // the segment.
        file.set_len(self.segment_bytes)?;
        file.sync_all()?;
        // The new name must survive a power cut as well as the frames in it.
        File::open(&self.dir)?.sync_all()?;
        if let Some(observer) = &self.observer {
            observer.0.segment_created(path, self.segment_bytes);
        }
        Ok(file)
    }

    /// Makes every appended frame durable.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.current {
            Some((file, path, len)) => {
                file.sync_data().map_err(|e| naming(path, "fsyncing", e))?;
                if let Some(observer) = &self.observer {
                    observer.0.journal_synced(path, *len);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After a [`JournalWriter::sync`]: closes the segment if it is full, and returns the
    /// closed segments a checkpoint may now delete (all of them at `force`).
    pub fn rotate(&mut self, force: bool) -> Vec<PathBuf> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|(_, _, len)| force || *len >= self.segment_bytes);
        if full && let Some((_, path, _)) = self.current.take() {
            self.closed.push(path);
        }
        std::mem::take(&mut self.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx { path: "/db".into() }
    }

    fn frame(seq: u64, writes: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = FrameBuilder::new(seq);
        for (key, value) in writes {
            builder.write(key, *value);
        }
        builder.finish()
    }

    fn replay_all(dir: &Path, applied: u64) -> Result<(Replayed, Vec<JournalWrite>), StoreError> {
        let mut seen = Vec::new();
        let replayed = replay(&ctx(), dir, applied, None, |writes| {
            seen.extend(writes);
            Ok(())
        })?;
        Ok((replayed, seen))
    }

    /// A journal in a fresh directory, with segments of `segment_bytes`.
    fn new_journal(segment_bytes: u64) -> (tempfile::TempDir, PathBuf, JournalWriter) {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join(JOURNAL_DIR);
        let writer = JournalWriter::create(journal.clone(), segment_bytes, None).expect("create");
        (dir, journal, writer)
    }

    /// Appends frame `seq`, which sets `k` to `value`.
    fn put(writer: &mut JournalWriter, seq: u64, value: &[u8]) {
        writer
            .append(seq, &frame(seq, &[(b"k", Some(value))]))
            .expect("append");
    }

    #[test]
    fn frames_round_trip_and_skip_what_sled_holds() {
        let (_dir, journal, mut writer) = new_journal(DEFAULT_SEGMENT_BYTES);
        let mut both = frame(1, &[(b"a", Some(b"1")), (b"b", None)]);
        both.extend(frame(2, &[(b"a", Some(b"2"))]));
        writer.append(1, &both).expect("append");
        writer.sync().expect("sync");
        let (replayed, seen) = replay_all(&journal, 0).expect("replay");
        assert_eq!((replayed.last_seq, replayed.frames), (2, 2));
        let expected: Vec<JournalWrite> = vec![
            (b"a".to_vec(), Some(IVec::from(&b"1"[..]))),
            (b"b".to_vec(), None),
            (b"a".to_vec(), Some(IVec::from(&b"2"[..]))),
        ];
        assert_eq!(seen, expected);
        let (replayed, seen) = replay_all(&journal, 1).expect("replay");
        assert_eq!((replayed.last_seq, replayed.frames, seen.len()), (2, 1, 1));
        let (replayed, _) = replay_all(&journal, 7).expect("sled ahead");
        assert_eq!((replayed.last_seq, replayed.frames), (7, 0));
    }

    #[test]
    fn a_torn_tail_is_dropped_but_a_damaged_closed_segment_refuses() {
        let (_dir, journal, mut writer) = new_journal(DEFAULT_SEGMENT_BYTES);
        put(&mut writer, 1, b"v");
        let torn = frame(2, &[(b"k", Some(b"w"))]);
        writer.append(2, &torn[..torn.len() - 3]).expect("append");
        writer.sync().expect("sync");
        let (replayed, seen) = replay_all(&journal, 0).expect("replay");
        assert_eq!((replayed.last_seq, seen.len()), (1, 1));
        let first_len = frame(1, &[(b"k", Some(b"v"))]).len();
        assert_eq!(replayed.torn_at, Some(first_len));

        // The same damage in a segment followed by another is corruption, named.
        assert_eq!(writer.rotate(true).len(), 1);
        put(&mut writer, 3, b"x");
        let err = replay_all(&journal, 0).expect_err("corrupt");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(text.contains("00000000000000000001.wal"), "{text}");
        assert!(text.contains("checksum"), "{text}");
    }

    #[test]
    fn a_gap_in_the_sequence_is_corruption() {
        let (_dir, journal, mut writer) = new_journal(DEFAULT_SEGMENT_BYTES);
        put(&mut writer, 4, b"v");
        put(&mut writer, 6, b"w");
        let err = replay_all(&journal, 3).expect_err("gap");
        assert!(err.to_string().contains("frame 6 follows 4"), "{err}");
        let err = replay_all(&journal, 1).expect_err("sled behind the journal");
        assert!(err.to_string().contains("frame 4 follows 1"), "{err}");
    }

    #[test]
    fn segments_close_when_full_and_replay_in_order() {
        let (_dir, journal, mut writer) = new_journal(4096);
        let big = vec![7u8; 3000];
        put(&mut writer, 1, &big);
        assert!(writer.rotate(false).is_empty(), "not full yet");
        put(&mut writer, 2, &big);
        assert_eq!(writer.rotate(false).len(), 1, "full: closed");
        put(&mut writer, 3, b"last");
        assert_eq!(segments(&journal).expect("list").len(), 2);
        let (replayed, seen) = replay_all(&journal, 0).expect("replay");
        assert_eq!(replayed.last_seq, 3);
        assert_eq!(
            seen.last().and_then(|w| w.1.clone()),
            Some(IVec::from(&b"last"[..]))
        );
        clear(&ctx(), &journal).expect("clear");
        assert!(segments(&journal).expect("list").is_empty());
    }
}
