//! The relay's REST API (JASPER.md endpoints + PROTOCOL.md §4–§5) as warp filters. Requests become
//! typed values here; storage is reached only through the [`Store`] trait and the group-commit
//! [`Writer`].

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};
use warp::Filter;
use warp::http::{Response, StatusCode};

use super::clock::{now_ms, rfc3339_ms};
use super::limits::{PeerAddresses, RateLimiter};
use super::mesh::broadcast::{BroadcastQueue, Fresh};
use super::mesh::peers::PeerBook;
use super::mesh::reconcile::{self, SnapshotCache};
use super::mesh::{FETCH_BACK_QUEUE, FetchBack, MeshInbox};
use super::store::{NewPacket, PacketView, PutOutcome, Store, StoreError};
use super::writer::Writer;
use crate::config::RelayConfig;
use crate::http::{ApiError, ClientAddr, json_response, read_body, recover};
use crate::proto::key::{KeyCache, MAX_KEY_TEXT_BYTES};
use crate::proto::packet::json_type;
use crate::proto::status::CAP_FETCH_CURSOR;
use crate::proto::{Packet, PacketHash, PacketRules, ServerEntry, Status};

/// Request header by which a relay calling `/sync/*` names its own `host:port` (extension).
pub const CALLER_HEADER: &str = "jasper-server";
/// Recipient keys the relay keeps parsed (a 4096-bit key takes ~2 KB here).
const KEY_CACHE_ENTRIES: usize = 1024;
/// Bytes one hash takes in a JSON list, with quotes and comma.
const HASH_JSON_BYTES: usize = 64 + 3;
/// Bytes one server entry may take in a JSON list.
const SERVER_JSON_BYTES: usize = 300;

/// Everything the handlers share.
pub struct RelayState {
    /// The storage engine (reads; writes go through `writer`).
    pub store: Arc<dyn Store>,
    /// The group-commit writer.
    pub writer: Writer,
    /// The relay's configuration.
    pub config: RelayConfig,
    /// Packet limits derived from the configuration.
    pub rules: PacketRules,
    /// Recipient keys parsed recently (many packets name the same inbox).
    pub keys: KeyCache,
    /// Per-client rate limits.
    pub limiter: RateLimiter,
    /// Peers' addresses (configured, or have served us), which the rate limit lets through.
    pub peer_addresses: PeerAddresses,
    /// Permits for requests in flight.
    pub inflight: Arc<Semaphore>,
    /// The memory requests in progress may take, in KiB (see [`Endpoint::memory_kib`]).
    pub request_memory: Arc<Semaphore>,
    /// The share of it for large bodies from addresses that are not peers' (see
    /// [`STRANGERS_SHARE`]), so that slow ones cannot hold what `/send`, inbox fetches and
    /// the mesh need.
    pub stranger_memory: Arc<Semaphore>,
    /// The memory large answers take until they are written, in KiB: as much again as
    /// `max_request_memory` (see [`LARGE_ANSWER_BYTES`]), so that clients that stop reading
    /// cannot hold answers in memory without bound.
    pub answer_memory: Arc<Semaphore>,
    /// The half of it that answers to addresses that are not peers' may take.
    pub stranger_answer_memory: Arc<Semaphore>,
    /// What of that half one client network holds, in KiB: at most a
    /// [`NETWORK_ANSWER_SHARE`]th (or one answer), so that one address reading slowly cannot
    /// take it all.
    pub answer_memory_by_network: Arc<crate::netlimits::ConnectionCounter>,
    /// The address the listener is bound to (the configured one may say port 0).
    pub local_addr: SocketAddr,
    /// Health of the peers.
    pub peers: PeerBook,
    /// Packets to push to peers.
    pub broadcast: BroadcastQueue,
    /// Fetch-backs for the mesh to run (bounded; dropped when full).
    pub fetch_backs: mpsc::Sender<FetchBack>,
    /// The set the answering side of reconciliation works on.
    pub reconcile: SnapshotCache,
    /// Packets being pulled from a peer now, so that peers synced side by side do not each
    /// send them.
    pub pulling: std::sync::Mutex<HashSet<PacketHash>>,
    /// Packets sync declined under this relay's limits, not to be pulled again.
    pub declined: std::sync::Mutex<super::mesh::sync::Declined>,
    /// Packets a peer could not send in an answer we read, not to be asked of it again.
    pub oversized: std::sync::Mutex<super::mesh::sync::Declined<(ServerEntry, PacketHash)>>,
    /// Peers that refused our hash list as too long: they get an empty one.
    pub short_lists: std::sync::Mutex<HashSet<ServerEntry>>,
}

