//! The packet log: packet bodies appended to segment files, each append made durable with one
//! `fdatasync` before the index that points into it is committed.
//!
//! This is what makes a `/send` answer cheap and still honest. Packet bodies are most of the
//! bytes; written into a B-tree they cost copy-on-write pages and checksums on every commit.
//! Appended here, a batch of packets costs one `write` and one `fdatasync`, and the redb index
//! (small fixed-size entries) can commit without its own sync: whatever it loses in a crash is
//! re-read from the log on the next open (see `RedbStore::open`).
//!
//! A segment file is `segments/<id>.seg`: an 8-byte magic, then records:
//!
//! ```text
//! payload length (u32 LE) ‖ CRC-32C of payload (u32 LE) ‖ payload
//! payload = seq (u64 BE) ‖ expires_at (u64 BE) ‖ hash (32) ‖ recipient (32) ‖ packet JSON
//! ```
//!
//! Segments are never rewritten. The active one grows until `segment_bytes`, then a new one
//! starts; a segment file is deleted once no live packet is stored in it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{StoreError, UnixMillis};
use crate::proto::{Fingerprint, PacketHash};

/// First bytes of every segment file.
const MAGIC: &[u8; 8] = b"JSPRSEG1";
/// Bytes before a record's payload: length and checksum.
const RECORD_HEADER: usize = 8;
/// Bytes of a payload before the packet JSON.
pub(super) const PAYLOAD_PREFIX: usize = 8 + 8 + 32 + 32;
/// Largest payload a record may claim; anything longer is damage, not data. It leaves room for
/// the largest packet any configuration accepts (checked below), whose JSON the store may also
/// carry an `expires` field in.
const MAX_PAYLOAD: usize = 80 << 20;
const _: () = assert!(
    MAX_PAYLOAD
        >= PAYLOAD_PREFIX
            + crate::proto::packet::PacketRules {
                min_key_bits: 0,
                max_message_bytes: crate::config::MAX_MESSAGE_BYTES as usize,
            }
            .max_body_bytes()
            + 1024
);
/// Most bytes [`SegmentLog::read_many`] reads in one call (more when one record is larger).
pub const READ_SPAN: u64 = 1 << 20;
/// Most unwanted bytes between two records that [`SegmentLog::read_many`] still reads through
/// rather than making another call.
pub const READ_GAP: u64 = 16 << 10;

/// Where one record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the record (its header) in the segment.
    pub offset: u64,
    /// Length of the record's payload.
    pub len: u32,
}

impl Location {
    /// Encoded size.
    pub const BYTES: usize = 20;

    /// `segment (8, BE) ‖ offset (8, BE) ‖ len (4, BE)`.
    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// The inverse of [`Location::encode`].
    pub fn decode(bytes: &[u8; Self::BYTES]) -> Self {
        Self {
            segment: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            offset: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
            len: u32::from_be_bytes(bytes[16..].try_into().expect("4 bytes")),
        }
    }
}

/// A position in the log: everything before it has been looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in that segment.
    pub offset: u64,
}

/// One packet as the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Store sequence number.
    pub seq: u64,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// SHA-256 of the message.
    pub hash: PacketHash,
    /// The recipient's fingerprint.
    pub recipient: Fingerprint,
    /// The packet's JSON.
    pub json: &'a [u8],
}

