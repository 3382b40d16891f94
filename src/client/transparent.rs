//! Transparent mode: meet a contact through the rendezvous and open a direct WebRTC link.
//!
//! Both sides run the same steps; which one offers is decided by the fingerprints (the lower
//! one offers), so two clients started in any order never both offer. Session descriptions
//! travel sealed and signed with the packet envelope (PROTOCOL.md §2): the rendezvous sees only
//! the two public keys, and a description that does not come from the expected contact, for
//! this offer, is refused.
//!
//! The sealed object (the rendezvous frame's `payload` opens to it):
//!
//! ```text
//! {"sender":"<key>","kind":"offer"|"answer","id":"<the offer's uuid>","sdp":"<SDP>",
//!  "timestamp":"<RFC 3339>","purpose":"call"}
//! ```
//!
//! `purpose` is `"call"` for `jasper call` (audio and a data channel) and absent for a chat
//! (so peers that only chat need not know it). A description for the other purpose is
//! refused: the answering side then answers with its own purpose and an empty `sdp`, which
//! tells the offerer at once why no connection comes ([`TransparentError::OtherPurpose`]).
//! During a call the data channel carries `{"op":"hangup"}` to end it (`client::call`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::now_ms;
use super::rendezvous::{Rendezvous, RendezvousError, unexpected};
use super::rtc::{Link, Negotiation, RtcError, RtcOptions};
use crate::crypto::{Identity, open, seal};
use crate::proto::PublicKey;
use crate::proto::rendezvous::{ClientFrame, SealedPayload, ServerFrame};
use crate::proto::time::{parse_rfc3339_ms, rfc3339_ms};

/// How far a description's timestamp may be from our clock.
const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// Why no direct link was made.
#[derive(Debug, thiserror::Error)]
pub enum TransparentError {
    /// The rendezvous failed.
    #[error(transparent)]
    Rendezvous(#[from] RendezvousError),
    /// WebRTC failed.
    #[error(transparent)]
    Rtc(#[from] RtcError),
    /// The peer did not show up in time.
    #[error("nobody answered within {}", humantime::format_duration(*.0))]
    PeerAbsent(Duration),
    /// The peer's description was refused.
    #[error("refused a session description: {0}")]
    BadDescription(String),
    /// The peer wants the other kind of connection (a call against a chat).
    #[error("{0}")]
    OtherPurpose(String),
}

/// What a direct connection is for; both sides must want the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `jasper chat --transparent`: a data channel.
    Chat,
    /// `jasper call`: a data channel and audio both ways.
    Call,
}

impl Purpose {
    /// The `purpose` a description carries; a chat's leaves it out (as peers that only chat do).
    fn tag(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Call => "call",
        }
    }
}

/// What a transparent connection needs.
#[derive(Debug, Clone)]
pub struct TransparentOptions {
    /// WebRTC settings.
    pub rtc: RtcOptions,
    /// How long to wait for the peer.
    pub wait: Duration,
    /// Time allowed for each network step (TLS, authentication, ICE + DTLS).
    pub step_timeout: Duration,
    /// Chat or call.
    pub purpose: Purpose,
}

/// Whether we make the offer: the lower fingerprint offers.
pub fn we_offer(me: &PublicKey, peer: &PublicKey) -> bool {
    me.fingerprint().to_string() < peer.fingerprint().to_string()
}

fn seal_description(
    me: &Identity,
    peer: &PublicKey,
    purpose: Purpose,
    kind: &str,
    id: &str,
    sdp: &str,
) -> Result<SealedPayload, TransparentError> {
    let mut object = json!({
        "sender": me.public().canonical(),
        "kind": kind,
        "id": id,
        "sdp": sdp,
        "timestamp": rfc3339_ms(now_ms()),
    });
    if purpose != Purpose::Chat {
        object["purpose"] = purpose.tag().into();
    }
    let sealed =
        seal(object.to_string().as_bytes(), me, peer).map_err(TransparentError::BadDescription)?;
    Ok(SealedPayload {
        message: sealed.message,
        signature: sealed.signature,
    })
}

