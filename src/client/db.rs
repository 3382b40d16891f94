//! The client's local database (redb under `[client] data_dir`). Only this module touches redb.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

/// contact name → contact JSON.
const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
/// Small named values: relay assignments, cursors, channels (see the callers' key prefixes).
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// Packet hashes handled by `receive`, from before the time was kept (moved to [`SEEN`] when
/// the database is opened).
const SEEN_UNTIMED: TableDefinition<&[u8; 32], ()> = TableDefinition::new("seen");
/// Packet hashes already handled by `receive` → when (Unix ms).
const SEEN: TableDefinition<&[u8; 32], u64> = TableDefinition::new("seen_at");
/// When a packet was handled (big-endian Unix ms) followed by its hash, so that the oldest
/// are forgotten first.
const SEEN_BY_TIME: TableDefinition<&[u8; 40], ()> = TableDefinition::new("seen_by_time");
/// `channel/timestamp-ms(13 digits)/id` → history entry JSON.
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
/// message id → its key in `MESSAGES`.
const MESSAGE_IDS: TableDefinition<&str, &str> = TableDefinition::new("message_ids");

/// Edits, deletions and reactions that came before the message they name:
/// `message id/packet hash (hex)` → the action (JSON), applied when the message comes.
const EARLY_ACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("early_actions");
/// The same, from people neither in our contacts nor in the group: kept apart, so that
/// however many they send, actions from people we know still find room.
const EARLY_ACTIONS_FROM_STRANGERS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("early_actions_from_strangers");
/// Both tables of early actions.
const EARLY_TABLES: [TableDefinition<&str, &[u8]>; 2] =
    [EARLY_ACTIONS, EARLY_ACTIONS_FROM_STRANGERS];
/// Known relays: `host:port` → what we know of them (JSON).
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");

/// The range of `MESSAGES` keys that holds the history of `channel` (`{channel}/…`; `0`
/// follows `/`).
fn channel_keys(channel: &str) -> (String, String) {
    (format!("{channel}/"), format!("{channel}0"))
}

/// Errors of the client database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened.
    #[error("cannot open the client database in {path}: {message}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
    /// Any engine failure.
    #[error("client database error: {0}")]
    Engine(String),
}

/// What to do about a client database that does not open because it is damaged.
const DAMAGED: &str = "client.redb is damaged or not jasper's: move it aside and jasper starts a \
     new one (its contacts, groups and history are then gone; your key is not in it), or \
     restore a backup";

fn engine<E: std::fmt::Display>(e: E) -> DbError {
    DbError::Engine(e.to_string())
}

/// Makes `dir` and the database file at `path` in it readable by their owner only (the
/// history holds what was said, in clear): a new directory is made 0700 and a new file 0600,
/// and an existing file (from a version that did not do this) is narrowed to 0600, as is an
/// existing directory when we may.
fn keep_private(dir: &Path, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let narrow = |p: &Path, mode: u32| -> std::io::Result<()> {
            let now = std::fs::metadata(p)?.permissions().mode() & 0o777;
            if now & 0o077 != 0 {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        };
        // A directory of someone else's (a shared place named as data_dir) stays as it is.
        let _ = narrow(dir, 0o700);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => narrow(path, 0o600),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        std::fs::create_dir_all(dir)
    }
}

/// How long an open database may sit unused before it is closed, so that other jasper
/// commands (a `send` beside a running `chat` or `receive --watch`) can open it.
pub const IDLE_CLOSE: Duration = Duration::from_millis(50);
/// How long opening waits for another jasper to close the database.
pub const OPEN_WAIT: Duration = Duration::from_secs(15);

/// The client's database. It is held open only while in use: after [`IDLE_CLOSE`] without a
/// transaction it is closed (made durable first), and the next use opens it again, waiting up
/// to [`OPEN_WAIT`] while another jasper has it. So several commands of one user share it.
pub struct ClientDb {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    path: PathBuf,
    held: Mutex<Held>,
    relaxed: AtomicBool,
}

struct Held {
    db: Option<Database>,
    last_use: Instant,
    /// Relaxed commits not yet made durable.
    unflushed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_err(&self, message: String) -> DbError {
        DbError::Open {
            path: self.dir.display().to_string(),
            message,
        }
    }

