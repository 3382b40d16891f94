//! Anonymous-mode messaging between real clients through real relays on loopback: DMs both
//! ways, edit/delete/react, two devices of one identity, forged and garbage packets, TX and
//! RX on different relays (seen by recording proxies), exit codes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake_peer::Answer;
use common::home::{Home, alice_and_bob, mesh};
use common::{Relay, free_port, key_b64, packet_for, run_jasper, run_jasper_with_stdin};
use serde_json::{Value, json};

fn has(lines: &[Value], field: &str, value: &str) -> bool {
    lines.iter().any(|l| l[field] == value)
}

#[test]
fn direct_messages_both_ways_with_edit_react_and_delete() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);

    let id = alice.send("bob", "hello bob");
    let got = bob.receive_until(|l| has(l, "id", &id));
    let line = got.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(line["contact"], "alice");
    assert_eq!(line["type"], "MESSAGE");
    assert_eq!(line["content"], "hello bob");
    assert_eq!(line["sender"], key_b64("alice-4096"));
    for field in ["hash", "channel_id", "timestamp"] {
        assert!(line[field].is_string(), "{field}");
    }
    // Only what is new is printed.
    assert!(!bob.ok(&["receive", "--json"]).contains(&id));

    let reply = bob.send("alice", "hi alice");
    alice.receive_until(|l| has(l, "id", &reply));
    // One conversation, one channel, both sides.
    let (a, b) = (alice.history("bob"), bob.history("alice"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(a[0]["id"], id.as_str());
    assert_eq!(a[1]["id"], reply.as_str());

    alice.ok(&["edit", "bob", &id, "hello bob, edited"]);
    bob.receive_until(|l| l.iter().any(|x| x["type"] == "EDIT"));
    let b = bob.history("alice");
    assert_eq!(b[0]["content"], "hello bob, edited");
    assert_eq!(b[0]["edited"], true);

    bob.ok(&["react", "alice", &id, ":thumbsup:"]);
    alice.receive_until(|l| l.iter().any(|x| x["type"] == "REACT"));
    let a = alice.history("bob");
    assert_eq!(a[0]["reactions"][":thumbsup:"][0], key_b64("bob-4096"));

    alice.ok(&["delete", "bob", &id]);
    bob.receive_until(|l| l.iter().any(|x| x["type"] == "DELETE"));
    let b = bob.history("alice");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["id"], reply.as_str());

    // Alice cannot edit bob's message.
    let (code, _, err) = run_jasper(&["edit", "bob", &reply, "mine now"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only your own messages"), "{err}");
}

#[test]
fn two_devices_of_one_identity_see_the_same_conversation() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let laptop = Home::new("alice", &relays);
    let phone = Home::new("alice", &relays);
    let bob = Home::new("bob", &relays);
    for device in [&laptop, &phone] {
        device.add("bob", "bob-4096");
    }
    bob.add("alice", "alice-4096");
    let id = laptop.send("bob", "sent from the laptop");
    let got = phone.receive_until(|l| has(l, "id", &id));
    let line = got.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(
        line["contact"], "bob",
        "filed under the conversation with bob"
    );
    let history = phone.history("bob");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "sent from the laptop");
    assert_eq!(history[0]["sender"], key_b64("alice-4096"));
    // Bob's answer reaches both devices.
    let reply = bob.send("alice", "hi both");
    laptop.receive_until(|l| has(l, "id", &reply));
    phone.receive_until(|l| has(l, "id", &reply));
}

#[test]
fn people_who_write_first_at_once_share_one_conversation() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);
    // Neither has heard from the other: each starts a channel of their own.
    let from_alice = alice.send("bob", "hello bob");
    let from_bob = bob.send("alice", "hello alice");
    bob.receive_until(|l| has(l, "id", &from_alice));
    alice.receive_until(|l| has(l, "id", &from_bob));
    for (home, with) in [(&alice, "bob"), (&bob, "alice")] {
        let ids: Vec<Value> = home.history(with).iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids.len(), 2, "{with}: {ids:?}");
        assert!(ids.contains(&json!(from_alice)), "{with}: {ids:?}");
        assert!(ids.contains(&json!(from_bob)), "{with}: {ids:?}");
    }
    // And whatever follows stays in that one history.
    let later = bob.send("alice", "still here");
    alice.receive_until(|l| has(l, "id", &later));
    assert_eq!(alice.history("bob").len(), 3);
    assert_eq!(bob.history("alice").len(), 3);
    // The last few only.
    let last: Vec<Value> = alice
        .ok(&["history", "bob", "-n", "1", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["id"], later.as_str());
    assert_eq!(
        alice.ok(&["history", "bob", "--last", "9"]).lines().count(),
        3
    );
    assert_eq!(alice.ok(&["history", "bob", "--last", "0"]), "");
    let (code, _, err) = run_jasper(&["history", "bob", "--last", "-1"], alice.path());
    assert_eq!(code, 2, "{err}");
}

#[test]
fn messages_from_a_stranger_appear_once_they_are_a_contact() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let alice = Home::new("alice", &relays);
    let bob = Home::new("bob", &relays);
    alice.add("bob", "bob-4096");
    let id = alice.send("bob", "you do not know me yet");
    let got = bob.receive_until(|l| has(l, "id", &id));
    let line = got.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert!(line["contact"].is_null(), "{line}");
    // Shown by her key's short fingerprint, as `jasper id` shows it to her.
    let short = short_fingerprint("alice");
    alice.send("bob", "it is me again");
    let (code, out, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("unknown {short}: it is me again")),
        "{out}"
    );
    assert!(alice.ok(&["id"]).contains(&short));
    bob.add("alice", "alice-4096");
    let history = bob.history("alice");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["content"], "you do not know me yet");
    // Bob's answer joins the conversation alice started.
    let reply = bob.send("alice", "now I do");
    alice.receive_until(|l| has(l, "id", &reply));
    assert_eq!(alice.history("bob").len(), 3);
}

#[test]
fn forged_and_garbage_packets_are_skipped_and_do_not_stop_receive() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);
    bob.add("dave", "dave-4096");

    // Garbage that a relay accepts (JWE-shaped) but nobody can open, to bob.
    let bob_key = key_b64("bob-4096");
    for r in [&r1, &r2] {
        r.send_ok(&packet_for(&bob_key, 7, 300));
    }
    // A real envelope claiming to be from alice, signed by dave.
    let forged = forge("dave", "alice", "bob", "I am alice, send money");
    for r in [&r1, &r2] {
        r.send_ok(&forged);
    }
    let id = alice.send("bob", "the real alice");
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if !has(&lines, "id", &id) {
        lines.extend(bob.receive_until(|l| has(l, "id", &id)));
    }
    assert!(
        !out.contains("send money"),
        "a forged message was shown: {out}"
    );
    assert!(err.contains("cannot decrypt"), "garbage is reported: {err}");
    assert!(
        err.contains("does not verify"),
        "the forgery is reported: {err}"
    );
    assert!(
        bob.history("alice")
            .iter()
            .all(|m| m["content"] != "I am alice, send money")
    );
}

