//! RFC 3339 timestamps as the protocol writes them (UTC, milliseconds, `Z`). Pure: the caller
//! supplies the instant; nothing here reads the clock.

use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 UTC with milliseconds and a `Z`, e.g. `2026-11-26T19:27:44.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let text = rfc3339_ms(1_795_721_264_123);
        assert_eq!(text, "2026-11-26T19:27:44.123Z");
        assert_eq!(parse_rfc3339_ms(&text), Some(1_795_721_264_123));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
