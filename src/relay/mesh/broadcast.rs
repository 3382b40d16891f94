//! Message broadcasting (JASPER.md key feature 3): a packet this relay stores for the first
//! time is pushed on to its healthy peers right away, in the background, through a bounded
//! queue with bounded fan-out. What a full queue drops, the periodic sync repairs.
//!
//! Each peer has its own lane: a queue of [`LANE_CAPACITY`] packets and [`PUSHES_PER_PEER`]
//! workers, which share [`CONCURRENT_PUSHES`] slots with every other lane. A peer that accepts
//! connections and never answers (or is merely slow) fills its own lane and costs the others
//! nothing; a packet for a peer whose lane is full is left to the periodic sync, and a lane
//! whose peer answers that it is busy pauses ([`PAUSE_WHEN_BUSY`]). Packets waiting in lanes are
//! bounded in bytes as well ([`LANE_BYTES`]), whatever their number.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};

use super::client::{PeerClient, PeerError};
use crate::proto::{PacketHash, ServerEntry};
use crate::relay::api::{RelayState, json_with_expiry};

/// Packets waiting to be pushed; more are dropped (and reach peers by sync instead).
pub const QUEUE_CAPACITY: usize = 4096;
/// Pushes running at once, to all peers together.
pub const CONCURRENT_PUSHES: usize = 64;
/// Pushes running at once to one peer.
pub const PUSHES_PER_PEER: usize = 8;
/// Packets waiting in one peer's lane; more for that peer are left to sync.
pub const LANE_CAPACITY: usize = 4096;
/// Bytes of packets waiting in all lanes together; a packet that would exceed it is left to
/// sync (a packet waiting for several peers counts once).
pub const LANE_BYTES: usize = 64 << 20;
/// A lane with nothing to push for this long ends (and is made again when needed).
const LANE_IDLE: Duration = Duration::from_secs(60);
/// How long a lane's worker waits after the peer answered that it is busy or limiting us
/// (429, 503): meanwhile the lane fills and what overflows is left to sync.
pub const PAUSE_WHEN_BUSY: Duration = Duration::from_secs(1);

/// A packet just stored for the first time.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// Its hash.
    pub hash: PacketHash,
    /// Its stored JSON.
    pub json: Vec<u8>,
    /// Its expiry here, which travels with it.
    pub expires_at: u64,
    /// The peer it came from, which need not get it back.
    pub from: Option<ServerEntry>,
}

/// The sending side of the broadcast queue; cheap to clone.
#[derive(Clone)]
pub struct BroadcastQueue {
    tx: Option<mpsc::Sender<Fresh>>,
    /// Whether the broadcaster's last read of the known peers found any (true until it first
    /// reads them).
    peers_known: Arc<AtomicBool>,
}

impl BroadcastQueue {
    /// A queue and its receiving end; with `enabled` false, offers are ignored.
    pub fn new(enabled: bool) -> (Self, mpsc::Receiver<Fresh>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (
            Self {
                tx: enabled.then_some(tx),
                peers_known: Arc::new(AtomicBool::new(true)),
            },
            rx,
        )
    }

    /// Whether a packet offered now could go anywhere: broadcasting is on and the relay knows
    /// a peer. Lets the write path skip copying a packet that a lone relay would only drop.
    pub fn wanted(&self) -> bool {
        self.tx.is_some() && self.peers_known.load(Ordering::Relaxed)
    }

    /// Offers a packet for broadcast without waiting; false when it was dropped.
    pub fn offer(&self, fresh: Fresh) -> bool {
        match &self.tx {
            Some(tx) => tx.try_send(fresh).is_ok(),
            None => false,
        }
    }

    /// Records whether the known-peers list just read has any peer.
    fn note_peers(&self, any: bool) {
        self.peers_known.store(any, Ordering::Relaxed);
    }
}

