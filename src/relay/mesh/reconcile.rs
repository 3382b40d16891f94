//! Range-based set reconciliation (negentropy v1) over (expiry, hash): a sync whose cost
//! follows the difference between two relays rather than their size. The expiry travels with
//! each packet (PROTOCOL.md §4), so it is the same on every relay, and recent packets cluster
//! at the end of the range. Advertised in `/status` as [`CAPABILITY`]; the endpoint is
//! `POST /sync/reconcile` with a binary negentropy message as body and answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use super::client::{PeerClient, PeerError};
use super::sync::SyncError;
use crate::proto::{PacketHash, ServerEntry};
use crate::relay::api::RelayState;
use crate::relay::clock::now_ms;
use crate::relay::store::StoreStats;

/// Capability name in `/status`.
pub const CAPABILITY: &str = "reconcile-negentropy-v1";
/// Largest negentropy message either side sends (a round that needs more splits the range).
pub const FRAME_LIMIT: u64 = 256 * 1024;
/// Largest message accepted on `/sync/reconcile` (the frame plus slack).
pub const MAX_MESSAGE_BYTES: usize = FRAME_LIMIT as usize + 64 * 1024;
/// Rounds one reconciliation may take before it is abandoned.
const MAX_ROUNDS: usize = 64;
/// How long the answering side reuses the set it built for the rounds of one session.
const SNAPSHOT_TTL: Duration = Duration::from_secs(10);

/// A sealed (expiry, hash) set of this relay's live packets.
pub type Snapshot = Arc<NegentropyStorageVector>;

/// The answering side's snapshot, shared by the rounds of a session.
#[derive(Default)]
pub struct SnapshotCache {
    cached: Mutex<Option<(Instant, StoreStats, Snapshot)>>,
}

impl SnapshotCache {
    /// The snapshot, rebuilt when the store changed (its counters moved) or after a few
    /// seconds.
    pub fn get(&self, state: &RelayState) -> Result<Snapshot, String> {
        let stats = state.store.stats().map_err(|e| e.to_string())?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, seen, snap)) = cached.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
            && *seen == stats
        {
            return Ok(snap.clone());
        }
        let snap = Arc::new(build_snapshot(state)?);
        *cached = Some((Instant::now(), stats, snap.clone()));
        Ok(snap)
    }
}

/// Builds the sealed set of live (expiry, hash) pairs from the store.
pub fn build_snapshot(state: &RelayState) -> Result<NegentropyStorageVector, String> {
    let mut set = NegentropyStorageVector::new();
    let mut failed = None;
    state
        .store
        .for_each_by_expiry(now_ms(), &mut |expires, hash| {
            if let Err(e) = set.insert(expires, Id::from_byte_array(hash.0)) {
                failed = Some(e.to_string());
                return false;
            }
            true
        })
        .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(e);
    }
    set.seal().map_err(|e| e.to_string())?;
    Ok(set)
}

/// Answers one negentropy message (the `/sync/reconcile` endpoint).
pub fn answer(state: &RelayState, message: &[u8]) -> Result<Vec<u8>, String> {
    let snapshot = state.reconcile.get(state)?;
    let mut neg =
        Negentropy::borrowed(snapshot.as_ref(), FRAME_LIMIT).map_err(|e| e.to_string())?;
    neg.reconcile(message).map_err(|e| e.to_string())
}

/// What a reconciliation with a peer found, and what it cost.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Hashes the peer has and we lack.
    pub need: Vec<PacketHash>,
    /// Hashes we have and the peer lacks.
    pub have: Vec<PacketHash>,
    /// Bytes of negentropy messages sent.
    pub bytes_out: u64,
    /// Bytes of negentropy messages received.
    pub bytes_in: u64,
    /// Round trips.
    pub rounds: usize,
}

/// Runs a reconciliation with `peer` as the initiator.
pub fn reconcile_with(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<Difference, SyncError> {
    let snapshot = build_snapshot(state).map_err(SyncError::Storage)?;
    let mut neg = Negentropy::borrowed(&snapshot, FRAME_LIMIT)
        .map_err(|e| SyncError::Storage(e.to_string()))?;
    let mut message = neg
        .initiate()
        .map_err(|e| SyncError::Storage(e.to_string()))?;
    let mut diff = Difference::default();
    let (mut have, mut need) = (Vec::new(), Vec::new());
    loop {
        diff.rounds += 1;
        if diff.rounds > MAX_ROUNDS {
            return Err(PeerError::Malformed("reconciliation does not converge".into()).into());
        }
        diff.bytes_out += message.len() as u64;
        let answer =
            client.post_bytes(peer, "/sync/reconcile", &message, MAX_MESSAGE_BYTES as u64)?;
        diff.bytes_in += answer.len() as u64;
        match neg.reconcile_with_ids(&answer, &mut have, &mut need) {
            Ok(Some(next)) => message = next,
            Ok(None) => break,
            Err(e) => {
                return Err(
                    PeerError::Malformed(format!("bad reconciliation message: {e}")).into(),
                );
            }
        }
    }
    diff.need = need.into_iter().map(|id| PacketHash(*id)).collect();
    diff.have = have.into_iter().map(|id| PacketHash(*id)).collect();
    Ok(diff)
}
