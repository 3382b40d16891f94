//! Message sync and server sync with one peer (JASPER.md `/sync/hashes`, `/sync/servers`).
//! Blocking: the mesh task runs these on the blocking pool. Everything a peer sends is checked
//! exactly as `/send` checks a client's packet.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use super::broadcast::Fresh;
use super::client::{PeerClient, PeerError};
use super::reconcile;
use crate::proto::{Packet, PacketHash, ServerEntry};
use crate::relay::api::{RelayState, expiry_for, json_with_expiry, live_hashes_json};
use crate::relay::clock::now_ms;
use crate::relay::store::{NewPacket, PutOutcome};

/// Hashes asked for in one `/fetch`.
pub const FETCH_BATCH: usize = 100;
/// Most batches of [`FETCH_BATCH`] packets pushed to a peer in one sync.
const MAX_PUSH_BATCHES: usize = 10;
/// Hashes spot-checked per sync.
pub const SPOT_CHECK: usize = 8;
/// A spot-checked packet must stay live here at least this long, so that expiry races do not
/// count as dropping.
const SPOT_CHECK_MARGIN_MS: u64 = 60_000;
/// Allowance per packet in a `/fetch` answer beyond its message (key, signature, JSON).
const PACKET_OVERHEAD: u64 = 64 * 1024;
/// Allowance per `/fetch` answer for packets larger than our `max_message_bytes`: a peer may
/// allow larger ones, and such a packet (up to about this much larger) is then read, checked
/// and declined instead of making the whole answer too large, which an honest peer would be
/// penalised for.
const LARGER_PACKETS_ALLOWANCE: u64 = 4 << 20;
/// Most packets per sync skipped because even asked for alone their answer was larger than we
/// read; past this, such an answer counts against the peer as before (a peer answering
/// nothing but huge bodies must not go unpunished).
const MAX_OVERSIZED_SKIPS: usize = 4;

/// How long one message sync may go on pulling from a peer: twice the sync interval, and at
/// least 10 s. A sync round waits for every peer, so a peer answering slowly, call after
/// call, would otherwise hold back sync with all the others; what it has left is pulled in
/// later rounds.
pub(super) fn pull_budget(state: &RelayState) -> std::time::Duration {
    (state.config.message_sync_interval * 2).max(std::time::Duration::from_secs(10))
}

/// The most we read of a `/fetch` answer for `packets` packets.
fn fetch_answer_limit(state: &RelayState, packets: usize) -> u64 {
    packets as u64 * (state.config.max_message_bytes + PACKET_OVERHEAD)
        + LARGER_PACKETS_ALLOWANCE
        + 1024
}
/// Packets declined under this relay's own limits that are remembered, so that sync does not
/// pull them again every round.
pub const DECLINED_KEPT: usize = 16_384;

/// Hashes of packets this relay declined (larger than its `max_message_bytes`), or with
/// `T = (ServerEntry, PacketHash)` packets one peer could not send in an answer we read: the
/// newest [`DECLINED_KEPT`].
pub struct Declined<T = PacketHash> {
    set: HashSet<T>,
    order: VecDeque<T>,
}

impl<T> Default for Declined<T> {
    fn default() -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Declined<T> {
    /// Remembers `item`, forgetting the oldest past [`DECLINED_KEPT`].
    pub fn insert(&mut self, item: T) {
        if self.set.insert(item.clone()) {
            self.order.push_back(item);
            if self.order.len() > DECLINED_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    /// Whether `item` is remembered.
    pub fn contains(&self, item: &T) -> bool {
        self.set.contains(item)
    }

    /// Everything remembered, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }
}

/// What one message sync with a peer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessageSyncReport {
    /// `hashes` or `reconcile`.
    pub method: &'static str,
    /// Bytes spent finding the difference (hash lists or reconciliation messages).
    pub discovery_bytes: u64,
    /// Packets pushed to the peer because it lacked them.
    pub pushed: usize,
    /// Hashes the peer said we lack.
    pub advertised: usize,
    /// Of those, ones we asked for (not known, not tombstoned here).
    pub requested: usize,
    /// Packets received that passed every check and were stored.
    pub stored: usize,
    /// Requested packets the peer did not deliver.
    pub withheld: usize,
    /// Requested packets skipped because even asked for alone they were larger than we read.
    pub too_large: usize,
    /// Requested packets left for a later round: the sync ran out of time.
    pub left: usize,
}

/// Why a peer is not to be believed: it sent something no honest relay sends.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Transport or shape problem (see [`PeerError::is_misbehaviour`]).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The peer sent a packet that fails validation, or that we did not ask for.
    #[error("sent a bad packet: {0}")]
    BadPacket(String),
    /// Storing failed here.
    #[error("storage: {0}")]
    Storage(String),
}

impl SyncError {
    /// Whether this is the peer's fault.
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            SyncError::Peer(e) => e.is_misbehaviour(),
            SyncError::BadPacket(_) => true,
            SyncError::Storage(_) => false,
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, PeerError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(PeerError::Malformed(
            "the answer is not a JSON object".into(),
        )),
        Err(e) => Err(PeerError::Malformed(format!("the answer is not JSON: {e}"))),
    }
}

