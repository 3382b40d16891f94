//! The embedded engine, reopened in place after a failure.
//!
//! Once a flush of the packet log or a commit of the index of acknowledged packets fails (a
//! full disk, an I/O error), a [`RedbStore`] refuses every write, and redb itself may refuse
//! every later operation, until the database is opened again: opening re-reads the log from
//! the index's last durable position and indexes what it finds, so nothing acknowledged is
//! lost. [`ReopeningStore`] does that in the running relay instead of waiting for someone to
//! restart it: the failed store is retired, calls answer with an error (503 at the API) until
//! every call still using it has returned, and then, at most once per [`RETRY_INTERVAL`], the
//! next call opens the database again. While the disk stays full, opening fails and is tried
//! again later; once it succeeds the relay serves and stores as before.
//!
//! A batch stored before the failure but not yet confirmed on disk is never confirmed after
//! it: sync tickets carry the generation of the store that issued them, and a ticket of a
//! retired generation is refused (its sender gets 503 and may send again). Nor is it kept:
//! the database is opened again with the log cut at the end of the failed store's last good
//! flush ([`RedbStore::reopen_after_failure`]). After a failed `fdatasync` the kernel may
//! still serve the lost pages from its cache, and a store that read them back would answer
//! the retry "already stored" for a packet that is not on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::redb::{RedbStore, StoreOptions};
use super::segments::FlushedEnd;
use super::{
    InboxEnd, NewPacket, PacketView, PutLimits, PutOutcome, Store, StoreError, StoreStats,
    SweepReport, SyncTicket, UnixMillis,
};
use crate::proto::{Fingerprint, PacketHash, ServerEntry};

/// Shortest time between two attempts to open the database again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Bits of a [`SyncTicket`] below the generation.
const GENERATION_SHIFT: u32 = 48;
const TICKET_MASK: u64 = (1 << GENERATION_SHIFT) - 1;

/// A [`RedbStore`] that opens its database again after a failure; see the module doc.
pub struct ReopeningStore {
    dir: PathBuf,
    options: StoreOptions,
    state: Mutex<State>,
    /// The database's instance id: reopening after a failure that cut the log draws a new one
    /// (see [`Store::instance`]).
    instance: std::sync::atomic::AtomicU64,
}

enum State {
    Open {
        store: Arc<RedbStore>,
        generation: u64,
    },
    /// Retired after a failure; opened again once `old` is gone.
    Retired {
        old: Weak<RedbStore>,
        /// How far `old`'s log was on disk: the reopened store keeps nothing past it.
        flushed: FlushedEnd,
        generation: u64,
        why: String,
        last_attempt: Option<Instant>,
    },
}

