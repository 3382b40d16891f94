//! `GET /status` (PROTOCOL.md §5): version, load, stored count and capabilities.

use serde::{Deserialize, Serialize};

/// Capability: `/fetch` accepts `since` and answers with `cursor`.
pub const CAP_FETCH_CURSOR: &str = "fetch-cursor";

/// What a relay says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Implementation version.
    pub version: String,
    /// 0.0 (idle) to 1.0 (saturated); clients prefer the lowest.
    pub load: f64,
    /// Live packets stored.
    pub messages: u64,
    /// Optional endpoints and extensions this relay speaks.
    pub capabilities: Vec<String>,
}
