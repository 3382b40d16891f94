//! The embedded storage engine: redb, one file, ACID, big-endian keys so that inbox cursors and
//! expiry sweeps are range scans.

use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::{
    InboxEnd, NewPacket, PacketView, PutLimits, PutOutcome, Store, StoreError, StoreStats,
    SweepReport, UnixMillis,
};
use crate::proto::{Fingerprint, PacketHash, ServerEntry};

/// hash → expires_at (8, BE) ‖ seq (8, BE) ‖ recipient fingerprint (32).
const PACKETS: TableDefinition<&[u8; 32], &[u8; 48]> = TableDefinition::new("packets");
/// seq → hash (32) ‖ packet JSON. Keyed by arrival so that writes append: redb writes large
/// values in key order at about half the cost of values under random keys.
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// recipient fingerprint (32) ‖ seq (8, BE) → expires_at.
const BY_RECIPIENT: TableDefinition<&[u8; 40], u64> = TableDefinition::new("by_recipient");
/// expires_at (8, BE) ‖ hash (32) → ().
const BY_EXPIRY: TableDefinition<&[u8; 40], ()> = TableDefinition::new("by_expiry");
/// hash → refused until (ms).
const TOMBSTONES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("tombstones");
/// refused until (8, BE) ‖ hash (32) → ().
const TOMBSTONE_EXPIRY: TableDefinition<&[u8; 40], ()> = TableDefinition::new("tombstone_expiry");
/// recipient fingerprint → live packets stored for it.
const INBOX_COUNTS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("inbox_counts");
/// Counters: see the `META_*` keys.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Known servers by `host:port` → the mesh's record about each (opaque here; may be empty).
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");

const META_NEXT_SEQ: &str = "next_seq";
const META_PACKETS: &str = "packets";
const META_BYTES: &str = "bytes";
const META_SCHEMA: &str = "schema_version";
const SCHEMA_VERSION: u64 = 1;

/// Bytes before the JSON in a `BODIES` value (the hash).
const BODY_PREFIX: usize = 32;

/// Page cache redb may use; the data itself stays on disk.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The redb engine.
pub struct RedbStore {
    db: Database,
}

fn engine<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn cat40(a: &[u8], b: &[u8]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..a.len()].copy_from_slice(a);
    k[a.len()..].copy_from_slice(b);
    k
}

/// What `PACKETS` holds for a hash.
struct Header {
    expires_at: u64,
    seq: u64,
    recipient: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.expires_at.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..].copy_from_slice(&self.recipient);
        out
    }

    fn decode(value: &[u8; 48]) -> Self {
        let u =
            |r: std::ops::Range<usize>| u64::from_be_bytes(value[r].try_into().expect("8 bytes"));
        Self {
            expires_at: u(0..8),
            seq: u(8..16),
            recipient: value[16..].try_into().expect("32 bytes"),
        }
    }
}

/// Splits a `BODIES` value into the hash and the JSON.
fn split_body(value: &[u8]) -> Result<(PacketHash, &[u8]), StoreError> {
    if value.len() < BODY_PREFIX {
        return Err(StoreError::Corrupt(
            "a packet body is shorter than its hash".into(),
        ));
    }
    let hash = PacketHash(value[..BODY_PREFIX].try_into().expect("32 bytes"));
    Ok((hash, &value[BODY_PREFIX..]))
}

fn missing_body(seq: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "an index names packet #{seq} but its body is missing"
    ))
}

impl RedbStore {
    /// Opens (creating if needed) `dir/relay.redb`, creating `dir` too.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join("relay.redb");
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| open_err(e.to_string()))?;
        let store = Self { db };
        store.init_schema()?;
        Ok(store)
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        {
            txn.open_table(PACKETS).map_err(engine)?;
            txn.open_table(BODIES).map_err(engine)?;
            txn.open_table(BY_RECIPIENT).map_err(engine)?;
            txn.open_table(BY_EXPIRY).map_err(engine)?;
            txn.open_table(TOMBSTONES).map_err(engine)?;
            txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
            txn.open_table(INBOX_COUNTS).map_err(engine)?;
            txn.open_table(SERVERS).map_err(engine)?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            let version = meta.get(META_SCHEMA).map_err(engine)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(engine)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "database schema version {other} is not {SCHEMA_VERSION}; \
                         it was written by another version of jasper"
                    )));
                }
            }
        }
        txn.commit().map_err(engine)
    }

    fn begin_durable(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        Ok(txn)
    }
}

fn meta_get(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(meta.get(key).map_err(engine)?.map_or(0, |v| v.value()))
}

