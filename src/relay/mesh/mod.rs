//! The mesh: this relay's peers, and the background work that keeps every relay holding every
//! live packet — message sync every `message_sync_interval` and server sync every
//! `server_sync_interval` (JASPER.md), as named, stoppable tasks.

pub mod broadcast;
pub mod client;
pub mod peers;
pub mod reconcile;
pub mod sync;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};

use self::broadcast::Fresh;
use self::client::{PeerClient, PeerError};
use self::peers::Event;
use self::sync::SyncError;
use super::api::RelayState;
use crate::proto::server::Host;
use crate::proto::{PacketHash, ServerEntry};

/// This relay's own advertised address, when configured.
pub fn own_entry(state: &RelayState) -> Option<ServerEntry> {
    state
        .config
        .public_address
        .as_deref()
        .and_then(|a| a.parse().ok())
}

/// Whether `entry` names this relay: its public address or the address it listens on.
pub fn is_self(state: &RelayState, entry: &ServerEntry) -> bool {
    if own_entry(state).as_ref() == Some(entry) {
        return true;
    }
    let listen = state.local_addr;
    entry.port == listen.port()
        && match &entry.host {
            Host::Ip(ip) => {
                *ip == listen.ip() || (listen.ip().is_unspecified() && ip.is_loopback())
            }
            Host::Domain(d) => d == "localhost",
        }
}

/// Adds servers learned from a peer after the checks of PROTOCOL.md §4: never ourselves, no
/// loopback/private/link-local address unless allowed, the list bounded. Returns how many were
/// new.
///
/// `/sync/servers` is open to anyone, so a full list makes room: learned servers that never
/// once served us and have since failed (or are quarantined) go first, the most failures first.
/// Entries that have served us, and configured peers, are never pushed out by newcomers.
pub fn learn_servers(state: &RelayState, learned: Vec<ServerEntry>) -> Result<usize, String> {
    let known: std::collections::HashSet<ServerEntry> = state
        .store
        .servers()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let acceptable: Vec<ServerEntry> = learned
        .into_iter()
        .filter(|s| state.config.allow_private_peers || s.is_public())
        .filter(|s| !is_self(state, s))
        .collect();
    let newcomers = acceptable.iter().filter(|s| !known.contains(s)).count();
    let room = state.config.max_known_servers.saturating_sub(known.len());
    if newcomers > room {
        evict_failed_servers(state, &known, newcomers - room)?;
    }
    let added = state
        .store
        .add_servers(&acceptable, state.config.max_known_servers)
        .map_err(|e| e.to_string())?;
    if !added.is_empty() {
        tracing::info!(
            added = added.len(),
            servers = %added.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "learned servers"
        );
    }
    Ok(added.len())
}

/// Whether `peer` has shown itself a relay: it is `configured`, or it has served this relay (a
/// sync with it went well). Anyone can advertise any address as a server, so only these get
/// what only relays should (our hash lists, the rate limit's exemption), and only the others
/// make room when the list of known servers is full.
pub fn has_proven_itself(
    configured: &[ServerEntry],
    peers: &peers::PeerBook,
    peer: &ServerEntry,
) -> bool {
    configured.contains(peer) || peers.record(peer).last_ok > 0
}

/// The servers of `list` to hand to a peer or client, at most `max_servers_per_request` of
/// them (what a peer with our settings takes in one request: more would be refused whole):
/// configured peers first, then those that have served us, then the rest, each in `list`'s
/// order.
pub fn servers_to_share(state: &RelayState, mut list: Vec<ServerEntry>) -> Vec<ServerEntry> {
    let configured = state.config.peer_entries();
    list.sort_by_key(|s| {
        if configured.contains(s) {
            0
        } else if has_proven_itself(&configured, &state.peers, s) {
            1
        } else {
            2
        }
    });
    list.truncate(state.config.max_servers_per_request);
    list
}

/// Forgets up to `n` learned servers that never served us and have failed since.
fn evict_failed_servers(
    state: &RelayState,
    known: &std::collections::HashSet<ServerEntry>,
    n: usize,
) -> Result<(), String> {
    let now = crate::relay::clock::now_ms();
    let configured = state.config.peer_entries();
    let mut failed: Vec<(u32, ServerEntry)> = known
        .iter()
        .filter(|s| !has_proven_itself(&configured, &state.peers, s))
        .filter_map(|s| {
            let record = state.peers.record(s);
            (record.failures > 0 || record.quarantined(now)).then(|| (record.failures, s.clone()))
        })
        .collect();
    failed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let evicted: Vec<ServerEntry> = failed.into_iter().take(n).map(|(_, s)| s).collect();
    if evicted.is_empty() {
        return Ok(());
    }
    state
        .store
        .remove_servers(&evicted)
        .map_err(|e| e.to_string())?;
    state.peers.forget(&evicted);
    tracing::info!(
        forgotten = evicted.len(),
        "known servers full: forgot servers that never answered"
    );
    Ok(())
}