impl ReopeningStore {
    /// Opens the database in `dir` (see [`RedbStore::open_with`]).
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let store = RedbStore::open_with(dir, options)?;
        Ok(Self {
            dir: dir.to_owned(),
            options,
            instance: std::sync::atomic::AtomicU64::new(store.instance()),
            state: Mutex::new(State::Open {
                store: Arc::new(store),
                generation: 0,
            }),
        })
    }

    /// Packets the first open had to index from the log (non-zero after a crash).
    pub fn recovered_on_open(&self) -> u64 {
        match &*self.lock() {
            State::Open { store, .. } => store.recovered_on_open(),
            State::Retired { .. } => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store to use now and its generation, opening the database again if it was retired
    /// and may be reopened.
    fn current(&self) -> Result<(Arc<RedbStore>, u64), StoreError> {
        let mut state = self.lock();
        let (generation, why, cut_at) = match &mut *state {
            State::Open { store, generation } => return Ok((store.clone(), *generation)),
            State::Retired {
                old,
                flushed,
                generation,
                why,
                last_attempt,
            } => {
                let unavailable =
                    || StoreError::Engine(format!("{why}; the relay reopens the store by itself"));
                if last_attempt.is_some_and(|t| t.elapsed() < RETRY_INTERVAL) {
                    return Err(unavailable());
                }
                *last_attempt = Some(Instant::now());
                if old.strong_count() > 0 {
                    // A call still uses the failed store: its files stay open until it returns.
                    return Err(unavailable());
                }
                // Read only now: until `old` was gone, a flush could still advance it. (Its
                // `Drop` may still be running when the count reaches zero; then opening finds
                // the database still open and fails, and the next attempt reads this again.
                // Read early, it can only be behind: more that was never acknowledged is cut.)
                (*generation + 1, why.clone(), flushed.get())
            }
        };
        match RedbStore::reopen_after_failure(&self.dir, self.options, cut_at) {
            Ok(store) => {
                tracing::warn!(
                    reindexed = store.recovered_on_open(),
                    "reopened the store after a failure; writes are accepted again"
                );
                self.instance
                    .store(store.instance(), std::sync::atomic::Ordering::SeqCst);
                let store = Arc::new(store);
                *state = State::Open {
                    store: store.clone(),
                    generation,
                };
                Ok((store, generation))
            }
            Err(e) => {
                tracing::error!(error = %e, "reopening the store failed; will try again");
                Err(StoreError::Engine(format!(
                    "{why}; reopening it failed ({e}); the relay tries again"
                )))
            }
        }
    }

    /// Runs `op` on the current store; when it fails with an error that only reopening cures
    /// ([`StoreError::NeedsReopen`]: redb refuses everything after an I/O error, and a failed
    /// flush or held commit makes the store refuse writes), retires that store so that a
    /// later call opens the database again.
    fn with<T>(
        &self,
        op: impl FnOnce(&RedbStore, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (store, generation) = self.current()?;
        let result = op(&store, generation);
        if let Err(e) = &result
            && matches!(e, StoreError::NeedsReopen(_))
        {
            let mut state = self.lock();
            if let State::Open {
                generation: open, ..
            } = &*state
                && *open == generation
            {
                tracing::error!(error = %e, "the store failed; reopening it once no call uses it");
                *state = State::Retired {
                    old: Arc::downgrade(&store),
                    flushed: store.flushed(),
                    generation,
                    why: e.to_string(),
                    last_attempt: None,
                };
            }
        }
        result
    }
}

fn ticket(generation: u64, inner: SyncTicket) -> SyncTicket {
    debug_assert!(inner.0 <= TICKET_MASK);
    SyncTicket(generation << GENERATION_SHIFT | (inner.0 & TICKET_MASK))
}

impl Store for ReopeningStore {
    fn put_batch_deferred(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
        written: &mut dyn FnMut(SyncTicket),
    ) -> Result<(Vec<PutOutcome>, SyncTicket), StoreError> {
        self.with(|s, generation| {
            let (outcomes, inner) = s.put_batch_deferred(packets, limits, now, &mut |t| {
                written(ticket(generation, t));
            })?;
            Ok((outcomes, ticket(generation, inner)))
        })
    }

    fn sync(&self, t: SyncTicket) -> Result<(), StoreError> {
        let issued_by = t.0 >> GENERATION_SHIFT;
        self.with(|s, generation| {
            if issued_by != generation {
                return Err(StoreError::Engine(
                    "the store was reopened after a failure before this batch was confirmed \
                     on disk; send it again"
                        .into(),
                ));
            }
            s.sync(SyncTicket(t.0 & TICKET_MASK))
        })
    }

    fn get_many(
        &self,
        hashes: &[PacketHash],
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<(), StoreError> {
        self.with(|s, _| s.get_many(hashes, max_bytes, now, visit))
    }

    fn inbox(
        &self,
        recipient: &Fingerprint,
        after: u64,
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<InboxEnd, StoreError> {
        self.with(|s, _| s.inbox(recipient, after, max_bytes, now, visit))
    }

    fn for_each_hash(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        self.with(|s, _| s.for_each_hash(now, visit))
    }

    fn for_each_by_expiry(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(UnixMillis, PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        self.with(|s, _| s.for_each_by_expiry(now, visit))
    }

    fn contains(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        self.with(|s, _| s.contains(hash, now))
    }

    fn tombstoned(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        self.with(|s, _| s.tombstoned(hash, now))
    }

    fn sweep(
        &self,
        now: UnixMillis,
        tombstone_horizon_ms: u64,
        batch: usize,
    ) -> Result<SweepReport, StoreError> {
        self.with(|s, _| s.sweep(now, tombstone_horizon_ms, batch))
    }

    fn instance(&self) -> u64 {
        self.instance.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with(|s, _| s.stats())
    }

    fn servers(&self) -> Result<Vec<ServerEntry>, StoreError> {
        self.with(|s, _| s.servers())
    }

    fn peer_records(&self) -> Result<Vec<(ServerEntry, Vec<u8>)>, StoreError> {
        self.with(|s, _| s.peer_records())
    }

    fn save_peer_record(&self, server: &ServerEntry, record: &[u8]) -> Result<(), StoreError> {
        self.with(|s, _| s.save_peer_record(server, record))
    }

    fn add_servers(
        &self,
        servers: &[ServerEntry],
        max_known: usize,
    ) -> Result<Vec<ServerEntry>, StoreError> {
        self.with(|s, _| s.add_servers(servers, max_known))
    }

    fn remove_servers(&self, servers: &[ServerEntry]) -> Result<usize, StoreError> {
        self.with(|s, _| s.remove_servers(servers))
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.with(|s, _| RedbStore::checkpoint(s))
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, LIMITS, packet};
    use super::*;

    fn options() -> StoreOptions {
        StoreOptions {
            cache_bytes: 4 << 20,
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        }
    }

    impl ReopeningStore {
        fn open_store(&self) -> Arc<RedbStore> {
            match &*self.lock() {
                State::Open { store, .. } => store.clone(),
                State::Retired { .. } => panic!("the store is retired"),
            }
        }
    }

    /// Makes the store fail as a full disk does while the index of acknowledged packets is
    /// committed.
    fn fail_index_commit(store: &ReopeningStore) {
        let inner = store.open_store();
        inner.fail_held_commits(true);
        drop(inner);
        let err = store.stats().unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
    }

    #[test]
    fn the_reopening_store_passes_the_conformance_suite() {
        conformance::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            (ReopeningStore::open(dir.path(), options()).unwrap(), dir)
        });
    }

    #[test]
    fn a_failed_index_commit_is_healed_by_opening_the_store_again_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        let (p1, p2) = (packet(1, 1, 10_000), packet(2, 1, 10_000));
        // Acknowledged (flushed); its index is only held.
        store
            .put_batch(std::slice::from_ref(&p1), LIMITS, 0)
            .unwrap();
        fail_index_commit(&store);
        // The next call opens the database again, which re-reads p1 from the log.
        assert_eq!(store.stats().unwrap().packets, 1);
        assert!(store.contains(&p1.hash, 0).unwrap());
        assert!(matches!(
            store
                .put_batch(std::slice::from_ref(&p2), LIMITS, 0)
                .unwrap()[0],
            PutOutcome::Stored { .. }
        ));
        let page = conformance::inbox(&store, &p1.recipient, 0, u64::MAX, 0);
        let hashes: Vec<_> = page.packets.iter().map(|p| p.hash).collect();
        assert_eq!(hashes, vec![p1.hash, p2.hash]);
        // And it goes on after a restart as well.
        drop(store);
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        assert_eq!(store.stats().unwrap().packets, 2);
    }

    #[test]
    fn a_batch_stored_before_the_store_was_reopened_is_not_confirmed_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        let p1 = packet(1, 1, 10_000);
        let (_, ticket) = store
            .put_batch_deferred(std::slice::from_ref(&p1), LIMITS, 0, &mut |_| {})
            .unwrap();
        fail_index_commit(&store);
        let err = store.sync(ticket).unwrap_err();
        assert!(err.to_string().contains("send it again"), "{err}");
        // Sent again, it is stored anew: the reopened store keeps nothing past the last flush
        // of the failed one, and this batch was never flushed.
        assert!(matches!(
            store
                .put_batch(std::slice::from_ref(&p1), LIMITS, 0)
                .unwrap()[0],
            PutOutcome::Stored { .. }
        ));
        assert_eq!(store.stats().unwrap().packets, 1);
        // Tickets of the new store are confirmed as usual.
        let (_, ticket) = store
            .put_batch_deferred(&[packet(2, 1, 10_000)], LIMITS, 0, &mut |_| {})
            .unwrap();
        store.sync(ticket).unwrap();
    }

    #[test]
    fn after_a_failed_flush_nothing_past_the_last_good_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        let before = store.instance();
        let (p1, p2, p3) = (
            packet(1, 1, 10_000),
            packet(2, 1, 10_000),
            packet(3, 1, 10_000),
        );
        // p1 acknowledged; p2 written and indexed, but its flush fails.
        let err = conformance::ack_one_then_fail_the_flush_of_another(&store, &p1, &p2, || {
            store.open_store().fail_log_syncs(true)
        });
        assert!(err.to_string().contains("could not be flushed"), "{err}");
        // The failed store is gone; the next call opens the database again. p2's record is
        // still in the file (as in the page cache after a lost writeback) and its index entry
        // was committed, but it was never on disk: a retry must store it, not call it a
        // duplicate.
        assert_eq!(
            store.stats().unwrap().packets,
            1,
            "only the acknowledged packet is kept"
        );
        assert!(store.contains(&p1.hash, 0).unwrap());
        assert!(!store.contains(&p2.hash, 0).unwrap());
        // p2's number goes to the next packet: cursors handed out before are not taken for
        // positions in the reopened store.
        let reopened = store.instance();
        assert_ne!(reopened, before);
        let outcomes = store
            .put_batch(&[p2.clone(), p3.clone()], LIMITS, 0)
            .unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, PutOutcome::Stored { .. })),
            "{outcomes:?}"
        );
        let page = conformance::inbox(&store, &p1.recipient, 0, u64::MAX, 0);
        let hashes: Vec<_> = page.packets.iter().map(|p| p.hash).collect();
        assert_eq!(hashes, vec![p1.hash, p2.hash, p3.hash]);
        // A restart finds the same three, once each.
        drop(store);
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        assert_eq!(store.stats().unwrap().packets, 3);
        let page = conformance::inbox(&store, &p1.recipient, 0, u64::MAX, 0);
        assert_eq!(page.packets.len(), 3);
        assert_eq!(store.instance(), reopened, "kept across a clean restart");
    }

    #[test]
    fn the_store_is_not_opened_again_while_a_call_still_uses_the_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReopeningStore::open(dir.path(), options()).unwrap();
        store.put_batch(&[packet(1, 1, 10_000)], LIMITS, 0).unwrap();
        let in_flight = store.open_store();
        fail_index_commit(&store);
        for _ in 0..3 {
            let err = store.stats().unwrap_err().to_string();
            assert!(err.contains("reopens the store by itself"), "{err}");
        }
        drop(in_flight);
        // Attempts are spaced: the next one comes after the interval.
        std::thread::sleep(RETRY_INTERVAL + Duration::from_millis(100));
        assert_eq!(store.stats().unwrap().packets, 1);
    }
}
