//! The rendezvous hub (src/proto/rendezvous.rs is the protocol): authenticated sessions by
//! key, offers waiting for their peer, answers routed back, expiry. It holds no sockets: each
//! session is a channel of outgoing lines and a switch that closes it, and the clock is passed
//! in. The STUN owner learns only the two keys of an offer and its sizes; the payloads are
//! sealed end to end.
//!
//! Rules:
//! - One session per key: when a key authenticates again, the newest session takes over and
//!   the older one is told so (an `error` frame) and closed. Offers made to the key and not
//!   yet answered are delivered again to the new session; offers the older session made are
//!   dropped (no answer could reach it).
//! - An offer lives as long as the session that made it, and at most `offer_ttl`; then it is
//!   dropped and the offerer, when connected, gets `expired`. At most `max_offers_per_key`
//!   offers wait for one key, and at most as many from one key; at most
//!   [`MAX_OFFERS_PER_PAIR`] from one key to another (so that one key cannot fill another's
//!   queue); at most `max_pending_offers` in all. A payload is at most [`MAX_PAYLOAD_BYTES`].
//! - Keys cost nothing to make, networks do: offers from one client network (an IPv4
//!   address, an IPv6 /48) are at most [`NETWORK_SHARE`] times `max_offers_per_key`, and a
//!   key's full queue makes room for an offer from a network holding fewer of its offers than
//!   another: that network's oldest offer to the key goes (its offerer gets `expired`). So
//!   many keys from a few networks can neither fill the hub nor shut a key off from everyone.
//! - An answer is accepted only for an offer made to the answering key by the key it names in
//!   `to`, and only while that offerer is connected; it ends the offer.
//! - A session that does not read what it is sent (its queue is full) is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use crate::proto::rendezvous::{SealedPayload, ServerFrame};
use crate::proto::{Fingerprint, PublicKey};

/// Frames a session may have waiting to be written before it counts as not reading.
pub const SESSION_QUEUE: usize = 256;
/// Offers that may wait from one key to one other key.
pub const MAX_OFFERS_PER_PAIR: usize = 2;
/// Offers that may wait from one client network, in `max_offers_per_key`s.
pub const NETWORK_SHARE: usize = 4;
/// Largest sealed payload (message and signature) of an offer or answer. A session
/// description sealed to the largest key accepted (8192 bits) is well under it.
pub const MAX_PAYLOAD_BYTES: usize = 24 * 1024;

/// The hub's bounds, from `[stun]`.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// How long an offer waits for its answer.
    pub offer_ttl: Duration,
    /// Offers waiting for one key, and from one key.
    pub max_offers_per_key: usize,
    /// Offers waiting in all.
    pub max_pending_offers: usize,
}

/// What a session writes to its client: one STUN message or one rendezvous line.
pub type Outgoing = Vec<u8>;

/// A connection's handle as the hub sees it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique over the process's life.
    pub id: u64,
    /// Where its frames go.
    pub tx: mpsc::Sender<Outgoing>,
    /// Closes the connection when notified.
    pub kill: Arc<Notify>,
}

/// Why an offer or answer was refused (the text goes to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An offer to the offerer's own key.
    #[error("an offer to your own key")]
    ToSelf,
    /// The same offer id is already waiting.
    #[error("an offer with this id is already waiting for this key")]
    Duplicate,
    /// The peer's queue is full.
    #[error("too many offers are waiting for this key; try again later")]
    PeerQueueFull,
    /// The offerer has as many offers waiting for this peer as one may.
    #[error("you have offers waiting for this key already; wait for an answer or expiry")]
    PairQueueFull,
    /// The payload is larger than any session description needs.
    #[error("the payload is larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    /// The offerer has too many offers waiting.
    #[error("too many of your offers are waiting; wait for answers or expiry")]
    OwnQueueFull,
    /// The offerer's network has too many offers waiting.
    #[error("too many offers from your network are waiting; try again later")]
    NetworkQueueFull,
    /// The hub is full.
    #[error("the rendezvous is full; try again later")]
    HubFull,
    /// No such offer was made to the answering key by the key named.
    #[error("no waiting offer from that key with that id was made to you")]
    NoSuchOffer,
    /// The offerer is not connected to take the answer.
    #[error("the offerer is not connected")]
    OffererGone,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OfferKey {
    from: Fingerprint,
    to: Fingerprint,
    id: String,
}

