//! The messaging client: its local database and the operations behind the client commands.
//! Talks to relays only through `transport`; never depends on the relay or STUN code.

pub mod contacts;
pub mod db;
pub mod groups;
pub mod messaging;
pub mod rendezvous;
pub mod rtc;
pub mod servers;
pub mod transparent;
pub mod transport;

pub use contacts::{Contact, ContactError};
pub use db::{ClientDb, DbError};
