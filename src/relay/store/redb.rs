//! The embedded storage engine: packet bodies in an append-only log of segment files
//! ([`super::segments`]), everything else — the indexes by hash, recipient and expiry,
//! tombstones, counters, known servers — in one redb file with big-endian keys, so that inbox
//! cursors and expiry sweeps are range scans.
//!
//! Durability: `put_batch_deferred` decides each packet's fate, writes the new bodies to the
//! log, says so (a flush may start now), then builds and commits their index; `sync` flushes
//! the log (`fdatasync`), and only then may the batch be acknowledged.
//! Index commits are durable once per `checkpoint_interval`, and every durable commit flushes
//! the log first, so a durable index never points at a record that is not on disk. The index
//! records how far into the log it reaches; after a crash `open` re-reads the log from the
//! last durable position and indexes what it finds. Every acknowledged packet is in the log,
//! so none is lost. (A packet may be readable for the ~1 ms between its batch's commit and
//! the flush; only the 200 is a promise.)
//!
//! Batches do not each commit their index: the write transaction stays open across up to
//! [`MAX_HELD_BATCHES`] of them (a commit costs about as much as indexing a dozen packets),
//! and every read of packets and every other write commits it first (`settle`); reading the
//! known servers need not, as the held transaction never holds them. So a reader
//! sees every packet stored before it began, and a batch can be acknowledged once it is
//! flushed, without waiting for a commit. Should such a commit fail, packets already
//! acknowledged are missing from the index until opening the store again re-reads them from
//! the log, so the store refuses everything until then ([`super::ReopeningStore`] reopens it
//! in the running relay).
//!
//! After a failed flush, the log past the last good one is cut when the store is opened again
//! (and the index entries pointing there removed): those records were never acknowledged,
//! and the kernel may serve them from its cache although they never reached the disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

use super::segments::{Location, PAYLOAD_PREFIX, Position, Record, SegmentLog};
use super::{
    ByteBudget, InboxEnd, NewPacket, PacketView, PutLimits, PutOutcome, Store, StoreError,
    StoreStats, SweepReport, SyncTicket, UnixMillis,
};
use crate::proto::{Fingerprint, PacketHash, ServerEntry};

/// hash → expires_at (8, BE) ‖ seq (8, BE) ‖ recipient fingerprint (32) ‖ location (20).
const PACKETS: TableDefinition<&[u8; 32], &[u8; 68]> = TableDefinition::new("packets_v2");
/// recipient fingerprint (32) ‖ seq (8, BE) → expires_at (8, BE) ‖ location (20).
const BY_RECIPIENT: TableDefinition<&[u8; 40], &[u8; 28]> = TableDefinition::new("by_recipient_v2");
/// expires_at (8, BE) ‖ hash (32) → ().
const BY_EXPIRY: TableDefinition<&[u8; 40], ()> = TableDefinition::new("by_expiry");
/// hash → refused until (ms).
const TOMBSTONES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("tombstones");
/// refused until (8, BE) ‖ hash (32) → ().
const TOMBSTONE_EXPIRY: TableDefinition<&[u8; 40], ()> = TableDefinition::new("tombstone_expiry");
/// recipient fingerprint → live packets stored for it.
const INBOX_COUNTS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("inbox_counts");
/// segment id → live packets whose bodies it holds.
const SEGMENT_LIVE: TableDefinition<u64, u64> = TableDefinition::new("segment_live");
/// Schema 1's tables that schema 2 replaced (read once, by the migration).
const PACKETS_V1: TableDefinition<&[u8; 32], &[u8; 48]> = TableDefinition::new("packets");
const BODIES_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const BY_RECIPIENT_V1: TableDefinition<&[u8; 40], u64> = TableDefinition::new("by_recipient");
/// Counters: see the `META_*` keys.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Known servers by `host:port` → the mesh's record about each (opaque here; may be empty).
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");

const META_NEXT_SEQ: &str = "next_seq";
const META_PACKETS: &str = "packets";
const META_BYTES: &str = "bytes";
const META_SCHEMA: &str = "schema_version";
/// How far into the log the index reaches: segment id and byte offset.
const META_INDEXED_SEGMENT: &str = "indexed_segment";
const META_INDEXED_OFFSET: &str = "indexed_offset";
/// Where the log must be cut on the next open (segment id and byte offset; absent when
/// nothing is to be cut): the end of its last good flush, written when a store whose flush
/// failed is closed (see `RedbStore::reopen_after_failure`).
const META_CUT_SEGMENT: &str = "cut_segment";
const META_CUT_OFFSET: &str = "cut_offset";
/// See [`Store::instance`].
const META_INSTANCE: &str = "instance";
/// Version 1 kept packet bodies in redb; version 2 keeps them in the segment log.
const SCHEMA_VERSION: u64 = 2;

/// Page cache redb may use for the index; the bodies are read from the log.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
/// A segment file is closed and a new one started past this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Longest time between durable index commits: the most log a restart after a crash re-reads.
/// A durable commit writes every index page changed since the last one and stalls the write
/// path meanwhile; under load nearly every leaf of the hash index changes within a second, so
/// longer intervals write each page once for more packets (BENCHMARKS.md: 5 s against 1 s,
/// +22 % `/send` on a relay holding 1,000,000 packets, the same on an empty one), at the
/// price of rarer but longer stalls and more log to re-read after a crash. Operators choose
/// another with `[relay] checkpoint_interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// Most stored batches whose index one write transaction holds before it commits.
pub const MAX_HELD_BATCHES: u32 = 8;
/// Most packets whose index one write transaction holds before it commits.
pub const MAX_HELD_PACKETS: usize = 4096;

/// How a [`RedbStore`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// redb's page cache.
    pub cache_bytes: usize,
    /// Size at which the log starts a new segment file.
    pub segment_bytes: u64,
    /// Longest time between durable index commits.
    pub checkpoint_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// The embedded engine: redb index plus segment log.
pub struct RedbStore {
    db: Database,
    log: SegmentLog,
    checkpoint_interval: Duration,
    last_durable: Mutex<Instant>,
    recovered: u64,
    instance: u64,
    sync: Mutex<SyncState>,
    /// Held by whoever is flushing the log, so that one flush serves every waiter.
    flushing: Mutex<()>,
    /// The write transaction indexing the latest batches, not yet committed.
    held: Mutex<Option<Held>>,
    /// Tests set this to make the next commits of held batches fail.
    #[cfg(test)]
    fail_held_commits: std::sync::atomic::AtomicBool,
}

/// An open write transaction holding the index of stored batches; see the module doc.
struct Held {
    txn: WriteTransaction,
    batches: u32,
    packets: usize,
}

/// How storing one batch in a held transaction failed.
enum BatchError {
    /// Before the batch changed the transaction: what it held before is intact.
    Untouched(StoreError),
    /// While the batch was changing the transaction: it must be dropped.
    Touched(StoreError),
}

/// What storing one batch did.
struct BatchDone {
    outcomes: Vec<PutOutcome>,
    /// The batch's ticket, and how many packets it indexed; `None` if it stored nothing.
    stored: Option<(SyncTicket, usize)>,
}

/// How far the log is written and how far it is on disk, in batches.
#[derive(Debug, Default)]
struct SyncState {
    written: u64,
    synced: u64,
    /// Set when a flush or a held index commit failed: what was written since may be lost,
    /// so the store refuses to promise anything more until it is reopened. The error every
    /// write then gets.
    failed: Option<String>,
}

impl SyncState {
    /// `Ok` unless a failure made the store refuse writes; then the error each one gets.
    fn refusal(&self) -> Result<(), StoreError> {
        self.failed
            .as_ref()
            .map_or(Ok(()), |why| Err(StoreError::NeedsReopen(why.clone())))
    }
}

/// A redb error as the store reports it: after an I/O error redb refuses every operation
/// until the database is opened again, which [`super::ReopeningStore`] does.
fn engine<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        e @ (redb::Error::PreviousIo | redb::Error::Io(_)) => {
            StoreError::NeedsReopen(e.to_string())
        }
        e => StoreError::Engine(e.to_string()),
    }
}

fn cat40(a: &[u8], b: &[u8]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..a.len()].copy_from_slice(a);
    k[a.len()..].copy_from_slice(b);
    k
}

/// Why every write is refused once a flush of the log failed.
fn flush_failed(why: &str) -> String {
    format!(
        "the packet log could not be flushed to disk ({why}); nothing more is stored until the \
         store is opened again once the disk is healthy (the relay does so by itself, as does \
         a restart)"
    )
}

/// Why every write is refused once the index of acknowledged packets could not be committed.
fn index_lost(why: &str) -> String {
    format!(
        "the index of packets already stored could not be committed ({why}); nothing more is \
         stored until the store is opened again, which re-reads them from the packet log (the \
         relay does so by itself, as does a restart)"
    )
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// What `PACKETS` holds for a hash.
struct Header {
    expires_at: u64,
    seq: u64,
    recipient: [u8; 32],
    location: Location,
}

impl Header {
    fn encode(&self) -> [u8; 68] {
        let mut out = [0u8; 68];
        out[..8].copy_from_slice(&self.expires_at.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..48].copy_from_slice(&self.recipient);
        out[48..].copy_from_slice(&self.location.encode());
        out
    }

    fn decode(value: &[u8; 68]) -> Self {
        Self {
            expires_at: be_u64(&value[0..8]),
            seq: be_u64(&value[8..16]),
            recipient: value[16..48].try_into().expect("32 bytes"),
            location: Location::decode(value[48..].try_into().expect("20 bytes")),
        }
    }
}

/// What `BY_RECIPIENT` holds for an inbox entry.
fn inbox_entry(expires_at: u64, location: Location) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..8].copy_from_slice(&expires_at.to_be_bytes());
    out[8..].copy_from_slice(&location.encode());
    out
}

fn decode_inbox_entry(value: &[u8; 28]) -> (u64, Location) {
    (
        be_u64(&value[..8]),
        Location::decode(value[8..].try_into().expect("20 bytes")),
    )
}

fn wrong_record(hash: &PacketHash, loc: Location) -> StoreError {
    StoreError::Corrupt(format!(
        "the index names packet {} at {}:{} but the log holds another packet there",
        hash, loc.segment, loc.offset
    ))
}