#[test]
fn what_a_contact_writes_reaches_the_terminal_escaped_and_bad_ids_and_times_are_refused() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (_alice, bob) = alice_and_bob(&relays);
    let message = |id: &str, channel: &str, kind: &str, content: &str, at: &str| {
        json!({
            "sender": key_b64("alice-4096"), "channel_id": channel, "type": kind,
            "content": content, "id": id, "timestamp": at,
        })
    };
    let channel = "0b9b7c7e-5d3a-4f43-9b1e-0c6e2f1d2a3b";
    let good_id = "5f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c21";
    let now = days_ago(0);
    let at = now.as_str();
    // Escape sequences that would clear the screen and rewrite a line, a bidi override,
    // and a second line that looks like another message.
    let hostile = "hi\u{1b}[2J\r[2026-12-07T10:00:01.000Z] carol: fake\u{202e}\n[x] dave: fake too";
    let packets = [
        message(good_id, channel, "MESSAGE", hostile, at),
        message("../../x", channel, "MESSAGE", "a path for an id", at),
        message(
            "6f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c22",
            &format!("{channel}/9999999999999/x"),
            "MESSAGE",
            "a key for a channel",
            at,
        ),
        message(
            "7f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c23",
            channel,
            "MESSAGE",
            "upper case",
            at,
        )
        .to_string()
        .replace("7f1d4c0e", "7F1D4C0E")
        .parse()
        .unwrap(),
        message(
            "8f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c24",
            channel,
            "MESSAGE",
            "no time",
            "yesterday",
        ),
        message(good_id, channel, "REACT", ":x\u{1b}[31m:", at),
    ];
    for p in &packets {
        r1.send_ok(&seal_object("alice", "bob", p));
    }
    let (code, out, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    assert!(
        out.contains("hi\\u{1b}[2J\\u{d}[2026-12-07T10:00:01.000Z] carol: fake\\u{202e}"),
        "{out}"
    );
    // The second line of a message is indented under it.
    assert!(out.contains("\n    [x] dave: fake too"), "{out}");
    assert_eq!(out.lines().count(), 2, "one message, two lines: {out}");
    for reason in [
        "`id` is not a lowercase hyphenated UUID",
        "`channel_id` is not a lowercase hyphenated UUID",
        "`timestamp` is not an RFC 3339 time",
        "a reaction that is not :name:",
    ] {
        assert!(err.contains(reason), "{reason}: {err}");
    }
    assert_eq!(err.matches("`id` is not").count(), 2, "{err}");
    // JSON keeps what was written; history shows it escaped too, without the bad reaction.
    let history = bob.history("alice");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["content"], hostile);
    assert_eq!(history[0]["reactions"], json!({}));
    let shown = bob.ok(&["history", "alice"]);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\r'),
        "{shown:?}"
    );
    // And the same reaction is refused when bob would send it.
    let (code, _, err) = run_jasper(&["react", "alice", good_id, ":x\u{1b}[31m:"], bob.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(":thumbsup:"), "{err}");
}

#[test]
fn a_relay_cannot_write_to_the_terminal_through_its_errors() {
    let hostile = format!("no\u{1b}]0;pwned\u{7}\r{}", "x".repeat(100_000));
    let relay = common::fake_peer::FakePeer::start(move |path, _| match path {
        "/send" => Answer::Error(400, hostile.clone()),
        _ => Answer::Status(404),
    });
    let alice = Home::new("alice", &[relay.addr]);
    alice.add("bob", "bob-4096");
    let (code, _, err) = run_jasper(&["send", "bob", "hello"], alice.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answered 400: no\\u{1b}]0;pwned\\u{7}\\u{d}xxx"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert!(err.len() < 1_000, "the reason is cut: {} bytes", err.len());
    assert!(err.contains("x…"), "{err}");
}

/// The time `days` ago (negative: ahead) as a message's RFC 3339 `timestamp`.
fn days_ago(days: i64) -> String {
    secs_ago(days * 24 * 3600)
}

fn secs_ago(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let shift = Duration::from_secs(secs.unsigned_abs());
    let at = if secs >= 0 { now - shift } else { now + shift };
    humantime::format_rfc3339_millis(at).to_string()
}

/// A sealed packet from `signer` that claims `claimed` as its sender, to `to`.
fn forge(signer: &str, claimed: &str, to: &str, text: &str) -> Value {
    let object = json!({
        "sender": key_b64(&format!("{claimed}-4096")),
        "channel_id": "0b9b7c7e-5d3a-4f43-9b1e-0c6e2f1d2a3b",
        "type": "MESSAGE",
        "content": text,
        "id": "5f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c21",
        "timestamp": days_ago(0),
    });
    seal_object(signer, to, &object)
}

/// `object` sealed by `signer` to `to`, as a packet for `/send`.
fn seal_object(signer: &str, to: &str, object: &Value) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/keys/{signer}-4096.key.pem"));
    let signer =
        jasper::crypto::Identity::from_pem(&std::fs::read_to_string(&path).unwrap(), None, &path)
            .unwrap();
    let recipient = jasper::proto::PublicKey::parse(&key_b64(&format!("{to}-4096")), 4096).unwrap();
    let sealed = jasper::crypto::seal(object.to_string().as_bytes(), &signer, &recipient).unwrap();
    json!({
        "recipient": recipient.canonical(),
        "message": sealed.message,
        "hash": sealed.hash.to_string(),
        "signature": sealed.signature,
    })
}

/// A proxy that records what crosses it: (path, recipient) of every request.
struct RecordingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl RecordingProxy {
    fn start(target: SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("GET").to_owned();
                        let path = parts.next().unwrap_or("/").to_owned();
                        let mut len = 0;
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        let rcpt = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["recipient"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        log.lock().unwrap().push((path.clone(), rcpt));
                        let agent = common::agent();
                        let url = format!("http://{target}{path}");
                        let mut resp = if method == "GET" {
                            agent.get(&url).call().unwrap()
                        } else {
                            agent.post(&url).send(&body[..]).unwrap()
                        };
                        let status = resp.status().as_u16();
                        let answer = resp
                            .body_mut()
                            .with_config()
                            .limit(64 << 20)
                            .read_to_vec()
                            .unwrap();
                        let _ = write!(
                            writer,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            answer.len()
                        );
                        let _ = writer.write_all(&answer);
                    }
                });
            }
        });
        RecordingProxy { addr, seen }
    }

    fn saw(&self, path: &str, recipient: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(p, r)| p == path && r == recipient)
    }
}

#[test]
fn sending_and_reading_go_through_different_relays() {
    let (r1, r2) = mesh();
    let (p1, p2) = (
        RecordingProxy::start(r1.addr),
        RecordingProxy::start(r2.addr),
    );
    let (alice, bob) = alice_and_bob(&[p1.addr, p2.addr]);
    let id = alice.send("bob", "which relay?");
    alice.ok(&["receive"]);
    bob.receive_until(|l| has(l, "id", &id));
    let (alice_key, bob_key) = (key_b64("alice-4096"), key_b64("bob-4096"));
    // Alice sends to bob through one relay and reads her own inbox through the other.
    let tx = if p1.saw("/send", &bob_key) { &p1 } else { &p2 };
    let rx = if p1.saw("/fetch", &alice_key) {
        &p1
    } else {
        &p2
    };
    assert!(
        tx.saw("/send", &bob_key),
        "alice's send to bob went through neither proxy"
    );
    assert!(rx.saw("/fetch", &alice_key));
    assert!(
        !std::ptr::eq(tx, rx),
        "alice used the same relay as TX for bob and RX for herself:\np1 {:?}\np2 {:?}",
        p1.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, r)| (p.clone(), r.chars().skip(60).take(12).collect::<String>()))
            .collect::<Vec<_>>(),
        p2.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, r)| (p.clone(), r.chars().skip(60).take(12).collect::<String>()))
            .collect::<Vec<_>>()
    );
    assert!(
        !tx.saw("/fetch", &alice_key),
        "the TX relay saw alice read her inbox"
    );
}