impl Store for RedbStore {
    fn put_batch(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let txn = self.begin_durable()?;
        let mut outcomes = Vec::with_capacity(packets.len());
        {
            let mut table = txn.open_table(PACKETS).map_err(engine)?;
            let mut bodies = txn.open_table(BODIES).map_err(engine)?;
            let mut by_rcpt = txn.open_table(BY_RECIPIENT).map_err(engine)?;
            let mut by_exp = txn.open_table(BY_EXPIRY).map_err(engine)?;
            let tombs = txn.open_table(TOMBSTONES).map_err(engine)?;
            let mut counts = txn.open_table(INBOX_COUNTS).map_err(engine)?;
            let mut meta = txn.open_table(META).map_err(engine)?;
            let mut next_seq = meta_get(&meta, META_NEXT_SEQ)?.max(1);
            let mut n_packets = meta_get(&meta, META_PACKETS)?;
            let mut n_bytes = meta_get(&meta, META_BYTES)?;

            for p in packets {
                let hash = &p.hash.0;
                let tombstoned = tombs
                    .get(hash)
                    .map_err(engine)?
                    .is_some_and(|t| t.value() > now);
                if tombstoned {
                    outcomes.push(PutOutcome::Tombstoned);
                    continue;
                }
                if let Some(existing) = table.get(hash).map_err(engine)? {
                    let live = Header::decode(existing.value()).expires_at > now;
                    outcomes.push(if live {
                        PutOutcome::Duplicate
                    } else {
                        PutOutcome::Tombstoned
                    });
                    continue;
                }
                if p.expires_at <= now {
                    outcomes.push(PutOutcome::Tombstoned);
                    continue;
                }
                let rcpt = &p.recipient.0;
                let count = counts.get(rcpt).map_err(engine)?.map_or(0, |v| v.value());
                if count >= limits.max_inbox_packets {
                    outcomes.push(PutOutcome::InboxFull);
                    continue;
                }
                let size = p.json.len() as u64;
                if n_bytes + size > limits.max_stored_bytes {
                    outcomes.push(PutOutcome::StoreFull);
                    continue;
                }
                let seq = next_seq;
                next_seq += 1;
                let header = Header {
                    expires_at: p.expires_at,
                    seq,
                    recipient: *rcpt,
                };
                table.insert(hash, &header.encode()).map_err(engine)?;
                let mut body = bodies
                    .insert_reserve(seq, BODY_PREFIX + p.json.len())
                    .map_err(engine)?;
                body.as_mut()[..BODY_PREFIX].copy_from_slice(hash);
                body.as_mut()[BODY_PREFIX..].copy_from_slice(&p.json);
                drop(body);
                by_rcpt
                    .insert(&cat40(rcpt, &seq.to_be_bytes()), p.expires_at)
                    .map_err(engine)?;
                by_exp
                    .insert(&cat40(&p.expires_at.to_be_bytes(), hash), ())
                    .map_err(engine)?;
                counts.insert(rcpt, count + 1).map_err(engine)?;
                n_packets += 1;
                n_bytes += size;
                outcomes.push(PutOutcome::Stored { seq });
            }
            meta.insert(META_NEXT_SEQ, next_seq).map_err(engine)?;
            meta.insert(META_PACKETS, n_packets).map_err(engine)?;
            meta.insert(META_BYTES, n_bytes).map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
        Ok(outcomes)
    }

    fn get_many(
        &self,
        hashes: &[PacketHash],
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(PACKETS).map_err(engine)?;
        let bodies = txn.open_table(BODIES).map_err(engine)?;
        let mut bytes = 0u64;
        let mut any = false;
        for hash in hashes {
            let Some(value) = table.get(&hash.0).map_err(engine)? else {
                continue;
            };
            let header = Header::decode(value.value());
            if header.expires_at <= now {
                continue;
            }
            let body = bodies
                .get(header.seq)
                .map_err(engine)?
                .ok_or_else(|| missing_body(header.seq))?;
            let (_, json) = split_body(body.value())?;
            if any && bytes + json.len() as u64 > max_bytes {
                break;
            }
            bytes += json.len() as u64;
            any = true;
            visit(PacketView {
                hash: *hash,
                seq: header.seq,
                expires_at: header.expires_at,
                json,
            });
        }
        Ok(())
    }

    fn inbox(
        &self,
        recipient: &Fingerprint,
        after: u64,
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<InboxEnd, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let index = txn.open_table(BY_RECIPIENT).map_err(engine)?;
        let bodies = txn.open_table(BODIES).map_err(engine)?;
        let start = cat40(&recipient.0, &after.saturating_add(1).to_be_bytes());
        let end = cat40(&recipient.0, &u64::MAX.to_be_bytes());
        let mut page = InboxEnd {
            cursor: after,
            more: false,
        };
        let mut bytes = 0u64;
        let mut any = false;
        for entry in index.range::<&[u8; 40]>(&start..=&end).map_err(engine)? {
            let (key, expires_at) = entry.map_err(engine)?;
            let seq = u64::from_be_bytes(key.value()[32..].try_into().expect("8 bytes"));
            let expires_at = expires_at.value();
            if expires_at > now {
                let body = bodies
                    .get(seq)
                    .map_err(engine)?
                    .ok_or_else(|| missing_body(seq))?;
                let (hash, json) = split_body(body.value())?;
                if any && bytes + json.len() as u64 > max_bytes {
                    page.more = true;
                    break;
                }
                bytes += json.len() as u64;
                any = true;
                visit(PacketView {
                    hash,
                    seq,
                    expires_at,
                    json,
                });
            }
            page.cursor = seq;
        }
        Ok(page)
    }

    fn for_each_hash(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
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
        let txn = self.db.begin_read().map_err(engine)?;
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
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(PACKETS).map_err(engine)?;
        Ok(table
            .get(&hash.0)
            .map_err(engine)?
            .is_some_and(|v| Header::decode(v.value()).expires_at > now))
    }

    fn tombstoned(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
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
        let txn = self.begin_durable()?;
        {
            let mut by_exp = txn.open_table(BY_EXPIRY).map_err(engine)?;
            let end = cat40(&now.to_be_bytes(), &[0xff; 32]);
            let due: Vec<[u8; 40]> = by_exp
                .range::<&[u8; 40]>(..=&end)
                .map_err(engine)?
                .take(batch)
                .map(|e| e.map(|(k, _)| *k.value()).map_err(engine))
                .collect::<Result<_, _>>()?;
            if !due.is_empty() {
                let mut table = txn.open_table(PACKETS).map_err(engine)?;
                let mut bodies = txn.open_table(BODIES).map_err(engine)?;
                let mut by_rcpt = txn.open_table(BY_RECIPIENT).map_err(engine)?;
                let mut counts = txn.open_table(INBOX_COUNTS).map_err(engine)?;
                let mut tombs = txn.open_table(TOMBSTONES).map_err(engine)?;
                let mut tomb_exp = txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
                let mut meta = txn.open_table(META).map_err(engine)?;
                let mut n_packets = meta_get(&meta, META_PACKETS)?;
                let mut n_bytes = meta_get(&meta, META_BYTES)?;
                for key in &due {
                    by_exp.remove(key).map_err(engine)?;
                    let hash: [u8; 32] = key[8..].try_into().expect("32 bytes");
                    let Some(value) = table.remove(&hash).map_err(engine)? else {
                        continue;
                    };
                    let header = Header::decode(value.value());
                    drop(value);
                    let size = bodies
                        .remove(header.seq)
                        .map_err(engine)?
                        .map_or(0, |b| b.value().len().saturating_sub(BODY_PREFIX))
                        as u64;
                    by_rcpt
                        .remove(&cat40(&header.recipient, &header.seq.to_be_bytes()))
                        .map_err(engine)?;
                    let count = counts
                        .get(&header.recipient)
                        .map_err(engine)?
                        .map_or(0, |v| v.value());
                    if count <= 1 {
                        counts.remove(&header.recipient).map_err(engine)?;
                    } else {
                        counts
                            .insert(&header.recipient, count - 1)
                            .map_err(engine)?;
                    }
                    let until = header.expires_at.saturating_add(tombstone_horizon_ms);
                    if until > now {
                        tombs.insert(&hash, until).map_err(engine)?;
                        tomb_exp
                            .insert(&cat40(&until.to_be_bytes(), &hash), ())
                            .map_err(engine)?;
                    }
                    n_packets = n_packets.saturating_sub(1);
                    n_bytes = n_bytes.saturating_sub(size);
                    report.expired += 1;
                }
                meta.insert(META_PACKETS, n_packets).map_err(engine)?;
                meta.insert(META_BYTES, n_bytes).map_err(engine)?;
            }

            let mut tomb_exp = txn.open_table(TOMBSTONE_EXPIRY).map_err(engine)?;
            let done: Vec<[u8; 40]> = tomb_exp
                .range::<&[u8; 40]>(..=&end)
                .map_err(engine)?
                .take(batch)
                .map(|e| e.map(|(k, _)| *k.value()).map_err(engine))
                .collect::<Result<_, _>>()?;
            if !done.is_empty() {
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
        if report == SweepReport::default() {
            txn.abort().map_err(engine)?;
        } else {
            txn.commit().map_err(engine)?;
        }
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let meta = txn.open_table(META).map_err(engine)?;
        Ok(StoreStats {
            packets: meta_get(&meta, META_PACKETS)?,
            bytes: meta_get(&meta, META_BYTES)?,
        })
    }

    fn servers(&self) -> Result<Vec<ServerEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
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
        let txn = self.db.begin_read().map_err(engine)?;
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
        txn.commit().map_err(engine)
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
        txn.commit().map_err(engine)?;
        Ok(added)
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
        {
            let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
            let out = store
                .put_batch(
                    std::slice::from_ref(&p),
                    super::super::conformance::LIMITS,
                    0,
                )
                .unwrap();
            assert_eq!(out, vec![PutOutcome::Stored { seq: 1 }]);
        }
        let store = RedbStore::open(dir.path(), 4 << 20).unwrap();
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
