//! Peer health: a score per peer that misbehaviour lowers and good service raises, exponential
//! back-off for unreachable peers, quarantine below a threshold (not synced with, not pushed to,
//! not handed to others), and a way back. Scores are kept in the store and survive restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::proto::status::PeerSummary;
use crate::proto::{PacketHash, ServerEntry};
use crate::relay::store::Store;

/// Score of a peer we know nothing about.
pub const INITIAL_SCORE: f64 = 50.0;
/// Highest score.
pub const MAX_SCORE: f64 = 100.0;
/// Below this a peer is quarantined.
pub const QUARANTINE_BELOW: f64 = 20.0;
/// Score a peer restarts from when its quarantine ends: one more offence sends it back.
pub const PROBATION_SCORE: f64 = 30.0;
/// First quarantine; each further one doubles, up to [`MAX_QUARANTINE_MS`].
pub const BASE_QUARANTINE_MS: u64 = 3600 * 1000;
/// Longest quarantine.
pub const MAX_QUARANTINE_MS: u64 = 24 * 3600 * 1000;
/// Longest back-off for an unreachable peer.
pub const MAX_BACKOFF_MS: u64 = 3600 * 1000;
/// Hashes remembered per peer as "it holds this", for spot checks.
const HELD_SAMPLE: usize = 64;

/// What a peer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A sync or push went well.
    Served,
    /// It could not be reached.
    Unreachable,
    /// It sent a packet that fails validation or that we did not ask for.
    Tampered,
    /// It answered with something that is not the protocol (shape, size).
    Malformed,
    /// It advertised packets and then did not deliver them (refusing to relay).
    Withheld,
    /// It no longer holds live packets it held before (dropping).
    Dropped,
}

impl Event {
    fn delta(self) -> f64 {
        match self {
            Event::Served => 5.0,
            Event::Unreachable => -2.0,
            Event::Tampered => -40.0,
            Event::Malformed => -20.0,
            Event::Withheld => -10.0,
            Event::Dropped => -15.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Event::Served => "served",
            Event::Unreachable => "unreachable",
            Event::Tampered => "tampered",
            Event::Malformed => "malformed",
            Event::Withheld => "withheld",
            Event::Dropped => "dropped",
        }
    }
}

/// What is kept about one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerRecord {
    /// 0–100; see the constants.
    pub score: f64,
    /// Consecutive failures to reach it.
    pub failures: u32,
    /// Not contacted before this time (ms), for back-off.
    pub retry_at: u64,
    /// Quarantined until this time (ms).
    pub quarantined_until: u64,
    /// How many times it was quarantined.
    pub quarantines: u32,
    /// Last time it served us well (ms).
    pub last_ok: u64,
    /// Penalties so far.
    pub penalties: u64,
    /// The last problem seen, for the operator.
    pub last_problem: Option<String>,
}

impl Default for PeerRecord {
    fn default() -> Self {
        Self {
            score: INITIAL_SCORE,
            failures: 0,
            retry_at: 0,
            quarantined_until: 0,
            quarantines: 0,
            last_ok: 0,
            penalties: 0,
            last_problem: None,
        }
    }
}

impl PeerRecord {
    /// Whether it is quarantined at `now`.
    pub fn quarantined(&self, now: u64) -> bool {
        now < self.quarantined_until
    }

    /// Whether it may be contacted at `now`.
    pub fn healthy(&self, now: u64) -> bool {
        !self.quarantined(now) && now >= self.retry_at
    }

    /// Applies `event` at `now`; `base_backoff_ms` is the first back-off step.
    pub fn apply(&mut self, event: Event, now: u64, base_backoff_ms: u64) {
        if self.quarantined_until != 0 && now >= self.quarantined_until {
            // Quarantine served: on probation.
            self.quarantined_until = 0;
            self.score = self.score.max(PROBATION_SCORE);
        }
        let floor = if event == Event::Unreachable {
            // Being down is not misbehaving: back-off handles it, never quarantine.
            self.score.min(QUARANTINE_BELOW)
        } else {
            0.0
        };
        self.score = (self.score + event.delta()).clamp(floor, MAX_SCORE);
        match event {
            Event::Served => {
                self.failures = 0;
                self.retry_at = 0;
                self.last_ok = now;
            }
            Event::Unreachable => {
                self.failures = self.failures.saturating_add(1);
                let factor = 1u64 << self.failures.min(20);
                self.retry_at = now + base_backoff_ms.saturating_mul(factor).min(MAX_BACKOFF_MS);
            }
            _ => {
                self.penalties += 1;
                self.last_problem = Some(event.name().to_owned());
            }
        }
        if self.score < QUARANTINE_BELOW && !self.quarantined(now) {
            let length = BASE_QUARANTINE_MS
                .saturating_mul(1 << self.quarantines.min(10))
                .min(MAX_QUARANTINE_MS);
            self.quarantined_until = now + length;
            self.quarantines += 1;
        }
    }
}