/// Opens a sealed description and checks it is `kind` for offer `id`, signed by `peer`, for
/// `purpose`.
fn open_description(
    me: &Identity,
    peer: &PublicKey,
    purpose: Purpose,
    kind: &str,
    id: &str,
    payload: &SealedPayload,
) -> Result<String, TransparentError> {
    let bad = |m: &str| TransparentError::BadDescription(m.to_owned());
    let opened = open(&payload.message, &payload.signature, me).map_err(|e| bad(&e.to_string()))?;
    if &opened.sender != peer {
        return Err(bad("signed by someone other than the contact"));
    }
    let object: &Value = &opened.object;
    if object["kind"] != kind || object["id"] != id {
        return Err(bad("it belongs to another offer"));
    }
    let stamp = object["timestamp"]
        .as_str()
        .and_then(parse_rfc3339_ms)
        .ok_or_else(|| bad("no timestamp"))?;
    if stamp.abs_diff(now_ms()) > MAX_CLOCK_SKEW_MS {
        return Err(bad(
            "too old (or the clocks differ by more than 10 minutes)",
        ));
    }
    let theirs = object["purpose"].as_str().unwrap_or("chat");
    if theirs != purpose.tag() {
        return Err(match theirs {
            "call" => TransparentError::OtherPurpose(
                "the contact is calling: answer with `jasper call`".to_owned(),
            ),
            "chat" => TransparentError::OtherPurpose(
                "the contact wants to chat: answer with `jasper chat --transparent`".to_owned(),
            ),
            other => bad(&format!("an unknown purpose {other:?}")),
        });
    }
    object["sdp"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("no sdp"))
}

/// Meets `peer` through the authenticated `rendezvous` and opens a direct link.
pub async fn connect(
    rendezvous: &mut Rendezvous,
    me: &Identity,
    peer: &PublicKey,
    options: &TransparentOptions,
) -> Result<Link, TransparentError> {
    let deadline = Instant::now() + options.wait;
    let mut negotiation = Negotiation::new(&options.rtc).await?;
    let result = if we_offer(me.public(), peer) {
        offer(rendezvous, me, peer, &mut negotiation, deadline, options).await
    } else {
        answer(rendezvous, me, peer, &mut negotiation, deadline, options).await
    };
    match result {
        Ok(()) => Ok(negotiation.connect(options.step_timeout).await?),
        Err(e) => {
            negotiation.close().await;
            Err(e)
        }
    }
}

/// How often a waiting client shows the rendezvous it is still there.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The next frame before `deadline`; `Ok(None)` when the deadline passed. A `ping` goes out
/// whenever we have sent nothing for [`KEEPALIVE`] (frames arriving do not count: the server
/// closes a session that sends nothing), so that a long wait does not look idle.
async fn next_frame(
    rendezvous: &mut Rendezvous,
    deadline: Instant,
) -> Result<Option<ServerFrame>, TransparentError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let ping_in = KEEPALIVE.saturating_sub(rendezvous.since_sent());
        if ping_in.is_zero() {
            rendezvous.send(&ClientFrame::Ping).await?;
            continue;
        }
        // (`recv` is cancel-safe: a frame read in part waits for the next call.)
        if let Ok(frame) = tokio::time::timeout(left.min(ping_in), rendezvous.recv()).await {
            return Ok(Some(frame?));
        }
    }
}

/// The least time between two offers of one wait: a server saying `expired` at once, again
/// and again, costs us a signature and an encryption each time.
const MIN_OFFER_GAP: Duration = Duration::from_secs(5);

async fn offer(
    rendezvous: &mut Rendezvous,
    me: &Identity,
    peer: &PublicKey,
    negotiation: &mut Negotiation,
    deadline: Instant,
    options: &TransparentOptions,
) -> Result<(), TransparentError> {
    let sdp = negotiation.offer().await?;
    // An offer the rendezvous lets expire is made again while we still wait.
    loop {
        let offered_at = Instant::now();
        let id = Uuid::new_v4().to_string();
        let payload = seal_description(me, peer, options.purpose, "offer", &id, &sdp)?;
        rendezvous
            .send(&ClientFrame::Offer {
                to: peer.canonical().to_owned(),
                id: id.clone(),
                payload,
            })
            .await?;
        loop {
            let Some(frame) = next_frame(rendezvous, deadline).await? else {
                return Err(TransparentError::PeerAbsent(options.wait));
            };
            match frame {
                ServerFrame::Queued { .. } | ServerFrame::Pong => {}
                ServerFrame::Answer {
                    from,
                    id: answered,
                    payload,
                } if answered == id && PublicKey::parse(&from, 2048).is_ok_and(|k| &k == peer) => {
                    let sdp = open_description(me, peer, options.purpose, "answer", &id, &payload)?;
                    negotiation.accept_answer(sdp).await?;
                    return Ok(());
                }
                ServerFrame::Expired { id: gone } if gone == id => {
                    tracing::debug!("the offer expired unanswered; making a new one");
                    break;
                }
                ServerFrame::Error { error, .. } => {
                    return Err(RendezvousError::Refused(error).into());
                }
                // Offers from others and stale answers are not for this chat.
                ServerFrame::Offer { .. } | ServerFrame::Answer { .. } => {}
                other => return Err(unexpected(&other).into()),
            }
        }
        let next = (offered_at + MIN_OFFER_GAP).min(deadline);
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= deadline {
            return Err(TransparentError::PeerAbsent(options.wait));
        }
    }
}