#[test]
fn messages_too_long_to_be_read_or_stored_are_user_errors() {
    let relay = Relay::start("");
    let small = Relay::start("max_message_bytes = 4096");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    // Longer than recipients read (64 KiB): refused before anything is sealed or sent, where
    // before the relay stored it and bob's `receive` skipped it.
    let long = "a".repeat(64 * 1024 + 1);
    alice.ok(&["group", "create", "pair", "bob"]);
    let stored = relay.status()["messages"].as_u64().unwrap();
    for args in [&["send", "bob", "-"][..], &["group", "send", "pair", "-"]] {
        let (code, _, err) = run_jasper_with_stdin(args, alice.path(), Some(&long));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("at most 65536 bytes"), "{err}");
    }
    assert_eq!(relay.status()["messages"].as_u64().unwrap(), stored);
    // Exactly the limit goes, and bob reads it.
    let (code, out, err) = run_jasper_with_stdin(
        &["send", "bob", "-"],
        alice.path(),
        Some(&"a".repeat(64 * 1024)),
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let got = bob.receive_until(|l| has(l, "id", &id));
    let line = got.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(line["content"].as_str().unwrap().len(), 64 * 1024);

    // A relay that takes less than jasper sends says so, and it is a user error too.
    let carol = Home::new("carol", &[small.addr]);
    carol.add("bob", "bob-4096");
    let (code, _, err) = run_jasper_with_stdin(
        &["send", "bob", "-"],
        carol.path(),
        Some(&"a".repeat(10_000)),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refuses a message this large") && err.contains("send a shorter one"),
        "{err}"
    );
    assert_eq!(small.status()["messages"], 0);
}

