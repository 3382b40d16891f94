//! The relay's storage: one trait, [`Store`], that every engine implements and one
//! conformance suite checks. Only engine modules touch a database.

pub mod redb;
pub mod redis;
pub mod reopen;
pub mod segments;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod test_redis;

use crate::proto::{Fingerprint, PacketHash, ServerEntry};

pub use self::redb::RedbStore;
pub use self::redis::{RedisOptions, RedisStore};
pub use self::reopen::ReopeningStore;

/// A random store instance id (see [`Store::instance`]).
pub(crate) fn new_instance_id() -> u64 {
    let mut bytes = [0u8; 8];
    crate::crypto::random_bytes(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Milliseconds since the Unix epoch. The store never reads the clock; callers pass `now`.
pub type UnixMillis = u64;

/// Errors from a storage engine. Their text is for the operator's log, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the database at {path}: {message}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
    /// Another process (a relay or `jasper serve` already running) holds the database.
    #[error(
        "the database at {path} is in use by another jasper (a relay or `jasper serve` already \
         running on this data directory)"
    )]
    InUse {
        /// Where.
        path: String,
    },
    /// Any failure of the engine while running.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A failure after which the engine works again only once opened anew: redb after an I/O
    /// error refuses every later operation, and the redb store after a failed flush or
    /// index commit refuses every write.
    #[error("storage engine error: {0}")]
    NeedsReopen(String),
    /// Stored data does not decode: the database was damaged or written by something else.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A packet ready to store: validated JSON, its hash, its recipient and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPacket {
    /// SHA-256 of `message`.
    pub hash: PacketHash,
    /// Fingerprint of the recipient key: the inbox it belongs to.
    pub recipient: Fingerprint,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// The packet's JSON as served by `/fetch`.
    pub json: Vec<u8>,
}

/// What happened to one packet of a [`Store::put_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly stored under this sequence number.
    Stored {
        /// Position in the store's global order (the cursor of `fetch-cursor`).
        seq: u64,
    },
    /// Already stored; nothing changed.
    Duplicate,
    /// The hash expired here recently and is refused (PROTOCOL.md §4).
    Tombstoned,
    /// The recipient's inbox holds the maximum number of packets.
    InboxFull,
    /// The store holds the maximum number of bytes.
    StoreFull,
}

/// Limits that `put_batch` enforces inside the same transaction as the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutLimits {
    /// Most live packets per recipient.
    pub max_inbox_packets: u64,
    /// Most bytes of packet JSON in all.
    pub max_stored_bytes: u64,
}

/// A packet read from the store, borrowed for the duration of one visit so that answers are
/// built without copying every packet twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView<'a> {
    /// Its hash.
    pub hash: PacketHash,
    /// Global sequence number.
    pub seq: u64,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// The JSON as stored.
    pub json: &'a [u8],
}

impl PacketView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> StoredPacket {
        StoredPacket {
            hash: self.hash,
            seq: self.seq,
            expires_at: self.expires_at,
            json: self.json.to_vec(),
        }
    }
}

/// An owned packet read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPacket {
    /// Its hash.
    pub hash: PacketHash,
    /// Global sequence number.
    pub seq: u64,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// The JSON as stored.
    pub json: Vec<u8>,
}

/// Where a read of an inbox stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxEnd {
    /// The cursor to continue after this page: the last sequence number looked at.
    pub cursor: u64,
    /// Whether the read stopped at its byte limit before the inbox's end.
    pub more: bool,
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Packets removed because they expired.
    pub expired: usize,
    /// Tombstones forgotten because their horizon passed.
    pub tombstones_forgotten: usize,
}

/// Counters kept transactionally with the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Packets stored (some may have expired and await the sweeper).
    pub packets: u64,
    /// Bytes of packet JSON stored.
    pub bytes: u64,
}

/// The size limit of one read answer, as every engine applies it: packets are taken while
/// their JSON fits, and the first always is, however large (so a reader is never stuck behind
/// one big packet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByteBudget {
    /// Bytes of JSON still allowed.
    pub(crate) left: u64,
    /// Whether a packet was taken already.
    pub(crate) any: bool,
}

impl ByteBudget {
    /// A budget of `max_bytes`.
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            left: max_bytes,
            any: false,
        }
    }

    /// Takes a packet of `json_len` bytes of JSON if it fits.
    pub(crate) fn take(&mut self, json_len: u64) -> bool {
        if self.any && json_len > self.left {
            return false;
        }
        self.left = self.left.saturating_sub(json_len);
        self.any = true;
        true
    }
}