/// The tables a packet write touches, open in one write transaction. Inbox counts and live
/// packets per segment are kept in memory for the transaction and written once each by
/// [`PacketTables::finish`].
struct PacketTables<'t> {
    packets: Table<'t, &'static [u8; 32], &'static [u8; 68]>,
    by_rcpt: Table<'t, &'static [u8; 40], &'static [u8; 28]>,
    by_exp: Table<'t, &'static [u8; 40], ()>,
    counts: Table<'t, &'static [u8; 32], u64>,
    segment_live: Table<'t, u64, u64>,
    /// recipient → (count now, whether it changed).
    count_cache: HashMap<[u8; 32], (u64, bool)>,
    /// segment → change in its live packets made by this transaction.
    live_delta: HashMap<u64, i64>,
}

impl<'t> PacketTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            packets: txn.open_table(PACKETS).map_err(engine)?,
            by_rcpt: txn.open_table(BY_RECIPIENT).map_err(engine)?,
            by_exp: txn.open_table(BY_EXPIRY).map_err(engine)?,
            counts: txn.open_table(INBOX_COUNTS).map_err(engine)?,
            segment_live: txn.open_table(SEGMENT_LIVE).map_err(engine)?,
            count_cache: HashMap::new(),
            live_delta: HashMap::new(),
        })
    }

    /// Indexes a packet whose body is at `location`, unless its hash is already stored: then
    /// nothing changes and the stored packet's header is returned. One B-tree walk for the
    /// usual, new packet. The packet counts as live in its segment; inbox counts are the
    /// caller's ([`PacketTables::bump_count`]).
    fn insert_new(
        &mut self,
        record: &Record<'_>,
        location: Location,
    ) -> Result<Option<Header>, StoreError> {
        let hash = &record.hash.0;
        let rcpt = &record.recipient.0;
        let header = Header {
            expires_at: record.expires_at,
            seq: record.seq,
            recipient: *rcpt,
            location,
        };
        let old = self
            .packets
            .insert(hash, &header.encode())
            .map_err(engine)?
            .map(|v| *v.value());
        if let Some(old) = old {
            self.packets.insert(hash, &old).map_err(engine)?;
            return Ok(Some(Header::decode(&old)));
        }
        self.by_rcpt
            .insert(
                &cat40(rcpt, &record.seq.to_be_bytes()),
                &inbox_entry(record.expires_at, location),
            )
            .map_err(engine)?;
        self.by_exp
            .insert(&cat40(&record.expires_at.to_be_bytes(), hash), ())
            .map_err(engine)?;
        *self.live_delta.entry(location.segment).or_default() += 1;
        Ok(None)
    }

    /// Removes a packet from every index, inbox count and segment live count, returning its
    /// header (`None` if it is not stored). Totals and tombstones are the caller's.
    fn remove(&mut self, hash: &[u8; 32]) -> Result<Option<Header>, StoreError> {
        let Some(value) = self.packets.remove(hash).map_err(engine)? else {
            return Ok(None);
        };
        let header = Header::decode(value.value());
        drop(value);
        self.by_rcpt
            .remove(&cat40(&header.recipient, &header.seq.to_be_bytes()))
            .map_err(engine)?;
        self.by_exp
            .remove(&cat40(&header.expires_at.to_be_bytes(), hash))
            .map_err(engine)?;
        let count = self.count(&header.recipient)?;
        self.count_cache
            .insert(header.recipient, (count.saturating_sub(1), true));
        *self.live_delta.entry(header.location.segment).or_default() -= 1;
        Ok(Some(header))
    }

    /// Counts one more live packet for `rcpt`.
    fn bump_count(&mut self, rcpt: &[u8; 32]) -> Result<(), StoreError> {
        let count = self.count(rcpt)?;
        self.count_cache.insert(*rcpt, (count + 1, true));
        Ok(())
    }

    /// Live packets stored for `rcpt`.
    fn count(&mut self, rcpt: &[u8; 32]) -> Result<u64, StoreError> {
        if let Some((n, _)) = self.count_cache.get(rcpt) {
            return Ok(*n);
        }
        let n = self
            .counts
            .get(rcpt)
            .map_err(engine)?
            .map_or(0, |v| v.value());
        self.count_cache.insert(*rcpt, (n, false));
        Ok(n)
    }

    /// Writes the inbox counts and segment live counts that changed (a segment left without a
    /// live packet loses its entry; the sweep deletes its file).
    fn finish(mut self) -> Result<(), StoreError> {
        for (rcpt, (n, changed)) in self.count_cache.drain() {
            match (changed, n) {
                (false, _) => {}
                (true, 0) => {
                    self.counts.remove(&rcpt).map_err(engine)?;
                }
                (true, n) => {
                    self.counts.insert(&rcpt, n).map_err(engine)?;
                }
            }
        }
        for (segment, delta) in self.live_delta.drain() {
            let live = self
                .segment_live
                .get(segment)
                .map_err(engine)?
                .map_or(0, |v| v.value());
            let live = live.saturating_add_signed(delta);
            if live == 0 {
                self.segment_live.remove(segment).map_err(engine)?;
            } else {
                self.segment_live.insert(segment, live).map_err(engine)?;
            }
        }
        Ok(())
    }
}