/// How often the broadcaster reads the known-peers list again (a peer learned meanwhile gets
/// pushes from then on; the periodic sync brings it what came before).
pub const PEER_LIST_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Shuffles `peers` with a seed taken from the packet's hash, so that each packet goes to its
/// own random `broadcast_fanout` peers and no peer is always left out.
fn shuffle(peers: &mut [ServerEntry], hash: &PacketHash) {
    let mut x = u64::from_le_bytes(hash.0[..8].try_into().expect("8 bytes")) | 1;
    for i in (1..peers.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        peers.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Pushes queued packets to up to `broadcast_fanout` healthy peers each, until `stop`.
pub async fn run(
    state: Arc<RelayState>,
    client: PeerClient,
    mut rx: mpsc::Receiver<Fresh>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Shared::new(state.clone(), client, stop.clone());
    let mut lanes: HashMap<ServerEntry, mpsc::Sender<Arc<Body>>> = HashMap::new();
    // The known-peers list is read from the store once per PEER_LIST_PERIOD, not once per packet
    // (a redb read transaction on the async runtime for every stored packet), and also while
    // no packet comes: the write path asks `wanted` before it copies one. Health is checked
    // per packet.
    let mut reread = tokio::time::interval(PEER_LIST_PERIOD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peers: Vec<ServerEntry> = Vec::new();
    loop {
        let fresh = tokio::select! {
            // First, so that the list is read before the first packet is looked at.
            biased;
            _ = reread.tick() => {
                peers = super::known_peers(&state);
                state.broadcast.note_peers(!peers.is_empty());
                lanes.retain(|_, lane| !lane.is_closed());
                continue;
            }
            f = rx.recv() => match f { Some(f) => f, None => return },
            _ = stop.changed() => return,
        };
        if peers.is_empty() {
            continue;
        }
        let now = crate::relay::clock::now_ms();
        let mut candidates: Vec<ServerEntry> = peers
            .iter()
            .filter(|p| Some(*p) != fresh.from.as_ref() && state.peers.is_healthy(p, now))
            .cloned()
            .collect();
        shuffle(&mut candidates, &fresh.hash);
        candidates.truncate(state.config.broadcast_fanout);
        let targets = candidates;
        if targets.is_empty() {
            continue;
        }
        let Some(body) = Body::new(&shared, &fresh) else {
            tracing::debug!("packets waiting for peers fill their budget; left to sync");
            continue;
        };
        for peer in targets {
            let lane = lanes
                .entry(peer.clone())
                .or_insert_with(|| open_lane(&shared, &peer));
            let refused = match lane.try_send(body.clone()) {
                Ok(()) => continue,
                // Its workers ended (idle): a new lane takes the packet.
                Err(mpsc::error::TrySendError::Closed(body)) => {
                    *lane = open_lane(&shared, &peer);
                    lane.try_send(body).is_err()
                }
                Err(mpsc::error::TrySendError::Full(_)) => true,
            };
            if refused {
                tracing::debug!(peer = %peer, "the peer's push lane is full; left to sync");
            }
        }
    }
}

/// What every lane shares.
struct Shared {
    state: Arc<RelayState>,
    client: PeerClient,
    /// [`CONCURRENT_PUSHES`] slots.
    slots: Semaphore,
    /// Bytes of the bodies waiting in lanes or being pushed.
    queued_bytes: AtomicUsize,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn new(state: Arc<RelayState>, client: PeerClient, stop: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            state,
            client,
            slots: Semaphore::new(CONCURRENT_PUSHES),
            queued_bytes: AtomicUsize::new(0),
            stop,
        })
    }
}

/// A packet as pushed (with its expiry), shared by the lanes of its targets; its bytes count
/// against [`LANE_BYTES`] until the last lane is done with it.
struct Body {
    shared: Arc<Shared>,
    hash: PacketHash,
    json: Vec<u8>,
}

impl Body {
    /// The body of `fresh`, or `None` when it does not fit in the budget.
    fn new(shared: &Arc<Shared>, fresh: &Fresh) -> Option<Arc<Self>> {
        let json = json_with_expiry(&fresh.json, fresh.expires_at);
        let len = json.len();
        let before = shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > LANE_BYTES {
            shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(Arc::new(Self {
            shared: shared.clone(),
            hash: fresh.hash,
            json,
        }))
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.shared
            .queued_bytes
            .fetch_sub(self.json.len(), Ordering::Relaxed);
    }
}

/// Starts `peer`'s lane: [`PUSHES_PER_PEER`] workers taking from one queue, each push in a
/// shared slot. After [`LANE_IDLE`] without work a worker closes the queue (so that nothing is
/// queued that no worker will take: the broadcaster opens a new lane), pushes what came
/// meanwhile and ends, as do the others once the queue is empty; all end on stop.
fn open_lane(shared: &Arc<Shared>, peer: &ServerEntry) -> mpsc::Sender<Arc<Body>> {
    let (tx, rx) = mpsc::channel::<Arc<Body>>(LANE_CAPACITY);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..PUSHES_PER_PEER {
        let (shared, peer, rx) = (shared.clone(), peer.clone(), rx.clone());
        tokio::spawn(async move {
            let mut stop = shared.stop.clone();
            loop {
                let next = tokio::select! {
                    // Stopping first; then work, when work and the idle timeout are both ready.
                    biased;
                    _ = stop.changed() => return,
                    next = async { rx.lock().await.recv().await } => Some(next),
                    _ = tokio::time::sleep(LANE_IDLE) => None,
                };
                let body = match next {
                    Some(Some(body)) => body,
                    // Closed and empty.
                    Some(None) => return,
                    None => {
                        let mut rx = rx.lock().await;
                        rx.close();
                        match rx.try_recv() {
                            Ok(body) => body,
                            Err(_) => return,
                        }
                    }
                };
                let Ok(permit) = shared.slots.acquire().await else {
                    return;
                };
                let (state, client, peer) =
                    (shared.state.clone(), shared.client.clone(), peer.clone());
                let busy = tokio::task::spawn_blocking(move || {
                    push(&state, &client, &peer, &body.json, body.hash)
                })
                .await
                .unwrap_or(false);
                drop(permit);
                if busy {
                    tokio::select! {
                        _ = tokio::time::sleep(PAUSE_WHEN_BUSY) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        });
    }
    tx
}

/// Pushes one packet to one peer (blocking) and notes how the peer did; true when the peer
/// said it is busy or limiting us, so that the lane pauses.
fn push(
    state: &RelayState,
    client: &PeerClient,
    peer: &ServerEntry,
    body: &[u8],
    hash: PacketHash,
) -> bool {
    let limit = 4096;
    match client.post(peer, "/send", body, limit) {
        Ok(_) => state.peers.push_accepted(peer, hash),
        // Refusals (expired there, stricter limits, busy) are the peer's right.
        Err(PeerError::Status(code)) => {
            tracing::debug!(peer = %peer, code, "push refused");
            return matches!(code, 429 | 503);
        }
        // One that cannot be reached is backed off, as a failed sync would be, so that the
        // next packets are not offered to it either.
        Err(e @ (PeerError::Unreachable(_) | PeerError::Address(_))) => {
            tracing::debug!(peer = %peer, error = %e, "push failed");
            let now = crate::relay::clock::now_ms();
            state
                .peers
                .note(peer, super::peers::Event::Unreachable, now);
        }
        Err(e) => tracing::debug!(peer = %peer, error = %e, "push failed"),
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;
    use crate::relay::mesh::MeshInbox;
    use crate::relay::store::{PutLimits, RedbStore, Store};
    use crate::relay::writer::Writer;

    /// Waits up to 5 s for `cond`.
    async fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if cond() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        cond()
    }

    /// A relay's shared state over a store in `dir`, with no peers.
    fn relay_state(dir: &std::path::Path) -> (Arc<RelayState>, MeshInbox, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir, 4 << 20).unwrap());
        let limits = PutLimits {
            max_inbox_packets: 10,
            max_stored_bytes: 1 << 20,
        };
        let (writer, _) = Writer::spawn(store.clone(), limits);
        let config = RelayConfig {
            data_dir: dir.to_path_buf(),
            ..RelayConfig::default()
        };
        let local = "127.0.0.1:9".parse().unwrap();
        let (state, inbox) = RelayState::new(store.clone(), writer, config, local);
        (Arc::new(state), inbox, store)
    }

    #[tokio::test]
    async fn the_write_path_is_told_whether_any_peer_would_get_a_push() {
        let dir = tempfile::tempdir().unwrap();
        let (state, inbox, store) = relay_state(dir.path());
        assert!(
            state.broadcast.wanted(),
            "until the broadcaster reads the peers, packets are offered"
        );
        let (stop_tx, stop) = watch::channel(false);
        let client = PeerClient::new(false, Vec::new());
        let broadcaster = tokio::spawn(run(state.clone(), client, inbox.pushes, stop));
        assert!(
            eventually(|| !state.broadcast.wanted()).await,
            "a relay without peers copies nothing for broadcast"
        );
        let peer: ServerEntry = "relay.example.org:8080".parse().unwrap();
        store.add_servers(&[peer], 10).unwrap();
        assert!(
            eventually(|| state.broadcast.wanted()).await,
            "a peer learned later gets pushes within {PEER_LIST_PERIOD:?}"
        );
        stop_tx.send(true).unwrap();
        broadcaster.await.unwrap();

        let (disabled, _rx) = BroadcastQueue::new(false);
        assert!(!disabled.wanted(), "broadcast_fanout = 0 never copies");
    }

    #[tokio::test]
    async fn a_peer_a_push_cannot_reach_is_backed_off() {
        let dir = tempfile::tempdir().unwrap();
        let (state, inbox, store) = relay_state(dir.path());
        // A configured peer on a loopback port where nothing listens.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: ServerEntry = closed.local_addr().unwrap().to_string().parse().unwrap();
        drop(closed);
        store.add_servers(std::slice::from_ref(&peer), 10).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let client = PeerClient::new(true, vec![peer.clone()]);
        let broadcaster = tokio::spawn(run(state.clone(), client, inbox.pushes, stop));
        let now = crate::relay::clock::now_ms;
        assert!(state.peers.is_healthy(&peer, now()));
        // Offered once the broadcaster has read the peer list.
        assert!(eventually(|| state.broadcast.wanted()).await);
        tokio::time::sleep(PEER_LIST_PERIOD).await;
        state.broadcast.offer(Fresh {
            hash: PacketHash::of_message("a"),
            json: b"{}".to_vec(),
            expires_at: now() + 60_000,
            from: None,
        });
        assert!(
            eventually(|| !state.peers.is_healthy(&peer, now())).await,
            "the failed push left the peer healthy"
        );
        stop_tx.send(true).unwrap();
        broadcaster.await.unwrap();
    }

    #[tokio::test]
    async fn bytes_waiting_for_peers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _inbox, _store) = relay_state(dir.path());
        let (_stop_tx, stop) = watch::channel(false);
        let shared = Shared::new(state, PeerClient::new(false, Vec::new()), stop);
        let fresh = |n: u8| Fresh {
            hash: PacketHash::of_message(&n.to_string()),
            json: format!("{{\"message\":\"{}\"}}", "x".repeat(LANE_BYTES / 2)).into_bytes(),
            expires_at: 1,
            from: None,
        };
        let first = Body::new(&shared, &fresh(1)).expect("half the budget fits");
        let shared_by_lanes = first.clone();
        assert!(Body::new(&shared, &fresh(2)).is_none(), "over the budget");
        drop(first);
        assert!(
            Body::new(&shared, &fresh(3)).is_none(),
            "still held by a lane"
        );
        drop(shared_by_lanes);
        assert_eq!(shared.queued_bytes.load(Ordering::Relaxed), 0);
        assert!(
            Body::new(&shared, &fresh(4)).is_some(),
            "given back when pushed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_lane_closes_itself_so_nothing_is_queued_that_no_one_takes() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _inbox, _store) = relay_state(dir.path());
        let (_stop_tx, stop) = watch::channel(false);
        let shared = Shared::new(state, PeerClient::new(false, Vec::new()), stop);
        let peer: ServerEntry = "relay.example.org:8080".parse().unwrap();
        let lane = open_lane(&shared, &peer);
        tokio::time::sleep(LANE_IDLE / 2).await;
        assert!(!lane.is_closed(), "still open while it may get work");
        tokio::time::sleep(LANE_IDLE).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            lane.is_closed(),
            "an idle lane ends, and says so to the broadcaster"
        );
    }

    #[test]
    fn every_peer_gets_a_share_of_the_pushes() {
        let peers: Vec<ServerEntry> = (1..=10)
            .map(|n| format!("relay{n}.example.org:80").parse().unwrap())
            .collect();
        let mut picked = std::collections::HashMap::new();
        for n in 0..200u32 {
            let mut order = peers.clone();
            shuffle(&mut order, &PacketHash::of_message(&n.to_string()));
            assert_eq!(order.len(), peers.len());
            for p in order.into_iter().take(3) {
                *picked.entry(p).or_insert(0) += 1;
            }
        }
        assert_eq!(picked.len(), 10, "every peer is picked sometimes");
        assert!(picked.values().all(|n| *n > 20), "{picked:?}");
    }
}
