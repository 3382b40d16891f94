//! The rendezvous hub (src/proto/rendezvous.rs is the protocol): authenticated sessions by
//! key, offers waiting for their peer, answers routed back, expiry. It holds no sockets: each
//! session is a channel of outgoing lines and a switch that closes it, and the clock is passed
//! in. The STUN owner learns only the two keys of an offer and its sizes; the payloads are
//! sealed end to end.
//!
//! Rules:
//! - One session per key receives: when a key authenticates again, the newest session takes
//!   over, the older one is told so (an `error` frame) and stays open but receives nothing.
//!   Offers not yet answered are delivered again to a new session of their key.
//! - Offers wait at most `offer_ttl`; then they are dropped and the offerer, when connected,
//!   gets `expired`. At most `max_offers_per_key` offers wait for one key, and at most as many
//!   from one key; at most `max_pending_offers` in all.
//! - An answer is accepted only for an offer made to the answering key by the key it names in
//!   `to`, and only while that offerer is connected; it ends the offer.
//! - A session that does not read what it is sent (its queue is full) is closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use crate::proto::rendezvous::{SealedPayload, ServerFrame};
use crate::proto::{Fingerprint, PublicKey};

/// Frames a session may have waiting to be written before it counts as not reading.
pub const SESSION_QUEUE: usize = 256;

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
    /// The offerer has too many offers waiting.
    #[error("too many of your offers are waiting; wait for answers or expiry")]
    OwnQueueFull,
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
    payload: SealedPayload,
    expires: Instant,
    delivered_to: Option<u64>,
}

struct Session {
    handle: SessionHandle,
}

/// The hub's state; the service keeps it behind a mutex and never awaits while holding it.
pub struct Hub {
    limits: HubLimits,
    sessions: HashMap<Fingerprint, Session>,
    offers: HashMap<OfferKey, Offer>,
    waiting_for: HashMap<Fingerprint, usize>,
    waiting_from: HashMap<Fingerprint, usize>,
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

    /// Makes `handle` the receiving session of `key` and delivers the offers waiting for it.
    /// The caller has already queued `ready` on the handle.
    pub fn register(&mut self, key: &PublicKey, handle: SessionHandle) {
        let fp = key.fingerprint();
        let id = handle.id;
        if let Some(old) = self.sessions.insert(fp, Session { handle }) {
            tracing::debug!(key = %fp.short(), "a newer session of this key takes over");
            let frame = ServerFrame::Error {
                error: "another session authenticated with this key; this one no longer receives offers"
                    .into(),
                id: None,
            };
            let _ = old.handle.tx.try_send(frame.to_line().into_bytes());
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

    /// Forgets session `id` of `key` when it is still the receiving one.
    pub fn unregister(&mut self, key: &PublicKey, id: u64) {
        let fp = key.fingerprint();
        if self.sessions.get(&fp).is_some_and(|s| s.handle.id == id) {
            self.sessions.remove(&fp);
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
        let key = OfferKey {
            from: from_fp,
            to: to_fp,
            id,
        };
        if self.offers.contains_key(&key) {
            return Err(Refused::Duplicate);
        }
        let max = self.limits.max_offers_per_key;
        if self.waiting_for.get(&to_fp).copied().unwrap_or(0) >= max {
            return Err(Refused::PeerQueueFull);
        }
        if self.waiting_from.get(&from_fp).copied().unwrap_or(0) >= max {
            return Err(Refused::OwnQueueFull);
        }
        if self.offers.len() >= self.limits.max_pending_offers {
            return Err(Refused::HubFull);
        }
        let delivered_to = self.sessions.get(&to_fp).map(|s| s.handle.id);
        let frame = delivered_to.map(|_| ServerFrame::Offer {
            from: from.canonical().to_owned(),
            id: key.id.clone(),
            payload: payload.clone(),
        });
        *self.waiting_for.entry(to_fp).or_default() += 1;
        *self.waiting_from.entry(from_fp).or_default() += 1;
        self.offers.insert(
            key,
            Offer {
                from_key: from.canonical().to_owned(),
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

    fn remove(&mut self, key: &OfferKey) {
        if self.offers.remove(key).is_none() {
            return;
        }
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
            self.sessions.remove(&fp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;

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
        hub.register(a, ha);
        hub.offer(a, b, "o1".into(), payload("sdp"), now).unwrap();
        assert_eq!(hub.pending(), 1);
        let (hb, mut rb) = session(2);
        hub.register(b, hb);
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
        hub.register(a, ha);
        assert_eq!(
            hub.offer(a, a, "x".into(), payload("p"), now),
            Err(Refused::ToSelf)
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
    fn the_newest_session_of_a_key_receives() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let (a, b) = (alice.public(), bob.public());
        let mut hub = Hub::new(limits());
        let now = Instant::now();
        let (h1, mut r1) = session(1);
        hub.register(b, h1);
        hub.offer(a, b, "o".into(), payload("p"), now).unwrap();
        assert_eq!(frames(&mut r1).len(), 1);
        let (h2, mut r2) = session(2);
        hub.register(b, h2);
        assert!(matches!(
            frames(&mut r1).as_slice(),
            [ServerFrame::Error { .. }]
        ));
        assert_eq!(
            frames(&mut r2).len(),
            1,
            "the waiting offer is delivered again"
        );
        hub.unregister(b, 1);
        assert_eq!(
            hub.sessions(),
            1,
            "an old session leaving does not unseat the new"
        );
        assert_eq!(
            hub.answer(b, a, "o".into(), payload("p")),
            Err(Refused::OffererGone)
        );
    }
}
