//! `jasper chat`: interactive conversations between real clients. Anonymous mode goes through a
//! real relay mesh; transparent mode meets through a real `jasper stun` (rendezvous over TLS,
//! STUN over UDP) and talks over a real WebRTC data channel on loopback.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::home::{Home, alice_and_bob, alice_and_bob_with, mesh};
use common::interactive::{Interactive, aiortc_peer, transparent_config};
use common::stun::StunServer;
use common::{Relay, free_port, key_b64, run_jasper};
use serde_json::Value;

fn history(home: &Home, with: &str) -> Vec<String> {
    let (code, out, err) = run_jasper(&["history", with, "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn anonymous_chat_goes_both_ways_through_the_relays() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = alice_and_bob(&relays);

    let mut a = Interactive::start(&alice, &["chat", "bob", "--json", "--interval", "200ms"]);
    let mut b = Interactive::start(&bob, &["chat", "alice", "--json", "--interval", "200ms"]);
    a.say("hello bob, through the mesh");
    let got = b.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hello bob, through the mesh");
    assert_eq!(got["contact"], "alice");
    assert_eq!(got["type"], "MESSAGE");
    assert_eq!(got["sender"], key_b64("alice-4096"));
    // A line longer than jasper reads is refused with a word, and the chat goes on.
    b.say(&"x".repeat(64 * 1024 + 1));
    b.wait_stderr("jasper reads at most 65536 bytes", Duration::from_secs(10));
    b.say("hi alice");
    let got = a.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hi alice");
    assert_eq!(got["contact"], "bob");
    // While a chat runs, other commands on the same database work (from another terminal):
    // the chat holds the database only while it uses it.
    let (code, _, err) = run_jasper(&["send", "bob", "from another terminal"], alice.path());
    assert_eq!(code, 0, "{err}");
    let got = b.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "from another terminal");
    let (code, out, err) = run_jasper(&["history", "bob", "--json"], alice.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from another terminal"), "{out}");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    let all = [
        "hello bob, through the mesh",
        "hi alice",
        "from another terminal",
    ];
    assert_eq!(history(&alice, "bob"), all);
    assert_eq!(history(&bob, "alice"), all);
}

#[test]
fn a_chat_and_a_watch_outlive_a_relay_that_goes_away() {
    let mut relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let mut chat = Interactive::start(&alice, &["chat", "bob", "--json", "--interval", "200ms"]);
    let watch = Interactive::start(
        &bob,
        &["receive", "--watch", "--json", "--interval", "200ms"],
    );
    chat.say("before");
    assert_eq!(
        watch.next_json(Duration::from_secs(20))["content"],
        "before"
    );

    relay.kill9();
    for side in [&chat, &watch] {
        side.wait_stderr("is unreachable", Duration::from_secs(10));
        side.wait_stderr("; trying again", Duration::from_secs(1));
    }
    // A line typed meanwhile is refused with a word; the chat goes on.
    chat.say("while it is away");
    chat.wait_stderr("not sent: relay", Duration::from_secs(10));
    let relay = relay.restart();
    for side in [&chat, &watch] {
        side.wait_stderr("The relays answer again.", Duration::from_secs(20));
    }
    chat.say("after");
    assert_eq!(watch.next_json(Duration::from_secs(20))["content"], "after");
    // The outage was reported once, however many checks failed.
    assert_eq!(watch.stderr().matches("trying again").count(), 1);
    assert_eq!(chat.finish(Duration::from_secs(10)).0, 0);
    drop(relay);
}

#[test]
fn a_chat_skips_lines_it_cannot_send_and_goes_on() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let mut chat = Interactive::start(&alice, &["chat", "bob", "--json", "--interval", "200ms"]);
    // Not UTF-8; longer than any line is read (5 MiB, held in memory only up to 1 MiB);
    // longer than a message (100 KiB): each is refused with a word.
    chat.write_raw(b"caf\xe9 au lait\n");
    chat.wait_stderr(
        "not sent: the line is not UTF-8 text",
        Duration::from_secs(10),
    );
    chat.write_raw(&[b'x'; 5 << 20]);
    chat.write_raw(b"\n");
    chat.wait_stderr("not sent: the line is longer than", Duration::from_secs(10));
    chat.say(&"y".repeat(100 << 10));
    chat.wait_stderr(
        "not sent: the message is 102400 bytes",
        Duration::from_secs(10),
    );
    chat.say("still here");
    let got = bob.receive_until(|l| l.iter().any(|m| m["content"] == "still here"));
    assert_eq!(got.len(), 1, "only the good line arrived: {got:?}");
    assert_eq!(chat.finish(Duration::from_secs(10)).0, 0);

    // `send -` reads at most a message (and a newline) from standard input.
    let (code, _, err) = common::run_jasper_with_stdin(
        &["send", "bob", "-"],
        alice.path(),
        Some(&"z".repeat(1 << 20)),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("too long: jasper reads at most 65536 bytes"),
        "{err}"
    );
    let exactly = "w".repeat(64 << 10);
    let (code, _, err) = common::run_jasper_with_stdin(
        &["send", "bob", "-"],
        alice.path(),
        Some(&format!("{exactly}\n")),
    );
    assert_eq!(code, 0, "{err}");
    bob.receive_until(|l| l.iter().any(|m| m["content"] == exactly.as_str()));
}

