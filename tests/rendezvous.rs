//! The rendezvous of transparent mode over real TLS (src/proto/rendezvous.rs is the
//! protocol): clients prove they hold their key, swap an offer and an answer, and the server
//! refuses what does not belong: bad or replayed signatures, answers to offers never made,
//! full queues; unanswered offers expire.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::stun::{StunServer, TlsClient};
use jasper::crypto::Identity;
use jasper::crypto::challenge::sign;
use jasper::crypto::jose::unb64;
use jasper::proto::rendezvous::auth_input;
use serde_json::{Value, json};

fn identity(name: &str) -> Identity {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(format!("{name}-4096.key.pem"));
    Identity::from_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
}

fn key(who: &Identity) -> String {
    who.public().canonical().to_owned()
}

/// Connects and sends hello; returns the client and the challenge nonce.
fn hello(server: &StunServer, who: &Identity) -> (TlsClient, Vec<u8>) {
    let mut c = TlsClient::connect(server.tls, &server.printed_fingerprint);
    c.send(&json!({"op": "hello", "key": key(who)}));
    let challenge = c.recv().expect("a challenge");
    assert_eq!(challenge["op"], "challenge", "{challenge}");
    let nonce = unb64(challenge["nonce"].as_str().unwrap()).expect("base64url nonce");
    assert_eq!(nonce.len(), 32);
    (c, nonce)
}

/// A client that has authenticated as `who`.
fn session(server: &StunServer, who: &Identity) -> TlsClient {
    let (mut c, nonce) = hello(server, who);
    let signature = sign(who, &auth_input(&nonce, &c.certificate));
    c.send(&json!({"op": "auth", "signature": signature}));
    let ready = c.recv().expect("ready");
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(ready["fingerprint"], who.public().fingerprint().to_string());
    c
}

fn payload(text: &str) -> Value {
    json!({"message": format!("jwe-{text}"), "signature": format!("sig-{text}")})
}

fn offer(c: &mut TlsClient, to: &Identity, id: &str, text: &str) -> Value {
    c.send(&json!({"op": "offer", "to": key(to), "id": id, "payload": payload(text)}));
    c.recv().expect("an answer to the offer")
}

const ID1: &str = "6f1c0a52-3c1e-4d8e-9a55-0b7f3b1d2e01";
const ID2: &str = "6f1c0a52-3c1e-4d8e-9a55-0b7f3b1d2e02";
const ID3: &str = "6f1c0a52-3c1e-4d8e-9a55-0b7f3b1d2e03";

#[test]
fn two_clients_swap_an_offer_and_an_answer() {
    let server = StunServer::start("");
    let (alice, bob) = (identity("alice"), identity("bob"));
    let mut a = session(&server, &alice);
    let mut b = session(&server, &bob);
    let queued = offer(&mut a, &bob, ID1, "offer");
    assert_eq!(queued, json!({"op": "queued", "id": ID1}));
    let got = b.recv().expect("bob gets the offer");
    assert_eq!(
        got,
        json!({"op": "offer", "from": key(&alice), "id": ID1, "payload": payload("offer")})
    );
    b.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("answer")}));
    let got = a.recv().expect("alice gets the answer");
    assert_eq!(
        got,
        json!({"op": "answer", "from": key(&bob), "id": ID1, "payload": payload("answer")})
    );
    // Pings keep the session alive.
    a.send(&json!({"op": "ping"}));
    assert_eq!(a.recv().unwrap(), json!({"op": "pong"}));
    // Neither keys nor addresses are in the log at the default level.
    let log = server.log();
    assert!(!log.contains(&key(&alice)[..40]), "{log}");
    assert!(
        !log.contains(&alice.public().fingerprint().to_string()[..16]),
        "{log}"
    );
    assert!(!log.contains(&a.local_addr().port().to_string()), "{log}");
}