impl RelayState {
    /// Builds the shared state, and the receiving end of the broadcast queue.
    pub fn new(
        store: Arc<dyn Store>,
        writer: Writer,
        config: RelayConfig,
        local_addr: SocketAddr,
    ) -> (Self, MeshInbox) {
        let (broadcast, pushes) = BroadcastQueue::new(config.broadcast_fanout > 0);
        let (fetch_backs, fetch_back_rx) = mpsc::channel(FETCH_BACK_QUEUE);
        // Backing off from a peer starts at one sync interval (a minute when sync is off).
        let base_backoff = match config.message_sync_interval.as_millis() as u64 {
            0 => 60_000,
            ms => ms,
        };
        let state = Self {
            peers: PeerBook::load(store.clone(), base_backoff),
            broadcast,
            fetch_backs,
            reconcile: SnapshotCache::default(),
            pulling: std::sync::Mutex::default(),
            declined: std::sync::Mutex::default(),
            oversized: std::sync::Mutex::default(),
            short_lists: std::sync::Mutex::default(),
            rules: PacketRules {
                min_key_bits: config.min_key_bits,
                max_message_bytes: config.max_message_bytes as usize,
            },
            keys: KeyCache::new(KEY_CACHE_ENTRIES),
            limiter: RateLimiter::new(config.rate_limit_per_minute),
            peer_addresses: PeerAddresses::default(),
            inflight: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            request_memory: Arc::new(Semaphore::new(memory_kib(config.max_request_memory))),
            stranger_memory: Arc::new(Semaphore::new(memory_kib(
                config.max_request_memory / STRANGERS_SHARE,
            ))),
            answer_memory: Arc::new(Semaphore::new(memory_kib(config.max_request_memory))),
            stranger_answer_memory: Arc::new(Semaphore::new(memory_kib(
                config.max_request_memory / 2,
            ))),
            answer_memory_by_network: crate::netlimits::ConnectionCounter::new(memory_kib(
                config.max_request_memory / 2 / NETWORK_ANSWER_SHARE,
            )),
            local_addr,
            store,
            writer,
            config,
        };
        (
            state,
            MeshInbox {
                pushes,
                fetch_backs: fetch_back_rx,
            },
        )
    }

    /// 0.0–1.0: the larger of requests in flight over their limit and the write queue's fill.
    pub fn load(&self) -> f64 {
        let max = self.config.max_concurrent_requests as f64;
        let busy = (max - self.inflight.available_permits() as f64) / max;
        busy.max(self.writer.queue_load()).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Send,
    Fetch,
    SyncHashes,
    SyncServers,
    Reconcile,
}

/// How many times its size a JSON body takes once parsed into values (strings, arrays and
/// their headers), with the sets built from it.
const PARSED_BODY_FACTOR: u64 = 4;
/// A body larger than this (larger than any packet at the default limits) from an address
/// that is not a peer's takes its memory from [`RelayState::stranger_memory`].
const LARGE_BODY_BYTES: u64 = 512 << 10;
/// Large bodies from strangers share this fraction of `max_request_memory`.
const STRANGERS_SHARE: u64 = 4;
/// An answer larger than this holds its size of [`RelayState::answer_memory`] until it is
/// written (smaller ones, such as `/send`'s, are bounded by the connections alone).
const LARGE_ANSWER_BYTES: usize = 64 << 10;
/// One client network's large answers waiting to be written take at most this fraction of
/// the strangers' half of the answer memory (or one answer, whatever its size).
const NETWORK_ANSWER_SHARE: u64 = 8;

fn memory_kib(bytes: u64) -> usize {
    bytes.div_ceil(1024).min(Semaphore::MAX_PERMITS as u64) as usize
}

/// Reserves `bytes` of `pool` (permits in KiB, `pool_bytes` in all); `None` when they are not
/// free. Something larger than the whole pool reserves all of it, so it goes alone.
fn reserve(
    pool: &Arc<Semaphore>,
    bytes: u64,
    pool_bytes: u64,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let kib = memory_kib(bytes).min(memory_kib(pool_bytes));
    pool.clone().try_acquire_many_owned(kib as u32).ok()
}

impl Endpoint {
    /// What a request may take in memory while it is handled, in bytes: its body of `body`
    /// bytes parsed, and the largest answer it can get.
    fn memory_bytes(self, state: &RelayState, body: u64) -> (u64, u64) {
        let c = &state.config;
        let answer = match self {
            Endpoint::Send => 1024,
            Endpoint::Fetch => c.max_response_bytes,
            Endpoint::SyncHashes => (c.max_hashes_per_request * HASH_JSON_BYTES) as u64,
            Endpoint::SyncServers => (c.max_servers_per_request * SERVER_JSON_BYTES) as u64,
            Endpoint::Reconcile => reconcile::MAX_MESSAGE_BYTES as u64,
        };
        (body * PARSED_BODY_FACTOR, answer)
    }