#[derive(Debug)]
struct Offer {
    from_key: String,
    /// The session that made it: answers go to it alone.
    from_session: u64,
    /// That session's client network.
    from_network: IpAddr,
    payload: SealedPayload,
    expires: Instant,
    delivered_to: Option<u64>,
}

struct Session {
    handle: SessionHandle,
    /// Its client network for offers (see [`offer_network`]).
    network: IpAddr,
}

/// What offers are counted by: an IPv4 address, or an IPv6 /48 (one customer commonly has
/// thousands of /64s, and one offer from each of a few would fill any key's queue).
fn offer_network(ip: IpAddr) -> IpAddr {
    crate::netlimits::client_site(ip).unwrap_or_else(|| crate::netlimits::client_network(ip))
}

/// The hub's state; the service keeps it behind a mutex and never awaits while holding it.
pub struct Hub {
    limits: HubLimits,
    sessions: HashMap<Fingerprint, Session>,
    offers: HashMap<OfferKey, Offer>,
    waiting_for: HashMap<Fingerprint, usize>,
    waiting_from: HashMap<Fingerprint, usize>,
    waiting_from_network: HashMap<IpAddr, usize>,
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: HubLimits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            offers: HashMap::new(),
            waiting_for: HashMap::new(),
            waiting_from: HashMap::new(),
            waiting_from_network: HashMap::new(),
        }
    }

    /// Offers waiting now.
    pub fn pending(&self) -> usize {
        self.offers.len()
    }

    /// Sessions that receive now (one per key).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Makes `handle`, connected from `ip`, the receiving session of `key` and delivers the
    /// offers waiting for it. The caller has already queued `ready` on the handle.
    pub fn register(&mut self, key: &PublicKey, handle: SessionHandle, ip: IpAddr) {
        let fp = key.fingerprint();
        let id = handle.id;
        let network = offer_network(ip);
        if let Some(old) = self.sessions.insert(fp, Session { handle, network }) {
            tracing::debug!(key = %fp.short(), "a newer session of this key takes over");
            let frame = ServerFrame::Error {
                error: "another session authenticated with this key; this one is closed".into(),
                id: None,
            };
            let _ = old.handle.tx.try_send(frame.to_line().into_bytes());
            old.handle.kill.notify_one();
            self.drop_offers_of_session(fp, old.handle.id);
        }
        let mut deliveries = Vec::new();
        for (k, offer) in &mut self.offers {
            if k.to == fp && offer.delivered_to != Some(id) {
                offer.delivered_to = Some(id);
                deliveries.push(ServerFrame::Offer {
                    from: offer.from_key.clone(),
                    id: k.id.clone(),
                    payload: offer.payload.clone(),
                });
            }
        }
        for frame in deliveries {
            self.send(fp, &frame);
        }
    }

    /// Forgets session `id` of `key` (when it is still the receiving one) and the offers it
    /// made.
    pub fn unregister(&mut self, key: &PublicKey, id: u64) {
        let fp = key.fingerprint();
        if self.sessions.get(&fp).is_some_and(|s| s.handle.id == id) {
            self.sessions.remove(&fp);
        }
        self.drop_offers_of_session(fp, id);
    }

    fn drop_offers_of_session(&mut self, fp: Fingerprint, session: u64) {
        let made: Vec<OfferKey> = self
            .offers
            .iter()
            .filter(|(k, o)| k.from == fp && o.from_session == session)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &made {
            self.remove(key);
        }
    }

    /// Queues an offer from `from` to `to` and delivers it when `to` is connected.
    pub fn offer(
        &mut self,
        from: &PublicKey,
        to: &PublicKey,
        id: String,
        payload: SealedPayload,
        now: Instant,
    ) -> Result<(), Refused> {
        let (from_fp, to_fp) = (from.fingerprint(), to.fingerprint());
        if from_fp == to_fp {
            return Err(Refused::ToSelf);
        }
        if payload_bytes(&payload) > MAX_PAYLOAD_BYTES {
            return Err(Refused::TooLarge);
        }
        // Offers from a key that has no session (it left, or was taken over) could never be
        // answered.
        let Some((from_session, from_network)) = self
            .sessions
            .get(&from_fp)
            .map(|s| (s.handle.id, s.network))
        else {
            return Err(Refused::OffererGone);
        };
        let key = OfferKey {
            from: from_fp,
            to: to_fp,
            id,
        };
        if self.offers.contains_key(&key) {
            return Err(Refused::Duplicate);
        }
        let max = self.limits.max_offers_per_key;
        if self.waiting_from.get(&from_fp).copied().unwrap_or(0) >= max {
            return Err(Refused::OwnQueueFull);
        }
        let from_this_network = self
            .waiting_from_network
            .get(&from_network)
            .copied()
            .unwrap_or(0);
        if from_this_network >= max.saturating_mul(NETWORK_SHARE) {
            return Err(Refused::NetworkQueueFull);
        }
        let to_this_peer = self
            .offers
            .keys()
            .filter(|k| k.from == from_fp && k.to == to_fp)
            .count();
        if to_this_peer >= MAX_OFFERS_PER_PAIR {
            return Err(Refused::PairQueueFull);
        }
        if self.offers.len() >= self.limits.max_pending_offers {
            return Err(Refused::HubFull);
        }
        if self.waiting_for.get(&to_fp).copied().unwrap_or(0) >= max
            && !self.make_room(to_fp, from_network)
        {
            return Err(Refused::PeerQueueFull);
        }
        let delivered_to = self.sessions.get(&to_fp).map(|s| s.handle.id);
        let frame = delivered_to.map(|_| ServerFrame::Offer {
            from: from.canonical().to_owned(),
            id: key.id.clone(),
            payload: payload.clone(),
        });
        *self.waiting_for.entry(to_fp).or_default() += 1;
        *self.waiting_from.entry(from_fp).or_default() += 1;
        *self.waiting_from_network.entry(from_network).or_default() += 1;
        self.offers.insert(
            key,
            Offer {
                from_key: from.canonical().to_owned(),
                from_session,
                from_network,
                payload,
                expires: now + self.limits.offer_ttl,
                delivered_to,
            },
        );
        if let Some(frame) = frame {
            self.send(to_fp, &frame);
        }
        Ok(())
    }

    /// Routes `answerer`'s answer to the offer `id` that `offerer` made to it.
    pub fn answer(
        &mut self,
        answerer: &PublicKey,
        offerer: &PublicKey,
        id: String,
        payload: SealedPayload,
    ) -> Result<(), Refused> {
        let key = OfferKey {
            from: offerer.fingerprint(),
            to: answerer.fingerprint(),
            id,
        };
        if payload_bytes(&payload) > MAX_PAYLOAD_BYTES {
            return Err(Refused::TooLarge);
        }
        if !self.offers.contains_key(&key) {
            return Err(Refused::NoSuchOffer);
        }
        if !self.sessions.contains_key(&key.from) {
            return Err(Refused::OffererGone);
        }
        self.remove(&key);
        let frame = ServerFrame::Answer {
            from: answerer.canonical().to_owned(),
            id: key.id,
            payload,
        };
        self.send(key.from, &frame);
        Ok(())
    }

    /// Drops the offers whose time is up and tells their offerers; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let due: Vec<OfferKey> = self
            .offers
            .iter()
            .filter(|(_, o)| o.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &due {
            self.remove(key);
            self.send(key.from, &ServerFrame::Expired { id: key.id.clone() });
        }
        due.len()
    }

    /// Makes room in `to`'s full queue for an offer from `network`: when another network
    /// holds at least two more of its offers than `network` does, that network's oldest offer
    /// to `to` goes (its offerer is told `expired`). False when no network holds that many.
    fn make_room(&mut self, to: Fingerprint, network: IpAddr) -> bool {
        /// Offers to `to` from one network, and its oldest.
        type Share<'a> = (usize, Option<(Instant, &'a OfferKey)>);
        let mut by_network: HashMap<IpAddr, Share<'_>> = HashMap::new();
        for (key, offer) in self.offers.iter().filter(|(k, _)| k.to == to) {
            let (count, oldest) = by_network.entry(offer.from_network).or_default();
            *count += 1;
            if oldest.is_none_or(|(at, _)| offer.expires < at) {
                *oldest = Some((offer.expires, key));
            }
        }
        let ours = by_network.get(&network).map_or(0, |(count, _)| *count);
        let Some((count, Some((_, victim)))) = by_network.into_values().max_by_key(|(c, _)| *c)
        else {
            return false;
        };
        if count < ours + 2 {
            return false;
        }
        let victim = victim.clone();
        tracing::debug!(key = %to.short(), "a full queue made room for another network's offer");
        self.remove(&victim);
        self.send(victim.from, &ServerFrame::Expired { id: victim.id });
        true
    }

    fn remove(&mut self, key: &OfferKey) {
        let Some(offer) = self.offers.remove(key) else {
            return;
        };
        for (map, fp) in [
            (&mut self.waiting_for, key.to),
            (&mut self.waiting_from, key.from),
        ] {
            if let Some(n) = map.get_mut(&fp) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&fp);
                }
            }
        }
        if let Some(n) = self.waiting_from_network.get_mut(&offer.from_network) {
            *n -= 1;
            if *n == 0 {
                self.waiting_from_network.remove(&offer.from_network);
            }
        }
    }

    /// Sends a frame to `fp`'s session, if any; a session whose queue is full is closed.
    fn send(&mut self, fp: Fingerprint, frame: &ServerFrame) {
        let Some(session) = self.sessions.get(&fp) else {
            return;
        };
        if session
            .handle
            .tx
            .try_send(frame.to_line().into_bytes())
            .is_err()
        {
            tracing::debug!(key = %fp.short(), "session not reading; closing it");
            session.handle.kill.notify_one();
            let id = session.handle.id;
            self.sessions.remove(&fp);
            // Offers live with their session.
            self.drop_offers_of_session(fp, id);
        }
    }
}