#[test]
fn a_group_chat_goes_to_everyone_through_the_relays() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| Home::new(n, &relays));
    alice.add("bob", "bob-4096");
    alice.add("carol", "carol-4096");
    bob.add("alice", "alice-4096");
    alice.ok(&["group", "create", "trio", "bob", "carol"]);
    // Bob and carol learn the group from its first message.
    for home in [&bob, &carol] {
        home.receive_until(|l| l.iter().any(|x| x["group"] == "trio"));
    }
    let mut a = Interactive::start(&alice, &["chat", "trio", "--json", "--interval", "200ms"]);
    let mut b = Interactive::start(&bob, &["chat", "trio", "--json", "--interval", "200ms"]);
    a.say("hello trio");
    let got = b.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hello trio");
    assert_eq!(got["group"], "trio");
    b.say("hi both");
    let got = a.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hi both");
    assert_eq!(got["group"], "trio");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    let seen = carol.receive_until(|l| l.iter().filter(|x| x["group"] == "trio").count() >= 2);
    assert!(
        seen.iter().any(|x| x["content"] == "hello trio"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|x| x["content"] == "hi both"), "{seen:?}");
    assert_eq!(
        history(&carol, "trio"),
        ["created the group \"trio\"", "hello trio", "hi both"]
    );
    // A group has no one to meet directly.
    let (code, _, err) = run_jasper(&["chat", "trio", "--transparent"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("without --transparent"), "{err}");
}