fn set_indexed(meta: &mut Table<'_, &'static str, u64>, end: Position) -> Result<(), StoreError> {
    meta.insert(META_INDEXED_SEGMENT, end.segment)
        .map_err(engine)?;
    meta.insert(META_INDEXED_OFFSET, end.offset)
        .map_err(engine)?;
    Ok(())
}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir` with default options but `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        Self::open_with(
            dir,
            StoreOptions {
                cache_bytes,
                ..StoreOptions::default()
            },
        )
    }

    /// Opens (creating if needed) `dir/relay.redb` and the log in `dir/segments`, creating
    /// `dir` too, and indexes whatever the log holds past the index's last durable commit.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_cutting(dir, options, None)
    }

    /// [`Self::open_with`] for a store that this process had open until it failed: the log is
    /// first cut at `flushed`, the end of the last flush that succeeded before the failure
    /// ([`Self::flushed`] of the failed store), and whatever the index holds past it is
    /// removed. Past that point the log may hold pages the kernel failed to write back but
    /// still serves from its cache; none of them was acknowledged, and keeping them would
    /// answer a retry of such a packet "already stored" while it may not be on disk.
    pub fn reopen_after_failure(
        dir: &Path,
        options: StoreOptions,
        flushed: Option<Position>,
    ) -> Result<Self, StoreError> {
        Self::open_cutting(dir, options, flushed)
    }

    /// How far the log is known to be on disk, as a handle that outlives this store.
    pub fn flushed(&self) -> super::segments::FlushedEnd {
        self.log.flushed()
    }

    fn open_cutting(
        dir: &Path,
        options: StoreOptions,
        cut_at: Option<Position>,
    ) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.display().to_string(),
            message,
        };
        crate::redb_file::create_private_dir(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join("relay.redb");
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                    path: dir.display().to_string(),
                },
                e if crate::redb_file::is_damaged(&e) => {
                    StoreError::Corrupt(format!("{}: {e}", path.display()))
                }
                e => open_err(e.to_string()),
            })?;
        let version = Self::check_schema(&db)?;
        let segments = dir.join("segments");
        if version == Some(1) && segments.exists() {
            // Schema 1 wrote no log: anything there is from a migration that did not finish.
            std::fs::remove_dir_all(&segments).map_err(|e| open_err(e.to_string()))?;
        }
        let log = SegmentLog::open(&segments, options.segment_bytes)?;
        let mut store = Self {
            db,
            log,
            checkpoint_interval: options.checkpoint_interval,
            last_durable: Mutex::new(Instant::now()),
            recovered: 0,
            instance: 0,
            sync: Mutex::new(SyncState::default()),
            flushing: Mutex::new(()),
            held: Mutex::new(None),
            #[cfg(test)]
            fail_held_commits: std::sync::atomic::AtomicBool::new(false),
        };
        if version == Some(1) {
            let moved = store.migrate_from_v1()?;
            tracing::info!(
                packets = moved,
                "moved the packets of a schema 1 database into the packet log"
            );
        }
        let before = store.init_schema()?;
        store.drop_unflushed(cut_at)?;
        store.recovered = store.recover()?;
        // Both draw a new instance id when they cut the log, in the commit that notes the cut.
        store.instance = store.read_instance()?;
        if store.instance != before {
            tracing::info!(
                "the end of the packet log was cut, so the store has a new instance id: clients \
                 read their inboxes from the start once"
            );
        }
        if store.recovered > 0 {
            tracing::info!(
                packets = store.recovered,
                "indexed packets from the log that the index had not made durable before the \
                 last stop"
            );
        }
        store.remove_unused_segments()?;
        Ok(store)
    }

    /// Packets `open` had to index from the log (non-zero after a crash).
    pub fn recovered_on_open(&self) -> u64 {
        self.recovered
    }

    /// The schema version of an existing database (`None` for a new one); refuses versions
    /// this build cannot read or migrate.
    fn check_schema(db: &Database) -> Result<Option<u64>, StoreError> {
        let txn = db.begin_read().map_err(engine)?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta.get(META_SCHEMA).map_err(engine)?.map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(engine(e)),
        };
        match version {
            None | Some(1) | Some(SCHEMA_VERSION) => Ok(version),
            Some(other) => Err(StoreError::Corrupt(format!(
                "database schema version {other} is not {SCHEMA_VERSION}; \
                 it was written by another version of jasper"
            ))),
        }
    }

    /// Moves a schema 1 database (packet bodies inside redb) to schema 2 in one durable
    /// transaction: bodies go to the log in their arrival order, keeping their sequence
    /// numbers, so clients' cursors stay valid. A stop in the middle leaves schema 1 as it
    /// was, and the next start begins again. Returns how many packets moved.
    fn migrate_from_v1(&self) -> Result<u64, StoreError> {
        /// Log bytes written per append while migrating.
        const CHUNK_BYTES: usize = 8 << 20;
        let txn = self.begin_durable()?;
        let mut moved = 0u64;
        {
            let old_packets = txn.open_table(PACKETS_V1).map_err(engine)?;
            let bodies = txn.open_table(BODIES_V1).map_err(engine)?;
            let mut tables = PacketTables::open(&txn)?;
            let mut batch = self.log.begin()?;
            for entry in bodies.iter().map_err(engine)? {
                let (seq, value) = entry.map_err(engine)?;
                let value = value.value();
                if value.len() < 32 {
                    return Err(StoreError::Corrupt(format!(
                        "schema 1 body #{} is shorter than its hash",
                        seq.value()
                    )));
                }
                let hash: [u8; 32] = value[..32].try_into().expect("32 bytes");
                let Some(header) = old_packets.get(&hash).map_err(engine)? else {
                    continue;
                };
                let header = header.value();
                let record = Record {
                    seq: seq.value(),
                    expires_at: be_u64(&header[..8]),
                    hash: PacketHash(hash),
                    recipient: Fingerprint(header[16..48].try_into().expect("32 bytes")),
                    json: &value[32..],
                };
                if batch.len() >= CHUNK_BYTES {
                    batch.write()?;
                    batch = self.log.begin()?;
                }
                let location = batch.push(&record);
                // Inbox counts carry over from schema 1 as they are (the same table).
                if tables.insert_new(&record, location)?.is_none() {
                    moved += 1;
                }
            }
            let end = batch.end();
            batch.write()?;
            tables.finish()?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            set_indexed(&mut meta, end)?;
            meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(engine)?;
        }
        txn.delete_table(PACKETS_V1).map_err(engine)?;
        txn.delete_table(BODIES_V1).map_err(engine)?;
        txn.delete_table(BY_RECIPIENT_V1).map_err(engine)?;
        // Not `commit_durable`: these appends are not counted as batches, so flush directly.
        self.log.sync()?;
        txn.commit().map_err(engine)?;
        Ok(moved)
    }
    /// Creates the tables a new database lacks; returns its instance id (made now if new).
    fn init_schema(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        let instance = {
            txn.open_table(PACKETS).map_err(engine)?;
            txn.open_table(BY_RECIPIENT).map_err(engine)?;
            txn.open_table(BY_EXPIRY).map_err(engine)?;
            txn.open_table(TOMBSTONES).map_err(engine)?;
            txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
            txn.open_table(INBOX_COUNTS).map_err(engine)?;
            txn.open_table(SEGMENT_LIVE).map_err(engine)?;
            txn.open_table(SERVERS).map_err(engine)?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            if meta.get(META_SCHEMA).map_err(engine)?.is_none() {
                meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(engine)?;
            }
            let kept = meta.get(META_INSTANCE).map_err(engine)?.map(|v| v.value());
            match kept {
                Some(instance) => instance,
                None => {
                    let instance = super::new_instance_id();
                    meta.insert(META_INSTANCE, instance).map_err(engine)?;
                    instance
                }
            }
        };
        txn.commit().map_err(engine)?;
        Ok(instance)
    }

    /// Drops from the index the packets whose records read back damaged (given by expiry and
    /// location: a damaged record's own hash cannot be trusted), so that they are neither served
    /// nor advertised to peers as held, and a sound copy can come back through sync. No
    /// tombstone is left. A failure here is logged: the packets stay left out of answers.
    fn forget_damaged(&self, damaged: impl Iterator<Item = (u64, Location)>) {
        let damaged: Vec<(u64, Location)> = damaged.collect();
        if damaged.is_empty() {
            return;
        }
        let forget = || -> Result<u64, StoreError> {
            let txn = self.begin_durable()?;
            let mut forgotten = 0;
            {
                let mut tables = PacketTables::open(&txn)?;
                let mut meta = txn.open_table(META).map_err(engine)?;
                let mut n_packets = meta_get(&meta, META_PACKETS)?;
                let mut n_bytes = meta_get(&meta, META_BYTES)?;
                for (expires_at, location) in &damaged {
                    let at = expires_at.to_be_bytes();
                    let candidates: Vec<[u8; 32]> = tables
                        .by_exp
                        .range::<&[u8; 40]>(&cat40(&at, &[0; 32])..=&cat40(&at, &[0xff; 32]))
                        .map_err(engine)?
                        .map(|e| {
                            e.map(|(k, _)| k.value()[8..].try_into().expect("32 bytes"))
                                .map_err(engine)
                        })
                        .collect::<Result<_, _>>()?;
                    for hash in candidates {
                        let here = tables
                            .packets
                            .get(&hash)
                            .map_err(engine)?
                            .is_some_and(|v| Header::decode(v.value()).location == *location);
                        if here && let Some(header) = tables.remove(&hash)? {
                            n_packets = n_packets.saturating_sub(1);
                            n_bytes = n_bytes.saturating_sub(json_len(header.location));
                            forgotten += 1;
                        }
                    }
                }
                meta.insert(META_PACKETS, n_packets).map_err(engine)?;
                meta.insert(META_BYTES, n_bytes).map_err(engine)?;
                tables.finish()?;
            }
            self.commit_durable(txn)?;
            Ok(forgotten)
        };
        match forget() {
            Ok(n) => tracing::error!(
                packets = n,
                "dropped damaged packets from the index; peers may send sound copies again"
            ),
            Err(e) => tracing::error!(error = %e, "could not drop damaged packets from the index"),
        }
    }

    /// The instance id kept in the database (see [`Store::instance`]).
    fn read_instance(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let meta = txn.open_table(META).map_err(engine)?;
        Ok(meta
            .get(META_INSTANCE)
            .map_err(engine)?
            .map_or(0, |v| v.value()))
    }

    /// Indexes every record in the log past the position the index records, in one durable
    /// commit. Returns how many packets were indexed. A torn tail cut on the way draws a new
    /// instance id in the same commit: the cut records' sequence numbers, which a fetch may
    /// have handed out (an index commit can precede the flush), go to new packets.
    fn recover(&self) -> Result<u64, StoreError> {
        let txn = self.begin_durable()?;
        let mut indexed = 0u64;
        {
            let mut tables = PacketTables::open(&txn)?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            let from = Position {
                segment: meta_get(&meta, META_INDEXED_SEGMENT)?,
                offset: meta_get(&meta, META_INDEXED_OFFSET)?,
            };
            let mut next_seq = meta_get(&meta, META_NEXT_SEQ)?.max(1);
            let mut n_packets = meta_get(&meta, META_PACKETS)?;
            let mut n_bytes = meta_get(&meta, META_BYTES)?;
            let report = self.log.scan(from, &mut |location, record| {
                if tables.insert_new(&record, location)?.is_some() {
                    return Ok(());
                }
                tables.bump_count(&record.recipient.0)?;
                next_seq = next_seq.max(record.seq + 1);
                n_packets += 1;
                n_bytes += record.json.len() as u64;
                indexed += 1;
                Ok(())
            })?;
            meta.insert(META_NEXT_SEQ, next_seq).map_err(engine)?;
            meta.insert(META_PACKETS, n_packets).map_err(engine)?;
            meta.insert(META_BYTES, n_bytes).map_err(engine)?;
            set_indexed(&mut meta, report.end)?;
            if report.damaged_tails > 0 {
                meta.insert(META_INSTANCE, super::new_instance_id())
                    .map_err(engine)?;
            }
            tables.finish()?;
        }
        txn.commit().map_err(engine)?;
        Ok(indexed)
    }

    /// Notes in the index, durably, where the log must be cut on the next open: the end of
    /// its last good flush. Called when a store whose flush failed is closed, so that a
    /// restart, not only [`super::ReopeningStore`], keeps nothing past it. Held batches are
    /// dropped, not committed: those acknowledged are in the log before the cut, and the next
    /// open indexes them again.
    fn remember_cut(&self) -> Result<(), StoreError> {
        let Some(at) = self.log.flushed().get() else {
            return Ok(());
        };
        drop(self.lock_held().take());
        let txn = self.begin_unsettled(true)?;
        {
            let mut meta = txn.open_table(META).map_err(engine)?;
            let earlier = remembered_cut(&meta)?.is_some_and(|cut| cut <= at);
            if !earlier {
                meta.insert(META_CUT_SEGMENT, at.segment).map_err(engine)?;
                meta.insert(META_CUT_OFFSET, at.offset).map_err(engine)?;
            }
        }
        txn.commit().map_err(engine)
    }

    /// Removes from the index every packet whose record lies at or past `cut_at` (or the cut
    /// the index remembers, whichever is earlier), then cuts the log there (see
    /// [`Self::reopen_after_failure`]).
    ///
    /// The entries to remove are found in the index itself, not by reading the log: past the
    /// cut the log may read as anything (zeros, after a reboot lost those pages). And the cut
    /// stays noted in the index until the log is cut, in two durable commits around the
    /// truncation, so a stop anywhere in between repeats the work on the next open rather
    /// than re-indexing what lies past the cut. The first of those commits also draws a new
    /// instance id: sequence numbers past the cut, which a fetch may have handed out, go to new
    /// packets.
    fn drop_unflushed(&self, cut_at: Option<Position>) -> Result<(), StoreError> {
        let remembered = {
            let txn = self.read_committed()?;
            remembered_cut(&txn.open_table(META).map_err(engine)?)?
        };
        let Some(at) = cut_at.into_iter().chain(remembered).min() else {
            return Ok(());
        };
        let at_or_past = |location: Location| {
            Position {
                segment: location.segment,
                offset: location.offset,
            } >= at
        };
        let txn = self.begin_durable()?;
        let mut unindexed = 0u64;
        {
            let mut tables = PacketTables::open(&txn)?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.insert(META_CUT_SEGMENT, at.segment).map_err(engine)?;
            meta.insert(META_CUT_OFFSET, at.offset).map_err(engine)?;
            meta.insert(META_INSTANCE, super::new_instance_id())
                .map_err(engine)?;
            let past: Vec<[u8; 32]> = tables
                .packets
                .iter()
                .map_err(engine)?
                .filter_map(|entry| match entry {
                    Ok((hash, value)) => at_or_past(Header::decode(value.value()).location)
                        .then(|| Ok(*hash.value())),
                    Err(e) => Some(Err(engine(e))),
                })
                .collect::<Result<_, _>>()?;
            let mut n_packets = meta_get(&meta, META_PACKETS)?;
            let mut n_bytes = meta_get(&meta, META_BYTES)?;
            for hash in &past {
                if let Some(header) = tables.remove(hash)? {
                    n_packets = n_packets.saturating_sub(1);
                    n_bytes = n_bytes.saturating_sub(json_len(header.location));
                    unindexed += 1;
                }
            }
            let indexed = Position {
                segment: meta_get(&meta, META_INDEXED_SEGMENT)?,
                offset: meta_get(&meta, META_INDEXED_OFFSET)?,
            };
            if indexed > at {
                set_indexed(&mut meta, at)?;
            }
            meta.insert(META_PACKETS, n_packets).map_err(engine)?;
            meta.insert(META_BYTES, n_bytes).map_err(engine)?;
            tables.finish()?;
            // Segments past the cut are deleted below; their ids will be used again.
            let mut live = txn.open_table(SEGMENT_LIVE).map_err(engine)?;
            let later: Vec<u64> = live
                .range(at.segment + 1..)
                .map_err(engine)?
                .map(|e| e.map(|(k, _)| k.value()).map_err(engine))
                .collect::<Result<_, _>>()?;
            for segment in later {
                live.remove(segment).map_err(engine)?;
            }
        }
        txn.commit().map_err(engine)?;
        let bytes = self.log.truncate(at)?;
        let txn = self.begin_durable()?;
        {
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.remove(META_CUT_SEGMENT).map_err(engine)?;
            meta.remove(META_CUT_OFFSET).map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
        tracing::warn!(
            bytes,
            unindexed,
            "dropped the end of the packet log written after its last successful flush (none \
             of it was acknowledged; senders were told to send again)"
        );
        Ok(())
    }

    /// Deletes segment files below the index's durable position that hold no live packet
    /// (left behind when a stop came between a sweep's commit and the deletion).
    fn remove_unused_segments(&self) -> Result<(), StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META).map_err(engine)?;
        let indexed = meta_get(&meta, META_INDEXED_SEGMENT)?;
        let live = txn.open_table(SEGMENT_LIVE).map_err(engine)?;
        for id in unused_segments(&self.log, &live, indexed)? {
            self.log.remove(id)?;
        }
        Ok(())
    }

    fn begin_durable(&self) -> Result<WriteTransaction, StoreError> {
        self.begin(true)
    }

    /// Commits the index held open for the latest batches (see the module doc), so that what
    /// follows sees every packet stored so far. Every read of packets and every write but a
    /// batch's calls it.
    fn settle(&self) -> Result<(), StoreError> {
        let mut held = self.lock_held();
        match held.take() {
            Some(h) => self.commit_held(h.txn, h.batches > 0),
            None => Ok(()),
        }
    }

    /// Commits `txn`; if that fails and it holds batches that may have been acknowledged,
    /// refuses everything until opening the store again re-indexes them.
    fn commit_held(&self, txn: WriteTransaction, acknowledged: bool) -> Result<(), StoreError> {
        #[cfg(test)]
        if self
            .fail_held_commits
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(self.lose_index(
                acknowledged,
                StoreError::Engine("injected commit failure".into()),
            ));
        }
        txn.commit()
            .map_err(|e| self.lose_index(acknowledged, engine(e)))
    }

    /// Notes that the index of acknowledged packets was lost (when it was) and passes `e` on.
    fn lose_index(&self, acknowledged: bool, e: StoreError) -> StoreError {
        if !acknowledged {
            return e;
        }
        tracing::error!(error = %e, "committing the index of stored packets failed; refusing writes");
        let mut state = self.lock_sync();
        if state.failed.is_none() {
            state.failed = Some(index_lost(&e.to_string()));
        }
        StoreError::NeedsReopen(e.to_string())
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read transaction that sees every packet stored so far.
    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.settle()?;
        self.read_committed()
    }

    /// A read transaction over what is committed, without committing held batches first.
    /// Enough for the known servers: every write of them commits on its own, and a held
    /// transaction holds only packets, so their reads need not wait behind a batch or a
    /// checkpoint (the broadcaster reads the list every second from an async worker).
    fn read_committed(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().map_err(engine)
    }

    fn begin(&self, durable: bool) -> Result<WriteTransaction, StoreError> {
        self.settle()?;
        self.begin_unsettled(durable)
    }

    /// A write transaction; the caller has made sure none is held.
    fn begin_unsettled(&self, durable: bool) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(engine)?;
        Ok(txn)
    }

    fn checkpoint_due(&self) -> bool {
        self.last_durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            >= self.checkpoint_interval
    }

    fn note_durable(&self) {
        *self.last_durable.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Makes every index commit so far durable, so the next open has nothing to re-read.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.commit_durable(self.begin_durable()?)
    }

    /// Commits a durable transaction. Index entries committed before it may point at log
    /// records still only in the page cache, and this commit makes them durable, so the log
    /// is flushed first. (Called holding the write transaction: no batch can slip in between.)
    fn commit_durable(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        self.sync(self.written())?;
        txn.commit().map_err(engine)?;
        self.note_durable();
        Ok(())
    }

    fn lock_sync(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ticket of the last batch written to the log.
    fn written(&self) -> SyncTicket {
        SyncTicket(self.lock_sync().written)
    }

    /// The ticket up to which the log is known to be on disk.
    #[cfg(test)]
    fn synced(&self) -> SyncTicket {
        SyncTicket(self.lock_sync().synced)
    }

    fn refuse_if_failed(&self) -> Result<(), StoreError> {
        self.lock_sync().refusal()
    }

    /// Makes the next flushes of the packet log fail (or not), as a failing disk would.
    #[cfg(test)]
    pub(crate) fn fail_log_syncs(&self, fail: bool) {
        self.log
            .fail_syncs
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes the next commits of held batches fail (or not), as a full disk would.
    #[cfg(test)]
    pub(crate) fn fail_held_commits(&self, fail: bool) {
        self.fail_held_commits
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stores one batch in `txn`: decides every packet, appends the new ones to the log,
    /// calls `written` with the batch's ticket, then indexes them (uncommitted).
    fn store_batch(
        &self,
        txn: &WriteTransaction,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
        written: &mut dyn FnMut(SyncTicket),
    ) -> Result<BatchDone, BatchError> {
        use BatchError::{Touched, Untouched};
        let mut outcomes = Vec::with_capacity(packets.len());
        // Until the log is written, the batch only reads the transaction.
        let mut tables = PacketTables::open(txn).map_err(Untouched)?;
        let tombs = txn
            .open_table(TOMBSTONES)
            .map_err(|e| Untouched(engine(e)))?;
        let mut meta = txn.open_table(META).map_err(|e| Untouched(engine(e)))?;
        let decided = (|| {
            let mut next_seq = meta_get(&meta, META_NEXT_SEQ)?.max(1);
            let mut n_packets = meta_get(&meta, META_PACKETS)?;
            let mut n_bytes = meta_get(&meta, META_BYTES)?;
            let any_tombstones = tombs.len().map_err(engine)? > 0;

            // First every decision, and the new packets appended to the log; ...
            let mut batch = self.log.begin()?;
            let mut new = Vec::new();
            let mut in_batch = std::collections::HashSet::new();
            for p in packets {
                let hash = &p.hash.0;
                let tombstoned = any_tombstones
                    && tombs
                        .get(hash)
                        .map_err(engine)?
                        .is_some_and(|t| t.value() > now);
                if tombstoned {
                    outcomes.push(PutOutcome::Tombstoned);
                    continue;
                }
                // A packet already stored is a duplicate even when a new one would be refused.
                if in_batch.contains(hash) {
                    outcomes.push(PutOutcome::Duplicate);
                    continue;
                }
                if let Some(v) = tables.packets.get(hash).map_err(engine)? {
                    outcomes.push(if Header::decode(v.value()).expires_at > now {
                        PutOutcome::Duplicate
                    } else {
                        PutOutcome::Tombstoned
                    });
                    continue;
                }
                let size = p.json.len() as u64;
                if p.expires_at <= now {
                    outcomes.push(PutOutcome::Tombstoned);
                    continue;
                }
                if tables.count(&p.recipient.0)? >= limits.max_inbox_packets {
                    outcomes.push(PutOutcome::InboxFull);
                    continue;
                }
                if n_bytes + size > limits.max_stored_bytes {
                    outcomes.push(PutOutcome::StoreFull);
                    continue;
                }
                let record = Record {
                    seq: next_seq,
                    expires_at: p.expires_at,
                    hash: p.hash,
                    recipient: p.recipient,
                    json: &p.json,
                };
                new.push((record, batch.push(&record)));
                in_batch.insert(*hash);
                tables.bump_count(&p.recipient.0)?;
                next_seq += 1;
                n_packets += 1;
                n_bytes += size;
                outcomes.push(PutOutcome::Stored { seq: record.seq });
            }
            if new.is_empty() {
                return Ok(None);
            }
            let end = batch.end();
            // ... written before the index that points at them commits (a failed append
            // leaves nothing of the batch in the log or the transaction) and handed to the
            // flush at once, so the disk works while the index is built.
            batch.write()?;
            Ok(Some((new, end, next_seq, n_packets, n_bytes)))
        })()
        .map_err(Untouched)?;
        let Some((new, end, next_seq, n_packets, n_bytes)) = decided else {
            return Ok(BatchDone {
                outcomes,
                stored: None,
            });
        };
        let ticket = {
            let mut state = self.lock_sync();
            state.written += 1;
            SyncTicket(state.written)
        };
        written(ticket);
        let indexed = new.len();
        (|| {
            for (record, location) in new {
                if tables.insert_new(&record, location)?.is_some() {
                    return Err(StoreError::Corrupt(format!(
                        "packet {} appeared in the index while its batch was being stored",
                        record.hash
                    )));
                }
            }
            meta.insert(META_NEXT_SEQ, next_seq).map_err(engine)?;
            meta.insert(META_PACKETS, n_packets).map_err(engine)?;
            meta.insert(META_BYTES, n_bytes).map_err(engine)?;
            set_indexed(&mut meta, end)?;
            tables.finish()
        })()
        .map_err(Touched)?;
        Ok(BatchDone {
            outcomes,
            stored: Some((ticket, indexed)),
        })
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // A flush may have failed where no batch saw it (closing a full segment).
        if self.refuse_if_failed().is_err() || self.log.has_failed_flush() {
            if let Err(e) = self.remember_cut() {
                tracing::warn!(
                    error = %e,
                    "could not note where the packet log must be cut; only this process's \
                     own reopening cuts it"
                );
            }
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "the last index checkpoint failed; the next start re-reads the log");
        }
    }
}

/// The cut [`RedbStore::remember_cut`] noted, if any.
fn remembered_cut(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Option<Position>, StoreError> {
    let segment = meta
        .get(META_CUT_SEGMENT)
        .map_err(engine)?
        .map(|v| v.value());
    let offset = meta
        .get(META_CUT_OFFSET)
        .map_err(engine)?
        .map(|v| v.value());
    Ok(segment
        .zip(offset)
        .map(|(segment, offset)| Position { segment, offset }))
}

/// The segment files below the index position `indexed` that hold no live packet (`live`: live
/// packets per segment). Below that position every record of a segment is counted, so these
/// can go; the active segment and those after the position never are.
fn unused_segments(
    log: &SegmentLog,
    live: &impl ReadableTable<u64, u64>,
    indexed: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut unused = Vec::new();
    for id in log.segments()? {
        if id < indexed && live.get(id).map_err(engine)?.is_none_or(|v| v.value() == 0) {
            unused.push(id);
        }
    }
    Ok(unused)
}

fn meta_get(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(meta.get(key).map_err(engine)?.map_or(0, |v| v.value()))
}

/// Bytes of JSON in the record at `location`.
fn json_len(location: Location) -> u64 {
    u64::from(location.len).saturating_sub(PAYLOAD_PREFIX as u64)
}

impl Store for RedbStore {
    fn put_batch_deferred(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
        written: &mut dyn FnMut(SyncTicket),
    ) -> Result<(Vec<PutOutcome>, SyncTicket), StoreError> {
        self.refuse_if_failed()?;
        // Held for the whole batch: a reader settling now waits for it, so it cannot miss a
        // batch that is out of the slot but not committed.
        let mut held = self.lock_held();
        let mut h = match held.take() {
            Some(h) => h,
            None => Held {
                txn: self.begin_unsettled(false)?,
                batches: 0,
                packets: 0,
            },
        };
        // Batches already in the transaction may have been acknowledged.
        let acknowledged = h.batches > 0;
        match self.store_batch(&h.txn, packets, limits, now, written) {
            Ok(BatchDone {
                outcomes,
                stored: None,
            }) => {
                // Nothing changed; a duplicate is only as durable as the batch that stored it.
                if acknowledged {
                    *held = Some(h);
                } else {
                    h.txn.abort().map_err(engine)?;
                }
                Ok((outcomes, self.written()))
            }
            Ok(BatchDone {
                outcomes,
                stored: Some((ticket, indexed)),
            }) => {
                h.batches += 1;
                h.packets += indexed;
                if self.checkpoint_due() {
                    h.txn
                        .set_durability(Durability::Immediate)
                        .map_err(|e| self.lose_index(acknowledged, engine(e)))?;
                    self.commit_durable(h.txn)
                        .map_err(|e| self.lose_index(acknowledged, e))?;
                } else if h.batches >= MAX_HELD_BATCHES || h.packets >= MAX_HELD_PACKETS {
                    self.commit_held(h.txn, acknowledged)?;
                } else {
                    *held = Some(h);
                }
                Ok((outcomes, ticket))
            }
            Err(BatchError::Untouched(e)) => {
                if acknowledged {
                    *held = Some(h);
                }
                Err(e)
            }
            Err(BatchError::Touched(e)) => {
                drop(h);
                Err(self.lose_index(acknowledged, e))
            }
        }
    }

    fn sync(&self, ticket: SyncTicket) -> Result<(), StoreError> {
        let done = |state: &SyncState| state.refusal().map(|()| state.synced >= ticket.0);
        if done(&self.lock_sync())? {
            return Ok(());
        }
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        // Whoever flushed while this thread waited may have covered this ticket too.
        let target = {
            let state = self.lock_sync();
            if done(&state)? {
                return Ok(());
            }
            state.written
        };
        match self.log.sync() {
            Ok(()) => {
                let mut state = self.lock_sync();
                state.synced = state.synced.max(target);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "flushing the packet log failed; refusing writes");
                let why = flush_failed(&e.to_string());
                self.lock_sync().failed = Some(why.clone());
                Err(StoreError::NeedsReopen(why))
            }
        }
    }

    fn get_many(
        &self,
        hashes: &[PacketHash],
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<(), StoreError> {
        let mut page = Vec::new();
        {
            let txn = self.read()?;
            let table = txn.open_table(PACKETS).map_err(engine)?;
            let mut budget = ByteBudget::new(max_bytes);
            for hash in hashes {
                let Some(value) = table.get(&hash.0).map_err(engine)? else {
                    continue;
                };
                let header = Header::decode(value.value());
                if header.expires_at <= now {
                    continue;
                }
                if !budget.take(json_len(header.location)) {
                    break;
                }
                page.push((*hash, header));
            }
        }
        let locations: Vec<Location> = page.iter().map(|(_, h)| h.location).collect();
        let mut wrong = None;
        let damaged = self.log.read_many(&locations, &mut |i, record| {
            let (hash, header) = &page[i];
            if record.hash != *hash {
                wrong = Some(wrong_record(hash, header.location));
                return false;
            }
            visit(PacketView {
                hash: *hash,
                seq: header.seq,
                expires_at: header.expires_at,
                json: record.json,
            });
            true
        })?;
        self.forget_damaged(
            damaged
                .iter()
                .map(|&i| (page[i].1.expires_at, page[i].1.location)),
        );
        wrong.map_or(Ok(()), Err)
    }

    fn inbox(
        &self,
        recipient: &Fingerprint,
        after: u64,
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<InboxEnd, StoreError> {
        let mut end = InboxEnd {
            cursor: after,
            more: false,
        };
        // (seq, expires_at, location) of the packets this page answers with.
        let mut page = Vec::new();
        {
            let txn = self.read()?;
            let index = txn.open_table(BY_RECIPIENT).map_err(engine)?;
            let start = cat40(&recipient.0, &after.saturating_add(1).to_be_bytes());
            let last = cat40(&recipient.0, &u64::MAX.to_be_bytes());
            let mut budget = ByteBudget::new(max_bytes);
            for entry in index.range::<&[u8; 40]>(&start..=&last).map_err(engine)? {
                let (key, value) = entry.map_err(engine)?;
                let seq = be_u64(&key.value()[32..]);
                let (expires_at, location) = decode_inbox_entry(value.value());
                if expires_at > now {
                    if !budget.take(json_len(location)) {
                        end.more = true;
                        break;
                    }
                    page.push((seq, expires_at, location));
                }
                end.cursor = seq;
            }
        }
        let locations: Vec<Location> = page.iter().map(|p| p.2).collect();
        let mut wrong = None;
        let damaged = self.log.read_many(&locations, &mut |i, record| {
            let (seq, expires_at, location) = page[i];
            if record.seq != seq || record.recipient != *recipient {
                wrong = Some(wrong_record(&record.hash, location));
                return false;
            }
            visit(PacketView {
                hash: record.hash,
                seq,
                expires_at,
                json: record.json,
            });
            true
        })?;
        self.forget_damaged(damaged.iter().map(|&i| (page[i].1, page[i].2)));
        wrong.map_or(Ok(end), Err)
    }

    fn for_each_hash(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(PACKETS).map_err(engine)?;
        for entry in table.iter().map_err(engine)? {
            let (key, value) = entry.map_err(engine)?;
            if Header::decode(value.value()).expires_at <= now {
                continue;
            }
            if !visit(PacketHash(*key.value())) {
                break;
            }
        }
        Ok(())
    }

    fn for_each_by_expiry(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(UnixMillis, PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BY_EXPIRY).map_err(engine)?;
        let start = cat40(&now.saturating_add(1).to_be_bytes(), &[0; 32]);
        for entry in table.range::<&[u8; 40]>(&start..).map_err(engine)? {
            let (key, _) = entry.map_err(engine)?;
            let key = key.value();
            let expires = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
            let hash = PacketHash(key[8..].try_into().expect("32 bytes"));
            if !visit(expires, hash) {
                break;
            }
        }
        Ok(())
    }

    fn contains(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(PACKETS).map_err(engine)?;
        Ok(table
            .get(&hash.0)
            .map_err(engine)?
            .is_some_and(|v| Header::decode(v.value()).expires_at > now))
    }

    fn tombstoned(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        let txn = self.read()?;
        let tombs = txn.open_table(TOMBSTONES).map_err(engine)?;
        if tombs
            .get(&hash.0)
            .map_err(engine)?
            .is_some_and(|t| t.value() > now)
        {
            return Ok(true);
        }
        let table = txn.open_table(PACKETS).map_err(engine)?;
        Ok(table
            .get(&hash.0)
            .map_err(engine)?
            .is_some_and(|v| Header::decode(v.value()).expires_at <= now))
    }

    fn sweep(
        &self,
        now: UnixMillis,
        tombstone_horizon_ms: u64,
        batch: usize,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        // Whether the index changed (stale expiry keys removed count too).
        let mut changed = false;
        let txn = self.begin_durable()?;
        let indexed_segment = {
            let meta = txn.open_table(META).map_err(engine)?;
            meta_get(&meta, META_INDEXED_SEGMENT)?
        };
        {
            let end = cat40(&now.to_be_bytes(), &[0xff; 32]);
            let mut tables = PacketTables::open(&txn)?;
            let due: Vec<[u8; 40]> = tables
                .by_exp
                .range::<&[u8; 40]>(..=&end)
                .map_err(engine)?
                .take(batch)
                .map(|e| e.map(|(k, _)| *k.value()).map_err(engine))
                .collect::<Result<_, _>>()?;
            if !due.is_empty() {
                changed = true;
                let mut tombs = txn.open_table(TOMBSTONES).map_err(engine)?;
                let mut tomb_exp = txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
                let mut meta = txn.open_table(META).map_err(engine)?;
                let mut n_packets = meta_get(&meta, META_PACKETS)?;
                let mut n_bytes = meta_get(&meta, META_BYTES)?;
                for key in &due {
                    // Removed here too in case the packet is gone: the key must not stay due.
                    tables.by_exp.remove(key).map_err(engine)?;
                    let hash: [u8; 32] = key[8..].try_into().expect("32 bytes");
                    let Some(header) = tables.remove(&hash)? else {
                        continue;
                    };
                    let until = header.expires_at.saturating_add(tombstone_horizon_ms);
                    if until > now {
                        tombs.insert(&hash, until).map_err(engine)?;
                        tomb_exp
                            .insert(&cat40(&until.to_be_bytes(), &hash), ())
                            .map_err(engine)?;
                    }
                    n_packets = n_packets.saturating_sub(1);
                    n_bytes = n_bytes.saturating_sub(json_len(header.location));
                    report.expired += 1;
                }
                meta.insert(META_PACKETS, n_packets).map_err(engine)?;
                meta.insert(META_BYTES, n_bytes).map_err(engine)?;
            }
            tables.finish()?;

            let mut tomb_exp = txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
            let done: Vec<[u8; 40]> = tomb_exp
                .range::<&[u8; 40]>(..=&end)
                .map_err(engine)?
                .take(batch)
                .map(|e| e.map(|(k, _)| *k.value()).map_err(engine))
                .collect::<Result<_, _>>()?;
            if !done.is_empty() {
                changed = true;
                let mut tombs = txn.open_table(TOMBSTONES).map_err(engine)?;
                for key in &done {
                    tomb_exp.remove(key).map_err(engine)?;
                    let hash: [u8; 32] = key[8..].try_into().expect("32 bytes");
                    let until = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
                    // A later expiry of the same hash may have replaced this tombstone.
                    if tombs
                        .get(&hash)
                        .map_err(engine)?
                        .is_some_and(|v| v.value() == until)
                    {
                        tombs.remove(&hash).map_err(engine)?;
                    }
                    report.tombstones_forgotten += 1;
                }
            }
        }
        // Below the durable index position every record of a segment is counted, so one
        // counting nothing live holds nothing live: emptied now, or earlier while it was the
        // newest indexed segment (not yet below the position), or left by a deletion that
        // failed. (A stop before the deletion leaves files `open` removes.)
        let unused = unused_segments(
            &self.log,
            &txn.open_table(SEGMENT_LIVE).map_err(engine)?,
            indexed_segment,
        )?;
        if !changed && unused.is_empty() {
            txn.abort().map_err(engine)?;
            return Ok(report);
        }
        // Durable before any deletion: the position read above must not move back.
        self.commit_durable(txn)?;
        // A deletion that fails is tried again by the next sweep; the expiry work above is
        // committed either way.
        for segment in unused {
            if let Err(e) = self.log.remove(segment) {
                tracing::warn!(segment, error = %e, "could not delete an unused segment; will retry");
            }
        }
        Ok(report)
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META).map_err(engine)?;
        Ok(StoreStats {
            packets: meta_get(&meta, META_PACKETS)?,
            bytes: meta_get(&meta, META_BYTES)?,
        })
    }

    fn servers(&self) -> Result<Vec<ServerEntry>, StoreError> {
        let txn = self.read_committed()?;
        let table = txn.open_table(SERVERS).map_err(engine)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(engine)? {
            let (key, _) = entry.map_err(engine)?;
            let entry = key.value().parse::<ServerEntry>().map_err(|e| {
                StoreError::Corrupt(format!("stored server {:?}: {e}", key.value()))
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    fn peer_records(&self) -> Result<Vec<(ServerEntry, Vec<u8>)>, StoreError> {
        let txn = self.read_committed()?;
        let table = txn.open_table(SERVERS).map_err(engine)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(engine)? {
            let (key, value) = entry.map_err(engine)?;
            let server = key.value().parse::<ServerEntry>().map_err(|e| {
                StoreError::Corrupt(format!("stored server {:?}: {e}", key.value()))
            })?;
            out.push((server, value.value().to_vec()));
        }
        Ok(out)
    }

    fn save_peer_record(&self, server: &ServerEntry, record: &[u8]) -> Result<(), StoreError> {
        let txn = self.begin_durable()?;
        {
            let mut table = txn.open_table(SERVERS).map_err(engine)?;
            table
                .insert(server.authority().as_str(), record)
                .map_err(engine)?;
        }
        self.commit_durable(txn)
    }

    fn add_servers(
        &self,
        servers: &[ServerEntry],
        max_known: usize,
    ) -> Result<Vec<ServerEntry>, StoreError> {
        let txn = self.begin_durable()?;
        let mut added = Vec::new();
        {
            let mut table = txn.open_table(SERVERS).map_err(engine)?;
            let mut known = table.len().map_err(engine)? as usize;
            for server in servers {
                if known >= max_known {
                    break;
                }
                let key = server.authority();
                if table.get(key.as_str()).map_err(engine)?.is_none() {
                    table.insert(key.as_str(), [].as_slice()).map_err(engine)?;
                    known += 1;
                    added.push(server.clone());
                }
            }
        }
        self.commit_durable(txn)?;
        Ok(added)
    }

    fn remove_servers(&self, servers: &[ServerEntry]) -> Result<usize, StoreError> {
        let txn = self.begin_durable()?;
        let mut removed = 0;
        {
            let mut table = txn.open_table(SERVERS).map_err(engine)?;
            for server in servers {
                if table
                    .remove(server.authority().as_str())
                    .map_err(engine)?
                    .is_some()
                {
                    removed += 1;
                }
            }
        }
        self.commit_durable(txn)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_engine_passes_the_conformance_suite() {
        super::super::conformance::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
            (store, dir)
        });
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = super::super::conformance::packet(1, 1, 10_000);
        let instance = {
            let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
            let out = store
                .put_batch(
                    std::slice::from_ref(&p),
                    super::super::conformance::LIMITS,
                    0,
                )
                .unwrap();
            assert_eq!(out, vec![PutOutcome::Stored { seq: 1 }]);
            store.instance()
        };
        let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
        assert_eq!(
            store.instance(),
            instance,
            "cursors stay valid across a restart"
        );
        let got = super::super::conformance::get_many(&store, &[p.hash], u64::MAX, 0);
        assert_eq!(got[0].json, p.json);
        assert_eq!(got[0].expires_at, 10_000, "reopening changes no expiry");
        // Sequence numbers continue after a restart, so cursors stay valid.
        let q = super::super::conformance::packet(2, 1, 10_000);
        let out = store
            .put_batch(&[q], super::super::conformance::LIMITS, 0)
            .unwrap();
        assert_eq!(out, vec![PutOutcome::Stored { seq: 2 }]);
    }

    use super::super::conformance::{LIMITS, inbox, packet};

    /// Options that make every index commit after the first non-durable, as between two
    /// checkpoints under load.
    fn lazy(segment_bytes: u64) -> StoreOptions {
        StoreOptions {
            cache_bytes: 4 << 20,
            segment_bytes,
            checkpoint_interval: Duration::from_secs(3600),
        }
    }

    /// What `kill -9` leaves: the files as the kernel has them while the store is open.
    fn crash_image(from: &Path, to: &Path) {
        std::fs::create_dir_all(to.join("segments")).unwrap();
        std::fs::copy(from.join("relay.redb"), to.join("relay.redb")).unwrap();
        for entry in std::fs::read_dir(from.join("segments")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join("segments").join(entry.file_name())).unwrap();
        }
    }

    #[test]
    fn a_crash_between_checkpoints_loses_no_acknowledged_packet() {
        let live = tempfile::tempdir().unwrap();
        let image = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(live.path(), lazy(1 << 20)).unwrap();
        store.checkpoint().unwrap();
        let packets: Vec<_> = (1..=50).map(|n| packet(n, (n % 3) as u8, 10_000)).collect();
        for chunk in packets.chunks(6) {
            for outcome in store.put_batch(chunk, LIMITS, 0).unwrap() {
                assert!(matches!(outcome, PutOutcome::Stored { .. }));
            }
        }
        assert!(
            held_batches(&store) > 0,
            "acknowledged batches whose index is not committed at all belong in the image"
        );
        crash_image(live.path(), image.path());

        let reopened = RedbStore::open_with(image.path(), lazy(1 << 20)).unwrap();
        assert!(
            reopened.recovered_on_open() > 0,
            "the image must need the log, or this test proves nothing"
        );
        let hashes: Vec<_> = packets.iter().map(|p| p.hash).collect();
        let got = super::super::conformance::get_many(&reopened, &hashes, u64::MAX, 0);
        assert_eq!(got.len(), packets.len());
        for (p, g) in packets.iter().zip(&got) {
            assert_eq!(g.json, p.json);
            assert_eq!(g.expires_at, p.expires_at);
        }
        let stats = reopened.stats().unwrap();
        assert_eq!(stats.packets, 50);
        assert_eq!(
            stats.bytes,
            packets.iter().map(|p| p.json.len() as u64).sum::<u64>()
        );
        // Inboxes keep their order and sequence numbers, so clients' cursors stay valid.
        let before = inbox(&store, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        let after = inbox(&reopened, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        assert_eq!(before.packets, after.packets);
        // New packets continue the sequence.
        let next = reopened
            .put_batch(&[packet(51, 1, 10_000)], LIMITS, 0)
            .unwrap();
        assert_eq!(next, vec![PutOutcome::Stored { seq: 51 }]);
        // Duplicates and inbox limits see the recovered packets.
        assert_eq!(
            reopened.put_batch(&packets[..1], LIMITS, 0).unwrap(),
            vec![PutOutcome::Duplicate]
        );
        drop(reopened);
        let again = RedbStore::open_with(image.path(), lazy(1 << 20)).unwrap();
        assert_eq!(
            again.recovered_on_open(),
            0,
            "a clean close leaves nothing to redo"
        );
        assert_eq!(again.stats().unwrap().packets, 51);
    }

    #[test]
    fn a_torn_append_after_a_crash_is_cut_and_everything_before_it_kept() {
        let live = tempfile::tempdir().unwrap();
        let image = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(live.path(), lazy(1 << 20)).unwrap();
        let packets: Vec<_> = (1..=20).map(|n| packet(n, 1, 10_000)).collect();
        store.put_batch(&packets, LIMITS, 0).unwrap();
        let before = store.instance();
        crash_image(live.path(), image.path());
        let segment = std::fs::read_dir(image.path().join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0x55; 37]).unwrap();
        drop(file);

        let reopened = RedbStore::open_with(image.path(), lazy(1 << 20)).unwrap();
        assert_eq!(reopened.stats().unwrap().packets, 20);
        let page = inbox(&reopened, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        assert_eq!(page.packets.len(), 20);
        let damaged = std::fs::read_dir(image.path().join("segments"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".damaged-at-")
            })
            .count();
        assert_eq!(damaged, 1, "the cut bytes are kept for the operator");
        // Cursors handed out before the cut do not count for the numbers used again.
        assert_ne!(reopened.instance(), before);
        assert_eq!(
            reopened
                .put_batch(&[packet(21, 1, 10_000)], LIMITS, 0)
                .unwrap(),
            vec![PutOutcome::Stored { seq: 21 }]
        );
    }

    #[test]
    fn swept_segments_are_deleted_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        let segments = || {
            std::fs::read_dir(dir.path().join("segments"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        // Early packets expire at 1,000, later ones at 1,000,000; each batch of 25 (~5 KB)
        // fills more than a 4 KiB segment.
        for b in 0..6u32 {
            let expiry = if b < 4 { 1_000 } else { 1_000_000 };
            let batch: Vec<_> = (0..25).map(|i| packet(b * 25 + i, 2, expiry)).collect();
            store.put_batch(&batch, LIMITS, 0).unwrap();
        }
        assert!(segments() >= 6, "{}", segments());
        let report = store.sweep(2_000, 0, 1_000).unwrap();
        assert_eq!(report.expired, 100);
        assert_eq!(segments(), 2, "the two segments with live packets remain");
        let page = inbox(&store, &Fingerprint([2; 32]), 0, u64::MAX, 2_000);
        assert_eq!(page.packets.len(), 50);
        drop(store);
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        assert_eq!(store.stats().unwrap().packets, 50);
        assert_eq!(
            inbox(&store, &Fingerprint([2; 32]), 0, u64::MAX, 2_000)
                .packets
                .len(),
            50
        );
    }

    fn segment_exists(dir: &Path, id: u64) -> bool {
        dir.join("segments").join(format!("{id:016}.seg")).exists()
    }

    #[cfg(unix)]
    #[test]
    fn a_new_data_directory_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");
        let store = RedbStore::open(&data, 4 << 20).unwrap();
        store.put_batch(&[packet(1, 1, 10_000)], LIMITS, 0).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the index names who receives what");
    }

    #[test]
    fn a_segment_emptied_while_it_was_the_newest_indexed_is_deleted_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        // One batch (~5 KB) fills segment 1 past 4 KiB; nothing follows it for a while.
        let early: Vec<_> = (0..25).map(|i| packet(i, 2, 1_000)).collect();
        store.put_batch(&early, LIMITS, 0).unwrap();
        assert_eq!(store.sweep(2_000, 0, 1_000).unwrap().expired, 25);
        assert!(
            segment_exists(dir.path(), 1),
            "still the newest indexed segment"
        );
        // Later packets go to segment 2; a sweep with nothing to expire deletes segment 1.
        store
            .put_batch(&[packet(100, 2, 1_000_000)], LIMITS, 0)
            .unwrap();
        assert_eq!(store.sweep(3_000, 0, 1_000).unwrap().expired, 0);
        assert!(!segment_exists(dir.path(), 1));
        assert!(segment_exists(dir.path(), 2));
        drop(store);
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        let page = inbox(&store, &Fingerprint([2; 32]), 0, u64::MAX, 3_000);
        assert_eq!(page.packets.len(), 1);
    }

    #[test]
    fn expiry_entries_without_a_packet_do_not_stall_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        store.put_batch(&[packet(1, 2, 1_000)], LIMITS, 0).unwrap();
        // An entry due first whose packet is gone (no code path writes one; damage could).
        store.settle().unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(BY_EXPIRY)
            .unwrap()
            .insert(&cat40(&500u64.to_be_bytes(), &[9; 32]), ())
            .unwrap();
        txn.commit().unwrap();
        // One entry a sweep: the first removes the stale entry for good, the second expires
        // the packet.
        assert_eq!(store.sweep(2_000, 0, 1).unwrap().expired, 0);
        assert_eq!(store.sweep(2_000, 0, 1).unwrap().expired, 1);
        assert_eq!(store.stats().unwrap().packets, 0);
    }

    #[test]
    fn a_damaged_body_is_left_out_and_the_rest_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
        let p = packet(1, 1, 10_000);
        store
            .put_batch(std::slice::from_ref(&p), LIMITS, 0)
            .unwrap();
        let segment = dir.path().join("segments").join(format!("{:016}.seg", 1));
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 1;
        std::fs::write(&segment, bytes).unwrap();
        store
            .get_many(&[p.hash], u64::MAX, 0, &mut |_| {
                panic!("damaged data served")
            })
            .unwrap();
        // It is no longer held (nor advertised to peers), and not refused: a sound copy may
        // come back.
        assert!(!store.contains(&p.hash, 0).unwrap());
        assert!(!store.tombstoned(&p.hash, 0).unwrap());
        assert_eq!(store.stats().unwrap().packets, 0);
        // Packets after a damaged one in the same inbox are still served, and the damaged one
        // leaves the index there too.
        let later = packet(2, 1, 10_000);
        let third = packet(3, 1, 10_000);
        store
            .put_batch(&[later.clone(), third.clone()], LIMITS, 0)
            .unwrap();
        let seg = std::fs::read(&segment).unwrap();
        let mut bytes = seg.clone();
        let at = bytes.len() - 5;
        bytes[at] ^= 1; // third's record
        std::fs::write(&segment, bytes).unwrap();
        let page = inbox(&store, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        let hashes: Vec<_> = page.packets.iter().map(|p| p.hash).collect();
        assert_eq!(hashes, [later.hash]);
        assert!(!store.contains(&third.hash, 0).unwrap());
        assert!(store.contains(&later.hash, 0).unwrap());
        // The sound copies, sent again, are stored.
        let again = store.put_batch(&[p, third], LIMITS, 0).unwrap();
        assert!(
            again.iter().all(|o| matches!(o, PutOutcome::Stored { .. })),
            "{again:?}"
        );
    }

    #[test]
    fn a_batch_can_be_flushed_before_its_index_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        let mut seen = Vec::new();
        let (answer_tx, answer) = std::sync::mpsc::channel();
        let (out, ticket) = std::thread::scope(|scope| {
            let result = store
                .put_batch_deferred(
                    &[packet(1, 1, 10_000), packet(2, 2, 10_000)],
                    LIMITS,
                    0,
                    &mut |t| {
                        // Called with the index still being built: the flush must not wait
                        // for it, and a reader now waits for the whole batch.
                        store.sync(t).unwrap();
                        let (store, answer_tx) = (&store, answer_tx.clone());
                        scope.spawn(move || {
                            let seen = store.contains(&packet(1, 1, 10_000).hash, 0).unwrap();
                            answer_tx.send(seen).unwrap();
                        });
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        assert!(answer.try_recv().is_err(), "the reader waited");
                        seen.push(t);
                    },
                )
                .unwrap();
            assert!(answer.recv().unwrap(), "and then saw the batch");
            result
        });
        assert_eq!(seen, vec![ticket], "told once, with the batch's own ticket");
        assert!(store.synced() >= ticket, "already on disk when it returns");
        assert!(out.iter().all(|o| matches!(o, PutOutcome::Stored { .. })));
        assert!(store.contains(&packet(2, 2, 10_000).hash, 0).unwrap());
        // Nothing new to write: not told.
        let (dup, _) = store
            .put_batch_deferred(&[packet(1, 1, 10_000)], LIMITS, 0, &mut |t| {
                panic!("told of ticket {t:?} for a batch that wrote nothing")
            })
            .unwrap();
        assert_eq!(dup, vec![PutOutcome::Duplicate]);
    }

    #[test]
    fn deferred_batches_are_durable_after_one_sync_or_any_durable_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        let (out1, t1) = store
            .put_batch_deferred(&[packet(1, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        let (out2, t2) = store
            .put_batch_deferred(&[packet(2, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        assert!(matches!(out1[0], PutOutcome::Stored { .. }));
        assert!(matches!(out2[0], PutOutcome::Stored { .. }));
        assert!(t2 > t1);
        assert!(store.synced() < t1, "nothing was flushed yet");
        // Readers see a deferred batch at once.
        assert_eq!(
            inbox(&store, &Fingerprint([1; 32]), 0, u64::MAX, 0)
                .packets
                .len(),
            2
        );
        // One flush covers every batch written before it.
        store.sync(t2).unwrap();
        assert!(store.synced() >= t2);
        store.sync(t1).unwrap();
        // A duplicate's ticket waits for the batch that stored the original.
        let (out3, t3) = store
            .put_batch_deferred(&[packet(3, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        assert!(matches!(out3[0], PutOutcome::Stored { .. }));
        let (dup, t_dup) = store
            .put_batch_deferred(&[packet(3, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        assert_eq!(dup, vec![PutOutcome::Duplicate]);
        assert!(t_dup >= t3);
        // Any durable index commit flushes the log first, so the index never points at a
        // record that is not on disk.
        assert!(store.synced() < t3);
        store
            .add_servers(&["relay.example.org:80".parse().unwrap()], 10)
            .unwrap();
        assert!(store.synced() >= t3);
        let (_, t4) = store
            .put_batch_deferred(&[packet(4, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        store.sweep(0, 0, 10).unwrap();
        store.checkpoint().unwrap();
        assert!(store.synced() >= t4);
    }

    /// How many batches the held write transaction holds now.
    fn held_batches(store: &RedbStore) -> u32 {
        store.lock_held().as_ref().map_or(0, |h| h.batches)
    }

    #[test]
    fn batches_share_one_index_commit_and_every_read_commits_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        let put = |n: u32| {
            let (out, _) = store
                .put_batch_deferred(&[packet(n, 1, 10_000)], LIMITS, 0, &mut |_| {})
                .unwrap();
            assert!(matches!(out[0], PutOutcome::Stored { .. }));
        };
        for n in 1..MAX_HELD_BATCHES {
            put(n);
        }
        assert_eq!(held_batches(&store), MAX_HELD_BATCHES - 1);
        // A batch of duplicates changes nothing and keeps what is held.
        let (dup, _) = store
            .put_batch_deferred(&[packet(1, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        assert_eq!(dup, vec![PutOutcome::Duplicate]);
        assert_eq!(held_batches(&store), MAX_HELD_BATCHES - 1);
        put(MAX_HELD_BATCHES);
        assert_eq!(held_batches(&store), 0, "the last batch committed them all");

        // Every kind of read sees a batch stored just before it.
        let mut n = 100;
        let mut next = || {
            n += 1;
            put(n);
            assert_eq!(held_batches(&store), 1);
            packet(n, 1, 10_000)
        };
        let p = next();
        assert!(store.contains(&p.hash, 0).unwrap());
        let p = next();
        assert_eq!(
            super::super::conformance::get_many(&store, &[p.hash], u64::MAX, 0).len(),
            1
        );
        let p = next();
        let page = inbox(&store, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        assert_eq!(page.packets.last().map(|q| q.hash), Some(p.hash));
        let p = next();
        let mut hashes = Vec::new();
        store
            .for_each_hash(0, &mut |h| {
                hashes.push(h);
                true
            })
            .unwrap();
        assert!(hashes.contains(&p.hash));
        let p = next();
        let mut expiring = Vec::new();
        store
            .for_each_by_expiry(0, &mut |_, h| {
                expiring.push(h);
                true
            })
            .unwrap();
        assert!(expiring.contains(&p.hash));
        let p = next();
        assert!(!store.tombstoned(&p.hash, 0).unwrap());
        assert_eq!(held_batches(&store), 0);
        next();
        let packets = store.stats().unwrap().packets;
        assert_eq!(packets, u64::from(MAX_HELD_BATCHES) + 7);
        // Writes of other kinds commit it first too.
        next();
        store.sweep(0, 0, 10).unwrap();
        assert_eq!(held_batches(&store), 0);
        next();
        drop(store);
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        assert_eq!(store.recovered_on_open(), 0, "closing committed it durably");
        assert_eq!(
            store.stats().unwrap().packets,
            u64::from(MAX_HELD_BATCHES) + 9
        );
    }

    #[test]
    fn the_known_servers_are_read_without_waiting_for_or_committing_held_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap());
        let server: ServerEntry = "relay.example:8080".parse().unwrap();
        store
            .add_servers(std::slice::from_ref(&server), 10)
            .unwrap();
        store
            .save_peer_record(&server, b"record")
            .expect("saving a peer record");
        store
            .put_batch_deferred(&[packet(1, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        assert_eq!(held_batches(&store), 1);
        // A batch in progress holds the write path; reading the servers does not wait for it.
        let writing = store.lock_held();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = tx.send((store.servers(), store.peer_records()));
            })
        };
        let (servers, records) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the servers were read while a batch held the write path");
        drop(writing);
        reader.join().unwrap();
        assert_eq!(servers.unwrap(), vec![server.clone()]);
        assert_eq!(records.unwrap(), vec![(server, b"record".to_vec())]);
        assert_eq!(held_batches(&store), 1, "the held batch was not committed");
    }

    #[test]
    fn a_failed_commit_of_held_batches_refuses_everything_until_a_restart_reindexes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        // Acknowledged (flushed), but its index is only held.
        store.put_batch(&[packet(1, 1, 10_000)], LIMITS, 0).unwrap();
        assert_eq!(held_batches(&store), 1);
        store
            .fail_held_commits
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = store.stats().unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        store
            .fail_held_commits
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let err = store
            .put_batch(&[packet(2, 1, 10_000)], LIMITS, 0)
            .unwrap_err();
        assert!(err.to_string().contains("opened again"), "{err}");
        drop(store);
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        assert_eq!(store.recovered_on_open(), 1, "re-read from the log");
        assert!(store.contains(&packet(1, 1, 10_000).hash, 0).unwrap());
        assert!(!store.contains(&packet(2, 1, 10_000).hash, 0).unwrap());
    }

    #[test]
    fn after_a_failed_flush_the_store_promises_nothing_more_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        store.put_batch(&[packet(1, 1, 10_000)], LIMITS, 0).unwrap();
        store
            .log
            .fail_syncs
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = store
            .put_batch(&[packet(2, 1, 10_000)], LIMITS, 0)
            .unwrap_err();
        assert!(err.to_string().contains("could not be flushed"), "{err}");
        // Even with the disk back, nothing more is promised: what was written since the
        // failure may be gone (the kernel may have dropped the dirty pages).
        store
            .log
            .fail_syncs
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let err = store
            .put_batch(&[packet(3, 1, 10_000)], LIMITS, 0)
            .unwrap_err();
        assert!(err.to_string().contains("opened again"), "{err}");
        assert!(
            store.checkpoint().is_err(),
            "no durable index commit either"
        );
        drop(store);
        // Reopening starts from what is on disk: the acknowledged packet is there, and the
        // one whose flush failed is not (its record may exist only in the page cache; the
        // closed store noted where to cut the log).
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        let got = super::super::conformance::get_many(&store, &[packet(1, 1, 0).hash], u64::MAX, 0);
        assert_eq!(got.len(), 1);
        assert!(!store.contains(&packet(2, 1, 0).hash, 0).unwrap());
        assert_eq!(store.stats().unwrap().packets, 1);
        assert!(matches!(
            store.put_batch(&[packet(2, 1, 10_000)], LIMITS, 0).unwrap()[0],
            PutOutcome::Stored { .. }
        ));
        assert!(matches!(
            store.put_batch(&[packet(4, 1, 10_000)], LIMITS, 0).unwrap()[0],
            PutOutcome::Stored { .. }
        ));
    }

    #[test]
    fn a_failed_flush_when_a_full_segment_is_closed_fails_the_batches_written_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        // Written but not yet flushed: not acknowledged.
        let (_, pending) = store
            .put_batch_deferred(&[packet(1, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        let mut n = 2;
        // The disk fails; batches go on being written until one finds the segment full and
        // closes it with a flush.
        store
            .log
            .fail_syncs
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = loop {
            match store.put_batch_deferred(&[packet(n, 1, 10_000)], LIMITS, 0, &mut |_| {}) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("syncing"), "{err}");
        // The kernel reports a writeback error once; the next flush of the same file succeeds
        // though the data may be gone. The log must not forget it failed.
        store
            .log
            .fail_syncs
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let err = store.sync(pending).unwrap_err();
        assert!(matches!(err, StoreError::NeedsReopen(_)), "{err}");
        assert!(
            store
                .put_batch(&[packet(n + 1, 1, 10_000)], LIMITS, 0)
                .is_err(),
            "nothing more is promised until the store is opened again"
        );
        // No batch saw that flush fail, yet closing the store notes the cut: after a restart
        // none of these packets, never acknowledged, is stored.
        drop(store);
        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        assert_eq!(store.stats().unwrap().packets, 0);
        assert!(!store.contains(&packet(1, 1, 0).hash, 0).unwrap());
    }

    #[test]
    fn entries_past_the_cut_go_even_when_the_log_there_reads_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        let (p1, p2) = (packet(1, 1, 10_000), packet(2, 1, 10_000));
        // p2's index entry is committed; then its flush fails.
        super::super::conformance::ack_one_then_fail_the_flush_of_another(&store, &p1, &p2, || {
            store.fail_log_syncs(true)
        });
        let cut = store.flushed().get().unwrap();
        let before = store.instance();
        // Closing makes every index commit durable, p2's entry included, and notes the cut.
        drop(store);
        // After a reboot the pages past the cut, never written back, read as zeros.
        let path = dir.path().join(format!("segments/{:016}.seg", cut.segment));
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > cut.offset);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &vec![0u8; (len - cut.offset) as usize],
            cut.offset,
        )
        .unwrap();
        drop(file);
        let store = RedbStore::open_with(dir.path(), lazy(1 << 20)).unwrap();
        assert_eq!(store.stats().unwrap().packets, 1);
        assert!(!store.contains(&p2.hash, 0).unwrap());
        // p2's number (handed out in a cursor, maybe) goes to the next packet: a new instance.
        assert_ne!(store.instance(), before);
        let page = super::super::conformance::inbox(&store, &p1.recipient, 0, u64::MAX, 0);
        let hashes: Vec<_> = page.packets.iter().map(|p| p.hash).collect();
        assert_eq!(hashes, vec![p1.hash]);
        assert!(matches!(
            store
                .put_batch(std::slice::from_ref(&p2), LIMITS, 0)
                .unwrap()[0],
            PutOutcome::Stored { .. }
        ));
    }

    /// Writes a database as schema 1 did: bodies inside redb.
    fn write_schema_1(dir: &Path, packets: &[NewPacket]) {
        std::fs::create_dir_all(dir).unwrap();
        let db = Database::create(dir.join("relay.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut headers = txn.open_table(PACKETS_V1).unwrap();
            let mut bodies = txn.open_table(BODIES_V1).unwrap();
            let mut by_rcpt = txn.open_table(BY_RECIPIENT_V1).unwrap();
            let mut by_exp = txn.open_table(BY_EXPIRY).unwrap();
            let mut counts = txn.open_table(INBOX_COUNTS).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            let mut bytes = 0;
            for (i, p) in packets.iter().enumerate() {
                let seq = 10 + 2 * i as u64; // gaps, as expiry leaves them
                let mut header = [0u8; 48];
                header[..8].copy_from_slice(&p.expires_at.to_be_bytes());
                header[8..16].copy_from_slice(&seq.to_be_bytes());
                header[16..].copy_from_slice(&p.recipient.0);
                headers.insert(&p.hash.0, &header).unwrap();
                let mut body = p.hash.0.to_vec();
                body.extend_from_slice(&p.json);
                bodies.insert(seq, body.as_slice()).unwrap();
                by_rcpt
                    .insert(&cat40(&p.recipient.0, &seq.to_be_bytes()), p.expires_at)
                    .unwrap();
                by_exp
                    .insert(&cat40(&p.expires_at.to_be_bytes(), &p.hash.0), ())
                    .unwrap();
                let n = counts.get(&p.recipient.0).unwrap().map_or(0, |v| v.value());
                counts.insert(&p.recipient.0, n + 1).unwrap();
                bytes += p.json.len() as u64;
            }
            meta.insert(META_SCHEMA, 1).unwrap();
            meta.insert(META_NEXT_SEQ, 10 + 2 * packets.len() as u64)
                .unwrap();
            meta.insert(META_PACKETS, packets.len() as u64).unwrap();
            meta.insert(META_BYTES, bytes).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_schema_1_database_is_migrated_with_its_packets_and_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let packets: Vec<_> = (1..=30).map(|n| packet(n, (n % 2) as u8, 10_000)).collect();
        write_schema_1(dir.path(), &packets);
        // What a migration stopped halfway leaves in the log is thrown away.
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        std::fs::write(
            dir.path().join("segments").join(format!("{:016}.seg", 1)),
            b"JSPRSEG1 half a migration",
        )
        .unwrap();

        let store = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        let hashes: Vec<_> = packets.iter().map(|p| p.hash).collect();
        let got = super::super::conformance::get_many(&store, &hashes, u64::MAX, 0);
        assert_eq!(got.len(), 30);
        for (i, (p, g)) in packets.iter().zip(&got).enumerate() {
            assert_eq!(g.json, p.json);
            assert_eq!(g.seq, 10 + 2 * i as u64, "sequence numbers are kept");
        }
        let page = inbox(&store, &Fingerprint([1; 32]), 20, u64::MAX, 0);
        assert!(page.packets.iter().all(|p| p.seq > 20));
        assert_eq!(
            page.packets.len(),
            packets.iter().filter(|p| p.recipient.0[0] == 1).count() - 3
        );
        assert_eq!(store.stats().unwrap().packets, 30);
        // New packets continue the sequence; sweeps find the migrated packets.
        assert_eq!(
            store
                .put_batch(&[packet(31, 1, 10_000)], LIMITS, 0)
                .unwrap(),
            vec![PutOutcome::Stored { seq: 70 }]
        );
        assert_eq!(store.sweep(20_000, 0, 1_000).unwrap().expired, 31);
        let txn = store.db.begin_read().unwrap();
        assert!(
            txn.open_table(BODIES_V1).is_err(),
            "schema 1's tables are gone"
        );
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta_get(&meta, META_SCHEMA).unwrap(), SCHEMA_VERSION);
        drop((meta, txn, store));
        let again = RedbStore::open_with(dir.path(), lazy(4096)).unwrap();
        assert_eq!(again.recovered_on_open(), 0);
        assert_eq!(again.stats().unwrap().packets, 0);
    }

    #[test]
    fn refuses_a_database_from_another_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(dir.path(), 4 << 20).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