    fn body_limit(self, state: &RelayState) -> usize {
        let c = &state.config;
        match self {
            Endpoint::Send => state.rules.max_body_bytes(),
            Endpoint::Fetch => {
                (c.max_hashes_per_request * HASH_JSON_BYTES).max(MAX_KEY_TEXT_BYTES) + 1024
            }
            Endpoint::SyncHashes => c.max_hashes_per_request * HASH_JSON_BYTES + 1024,
            Endpoint::SyncServers => c.max_servers_per_request * SERVER_JSON_BYTES + 1024,
            Endpoint::Reconcile => reconcile::MAX_MESSAGE_BYTES,
        }
    }
}

/// All routes, with every rejection turned into a JSON error.
pub fn routes(
    state: Arc<RelayState>,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let post = |name: &'static str, endpoint: Endpoint| {
        warp::path(name)
            .and(warp::path::end())
            .and(warp::post())
            .and(with_state.clone())
            .and(warp::ext::optional::<ClientAddr>())
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::body::stream())
            .then(move |state, addr, len, body| handle(state, endpoint, addr, len, body, None))
    };
    let sync = |name: &'static str, endpoint: Endpoint| {
        warp::path("sync")
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::post())
            .and(with_state.clone())
            .and(warp::ext::optional::<ClientAddr>())
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::header::optional::<String>(CALLER_HEADER))
            .and(warp::body::stream())
            .then(move |state, addr, len, caller, body| {
                handle(state, endpoint, addr, len, body, caller)
            })
    };
    let status = warp::path("status")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(warp::ext::optional::<ClientAddr>())
        .then(status);
    let peers = warp::path("peers")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(warp::ext::optional::<ClientAddr>())
        .then(peers);
    post("send", Endpoint::Send)
        .or(post("fetch", Endpoint::Fetch))
        .unify()
        .or(sync("hashes", Endpoint::SyncHashes))
        .unify()
        .or(sync("servers", Endpoint::SyncServers))
        .unify()
        .or(sync("reconcile", Endpoint::Reconcile))
        .unify()
        .or(status)
        .unify()
        .or(peers)
        .unify()
        .recover(recover)
        .unify()
}