/// Everyone we sync with: the configured peers and the servers learned since, minus ourselves.
pub fn known_peers(state: &RelayState) -> Vec<ServerEntry> {
    let mut peers = state.config.peer_entries();
    match state.store.servers() {
        Ok(learned) => peers.extend(learned),
        Err(e) => tracing::error!(error = %e, "cannot read the known servers"),
    }
    peers.sort();
    peers.dedup();
    peers.retain(|p| !is_self(state, p));
    peers
}

/// Known peers that may be contacted now (not quarantined, not backing off).
pub fn healthy_peers(state: &RelayState) -> Vec<ServerEntry> {
    let now = crate::relay::clock::now_ms();
    let mut peers = known_peers(state);
    peers.retain(|p| state.peers.is_healthy(p, now));
    peers
}

/// Records the outcome of an exchange with `peer` in its score.
fn judge<T>(state: &RelayState, peer: &ServerEntry, result: &Result<T, SyncError>) {
    let now = crate::relay::clock::now_ms();
    let event = match result {
        Ok(_) => Event::Served,
        Err(SyncError::BadPacket(_)) => Event::Tampered,
        Err(e) if e.is_misbehaviour() => Event::Malformed,
        Err(SyncError::Storage(_)) => return,
        Err(_) => Event::Unreachable,
    };
    state.peers.note(peer, event, now);
}

/// Fetch-backs waiting for the mesh; more are dropped (the next sync repairs).
pub const FETCH_BACK_QUEUE: usize = 64;
/// Most hashes one fetch-back pulls.
pub const FETCH_BACK_MAX: usize = 10 * sync::FETCH_BATCH;

/// A request to pull `hashes` from `peer`, which showed it holds them.
#[derive(Debug, Clone)]
pub struct FetchBack {
    /// The known server that called us.
    pub peer: ServerEntry,
    /// What it holds and we lack.
    pub hashes: Vec<PacketHash>,
}

/// The receiving ends of the queues the API fills for the mesh.
pub struct MeshInbox {
    /// Packets to push.
    pub pushes: mpsc::Receiver<Fresh>,
    /// Fetch-backs to run.
    pub fetch_backs: mpsc::Receiver<FetchBack>,
}

/// The caller of a `/sync/*` request, when it names itself (header `jasper-server`) as a
/// server we know and do not quarantine. (A peer we were backing off from is fine: it has
/// just shown that it is up.)
pub fn known_caller(state: &RelayState, claimed: &str) -> Option<ServerEntry> {
    let entry: ServerEntry = claimed.trim().parse().ok()?;
    let now = crate::relay::clock::now_ms();
    (known_peers(state).contains(&entry) && !state.peers.is_quarantined(&entry, now))
        .then_some(entry)
}

/// Queues a fetch-back of what `peer` holds (`theirs`) and we lack.
pub fn request_fetch_back(state: &RelayState, peer: ServerEntry, theirs: &HashSet<PacketHash>) {
    let now = crate::relay::clock::now_ms();
    // The declined set only for its own filter: the store lookups below (up to one per hash
    // named) must not hold back pulls on other threads that need it.
    let candidates: Vec<PacketHash> = {
        let declined = state.declined.lock().unwrap_or_else(|p| p.into_inner());
        theirs
            .iter()
            .filter(|h| !declined.contains(h))
            .copied()
            .collect()
    };
    let hashes: Vec<PacketHash> = candidates
        .into_iter()
        .filter(|h| {
            !state.store.contains(h, now).unwrap_or(true)
                && !state.store.tombstoned(h, now).unwrap_or(true)
        })
        .take(FETCH_BACK_MAX)
        .collect();
    if !hashes.is_empty() {
        let _ = state.fetch_backs.try_send(FetchBack { peer, hashes });
    }
}