#[test]
fn failures_have_distinct_exit_codes() {
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let alice = Home::new("alice", &[dead]);
    alice.add("bob", "bob-4096");
    let (code, _, err) = run_jasper(&["send", "bob", "hello?"], alice.path());
    assert_eq!(code, 3, "network failure: {err}");
    let (code, _, err) = run_jasper(&["send", "nobody", "hello?"], alice.path());
    assert_eq!(code, 2, "unknown contact is a user error: {err}");
    assert!(err.contains("no contact or group named"), "{err}");
    let (code, _, _) = run_jasper(&["receive"], alice.path());
    assert_eq!(code, 3);
    // What cannot be done as asked is a user error too, said before any relay is tried.
    let (code, _, err) = run_jasper_with_stdin(&["send", "bob", "-"], alice.path(), Some(""));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty"), "{err}");
    let (code, _, err) = run_jasper(&["react", "bob", "some-id", "thumbsup"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(":thumbsup:"), "{err}");
    let (code, _, err) = run_jasper(&["edit", "bob", "some-id", ""], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs the new text"), "{err}");
    let (code, _, err) = run_jasper(&["group", "send", "nogroup", "hello?"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no group named \"nogroup\""), "{err}");
}

#[test]
fn a_group_of_three_reaches_everyone_through_different_relays() {
    let ports = [free_port(), free_port(), free_port()];
    let relays: Vec<Relay> = (0..3)
        .map(|i| {
            let peers: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("\"127.0.0.1:{}\"", ports[j]))
                .collect();
            Relay::start_at(
                ports[i],
                &format!(
                    "peers = [{}]\nmessage_sync_interval = \"1s\"\nrate_limit_per_minute = 0",
                    peers.join(", ")
                ),
            )
        })
        .collect();
    let proxies: Vec<RecordingProxy> = relays
        .iter()
        .map(|r| RecordingProxy::start(r.addr))
        .collect();
    let addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr).collect();
    let alice = Home::new("alice", &addrs);
    let bob = Home::new("bob", &addrs);
    let carol = Home::new("carol", &addrs);
    alice.add("bob", "bob-4096");
    alice.add("carol", "carol-4096");
    bob.add("alice", "alice-4096");
    carol.add("alice", "alice-4096");
    carol.add("bob", "bob-4096");

    alice.ok(&["group", "create", "trio", "bob", "carol"]);
    let id = alice
        .ok(&["group", "send", "trio", "hello trio"])
        .trim()
        .to_owned();
    let got = bob.receive_until(|l| has(l, "id", &id));
    assert!(
        got.iter()
            .any(|l| l["id"] == id.as_str() && l["group"] == "trio"),
        "{got:?}"
    );
    carol.receive_until(|l| has(l, "id", &id));

    // Alice's packets to bob and to carol went through different relays.
    let (bob_key, carol_key) = (key_b64("bob-4096"), key_b64("carol-4096"));
    let via = |key: &str| -> Vec<usize> {
        proxies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.saw("/send", key))
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(via(&bob_key).len(), 1, "one TX relay for bob");
    assert_eq!(via(&carol_key).len(), 1, "one TX relay for carol");
    assert_ne!(
        via(&bob_key),
        via(&carol_key),
        "bob and carol share a TX relay"
    );

    // Carol, who only knew the group from its messages, answers everyone.
    let (code, out, err) = run_jasper(&["group", "list", "--json"], carol.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"trio\""), "{out}");
    let reply = carol
        .ok(&["group", "send", "trio", "hi all"])
        .trim()
        .to_owned();
    alice.receive_until(|l| has(l, "id", &reply));
    bob.receive_until(|l| has(l, "id", &reply));
    let history: Vec<Value> = alice
        .ok(&["history", "trio", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(history.iter().any(|m| m["content"] == "hello trio"));
    assert!(history.iter().any(|m| m["content"] == "hi all"));
}

#[test]
fn groups_take_edits_reactions_and_deletions_and_ids_may_be_shortened() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let alice = Home::new("alice", &relays);
    let bob = Home::new("bob", &relays);
    let carol = Home::new("carol", &relays);
    alice.add("bob", "bob-4096");
    alice.add("carol", "carol-4096");
    bob.add("alice", "alice-4096");
    alice.ok(&["group", "create", "trio", "bob", "carol"]);
    // `send` takes a group's name too.
    let id = alice.send("trio", "hello trio");
    bob.receive_until(|l| has(l, "id", &id));
    carol.receive_until(|l| has(l, "id", &id));
    let short = &id[..8];

    alice.ok(&["edit", "trio", short, "hello trio, edited"]);
    bob.ok(&["react", "trio", short, ":wave:"]);
    alice.ok(&["react", "trio", short, ":wave:"]);
    carol.receive_until(|l| {
        l.iter().any(|x| x["type"] == "EDIT")
            && l.iter().filter(|x| x["type"] == "REACT").count() == 2
    });
    let history = carol.history("trio");
    let entry = history.iter().find(|m| m["id"] == id.as_str()).unwrap();
    assert_eq!(entry["content"], "hello trio, edited");
    assert_eq!(entry["edited"], true);
    let mut wavers: Vec<Value> = entry["reactions"][":wave:"].as_array().unwrap().clone();
    wavers.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(wavers, keys(&["alice", "bob"]));
    // Shown once, with how many gave it.
    let shown = carol.ok(&["history", "trio"]);
    assert!(
        shown.contains("hello trio, edited (edited) 👋×2  ("),
        "{shown}"
    );

    // An id names a message of the conversation given, not of another one.
    let (code, _, err) = run_jasper(&["edit", "bob", short, "elsewhere"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no message") && err.contains("jasper history bob"),
        "{err}"
    );
    // Too short to name anything.
    let (code, _, err) = run_jasper(&["delete", "trio", &id[..3]], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 4 characters"), "{err}");
    // Only the author deletes, and `delete` takes no text.
    let (code, _, err) = run_jasper(&["delete", "trio", short], bob.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only your own messages"), "{err}");
    let (code, _, err) = run_jasper(&["delete", "trio", short, "extra"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unexpected argument"), "{err}");

    alice.ok(&["delete", "trio", short]);
    carol.receive_until(|l| l.iter().any(|x| x["type"] == "DELETE"));
    assert!(
        carol.history("trio").iter().all(|m| m["id"] != id.as_str()),
        "deleted for carol"
    );
    bob.receive_until(|l| l.iter().any(|x| x["type"] == "DELETE"));
    assert!(bob.history("trio").iter().all(|m| m["id"] != id.as_str()));
}

/// `home`'s groups as `group list --json` gives them, by name.
fn groups_of(home: &Home) -> std::collections::HashMap<String, Value> {
    home.ok(&["group", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|g| (g["name"].as_str().unwrap().to_owned(), g))
        .collect()
}

fn members_of(home: &Home, group: &str) -> Vec<String> {
    let mut keys: Vec<String> = groups_of(home)[group]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

/// The short fingerprint (PROTOCOL.md §1) of fixture key `name`.
fn short_fingerprint(name: &str) -> String {
    jasper::proto::PublicKey::parse(&key_b64(&format!("{name}-4096")), 2048)
        .unwrap()
        .fingerprint()
        .short()
}

fn keys(names: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = names
        .iter()
        .map(|n| key_b64(&format!("{n}-4096")))
        .collect();
    keys.sort();
    keys
}

#[test]
fn group_members_are_added_removed_and_leave_and_only_members_are_heard() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let [alice, bob, carol, dave] =
        ["alice", "bob", "carol", "dave"].map(|n| Home::new(n, &relays));
    for name in ["bob", "carol", "dave"] {
        alice.add(name, &format!("{name}-4096"));
    }
    for home in [&bob, &carol, &dave] {
        home.add("alice", "alice-4096");
    }
    alice.ok(&["group", "create", "trio", "bob", "carol"]);
    let created = |l: &[Value]| l.iter().any(|x| x["group"] == "trio");
    bob.receive_until(created);
    carol.receive_until(created);

    // Dave joins: he learns the group and its members, the others learn of him.
    let added = alice
        .ok(&["group", "add", "trio", "dave"])
        .trim()
        .to_owned();
    for home in [&bob, &carol, &dave] {
        home.receive_until(|l| has(l, "id", &added));
    }
    assert_eq!(members_of(&dave, "trio"), keys(&["alice", "bob", "carol"]));
    // Members dave has not saved as contacts show by their short fingerprints.
    let (_, listed, _) = run_jasper(&["group", "list"], dave.path());
    for name in ["bob", "carol"] {
        assert!(listed.contains(&short_fingerprint(name)), "{listed}");
    }
    assert!(listed.contains("alice"), "{listed}");
    assert_eq!(members_of(&bob, "trio"), keys(&["alice", "carol", "dave"]));
    let from_dave = dave.send("trio", "hi, I am new");
    bob.receive_until(|l| has(l, "id", &from_dave));
    carol.receive_until(|l| has(l, "id", &from_dave));
    let (code, _, err) = run_jasper(&["group", "add", "trio", "dave"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dave is in \"trio\" already"), "{err}");

    // Members are named as contacts, or by fingerprint as `group list` shows them.
    for (who, needle) in [
        (
            "0000 0000",
            "no member of \"trio\" has a fingerprint starting 0000 0000",
        ),
        ("abc", "no contact named \"abc\""),
    ] {
        let (code, _, err) = run_jasper(&["group", "remove", "trio", who], bob.path());
        assert_eq!(code, 2, "{who}: {err}");
        assert!(err.contains(needle), "{who}: {err}");
    }
    // Carol is removed (by her fingerprint): she is told, and is out.
    let removed = alice
        .ok(&["group", "remove", "trio", &short_fingerprint("carol")])
        .trim()
        .to_owned();
    let got = carol.receive_until(|l| has(l, "id", &removed));
    let line = got.iter().find(|l| l["id"] == removed.as_str()).unwrap();
    assert_eq!(line["content"], "removed carol");
    assert_eq!(groups_of(&carol)["trio"]["left"], true);
    let (code, _, err) = run_jasper(&["group", "send", "trio", "still here?"], carol.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no longer in the group \"trio\""), "{err}");
    bob.receive_until(|l| has(l, "id", &removed));
    assert_eq!(members_of(&bob, "trio"), keys(&["alice", "dave"]));
    let (code, _, err) = run_jasper(&["group", "remove", "trio", "carol"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("carol is not in \"trio\""), "{err}");

    // What carol sends into the group anyway (a real, signed packet) is not taken.
    let channel = groups_of(&bob)["trio"]["channel_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = secs_ago(-3600);
    let intruder = |id: &str, members: Option<Value>| {
        let mut object = json!({
            "sender": key_b64("carol-4096"), "channel_id": channel, "type": "MESSAGE",
            "content": "let me back in", "id": id, "timestamp": at,
        });
        if let Some(m) = members {
            object["members"] = m;
        }
        seal_object("carol", "bob", &object)
    };
    r1.send_ok(&intruder("9a1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c21", None));
    r1.send_ok(&intruder(
        "9b1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c22",
        Some(json!(keys(&["alice", "bob", "carol", "dave"]))),
    ));
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("let me back in"), "{out}");
    assert_eq!(
        err.matches("from someone who is not in the group \"trio\"")
            .count(),
        2,
        "{err}"
    );
    assert_eq!(members_of(&bob, "trio"), keys(&["alice", "dave"]));

    // A change older than the one in effect does not undo it (a day old: older ones are
    // refused whole, see below).
    let stale = json!({
        "sender": key_b64("alice-4096"), "channel_id": channel, "type": "MESSAGE",
        "content": "an old list", "id": "9c1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c23",
        "timestamp": days_ago(1),
        "members": keys(&["alice", "bob", "carol", "dave"]),
        "members_at": days_ago(1),
    });
    // Nor does one set in the future (it would shut out every later change); an hour ahead
    // is a clock that is wrong, not a message to refuse.
    let mut ahead = stale.clone();
    ahead["id"] = json!("9d1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c24");
    ahead["content"] = json!("a list from the future");
    ahead["timestamp"] = json!(secs_ago(-3600));
    ahead["members_at"] = json!(secs_ago(-3600));
    r1.send_ok(&seal_object("alice", "bob", &stale));
    r1.send_ok(&seal_object("alice", "bob", &ahead));
    bob.receive_until(|l| {
        l.iter().any(|x| x["content"] == "an old list")
            && l.iter().any(|x| x["content"] == "a list from the future")
    });
    assert_eq!(members_of(&bob, "trio"), keys(&["alice", "dave"]));

    // Bob leaves: the others are told, and he is out.
    let left = bob.ok(&["group", "leave", "trio"]).trim().to_owned();
    assert_eq!(groups_of(&bob)["trio"]["left"], true);
    alice.receive_until(|l| has(l, "id", &left));
    dave.receive_until(|l| has(l, "id", &left));
    assert_eq!(members_of(&alice, "trio"), keys(&["dave"]));
    assert_eq!(members_of(&dave, "trio"), keys(&["alice"]));
    let (code, out, _) = run_jasper(&["group", "list"], bob.path());
    assert_eq!(code, 0);
    assert!(out.contains("(you left)"), "{out}");
    let (code, _, err) = run_jasper(&["group", "remove", "trio", "dave"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("group leave trio"), "{err}");

    // Carol, taken back, is in again and heard again.
    let back = alice
        .ok(&["group", "add", "trio", "carol"])
        .trim()
        .to_owned();
    carol.receive_until(|l| has(l, "id", &back));
    assert_eq!(groups_of(&carol)["trio"]["left"], false);
    assert_eq!(members_of(&carol, "trio"), keys(&["alice", "dave"]));
    let hello = carol.send("trio", "glad to be back");
    dave.receive_until(|l| has(l, "id", &back) && has(l, "id", &hello));
}

#[test]
fn a_group_everyone_else_left_takes_no_messages_and_can_be_left() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);
    alice.ok(&["group", "create", "duo", "bob"]);
    bob.receive_until(|l| l.iter().any(|x| x["group"] == "duo"));
    let left = bob.ok(&["group", "leave", "duo"]).trim().to_owned();
    alice.receive_until(|l| has(l, "id", &left));
    assert_eq!(members_of(&alice, "duo"), Vec::<String>::new());
    let (code, _, err) = run_jasper(&["send", "duo", "anyone?"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nobody else is in the group \"duo\""), "{err}");
    alice.ok(&["group", "leave", "duo"]);
    assert_eq!(groups_of(&alice)["duo"]["left"], true);
}

#[test]
fn a_group_and_a_contact_never_share_a_name() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);
    let (code, _, err) = run_jasper(&["group", "create", "bob", "bob"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a contact's name"), "{err}");
    // Bob calls carol "pals"; a group of that name reaches him under another.
    bob.add("pals", "carol-4096");
    alice.ok(&["group", "create", "pals", "bob"]);
    bob.receive_until(|l| l.iter().any(|x| x["group"] == "pals (2)"));
    assert!(groups_of(&bob).contains_key("pals (2)"));
    let id = bob.send("pals (2)", "to the group");
    alice.receive_until(|l| has(l, "id", &id) && l.iter().any(|x| x["group"] == "pals"));
    // Nor does a contact, added or renamed later, take a group's name (it would hide it).
    for args in [
        &["contacts", "add", "pals", &common::key_b64("carol-4096")][..],
        &["contacts", "rename", "bob", "pals"],
    ] {
        let (code, _, err) = run_jasper(args, alice.path());
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("a group is named \"pals\""), "{err}");
    }
    assert!(alice.ok(&["contacts", "list"]).contains("bob"));
    let id = alice.send("pals", "still the group");
    bob.receive_until(|l| has(l, "id", &id) && l.iter().any(|x| x["group"] == "pals (2)"));
}

#[test]
fn a_second_receive_key_gets_its_own_messages() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let alice = Home::new("alice", &relays);
    // Bob receives on his identity and on a second key (dave's fixture, standing in).
    let bob = Home::with_receive_key("bob", Some("dave"), &relays);
    alice.add("bob", "bob-4096");
    alice.add("bob at work", "dave-4096");
    bob.add("alice", "alice-4096");
    let ids: Vec<Value> = bob
        .ok(&["id", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0]["public_key"], key_b64("bob-4096"));
    assert_eq!(ids[1]["public_key"], key_b64("dave-4096"));
    assert!(ids[1]["receive_key"].is_string());

    let to_main = alice.send("bob", "to your main key");
    let to_work = alice.send("bob at work", "to your work key");
    let got = bob.receive_until(|l| has(l, "id", &to_main) && has(l, "id", &to_work));
    for id in [&to_main, &to_work] {
        let line = got.iter().find(|l| l["id"] == id.as_str()).unwrap();
        assert_eq!(line["contact"], "alice");
    }
}

#[test]
fn receive_watch_prints_messages_as_they_arrive() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);
    let mut watcher = common::jasper_in(bob.path())
        .args(["receive", "--watch", "--interval", "200ms", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = alice.send("bob", "one");
    let second = alice.send("bob", "two");
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the watcher printed the messages");
        let v: Value = serde_json::from_str(&line).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(ids, [first, second], "each message printed once, in order");
}

#[test]
fn a_long_receive_shows_its_progress_on_a_terminal_only() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let bob = Home::new("bob", &[relay.addr]);
    // A thousand packets for bob (not openable: each still costs an RSA decryption).
    let bob_key = key_b64("bob-4096");
    for n in 0..1000 {
        relay.send_ok(&packet_for(&bob_key, n * 10, 600));
    }
    // Piped, stderr carries no bar; a few skipped packets are named, the rest counted.
    let (code, _, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("opening"), "{err}");
    assert_eq!(err.matches("warning: skipped packet").count(), 10, "{err}");
    assert!(err.contains("… and 990 more packets skipped"), "{err}");
    // On a terminal (script(1) gives it one), a bar counts them as they open (a second
    // device of bob's, to whom all of them are new).
    let bob = Home::new("bob", &[relay.addr]);
    let typescript = bob.path().join("typescript");
    let status = std::process::Command::new("script")
        .current_dir(bob.path())
        .env("XDG_CONFIG_HOME", bob.path().join("xdg-config"))
        .env("XDG_DATA_HOME", bob.path().join("xdg-data"))
        .env_remove("JASPER_CONFIG")
        .env("TERM", "xterm")
        .args([
            "-qec",
            &format!("{} receive > /dev/null", common::jasper_bin()),
        ])
        .arg(&typescript)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script(1) runs");
    assert!(status.success());
    let shown = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(
        shown.contains("opening") && shown.contains("/1000 new packets"),
        "{shown}"
    );
}

#[test]
fn reactions_appear_only_when_in_the_reactions_database() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let listed = bob.ok(&["reactions"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(":thumbsup:") && l.contains('👍')),
        "{listed}"
    );
    let id = alice.send("bob", "a crab walks in");
    bob.receive_until(|l| has(l, "id", &id));

    // Bob cannot give what he could not see himself, until he adds it.
    let (code, _, err) = run_jasper(&["react", "alice", &id, ":crab:"], bob.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not in your reactions database"), "{err}");
    assert!(
        bob.ok(&["reactions", "add", "crab", "🦀"])
            .contains(":crab: shows 🦀")
    );
    let own: Vec<Value> = bob
        .ok(&["reactions", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["custom"] == true)
        .collect();
    assert_eq!(
        own,
        [json!({"name": "crab", "emoji": "🦀", "custom": true})]
    );
    bob.ok(&["react", "alice", &id, ":crab:"]);
    bob.ok(&["react", "alice", &id, ":fire:"]);

    // Alice has :fire: (built in) but not :crab:. Both arrive; only :fire: appears.
    let (code, out, err) = run_jasper(&["receive"], alice.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reacted :fire: 🔥 to"), "{out}");
    assert!(
        out.contains("reacted :crab: to") && out.contains("not in your reactions database"),
        "{out}"
    );
    let history = alice.history("bob");
    assert_eq!(
        history[0]["reactions"].as_object().unwrap().len(),
        1,
        "{history:?}"
    );
    assert!(history[0]["reactions"][":fire:"].is_array());
    let shown = alice.ok(&["history", "bob"]);
    assert!(shown.contains("a crab walks in 🔥  ("), "{shown}");
    // Once she adds it, it appears (it was kept); removed again, it is gone again.
    alice.ok(&["reactions", "add", ":crab:", "🦀"]);
    let shown = alice.ok(&["history", "bob"]);
    assert!(
        shown.contains("a crab walks in 🦀 🔥  (") || shown.contains("a crab walks in 🔥 🦀  ("),
        "{shown}"
    );
    assert!(alice.history("bob")[0]["reactions"][":crab:"].is_array());
    assert!(
        alice
            .ok(&["reactions", "rm", "crab"])
            .contains("removed :crab:")
    );
    assert!(!alice.ok(&["history", "bob"]).contains('🦀'));

    // Bad names and emoji, and built-in reactions, are refused with a reason.
    for (args, why) in [
        (&["reactions", "add", "a b", "x"][..], "not a reaction name"),
        (&["reactions", "add", "ok", "\u{1b}[2J"], "a reaction shows"),
        (&["reactions", "rm", "thumbsup"], "is built in"),
        (
            &["reactions", "rm", "nothing_here"],
            "not a reaction you added",
        ),
    ] {
        let (code, _, err) = run_jasper(args, alice.path());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[test]
fn group_names_are_names_whether_typed_or_received() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    for bad in ["", "   ", " pals", "a\u{7}b", &"g".repeat(65)] {
        let (code, _, err) = run_jasper(&["group", "create", bad, "bob"], alice.path());
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("group names are"), "{bad:?}: {err}");
    }
    // A group that arrives with a name that is not one is kept under one made from its channel.
    let object = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": "7d2f0a3c-1b4e-4c5d-9e6f-8a7b6c5d4e3f",
        "type": "MESSAGE",
        "content": "welcome",
        "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "timestamp": days_ago(0),
        "members": [key_b64("alice-4096"), key_b64("bob-4096")],
        "name": "--help",
    });
    relay.send_ok(&seal_object("alice", "bob", &object));
    let got = bob.receive_until(|l| l.iter().any(|m| m["content"] == "welcome"));
    assert_eq!(got[0]["group"], "group 7d2f0a3c", "{got:?}");
    assert_eq!(bob.history("group 7d2f0a3c")[0]["content"], "welcome");
}

#[test]
fn a_message_older_than_relays_keep_packets_is_refused_as_replayed() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let message = |id: &str, content: &str, days: i64| {
        json!({
            "sender": key_b64("alice-4096"),
            "channel_id": "4a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "type": "MESSAGE",
            "content": content,
            "id": id,
            "timestamp": days_ago(days),
        })
    };
    // Thirty days is the limit; a packet relays kept the usual 7 days is well inside it.
    let old = message(
        "2b1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c31",
        "from last month",
        31,
    );
    let recent = message("2b1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c32", "from last week", 7);
    relay.send_ok(&seal_object("alice", "bob", &old));
    relay.send_ok(&seal_object("alice", "bob", &recent));
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from last week"), "{out}");
    assert!(!out.contains("from last month"), "{out}");
    assert!(
        err.contains("sent 31 days ago") && err.contains("refuses messages over 30 days old"),
        "{err}"
    );
    let history: Vec<Value> = bob.history("alice");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["content"], "from last week");
    drop(alice);
}