async fn handle<S, B>(
    state: Arc<RelayState>,
    endpoint: Endpoint,
    addr: Option<ClientAddr>,
    content_length: Option<u64>,
    body: S,
    caller: Option<String>,
) -> Response<Bytes>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let body = Box::pin(body);
    let (from_peer, _permit) = match admit(&state, addr) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_closing_response(),
    };
    let limit = endpoint.body_limit(&state);
    // The body as declared, else the endpoint's limit.
    let declared = content_length.map_or(limit as u64, |n| n.min(limit as u64));
    let budget = state.config.max_request_memory;
    let (pool, pool_bytes) = if !from_peer && declared > LARGE_BODY_BYTES {
        (&state.stranger_memory, budget / STRANGERS_SHARE)
    } else {
        (&state.request_memory, budget)
    };
    // One request larger than the whole pool is served alone.
    let (body_bytes, answer_bytes) = endpoint.memory_bytes(&state, declared);
    let whole = (body_bytes + answer_bytes).min(pool_bytes);
    let busy = || {
        ApiError::unavailable("the relay is busy with large requests; retry shortly")
            .into_closing_response()
    };
    let Some(_body_memory) = reserve(pool, body_bytes.min(whole), pool_bytes) else {
        return busy();
    };
    let bytes = match read_body(content_length, body, limit, state.config.request_timeout).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // The answer's part only once the request is whole: a body that never comes (a client
    // stalling up to the request timeout) holds its own size, not the largest answer too.
    // (Counted in the pool's KiB: the two parts add up to what the whole would take.)
    let answer_kib = memory_kib(whole).saturating_sub(memory_kib(body_bytes.min(whole)));
    let Some(_answer_memory) = pool.clone().try_acquire_many_owned(answer_kib as u32).ok() else {
        return busy();
    };
    // On a sync call, the server the caller names itself as, when it is one we know and the
    // call comes from its own address: anyone can name any server (a peer too). (Not looked
    // up for the rest, pushes to /send among them.)
    let caller = caller
        .filter(|_| {
            matches!(
                endpoint,
                Endpoint::SyncHashes | Endpoint::SyncServers | Endpoint::Reconcile
            )
        })
        .and_then(|c| super::mesh::known_caller(&state, &c))
        .filter(|named| addr.is_some_and(|ClientAddr(a)| calls_from(&state, named, a.ip())));
    // A peer that calls us is up: broadcasts to it need not wait for our next sync. Only a
    // call from that peer's own address says so, or anyone could end its back-off (and have
    // its record written) at will.
    if from_peer
        && let Some(peer) = &caller
        && addr.is_some_and(|ClientAddr(a)| state.peer_addresses.is_address_of(a.ip(), peer))
    {
        state.peers.note_alive(peer, crate::relay::clock::now_ms());
    }
    let result = match endpoint {
        Endpoint::Send => send(&state, bytes, from_peer).await,
        Endpoint::Fetch => blocking(state.clone(), move |s| fetch(s, &bytes)).await,
        Endpoint::SyncHashes => {
            blocking(state.clone(), move |s| sync_hashes(s, &bytes, caller)).await
        }
        Endpoint::SyncServers => blocking(state.clone(), move |s| sync_servers(s, &bytes)).await,
        Endpoint::Reconcile => blocking(state.clone(), move |s| reconcile_round(s, &bytes)).await,
    };
    hold_until_written(
        &state,
        result.unwrap_or_else(ApiError::into_response),
        from_peer,
        addr.map(|ClientAddr(a)| a.ip()),
    )
}

/// Whether a call from `ip` comes from `server`: its own address for one named by address,
/// else one it was found at when this relay last contacted it as a peer.
fn calls_from(state: &RelayState, server: &ServerEntry, ip: std::net::IpAddr) -> bool {
    match &server.host {
        crate::proto::server::Host::Ip(own) => own.to_canonical() == ip.to_canonical(),
        crate::proto::server::Host::Domain(_) => state.peer_addresses.is_address_of(ip, server),
    }
}

/// A large answer with its share of [`RelayState::answer_memory`] (and, to an address that is
/// not a peer's, of [`RelayState::stranger_answer_memory`] and of its network's part of it),
/// given back once the last of its bytes is written (or the connection dropped); 503 when
/// none is free. Clients that read slowly can so hold at most half of it, and one address at
/// most an eighth of that: peers' sync answers, and other clients' fetches, keep the rest.
fn hold_until_written(
    state: &RelayState,
    response: Response<Bytes>,
    from_peer: bool,
    client: Option<std::net::IpAddr>,
) -> Response<Bytes> {
    let len = response.body().len();
    if len <= LARGE_ANSWER_BYTES {
        return response;
    }
    let busy = |why: &str| ApiError::unavailable(why).into_closing_response();
    let all_busy = "the relay is busy sending large answers; retry shortly";
    let budget = state.config.max_request_memory;
    // One answer larger than the whole budget (or share) is sent alone.
    let take = |pool: &Arc<Semaphore>, pool_bytes: u64| reserve(pool, len as u64, pool_bytes);
    let mut stranger = None;
    if !from_peer {
        let network = match client {
            Some(ip) => match state
                .answer_memory_by_network
                .admit_weighted(ip, memory_kib(len as u64))
            {
                Some(counted) => Some(counted),
                None => {
                    return busy(
                        "large answers to this address are still waiting to be read; take \
                         them first",
                    );
                }
            },
            None => None,
        };
        let Some(permit) = take(&state.stranger_answer_memory, budget / 2) else {
            return busy(all_busy);
        };
        stranger = Some((permit, network));
    }
    let Some(permit) = take(&state.answer_memory, budget) else {
        return busy(all_busy);
    };
    response.map(|body| {
        Bytes::from_owner(Answer {
            body,
            _memory: (permit, stranger),
        })
    })
}