impl<'a> Record<'a> {
    fn payload_len(&self) -> usize {
        PAYLOAD_PREFIX + self.json.len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&(self.payload_len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.recipient.0);
        out.extend_from_slice(self.json);
        let crc = crc32c::crc32c(&out[start + RECORD_HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &'a [u8]) -> Option<Self> {
        if payload.len() < PAYLOAD_PREFIX {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(payload[r].try_into().unwrap());
        Some(Self {
            seq: u(0..8),
            expires_at: u(8..16),
            hash: PacketHash(payload[16..48].try_into().unwrap()),
            recipient: Fingerprint(payload[48..80].try_into().unwrap()),
            json: &payload[PAYLOAD_PREFIX..],
        })
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Engine(format!("{what} {}: {e}", path.display()))
}

fn segment_name(id: u64) -> String {
    format!("{id:016}.seg")
}

struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
}

/// How far a log is known to be on disk: every byte before this position was covered by a
/// flush that succeeded. A handle outlives the [`SegmentLog`] it came from, so that whoever
/// opens the log again after a failed flush can cut what was never known to reach the disk
/// (see [`SegmentLog::truncate`]).
#[derive(Debug, Clone, Default)]
pub struct FlushedEnd(Arc<Mutex<Option<Position>>>);

impl FlushedEnd {
    /// The position, or `None` if nothing was flushed yet.
    pub fn get(&self) -> Option<Position> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn advance(&self, to: Position) {
        let mut at = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *at = Some(at.map_or(to, |at| at.max(to)));
    }
}

/// The segment files of one store.
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    active: Mutex<Active>,
    flushed: FlushedEnd,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    /// The first failed flush, kept: Linux reports a writeback error to one `fsync` only, so a
    /// later flush of the same file can succeed although the data it was meant to cover is gone.
    /// Every flush after this one fails with it.
    failed_flush: Mutex<Option<String>>,
    /// Tests set this to make the next flushes fail as a failing disk would.
    #[cfg(test)]
    pub(super) fail_syncs: std::sync::atomic::AtomicBool,
    /// Reads made by [`SegmentLog::read_many`], for tests of its coalescing.
    #[cfg(test)]
    reads: std::sync::atomic::AtomicUsize,
}

/// What [`SegmentLog::scan`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Where the log ends now.
    pub end: Position,
    /// Damaged or torn tails cut off (each kept beside its segment as
    /// `<id>.seg.damaged-at-<offset>`).
    pub damaged_tails: usize,
}

impl SegmentLog {
    /// Opens the log in `dir` (creating it), continuing the newest segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        let mut ids = list_segments(dir)?;
        // A crash while a segment was being created can leave it without its magic; it holds
        // no record, so it goes.
        while let Some(&id) = ids.last() {
            let path = dir.join(segment_name(id));
            let len = std::fs::metadata(&path)
                .map_err(|e| io("reading", &path, e))?
                .len();
            if len >= MAGIC.len() as u64 {
                break;
            }
            std::fs::remove_file(&path).map_err(|e| io("deleting", &path, e))?;
            ids.pop();
        }
        let mut readers = HashMap::new();
        let active = match ids.last() {
            Some(&id) => {
                let path = dir.join(segment_name(id));
                let file = Arc::new(open_file(&path)?);
                let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
                readers.insert(id, file.clone());
                Active { id, file, len }
            }
            None => {
                let file = Arc::new(create_file(dir, 1)?);
                readers.insert(1, file.clone());
                Active {
                    id: 1,
                    file,
                    len: MAGIC.len() as u64,
                }
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(4096),
            active: Mutex::new(active),
            readers: Mutex::new(readers),
            flushed: FlushedEnd::default(),
            failed_flush: Mutex::new(None),
            #[cfg(test)]
            fail_syncs: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            reads: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    fn lock_active(&self) -> MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_segment(&self, id: u64) -> Result<Arc<File>, StoreError> {
        self.open_segment_if_there(id)?.ok_or_else(|| {
            io(
                "opening",
                &self.path(id),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// [`Self::open_segment`], or `None` when the segment was deleted.
    fn open_segment_if_there(&self, id: u64) -> Result<Option<Arc<File>>, StoreError> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = readers.get(&id) {
            return Ok(Some(file.clone()));
        }
        let path = self.path(id);
        let file = match open_file(&path) {
            Ok(file) => Arc::new(file),
            Err(_) if !path.exists() => return Ok(None),
            Err(e) => return Err(e),
        };
        readers.insert(id, file.clone());
        Ok(Some(file))
    }

    fn start_segment(&self, id: u64) -> Result<Active, StoreError> {
        let file = Arc::new(create_file(&self.dir, id)?);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, file.clone());
        Ok(Active {
            id,
            file,
            len: MAGIC.len() as u64,
        })
    }

    /// Starts an append. The batch holds the log until it is written or dropped, so locations
    /// handed out are where the records will land.
    pub fn begin(&self) -> Result<Batch<'_>, StoreError> {
        let mut active = self.lock_active();
        if active.len >= self.segment_bytes {
            // `sync` flushes only the active segment, so the one being closed is flushed now.
            // A failure here must fail this store, not only this batch: records before it were
            // written to that segment and are not known to be on disk.
            let end = Position {
                segment: active.id,
                offset: active.len,
            };
            self.sync_file(end, &active.file)
                .map_err(|e| StoreError::NeedsReopen(e.to_string()))?;
            let next = self.start_segment(active.id + 1)?;
            // A new segment is created durably, its magic and name flushed.
            self.flushed.advance(Position {
                segment: next.id,
                offset: next.len,
            });
            *active = next;
        }
        Ok(Batch {
            log: self,
            base: active.len,
            active,
            buf: Vec::new(),
        })
    }

    /// Flushes every write made so far to disk (`fdatasync`).
    ///
    /// Once any flush has failed (here or when a full segment was closed), every later one fails
    /// too: what the failed one was to cover may never have reached the disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (end, file) = {
            let active = self.lock_active();
            let end = Position {
                segment: active.id,
                offset: active.len,
            };
            (end, active.file.clone())
        };
        self.sync_file(end, &file)
    }

    /// How far the log is known to be on disk, as a handle that outlives the log.
    pub fn flushed(&self) -> FlushedEnd {
        self.flushed.clone()
    }

    /// Flushes `file`, segment `end.segment`, written at least up to `end`.
    fn sync_file(&self, end: Position, file: &File) -> Result<(), StoreError> {
        let mut failed = self.failed_flush.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = failed.as_ref() {
            return Err(StoreError::Engine(format!(
                "an earlier flush of the packet log failed ({why}); what was written since is not \
                 known to be on disk"
            )));
        }
        #[cfg(test)]
        let result = if self.fail_syncs.load(std::sync::atomic::Ordering::Relaxed) {
            Err(std::io::Error::from_raw_os_error(5)) // EIO
        } else {
            file.sync_data()
        };
        #[cfg(not(test))]
        let result = file.sync_data();
        match result {
            Ok(()) => {
                self.flushed.advance(end);
                Ok(())
            }
            Err(e) => {
                let e = io("syncing", &self.path(end.segment), e);
                *failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Where the log ends now.
    pub fn end(&self) -> Position {
        let active = self.lock_active();
        Position {
            segment: active.id,
            offset: active.len,
        }
    }

    /// The id of the segment being appended to (never deleted).
    pub fn active_segment(&self) -> u64 {
        self.lock_active().id
    }

    /// Reads the records at `locs` and calls `visit` with each index into `locs` and its
    /// record, in order, checking its length and checksum and that it is the
    /// record `locs` names. Records that lie close
    /// together in one segment (an inbox written in one go, a sync batch) are read with one
    /// system call: at most [`READ_SPAN`] bytes, skipping at most [`READ_GAP`] bytes between
    /// records. `visit` returns `false` to stop.
    ///
    /// Records in a segment deleted meanwhile are skipped: a segment goes once none of its
    /// packets is live, so they expired after the caller found them in the index. A damaged
    /// record is skipped too, and logged as an error; returns the indices into `locs` of those
    /// (for the caller to drop from its index).
    pub fn read_many(
        &self,
        locs: &[Location],
        visit: &mut dyn FnMut(usize, Record<'_>) -> bool,
    ) -> Result<Vec<usize>, StoreError> {
        let mut damaged = Vec::new();
        let mut buf = Vec::new();
        let mut i = 0;
        while i < locs.len() {
            let first = locs[i];
            // Saturating: a damaged index may name any offset; the read then fails cleanly.
            let mut end = first.offset.saturating_add(Self::record_bytes(first)?);
            let mut j = i + 1;
            while let Some(&next) = locs.get(j) {
                let next_end = next.offset.saturating_add(Self::record_bytes(next)?);
                if next.segment != first.segment
                    || next.offset < end
                    || next.offset - end > READ_GAP
                    || next_end - first.offset > READ_SPAN
                {
                    break;
                }
                end = next_end;
                j += 1;
            }
            let Some(file) = self.open_segment_if_there(first.segment)? else {
                i = j;
                continue;
            };
            #[cfg(test)]
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            buf.resize((end - first.offset) as usize, 0);
            file.read_exact_at(&mut buf, first.offset)
                .map_err(|e| io("reading", &self.path(first.segment), e))?;
            for (k, &loc) in locs.iter().enumerate().take(j).skip(i) {
                let at = (loc.offset - first.offset) as usize;
                let total = RECORD_HEADER + loc.len as usize;
                match self.check(loc, &buf[at..at + total]) {
                    Ok(record) => {
                        if !visit(k, record) {
                            return Ok(damaged);
                        }
                    }
                    // One damaged record must not make those beside it unreadable (an inbox
                    // behind it, for as long as it is kept): it is left out, and said.
                    Err(StoreError::Corrupt(why)) => {
                        tracing::error!("{why}; left out of what is read");
                        damaged.push(k);
                    }
                    Err(e) => return Err(e),
                }
            }
            i = j;
        }
        Ok(damaged)
    }

    /// The bytes the record at `loc` takes, header included; refuses a length no record has.
    fn record_bytes(loc: Location) -> Result<u64, StoreError> {
        if loc.len as usize > MAX_PAYLOAD {
            return Err(StoreError::Corrupt(format!(
                "the index names a record of {} bytes; the log writes none that large",
                loc.len
            )));
        }
        Ok((RECORD_HEADER + loc.len as usize) as u64)
    }

    /// Checks that `bytes`, read at `loc`, are the record the index expects, undamaged.
    fn check<'b>(&self, loc: Location, bytes: &'b [u8]) -> Result<Record<'b>, StoreError> {
        let damaged = || {
            StoreError::Corrupt(format!(
                "the record at {}:{} of {} is damaged",
                loc.segment,
                loc.offset,
                self.dir.display()
            ))
        };
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        let payload = &bytes[RECORD_HEADER..];
        if len != loc.len || crc32c::crc32c(payload) != crc {
            return Err(damaged());
        }
        Record::decode(payload).ok_or_else(damaged)
    }

    /// Reads every record from `from` to the end of the log, in order, calling `visit` with
    /// each. A record that does not check out ends its segment: the bytes from there on are
    /// kept beside it as `<id>.seg.damaged-at-<offset>` and the segment is cut, so appends
    /// continue on sound data. A crash in the middle of an append leaves exactly such a torn
    /// tail, and that append was never acknowledged.
    pub fn scan(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Location, Record<'_>) -> Result<(), StoreError>,
    ) -> Result<ScanReport, StoreError> {
        let mut report = ScanReport::default();
        let mut active = self.lock_active();
        let mut buf = Vec::new();
        for id in self.segments_from(from.segment)? {
            let file = self.open_segment(id)?;
            let path = self.path(id);
            let (offset, len) = walk_segment(&file, &path, id, from, &mut buf, visit)?;
            if offset < len {
                keep_damaged_tail(&file, &path, offset, len)?;
                file.set_len(offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("cutting the damaged tail of", &path, e))?;
                report.damaged_tails += 1;
            }
            // What was read may so far be only in the page cache (the process died, not the
            // machine); it must be on disk before an index that points at it is.
            file.sync_data().map_err(|e| io("syncing", &path, e))?;
            self.flushed.advance(Position {
                segment: id,
                offset,
            });
            if id == active.id {
                active.len = offset;
            }
        }
        report.end = Position {
            segment: active.id,
            offset: active.len,
        };
        Ok(report)
    }

    /// Drops everything from `at` on, durably: the rest of its segment and every later
    /// segment; appends continue at `at`. After a failed flush the bytes past the last good
    /// one may exist only in the page cache (Linux reports a lost writeback once and then
    /// serves the cached pages as if they were on disk), so a store opened again must not
    /// treat them as stored. Returns how many bytes were dropped. Should `at`'s segment be
    /// missing, it starts again empty there.
    pub fn truncate(&self, at: Position) -> Result<u64, StoreError> {
        let mut active = self.lock_active();
        let mut dropped = 0;
        for id in self.segments_from(at.segment + 1)? {
            let later = self.path(id);
            dropped += std::fs::metadata(&later).map_or(0, |m| m.len());
            self.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            std::fs::remove_file(&later).map_err(|e| io("deleting", &later, e))?;
        }
        let (file, keep) = match self.open_segment_if_there(at.segment)? {
            Some(file) => {
                let path = self.path(at.segment);
                let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
                let keep = at
                    .offset
                    .clamp(MAGIC.len() as u64, len.max(MAGIC.len() as u64));
                if len > keep {
                    dropped += len - keep;
                    file.set_len(keep)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io("cutting", &path, e))?;
                }
                (file, keep)
            }
            None => {
                let started = self.start_segment(at.segment.max(1))?;
                (started.file, started.len)
            }
        };
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &self.dir, e))?;
        *active = Active {
            id: at.segment.max(1),
            file,
            len: keep,
        };
        self.flushed.advance(Position {
            segment: at.segment.max(1),
            offset: keep,
        });
        Ok(dropped)
    }