#[test]
fn edits_deletions_and_reactions_that_come_before_their_message_apply_when_it_comes() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let object = |kind: &str, id: &str, content: &str, secs: i64| {
        json!({
            "sender": key_b64("alice-4096"),
            "channel_id": "5c1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "type": kind,
            "content": content,
            "id": id,
            "timestamp": secs_ago(secs),
        })
    };
    let (kept, gone) = (
        "3b1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c41",
        "3b1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c42",
    );
    // Packets reach an inbox in any order: here every action before its message, and the
    // newer edit before the older one.
    for early in [
        object("EDIT", kept, "third version", 10),
        object("EDIT", kept, "second version", 20),
        object("REACT", kept, ":thumbsup:", 12),
        object("DELETE", gone, "", 15),
    ] {
        relay.send_ok(&seal_object("alice", "bob", &early));
    }
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(bob.history("alice").is_empty(), "nothing to show yet");
    relay.send_ok(&seal_object(
        "alice",
        "bob",
        &object("MESSAGE", kept, "first version", 30),
    ));
    relay.send_ok(&seal_object(
        "alice",
        "bob",
        &object("MESSAGE", gone, "regretted", 30),
    ));
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    let history = bob.history("alice");
    assert_eq!(
        history.len(),
        1,
        "the deleted message stays deleted: {history:?}"
    );
    assert_eq!(history[0]["content"], "third version", "{history:?}");
    assert_eq!(history[0]["edited"], true);
    assert!(
        history[0]["reactions"][":thumbsup:"].is_array(),
        "{history:?}"
    );
    drop(alice);
}

