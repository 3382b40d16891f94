//! The client's local database (redb under `[client] data_dir`). Only this module touches redb.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// contact name → contact JSON.
const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
/// Small named values: relay assignments, cursors, channels (see the callers' key prefixes).
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// Packet hashes already handled by `receive`.
const SEEN: TableDefinition<&[u8; 32], ()> = TableDefinition::new("seen");
/// `channel/timestamp-ms(13 digits)/id` → history entry JSON.
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
/// message id → its key in `MESSAGES`.
const MESSAGE_IDS: TableDefinition<&str, &str> = TableDefinition::new("message_ids");
/// Known relays: `host:port` → what we know of them (JSON).
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");

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

/// The client's database.
pub struct ClientDb {
    db: Database,
    relaxed: std::sync::atomic::AtomicBool,
}

impl ClientDb {
    /// Opens (creating if needed) `dir/client.redb`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let open_err = |message: String| DbError::Open {
            path: dir.display().to_string(),
            message,
        };
        let path = dir.join("client.redb");
        keep_private(dir, &path).map_err(|e| open_err(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                "another jasper is using it (a running `chat` or `receive --watch`?); \
                 stop that one or run this command there"
                    .into(),
            ),
            e if crate::redb_file::is_damaged(&e) => open_err(format!("{e}; {DAMAGED}")),
            e => open_err(e.to_string()),
        })?;
        let txn = db.begin_write().map_err(engine)?;
        txn.open_table(CONTACTS).map_err(engine)?;
        txn.open_table(SETTINGS).map_err(engine)?;
        txn.open_table(SEEN).map_err(engine)?;
        txn.open_table(MESSAGES).map_err(engine)?;
        txn.open_table(MESSAGE_IDS).map_err(engine)?;
        txn.open_table(SERVERS).map_err(engine)?;
        txn.commit().map_err(engine)?;
        Ok(Self {
            db,
            relaxed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// While relaxed, commits skip the disk flush; [`ClientDb::flush`] makes them all durable
    /// at once. For bulk work (a big receive) where a crash only means fetching again.
    pub fn set_relaxed(&self, relaxed: bool) {
        self.relaxed
            .store(relaxed, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every earlier commit durable.
    pub fn flush(&self) -> Result<(), DbError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }

    /// Every (key, value) of a string-keyed table.
    fn all(&self, def: TableDefinition<&str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(def).map_err(engine)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(engine)? {
            let (k, v) = entry.map_err(engine)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Inserts or replaces one value of a string-keyed table.
    fn put(
        &self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), DbError> {
        let txn = self.begin_write()?;
        txn.open_table(def)
            .map_err(engine)?
            .insert(key, value)
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }

    /// Removes one entry of a string-keyed table; false when there was none.
    fn remove<V: redb::Value + 'static>(
        &self,
        def: TableDefinition<&str, V>,
        key: &str,
    ) -> Result<bool, DbError> {
        let txn = self.begin_write()?;
        let removed = txn
            .open_table(def)
            .map_err(engine)?
            .remove(key)
            .map_err(engine)?
            .is_some();
        txn.commit().map_err(engine)?;
        Ok(removed)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, DbError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        if self.relaxed.load(std::sync::atomic::Ordering::Relaxed) {
            txn.set_durability(redb::Durability::None).map_err(engine)?;
        }
        Ok(txn)
    }

    /// A named value.
    pub fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(SETTINGS).map_err(engine)?;
        Ok(table
            .get(key)
            .map_err(engine)?
            .map(|v| v.value().to_owned()))
    }

    /// Sets a named value.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        let txn = self.begin_write()?;
        txn.open_table(SETTINGS)
            .map_err(engine)?
            .insert(key, value)
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }

    /// Removes a named value; false when there was none.
    pub fn remove_setting(&self, key: &str) -> Result<bool, DbError> {
        self.remove(SETTINGS, key)
    }

    /// Every named value whose key starts with `prefix`.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
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
    }

    /// Marks a packet hash as handled; false when it was already.
    pub fn mark_seen(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        let txn = self.begin_write()?;
        let fresh = txn
            .open_table(SEEN)
            .map_err(engine)?
            .insert(hash, ())
            .map_err(engine)?
            .is_none();
        txn.commit().map_err(engine)?;
        Ok(fresh)
    }

    /// Whether a packet hash was handled.
    pub fn seen(&self, hash: &[u8; 32]) -> Result<bool, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(SEEN).map_err(engine)?;
        Ok(table.get(hash).map_err(engine)?.is_some())
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
        let key = format!("{channel}/{timestamp_ms:013}/{id}");
        let txn = self.begin_write()?;
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
    }

    /// The entry JSON of message `id`.
    pub fn message(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let ids = txn.open_table(MESSAGE_IDS).map_err(engine)?;
        let Some(key) = ids.get(id).map_err(engine)?.map(|k| k.value().to_owned()) else {
            return Ok(None);
        };
        let table = txn.open_table(MESSAGES).map_err(engine)?;
        Ok(table
            .get(key.as_str())
            .map_err(engine)?
            .map(|v| v.value().to_vec()))
    }

    /// Replaces the entry of a known message `id`.
    pub fn update_message(&self, id: &str, json: &[u8]) -> Result<bool, DbError> {
        let txn = self.begin_write()?;
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
    }

    /// The history of `channel`, oldest first.
    pub fn channel_messages(&self, channel: &str) -> Result<Vec<Vec<u8>>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(MESSAGES).map_err(engine)?;
        let start = format!("{channel}/");
        let end = format!("{channel}0");
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..end.as_str()).map_err(engine)? {
            out.push(entry.map_err(engine)?.1.value().to_vec());
        }
        Ok(out)
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
        let txn = self.begin_write()?;
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
    }

    /// A contact's stored JSON.
    pub fn contact(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(CONTACTS).map_err(engine)?;
        Ok(table.get(name).map_err(engine)?.map(|v| v.value().to_vec()))
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
        let txn = self.begin_write()?;
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
    }

    /// Removes a contact; false when it did not exist.
    pub fn remove_contact(&self, name: &str) -> Result<bool, DbError> {
        self.remove(CONTACTS, name)
    }
}
