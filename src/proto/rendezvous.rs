//! The rendezvous protocol of transparent mode: how two clients who accept being seen by a STUN
//! owner find each other and swap their WebRTC session descriptions.
//!
//! It runs on the STUN service's TLS listener (`[stun] tls_listen`, RFC 7064 `stuns:`), beside
//! STUN Binding requests on the same stream. The stream carries two kinds of frame, told apart by
//! their first byte:
//! - a STUN message (RFC 8489 §6.2.2 framing over TCP: the first two bits are zero), and
//! - a rendezvous frame: one JSON object on one line ending in `\n` (its first byte is `{`), at
//!   most [`MAX_FRAME_BYTES`] including the newline.
//!
//! A session, each line one frame (C: client, S: server):
//! ```text
//! C {"op":"hello","key":"<base64 DER SPKI>"}
//! S {"op":"challenge","nonce":"<base64url 32 random bytes>"}
//! C {"op":"auth","signature":"<base64url RSASSA-PSS-SHA256 over auth_input(nonce, cert)>"}
//! S {"op":"ready","fingerprint":"<the client's key fingerprint>"}
//! C {"op":"offer","to":"<peer key>","id":"<uuid>","payload":{"message":"..","signature":".."}}
//! S {"op":"queued","id":"<uuid>"}
//!      ... the peer, once authenticated, receives
//!      {"op":"offer","from":"<our key>","id":"<uuid>","payload":{..}}
//!      and answers with {"op":"answer","to":"<our key>","id":"<uuid>","payload":{..}}, which
//!      reaches us as
//! S {"op":"answer","from":"<peer key>","id":"<uuid>","payload":{..}}
//! S {"op":"expired","id":"<uuid>"}      (instead, when nobody answered within the offer TTL)
//! ```
//! `payload` is a Jasper packet's `message` and `signature` (PROTOCOL.md §2) sealed by the
//! sender to the peer: the SDP is end-to-end encrypted and signed, so the STUN owner sees only
//! the two public keys and sizes. The server checks that the client holds its key (the signed
//! challenge is bound to the server's certificate, so it cannot be replayed to another server),
//! that an answer matches an offer made to the answering key, and every size and count.
//! A frame the server cannot accept gets `{"op":"error","error":"..."}`; one that breaks the
//! protocol (not JSON, oversized, anything before `auth`) also closes the stream.
//!
//! The server's rules, in detail (src/stun/rendezvous.rs and src/stun/conn.rs):
//! - Before `ready` only `hello` (once) and `auth` (once, after `challenge`) are accepted;
//!   anything else, `ping` included, gets an error and closes. A `hello` whose key does not
//!   parse (under 2048 bits included) and an `auth` that does not verify close too, as does a
//!   second `hello` or `auth` after `ready`. STUN Binding requests are answered at any time.
//! - A connection that has not authenticated within `[stun] handshake_timeout` (counted from
//!   the TCP accept) is closed, so STUN-only clients should ask and go; an authenticated one
//!   is closed after `[stun] idle_timeout` without a frame from the client (send `ping`).
//! - `offer`: `id` must be a hyphenated UUID, `to` a key other than the sender's. Refusals are
//!   `error` frames carrying the offer's `id` and leave the session open: duplicate id, the
//!   peer's queue full (`max_offers_per_key` offers waiting for one key), the sender's own
//!   offers full (the same bound on offers waiting from one key), its network's full (four
//!   times that from one IPv4 address or IPv6 /48), the server full (`max_pending_offers`).
//!   A peer's full queue makes room for an offer from a network holding at least two fewer
//!   of its offers than another: that network's oldest offer goes, and its offerer gets
//!   `expired`.
//! - An offer waits until answered or `offer_ttl`; it is delivered as soon as its peer has a
//!   session, and again to each newer session of that key while unanswered.
//! - `answer` is accepted only for an offer still waiting that was made to the answering key by
//!   the key in `to`, and only while that offerer has a session; success sends nothing back
//!   to the answerer (the `answer` reaches the offerer), failure is an `error` with the `id`.
//! - One session per key receives: when a key authenticates again the newest session takes
//!   over and the older one gets an `error` (no `id`) and receives nothing more.
//! - A session that does not read what it is sent is closed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest rendezvous frame, newline included.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Bytes of the random challenge.
pub const NONCE_BYTES: usize = 32;