/// What a stranger's answer holds besides the main pool's permit: its share of the
/// strangers' half, and its network's count.
type StrangerHold = (
    tokio::sync::OwnedSemaphorePermit,
    Option<crate::netlimits::CountedConnection>,
);

/// An answer's bytes and the memory they hold.
struct Answer {
    body: Bytes,
    _memory: (tokio::sync::OwnedSemaphorePermit, Option<StrangerHold>),
}

impl AsRef<[u8]> for Answer {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// Lets a request in, or answers it at once: past its address's rate limit (peers are not
/// limited) 429, with every request slot taken 503 (both before its body is read, so they
/// close the connection). Says whether it comes from a peer, and holds its slot.
fn admit(
    state: &RelayState,
    addr: Option<ClientAddr>,
) -> Result<(bool, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let from_peer = rate_limit(state, addr)?;
    let Ok(permit) = state.inflight.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable("the relay is busy; retry shortly"));
    };
    Ok((from_peer, permit))
}

/// 429 past the address's rate limit (peers are not limited); else whether it is a peer's.
fn rate_limit(state: &RelayState, addr: Option<ClientAddr>) -> Result<bool, ApiError> {
    let from_peer = addr.is_some_and(|ClientAddr(a)| state.peer_addresses.contains(a.ip()));
    if let Some(ClientAddr(addr)) = addr
        && !from_peer
        && !state.limiter.allow(addr.ip(), Instant::now())
    {
        return Err(ApiError::rate_limited(
            "too many requests from this address; slow down",
        ));
    }
    Ok(from_peer)
}

/// Runs `f` on the blocking pool: store reads and large parses must not stall the runtime.
async fn blocking<F>(state: Arc<RelayState>, f: F) -> Result<Response<Bytes>, ApiError>
where
    F: FnOnce(&RelayState) -> Result<Response<Bytes>, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .unwrap_or_else(|_| Err(ApiError::unavailable("the request failed inside the relay")))
}

fn storage_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "storage error");
    ApiError::unavailable("storage is unavailable; retry later")
}

/// Stores a packet. `expires` is taken only `from_peer` (an address in
/// [`RelayState::peer_addresses`]): it is how relays pass a packet's expiry on (PROTOCOL.md
/// §4), and from anyone else it would let them have a packet dropped early and then refused,
/// by sending it again with a near expiry to relays that lack it.
async fn send(
    state: &RelayState,
    body: Bytes,
    from_peer: bool,
) -> Result<Response<Bytes>, ApiError> {
    let packet = Packet::from_json_cached(&body, &state.rules, &state.keys).map_err(|e| {
        if e.is_too_large() {
            ApiError::too_large(e.to_string())
        } else {
            ApiError::bad_request(e.to_string())
        }
    })?;
    let hash = packet.hash();
    let new = NewPacket {
        hash,
        recipient: packet.recipient().fingerprint(),
        expires_at: expiry_for(state, packet.expires().filter(|_| from_peer)),
        json: packet.to_json().into_bytes(),
    };
    let fresh = state.broadcast.wanted().then(|| Fresh {
        hash,
        json: new.json.clone(),
        expires_at: new.expires_at,
        from: None,
    });
    let outcome = state.writer.put(new).await.map_err(storage_error)?;
    let stored = match outcome {
        PutOutcome::Stored { .. } => {
            if let Some(fresh) = fresh {
                state.broadcast.offer(fresh);
            }
            true
        }
        PutOutcome::Duplicate => false,
        PutOutcome::Tombstoned => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "this packet expired here; its hash is refused until the tombstone horizon passes",
            ));
        }
        PutOutcome::InboxFull => {
            return Err(ApiError::rate_limited(format!(
                "the recipient's inbox holds {} packets, the most this relay keeps; retry after some expire",
                state.config.max_inbox_packets
            )));
        }
        PutOutcome::StoreFull => {
            return Err(ApiError::unavailable(
                "this relay's storage is full; try another relay",
            ));
        }
    };
    // Written directly (hot path); a test checks it against serde_json's form.
    Ok(json_response(
        StatusCode::OK,
        send_answer(&hash, stored).into(),
    ))
}

