//! The client's local database (redb under `[client] data_dir`). Only this module touches redb.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// contact name → contact JSON.
const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");

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

fn engine<E: std::fmt::Display>(e: E) -> DbError {
    DbError::Engine(e.to_string())
}

/// The client's database.
pub struct ClientDb {
    db: Database,
}

impl ClientDb {
    /// Opens (creating if needed) `dir/client.redb`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let open_err = |message: String| DbError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let db = Database::create(dir.join("client.redb")).map_err(|e| open_err(e.to_string()))?;
        let txn = db.begin_write().map_err(engine)?;
        txn.open_table(CONTACTS).map_err(engine)?;
        txn.commit().map_err(engine)?;
        Ok(Self { db })
    }

    /// A contact's stored JSON.
    pub fn contact(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(CONTACTS).map_err(engine)?;
        Ok(table.get(name).map_err(engine)?.map(|v| v.value().to_vec()))
    }

    /// Every contact, by name.
    pub fn contacts(&self) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let table = txn.open_table(CONTACTS).map_err(engine)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(engine)? {
            let (k, v) = entry.map_err(engine)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores a contact (insert or replace).
    pub fn put_contact(&self, name: &str, json: &[u8]) -> Result<(), DbError> {
        let txn = self.db.begin_write().map_err(engine)?;
        txn.open_table(CONTACTS)
            .map_err(engine)?
            .insert(name, json)
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }

    /// Renames a contact atomically; false when `from` does not exist.
    pub fn rename_contact(&self, from: &str, to: &str) -> Result<bool, DbError> {
        let txn = self.db.begin_write().map_err(engine)?;
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
        let txn = self.db.begin_write().map_err(engine)?;
        let removed = txn
            .open_table(CONTACTS)
            .map_err(engine)?
            .remove(name)
            .map_err(engine)?
            .is_some();
        txn.commit().map_err(engine)?;
        Ok(removed)
    }
}