/// Domain separation for the challenge signature.
const AUTH_CONTEXT: &[u8] = b"jasper/v1 rendezvous\n";

/// What the client signs to prove it holds its key: the context, the nonce, and the SHA-256 of
/// the server's TLS certificate (DER), so a signature made for one server is useless elsewhere.
pub fn auth_input(nonce: &[u8], server_certificate_der: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(AUTH_CONTEXT.len() + nonce.len() + 32);
    input.extend_from_slice(AUTH_CONTEXT);
    input.extend_from_slice(nonce);
    input.extend_from_slice(&Sha256::digest(server_certificate_der));
    input
}

/// A sealed session description: the two JWE fields of a Jasper packet (PROTOCOL.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPayload {
    /// The JWE encrypted to the peer.
    pub message: String,
    /// The encrypted detached signature.
    pub signature: String,
}

/// A frame from a client to the rendezvous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Names the key the client will prove it holds.
    Hello {
        /// The client's public key, base64 DER SPKI.
        key: String,
    },
    /// The signature over [`auth_input`].
    Auth {
        /// base64url (no padding) RSASSA-PSS SHA-256 signature.
        signature: String,
    },
    /// An offer for a peer's key.
    Offer {
        /// The peer's public key.
        to: String,
        /// A fresh UUID naming this offer.
        id: String,
        /// The sealed SDP offer.
        payload: SealedPayload,
    },
    /// The answer to an offer this client received.
    Answer {
        /// The offerer's public key.
        to: String,
        /// The offer's id.
        id: String,
        /// The sealed SDP answer.
        payload: SealedPayload,
    },
    /// Keeps the stream alive; answered by `pong`.
    Ping,
}

/// A frame from the rendezvous to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// The challenge to sign.
    Challenge {
        /// base64url (no padding) of [`NONCE_BYTES`] random bytes.
        nonce: String,
    },
    /// The client is authenticated; offers and answers for its key now reach it.
    Ready {
        /// The fingerprint of the authenticated key.
        fingerprint: String,
    },
    /// An offer was accepted and waits for the peer.
    Queued {
        /// The offer's id.
        id: String,
    },
    /// An offer for this client.
    Offer {
        /// The offerer's public key.
        from: String,
        /// The offer's id, to answer with.
        id: String,
        /// The sealed SDP offer.
        payload: SealedPayload,
    },
    /// The answer to this client's offer.
    Answer {
        /// The answerer's public key.
        from: String,
        /// The offer's id.
        id: String,
        /// The sealed SDP answer.
        payload: SealedPayload,
    },
    /// This client's offer was not answered in time and is gone.
    Expired {
        /// The offer's id.
        id: String,
    },
    /// The answer to `ping`.
    Pong,
    /// Something was refused.
    Error {
        /// What was wrong.
        error: String,
        /// The offer it concerns, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl ClientFrame {
    /// The frame as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("frames serialize");
        line.push('\n');
        line
    }
}

impl ServerFrame {
    /// The frame as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("frames serialize");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let hello = ClientFrame::Hello { key: "AAAA".into() };
        assert_eq!(hello.to_line(), "{\"op\":\"hello\",\"key\":\"AAAA\"}\n");
        let parsed: ClientFrame = serde_json::from_str(r#"{"op":"ping"}"#).unwrap();
        assert_eq!(parsed, ClientFrame::Ping);
        let err = ServerFrame::Error {
            error: "no".into(),
            id: None,
        };
        assert_eq!(err.to_line(), "{\"op\":\"error\",\"error\":\"no\"}\n");
        assert!(serde_json::from_str::<ClientFrame>(r#"{"op":"hello"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"op":"hello","key":"a","x":1}"#).is_err());
    }

    #[test]
    fn the_auth_input_binds_the_nonce_and_the_certificate() {
        let a = auth_input(b"n1", b"cert-a");
        assert_ne!(a, auth_input(b"n2", b"cert-a"));
        assert_ne!(a, auth_input(b"n1", b"cert-b"));
        assert!(a.starts_with(AUTH_CONTEXT));
    }
}