    /// Opens the file, waiting up to `wait` while another jasper has it.
    fn open_file(&self, wait: Duration) -> Result<Database, DbError> {
        let deadline = Instant::now() + wait;
        loop {
            match Database::create(&self.path) {
                Ok(db) => return Ok(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(self.open_err(format!(
                        "another jasper has kept it open for over {} s; stop that one or \
                         try again",
                        wait.as_secs()
                    )));
                }
                Err(e) if crate::redb_file::is_damaged(&e) => {
                    return Err(self.open_err(format!("{e}; {DAMAGED}")));
                }
                Err(e) => return Err(self.open_err(e.to_string())),
            }
        }
    }

    /// Closes the database if it has been idle for [`IDLE_CLOSE`]. Returns how long to wait
    /// before looking again, or `None` once the `ClientDb` is gone.
    fn close_if_idle(weak: &Weak<Shared>) -> Option<Duration> {
        let shared = weak.upgrade()?;
        let mut held = shared.lock();
        if held.db.is_none() {
            return Some(IDLE_CLOSE);
        }
        let idle = held.last_use.elapsed();
        if idle < IDLE_CLOSE {
            return Some(IDLE_CLOSE - idle);
        }
        if held.unflushed {
            match held.db.as_ref().map(flush_all) {
                Some(Ok(())) => held.unflushed = false,
                // Kept open; the owner's own flush reports the error.
                _ => return Some(IDLE_CLOSE),
            }
        }
        held.db = None;
        Some(IDLE_CLOSE)
    }
}

/// The [`SEEN_BY_TIME`] key of a hash handled at `at_ms`.
fn seen_key(at_ms: u64, hash: &[u8; 32]) -> [u8; 40] {
    let mut key = [0; 40];
    key[..8].copy_from_slice(&at_ms.to_be_bytes());
    key[8..].copy_from_slice(hash);
    key
}

/// Moves the hashes of a database from before seen times were kept into [`SEEN`], as handled
/// `now_ms` (so they are kept the full time from now), and drops the old table.
fn time_untimed_seen(txn: &redb::WriteTransaction, now_ms: u64) -> Result<(), DbError> {
    let exists = txn
        .list_tables()
        .map_err(engine)?
        .any(|t| t.name() == SEEN_UNTIMED.name());
    if !exists {
        return Ok(());
    }
    {
        let old = txn.open_table(SEEN_UNTIMED).map_err(engine)?;
        let mut seen = txn.open_table(SEEN).map_err(engine)?;
        let mut by_time = txn.open_table(SEEN_BY_TIME).map_err(engine)?;
        for entry in old.iter().map_err(engine)? {
            let hash = *entry.map_err(engine)?.0.value();
            if seen.insert(&hash, now_ms).map_err(engine)?.is_none() {
                by_time
                    .insert(&seen_key(now_ms, &hash), ())
                    .map_err(engine)?;
            }
        }
    }
    txn.delete_table(SEEN_UNTIMED).map_err(engine)?;
    Ok(())
}

/// Makes every earlier commit of `db` durable.
fn flush_all(db: &Database) -> Result<(), DbError> {
    let mut txn = db.begin_write().map_err(engine)?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(engine)?;
    txn.commit().map_err(engine)
}

/// What a transaction in [`ClientDb::with`] works on.
struct Open<'a> {
    db: &'a Database,
    relaxed: bool,
    unflushed: &'a mut bool,
}

impl Open<'_> {
    fn begin_read(&self) -> Result<redb::ReadTransaction, DbError> {
        self.db.begin_read().map_err(engine)
    }

    fn begin_write(&mut self) -> Result<redb::WriteTransaction, DbError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        if self.relaxed {
            txn.set_durability(redb::Durability::None).map_err(engine)?;
            *self.unflushed = true;
        }
        Ok(txn)
    }
}