#[test]
fn offers_queued_before_the_peer_connects_are_delivered_when_it_authenticates() {
    let server = StunServer::start("");
    let (alice, bob) = (identity("alice"), identity("bob"));
    let mut a = session(&server, &alice);
    assert_eq!(offer(&mut a, &bob, ID1, "early")["op"], "queued");
    assert_eq!(offer(&mut a, &bob, ID2, "early2")["op"], "queued");
    let mut b = session(&server, &bob);
    let mut ids = vec![
        b.recv().expect("first offer")["id"].clone(),
        b.recv().expect("second offer")["id"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![json!(ID1), json!(ID2)]);
}

#[test]
fn a_wrong_signature_is_refused() {
    let server = StunServer::start("");
    let (alice, bob) = (identity("alice"), identity("bob"));
    // Signed by another key.
    let (mut c, nonce) = hello(&server, &alice);
    let signature = sign(&bob, &auth_input(&nonce, &c.certificate));
    c.send(&json!({"op": "auth", "signature": signature}));
    let e = c.recv().expect("an error");
    assert_eq!(e["op"], "error", "{e}");
    assert!(c.closed());
    // Over another nonce.
    let (mut c, _) = hello(&server, &alice);
    let signature = sign(&alice, &auth_input(&[0u8; 32], &c.certificate));
    c.send(&json!({"op": "auth", "signature": signature}));
    assert_eq!(c.recv().expect("an error")["op"], "error");
    assert!(c.closed());
    // Not even base64.
    let (mut c, _) = hello(&server, &alice);
    c.send(&json!({"op": "auth", "signature": "!!"}));
    assert_eq!(c.recv().expect("an error")["op"], "error");
    assert!(c.closed());
}

#[test]
fn a_signature_bound_to_another_certificate_is_refused() {
    // A man in the middle with its own certificate relays the challenge: the client's
    // signature names that certificate, so it is worthless at the real server.
    let server = StunServer::start("");
    let alice = identity("alice");
    let (mut c, nonce) = hello(&server, &alice);
    let other = rcgen::generate_simple_self_signed(vec!["mitm.example".to_owned()]).unwrap();
    let signature = sign(&alice, &auth_input(&nonce, other.cert.der()));
    c.send(&json!({"op": "auth", "signature": signature}));
    let e = c.recv().expect("an error");
    assert_eq!(e["op"], "error", "{e}");
    assert!(c.closed());
}

#[test]
fn a_bad_hello_is_refused() {
    let server = StunServer::start("");
    let mut c = TlsClient::connect(server.tls, &server.printed_fingerprint);
    c.send(&json!({"op": "hello", "key": "bm90IGEga2V5"}));
    let e = c.recv().expect("an error");
    assert_eq!(e["op"], "error", "{e}");
    assert!(c.closed());
    // A 1024-bit key is never accepted.
    let tiny = common::key_b64("tiny-1024");
    let mut c = TlsClient::connect(server.tls, &server.printed_fingerprint);
    c.send(&json!({"op": "hello", "key": tiny}));
    assert_eq!(c.recv().expect("an error")["op"], "error");
    assert!(c.closed());
}

#[test]
fn an_answer_without_a_matching_offer_is_refused() {
    let server = StunServer::start("");
    let (alice, bob, carol) = (identity("alice"), identity("bob"), identity("carol"));
    let mut a = session(&server, &alice);
    let mut b = session(&server, &bob);
    let mut c = session(&server, &carol);
    // Nothing was offered.
    b.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("x")}));
    let e = b.recv().expect("an error");
    assert_eq!(e["op"], "error", "{e}");
    assert_eq!(e["id"], ID1);
    // Alice offers to Bob; Carol cannot answer it, nor can Bob answer it as from Carol.
    assert_eq!(offer(&mut a, &bob, ID1, "o")["op"], "queued");
    assert_eq!(b.recv().unwrap()["op"], "offer");
    c.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("x")}));
    assert_eq!(c.recv().expect("an error")["op"], "error");
    b.send(&json!({"op": "answer", "to": key(&carol), "id": ID1, "payload": payload("x")}));
    assert_eq!(b.recv().expect("an error")["op"], "error");
    // The right answer still goes through, once.
    b.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("ok")}));
    let got = a.recv().expect("the answer");
    assert_eq!(got["op"], "answer");
    assert_eq!(got["payload"], payload("ok"));
    b.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("ok")}));
    assert_eq!(b.recv().expect("an error")["op"], "error");
}

#[test]
fn the_queue_for_one_key_is_bounded() {
    let server = StunServer::start("max_offers_per_key = 2");
    let (alice, bob, carol) = (identity("alice"), identity("bob"), identity("carol"));
    let mut a = session(&server, &alice);
    let mut c = session(&server, &carol);
    assert_eq!(offer(&mut a, &bob, ID1, "1")["op"], "queued");
    assert_eq!(offer(&mut c, &bob, ID2, "2")["op"], "queued");
    let e = offer(&mut a, &bob, ID3, "3");
    assert_eq!(e["op"], "error", "{e}");
    assert_eq!(e["id"], ID3);
    // Offers that are not UUIDs or not to a key are refused too, and the session goes on.
    let e = offer(&mut a, &carol, "not-a-uuid", "x");
    assert_eq!(e["op"], "error", "{e}");
    a.send(&json!({"op": "offer", "to": "nobody", "id": ID3, "payload": payload("x")}));
    assert_eq!(a.recv().unwrap()["op"], "error");
    a.send(&json!({"op": "ping"}));
    assert_eq!(a.recv().unwrap()["op"], "pong");
}

#[test]
fn an_offer_for_a_key_that_never_answers_expires() {
    let server = StunServer::start("offer_ttl = \"1s\"");
    let (alice, bob) = (identity("alice"), identity("bob"));
    let mut a = session(&server, &alice);
    let started = Instant::now();
    assert_eq!(offer(&mut a, &bob, ID1, "lonely")["op"], "queued");
    a.set_timeout(Duration::from_secs(10));
    let expired = a.recv().expect("expired");
    assert_eq!(expired, json!({"op": "expired", "id": ID1}));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Bob, arriving late, gets nothing, and answering is refused.
    let mut b = session(&server, &bob);
    b.send(&json!({"op": "answer", "to": key(&alice), "id": ID1, "payload": payload("late")}));
    assert_eq!(b.recv().expect("an error")["op"], "error");
}

#[test]
fn frames_after_auth_that_break_the_protocol_close_the_session() {
    let server = StunServer::start("");
    let alice = identity("alice");
    let mut a = session(&server, &alice);
    a.send(&json!({"op": "hello", "key": key(&alice)}));
    assert_eq!(a.recv().expect("an error")["op"], "error");
    assert!(a.closed());
    let mut a = session(&server, &alice);
    a.send(&json!({"op": "offer", "unexpected": true}));
    assert_eq!(a.recv().expect("an error")["op"], "error");
    assert!(a.closed());
}
