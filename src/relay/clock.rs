//! The wall clock, read in one place so that everything below takes `now` as a parameter.

use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::proto::time::{parse_rfc3339_ms, rfc3339_ms};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
