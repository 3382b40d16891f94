//! The messaging client: its local database and the operations behind the client commands.
//! Talks to relays only through `transport`; never depends on the relay or STUN code.

pub mod audio;
pub mod call;
pub mod contacts;
pub mod conversation;
pub mod db;
pub mod groups;
pub mod messaging;
pub mod reactions;
pub mod rendezvous;
pub mod rtc;
pub mod servers;
pub mod terminal;
pub mod transparent;
pub mod transport;

pub use contacts::{Contact, ContactError};
pub use db::{ClientDb, DbError};

/// Milliseconds since the Unix epoch, by the wall clock (0 if it is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