/// Answers offer `id` from `peer` with `sdp` (empty: a refusal that carries our purpose).
async fn send_answer(
    rendezvous: &mut Rendezvous,
    me: &Identity,
    peer: &PublicKey,
    purpose: Purpose,
    id: String,
    sdp: &str,
) -> Result<(), TransparentError> {
    let payload = seal_description(me, peer, purpose, "answer", &id, sdp)?;
    rendezvous
        .send(&ClientFrame::Answer {
            to: peer.canonical().to_owned(),
            id,
            payload,
        })
        .await?;
    Ok(())
}

async fn answer(
    rendezvous: &mut Rendezvous,
    me: &Identity,
    peer: &PublicKey,
    negotiation: &mut Negotiation,
    deadline: Instant,
    options: &TransparentOptions,
) -> Result<(), TransparentError> {
    loop {
        let Some(frame) = next_frame(rendezvous, deadline).await? else {
            return Err(TransparentError::PeerAbsent(options.wait));
        };
        match frame {
            ServerFrame::Offer { from, id, payload }
                if PublicKey::parse(&from, 2048).is_ok_and(|k| &k == peer) =>
            {
                let sdp = match open_description(me, peer, options.purpose, "offer", &id, &payload)
                {
                    Ok(sdp) => sdp,
                    Err(TransparentError::OtherPurpose(why)) => {
                        // Tell the offerer at once (an answer without a session, carrying our
                        // purpose), and wait on in case the contact comes back the right way.
                        tracing::warn!("ignored an offer: {why}");
                        send_answer(rendezvous, me, peer, options.purpose, id, "").await?;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignored an offer");
                        continue;
                    }
                };
                let answer = negotiation.answer(sdp).await?;
                send_answer(rendezvous, me, peer, options.purpose, id, &answer).await?;
                return Ok(());
            }
            ServerFrame::Error { error, .. } => {
                return Err(RendezvousError::Refused(error).into());
            }
            ServerFrame::Offer { .. }
            | ServerFrame::Pong
            | ServerFrame::Queued { .. }
            | ServerFrame::Expired { .. }
            | ServerFrame::Answer { .. } => {}
            other => return Err(unexpected(&other).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;

    #[test]
    fn exactly_one_side_offers() {
        let (a, b) = (fixture("alice"), fixture("bob"));
        assert_ne!(
            we_offer(a.public(), b.public()),
            we_offer(b.public(), a.public())
        );
    }

    #[test]
    fn descriptions_are_bound_to_their_sender_kind_and_offer() {
        let (alice, bob, carol) = (fixture("alice"), fixture("bob"), fixture("carol"));
        let sealed =
            seal_description(&alice, bob.public(), Purpose::Chat, "offer", "id-1", "v=0").unwrap();
        assert_eq!(
            open_description(
                &bob,
                alice.public(),
                Purpose::Chat,
                "offer",
                "id-1",
                &sealed
            )
            .unwrap(),
            "v=0"
        );
        for (who, kind, id) in [
            (carol.public(), "offer", "id-1"),
            (alice.public(), "answer", "id-1"),
            (alice.public(), "offer", "id-2"),
        ] {
            assert!(open_description(&bob, who, Purpose::Chat, kind, id, &sealed).is_err());
        }
        // Only the intended peer can open it.
        assert!(
            open_description(
                &carol,
                alice.public(),
                Purpose::Chat,
                "offer",
                "id-1",
                &sealed
            )
            .is_err()
        );
    }

    #[test]
    fn a_call_and_a_chat_do_not_connect_and_each_says_what_the_other_wants() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let call =
            seal_description(&alice, bob.public(), Purpose::Call, "offer", "id-1", "v=0").unwrap();
        let chat =
            seal_description(&alice, bob.public(), Purpose::Chat, "offer", "id-1", "v=0").unwrap();
        let open = |purpose, sealed| {
            open_description(&bob, alice.public(), purpose, "offer", "id-1", sealed)
        };
        assert_eq!(open(Purpose::Call, &call).unwrap(), "v=0");
        let err = open(Purpose::Chat, &call).unwrap_err();
        assert!(matches!(err, TransparentError::OtherPurpose(_)), "{err}");
        assert!(
            err.to_string().contains("answer with `jasper call`"),
            "{err}"
        );
        let err = open(Purpose::Call, &chat).unwrap_err();
        assert!(matches!(err, TransparentError::OtherPurpose(_)), "{err}");
        assert!(
            err.to_string().contains("`jasper chat --transparent`"),
            "{err}"
        );
    }
}