fn array<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a [Value], PeerError> {
    map.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| PeerError::Malformed(format!("the answer has no `{field}` array")))
}

/// The hashes at the start of a `/sync/hashes` answer cut short: `{"hashes":[` and then
/// quoted hashes, with whitespace allowed between tokens, read up to `max` or until the cut
/// (a hash the cut splits is left out). `None` when the start has another shape.
fn hashes_at_start(answer: &[u8], max: usize) -> Option<Vec<PacketHash>> {
    let mut rest = answer;
    for token in [&b"{"[..], b"\"hashes\"", b":", b"["] {
        rest = rest.trim_ascii_start().strip_prefix(token)?;
    }
    let mut hashes = Vec::new();
    while hashes.len() < max {
        rest = rest.trim_ascii_start();
        let Some(after_quote) = rest.strip_prefix(b"\"") else {
            // The end of the list (it may have been cut just at it), or another shape.
            return (rest.is_empty() || rest[0] == b']').then_some(hashes);
        };
        let Some((text, after)) = after_quote.split_at_checked(64) else {
            break; // cut inside this hash
        };
        let Some(after) = after.strip_prefix(b"\"") else {
            return after.is_empty().then_some(hashes);
        };
        hashes.push(PacketHash::parse(std::str::from_utf8(text).ok()?).ok()?);
        rest = after.trim_ascii_start();
        match rest.first() {
            None | Some(b']') => break,
            Some(b',') => rest = &rest[1..],
            Some(_) => return None,
        }
    }
    Some(hashes)
}

/// Pulls `wanted` from `peer` in batches, counting into `report`. Peers are synced side by
/// side, and most hold the same new packets: each batch asks only for what is neither stored
/// by now nor being pulled from another peer at this moment.
fn pull_all(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
    wanted: &[PacketHash],
    report: &mut MessageSyncReport,
) -> Result<(), SyncError> {
    // Not again what this peer could not send us (anyone may serve it to us, though: a peer
    // could answer any hash with an endless body).
    let wanted: Vec<PacketHash> = {
        let not_from_this_peer: HashSet<PacketHash> = state
            .oversized
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, _)| p == peer)
            .map(|(_, h)| *h)
            .collect();
        wanted
            .iter()
            .filter(|h| !not_from_this_peer.contains(h))
            .copied()
            .collect()
    };
    report.requested = wanted.len();
    let mut skips_left = MAX_OVERSIZED_SKIPS;
    let deadline = std::time::Instant::now() + pull_budget(state);
    for (i, chunk) in wanted.chunks(FETCH_BATCH).enumerate() {
        let claim = Claim::take(state, chunk);
        let mut rest = claim.hashes.clone();
        let mut ask = rest.len();
        // A peer answers up to its response size limit (at least one packet): what it left
        // out is asked for again, and counts as withheld only when an answer brings none of
        // what was asked.
        while !rest.is_empty() {
            if std::time::Instant::now() >= deadline {
                tracing::debug!(peer = %peer, "message sync ran out of time; the rest next round");
                let later = wanted.len().saturating_sub((i + 1) * FETCH_BATCH);
                report.left += rest.len() + later;
                return Ok(());
            }
            let n = ask.min(rest.len());
            let pulled = match pull(state, client, peer, &rest[..n]) {
                Ok(pulled) => pulled,
                // Larger than we read: the peer allows larger packets than we do. Fewer at a
                // time, down to one, which is then skipped this round.
                Err(SyncError::Peer(PeerError::TooLarge(_))) if n > 1 => {
                    ask = n / 2;
                    continue;
                }
                Err(SyncError::Peer(PeerError::TooLarge(_))) if skips_left > 0 => {
                    tracing::debug!(peer = %peer, "skipped a packet larger than this relay reads");
                    skips_left -= 1;
                    report.too_large += 1;
                    let skipped = rest.remove(0);
                    state
                        .oversized
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((peer.clone(), skipped));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Back towards whole batches once answers fit again.
            ask = (ask * 2).min(FETCH_BATCH);
            report.stored += pulled.stored;
            let before = rest.len();
            rest.retain(|h| !pulled.delivered.contains(h));
            if rest.len() == before {
                // None of what was asked came.
                report.withheld += n;
                rest.drain(..n);
            }
        }
    }
    Ok(())
}

/// Hashes this sync pulls, held in [`RelayState::pulling`] until it is done with them.
struct Claim<'a> {
    state: &'a RelayState,
    hashes: Vec<PacketHash>,
}