#[test]
fn transparent_chat_without_a_rendezvous_says_what_to_configure() {
    let alice = Home::new("alice", &[]);
    alice.add("bob", "bob-4096");
    let (code, _, err) = run_jasper(&["chat", "bob", "--transparent"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[client] rendezvous"), "{err}");
    // An unknown contact is a user error too.
    let (code, _, err) = run_jasper(&["chat", "nobody", "--transparent"], alice.path());
    assert_eq!(code, 2, "{err}");
}

/// Homes for alice and bob that meet through `stun` (no relays at all: transparent mode must
/// not need them), with WebRTC on loopback.
fn transparent_pair(stun: &StunServer, pin: bool) -> (Home, Home) {
    transparent_pair_with_relays(stun, pin, &[])
}

/// Alice and bob as contacts of each other, meeting through `stun`, with `relays` too.
fn transparent_pair_with_relays(
    stun: &StunServer,
    pin: bool,
    relays: &[std::net::SocketAddr],
) -> (Home, Home) {
    alice_and_bob_with(relays, &transparent_config(stun, pin))
}

#[test]
fn transparent_chat_meets_through_our_stun_and_talks_both_ways() {
    let stun = StunServer::start("");
    let (alice, bob) = transparent_pair(&stun, true);
    // Bob first, then alice a moment later: either order works.
    let mut b = Interactive::start(
        &bob,
        &["chat", "alice", "--transparent", "--json", "--wait", "30s"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut a = Interactive::start(
        &alice,
        &["chat", "bob", "--transparent", "--json", "--wait", "30s"],
    );
    a.wait_stderr("Connected to bob directly", Duration::from_secs(30));
    b.wait_stderr("Connected to alice directly", Duration::from_secs(30));
    a.say("hello bob, directly");
    let got = b.next_json(Duration::from_secs(10));
    assert_eq!(got["content"], "hello bob, directly");
    assert_eq!(got["contact"], "alice");
    assert_eq!(got["type"], "MESSAGE");
    assert_eq!(got["sender"], key_b64("alice-4096"));
    for field in ["hash", "channel_id", "id", "timestamp"] {
        assert!(got[field].is_string(), "{field}: {got}");
    }
    // A line too long for one data-channel message is refused with a reason; the chat goes on.
    b.say(&"x".repeat(7000));
    b.wait_stderr("too long for transparent mode", Duration::from_secs(10));
    // Under the line limit, but quotes double once escaped: too long once sealed. Refused the
    // same way, and not filed as sent.
    b.say(&"\"".repeat(4000));
    b.wait_stderr(
        "too long for transparent mode once sealed",
        Duration::from_secs(10),
    );
    b.say("hi alice");
    b.say("how are you?");
    assert_eq!(a.next_json(Duration::from_secs(10))["content"], "hi alice");
    assert_eq!(
        a.next_json(Duration::from_secs(10))["content"],
        "how are you?"
    );
    // Alice leaves; bob is told and exits too.
    let (code, err) = a.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    b.wait_stderr("alice left", Duration::from_secs(30));
    let (code, err) = b.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    // At the default log level a chat's stderr holds only what it says to the person.
    for line in err.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" INFO "),
            "noise: {line}"
        );
    }
    // The same history as anonymous mode, on both sides, in order.
    let both = ["hello bob, directly", "hi alice", "how are you?"];
    assert_eq!(history(&alice, "bob"), both);
    assert_eq!(history(&bob, "alice"), both);
    // The STUN owner's log at the default level names no key.
    let log = stun.log();
    assert!(!log.contains(&key_b64("alice-4096")[..40]), "{log}");
}

#[test]
fn the_rendezvous_certificate_is_trusted_on_first_use_and_then_pinned() {
    let stun = StunServer::start("");
    let (alice, _bob) = transparent_pair(&stun, false);
    let (code, _, err) = run_jasper(
        &[
            "chat",
            "bob",
            "--transparent",
            "--wait",
            "1s",
            "--fallback",
            "fail",
        ],
        alice.path(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&stun.printed_fingerprint), "{err}");
    assert!(err.contains("first use"), "{err}");
    // The second time the remembered certificate is simply checked.
    let (code, _, err) = run_jasper(
        &[
            "chat",
            "bob",
            "--transparent",
            "--wait",
            "1s",
            "--fallback",
            "fail",
        ],
        alice.path(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains("first use"), "{err}");
    // A pin that is not the server's certificate is refused before anything is said.
    let config = alice.path().join("xdg-config/jasper/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let wrong = "ab".repeat(32);
    std::fs::write(
        &config,
        text.replace(
            "[client]\n",
            &format!("[client]\nrendezvous_fingerprint = \"{wrong}\"\n"),
        ),
    )
    .unwrap();
    let (code, _, err) = run_jasper(
        &["chat", "bob", "--transparent", "--wait", "1s"],
        alice.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&stun.printed_fingerprint),
        "names both certificates: {err}"
    );
}

#[test]
fn a_peer_that_never_comes_is_reported_and_anonymous_mode_is_offered() {
    let stun = StunServer::start("offer_ttl = \"1s\"");
    let (r1, r2) = mesh();
    let (alice, bob) = transparent_pair_with_relays(&stun, true, &[r1.addr, r2.addr]);

    // Not a terminal, no --fallback: it says so and fails with status 3.
    let (code, _, err) = run_jasper(
        &["chat", "bob", "--transparent", "--wait", "2s"],
        alice.path(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("bob did not come online within 2s"), "{err}");

    // --fallback anonymous: the chat goes on through the relays.
    let mut a = Interactive::start(
        &alice,
        &[
            "chat",
            "bob",
            "--transparent",
            "--wait",
            "2s",
            "--fallback",
            "anonymous",
            "--interval",
            "200ms",
        ],
    );
    a.wait_stderr("through the relays instead", Duration::from_secs(20));
    a.say("sent through the relays after all");
    let mut seen = Vec::new();
    let ok = common::eventually(Duration::from_secs(20), || {
        let (_, out, _) = run_jasper(&["receive", "--json"], bob.path());
        seen.extend(
            out.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
        seen.iter()
            .any(|m| m["content"] == "sent through the relays after all")
    });
    assert!(ok, "{seen:?}");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
}

/// Runs `jasper chat --transparent` as `ours` against tests/interop/rtc_peer.py (aiortc) as
/// `theirs`, and checks the messages cross both ways and land in jasper's history.
fn chat_with_aiortc(ours: &str, theirs: &str, hostile: bool) {
    let stun = StunServer::start("");
    let home = Home::with_config(ours, None, &[], &transparent_config(&stun, true));
    home.add(theirs, &format!("{theirs}-4096"));
    let mode: &[&str] = if hostile { &["1", "hostile"] } else { &["1"] };
    let mut peer = aiortc_peer(&stun, theirs, ours, mode);
    let mut chat = Interactive::start(
        &home,
        &["chat", theirs, "--transparent", "--json", "--wait", "30s"],
    );
    chat.wait_stderr(
        &format!("Connected to {theirs} directly"),
        Duration::from_secs(40),
    );
    chat.say("hello from jasper");
    let reply = chat.next_json(Duration::from_secs(20));
    assert_eq!(reply["content"], "aiortc got: hello from jasper");
    assert_eq!(reply["contact"], theirs);
    assert_eq!(reply["sender"], key_b64(&format!("{theirs}-4096")));
    let status = peer.wait().unwrap();
    let mut out = String::new();
    peer.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    peer.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "aiortc peer failed:\n{out}\n{err}");
    // The peer opened and verified our packet with jwcrypto and printed its message object.
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let message = got
        .iter()
        .find(|o| o["content"] == "hello from jasper")
        .unwrap_or_else(|| panic!("the peer never got our message: {out}\n{err}"));
    assert_eq!(message["sender"], key_b64(&format!("{ours}-4096")));
    assert_eq!(message["type"], "MESSAGE");
    let (code, err) = chat.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    if hostile {
        assert!(
            err.contains("skipped a message: not a JSON packet"),
            "{err}"
        );
        assert!(err.contains("skipped a message: not a packet"), "{err}");
        assert!(err.matches("skipped a message").count() >= 3, "{err}");
    }
    assert_eq!(
        history(&home, theirs),
        ["hello from jasper", "aiortc got: hello from jasper"]
    );
}

#[test]
fn aiortc_completes_a_data_channel_with_jasper() {
    // bob's fingerprint is the lower one, so aiortc (as bob) offers and jasper answers.
    chat_with_aiortc("alice", "bob", false);
}

/// The other way round: our offer asks the answerer to be the DTLS server, so that one side
/// sends the SCTP INIT (aiortc lets only the ICE controlling side send it, webrtc-rs only the
/// DTLS client).
#[test]
fn aiortc_answers_when_jasper_offers() {
    // bob's fingerprint is the lower one, so jasper (as bob) offers and aiortc answers.
    chat_with_aiortc("bob", "alice", false);
}

#[test]
fn garbage_and_duplicates_from_a_peer_are_skipped_and_the_chat_goes_on() {
    chat_with_aiortc("alice", "bob", true);
}

#[test]
fn stun_check_reports_our_address_over_tls_and_udp() {
    let stun = StunServer::start("");
    let (alice, _bob) = transparent_pair(&stun, false);
    let (code, out, err) = run_jasper(&["stun-check", "--json"], alice.path());
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tls"]["server"], stun.tls.to_string());
    assert_eq!(
        report["tls"]["certificate"],
        stun.printed_fingerprint.as_str()
    );
    let tls: std::net::SocketAddr = report["tls"]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(tls.ip().to_string(), "127.0.0.1");
    assert_ne!(tls.port(), 0);
    let udp: std::net::SocketAddr = report["udp"]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(udp.ip().to_string(), "127.0.0.1");
    // Human output says the same.
    let (code, out, err) = run_jasper(&["stun-check"], alice.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("over TLS") && out.contains("over UDP"),
        "{out}"
    );

    // Nothing listening: a network failure (3). No rendezvous configured: a user error (2).
    let nobody = Home::with_config(
        "alice",
        None,
        &[],
        &format!("rendezvous = \"127.0.0.1:{}\"\n", common::free_port()),
    );
    let (code, _, err) = run_jasper(&["stun-check"], nobody.path());
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the rendezvous"), "{err}");
    let (code, _, err) = run_jasper(&["stun-check"], Home::new("alice", &[]).path());
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_offer_that_expires_is_made_again_while_the_offerer_still_waits() {
    // Offers live one second; bob (the lower fingerprint, so the offerer) waits alone for
    // three before alice comes: his first offers expire, a new one reaches her.
    let stun = StunServer::start("offer_ttl = \"1s\"");
    let (alice, bob) = transparent_pair(&stun, true);
    let mut b = Interactive::start_with_log(
        &bob,
        &["chat", "alice", "--transparent", "--json", "--wait", "30s"],
        "jasper=debug",
    );
    b.wait_stderr("the offer expired unanswered", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let a = Interactive::start(
        &alice,
        &["chat", "bob", "--transparent", "--json", "--wait", "30s"],
    );
    a.wait_stderr("Connected to bob directly", Duration::from_secs(30));
    b.wait_stderr("Connected to alice directly", Duration::from_secs(30));
    b.say("still here");
    assert_eq!(
        a.next_json(Duration::from_secs(10))["content"],
        "still here"
    );
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(a.finish(Duration::from_secs(30)).0, 0);
}

#[test]
fn a_transparent_chat_reaches_our_other_devices_through_the_relays() {
    let stun = StunServer::start("");
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let (alice, bob) = transparent_pair_with_relays(&stun, true, &relays);
    // Alice's second device: the same key, its own database.
    let laptop = Home::with_config("alice", None, &relays, &transparent_config(&stun, true));
    laptop.add("bob", "bob-4096");

    let mut a = Interactive::start(
        &alice,
        &["chat", "bob", "--transparent", "--json", "--wait", "30s"],
    );
    let mut b = Interactive::start(
        &bob,
        &["chat", "alice", "--transparent", "--json", "--wait", "30s"],
    );
    a.wait_stderr("Connected to bob directly", Duration::from_secs(30));
    b.wait_stderr("Connected to alice directly", Duration::from_secs(30));
    a.say("from alice's phone");
    assert_eq!(
        b.next_json(Duration::from_secs(10))["content"],
        "from alice's phone"
    );
    b.say("from bob");
    assert_eq!(a.next_json(Duration::from_secs(10))["content"], "from bob");
    let (code, err) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("may miss"), "{err}");
    b.wait_stderr("alice left", Duration::from_secs(30));
    assert_eq!(b.finish(Duration::from_secs(20)).0, 0);

    // The laptop learns both sides of the conversation from the relays.
    let got = laptop.receive_until(|all| {
        ["from alice's phone", "from bob"]
            .iter()
            .all(|text| all.iter().any(|m| m["content"] == *text))
    });
    let bobs = got.iter().find(|m| m["content"] == "from bob").unwrap();
    assert_eq!(bobs["sender"], key_b64("bob-4096"));
    assert_eq!(
        history(&laptop, "bob"),
        history(&alice, "bob"),
        "both devices hold the same conversation"
    );
    // The phone had filed both already: nothing is new to it.
    let (code, out, err) = run_jasper(&["receive", "--json"], alice.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().is_empty(), "{out}");
    // Bob's own devices are not alice's business: he got exactly one copy of her line.
    assert_eq!(history(&bob, "alice"), ["from alice's phone", "from bob"]);
}

#[test]
fn a_peer_that_vanishes_is_noticed_within_seconds() {
    let stun = StunServer::start("");
    let (alice, bob) = transparent_pair(&stun, true);
    let a = Interactive::start(
        &alice,
        &["chat", "bob", "--transparent", "--json", "--wait", "30s"],
    );
    let b = Interactive::start(
        &bob,
        &["chat", "alice", "--transparent", "--json", "--wait", "30s"],
    );
    a.wait_stderr("Connected to bob directly", Duration::from_secs(30));
    b.wait_stderr("Connected to alice directly", Duration::from_secs(30));
    // Bob is killed: no goodbye of any kind reaches alice.
    let killed = std::time::Instant::now();
    b.signal("KILL");
    a.wait_stderr("bob left", Duration::from_secs(30));
    let took = killed.elapsed();
    // ICE gives up after 5 s of silence plus 5 s more (webrtc's default would be ~30 s).
    assert!(took < Duration::from_secs(16), "{took:?}");
    let (code, err) = a.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
}