impl ClientDb {
    /// Opens (creating if needed) `dir/client.redb`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join("client.redb");
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            path: path.clone(),
            held: Mutex::new(Held {
                db: None,
                last_use: Instant::now(),
                unflushed: false,
            }),
            relaxed: AtomicBool::new(false),
        });
        keep_private(dir, &path).map_err(|e| shared.open_err(e.to_string()))?;
        let db = shared.open_file(OPEN_WAIT)?;
        let txn = db.begin_write().map_err(engine)?;
        txn.open_table(CONTACTS).map_err(engine)?;
        txn.open_table(SETTINGS).map_err(engine)?;
        txn.open_table(SEEN).map_err(engine)?;
        txn.open_table(SEEN_BY_TIME).map_err(engine)?;
        time_untimed_seen(&txn, crate::client::now_ms())?;
        txn.open_table(MESSAGES).map_err(engine)?;
        txn.open_table(MESSAGE_IDS).map_err(engine)?;
        txn.open_table(EARLY_ACTIONS).map_err(engine)?;
        txn.open_table(EARLY_ACTIONS_FROM_STRANGERS)
            .map_err(engine)?;
        txn.open_table(SERVERS).map_err(engine)?;
        txn.commit().map_err(engine)?;
        shared.lock().db = Some(db);
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("jasper-db-idle".into())
            .spawn(move || {
                while let Some(wait) = Shared::close_if_idle(&weak) {
                    std::thread::sleep(wait);
                }
            })
            .map_err(|e| DbError::Engine(format!("cannot start a thread: {e}")))?;
        Ok(Self { shared })
    }

    /// Runs `f` on the open database (opening it first if it was closed while idle).
    fn with<T>(&self, f: impl FnOnce(&mut Open<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut held = self.shared.lock();
        let held = &mut *held;
        if held.db.is_none() {
            held.db = Some(self.shared.open_file(OPEN_WAIT)?);
        }
        let db = held.db.as_ref().expect("opened above");
        let relaxed = self.shared.relaxed.load(Ordering::Relaxed);
        let result = f(&mut Open {
            db,
            relaxed,
            unflushed: &mut held.unflushed,
        });
        held.last_use = Instant::now();
        result
    }

    /// Whether the database is open now (it closes when idle).
    pub fn is_open(&self) -> bool {
        self.shared.lock().db.is_some()
    }

    /// While relaxed, commits skip the disk flush; [`ClientDb::flush`] makes them all durable
    /// at once. For bulk work (a big receive) where a crash only means fetching again.
    pub fn set_relaxed(&self, relaxed: bool) {
        self.shared.relaxed.store(relaxed, Ordering::Relaxed);
    }

    /// Makes every earlier commit durable.
    pub fn flush(&self) -> Result<(), DbError> {
        self.with(|open| {
            flush_all(open.db)?;
            *open.unflushed = false;
            Ok(())
        })
    }

    /// Every (key, value) of a string-keyed table.
    fn all(&self, def: TableDefinition<&str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(def).map_err(engine)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(engine)? {
                let (k, v) = entry.map_err(engine)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Inserts or replaces one value of a string-keyed table.
    fn put<'v, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<&str, V>,
        key: &str,
        value: impl std::borrow::Borrow<V::SelfType<'v>>,
    ) -> Result<(), DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            txn.open_table(def)
                .map_err(engine)?
                .insert(key, value)
                .map_err(engine)?;
            txn.commit().map_err(engine)
        })
    }

    /// Removes one entry of a string-keyed table; false when there was none.
    fn remove<V: redb::Value + 'static>(
        &self,
        def: TableDefinition<&str, V>,
        key: &str,
    ) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let removed = txn
                .open_table(def)
                .map_err(engine)?
                .remove(key)
                .map_err(engine)?
                .is_some();
            txn.commit().map_err(engine)?;
            Ok(removed)
        })
    }

    /// A named value.
    pub fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(SETTINGS).map_err(engine)?;
            Ok(table
                .get(key)
                .map_err(engine)?
                .map(|v| v.value().to_owned()))
        })
    }

    /// Sets a named value.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        self.put(SETTINGS, key, value)
    }

    /// Removes a named value; false when there was none.
    pub fn remove_setting(&self, key: &str) -> Result<bool, DbError> {
        self.remove(SETTINGS, key)
    }

    /// Every named value whose key starts with `prefix`.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(SETTINGS).map_err(engine)?;
            let mut out = Vec::new();
            for entry in table.range(prefix..).map_err(engine)? {
                let (k, v) = entry.map_err(engine)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_owned(), v.value().to_owned()));
            }
            Ok(out)
        })
    }

    /// Marks a packet hash as handled (now); false when it was already.
    pub fn mark_seen(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        self.mark_seen_at(hash, crate::client::now_ms())
    }

    /// Marks a packet hash as handled at `at_ms`; false when it was already.
    pub fn mark_seen_at(&self, hash: &[u8; 32], at_ms: u64) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let fresh = {
                let mut seen = txn.open_table(SEEN).map_err(engine)?;
                let fresh = seen.get(hash).map_err(engine)?.is_none();
                if fresh {
                    seen.insert(hash, at_ms).map_err(engine)?;
                    txn.open_table(SEEN_BY_TIME)
                        .map_err(engine)?
                        .insert(&seen_key(at_ms, hash), ())
                        .map_err(engine)?;
                }
                fresh
            };
            txn.commit().map_err(engine)?;
            Ok(fresh)
        })
    }

    /// Forgets at most `max` packet hashes handled before `before_ms`, oldest first; returns
    /// how many. (The caller refuses messages old enough that their hash may be forgotten.)
    pub fn forget_seen_before(&self, before_ms: u64, max: usize) -> Result<usize, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let forgotten = {
                let mut by_time = txn.open_table(SEEN_BY_TIME).map_err(engine)?;
                let end = seen_key(before_ms, &[0; 32]);
                let old: Vec<[u8; 40]> = by_time
                    .range::<&[u8; 40]>(..&end)
                    .map_err(engine)?
                    .take(max)
                    .map(|e| e.map(|(k, _)| *k.value()).map_err(engine))
                    .collect::<Result<_, _>>()?;
                let mut seen = txn.open_table(SEEN).map_err(engine)?;
                for key in &old {
                    by_time.remove(key).map_err(engine)?;
                    let hash: &[u8; 32] = key[8..].try_into().expect("40 = 8 + 32");
                    seen.remove(hash).map_err(engine)?;
                }
                old.len()
            };
            txn.commit().map_err(engine)?;
            Ok(forgotten)
        })
    }

    /// Whether a packet hash was handled.
    pub fn seen(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(SEEN).map_err(engine)?;
            Ok(table.get(hash).map_err(engine)?.is_some())
        })
    }

    /// Stores a history entry under `channel`, ordered by `timestamp_ms`, findable by `id`.
    /// Returns false (and stores nothing) when the id is known already.
    pub fn put_message(
        &self,
        channel: &str,
        timestamp_ms: u64,
        id: &str,
        json: &[u8],
    ) -> Result<bool, DbError> {
        self.with(|open| {
            let key = format!("{channel}/{timestamp_ms:013}/{id}");
            let txn = open.begin_write()?;
            {
                let mut ids = txn.open_table(MESSAGE_IDS).map_err(engine)?;
                if ids.get(id).map_err(engine)?.is_some() {
                    return Ok(false);
                }
                ids.insert(id, key.as_str()).map_err(engine)?;
                txn.open_table(MESSAGES)
                    .map_err(engine)?
                    .insert(key.as_str(), json)
                    .map_err(engine)?;
            }
            txn.commit().map_err(engine)?;
            Ok(true)
        })
    }

    /// The entry JSON of message `id`.
    pub fn message(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.message_keyed(id, |_| true)
    }

    /// The entry JSON of message `id` if it is in the history of `channel`.
    pub fn message_in(&self, channel: &str, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.message_keyed(id, |key| {
            key.strip_prefix(channel)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The entry JSON of message `id` if its key in `MESSAGES` is `wanted`.
    fn message_keyed(
        &self,
        id: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let ids = txn.open_table(MESSAGE_IDS).map_err(engine)?;
            let Some(key) = ids.get(id).map_err(engine)?.map(|k| k.value().to_owned()) else {
                return Ok(None);
            };
            if !wanted(&key) {
                return Ok(None);
            }
            let table = txn.open_table(MESSAGES).map_err(engine)?;
            Ok(table
                .get(key.as_str())
                .map_err(engine)?
                .map(|v| v.value().to_vec()))
        })
    }

    /// Keeps an action on message `id` that came before the message (under the action's
    /// packet hash `tag`), unless `max` are kept already from people we know, or from
    /// strangers when `from_stranger`; false when it was not kept.
    pub fn keep_early_action(
        &self,
        id: &str,
        tag: &str,
        json: &[u8],
        max: u64,
        from_stranger: bool,
    ) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            {
                let mut table = txn
                    .open_table(EARLY_TABLES[usize::from(from_stranger)])
                    .map_err(engine)?;
                if table.len().map_err(engine)? >= max {
                    return Ok(false);
                }
                table
                    .insert(format!("{id}/{tag}").as_str(), json)
                    .map_err(engine)?;
            }
            txn.commit().map_err(engine)?;
            Ok(true)
        })
    }

    /// Takes (returns and forgets) every action kept for message `id`.
    pub fn take_early_actions(&self, id: &str) -> Result<Vec<Vec<u8>>, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let mut taken = Vec::new();
            for definition in EARLY_TABLES {
                let mut table = txn.open_table(definition).map_err(engine)?;
                let prefix = format!("{id}/");
                let mut keys = Vec::new();
                for entry in table.range(prefix.as_str()..).map_err(engine)? {
                    let (k, v) = entry.map_err(engine)?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    keys.push(k.value().to_owned());
                    taken.push(v.value().to_vec());
                }
                for key in &keys {
                    table.remove(key.as_str()).map_err(engine)?;
                }
            }
            txn.commit().map_err(engine)?;
            Ok(taken)
        })
    }

    /// Forgets kept actions for which `stale` holds; returns how many.
    pub fn forget_early_actions(&self, stale: impl Fn(&[u8]) -> bool) -> Result<usize, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let mut forgotten = 0;
            for definition in EARLY_TABLES {
                let mut table = txn.open_table(definition).map_err(engine)?;
                let mut keys = Vec::new();
                for entry in table.iter().map_err(engine)? {
                    let (k, v) = entry.map_err(engine)?;
                    if stale(v.value()) {
                        keys.push(k.value().to_owned());
                    }
                }
                for key in &keys {
                    table.remove(key.as_str()).map_err(engine)?;
                }
                forgotten += keys.len();
            }
            txn.commit().map_err(engine)?;
            Ok(forgotten)
        })
    }

    /// Replaces the entry of a known message `id`.
    pub fn update_message(&self, id: &str, json: &[u8]) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            {
                let ids = txn.open_table(MESSAGE_IDS).map_err(engine)?;
                let Some(key) = ids.get(id).map_err(engine)?.map(|k| k.value().to_owned()) else {
                    return Ok(false);
                };
                txn.open_table(MESSAGES)
                    .map_err(engine)?
                    .insert(key.as_str(), json)
                    .map_err(engine)?;
            }
            txn.commit().map_err(engine)?;
            Ok(true)
        })
    }

    /// The history of `channel`, oldest first.
    pub fn channel_messages(&self, channel: &str) -> Result<Vec<Vec<u8>>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(MESSAGES).map_err(engine)?;
            let (start, end) = channel_keys(channel);
            let mut out = Vec::new();
            for entry in table.range(start.as_str()..end.as_str()).map_err(engine)? {
                out.push(entry.map_err(engine)?.1.value().to_vec());
            }
            Ok(out)
        })
    }

    /// Whether `channel` has any history.
    pub fn has_history(&self, channel: &str) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(MESSAGES).map_err(engine)?;
            let (start, end) = channel_keys(channel);
            let mut range = table.range(start.as_str()..end.as_str()).map_err(engine)?;
            Ok(range.next().is_some())
        })
    }

    /// Deletes the history of `channel`; returns how many entries went.
    pub fn forget_channel(&self, channel: &str) -> Result<usize, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            let mut gone = 0;
            {
                let mut table = txn.open_table(MESSAGES).map_err(engine)?;
                let mut ids = txn.open_table(MESSAGE_IDS).map_err(engine)?;
                let (start, end) = channel_keys(channel);
                let keys: Vec<String> = table
                    .range(start.as_str()..end.as_str())
                    .map_err(engine)?
                    .map(|e| e.map(|(k, _)| k.value().to_owned()).map_err(engine))
                    .collect::<Result<_, _>>()?;
                for key in keys {
                    table.remove(key.as_str()).map_err(engine)?;
                    if let Some((_, id)) = key.rsplit_once('/') {
                        ids.remove(id).map_err(engine)?;
                    }
                    gone += 1;
                }
            }
            txn.commit().map_err(engine)?;
            Ok(gone)
        })
    }

    /// Known relays with what we know of them.
    pub fn servers(&self) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.all(SERVERS)
    }

    /// Records some relays and forgets others, in one transaction.
    pub fn update_servers(
        &self,
        put: &[(String, Vec<u8>)],
        forget: &[String],
    ) -> Result<(), DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            {
                let mut table = txn.open_table(SERVERS).map_err(engine)?;
                for (authority, json) in put {
                    table
                        .insert(authority.as_str(), json.as_slice())
                        .map_err(engine)?;
                }
                for authority in forget {
                    table.remove(authority.as_str()).map_err(engine)?;
                }
            }
            txn.commit().map_err(engine)
        })
    }

    /// A contact's stored JSON.
    pub fn contact(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.with(|open| {
            let txn = open.begin_read()?;
            let table = txn.open_table(CONTACTS).map_err(engine)?;
            Ok(table.get(name).map_err(engine)?.map(|v| v.value().to_vec()))
        })
    }

    /// Every contact, by name.
    pub fn contacts(&self) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.all(CONTACTS)
    }

    /// Stores a contact (insert or replace).
    pub fn put_contact(&self, name: &str, json: &[u8]) -> Result<(), DbError> {
        self.put(CONTACTS, name, json)
    }

    /// Renames a contact atomically; false when `from` does not exist.
    pub fn rename_contact(&self, from: &str, to: &str) -> Result<bool, DbError> {
        self.with(|open| {
            let txn = open.begin_write()?;
            {
                let mut table = txn.open_table(CONTACTS).map_err(engine)?;
                let Some(value) = table
                    .remove(from)
                    .map_err(engine)?
                    .map(|v| v.value().to_vec())
                else {
                    return Ok(false);
                };
                table.insert(to, value.as_slice()).map_err(engine)?;
            }
            txn.commit().map_err(engine)?;
            Ok(true)
        })
    }

    /// Removes a contact; false when it did not exist.
    pub fn remove_contact(&self, name: &str) -> Result<bool, DbError> {
        self.remove(CONTACTS, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until `db` has closed its file (idle), at most a few seconds.
    fn until_closed(db: &ClientDb) {
        for _ in 0..100 {
            if !db.is_open() {
                return;
            }
            std::thread::sleep(IDLE_CLOSE / 4);
        }
        panic!("the database stayed open while idle");
    }

    #[test]
    fn two_handles_on_one_database_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClientDb::open(dir.path()).unwrap();
        first.set_setting("from", "first").unwrap();
        until_closed(&first);
        // Another command (here another handle) opens it while the first is idle...
        let second = ClientDb::open(dir.path()).unwrap();
        assert_eq!(second.setting("from").unwrap().as_deref(), Some("first"));
        second.set_setting("from", "second").unwrap();
        // ...and the first waits its turn, then sees what the second wrote.
        assert_eq!(first.setting("from").unwrap().as_deref(), Some("second"));
        until_closed(&first);
        until_closed(&second);
    }

    #[test]
    fn relaxed_commits_are_made_durable_before_an_idle_close() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        db.set_relaxed(true);
        for n in 0..10u8 {
            assert!(db.mark_seen(&[n; 32]).unwrap());
        }
        until_closed(&db);
        drop(db);
        let again = ClientDb::open(dir.path()).unwrap();
        assert!((0..10u8).all(|n| again.seen(&[n; 32]).unwrap()));
    }

    #[test]
    fn a_database_kept_open_elsewhere_is_waited_for_then_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        drop(ClientDb::open(dir.path()).unwrap());
        // A database held open by someone else (as an older jasper did for a whole chat).
        let holder = Database::create(dir.path().join("client.redb")).unwrap();
        let shared = Shared {
            dir: dir.path().to_path_buf(),
            path: dir.path().join("client.redb"),
            held: Mutex::new(Held {
                db: None,
                last_use: Instant::now(),
                unflushed: false,
            }),
            relaxed: AtomicBool::new(false),
        };
        let started = Instant::now();
        let e = shared.open_file(Duration::from_millis(300)).err().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
        assert!(
            e.to_string().contains("another jasper has kept it open"),
            "{e}"
        );
        // Released meanwhile: the wait ends as soon as it is.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        assert!(shared.open_file(Duration::from_secs(10)).is_ok());
        release.join().unwrap();
    }

    #[test]
    fn handled_hashes_are_forgotten_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        for (n, at) in [(1u8, 3_000), (2, 1_000), (3, 2_000)] {
            assert!(db.mark_seen_at(&[n; 32], at).unwrap());
        }
        assert!(
            !db.mark_seen_at(&[2; 32], 5_000).unwrap(),
            "handled already"
        );
        assert_eq!(db.forget_seen_before(2_500, 1).unwrap(), 1, "at most `max`");
        assert!(!db.seen(&[2; 32]).unwrap(), "the oldest went first");
        assert!(db.seen(&[3; 32]).unwrap());
        assert_eq!(db.forget_seen_before(2_500, 10).unwrap(), 1);
        assert!(!db.seen(&[3; 32]).unwrap());
        assert!(db.seen(&[1; 32]).unwrap(), "handled after the cut-off");
        assert_eq!(db.forget_seen_before(2_500, 10).unwrap(), 0);
    }

    #[test]
    fn early_actions_are_kept_bounded_taken_once_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        assert!(db.keep_early_action("m1", "h1", b"old", 3, false).unwrap());
        assert!(db.keep_early_action("m1", "h2", b"new", 3, false).unwrap());
        assert!(
            db.keep_early_action("m10", "h3", b"other", 3, false)
                .unwrap()
        );
        assert!(
            !db.keep_early_action("m2", "h4", b"more", 3, false).unwrap(),
            "at most `max`"
        );
        // Strangers' are counted apart: theirs being full leaves room for ours, and the
        // reverse.
        for n in 0..3 {
            assert!(
                db.keep_early_action("m1", &format!("s{n}"), b"junk", 3, true)
                    .unwrap()
            );
        }
        assert!(!db.keep_early_action("m1", "s3", b"junk", 3, true).unwrap());
        // `m1` does not take `m10`'s, and takes both kinds.
        let mut taken = db.take_early_actions("m1").unwrap();
        taken.sort();
        assert_eq!(
            taken,
            [
                b"junk".to_vec(),
                b"junk".to_vec(),
                b"junk".to_vec(),
                b"new".to_vec(),
                b"old".to_vec()
            ]
        );
        assert!(
            db.take_early_actions("m1").unwrap().is_empty(),
            "taken once"
        );
        assert!(db.keep_early_action("m3", "s4", b"stale", 3, true).unwrap());
        assert_eq!(
            db.forget_early_actions(|v| v == b"other" || v == b"stale")
                .unwrap(),
            2
        );
        assert!(db.take_early_actions("m10").unwrap().is_empty());
        assert!(db.take_early_actions("m3").unwrap().is_empty());
    }

    #[test]
    fn hashes_from_before_seen_times_are_kept_and_timed_from_now() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A database as earlier versions wrote it: hashes without times.
            let old = Database::create(dir.path().join("client.redb")).unwrap();
            let txn = old.begin_write().unwrap();
            txn.open_table(SEEN_UNTIMED)
                .unwrap()
                .insert(&[7; 32], ())
                .unwrap();
            txn.commit().unwrap();
        }
        let db = ClientDb::open(dir.path()).unwrap();
        assert!(db.seen(&[7; 32]).unwrap());
        let now = crate::client::now_ms();
        assert_eq!(
            db.forget_seen_before(now - 60_000, 10).unwrap(),
            0,
            "timed from now"
        );
        let names: Vec<String> = db
            .with(|open| {
                let txn = open.begin_read()?;
                Ok(txn
                    .list_tables()
                    .map_err(engine)?
                    .map(|t| t.name().to_owned())
                    .collect())
            })
            .unwrap();
        assert!(!names.contains(&"seen".to_owned()), "{names:?}");
        assert_eq!(db.forget_seen_before(now + 60_000, 10).unwrap(), 1);
    }
}
