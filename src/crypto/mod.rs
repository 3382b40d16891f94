//! Identity keys and the end-to-end envelope of PROTOCOL.md §1–§2. Pure apart from key files:
//! no network, no clock.

pub mod challenge;
pub mod envelope;
pub mod identity;
pub mod jose;

pub use envelope::{OpenError, Opened, Sealed, open, seal};
pub use identity::{Identity, IdentityError};

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source works");
}