impl<'a> Claim<'a> {
    /// Claims those of `hashes` that are not stored yet, were not declined, and that no other
    /// sync is pulling.
    fn take(state: &'a RelayState, hashes: &[PacketHash]) -> Self {
        let now = now_ms();
        let missing: Vec<PacketHash> = {
            let declined = state.declined.lock().unwrap_or_else(|p| p.into_inner());
            hashes
                .iter()
                .filter(|h| !declined.contains(h))
                .filter(|h| !state.store.contains(h, now).unwrap_or(false))
                .copied()
                .collect()
        };
        let mut pulling = state.pulling.lock().unwrap_or_else(|p| p.into_inner());
        let hashes = missing.into_iter().filter(|h| pulling.insert(*h)).collect();
        Claim { state, hashes }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut pulling = self.state.pulling.lock().unwrap_or_else(|p| p.into_inner());
        for hash in &self.hashes {
            pulling.remove(hash);
        }
    }
}

/// Message sync with `peer`: set reconciliation when both sides offer it, else JASPER.md's
/// `/sync/hashes`. Either way every packet received is checked as `/send` would check it.
pub fn sync_messages(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<MessageSyncReport, SyncError> {
    if state.config.reconciliation && peer_reconciles(state, client, peer) {
        sync_reconciled(state, client, peer)
    } else {
        sync_by_hashes(state, client, peer)
    }
}

/// Whether `peer` offers set reconciliation (its `/status`, checked every ten minutes).
fn peer_reconciles(state: &RelayState, client: &PeerClient, peer: &ServerEntry) -> bool {
    const RECHECK_MS: u64 = 10 * 60 * 1000;
    let now = now_ms();
    if let Some(known) = state.peers.capability(peer, now, RECHECK_MS) {
        return known;
    }
    let offers = match client.get(peer, "/status", 64 * 1024) {
        Ok(Some(body)) => serde_json::from_slice::<Value>(&body).is_ok_and(|s| {
            s["capabilities"]
                .as_array()
                .is_some_and(|c| c.iter().any(|v| v == reconcile::CAPABILITY))
        }),
        // No /status: a relay that speaks only JASPER.md.
        Ok(None) | Err(PeerError::Status(_)) => false,
        Err(_) => return false,
    };
    state.peers.set_capability(peer, offers, now);
    offers
}

/// Sync by reconciliation: learn both differences in a few small round trips, pull what we
/// lack, push what the peer lacks.
fn sync_reconciled(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<MessageSyncReport, SyncError> {
    let diff = reconcile::reconcile_with(state, client, peer)?;
    let now = now_ms();
    let mut report = MessageSyncReport {
        method: "reconcile",
        advertised: diff.need.len(),
        discovery_bytes: diff.bytes_out + diff.bytes_in,
        ..MessageSyncReport::default()
    };
    let mut wanted = Vec::new();
    for hash in diff
        .need
        .into_iter()
        .take(state.config.max_hashes_per_request)
    {
        if !state
            .store
            .tombstoned(&hash, now)
            .map_err(|e| SyncError::Storage(e.to_string()))?
        {
            wanted.push(hash);
        }
    }
    pull_all(state, client, peer, &wanted, &mut report)?;
    report.pushed = push(state, client, peer, &diff.have)?;
    Ok(report)
}

/// Sends `peer` the packets among `hashes` (that it lacks) by `/send`, with their expiry.
fn push(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
    hashes: &[PacketHash],
) -> Result<usize, SyncError> {
    let mut pushed = 0;
    for chunk in hashes.chunks(FETCH_BATCH).take(MAX_PUSH_BATCHES) {
        let mut bodies = Vec::new();
        state
            .store
            .get_many(chunk, u64::MAX, now_ms(), &mut |p| {
                bodies.push((p.hash, json_with_expiry(p.json, p.expires_at)))
            })
            .map_err(|e| SyncError::Storage(e.to_string()))?;
        for (hash, body) in bodies {
            match client.post(peer, "/send", &body, 4096) {
                Ok(_) => {
                    pushed += 1;
                    state.peers.note_held(peer, hash);
                }
                Err(PeerError::Status(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(pushed)
}

/// JASPER.md message sync with `peer`: send our hashes, fetch what the peer says we lack.
fn sync_by_hashes(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<MessageSyncReport, SyncError> {
    let max = state.config.max_hashes_per_request;
    // Anyone can have us learn an address through `/sync/servers`: a server we only learned
    // and that has never served us gets an empty list (it answers with what it holds, and we
    // pull), not megabytes of hashes sent at whatever the address is.
    let proven = super::has_proven_itself(&state.config.peer_entries(), &state.peers, peer);
    let short = state
        .short_lists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(peer);
    let body = if proven && !short {
        live_hashes_json(state, max, &|_| false).map_err(|e| SyncError::Storage(e.to_string()))?
    } else {
        br#"{"hashes":[]}"#.to_vec()
    };
    let limit = (max * 67 + 1024) as u64;
    const EMPTY: &[u8] = br#"{"hashes":[]}"#;
    let (body, (answer, cut)) = match client.post_prefix(peer, "/sync/hashes", &body, limit) {
        // A peer taking fewer hashes per request than we hold (its max_hashes_per_request is
        // lower): ask with none, as JASPER.md allows; it answers with what it holds, and we
        // pull what we lack. (It learns what we hold when it syncs with us.)
        Err(PeerError::Status(413)) if body != EMPTY => {
            tracing::debug!(peer = %peer, "our hash list is too long for the peer; asking with none");
            // Remembered (until a restart), rather than sending the whole list each round.
            state
                .short_lists
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer.clone());
            let answer = client.post_prefix(peer, "/sync/hashes", EMPTY, limit)?;
            (EMPTY.to_vec(), answer)
        }
        result => (body, result?),
    };
    let discovery_bytes = (body.len() + answer.len()) as u64;
    let hashes = if cut {
        // A peer taking more hashes per request than we do answers with more than we read:
        // the hashes at the start are taken, as long as the answer has the usual shape. More
        // come as our list names those, while we hold no more than we list; past that (or
        // when the start holds only what we refuse) this peer's list adds nothing, and its
        // packets reach us by its broadcasts and its own sync with us.
        tracing::debug!(peer = %peer, "the peer's hash list is longer than we read; taking its start");
        hashes_at_start(&answer, max).ok_or(PeerError::TooLarge(limit))?
    } else {
        let answer = parse_object(&answer)?;
        let items = array(&answer, "hashes")?;
        let mut hashes = Vec::with_capacity(items.len().min(max));
        for item in items.iter().take(max) {
            hashes.push(
                item.as_str()
                    .and_then(|t| PacketHash::parse(t).ok())
                    .ok_or_else(|| {
                        PeerError::Malformed("a hash is not 64 lowercase hex digits".into())
                    })?,
            );
        }
        hashes
    };
    let mut report = MessageSyncReport {
        method: "hashes",
        advertised: hashes.len(),
        discovery_bytes,
        ..MessageSyncReport::default()
    };
    let now = now_ms();
    let mut wanted = Vec::new();
    for hash in hashes {
        let known = state
            .store
            .contains(&hash, now)
            .map_err(|e| SyncError::Storage(e.to_string()))?
            || state
                .store
                .tombstoned(&hash, now)
                .map_err(|e| SyncError::Storage(e.to_string()))?;
        if !known {
            wanted.push(hash);
        }
    }
    pull_all(state, client, peer, &wanted, &mut report)?;
    Ok(report)
}

/// Asks `peer` for packets it held before (it advertised them, or accepted our push) that are
/// still live here, so still live there: their expiry travelled with them. Returns how many
/// it no longer has.
pub fn spot_check(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<usize, SyncError> {
    let now = now_ms();
    let sample: Vec<PacketHash> = state
        .peers
        .take_spot_check(peer, SPOT_CHECK)
        .into_iter()
        .filter(|h| {
            state
                .store
                .contains(h, now + SPOT_CHECK_MARGIN_MS)
                .unwrap_or(false)
        })
        .collect();
    if sample.is_empty() {
        return Ok(0);
    }
    // Asked again for what an answer left out (a peer answers up to its response size limit):
    // missing is what an answer that brings none of the rest leaves.
    let mut present: HashSet<PacketHash> = HashSet::new();
    let mut rest = sample.clone();
    while !rest.is_empty() {
        let body = serde_json::json!({
            "hashes": rest.iter().map(ToString::to_string).collect::<Vec<_>>()
        });
        let limit = fetch_answer_limit(state, rest.len());
        let answer = client.post(peer, "/fetch", body.to_string().as_bytes(), limit)?;
        let answer = parse_object(&answer)?;
        let before = present.len();
        // Held means the packet itself: an item naming the hash without its message (or with
        // another message) does not count.
        present.extend(
            array(&answer, "messages")?
                .iter()
                .filter_map(|m| {
                    let hash = PacketHash::parse(m.get("hash")?.as_str()?).ok()?;
                    let message = m.get("message")?.as_str()?;
                    (PacketHash::of_message(message) == hash).then_some(hash)
                })
                .filter(|h| rest.contains(h)),
        );
        if present.len() == before {
            break;
        }
        rest.retain(|h| !present.contains(h));
    }
    let missing = sample.iter().filter(|h| !present.contains(h)).count();
    // What it still holds stays in the sample for next time.
    for h in sample.iter().filter(|h| present.contains(h)) {
        state.peers.note_held(peer, *h);
    }
    Ok(missing)
}

/// What one [`pull`] brought.
#[derive(Debug, Default)]
pub struct Pulled {
    /// Packets stored (new here).
    pub stored: usize,
    /// Hashes the peer delivered, including packets this relay's own limits decline.
    pub delivered: HashSet<PacketHash>,
}

/// Fetches `hashes` from `peer` and stores those that pass.
///
/// A packet that fails this relay's own limits (see [`crate::proto::packet::PacketError::is_local_policy`])
/// is skipped, not held against the peer: relays may set them differently. One larger than
/// `max_message_bytes` is remembered as declined (its hash is checked: a peer cannot make us
/// decline a packet it does not have), so that later rounds do not pull it again.
pub fn pull(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
    hashes: &[PacketHash],
) -> Result<Pulled, SyncError> {
    let asked: HashSet<PacketHash> = hashes.iter().copied().collect();
    let body = serde_json::json!({
        "hashes": hashes.iter().map(ToString::to_string).collect::<Vec<_>>()
    });
    let limit = fetch_answer_limit(state, hashes.len());
    let answer = client.post(peer, "/fetch", body.to_string().as_bytes(), limit)?;
    let mut answer = parse_object(&answer)?;
    let Some(Value::Array(messages)) = answer.remove("messages") else {
        return Err(PeerError::Malformed("the answer has no `messages` array".into()).into());
    };
    let mut seen = HashSet::new();
    let mut packets = Vec::with_capacity(messages.len());
    for item in messages {
        let Value::Object(map) = item else {
            return Err(SyncError::BadPacket("an item is not an object".into()));
        };
        let claimed = map
            .get("hash")
            .and_then(Value::as_str)
            .and_then(|h| PacketHash::parse(h).ok())
            .filter(|h| asked.contains(h));
        if let (Some(hash), Some(message)) = (claimed, map.get("message").and_then(Value::as_str))
            && message.len() > state.rules.max_message_bytes
        {
            if PacketHash::of_message(message) != hash {
                return Err(SyncError::BadPacket(
                    "a packet whose message was altered".into(),
                ));
            }
            state
                .declined
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hash);
            seen.insert(hash);
            continue;
        }
        let packet = match Packet::from_map_cached(map, &state.rules, &state.keys) {
            Ok(packet) => packet,
            // Only a packet we asked for: one we did not is a bad peer's whatever its size.
            Err(e) if e.is_local_policy() && claimed.is_some() => {
                tracing::debug!(peer = %peer, error = %e, "declined a packet under our limits");
                seen.extend(claimed);
                continue;
            }
            Err(e) => return Err(SyncError::BadPacket(e.to_string())),
        };
        if !asked.contains(&packet.hash()) {
            return Err(SyncError::BadPacket(
                "a packet we did not ask for (or whose message was altered)".into(),
            ));
        }
        if !seen.insert(packet.hash()) {
            continue;
        }
        packets.push(NewPacket {
            hash: packet.hash(),
            recipient: packet.recipient().fingerprint(),
            expires_at: expiry_for(state, packet.expires()),
            json: packet.to_json().into_bytes(),
        });
    }
    let delivered: HashSet<PacketHash> = packets.iter().map(|p| p.hash).chain(seen).collect();
    let mut stored = 0;
    // Copies for broadcast only when one could go anywhere (as `/send` does).
    let copy = state.broadcast.wanted();
    let fresh: Vec<(PacketHash, Option<Fresh>)> = packets
        .iter()
        .map(|p| {
            let fresh = copy.then(|| Fresh {
                hash: p.hash,
                json: p.json.clone(),
                expires_at: p.expires_at,
                from: Some(peer.clone()),
            });
            (p.hash, fresh)
        })
        .collect();
    for (outcome, (hash, fresh)) in state
        .writer
        .put_many_blocking(packets)
        .into_iter()
        .zip(fresh)
    {
        state.peers.note_held(peer, hash);
        match outcome {
            Ok(PutOutcome::Stored { .. }) => {
                stored += 1;
                if let Some(fresh) = fresh {
                    state.broadcast.offer(fresh);
                }
            }
            Ok(_) => {}
            Err(e) => return Err(SyncError::Storage(e.to_string())),
        }
    }
    Ok(Pulled { stored, delivered })
}

/// JASPER.md server sync with `peer`: send what we know (and our own address, so that the
/// peer learns us), add what it answers. Returns how many servers were new to us.
pub fn sync_servers(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
    ours: &[ServerEntry],
) -> Result<usize, SyncError> {
    let list: Vec<Value> = ours.iter().map(ServerEntry::to_json).collect();
    let body = serde_json::json!({ "servers": list }).to_string();
    let limit = (state.config.max_servers_per_request * 300 + 1024) as u64;
    let answer = client.post(peer, "/sync/servers", body.as_bytes(), limit)?;
    let answer = parse_object(&answer)?;
    let items = array(&answer, "servers")?;
    let learned: Vec<ServerEntry> = items
        .iter()
        .take(state.config.max_servers_per_request)
        .filter_map(|v| ServerEntry::from_json(v).ok())
        .collect();
    let added = super::learn_servers(state, learned).map_err(SyncError::Storage)?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn the_start_of_a_cut_hash_list_is_read_up_to_the_cut() {
        let full = format!(
            "{{ \"hashes\" : [ \"{}\",\n\"{}\" , \"{}\"]}}",
            hex(1),
            hex(2),
            hex(3)
        );
        let all: Vec<String> = hashes_at_start(full.as_bytes(), 10)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(all, [hex(1), hex(2), hex(3)]);
        assert_eq!(hashes_at_start(full.as_bytes(), 2).unwrap().len(), 2);
        // Cut anywhere: the hashes wholly before the cut, never a part of one.
        for cut in 0..full.len() {
            let start = &full.as_bytes()[..cut];
            let got = hashes_at_start(start, 10);
            let whole = full[..cut].matches(&hex(1)).count()
                + full[..cut].matches(&hex(2)).count()
                + full[..cut].matches(&hex(3)).count();
            // Before `{"hashes":[` is complete the shape is unknown; after it, every whole
            // hash counts (one still missing its closing quote does not).
            let closed = (1..=3)
                .filter(|n| full[..cut].contains(&format!("{}\"", hex(*n))))
                .count();
            if let Some(got) = got {
                assert_eq!(got.len(), closed, "cut at {cut}");
                assert!(closed <= whole);
            } else {
                assert!(!full[..cut].contains('['), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_cut_answer_of_another_shape_is_not_read() {
        for answer in [
            format!("{{\"other\":1,\"hashes\":[\"{}\"", hex(1)),
            format!("{{\"hashes\":[\"{}\",1,", hex(1)),
            format!("{{\"hashes\":[\"{}\";", hex(1)),
            format!("{{\"hashes\":[\"{}\"", hex(0xab).to_uppercase()),
            format!("{{\"hashes\":[\"{}0\"", hex(1)),
            "[\"hashes\"".to_string(),
        ] {
            assert!(hashes_at_start(answer.as_bytes(), 10).is_none(), "{answer}");
        }
    }
}