/// Runs message sync, server sync, broadcasting and fetch-backs until `stop` turns true.
pub async fn run(state: Arc<RelayState>, inbox: MeshInbox, stop: watch::Receiver<bool>) {
    let client = PeerClient::new(
        state.config.allow_private_peers,
        state.config.peer_entries(),
    )
    .with_own_address(own_entry(&state));
    let messages = tokio::spawn(message_sync_loop(
        state.clone(),
        client.clone(),
        stop.clone(),
    ));
    let servers = tokio::spawn(server_sync_loop(
        state.clone(),
        client.clone(),
        stop.clone(),
    ));
    let backs = tokio::spawn(fetch_back_loop(
        state.clone(),
        client.clone(),
        inbox.fetch_backs,
        stop.clone(),
    ));
    let addresses = tokio::spawn(peer_address_loop(
        state.clone(),
        client.clone(),
        stop.clone(),
    ));
    let broadcast = tokio::spawn(broadcast::run(state, client, inbox.pushes, stop));
    let _ = messages.await;
    let _ = servers.await;
    let _ = backs.await;
    let _ = broadcast.await;
    let _ = addresses.await;
}

/// Keeps [`RelayState::peer_addresses`] (the addresses the rate limit lets through) to the
/// peers that are not quarantined and are either configured or have served this relay (a sync
/// with them went well), once per [`broadcast::PEER_LIST_PERIOD`]. Only being learned is not
/// enough: anyone can advertise their own address as a server. A peer named by a domain
/// counts once this relay has contacted it (no lookups for this alone).
async fn peer_address_loop(
    state: Arc<RelayState>,
    client: PeerClient,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = ticker(broadcast::PEER_LIST_PERIOD).await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let peers = known_peers(&state);
        client.keep_resolved(&peers);
        let now = crate::relay::clock::now_ms();
        let configured = state.config.peer_entries();
        state.peer_addresses.replace(
            peers
                .iter()
                .filter(|p| {
                    !state.peers.is_quarantined(p, now)
                        && has_proven_itself(&configured, &state.peers, p)
                })
                .flat_map(|p| {
                    client
                        .addresses_of(p)
                        .into_iter()
                        .map(move |ip| (ip, p.clone()))
                }),
        );
    }
}

async fn fetch_back_loop(
    state: Arc<RelayState>,
    client: PeerClient,
    mut requests: mpsc::Receiver<FetchBack>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let request = tokio::select! {
            r = requests.recv() => match r { Some(r) => r, None => return },
            _ = stop.changed() => return,
        };
        let (s, c) = (state.clone(), client.clone());
        let peer = request.peer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut stored = 0;
            // One worker serves every fetch-back: a slow peer must not hold it for long.
            let deadline = std::time::Instant::now() + sync::pull_budget(&s);
            for chunk in request.hashes.chunks(sync::FETCH_BATCH) {
                if std::time::Instant::now() >= deadline {
                    tracing::debug!(peer = %request.peer, "fetch-back ran out of time; sync repairs the rest");
                    break;
                }
                let result = sync::pull(&s, &c, &request.peer, chunk);
                // Only faults count: anyone can ask for a fetch-back naming a known peer,
                // and a good one must not clear that peer's record. Nor does an answer too
                // large for us: anyone could name a packet the peer may hold under larger
                // limits than ours (message sync copes with those, see `sync::pull_all`).
                if result.is_err()
                    && !matches!(result, Err(SyncError::Peer(PeerError::TooLarge(_))))
                {
                    judge(&s, &request.peer, &result);
                }
                stored += result?.stored;
            }
            Ok::<_, SyncError>(stored)
        })
        .await;
        match result {
            Ok(Ok(n)) if n > 0 => tracing::info!(peer = %peer, pulled = n, "fetch-back"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(peer = %peer, error = %e, "fetch-back failed"),
            Err(_) => tracing::error!(peer = %peer, "fetch-back task panicked"),
        }
    }
}

async fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Peers exchanged with at once in a sync round. A peer that accepts connections and never
/// answers holds one place for its timeouts, not the whole round: the others go on.
pub const PEERS_AT_ONCE: usize = 8;

/// Runs `work` for each of `peers` on the blocking pool, [`PEERS_AT_ONCE`] at a time, and
/// yields each peer with its result as it finishes.
fn side_by_side<T: Send + 'static>(
    peers: Vec<ServerEntry>,
    work: impl Fn(&ServerEntry) -> T + Send + Sync + 'static,
) -> impl futures_util::Stream<Item = (ServerEntry, Result<T, tokio::task::JoinError>)> + Unpin {
    use futures_util::StreamExt as _;
    let work = Arc::new(work);
    Box::pin(
        futures_util::stream::iter(peers)
            .map(move |peer| {
                let work = work.clone();
                async move {
                    let p = peer.clone();
                    let result = tokio::task::spawn_blocking(move || work(&p)).await;
                    (peer, result)
                }
            })
            .buffer_unordered(PEERS_AT_ONCE),
    )
}