fn payload_bytes(payload: &SealedPayload) -> usize {
    payload.message.len() + payload.signature.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn limits() -> HubLimits {
        HubLimits {
            offer_ttl: Duration::from_secs(10),
            max_offers_per_key: 2,
            max_pending_offers: 3,
        }
    }

    fn session(id: u64) -> (SessionHandle, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        (
            SessionHandle {
                id,
                tx,
                kill: Arc::new(Notify::new()),
            },
            rx,
        )
    }

    fn frames(rx: &mut mpsc::Receiver<Outgoing>) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Ok(line) = rx.try_recv() {
            out.push(serde_json::from_slice(&line).unwrap());
        }
        out
    }

    fn payload(text: &str) -> SealedPayload {
        SealedPayload {
            message: text.into(),
            signature: "sig".into(),
        }
    }

    #[test]
    fn offers_wait_for_their_peer_and_answers_come_back() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let (a, b) = (alice.public(), bob.public());
        let mut hub = Hub::new(limits());
        let now = Instant::now();
        let (ha, mut ra) = session(1);
        hub.register(a, ha, LOCAL);
        hub.offer(a, b, "o1".into(), payload("sdp"), now).unwrap();
        assert_eq!(hub.pending(), 1);
        let (hb, mut rb) = session(2);
        hub.register(b, hb, LOCAL);
        let got = frames(&mut rb);
        assert_eq!(
            got,
            vec![ServerFrame::Offer {
                from: a.canonical().into(),
                id: "o1".into(),
                payload: payload("sdp")
            }]
        );
        // Only the key the offer was made to can answer it, and only with the offerer's key.
        assert_eq!(
            hub.answer(a, b, "o1".into(), payload("x")),
            Err(Refused::NoSuchOffer)
        );
        assert_eq!(
            hub.answer(b, b, "o1".into(), payload("x")),
            Err(Refused::NoSuchOffer)
        );
        hub.answer(b, a, "o1".into(), payload("answer")).unwrap();
        assert_eq!(
            frames(&mut ra),
            vec![ServerFrame::Answer {
                from: b.canonical().into(),
                id: "o1".into(),
                payload: payload("answer")
            }]
        );
        assert_eq!(hub.pending(), 0);
        assert_eq!(
            hub.answer(b, a, "o1".into(), payload("again")),
            Err(Refused::NoSuchOffer)
        );
    }

    #[test]
    fn queues_are_bounded_and_offers_expire() {
        let (alice, bob, carol, dave) = (
            fixture("alice"),
            fixture("bob"),
            fixture("carol"),
            fixture("dave"),
        );
        let (a, b, c, d) = (alice.public(), bob.public(), carol.public(), dave.public());
        let mut hub = Hub::new(limits());
        let now = Instant::now();
        let (ha, mut ra) = session(1);
        hub.register(a, ha, LOCAL);
        let (hc, _rc) = session(3);
        hub.register(c, hc, LOCAL);
        let (hd, _rd) = session(4);
        hub.register(d, hd, LOCAL);
        assert_eq!(
            hub.offer(a, a, "x".into(), payload("p"), now),
            Err(Refused::ToSelf)
        );
        assert_eq!(
            hub.offer(b, c, "x".into(), payload("p"), now),
            Err(Refused::OffererGone),
            "an offer from a key without a session could never be answered"
        );
        hub.offer(a, b, "1".into(), payload("p"), now).unwrap();
        assert_eq!(
            hub.offer(a, b, "1".into(), payload("p"), now),
            Err(Refused::Duplicate)
        );
        hub.offer(c, b, "2".into(), payload("p"), now).unwrap();
        assert_eq!(
            hub.offer(d, b, "3".into(), payload("p"), now),
            Err(Refused::PeerQueueFull)
        );
        hub.offer(a, c, "4".into(), payload("p"), now).unwrap();
        assert_eq!(
            hub.offer(a, d, "5".into(), payload("p"), now),
            Err(Refused::OwnQueueFull)
        );
        assert_eq!(
            hub.offer(d, c, "6".into(), payload("p"), now),
            Err(Refused::HubFull)
        );
        assert_eq!(hub.expire(now + Duration::from_secs(9)), 0);
        assert_eq!(hub.expire(now + Duration::from_secs(10)), 3);
        assert_eq!(hub.pending(), 0);
        let mut expired: Vec<ServerFrame> = frames(&mut ra);
        expired.sort_by_key(|f| format!("{f:?}"));
        assert_eq!(
            expired,
            vec![
                ServerFrame::Expired { id: "1".into() },
                ServerFrame::Expired { id: "4".into() }
            ]
        );
        hub.offer(d, b, "3".into(), payload("p"), now).unwrap();
    }

    #[test]
    fn the_newest_session_of_a_key_takes_over_and_offers_live_with_their_session() {
        use futures_util::FutureExt as _;
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let (a, b) = (alice.public(), bob.public());
        let mut hub = Hub::new(limits());
        let now = Instant::now();
        let (h1, mut r1) = session(1);
        let old_kill = h1.kill.clone();
        hub.register(b, h1, LOCAL);
        let (ha, _ra) = session(3);
        hub.register(a, ha, LOCAL);
        hub.offer(a, b, "o".into(), payload("p"), now).unwrap();
        assert_eq!(frames(&mut r1).len(), 1);
        let (h2, mut r2) = session(2);
        hub.register(b, h2, LOCAL);
        assert!(matches!(
            frames(&mut r1).as_slice(),
            [ServerFrame::Error { .. }]
        ));
        assert!(
            old_kill.notified().now_or_never().is_some(),
            "the older session is closed"
        );
        assert_eq!(
            frames(&mut r2).len(),
            1,
            "the waiting offer is delivered again"
        );
        hub.unregister(b, 1);
        assert_eq!(
            hub.sessions(),
            2,
            "an old session leaving does not unseat the new"
        );
        // The offerer's session ends (a client stopped and started again): its offers go, so
        // that nobody answers an offer whose maker is gone.
        hub.unregister(a, 3);
        assert_eq!(hub.pending(), 0);
        assert_eq!(
            hub.answer(b, a, "o".into(), payload("p")),
            Err(Refused::NoSuchOffer)
        );
        // So do the offers of a session taken over by a newer one of the same key.
        let (ha, _ra) = session(4);
        hub.register(a, ha, LOCAL);
        hub.offer(a, b, "o2".into(), payload("p"), now).unwrap();
        let (ha, _ra) = session(5);
        hub.register(a, ha, LOCAL);
        assert_eq!(hub.pending(), 0);
    }

    #[test]
    fn one_key_cannot_fill_anothers_queue_or_send_oversized_payloads() {
        let (alice, bob, carol) = (fixture("alice"), fixture("bob"), fixture("carol"));
        let (a, b, c) = (alice.public(), bob.public(), carol.public());
        let mut hub = Hub::new(HubLimits {
            offer_ttl: Duration::from_secs(10),
            max_offers_per_key: 16,
            max_pending_offers: 100,
        });
        let now = Instant::now();
        let mut receivers = Vec::new();
        for (n, key) in [a, c].into_iter().enumerate() {
            let (h, r) = session(n as u64 + 1);
            receivers.push(r);
            hub.register(key, h, LOCAL);
        }
        for n in 0..MAX_OFFERS_PER_PAIR {
            hub.offer(a, b, format!("a{n}"), payload("p"), now).unwrap();
        }
        assert_eq!(
            hub.offer(a, b, "more".into(), payload("p"), now),
            Err(Refused::PairQueueFull)
        );
        hub.offer(c, b, "c".into(), payload("p"), now).unwrap();
        let big = payload(&"x".repeat(MAX_PAYLOAD_BYTES));
        assert_eq!(
            hub.offer(c, a, "big".into(), big.clone(), now),
            Err(Refused::TooLarge)
        );
        assert_eq!(hub.answer(b, c, "c".into(), big), Err(Refused::TooLarge));
    }

    #[test]
    fn many_keys_from_one_network_neither_fill_the_hub_nor_shut_a_key_off() {
        use crate::proto::key::test_keys::fake_key;
        let limits = HubLimits {
            offer_ttl: Duration::from_secs(10),
            max_offers_per_key: 2,
            max_pending_offers: 100,
        };
        let mut hub = Hub::new(limits);
        let now = Instant::now();
        let victim = fake_key(1);
        // An attacker's keys (cheap to make), each with a session from its own /64 of one
        // IPv6 /48.
        let keys: Vec<PublicKey> = (10..22).map(fake_key).collect();
        let mut receivers = Vec::new();
        for (n, key) in keys.iter().enumerate() {
            let (h, r) = session(100 + n as u64);
            let ip: IpAddr = format!("2001:db8:1:{n:x}::1").parse().unwrap();
            hub.register(key, h, ip);
            receivers.push(r);
        }
        // Two offers fill the victim's queue; a third from the same network finds it full.
        let at = |ms: u64| now + Duration::from_millis(ms);
        hub.offer(&keys[0], &victim, "a0".into(), payload("p"), at(0))
            .unwrap();
        hub.offer(&keys[1], &victim, "a1".into(), payload("p"), at(1))
            .unwrap();
        assert_eq!(
            hub.offer(&keys[2], &victim, "a2".into(), payload("p"), at(2)),
            Err(Refused::PeerQueueFull)
        );
        // The network's share of the hub is NETWORK_SHARE queues' worth, whatever its keys.
        let mut refused = Vec::new();
        for (n, from) in keys.iter().enumerate().skip(2) {
            let to = fake_key(200 + n as u8);
            if let Err(e) = hub.offer(from, &to, format!("b{n}"), payload("p"), at(3)) {
                refused.push(e);
            }
        }
        assert_eq!(hub.pending(), 2 * NETWORK_SHARE);
        assert!(
            refused.iter().all(|e| *e == Refused::NetworkQueueFull) && refused.len() == 4,
            "{refused:?}"
        );
        // A friend from another network still reaches the victim: the attacker's oldest offer
        // to it goes, and its offerer is told.
        let friend = fake_key(2);
        let (hf, _rf) = session(50);
        hub.register(&friend, hf, "192.0.2.7".parse().unwrap());
        hub.offer(&friend, &victim, "f".into(), payload("hi"), at(4))
            .unwrap();
        assert_eq!(
            frames(&mut receivers[0]),
            vec![ServerFrame::Expired { id: "a0".into() }]
        );
        let (hv, mut rv) = session(60);
        hub.register(&victim, hv, LOCAL);
        let mut offered: Vec<String> = frames(&mut rv)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Offer { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        offered.sort();
        assert_eq!(offered, ["a1", "f"]);
        // Once networks hold equal shares, a full queue stays full.
        let other = fake_key(3);
        let (ho, _ro) = session(70);
        hub.register(&other, ho, "192.0.2.7".parse().unwrap());
        assert_eq!(
            hub.offer(&other, &victim, "g".into(), payload("p"), at(5)),
            Err(Refused::PeerQueueFull)
        );
    }

    #[test]
    fn a_session_closed_for_not_reading_takes_its_offers_with_it() {
        use crate::proto::key::test_keys::fake_key;
        let mut hub = Hub::new(HubLimits {
            offer_ttl: Duration::from_secs(10),
            max_offers_per_key: 4,
            max_pending_offers: 100,
        });
        let now = Instant::now();
        let (a, b, c) = (fake_key(1), fake_key(2), fake_key(3));
        // A's session takes one frame and never reads.
        let (tx, _never_read) = mpsc::channel(1);
        let handle = SessionHandle {
            id: 1,
            tx,
            kill: Arc::new(Notify::new()),
        };
        hub.register(&a, handle, LOCAL);
        let (hc, _rc) = session(3);
        hub.register(&c, hc, LOCAL);
        hub.offer(&a, &b, "o".into(), payload("p"), now).unwrap();
        // Offers to A fill its queue; the second closes the session.
        hub.offer(&c, &a, "c1".into(), payload("p"), now).unwrap();
        hub.offer(&c, &a, "c2".into(), payload("p"), now).unwrap();
        assert_eq!(hub.sessions(), 1);
        assert_eq!(hub.pending(), 2, "A's own offer went with its session");
        let (hb, _rb) = session(2);
        hub.register(&b, hb, LOCAL);
        assert_eq!(
            hub.answer(&b, &a, "o".into(), payload("x")),
            Err(Refused::NoSuchOffer)
        );
    }
}