/// The body of a `/send` 200: `{"hash": ..., "stored": ..., "duplicate": ...}`.
fn send_answer(hash: &PacketHash, stored: bool) -> String {
    format!(
        "{{\"hash\":\"{hash}\",\"stored\":{stored},\"duplicate\":{}}}",
        !stored
    )
}

/// When a packet stored now expires: after the retention, or earlier when the relay it came
/// from says so (PROTOCOL.md §4).
pub fn expiry_for(state: &RelayState, theirs: Option<u64>) -> u64 {
    let ours = now_ms().saturating_add(state.config.retention.as_millis() as u64);
    theirs.map_or(ours, |t| t.min(ours))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "body is not valid JSON: {e}"
        ))),
    }
}

/// Reads `field` as an array of at most `max` items.
fn bounded_array<'a>(
    map: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a [Value], ApiError> {
    match map.get(field) {
        Some(Value::Array(items)) if items.len() > max => Err(ApiError::too_large(format!(
            "`{field}` has {} entries; this relay accepts at most {max} per request",
            items.len()
        ))),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{field}` must be an array, found {}",
            json_type(other)
        ))),
        None => Err(ApiError::bad_request(format!("missing field `{field}`"))),
    }
}

fn parse_hashes(map: &Map<String, Value>, max: usize) -> Result<Vec<PacketHash>, ApiError> {
    let items = bounded_array(map, "hashes", max)?;
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let text = item.as_str().ok_or_else(|| {
            ApiError::bad_request(format!(
                "hashes[{i}] must be a string, found {}",
                json_type(item)
            ))
        })?;
        let hash = PacketHash::parse(text)
            .map_err(|e| ApiError::bad_request(format!("hashes[{i}]: {e}")))?;
        if seen.insert(hash) {
            out.push(hash);
        }
    }
    Ok(out)
}

/// A stored packet's JSON with `"expires"` added, as relays exchange packets (PROTOCOL.md §4).
pub fn json_with_expiry(json: &[u8], expires_at: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 48);
    push_with_expiry(&mut out, json, expires_at);
    out
}

fn push_with_expiry(out: &mut Vec<u8>, json: &[u8], expires_at: u64) {
    match json.split_first() {
        Some((b'{', rest)) => {
            out.extend_from_slice(b"{\"expires\":\"");
            out.extend_from_slice(rfc3339_ms(expires_at).as_bytes());
            out.extend_from_slice(b"\",");
            out.extend_from_slice(rest);
        }
        _ => out.extend_from_slice(json),
    }
}

/// Builds `{"messages":[...]` while the store is read, so that each packet is copied once,
/// straight into the answer.
struct MessagesJson {
    out: Vec<u8>,
    count: usize,
    with_expiry: bool,
}

impl MessagesJson {
    fn new(with_expiry: bool) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(b"{\"messages\":[");
        Self {
            out,
            count: 0,
            with_expiry,
        }
    }

    fn push(&mut self, p: PacketView<'_>) {
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        // PROTOCOL.md §4: server-to-server answers carry each packet's expiry.
        if self.with_expiry {
            push_with_expiry(&mut self.out, p.json, p.expires_at);
        } else {
            self.out.extend_from_slice(p.json);
        }
    }

    /// Closes the list, appends `tail` (more top-level fields) and the closing brace.
    fn finish(mut self, tail: &str) -> Bytes {
        self.out.push(b']');
        self.out.extend_from_slice(tail.as_bytes());
        self.out.push(b'}');
        self.out.into()
    }
}

/// A `fetch-cursor` cursor: the store's instance id and a sequence number (see
/// [`Store::instance`](super::store::Store::instance)).
fn cursor_text(instance: u64, seq: u64) -> String {
    format!("{instance:016x}.{seq}")
}

/// The sequence number to read after for `since`: its own for a cursor of this store, 0 (the
/// whole inbox) for one of other contents or of the older bare-number form; `None` when
/// `since` is no cursor at all. The client skips what it has seen, so starting over costs a
/// download, where a foreign position would hide every packet below it.
fn cursor_position(since: &str, instance: u64) -> Option<u64> {
    match since.split_once('.') {
        Some((id, seq)) => {
            let id = u64::from_str_radix(id, 16).ok()?;
            let seq = seq.parse::<u64>().ok()?;
            Some(if id == instance { seq } else { 0 })
        }
        None => since.parse::<u64>().ok().map(|_| 0),
    }
}

fn fetch(state: &RelayState, body: &[u8]) -> Result<Response<Bytes>, ApiError> {
    let map = parse_object(body)?;
    let now = now_ms();
    let max_bytes = state.config.max_response_bytes;
    // JASPER.md: the presence of `recipient` is checked first.
    match map.get("recipient") {
        Some(Value::String(key)) => {
            let key = state
                .keys
                .parse(key, state.rules.min_key_bits)
                .map_err(|e| ApiError::bad_request(format!("field `recipient`: {e}")))?;
            let instance = state.store.instance();
            let since = match map.get("since") {
                None | Some(Value::Null) => 0,
                Some(Value::String(s)) => cursor_position(s, instance).ok_or_else(|| {
                    ApiError::bad_request("`since` must be a cursor returned by an earlier /fetch")
                })?,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "`since` must be a string, found {}",
                        json_type(other)
                    )));
                }
            };
            let mut answer = MessagesJson::new(false);
            let end = state
                .store
                .inbox(&key.fingerprint(), since, max_bytes, now, &mut |p| {
                    answer.push(p)
                })
                .map_err(storage_error)?;
            if state.store.instance() != instance {
                // Reopened after a failure meanwhile, with new numbers: this page's positions
                // may belong to either store.
                return Err(storage_error(StoreError::Engine(
                    "the store was reopened during this fetch; ask again".into(),
                )));
            }
            let tail = format!(
                ",\"cursor\":\"{}\",\"more\":{}",
                cursor_text(instance, end.cursor),
                end.more
            );
            Ok(json_response(StatusCode::OK, answer.finish(&tail)))
        }
        None | Some(Value::Null) => {
            if !map.contains_key("hashes") {
                return Err(ApiError::bad_request(
                    "provide `recipient` (a public key) or `hashes` (a list of packet hashes)",
                ));
            }
            let hashes = parse_hashes(&map, state.config.max_hashes_per_request)?;
            let mut answer = MessagesJson::new(true);
            state
                .store
                .get_many(&hashes, max_bytes, now, &mut |p| answer.push(p))
                .map_err(storage_error)?;
            Ok(json_response(StatusCode::OK, answer.finish("")))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "field `recipient` must be a string, found {}",
            json_type(other)
        ))),
    }
}

fn sync_hashes(
    state: &RelayState,
    body: &[u8],
    caller: Option<ServerEntry>,
) -> Result<Response<Bytes>, ApiError> {
    let map = parse_object(body)?;
    let max = state.config.max_hashes_per_request;
    let theirs: HashSet<PacketHash> = parse_hashes(&map, max)?.into_iter().collect();
    drop(map);
    // JASPER.md: the answering side then fetches what it lacks from the caller, but only from
    // a caller that names itself as a server we already know and calls from that server's
    // address (anyone may name a server, and would fill the fetch-back queue at will).
    if let Some(peer) = caller {
        super::mesh::request_fetch_back(state, peer, &theirs);
    }
    let out = live_hashes_json(state, max, &|h| theirs.contains(h)).map_err(storage_error)?;
    Ok(json_response(StatusCode::OK, out.into()))
}

/// `{"hashes":[...]}` with up to `max` of this relay's live hashes, leaving out those `skip`
/// names: the body of a `/sync/hashes` request, and of its answer.
pub fn live_hashes_json(
    state: &RelayState,
    max: usize,
    skip: &dyn Fn(&PacketHash) -> bool,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(b"{\"hashes\":[");
    let mut count = 0;
    state.store.for_each_hash(now_ms(), &mut |h| {
        if !skip(&h) {
            if count > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(h.to_string().as_bytes());
            out.push(b'"');
            count += 1;
        }
        count < max
    })?;
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn sync_servers(state: &RelayState, body: &[u8]) -> Result<Response<Bytes>, ApiError> {
    let map = parse_object(body)?;
    let items = bounded_array(&map, "servers", state.config.max_servers_per_request)?;
    let theirs: Vec<ServerEntry> = items
        .iter()
        .filter_map(|v| ServerEntry::from_json(v).ok())
        .collect();
    let their_set: HashSet<&ServerEntry> = theirs.iter().collect();

    let mut ours = state.store.servers().map_err(storage_error)?;
    ours.extend(state.config.peer_entries());
    ours.sort();
    ours.dedup();
    let now = now_ms();
    // Not a server in quarantine, nor a learned one we cannot reach now (backing off): what
    // clients and peers get from us should answer. Configured peers are the operator's word.
    let configured = state.config.peer_entries();
    ours.retain(|s| !their_set.contains(s) && !state.peers.is_quarantined(s, now));
    ours.retain(|s| configured.contains(s) || state.peers.is_healthy(s, now));
    let answer: Vec<Value> = super::mesh::servers_to_share(state, ours)
        .iter()
        .map(ServerEntry::to_json)
        .collect();

    super::mesh::learn_servers(state, theirs).map_err(storage_error)?;
    let body = serde_json::json!({ "servers": answer });
    Ok(json_response(StatusCode::OK, body.to_string().into()))
}

/// `GET /peers`: the operator's view of the peers, answered only on loopback (it names the
/// relay's peers and their faults; nothing about clients).
async fn peers(state: Arc<RelayState>, addr: Option<ClientAddr>) -> Response<Bytes> {
    if !addr.is_some_and(|ClientAddr(a)| a.ip().to_canonical().is_loopback()) {
        return ApiError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response();
    }
    let views = tokio::task::spawn_blocking(move || {
        state
            .peers
            .views(&super::mesh::known_peers(&state), now_ms())
    })
    .await
    .unwrap_or_default();
    let body = serde_json::json!({ "peers": views });
    json_response(StatusCode::OK, body.to_string().into())
}

/// What this relay offers beyond JASPER.md.
fn capabilities(state: &RelayState) -> Vec<String> {
    let mut caps = vec![CAP_FETCH_CURSOR.to_owned()];
    if state.config.reconciliation {
        caps.push(reconcile::CAPABILITY.to_owned());
    }
    caps
}

/// `POST /sync/reconcile`: one round of set reconciliation, answering side.
fn reconcile_round(state: &RelayState, body: &[u8]) -> Result<Response<Bytes>, ApiError> {
    if !state.config.reconciliation {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "set reconciliation is disabled on this relay; use /sync/hashes",
        ));
    }
    let answer = reconcile::answer(state, body)
        .map_err(|e| ApiError::bad_request(format!("not a negentropy v1 message: {e}")))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .body(answer.into())
        .expect("static headers are valid"))
}

async fn status(state: Arc<RelayState>, addr: Option<ClientAddr>) -> Response<Bytes> {
    // Each one reads the store, which commits the index held for the latest sends: limited
    // per address as every other request is. It takes no request slot, so that a relay busy
    // with requests still says how busy it is, rather than seem down.
    if let Err(refused) = rate_limit(&state, addr) {
        return refused.into_closing_response();
    }
    // Both read the store: off the async workers.
    let s = state.clone();
    let read = tokio::task::spawn_blocking(move || {
        let peers = s.peers.counts(&super::mesh::known_peers(&s), now_ms());
        s.store.stats().map(|stats| (stats.packets, peers))
    })
    .await;
    let (messages, peers) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return storage_error(e).into_response(),
        Err(_) => return ApiError::unavailable("status unavailable").into_response(),
    };
    let status = Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        load: (state.load() * 1000.0).round() / 1000.0,
        messages,
        capabilities: capabilities(&state),
        peers: Some(peers),
    };
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&status)
            .expect("status serializes")
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_counts_only_for_the_store_that_gave_it() {
        let ours = 0x1234_5678_9abc_def0;
        let cursor = cursor_text(ours, 42);
        assert_eq!(cursor_position(&cursor, ours), Some(42));
        // Other contents, or the bare numbers of older relays: from the start.
        assert_eq!(cursor_position(&cursor, ours + 1), Some(0));
        assert_eq!(cursor_position("42", ours), Some(0));
        for junk in ["", "yesterday", "zz.1", "12.x", "1.2.3", "-1"] {
            assert_eq!(cursor_position(junk, ours), None, "{junk:?}");
        }
    }

    #[test]
    fn the_send_answer_is_the_json_it_claims() {
        let hash = PacketHash::of_message("m");
        for stored in [true, false] {
            let parsed: serde_json::Value =
                serde_json::from_str(&send_answer(&hash, stored)).unwrap();
            assert_eq!(
                parsed,
                serde_json::json!({"hash": hash.to_string(), "stored": stored, "duplicate": !stored})
            );
        }
    }
}