/// The next peer of `round` to finish, with its result; `None` when the round is over or
/// `stop` turns (callers then look at `stop`).
async fn next_done<S: futures_util::Stream + Unpin>(
    round: &mut S,
    stop: &mut watch::Receiver<bool>,
) -> Option<S::Item> {
    tokio::select! {
        next = round.next() => next,
        _ = stop.changed() => None,
    }
}

async fn message_sync_loop(
    state: Arc<RelayState>,
    client: PeerClient,
    mut stop: watch::Receiver<bool>,
) {
    if state.config.message_sync_interval.is_zero() {
        tracing::info!("message sync is off (message_sync_interval = 0s)");
        return;
    }
    let mut tick = ticker(state.config.message_sync_interval).await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let peers = healthy_peers(&state);
        let any = !peers.is_empty();
        let (mut synced, mut failed, mut pulled, mut pushed) = (0, 0, 0, 0);
        let (s, c) = (state.clone(), client.clone());
        let work = move |peer: &ServerEntry| sync_with(&s, &c, peer);
        let mut round = side_by_side(peers, work);
        while let Some((peer, result)) = next_done(&mut round, &mut stop).await {
            match result {
                Ok(Ok(report)) => {
                    synced += 1;
                    pulled += report.stored;
                    pushed += report.pushed;
                    let moved = report.stored > 0
                        || report.withheld > 0
                        || report.pushed > 0
                        || report.left > 0;
                    if moved {
                        tracing::info!(
                            peer = %peer,
                            method = report.method,
                            discovery_bytes = report.discovery_bytes,
                            pulled = report.stored,
                            pushed = report.pushed,
                            withheld = report.withheld,
                            left_for_later = report.left,
                            "message sync"
                        );
                    } else {
                        tracing::debug!(
                            peer = %peer,
                            method = report.method,
                            discovery_bytes = report.discovery_bytes,
                            "message sync: nothing new"
                        );
                    }
                }
                Ok(Err(e)) => {
                    failed += 1;
                    tracing::warn!(peer = %peer, error = %e, "message sync failed");
                }
                Err(_) => tracing::error!(peer = %peer, "message sync task panicked"),
            }
        }
        if *stop.borrow() {
            return;
        }
        if any {
            tracing::info!(synced, failed, pulled, pushed, "message sync round");
        }
    }
}

/// One message sync with `peer`, a spot check of packets it held, and their verdicts.
fn sync_with(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
) -> Result<sync::MessageSyncReport, SyncError> {
    let result = sync::sync_messages(state, client, peer);
    judge(state, peer, &result);
    let Ok(report) = &result else {
        return result;
    };
    let now = crate::relay::clock::now_ms();
    if report.withheld > 0 {
        state.peers.note(peer, Event::Withheld, now);
    }
    match sync::spot_check(state, client, peer) {
        Ok(0) => {}
        Ok(missing) => {
            tracing::warn!(peer = %peer, missing, "peer lost packets it held");
            state.peers.note(peer, Event::Dropped, now);
        }
        Err(e) => judge::<()>(state, peer, &Err(e)),
    }
    result
}

async fn server_sync_loop(
    state: Arc<RelayState>,
    client: PeerClient,
    mut stop: watch::Receiver<bool>,
) {
    if state.config.server_sync_interval.is_zero() {
        tracing::info!("server sync is off (server_sync_interval = 0s)");
        return;
    }
    let mut tick = ticker(state.config.server_sync_interval).await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = crate::relay::clock::now_ms();
        // What we hand out: ourselves, and known peers but the quarantined ones.
        let mut ours: Vec<ServerEntry> = own_entry(&state).into_iter().collect();
        ours.extend(servers_to_share(
            &state,
            known_peers(&state)
                .into_iter()
                .filter(|p| !state.peers.is_quarantined(p, now))
                .collect(),
        ));
        ours.truncate(state.config.max_servers_per_request);
        let (s, c) = (state.clone(), client.clone());
        let work = move |peer: &ServerEntry| {
            let result = sync::sync_servers(&s, &c, peer, &ours);
            judge(&s, peer, &result);
            result
        };
        let mut round = side_by_side(healthy_peers(&state), work);
        while let Some((peer, result)) = next_done(&mut round, &mut stop).await {
            match result {
                Ok(Ok(_)) => tracing::debug!(peer = %peer, "server sync"),
                Ok(Err(e)) => tracing::warn!(peer = %peer, error = %e, "server sync failed"),
                Err(_) => tracing::error!(peer = %peer, "server sync task panicked"),
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}