#[test]
fn an_edit_naming_a_message_of_another_conversation_is_refused() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let id = "4c1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c51";
    let in_group = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": "6d2f0a3c-1b4e-4c5d-9e6f-8a7b6c5d4e3f",
        "type": "MESSAGE",
        "content": "said in the group",
        "id": id,
        "timestamp": secs_ago(60),
        "members": [key_b64("alice-4096"), key_b64("bob-4096")],
        "name": "pals",
    });
    relay.send_ok(&seal_object("alice", "bob", &in_group));
    bob.receive_until(|l| l.iter().any(|m| m["content"] == "said in the group"));
    // The author, but in a direct message: what a member removed from the group would send
    // to reach its history.
    let from_outside = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": "6d2f0a3c-1b4e-4c5d-9e6f-8a7b6c5d4e40",
        "type": "EDIT",
        "content": "changed from outside",
        "id": id,
        "timestamp": secs_ago(30),
    });
    relay.send_ok(&seal_object("alice", "bob", &from_outside));
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("a message of another conversation"), "{err}");
    let history = bob.history("pals");
    assert_eq!(history[0]["content"], "said in the group", "{history:?}");
    assert_eq!(history[0]["edited"], false);
    drop(alice);
}

#[test]
fn a_message_dated_far_ahead_is_refused() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let ahead = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "type": "MESSAGE",
        "content": "from the future",
        "id": "5d1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c61",
        "timestamp": days_ago(-3),
    });
    relay.send_ok(&seal_object("alice", "bob", &ahead));
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("from the future"), "{out}");
    assert!(err.contains("more than a day ahead"), "{err}");
    drop(alice);
}