    /// Whether a flush failed (see [`Self::sync`]).
    pub fn has_failed_flush(&self) -> bool {
        self.failed_flush
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Segment ids present on disk from `first` on, oldest first.
    fn segments_from(&self, first: u64) -> Result<Vec<u64>, StoreError> {
        Ok(list_segments(&self.dir)?
            .into_iter()
            .filter(|&id| id >= first)
            .collect())
    }

    /// Segment ids present on disk, oldest first.
    pub fn segments(&self) -> Result<Vec<u64>, StoreError> {
        list_segments(&self.dir)
    }

    /// Deletes a segment that no live packet uses any more. The active segment is kept.
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        if id == self.active_segment() {
            return Ok(());
        }
        // Unlinked under the readers' lock: a reader opening it in between would keep the
        // deleted file (and its space) open in the cache for good.
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.remove(&id);
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", &path, e)),
        }
    }
}

/// Calls `visit` with each sound record of segment `id` (from `from` if that is in this
/// segment), stopping at the end or at the first record that does not check out. Returns where
/// it stopped and the file's length: less than the length means a damaged or torn tail.
fn walk_segment(
    file: &File,
    path: &Path,
    id: u64,
    from: Position,
    buf: &mut Vec<u8>,
    visit: &mut dyn FnMut(Location, Record<'_>) -> Result<(), StoreError>,
) -> Result<(u64, u64), StoreError> {
    let len = file.metadata().map_err(|e| io("reading", path, e))?.len();
    let mut offset = if id == from.segment {
        from.offset.max(MAGIC.len() as u64)
    } else {
        MAGIC.len() as u64
    };
    while offset < len {
        // A failing read is not a torn tail: cutting there would drop records, flushed and
        // acknowledged ones among them, for what may pass (the open fails and is tried again).
        let Some(payload_len) =
            read_at(file, offset, len, buf).map_err(|e| io("reading", path, e))?
        else {
            break;
        };
        let record = Record::decode(&buf[RECORD_HEADER..]).expect("checked");
        let loc = Location {
            segment: id,
            offset,
            len: payload_len,
        };
        visit(loc, record)?;
        offset += (RECORD_HEADER + payload_len as usize) as u64;
    }
    Ok((offset, len))
}

/// Checks the record at `offset`; on success `buf` holds it and its payload length is returned.
/// `Ok(None)`: no sound record starts there (torn or damaged); `Err`: the file could not be
/// read.
fn read_at(
    file: &File,
    offset: u64,
    file_len: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u32>> {
    let read = |buf: &mut [u8]| match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        // Shorter than its length said (the file shrank meanwhile): as torn.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    };
    if file_len - offset < RECORD_HEADER as u64 {
        return Ok(None);
    }
    let mut header = [0u8; RECORD_HEADER];
    if !read(&mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[..4].try_into().unwrap());
    let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
    let total = RECORD_HEADER as u64 + len as u64;
    if (len as usize) < PAYLOAD_PREFIX || len as usize > MAX_PAYLOAD || file_len - offset < total {
        return Ok(None);
    }
    buf.resize(total as usize, 0);
    if !read(buf)? {
        return Ok(None);
    }
    Ok((crc32c::crc32c(&buf[RECORD_HEADER..]) == crc).then_some(len))
}

fn keep_damaged_tail(file: &File, path: &Path, offset: u64, len: u64) -> Result<(), StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-at-{offset}"));
    let keep = PathBuf::from(name);
    let mut tail = std::io::Read::take(
        std::io::BufReader::new(
            file.try_clone()
                .and_then(|mut f| {
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
                    Ok(f)
                })
                .map_err(|e| io("reading", path, e))?,
        ),
        len - offset,
    );
    let mut out = File::create(&keep).map_err(|e| io("writing", &keep, e))?;
    std::io::copy(&mut tail, &mut out)
        .and_then(|_| out.sync_all())
        .map_err(|e| io("writing", &keep, e))?;
    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes = len - offset,
        kept = %keep.display(),
        "cut a damaged or torn tail off the packet log (a crash during an unacknowledged \
         write leaves one)"
    );
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Opens an existing segment file, checking its magic.
fn open_file(path: &Path) -> Result<File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io("opening", path, e))?;
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0)
        .map_err(|e| io("reading", path, e))?;
    if &magic != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{} is not a jasper segment file",
            path.display()
        )));
    }
    Ok(file)
}