/// One peer as shown to the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    /// `host:port`.
    pub peer: String,
    /// `healthy`, `backing-off` or `quarantined`.
    pub state: &'static str,
    /// Its record.
    #[serde(flatten)]
    pub record: PeerRecord,
}

/// Every peer's record, shared by the mesh tasks and the API.
pub struct PeerBook {
    records: Mutex<HashMap<ServerEntry, PeerRecord>>,
    capabilities: Mutex<HashMap<ServerEntry, (bool, u64)>>,
    held: Mutex<HashMap<ServerEntry, VecDeque<PacketHash>>>,
    store: Arc<dyn Store>,
    base_backoff_ms: u64,
}

impl PeerBook {
    /// Loads the records kept in `store`.
    pub fn load(store: Arc<dyn Store>, base_backoff_ms: u64) -> Self {
        let mut records = HashMap::new();
        match store.peer_records() {
            Ok(list) => {
                for (peer, bytes) in list {
                    let record = if bytes.is_empty() {
                        PeerRecord::default()
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or_default()
                    };
                    records.insert(peer, record);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read peer records; starting afresh"),
        }
        Self {
            records: Mutex::new(records),
            capabilities: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            store,
            base_backoff_ms,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<ServerEntry, PeerRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything about `peers` (in memory; the caller removes them from the store).
    pub fn forget(&self, peers: &[ServerEntry]) {
        let mut records = self.records();
        let mut capabilities = self.capabilities.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for peer in peers {
            records.remove(peer);
            capabilities.remove(peer);
            held.remove(peer);
        }
    }

    /// The record of `peer` (default for an unknown one).
    pub fn record(&self, peer: &ServerEntry) -> PeerRecord {
        self.records().get(peer).cloned().unwrap_or_default()
    }

    /// Whether `peer` may be contacted at `now`.
    pub fn is_healthy(&self, peer: &ServerEntry, now: u64) -> bool {
        self.records().get(peer).is_none_or(|r| r.healthy(now))
    }

    /// Whether `peer` is quarantined at `now`.
    pub fn is_quarantined(&self, peer: &ServerEntry, now: u64) -> bool {
        self.records().get(peer).is_some_and(|r| r.quarantined(now))
    }

    /// Records what `peer` did and keeps the record.
    pub fn note(&self, peer: &ServerEntry, event: Event, now: u64) {
        let record = {
            let mut records = self.records();
            let record = records.entry(peer.clone()).or_default();
            let was_quarantined = record.quarantined(now);
            record.apply(event, now, self.base_backoff_ms);
            if event != Event::Served && event != Event::Unreachable {
                tracing::warn!(peer = %peer, problem = event.name(), score = record.score, "peer penalised");
            }
            if !was_quarantined && record.quarantined(now) {
                tracing::warn!(
                    peer = %peer,
                    minutes = (record.quarantined_until - now) / 60_000,
                    "peer quarantined"
                );
            }
            record.clone()
        };
        let bytes = serde_json::to_vec(&record).expect("record serializes");
        if let Err(e) = self.store.save_peer_record(peer, &bytes) {
            tracing::error!(error = %e, "cannot keep a peer record");
        }
    }

    /// `peer` has just called us, so it is up: any back-off from earlier failures to reach
    /// it ends now (its score and any quarantine stay). Without this, a peer that was down
    /// when we last tried would miss every broadcast until our next sync with it.
    pub fn note_alive(&self, peer: &ServerEntry, now: u64) {
        let record = {
            let mut records = self.records();
            let Some(record) = records.get_mut(peer) else {
                return;
            };
            if record.retry_at <= now || record.quarantined(now) {
                return;
            }
            record.retry_at = 0;
            record.failures = 0;
            record.clone()
        };
        tracing::debug!(peer = %peer, "peer is up again");
        let bytes = serde_json::to_vec(&record).expect("record serializes");
        if let Err(e) = self.store.save_peer_record(peer, &bytes) {
            tracing::error!(error = %e, "cannot keep a peer record");
        }
    }

    /// Whether `peer` offers set reconciliation, if checked less than `max_age_ms` ago.
    pub fn capability(&self, peer: &ServerEntry, now: u64, max_age_ms: u64) -> Option<bool> {
        let caps = self.capabilities.lock().unwrap_or_else(|p| p.into_inner());
        caps.get(peer)
            .filter(|(_, at)| now.saturating_sub(*at) < max_age_ms)
            .map(|(offers, _)| *offers)
    }

    /// Remembers whether `peer` offers set reconciliation.
    pub fn set_capability(&self, peer: &ServerEntry, offers: bool, now: u64) {
        let mut caps = self.capabilities.lock().unwrap_or_else(|p| p.into_inner());
        caps.insert(peer.clone(), (offers, now));
    }

    /// Remembers that `peer` holds `hash` (it advertised it, or accepted our push).
    pub fn note_held(&self, peer: &ServerEntry, hash: PacketHash) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let sample = held.entry(peer.clone()).or_default();
        if sample.len() >= HELD_SAMPLE {
            sample.pop_front();
        }
        sample.push_back(hash);
    }

    /// Called when `peer` accepted a pushed packet.
    pub fn push_accepted(&self, peer: &ServerEntry, hash: PacketHash) {
        self.note_held(peer, hash);
    }

    /// Up to `n` hashes `peer` should hold, oldest first, taken out of the sample.
    pub fn take_spot_check(&self, peer: &ServerEntry, n: usize) -> Vec<PacketHash> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sample) = held.get_mut(peer) else {
            return Vec::new();
        };
        let n = n.min(sample.len());
        sample.drain(..n).collect()
    }

    /// Every peer with a record, for the operator.
    pub fn views(&self, peers: &[ServerEntry], now: u64) -> Vec<PeerView> {
        let records = self.records();
        peers
            .iter()
            .map(|p| {
                let record = records.get(p).cloned().unwrap_or_default();
                let state = if record.quarantined(now) {
                    "quarantined"
                } else if record.healthy(now) {
                    "healthy"
                } else {
                    "backing-off"
                };
                PeerView {
                    peer: p.to_string(),
                    state,
                    record,
                }
            })
            .collect()
    }

    /// Counts over `peers`.
    pub fn counts(&self, peers: &[ServerEntry], now: u64) -> PeerSummary {
        let records = self.records();
        let mut counts = PeerSummary {
            known: peers.len(),
            ..PeerSummary::default()
        };
        for p in peers {
            match records.get(p) {
                Some(r) if r.quarantined(now) => counts.quarantined += 1,
                Some(r) if !r.healthy(now) => {}
                _ => counts.healthy += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_quarantines_at_once_and_probation_follows() {
        let mut r = PeerRecord::default();
        r.apply(Event::Tampered, 1_000, 1_000);
        assert!(r.quarantined(1_000));
        assert!(!r.healthy(1_000));
        assert_eq!(r.quarantined_until, 1_000 + BASE_QUARANTINE_MS);
        // After the quarantine it is on probation: service earns its way back.
        let later = r.quarantined_until + 1;
        r.apply(Event::Served, later, 1_000);
        assert!(r.healthy(later));
        assert_eq!(r.score, PROBATION_SCORE + 5.0);
        // A second offence brings a longer quarantine.
        r.apply(Event::Tampered, later + 1, 1_000);
        assert_eq!(r.quarantined_until, later + 1 + 2 * BASE_QUARANTINE_MS);
    }

    #[test]
    fn unreachable_peers_back_off_exponentially() {
        let mut r = PeerRecord::default();
        r.apply(Event::Unreachable, 0, 1_000);
        assert_eq!(r.retry_at, 2_000);
        r.apply(Event::Unreachable, 2_000, 1_000);
        assert_eq!(r.retry_at, 2_000 + 4_000);
        for _ in 0..30 {
            r.apply(Event::Unreachable, 10_000, 1_000);
        }
        assert_eq!(r.retry_at, 10_000 + MAX_BACKOFF_MS);
        assert!(!r.quarantined(10_000), "being down never quarantines");
        r.apply(Event::Served, 20_000, 1_000);
        assert!(r.healthy(20_000));
        assert_eq!(r.failures, 0);
    }

    #[test]
    fn repeated_small_offences_add_up() {
        let mut r = PeerRecord::default();
        r.apply(Event::Withheld, 0, 1_000);
        r.apply(Event::Withheld, 0, 1_000);
        assert!(!r.quarantined(0));
        r.apply(Event::Dropped, 0, 1_000);
        assert!(r.quarantined(0), "{r:?}");
        assert_eq!(r.penalties, 3);
        assert_eq!(r.last_problem.as_deref(), Some("dropped"));
    }
}