#[test]
fn one_message_keeps_a_bounded_number_of_different_reactions() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let object = |kind: &str, id: &str, content: &str| {
        json!({
            "sender": key_b64("alice-4096"),
            "channel_id": "8c1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "type": kind,
            "content": content,
            "id": id,
            "timestamp": secs_ago(5),
        })
    };
    let target = "6e1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c71";
    relay.send_ok(&seal_object(
        "alice",
        "bob",
        &object("MESSAGE", target, "react to me"),
    ));
    // Reactions by names of its own making, more than a message keeps.
    for n in 0..70 {
        let react = object("REACT", target, &format!(":made_up_{n}:"));
        relay.send_ok(&seal_object("alice", "bob", &react));
    }
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    // `history` shows only reactions in the reactions database: add every name, to count
    // what was kept.
    for n in 0..70 {
        bob.ok(&["reactions", "add", &format!("made_up_{n}"), "x"]);
    }
    let history = bob.history("alice");
    let kept = history[0]["reactions"].as_object().unwrap().len();
    assert_eq!(kept, 64, "{history:?}");
    drop(alice);
}

#[test]
fn messages_handled_before_a_receive_fails_are_still_shown() {
    // Small pages: the inbox below takes several.
    let relay = Relay::start_at(
        free_port(),
        "rate_limit_per_minute = 0\nmax_message_bytes = \"4KiB\"\nmax_response_bytes = \"8KiB\"",
    );
    // Bob reads through a relay that serves the first page of his inbox, then fails.
    let target = relay.addr;
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (count, fail) = (fetches.clone(), failing.clone());
    let front = common::fake_peer::FakePeer::start(move |path, body| {
        use std::sync::atomic::Ordering;
        if path == "/fetch"
            && count.fetch_add(1, Ordering::SeqCst) >= 1
            && fail.load(Ordering::SeqCst)
        {
            return Answer::Error(503, "down for a moment".into());
        }
        let agent = common::agent();
        let url = format!("http://{target}{path}");
        let mut resp = if path == "/status" {
            agent.get(&url).call().unwrap()
        } else {
            agent.post(&url).send(body).unwrap()
        };
        Answer::Json(resp.body_mut().read_to_string().unwrap())
    });
    let alice = Home::new("alice", &[relay.addr]);
    alice.add("bob", "bob-4096");
    let bob = Home::new("bob", &[front.addr]);
    bob.add("alice", "alice-4096");
    for n in 0..5 {
        alice.ok(&["send", "bob", &format!("part {n}")]);
    }
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 3, "the failure is reported as one to retry: {err}");
    assert!(err.contains("down for a moment"), "{err}");
    let first: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !first.is_empty() && first.len() < 5,
        "the first page is shown: {out}"
    );
    // The rest comes with the next receive, and nothing twice.
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    let rest = out.lines().count();
    assert_eq!(first.len() + rest, 5, "{out}");
    assert_eq!(bob.history("alice").len(), 5);
}

#[test]
fn a_message_whose_id_is_taken_by_another_sender_is_refused_not_lost_silently() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let id = "7f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c81";
    let message = |sender: &str, channel: &str, content: &str| {
        json!({
            "sender": key_b64(&format!("{sender}-4096")),
            "channel_id": channel,
            "type": "MESSAGE",
            "content": content,
            "id": id,
            "timestamp": secs_ago(10),
        })
    };
    // Carol copies the id of Alice's message, and hers arrives first.
    relay.send_ok(&seal_object(
        "carol",
        "bob",
        &message("carol", "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "shadow"),
    ));
    relay.send_ok(&seal_object(
        "alice",
        "bob",
        &message(
            "alice",
            "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4e",
            "the real one",
        ),
    ));
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("the real one"), "{out}");
    assert!(err.contains("another sender's message"), "{err}");
    drop(alice);
}

#[test]
fn groups_started_by_strangers_are_bounded_and_contacts_still_reach_us() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let start = |sender: &str, n: u32, name: &str| {
        json!({
            "sender": key_b64(&format!("{sender}-4096")),
            "channel_id": format!("{n:08x}-1b2c-4d3e-8f40-{n:012x}"),
            "type": "MESSAGE",
            "content": format!("join {name}"),
            "id": format!("{n:08x}-5e6f-4a7b-9c8d-{n:012x}"),
            "timestamp": secs_ago(30),
            "members": [key_b64(&format!("{sender}-4096")), key_b64("bob-4096")],
            "name": name,
        })
    };
    // Carol, whom Bob does not know, starts one group more than Bob keeps from strangers.
    for n in 0..101 {
        relay.send_ok(&seal_object(
            "carol",
            "bob",
            &start("carol", n, &format!("spam {n}")),
        ));
    }
    relay.send_ok(&seal_object(
        "alice",
        "bob",
        &start("alice", 1000, "friends"),
    ));
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not in your contacts"), "{err}");
    let groups = groups_of(&bob);
    let from_carol = groups.keys().filter(|n| n.starts_with("spam ")).count();
    assert_eq!(from_carol, 100, "{:?}", groups.keys());
    assert!(
        groups.contains_key("friends"),
        "a contact's group is still kept"
    );
    // Once Bob adds Carol, her groups no longer count as a stranger's: Dave, another
    // stranger, can start one again.
    bob.add("carol", "carol-4096");
    relay.send_ok(&seal_object(
        "dave",
        "bob",
        &start("dave", 2000, "dave's group"),
    ));
    let (code, _, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("not in your contacts"), "{err}");
    assert!(groups_of(&bob).contains_key("dave's group"));
    drop(alice);
}

#[test]
fn a_group_message_some_members_cannot_get_still_reaches_the_others_and_says_who() {
    // One relay whose inboxes hold 3 packets: Carol's fills, Bob's does not.
    let relay = Relay::start_at(
        free_port(),
        "rate_limit_per_minute = 0\nmax_inbox_packets = 3",
    );
    let addrs = [relay.addr];
    let alice = Home::new("alice", &addrs);
    let bob = Home::new("bob", &addrs);
    alice.add("bob", "bob-4096");
    alice.add("carol", "carol-4096");
    bob.add("alice", "alice-4096");
    alice.ok(&["group", "create", "trio", "bob", "carol"]);
    let carol = key_b64("carol-4096");
    for n in 0..2 {
        relay.send_ok(&packet_for(&carol, 900 + n, 100));
    }
    let (code, out, err) = run_jasper(
        &["group", "send", "trio", "hello trio", "--json"],
        alice.path(),
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("not to: carol"), "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let undelivered = report["undelivered"].as_array().unwrap();
    assert_eq!(undelivered.len(), 1, "{report}");
    assert_eq!(undelivered[0]["name"], "carol");
    assert_eq!(undelivered[0]["member"], carol.as_str());
    // Bob got it, and it is in Alice's history.
    let id = report["id"].as_str().unwrap().to_owned();
    bob.receive_until(|l| has(l, "id", &id));
    assert!(alice.history("trio").iter().any(|m| m["id"] == id.as_str()));
    // A message that reaches everyone reports nobody.
    let (code, out, err) = run_jasper(&["send", "bob", "just bob", "--json"], alice.path());
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["undelivered"], json!([]));
}