/// Creates segment `id` in `dir`, durably (the file and its name). A file of that name holding
/// no record (left by a creation that failed part way, the disk full, say) is taken over: the
/// next roll-over would otherwise fail on it until a restart. One holding records is refused.
fn create_file(dir: &Path, id: u64) -> Result<File, StoreError> {
    let path = dir.join(segment_name(id));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("creating", &path, e))?;
    let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
    if len > MAGIC.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} exists already and holds records; it was not written by this log",
            path.display()
        )));
    }
    file.set_len(0)
        .and_then(|()| file.write_all_at(MAGIC, 0))
        .and_then(|()| file.sync_all())
        .map_err(|e| io("writing", &path, e))?;
    // The new name must be durable too, or a crash could lose the whole file.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing", dir, e))?;
    Ok(file)
}

/// Records being appended; see [`SegmentLog::begin`].
pub struct Batch<'a> {
    log: &'a SegmentLog,
    active: MutexGuard<'a, Active>,
    base: u64,
    buf: Vec<u8>,
}

impl Batch<'_> {
    /// Adds a record and says where it will be.
    pub fn push(&mut self, record: &Record<'_>) -> Location {
        let offset = self.base + self.buf.len() as u64;
        record.encode_into(&mut self.buf);
        Location {
            segment: self.active.id,
            offset,
            len: record.payload_len() as u32,
        }
    }

    /// Bytes pushed so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Where the log will end once this batch is written.
    pub fn end(&self) -> Position {
        Position {
            segment: self.active.id,
            offset: self.base + self.buf.len() as u64,
        }
    }

    /// Writes the records (into the page cache; [`SegmentLog::sync`] makes them durable).
    /// On failure nothing of the batch stays in the log.
    pub fn write(mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.active.file.clone();
        match file.write_all_at(&self.buf, self.base) {
            Ok(()) => {
                self.active.len = self.base + self.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = file.set_len(self.base);
                Err(io("appending to", &self.log.path(self.active.id), e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn record(n: u64, json: &[u8]) -> Record<'_> {
        Record {
            seq: n,
            expires_at: 1_000 + n,
            hash: PacketHash::of_message(&format!("m{n}")),
            recipient: Fingerprint([n as u8; 32]),
            json,
        }
    }

    fn append(log: &SegmentLog, records: &[Record<'_>]) -> Vec<Location> {
        let mut batch = log.begin().unwrap();
        let locs = records.iter().map(|r| batch.push(r)).collect();
        batch.write().unwrap();
        log.sync().unwrap();
        locs
    }

    /// A record read back as the store reads it.
    #[derive(Debug)]
    struct Read {
        seq: u64,
        hash: PacketHash,
        recipient: Fingerprint,
        json: Vec<u8>,
    }

    fn read_one(log: &SegmentLog, loc: Location) -> Result<Read, StoreError> {
        let mut read = None;
        log.read_many(&[loc], &mut |_, r| {
            read = Some(Read {
                seq: r.seq,
                hash: r.hash,
                recipient: r.recipient,
                json: r.json.to_vec(),
            });
            true
        })?;
        Ok(read.expect("read_many visits every record it returns Ok for"))
    }

    /// How many of `locs` `read_many` hands on.
    fn visits(log: &SegmentLog, locs: &[Location]) -> usize {
        let mut visited = 0;
        log.read_many(locs, &mut |_, _| {
            visited += 1;
            true
        })
        .unwrap();
        visited
    }

    fn scan_all(log: &SegmentLog, from: Position) -> (Vec<(Location, u64, Vec<u8>)>, ScanReport) {
        let mut seen = Vec::new();
        let report = log
            .scan(from, &mut |loc, r| {
                seen.push((loc, r.seq, r.json.to_vec()));
                Ok(())
            })
            .unwrap();
        (seen, report)
    }

    #[test]
    fn records_read_back_and_the_log_continues_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let locs = append(&log, &[record(1, b"{\"a\":1}"), record(2, b"{\"b\":22}")]);
        assert_eq!(locs[0].offset, MAGIC.len() as u64);
        assert_eq!(
            locs[1].offset,
            locs[0].offset + (RECORD_HEADER as u64) + locs[0].len as u64
        );
        let r = read_one(&log, locs[1]).unwrap();
        assert_eq!((r.seq, &r.json[..]), (2, &b"{\"b\":22}"[..]));
        assert_eq!(r.hash, PacketHash::of_message("m2"));
        assert_eq!(r.recipient, Fingerprint([2; 32]));
        let end = log.end();
        drop(log);

        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(log.end(), end, "reopening continues where the log ended");
        let more = append(&log, &[record(3, b"{}")]);
        assert_eq!(more[0].offset, end.offset);
        let (seen, report) = scan_all(&log, Position::default());
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(report.damaged_tails, 0);
        assert_eq!(report.end, log.end());
    }

    #[test]
    fn segments_roll_over_and_old_ones_stay_readable_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let json = vec![b'x'; 1500];
        let mut locs = Vec::new();
        for n in 0..10 {
            locs.extend(append(&log, &[record(n, &json)]));
        }
        let segments = log.segments().unwrap();
        assert!(segments.len() >= 3, "{segments:?}");
        for (n, loc) in locs.iter().enumerate() {
            assert_eq!(read_one(&log, *loc).unwrap().seq, n as u64);
        }
        // The active segment is never removed; an old one is.
        log.remove(log.active_segment()).unwrap();
        assert!(log.segments().unwrap().contains(&log.active_segment()));
        log.remove(segments[0]).unwrap();
        assert!(!log.segments().unwrap().contains(&segments[0]));
        // Its records are gone: skipped, as expired (see `read_many`).
        assert_eq!(visits(&log, &[locs[0]]), 0);
        // Scanning from a later segment sees only what follows.
        let (seen, _) = scan_all(
            &log,
            Position {
                segment: locs[9].segment,
                offset: locs[9].offset,
            },
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, 9);
    }

    #[test]
    fn a_next_segment_left_without_records_is_taken_over_at_roll_over() {
        let json = vec![b'x'; 1500];
        for leftover in [&b""[..], &MAGIC[..4], &MAGIC[..]] {
            let dir = tempfile::tempdir().unwrap();
            let log = SegmentLog::open(dir.path(), 4096).unwrap();
            // What a creation that failed after making the file leaves behind.
            std::fs::write(dir.path().join(segment_name(2)), leftover).unwrap();
            let locs: Vec<Location> = (0..4)
                .flat_map(|n| append(&log, &[record(n, &json)]))
                .collect();
            assert_eq!(log.active_segment(), 2, "rolled over onto the leftover");
            for (n, loc) in locs.iter().enumerate() {
                assert_eq!(read_one(&log, *loc).unwrap().seq, n as u64);
            }
        }
        // A file holding records is never overwritten.
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let foreign = [&MAGIC[..], b"records"].concat();
        std::fs::write(dir.path().join(segment_name(2)), &foreign).unwrap();
        append(&log, &[record(0, &json)]);
        append(&log, &[record(1, &json)]);
        append(&log, &[record(2, &json)]);
        let mut batch = log.begin().map(|_| ()).unwrap_err().to_string();
        batch.truncate(200);
        assert!(batch.contains("holds records"), "{batch}");
        assert_eq!(
            std::fs::read(dir.path().join(segment_name(2))).unwrap(),
            foreign
        );
    }

    #[test]
    fn the_flushed_end_follows_successful_flushes_only_and_the_log_can_be_cut_there() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let flushed = log.flushed();
        assert_eq!(flushed.get(), None, "nothing flushed yet");
        let json = vec![b'x'; 1500];
        append(&log, &[record(1, &json)]);
        assert_eq!(flushed.get(), Some(log.end()));
        let good = log.end();
        // Written, never flushed: into this segment and, rolling over, into the next ones.
        let mut later = Vec::new();
        for n in 2..8 {
            let mut batch = log.begin().unwrap();
            later.push(batch.push(&record(n, &json)));
            batch.write().unwrap();
        }
        let rolled = flushed.get().unwrap();
        assert!(rolled > good, "a rollover flushes the segment it closes");
        log.fail_syncs
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(log.sync().is_err());
        assert_eq!(flushed.get(), Some(rolled), "a failed flush moves nothing");
        drop(log);

        // Opened again and cut at an earlier position (a flush before the rollovers): the
        // later segments go too, and appends continue from the cut.
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        assert!(later.last().unwrap().segment > good.segment);
        assert!(log.segments().unwrap().len() >= 3);
        let dropped = log.truncate(good).unwrap();
        assert!(dropped > 0);
        assert_eq!(log.end(), good);
        assert_eq!(log.segments().unwrap(), vec![good.segment]);
        let (seen, report) = scan_all(&log, Position::default());
        assert_eq!(report.damaged_tails, 0);
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1]);
        let loc = append(&log, &[record(9, b"{}")])[0];
        assert_eq!((loc.segment, loc.offset), (good.segment, good.offset));
        assert_eq!(read_one(&log, loc).unwrap().seq, 9);
        drop(log);
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let (seen, _) = scan_all(&log, Position::default());
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 9]);
        // A cut in a segment that is not there (deleted by the sweep, say) starts it again,
        // empty, and drops what follows.
        let missing = Position {
            segment: 999,
            offset: 4000,
        };
        assert_eq!(log.truncate(missing).unwrap(), 0);
        assert_eq!(
            log.end(),
            Position {
                segment: 999,
                offset: 8
            }
        );
        let loc = append(&log, &[record(10, b"{}")])[0];
        assert_eq!(read_one(&log, loc).unwrap().seq, 10);
    }

    #[test]
    fn a_torn_tail_is_cut_kept_aside_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        append(&log, &[record(1, b"{}"), record(2, b"{}")]);
        let sound = log.end();
        drop(log);
        // What a crash in the middle of an append leaves: half a record.
        let path = dir.path().join(segment_name(sound.segment));
        let mut torn = Vec::new();
        record(3, b"{\"never\":\"acknowledged\"}").encode_into(&mut torn);
        torn.truncate(torn.len() / 2);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&torn).unwrap();
        drop(file);

        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let (seen, report) = scan_all(&log, Position::default());
        assert_eq!(seen.len(), 2);
        assert_eq!(report.damaged_tails, 1);
        assert_eq!(report.end, sound);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), sound.offset);
        let kept = dir.path().join(format!(
            "{}.damaged-at-{}",
            segment_name(sound.segment),
            sound.offset
        ));
        assert_eq!(std::fs::read(kept).unwrap(), torn, "the cut bytes are kept");
        let next = append(&log, &[record(4, b"{}")]);
        assert_eq!(next[0].offset, sound.offset);
        let (seen, report) = scan_all(&log, Position::default());
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(report.damaged_tails, 0);
    }

    #[test]
    fn a_damaged_record_is_left_out_not_read_as_wrong_data() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let locs = append(&log, &[record(1, b"{\"k\":\"v\"}")]);
        let path = dir.path().join(segment_name(locs[0].segment));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        // Left out (and logged), never handed on as data.
        assert_eq!(visits(&log, &[locs[0]]), 0);
        // A location past the end is an error too, never a panic.
        let beyond = Location {
            offset: 1 << 30,
            ..locs[0]
        };
        assert!(read_one(&log, beyond).is_err());
        let at_the_edge = Location {
            offset: u64::MAX - 3,
            ..locs[0]
        };
        for loc in [beyond, at_the_edge] {
            assert!(log.read_many(&[loc, loc], &mut |_, _| true).is_err());
        }
    }

    #[test]
    fn a_read_that_fails_is_an_error_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let locs = append(&log, &[record(1, b"{}")]);
        let path = dir.path().join(segment_name(locs[0].segment));
        let len = std::fs::metadata(&path).unwrap().len();
        let mut buf = Vec::new();
        let readable = File::open(&path).unwrap();
        assert!(
            read_at(&readable, locs[0].offset, len, &mut buf)
                .unwrap()
                .is_some()
        );
        // Shorter than the length it was taken to have (it shrank): torn, not an error.
        assert!(
            read_at(&readable, len - 2, len + 100, &mut buf)
                .unwrap()
                .is_none()
        );
        // A descriptor that cannot read: an error, so nothing is cut.
        let unreadable = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(read_at(&unreadable, locs[0].offset, len, &mut buf).is_err());
        let (offset, file_len) = match walk_segment(
            &unreadable,
            &path,
            locs[0].segment,
            Position::default(),
            &mut buf,
            &mut |_, _| Ok(()),
        ) {
            Ok(ends) => ends,
            Err(e) => {
                assert!(e.to_string().contains("reading"), "{e}");
                (0, 0)
            }
        };
        assert_eq!((offset, file_len), (0, 0), "walked as if torn");
    }

    #[test]
    fn a_segment_left_without_its_magic_by_a_crash_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let json = vec![b'y'; 5000];
        let locs = append(&log, &[record(1, &json)]);
        drop(log);
        // The crash came between creating segment 2 and writing its magic.
        std::fs::write(dir.path().join(segment_name(2)), b"JSP").unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        assert_eq!(log.segments().unwrap(), vec![1]);
        assert_eq!(read_one(&log, locs[0]).unwrap().seq, 1);
        let next = append(&log, &[record(2, b"{}")]);
        assert_eq!(next[0].segment, 2, "the log goes on with a fresh segment 2");
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(7)), b"not a segment at all").unwrap();
        let err = SegmentLog::open(dir.path(), 1 << 20).err().unwrap();
        assert!(
            err.to_string().contains("not a jasper segment file"),
            "{err}"
        );
    }

    #[test]
    fn records_of_a_segment_deleted_after_the_index_was_read_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 4096).unwrap();
        let body = vec![b'x'; 3000];
        let mut locs = append(&log, &[record(1, &body)]);
        locs.extend(append(&log, &[record(2, &body)]));
        locs.extend(append(&log, &[record(3, &body)]));
        assert!(locs[0].segment < locs[2].segment);
        // The sweeper removes the first segment between a reader's index lookup and its read.
        log.remove(locs[0].segment).unwrap();
        let mut seen = Vec::new();
        log.read_many(&locs, &mut |_, r| {
            seen.push(r.seq);
            true
        })
        .unwrap();
        assert!(!seen.contains(&1) && seen.contains(&3), "{seen:?}");
    }

    #[test]
    fn read_many_reads_neighbours_in_one_call_and_still_checks_each_record() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 32 << 10).unwrap();
        let small = vec![b's'; 500];
        let big = vec![b'b'; 2 * READ_GAP as usize];
        // Segment 1: 0..20 small, 20 big, 21 small. Then segment 2: 22 small.
        let mut records: Vec<Record<'_>> = (0..20).map(|n| record(n, &small)).collect();
        records.push(record(20, &big));
        records.push(record(21, &small));
        let mut locs = append(&log, &records);
        locs.extend(append(&log, &[record(22, &small)]));
        assert_eq!(locs[22].segment, locs[0].segment + 1);

        let read = |wanted: &[usize]| {
            let picked: Vec<Location> = wanted.iter().map(|&i| locs[i]).collect();
            let before = log.reads.load(Ordering::Relaxed);
            let mut seen = Vec::new();
            log.read_many(&picked, &mut |i, r| {
                assert_eq!(r.json.len(), picked[i].len as usize - PAYLOAD_PREFIX);
                seen.push((i, r.seq));
                true
            })
            .unwrap();
            let calls = log.reads.load(Ordering::Relaxed) - before;
            (seen, calls)
        };
        // Neighbours, and small gaps between them, are one read.
        let (seen, calls) = read(&[0, 1, 2, 5, 9, 19]);
        assert_eq!(seen, vec![(0, 0), (1, 1), (2, 2), (3, 5), (4, 9), (5, 19)]);
        assert_eq!(calls, 1);
        // Past a gap too large, in another segment, or backwards: a new read each.
        let (seen, calls) = read(&[19, 21, 22, 3]);
        assert_eq!(seen, vec![(0, 19), (1, 21), (2, 22), (3, 3)]);
        assert_eq!(calls, 4);
        // Stopping early.
        let mut n = 0;
        log.read_many(&locs, &mut |_, _| {
            n += 1;
            n < 3
        })
        .unwrap();
        assert_eq!(n, 3);

        // A damaged record in the middle of a span is left out, not served as data; the
        // records around it are served.
        let path = dir.path().join(segment_name(locs[0].segment));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[locs[4].offset as usize + RECORD_HEADER + PAYLOAD_PREFIX + 7] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = Vec::new();
        log.read_many(&locs[..10], &mut |_, r| {
            seen.push(r.seq);
            true
        })
        .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }
}
