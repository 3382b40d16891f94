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
    /// How this relay's peers are doing (an extension; absent from plain relays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeerSummary>,
}

/// Counts of a relay's peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSummary {
    /// Peers known.
    pub known: usize,
    /// Of those, contacted now.
    pub healthy: usize,
    /// Of those, quarantined for misbehaving.
    pub quarantined: usize,
}