#[test]
fn a_group_you_are_out_of_can_be_forgotten_with_its_history() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    alice.ok(&["group", "create", "pals", "bob"]);
    bob.receive_until(|l| l.iter().any(|m| m["group"] == "pals"));
    assert!(!bob.history("pals").is_empty());
    // A message sent while Bob was in, which he fetches only after forgetting the group.
    alice.ok(&["group", "send", "pals", "late one"]);
    let (code, _, err) = run_jasper(&["group", "forget", "pals"], bob.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("still in the group"), "{err}");
    bob.ok(&["group", "leave", "pals"]);
    let (code, out, err) = run_jasper(&["group", "forget", "pals", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["forgot"], "pals");
    assert!(answer["messages"].as_u64().unwrap() >= 2, "{answer}");
    assert!(!groups_of(&bob).contains_key("pals"));
    let (code, _, err) = run_jasper(&["history", "pals"], bob.path());
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_jasper(&["group", "forget", "nothing"], bob.path());
    assert_eq!(code, 2, "{err}");
    // The late message does not bring the group back.
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("late one"), "{out}");
    assert!(err.contains("a group you forgot"), "{err}");
    assert!(!groups_of(&bob).contains_key("pals"));
    // Alice's group goes on without Bob.
    assert!(groups_of(&alice).contains_key("pals"));
}

#[test]
fn a_new_group_cannot_take_over_the_channel_of_a_direct_conversation() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let sent: Value =
        serde_json::from_str(alice.ok(&["send", "bob", "hello", "--json"]).trim()).unwrap();
    bob.receive_until(|l| l.iter().any(|m| m["content"] == "hello"));
    // Alice names their direct conversation's channel as a new group's.
    let object = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": sent["channel_id"],
        "type": "MESSAGE",
        "content": "now a group",
        "id": "3c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "timestamp": secs_ago(5),
        "members": [key_b64("alice-4096"), key_b64("bob-4096")],
        "name": "takeover",
    });
    relay.send_ok(&seal_object("alice", "bob", &object));
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("now a group"), "{out}");
    assert!(err.contains("conversation you have already"), "{err}");
    assert!(groups_of(&bob).is_empty());
    assert_eq!(bob.history("alice").len(), 1);
}

#[test]
fn a_copy_with_a_swapped_signature_does_not_keep_the_genuine_one_out() {
    // The hash names the message only: anyone who sees a packet can send it on with junk
    // for its signature, and a relay keeps whichever copy came first.
    let first = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let second = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let bob = Home::new("bob", &[first.addr]);
    bob.add("alice", "alice-4096");
    let object = json!({
        "sender": key_b64("alice-4096"),
        "channel_id": "3c1f2a4b-5d6e-4f70-8a9b-0c1d2e3f4a5b",
        "type": "MESSAGE",
        "content": "the genuine one",
        "id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
        "timestamp": secs_ago(30),
    });
    let genuine = seal_object("alice", "bob", &object);
    let other = seal_object("alice", "bob", &json!({ "content": "another" }));
    let mut swapped = genuine.clone();
    swapped["signature"] = other["signature"].clone();
    first.send_ok(&swapped);
    second.send_ok(&genuine);
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("the genuine one"), "{out}");
    assert!(err.contains("signature"), "{err}");
    // The genuine copy, from another relay, is still taken.
    bob.edit_config(&first.addr.to_string(), &second.addr.to_string());
    bob.ok(&["servers", "block", &first.addr.to_string()]);
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the genuine one"), "{out}\n{err}");
}

#[test]
fn changes_that_change_nothing_are_refused_and_not_shown_as_done() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let bob = Home::new("bob", &[relay.addr]);
    bob.add("alice", "alice-4096");
    bob.add("carol", "carol-4096");
    let channel = "4d2e1f3a-6b7c-4d8e-9f0a-1b2c3d4e5f60";
    let target = "8e9f0a1b-2c3d-4e5f-a061-72839405a6b7";
    let change = |who: &str, kind: &str, n: u32, content: &str, ago: i64| {
        let mut object = json!({
            "sender": key_b64(&format!("{who}-4096")),
            "channel_id": channel,
            "type": kind,
            "content": content,
            "id": target,
            "timestamp": secs_ago(ago),
        });
        if kind == "MESSAGE" {
            object["members"] = json!([
                key_b64("alice-4096"),
                key_b64("bob-4096"),
                key_b64("carol-4096")
            ]);
            object["name"] = json!("trio");
        }
        // Each change is its own packet (its hash differs by `n`).
        object["n"] = json!(n);
        seal_object(who, "bob", &object)
    };
    let receive = |packets: &[Value]| {
        for p in packets {
            relay.send_ok(p);
        }
        let (code, out, err) = run_jasper(&["receive"], bob.path());
        assert_eq!(code, 0, "{err}");
        (out, err)
    };
    let shown = || {
        bob.history("trio")
            .iter()
            .find(|m| m["id"] == target)
            .map(|m| m["content"].as_str().unwrap().to_owned())
    };
    receive(&[change("alice", "MESSAGE", 0, "hello", 300)]);
    assert_eq!(shown().as_deref(), Some("hello"));
    // Carol, a member, edits and deletes Alice's message: refused, and not shown as done.
    let (out, err) = receive(&[
        change("carol", "EDIT", 1, "forged", 200),
        change("carol", "DELETE", 2, "", 190),
    ]);
    assert!(!out.contains("edited") && !out.contains("deleted"), "{out}");
    assert_eq!(err.matches("a message of someone else").count(), 2, "{err}");
    assert_eq!(shown().as_deref(), Some("hello"));
    // An edit older than the one shown arrives after it.
    let (out, err) = receive(&[
        change("alice", "EDIT", 3, "second", 100),
        change("alice", "EDIT", 4, "first", 150),
    ]);
    assert!(out.contains("second") && !out.contains("first"), "{out}");
    assert!(err.contains("a later edit"), "{err}");
    assert_eq!(shown().as_deref(), Some("second"));
    // A deleted message stays deleted, whatever edit comes after.
    let (out, err) = receive(&[
        change("alice", "DELETE", 5, "", 50),
        change("alice", "EDIT", 6, "resurrected", 40),
    ]);
    assert!(
        out.contains("deleted") && !out.contains("resurrected"),
        "{out}"
    );
    assert!(err.contains("was deleted"), "{err}");
    assert_eq!(shown(), None);
}

#[test]
fn our_own_copies_from_another_device_are_shown_as_ours() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let bob = Home::new("bob", &[relay.addr]);
    bob.add("alice", "alice-4096");
    // What Bob's laptop sent Alice, in its copy for Bob's other devices.
    relay.send_ok(&seal_object(
        "bob",
        "bob",
        &json!({
            "sender": key_b64("bob-4096"),
            "to": [key_b64("alice-4096")],
            "channel_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
            "type": "MESSAGE",
            "content": "sent from the laptop",
            "id": "6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0",
            "timestamp": secs_ago(10),
        }),
    ));
    let (code, out, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("you (to alice): sent from the laptop"),
        "{out}"
    );
}

#[test]
fn a_relay_started_afresh_at_the_same_address_still_delivers() {
    // Bob's cursor there points past three packets; the relay then loses its data (a new
    // disk, a move to another engine) and numbers packets from the start again.
    let port = free_port();
    let relay = Relay::start_at(port, "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    for n in 0..3 {
        alice.send("bob", &format!("before {n}"));
    }
    bob.receive_until(|l| (0..3).all(|n| has(l, "content", &format!("before {n}"))));
    drop(relay);
    let _relay = Relay::start_at(port, "rate_limit_per_minute = 0");
    alice.send("bob", "after the new start");
    bob.receive_until(|l| has(l, "content", "after the new start"));
}