/// What [`Store::put_batch_deferred`] hands back: its batch is on disk once [`Store::sync`]
/// with this ticket (or a later one) returned `Ok`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncTicket(pub u64);

/// A relay storage engine. Every method is blocking; async callers use `spawn_blocking`.
pub trait Store: Send + Sync + 'static {
    /// Stores packets durably: when this returns `Ok`, every `Stored` outcome is on disk.
    /// Outcomes are in input order; a hash repeated within the batch is `Duplicate` the second
    /// time.
    fn put_batch(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let (outcomes, ticket) = self.put_batch_deferred(packets, limits, now, &mut |_| {})?;
        self.sync(ticket)?;
        Ok(outcomes)
    }

    /// Stores packets like [`Store::put_batch`] but returns before they are on disk: readers
    /// see them at once, and they are durable (and may be acknowledged) only once
    /// [`Store::sync`] with the ticket returned `Ok`. Lets one thread store the next batch
    /// while another waits for the disk. `written` is called with that ticket as soon as the
    /// packets can be flushed, which may be before this returns: a flush can start while the
    /// index is still being built. `written` may call [`Store::sync`] but nothing else of the
    /// store: a reader waits for the batch to be stored.
    fn put_batch_deferred(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
        written: &mut dyn FnMut(SyncTicket),
    ) -> Result<(Vec<PutOutcome>, SyncTicket), StoreError>;

    /// Waits until every batch up to `ticket` is on disk. One disk flush covers every batch
    /// stored before it, however many threads wait.
    fn sync(&self, ticket: SyncTicket) -> Result<(), StoreError>;

    /// Calls `visit` with each live packet among `hashes`, in the order asked (unknown or
    /// expired ones are skipped), until `max_bytes` of JSON were visited (at least one packet
    /// is visited when any matches).
    fn get_many(
        &self,
        hashes: &[PacketHash],
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<(), StoreError>;

    /// Calls `visit` with each live packet for `recipient` whose sequence number is above
    /// `after`, in store order, until `max_bytes` of JSON were visited (at least one packet
    /// when any is there).
    fn inbox(
        &self,
        recipient: &Fingerprint,
        after: u64,
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<InboxEnd, StoreError>;

    /// Calls `visit` with the hash of every live packet, in hash order, until it returns false.
    fn for_each_hash(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketHash) -> bool,
    ) -> Result<(), StoreError>;

    /// Calls `visit` with (expiry, hash) of every live packet in (expiry, hash) order — the
    /// order set reconciliation works in — until it returns false.
    fn for_each_by_expiry(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(UnixMillis, PacketHash) -> bool,
    ) -> Result<(), StoreError>;

    /// Whether a hash is stored and live.
    fn contains(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError>;

    /// Whether a hash is refused because it expired here recently (PROTOCOL.md §4): it is a
    /// tombstone, or an expired packet the sweeper has not removed yet.
    fn tombstoned(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError>;

    /// Removes up to `batch` expired packets (keeping their hashes as tombstones until
    /// `expires_at + tombstone_horizon`) and up to `batch` tombstones past their horizon.
    fn sweep(
        &self,
        now: UnixMillis,
        tombstone_horizon_ms: u64,
        batch: usize,
    ) -> Result<SweepReport, StoreError>;

    /// Packet and byte counters.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// An id of this store's contents, drawn at random when they began and kept with them.
    /// `fetch-cursor` cursors carry it, so that a cursor from other contents (a database
    /// started afresh, another engine, another relay at the same address) is not taken for a
    /// position in these: sequence numbers start again, and such a cursor would hide every
    /// packet until they passed it.
    fn instance(&self) -> u64;

    /// The known-servers list.
    fn servers(&self) -> Result<Vec<ServerEntry>, StoreError>;

    /// Every known server with the record the mesh keeps about it (empty when none yet).
    fn peer_records(&self) -> Result<Vec<(ServerEntry, Vec<u8>)>, StoreError>;

    /// Keeps `record` for `server`, adding the server if it is not known yet.
    fn save_peer_record(&self, server: &ServerEntry, record: &[u8]) -> Result<(), StoreError>;

    /// Adds servers not yet known, up to `max_known` in all; returns those added.
    fn add_servers(
        &self,
        servers: &[ServerEntry],
        max_known: usize,
    ) -> Result<Vec<ServerEntry>, StoreError>;

    /// Forgets servers (and their records); returns how many were known.
    fn remove_servers(&self, servers: &[ServerEntry]) -> Result<usize, StoreError>;

    /// Makes everything stored so far durable in the engine's own index, so that the next
    /// start has nothing to recover: a relay stopping calls it, whoever else still holds the
    /// store. Engines whose every write is durable have nothing to do.
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
