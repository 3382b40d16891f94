//! Misbehaving peers against a real relay: tampering, withholding, dropping and flooding are
//! detected, never believed, penalised, and (for the worst) quarantined.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::fake_peer::{Answer, FakePeer};
use common::{Relay, eventually, key_b64, packet_for, run_jasper};
use serde_json::{Value, json};

/// A relay whose only peer is `fake`, syncing every second.
fn relay_with_peer(fake: &FakePeer) -> Relay {
    Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"",
        fake.addr
    ))
}

fn peer_view(relay: &Relay) -> Value {
    let mut resp = common::agent().get(&relay.url("/peers")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.body_mut().read_json().unwrap();
    body["peers"][0].clone()
}

/// Waits up to `secs` seconds until the relay's only peer shows `problem` as its last one.
fn wait_for_problem(relay: &Relay, problem: &str, secs: u64) {
    assert!(
        eventually(
            Duration::from_secs(secs),
            || peer_view(relay)["last_problem"] == problem
        ),
        "the peer never showed {problem:?}: {}",
        peer_view(relay)
    );
}

fn holds(relay: &Relay, hash: &Value) -> bool {
    let (_, body) = relay.post("/fetch", &json!({ "hashes": [hash] }));
    !body["messages"].as_array().unwrap().is_empty()
}

#[test]
fn a_peer_serving_tampered_packets_is_never_believed_and_is_quarantined() {
    let alice = key_b64("alice-4096");
    let genuine = packet_for(&alice, 1, 200);
    let hash = genuine["hash"].clone();
    let mut tampered = genuine.clone();
    // Same hash, altered ciphertext: the hash no longer matches the message.
    let msg = tampered["message"].as_str().unwrap().to_owned();
    tampered["message"] = json!(format!("{}A", &msg[..msg.len() - 1]));
    let fake = FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": [hash] }).to_string()),
        "/fetch" => Answer::Json(json!({ "messages": [tampered] }).to_string()),
        "/sync/servers" => Answer::Json("{\"servers\":[]}".into()),
        _ => Answer::Status(404),
    });
    let relay = relay_with_peer(&fake);
    assert!(
        eventually(Duration::from_secs(20), || peer_view(&relay)["state"]
            == "quarantined"),
        "the tampering peer was not quarantined: {}",
        peer_view(&relay)
    );
    assert!(
        !holds(&relay, &genuine["hash"]),
        "a tampered packet was stored"
    );
    assert_eq!(relay.status()["peers"]["quarantined"], 1);
    assert_eq!(peer_view(&relay)["last_problem"], "tampered");
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains("peer quarantined")),
        "the quarantine is logged"
    );

    // Quarantined: contacted far less (not at all within its quarantine).
    let before = fake.calls("/sync/hashes");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        fake.calls("/sync/hashes"),
        before,
        "a quarantined peer was still synced with"
    );

    // The operator sees it with `jasper relay peers`.
    let (code, out, err) = run_jasper(
        &["relay", "peers", "--url", &relay.url("")],
        relay.dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&fake.addr.to_string()) && out.contains("quarantined"),
        "{out}"
    );
    let (code, out, _) = run_jasper(
        &["relay", "peers", "--json", "--url", &relay.url("")],
        relay.dir.path(),
    );
    assert_eq!(code, 0);
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["state"], "quarantined");

    // Scores survive a restart.
    let relay = relay.restart();
    assert_eq!(peer_view(&relay)["state"], "quarantined");
}

#[test]
fn a_peer_that_sends_packets_nobody_asked_for_is_not_believed() {
    let alice = key_b64("alice-4096");
    let asked = packet_for(&alice, 1, 200);
    let unasked = packet_for(&alice, 2, 200);
    let (asked_hash, unasked_copy) = (asked["hash"].clone(), unasked.clone());
    let fake = FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": [asked_hash] }).to_string()),
        "/fetch" => Answer::Json(json!({ "messages": [unasked_copy] }).to_string()),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let relay = relay_with_peer(&fake);
    assert!(eventually(
        Duration::from_secs(20),
        || peer_view(&relay)["penalties"].as_u64().unwrap_or(0) >= 1
    ));
    assert!(!holds(&relay, &unasked["hash"]));
    assert!(!holds(&relay, &asked["hash"]));
}

/// A peer that advertises `hash` and answers every fetch with `item` alone.
fn advertising_then_answering(hash: &Value, item: Value) -> FakePeer {
    let hash = hash.clone();
    FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": [hash] }).to_string()),
        "/fetch" => Answer::Json(json!({ "messages": [item] }).to_string()),
        _ => Answer::Json("{\"servers\":[]}".into()),
    })
}

#[test]
fn an_unasked_packet_is_not_excused_by_being_one_our_limits_refuse() {
    // A packet for a key under our min_key_bits is skipped without blame when we asked for
    // it; sent unasked, it is a bad peer's like any other.
    let asked = packet_for(&key_b64("alice-4096"), 1, 200);
    let unasked = packet_for(&key_b64("small-2048"), 2, 200);
    let fake = advertising_then_answering(&asked["hash"], unasked);
    let relay = relay_with_peer(&fake);
    wait_for_problem(&relay, "tampered", 20);
}

#[test]
fn a_peer_that_advertises_and_withholds_is_penalised() {
    let hash = "ab".repeat(32);
    let fake = FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": [hash] }).to_string()),
        "/fetch" => Answer::Json("{\"messages\":[]}".into()),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let relay = relay_with_peer(&fake);
    wait_for_problem(&relay, "withheld", 20);
    // Repeated refusals to relay end in quarantine.
    assert!(
        eventually(Duration::from_secs(30), || peer_view(&relay)["state"]
            == "quarantined"),
        "{}",
        peer_view(&relay)
    );
}

/// A peer that advertises one packet for Alice and serves it at the first fetch; later
/// fetches get `later(hash)` as their `messages`.
fn serves_once_then(later: impl Fn(&Value) -> Value + Send + Sync + 'static) -> FakePeer {
    let packet = packet_for(&key_b64("alice-4096"), 1, 200);
    let hash = packet["hash"].clone();
    let fetches = AtomicUsize::new(0);
    FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": [hash] }).to_string()),
        "/fetch" if fetches.fetch_add(1, Ordering::SeqCst) == 0 => {
            Answer::Json(json!({ "messages": [packet] }).to_string())
        }
        "/fetch" => Answer::Json(json!({ "messages": later(&hash) }).to_string()),
        _ => Answer::Json("{\"servers\":[]}".into()),
    })
}

#[test]
fn a_peer_that_drops_packets_it_held_is_penalised() {
    let alice = key_b64("alice-4096");
    // It serves the packet once, then claims never to have had it.
    let fake = serves_once_then(|_| json!([]));
    let relay = relay_with_peer(&fake);
    wait_for_problem(&relay, "dropped", 20);
    assert!(relay.log().contains("peer lost packets it held"));
    // What it served honestly was stored.
    assert_eq!(relay.inbox(&alice).len(), 1);
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

#[test]
fn a_peer_answering_endless_bodies_does_not_exhaust_memory() {
    let fake = FakePeer::start(|path, _| match path {
        "/sync/hashes" | "/sync/servers" => Answer::Endless,
        _ => Answer::Status(404),
    });
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1s\"\nmax_hashes_per_request = 10000",
        fake.addr
    ));
    wait_for_problem(&relay, "malformed", 30);
    assert!(eventually(
        Duration::from_secs(30),
        || peer_view(&relay)["state"] == "quarantined"
    ));
    // Answers are read only up to what a valid one can be (10,000 hashes: ~670 KB).
    let peak = rss_mib(relay.pid());
    assert!(peak < 100.0, "peak RSS {peak:.0} MiB");
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
}

#[test]
fn peers_view_is_for_the_operator_only() {
    let relay = Relay::start("");
    let mut resp = common::agent().get(&relay.url("/peers")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "loopback may ask");
    let body: Value = resp.body_mut().read_json().unwrap();
    assert!(body["peers"].as_array().unwrap().is_empty());
    let (code, out, _) = run_jasper(
        &["relay", "peers", "--url", &relay.url("")],
        relay.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(out.contains("no peers known"), "{out}");
    let (code, _, err) = run_jasper(
        &["relay", "peers", "--url", "http://127.0.0.1:1"],
        relay.dir.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach the relay"), "{err}");
}

#[test]
fn peers_that_accept_and_never_answer_do_not_hold_up_sync_with_the_others() {
    // Four tarpits on ports below the honest peer's, so a relay that synced one peer after
    // the other (in address order) would wait on each of them first.
    let mut ports: Vec<u16> = (0..5).map(|_| common::free_port()).collect();
    ports.sort_unstable();
    let honest = Relay::start_at(ports[4], "");
    let tarpits: Vec<std::net::TcpListener> = ports[..4]
        .iter()
        .map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).unwrap())
        .collect();
    let packet = packet_for(&key_b64("alice-4096"), 7, 300);
    honest.send_ok(&packet);
    let peers: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [{}]\nmessage_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"",
        peers.join(", ")
    ));
    // A request to a tarpit waits 30 s; the honest peer's packet comes long before that.
    assert!(
        eventually(Duration::from_secs(15), || holds(&relay, &packet["hash"])),
        "the packet never came: {}",
        relay.log()
    );
    drop(tarpits);
}

#[test]
fn peers_synced_side_by_side_are_not_each_asked_for_the_same_packets() {
    // Two peers holding the same 300 packets, each slow to answer a fetch.
    let packets: Vec<Value> = (0..300)
        .map(|n| packet_for(&key_b64("alice-4096"), 1000 + n * 10, 200))
        .collect();
    let by_hash: Arc<std::collections::HashMap<String, Value>> = Arc::new(
        packets
            .iter()
            .map(|p| (p["hash"].as_str().unwrap().to_owned(), p.clone()))
            .collect(),
    );
    let hashes = json!({ "hashes": packets.iter().map(|p| p["hash"].clone()).collect::<Vec<_>>() })
        .to_string();
    let pulled = Arc::new(AtomicUsize::new(0));
    let fake = || {
        let (by_hash, hashes, pulled) = (by_hash.clone(), hashes.clone(), pulled.clone());
        FakePeer::start(move |path, body| match path {
            "/sync/hashes" => Answer::Json(hashes.clone()),
            "/fetch" => {
                let asked: Value = serde_json::from_slice(body).unwrap();
                let asked = asked["hashes"].as_array().unwrap();
                // Spot checks ask for a few; pulls for up to a hundred.
                if asked.len() > 8 {
                    pulled.fetch_add(asked.len(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                }
                let messages: Vec<&Value> = asked
                    .iter()
                    .filter_map(|h| by_hash.get(h.as_str()?))
                    .collect();
                Answer::Json(json!({ "messages": messages }).to_string())
            }
            _ => Answer::Status(404),
        })
    };
    let (a, b) = (fake(), fake());
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\", \"{}\"]\nmessage_sync_interval = \"1h\"\n\
         server_sync_interval = \"1h\"\nreconciliation = false",
        a.addr, b.addr
    ));
    assert!(
        eventually(Duration::from_secs(20), || relay.status()["messages"]
            == 300),
        "{}",
        relay.status()
    );
    // Each packet was asked of one peer only (both were synced at once).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pulled.load(Ordering::SeqCst), 300);
    assert!(
        a.calls("/fetch") > 0 && b.calls("/fetch") > 0,
        "not side by side"
    );
}

#[test]
fn a_peer_that_accepts_pushes_and_never_answers_does_not_hold_up_broadcast_to_the_others() {
    // The tarpit is a configured peer that takes connections and never answers; it stays
    // "healthy" until its first request times out (30 s). No sync runs in this test: only
    // broadcast can bring the packets to the honest peer.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let honest = Relay::start("");
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\", \"{}\"]\nbroadcast_fanout = 2\n\
         message_sync_interval = \"1h\"\nserver_sync_interval = \"1h\"\nreconciliation = false",
        tarpit.local_addr().unwrap(),
        honest.addr
    ));
    // Once the broadcaster has read the peers (within a second), every packet goes to both.
    std::thread::sleep(Duration::from_millis(1500));
    let packets: Vec<Value> = (0..20)
        .map(|n| packet_for(&key_b64("alice-4096"), 5000 + n, 100))
        .collect();
    for p in &packets {
        relay.send_ok(p);
    }
    // Pushes to the tarpit wait 30 s each; the honest peer's come at once beside them.
    assert!(
        eventually(Duration::from_secs(8), || honest.status()["messages"]
            == packets.len()),
        "the honest peer got {} of {} packets: {}",
        honest.status()["messages"],
        packets.len(),
        relay.log()
    );
    drop(tarpit);
}

#[test]
fn a_peer_that_answers_429_is_not_pushed_every_packet() {
    // A configured peer that refuses every push as rate limited.
    let fake = FakePeer::start(|path, _| match path {
        "/send" => Answer::Status(429),
        _ => Answer::Status(404),
    });
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"0s\"\n\
         server_sync_interval = \"0s\"\nrate_limit_per_minute = 0",
        fake.addr
    ));
    // Once the broadcaster has read the peers (within a second), every packet is for it.
    std::thread::sleep(Duration::from_millis(1500));
    let alice = key_b64("alice-4096");
    for n in 0..60 {
        relay.send_ok(&packet_for(&alice, 90_000 + n, 100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Each of the lane's eight workers tries once, hears 429 and pauses a second; the rest
    // is left to sync.
    let pushes = fake.calls("/send");
    assert!(
        (1..=16).contains(&pushes),
        "{pushes} pushes for 60 packets to a peer answering 429"
    );
}

/// Waits up to 20 s until the relay holds `n` packets for `key`.
fn wait_for_inbox(relay: &Relay, key: &str, n: usize) {
    assert!(
        eventually(Duration::from_secs(20), || relay.inbox(key).len() == n),
        "{} of {n} pulled; {}",
        relay.inbox(key).len(),
        peer_view(relay)
    );
}

/// A peer that advertises `packets` and answers each fetch with those asked for, at most
/// `per_answer` at a time; it counts the fetches that ask for `counted`.
fn serving(packets: Vec<Value>, counted: &str, per_answer: usize) -> (FakePeer, Arc<AtomicUsize>) {
    let hashes: Vec<Value> = packets.iter().map(|p| p["hash"].clone()).collect();
    let counted = counted.to_owned();
    let asked_for = Arc::new(AtomicUsize::new(0));
    let counter = asked_for.clone();
    let fake = FakePeer::start(move |path, body| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": hashes }).to_string()),
        "/fetch" => {
            let asked: Value = serde_json::from_slice(body).unwrap();
            let asked: Vec<&str> = asked["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if asked.contains(&counted.as_str()) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let answer: Vec<&Value> = packets
                .iter()
                .filter(|p| asked.contains(&p["hash"].as_str().unwrap()))
                .take(per_answer)
                .collect();
            Answer::Json(json!({ "messages": answer }).to_string())
        }
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    (fake, asked_for)
}

#[test]
fn packets_only_our_limits_refuse_and_answers_cut_short_are_not_held_against_a_peer() {
    let alice = key_b64("alice-4096");
    // Relays may set their limits differently: one larger than our max_message_bytes (256 KiB
    // by default), one for a key under our min_key_bits, one for a key larger than we take
    // (older relays took up to 16384 bits).
    let big = packet_for(&alice, 1_000, 300 * 1024);
    let for_small_key = packet_for(&key_b64("small-2048"), 2_000, 200);
    let for_huge_key = packet_for(&common::fake_key_b64(9000), 3_000, 200);
    let fine: Vec<Value> = (0..10).map(|n| packet_for(&alice, n * 10, 2_000)).collect();
    let all: Vec<Value> = [big.clone(), for_small_key, for_huge_key]
        .into_iter()
        .chain(fine)
        .collect();
    let big_hash = big["hash"].as_str().unwrap().to_owned();
    // Two packets an answer, as a relay's response size limit cuts answers short.
    let (fake, big_asked) = serving(all, &big_hash, 2);
    let relay = relay_with_peer(&fake);
    wait_for_inbox(&relay, &alice, 10);
    // More rounds (one a second): the peer is not penalised, and the packet declined for its
    // size is not pulled again.
    std::thread::sleep(Duration::from_secs(4));
    let view = peer_view(&relay);
    assert_eq!(view["state"], "healthy", "{view}");
    assert!(view["last_problem"].is_null(), "{view}");
    assert_eq!(big_asked.load(Ordering::SeqCst), 1, "{view}");
}

fn peer_views(relay: &Relay) -> Vec<Value> {
    let mut resp = common::agent().get(&relay.url("/peers")).call().unwrap();
    let body: Value = resp.body_mut().read_json().unwrap();
    body["peers"].as_array().unwrap().clone()
}

#[test]
fn a_full_list_of_known_servers_makes_room_by_forgetting_ones_that_never_answered() {
    // `/sync/servers` is open to anyone: three addresses where nothing listens fill the list.
    let relay = Relay::start(
        "allow_private_peers = true\nmax_known_servers = 3\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1h\"\nbroadcast_fanout = 0",
    );
    let dead: Vec<Value> = (0..3)
        .map(|_| json!({ "ip": "127.0.0.1", "port": common::free_port() }))
        .collect();
    let (status, _) = relay.post("/sync/servers", &json!({ "servers": dead }));
    assert_eq!(status, 200);
    // A sync round finds them dead.
    assert!(
        eventually(Duration::from_secs(20), || {
            let views = peer_views(&relay);
            views.len() == 3 && views.iter().all(|v| v["failures"].as_u64() > Some(0))
        }),
        "{:?}",
        peer_views(&relay)
    );
    // A server that answers still gets in, in place of one of them.
    let honest = FakePeer::start(|path, _| match path {
        "/sync/hashes" => Answer::Json("{\"hashes\":[]}".into()),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let entry = json!({ "ip": "127.0.0.1", "port": honest.addr.port() });
    let (status, _) = relay.post("/sync/servers", &json!({ "servers": [entry] }));
    assert_eq!(status, 200);
    let views = peer_views(&relay);
    assert_eq!(views.len(), 3, "{views:?}");
    let honest_name = honest.addr.to_string();
    assert!(
        views.iter().any(|v| v["peer"] == honest_name.as_str()),
        "{views:?}"
    );
    // Once it has served us it is not pushed out by newcomers.
    assert!(
        eventually(Duration::from_secs(20), || peer_views(&relay).iter().any(
            |v| v["peer"] == honest_name.as_str() && v["last_ok"].as_u64() > Some(0)
        )),
        "{:?}",
        peer_views(&relay)
    );
    let more: Vec<Value> = (0..5)
        .map(|_| json!({ "ip": "127.0.0.1", "port": common::free_port() }))
        .collect();
    relay.post("/sync/servers", &json!({ "servers": more }));
    assert!(
        peer_views(&relay)
            .iter()
            .any(|v| v["peer"] == honest_name.as_str())
    );
}

#[test]
fn a_learned_server_gets_our_hash_list_only_once_it_has_served_us() {
    let alice = key_b64("alice-4096");
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = bodies.clone();
    let fake = FakePeer::start(move |path, body| match path {
        "/sync/hashes" => {
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(body).unwrap());
            Answer::Json("{\"hashes\":[]}".into())
        }
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let relay = Relay::start(
        "allow_private_peers = true\nmessage_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"\n\
         broadcast_fanout = 0",
    );
    relay.send_ok(&packet_for(&alice, 1, 200));
    // Only learned (anyone can name any address): the first exchange sends no hashes.
    let entry = json!({ "ip": "127.0.0.1", "port": fake.addr.port() });
    relay.post("/sync/servers", &json!({ "servers": [entry] }));
    assert!(
        eventually(Duration::from_secs(20), || bodies.lock().unwrap().len()
            >= 2),
        "the learned server was not synced with"
    );
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies[0], json!({ "hashes": [] }), "{bodies:?}");
    assert_eq!(
        bodies[1]["hashes"].as_array().unwrap().len(),
        1,
        "{bodies:?}"
    );
}

#[test]
fn naming_a_peer_in_the_header_does_not_end_its_back_off_from_another_address() {
    // A configured peer at 127.0.1.1 where nothing listens; callers here come from 127.0.0.1.
    let dead = common::free_port();
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"127.0.1.1:{dead}\"]\n\
         message_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"\nbroadcast_fanout = 0"
    ));
    let failures = |relay: &Relay| {
        peer_views(relay)
            .first()
            .and_then(|v| v["failures"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(20), || failures(&relay) > 0),
        "{:?}",
        peer_views(&relay)
    );
    let before = peer_views(&relay);
    assert_eq!(before[0]["state"], "backing-off", "{before:?}");
    // Someone else claims to be that peer.
    let resp = common::agent()
        .post(&relay.url("/sync/hashes"))
        .header("jasper-server", &format!("127.0.1.1:{dead}"))
        .send_json(json!({ "hashes": [] }))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let after = peer_views(&relay);
    assert_eq!(after[0]["state"], "backing-off", "{after:?}");
    assert!(failures(&relay) > 0, "{after:?}");
}

#[test]
fn another_peer_naming_a_peer_in_the_header_does_not_end_its_back_off() {
    // Two configured peers: a good one at 127.0.0.1 (where the test's calls come from) and
    // one at 127.0.1.1 where nothing listens.
    let good = FakePeer::start(|path, _| match path {
        "/sync/hashes" => Answer::Json("{\"hashes\":[]}".into()),
        "/status" => Answer::Status(404),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let dead = common::free_port();
    let dead_name = format!("127.0.1.1:{dead}");
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\", \"{dead_name}\"]\n\
         message_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"\nbroadcast_fanout = 0",
        good.addr
    ));
    let view_of = |relay: &Relay, name: &str| {
        peer_views(relay)
            .into_iter()
            .find(|v| v["peer"] == name)
            .unwrap_or_default()
    };
    // The dead one backs off; the good one has served, so 127.0.0.1 is a peer's address.
    let good_name = good.addr.to_string();
    assert!(
        eventually(Duration::from_secs(20), || {
            view_of(&relay, &dead_name)["state"] == "backing-off"
                && view_of(&relay, &good_name)["last_ok"].as_u64() > Some(0)
        }),
        "{:?}",
        peer_views(&relay)
    );
    std::thread::sleep(Duration::from_millis(1500));
    // A call from the good peer's address, naming the dead one.
    let resp = common::agent()
        .post(&relay.url("/sync/hashes"))
        .header("jasper-server", &dead_name)
        .send_json(json!({ "hashes": [] }))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let after = view_of(&relay, &dead_name);
    assert_eq!(after["state"], "backing-off", "{after}");
}

#[test]
fn a_full_list_of_servers_is_handed_out_no_longer_than_a_peer_takes() {
    // A peer that notes how many servers each of our server syncs names (a peer with our
    // settings refuses a list longer than `max_servers_per_request` whole).
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let fake = FakePeer::start(move |path, body| match path {
        "/sync/servers" => {
            let body: Value = serde_json::from_slice(body).unwrap();
            let names: Vec<String> = body["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let port = &s["port"];
                    let port = port
                        .as_str()
                        .map_or_else(|| port.to_string(), str::to_owned);
                    format!("{}:{port}", s["ip"].as_str().unwrap())
                })
                .collect();
            seen.lock().unwrap().push(names);
            Answer::Json("{\"servers\":[]}".into())
        }
        _ => Answer::Json("{\"hashes\":[]}".into()),
    });
    let relay = Relay::start(&format!(
        "allow_private_peers = true\nmax_servers_per_request = 4\npeers = [\"{}\"]\n\
         message_sync_interval = \"1h\"\nserver_sync_interval = \"1s\"\nbroadcast_fanout = 0",
        fake.addr
    ));
    // Others tell it of six more servers (where nothing listens), three at a time.
    for _ in 0..2 {
        let more: Vec<Value> = (0..3)
            .map(|_| json!({ "ip": "127.0.0.1", "port": common::free_port() }))
            .collect();
        let (status, _) = relay.post("/sync/servers", &json!({ "servers": more }));
        assert_eq!(status, 200);
    }
    let fake_name = format!("127.0.0.1:{}", fake.addr.port());
    let full = |names: &Vec<String>| names.len() == 4;
    assert!(
        eventually(Duration::from_secs(20), || sizes
            .lock()
            .unwrap()
            .iter()
            .any(full)),
        "{:?}",
        sizes.lock().unwrap()
    );
    for names in sizes.lock().unwrap().iter() {
        assert!(names.len() <= 4, "a list the peer would refuse: {names:?}");
        // The configured peer comes first among the servers handed out.
        if full(names) {
            assert!(names.contains(&fake_name), "{names:?}");
        }
    }
    // Clients and peers asking get no more either, the configured peer among them.
    let (_, body) = relay.post("/sync/servers", &json!({ "servers": [] }));
    let answer = body["servers"].as_array().unwrap();
    assert!(answer.len() <= 4, "{body}");
    assert!(
        answer
            .iter()
            .any(|s| s["port"].as_str() == Some(&fake.addr.port().to_string())),
        "{body}"
    );
}

#[test]
fn a_peer_allowing_much_larger_packets_than_ours_is_not_penalised_for_them() {
    let alice = key_b64("alice-4096");
    // A peer whose max_message_bytes is far above ours (256 KiB): one packet of 900 KiB, one
    // of 6 MiB, and ten ordinary ones, all answered in one go when asked.
    let larger = packet_for(&alice, 1_000, 900 * 1024);
    let huge = packet_for(&alice, 2_000, 6 << 20);
    let fine: Vec<Value> = (0..10).map(|n| packet_for(&alice, n * 10, 2_000)).collect();
    let huge_hash = huge["hash"].as_str().unwrap().to_owned();
    let all: Vec<Value> = [larger, huge].into_iter().chain(fine).collect();
    let (fake, huge_asked) = serving(all, &huge_hash, usize::MAX);
    let relay = relay_with_peer(&fake);
    wait_for_inbox(&relay, &alice, 10);
    // Later rounds (one a second) do not ask this peer for the packet it could not send.
    let asked_first = huge_asked.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(huge_asked.load(Ordering::SeqCst), asked_first);
    let view = peer_view(&relay);
    assert_eq!(view["state"], "healthy", "{view}");
    assert!(view["last_problem"].is_null(), "{view}");
    assert_eq!(
        relay.inbox(&alice).len(),
        10,
        "neither large packet is kept"
    );
}

#[test]
fn a_peer_answering_every_fetch_with_an_endless_body_is_still_penalised() {
    let alice = key_b64("alice-4096");
    let hashes: Vec<Value> = (0..10)
        .map(|n| packet_for(&alice, n, 100)["hash"].clone())
        .collect();
    let fake = FakePeer::start(move |path, _| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": hashes }).to_string()),
        "/fetch" => Answer::Endless,
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let relay = relay_with_peer(&fake);
    // Asked for fewer at a time, then one at a time: a few are skipped as larger than we
    // read, and past those the answers count against the peer.
    wait_for_problem(&relay, "malformed", 30);
    relay.send_ok(&packet_for(&alice, 100, 100));
}

#[test]
fn a_peer_answering_slowly_call_after_call_does_not_hold_back_sync_with_the_others() {
    let alice = key_b64("alice-4096");
    // A peer advertising 300 packets and answering each fetch after a second, one packet at
    // a time: pulling them all would take five minutes, and a round waits for every peer.
    let slow: Vec<Value> = (0..300)
        .map(|n| packet_for(&alice, 10_000 + n, 100))
        .collect();
    let hashes: Vec<Value> = slow.iter().map(|p| p["hash"].clone()).collect();
    let fake = FakePeer::start(move |path, body| match path {
        "/sync/hashes" => Answer::Json(json!({ "hashes": hashes }).to_string()),
        "/fetch" => {
            std::thread::sleep(Duration::from_secs(1));
            let asked: Value = serde_json::from_slice(body).unwrap();
            let first = asked["hashes"][0].as_str().unwrap_or_default().to_owned();
            let answer: Vec<&Value> = slow.iter().filter(|p| p["hash"] == first).collect();
            Answer::Json(json!({ "messages": answer }).to_string())
        }
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let honest = Relay::start("");
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\", \"{}\"]\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1h\"\nbroadcast_fanout = 0",
        fake.addr, honest.addr
    ));
    // The first round is under way, held by the slow peer; then the honest one gets a packet.
    std::thread::sleep(Duration::from_secs(3));
    let fresh = packet_for(&alice, 1, 100);
    honest.send_ok(&fresh);
    let (_, answer) = relay.post("/fetch", &json!({ "hashes": [fresh["hash"]] }));
    assert_eq!(answer["messages"].as_array().map(Vec::len), Some(0));
    // A sync gives up pulling after its time (10 s here), and the next round reaches it.
    assert!(
        eventually(Duration::from_secs(30), || holds(&relay, &fresh["hash"])),
        "{}",
        relay.log()
    );
    let pulled_slowly = relay.inbox(&alice).len() - 1;
    assert!(pulled_slowly < 300, "{pulled_slowly}");
}

#[test]
fn a_peer_answering_spot_checks_with_bare_hashes_is_still_caught_dropping() {
    // It serves the packet once; later it names the hash without the packet.
    let fake = serves_once_then(|hash| json!([{ "hash": hash }]));
    let relay = relay_with_peer(&fake);
    wait_for_problem(&relay, "dropped", 20);
}

#[test]
fn a_stub_under_a_key_our_limits_refuse_is_not_taken_for_the_packet() {
    let alice = key_b64("alice-4096");
    let real = packet_for(&alice, 1, 200);
    // It advertises a real packet and "delivers" junk under a key our min_key_bits refuses,
    // hoping to pass as a packet we merely decline.
    let stub = json!({
        "recipient": key_b64("small-2048"),
        "hash": real["hash"],
        "message": real["message"].as_str().unwrap().replace('A', "B"),
        "signature": real["signature"],
    });
    let fake = advertising_then_answering(&real["hash"], stub);
    let relay = relay_with_peer(&fake);
    wait_for_problem(&relay, "tampered", 20);
}

#[test]
fn a_slow_peer_does_not_hold_the_fetch_back_worker_for_long() {
    let alice = key_b64("alice-4096");
    // A known peer answering each fetch after 4 s, with nothing.
    let slow = FakePeer::start(|path, _| match path {
        "/fetch" => {
            std::thread::sleep(Duration::from_secs(4));
            Answer::Json("{\"messages\":[]}".into())
        }
        _ => Answer::Json("{\"hashes\":[],\"servers\":[]}".into()),
    });
    // A known peer holding a packet.
    let packet = packet_for(&alice, 1, 100);
    let held = packet.clone();
    let good = FakePeer::start(move |path, _| match path {
        "/fetch" => Answer::Json(json!({ "messages": [held] }).to_string()),
        _ => Answer::Json("{\"hashes\":[],\"servers\":[]}".into()),
    });
    // Message sync finds nothing new at either peer (their hash lists are empty): packets
    // reach the relay only by fetch-back.
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\", \"{}\"]\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1h\"\nbroadcast_fanout = 0\nrate_limit_per_minute = 0",
        slow.addr, good.addr
    ));
    let fetch_back = |from: &FakePeer, hashes: Vec<String>| {
        let resp = common::agent()
            .post(&relay.url("/sync/hashes"))
            .header("jasper-server", &from.addr.to_string())
            .send_json(json!({ "hashes": hashes }))
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    };
    // The slow peer claims 1,000 packets we lack (ten fetches: 40 s), then the good one one.
    fetch_back(&slow, (0..1000).map(|n| format!("{n:064x}")).collect());
    std::thread::sleep(Duration::from_millis(500));
    fetch_back(&good, vec![packet["hash"].as_str().unwrap().to_owned()]);
    // A fetch-back gives up after its time (10 s here); the next one then runs.
    assert!(
        eventually(Duration::from_secs(25), || holds(&relay, &packet["hash"])),
        "{} slow fetches; {}",
        slow.calls("/fetch"),
        relay.log()
    );
    assert!(slow.calls("/fetch") < 10, "{}", slow.calls("/fetch"));
}

#[test]
fn a_peer_refusing_our_hash_list_as_too_long_gets_an_empty_one_from_then_on() {
    let full_lists = Arc::new(AtomicUsize::new(0));
    let counter = full_lists.clone();
    let fake = FakePeer::start(move |path, body| match path {
        "/sync/hashes" => {
            let asked: Value = serde_json::from_slice(body).unwrap();
            if asked["hashes"].as_array().is_some_and(|h| !h.is_empty()) {
                counter.fetch_add(1, Ordering::SeqCst);
                Answer::Status(413)
            } else {
                Answer::Json("{\"hashes\":[]}".into())
            }
        }
        "/status" => Answer::Status(404),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    // (No broadcast: the packet reaches the peer, if at all, by its own sync.)
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1h\"\nbroadcast_fanout = 0",
        fake.addr
    ));
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
    assert!(eventually(Duration::from_secs(10), || full_lists
        .load(Ordering::SeqCst)
        > 0));
    // Rounds go on, once a second, with empty lists, and the peer is not penalised.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(full_lists.load(Ordering::SeqCst), 1);
    let view = peer_view(&relay);
    assert!(view["last_problem"].is_null(), "{view}");
    assert!(view["last_ok"].as_u64() > Some(0), "{view}");
}

#[test]
fn a_peer_taking_more_hashes_per_request_than_ours_is_synced_with_not_penalised() {
    // A relay that answers like any relay (what it holds, less what it was told), taking far
    // more hashes per request than ours: its first answer is longer than we read.
    let alice = key_b64("alice-4096");
    let packets: Vec<Value> = (0..40).map(|n| packet_for(&alice, n, 100)).collect();
    let hashes: Vec<String> = packets
        .iter()
        .map(|p| p["hash"].as_str().unwrap().to_owned())
        .collect();
    let fake = FakePeer::start(move |path, body| {
        let asked: Value = serde_json::from_slice(body).unwrap_or_default();
        let listed: Vec<&str> = asked["hashes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match path {
            "/sync/hashes" => {
                let lacking: Vec<&String> = hashes
                    .iter()
                    .filter(|h| !listed.contains(&h.as_str()))
                    .collect();
                Answer::Json(json!({ "hashes": lacking }).to_string())
            }
            "/fetch" => {
                let answer: Vec<&Value> = packets
                    .iter()
                    .filter(|p| listed.contains(&p["hash"].as_str().unwrap()))
                    .collect();
                Answer::Json(json!({ "messages": answer }).to_string())
            }
            "/status" => Answer::Status(404),
            _ => Answer::Json("{\"servers\":[]}".into()),
        }
    });
    // 40 hashes are ~2,700 bytes of JSON; a relay reading 20 reads ~2,360.
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1s\"\n\
         server_sync_interval = \"1h\"\nmax_hashes_per_request = 20",
        fake.addr
    ));
    // The first 20 in the first round; the other 20 once our list names those.
    wait_for_inbox(&relay, &alice, 40);
    let view = peer_view(&relay);
    assert_eq!(view["state"], "healthy", "{view}");
    assert!(view["last_problem"].is_null(), "{view}");
}

#[test]
fn naming_a_known_server_from_another_address_starts_no_fetch_back() {
    let alice = key_b64("alice-4096");
    let hash = packet_for(&alice, 1, 100)["hash"].clone();
    // A peer at 127.0.1.1 that holds nothing.
    let fake = FakePeer::start_at("127.0.1.1", 0, |path, _| match path {
        "/fetch" => Answer::Json("{\"messages\":[]}".into()),
        "/sync/hashes" => Answer::Json("{\"hashes\":[]}".into()),
        "/status" => Answer::Status(404),
        _ => Answer::Json("{\"servers\":[]}".into()),
    });
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1h\"\n\
         server_sync_interval = \"1h\"\nbroadcast_fanout = 0",
        fake.addr
    ));
    // (The sync at start.)
    assert!(eventually(Duration::from_secs(10), || fake
        .calls("/sync/hashes")
        > 0));
    std::thread::sleep(Duration::from_millis(500));
    let before = fake.calls("/fetch");
    // From 127.0.0.1, naming the peer at 127.0.1.1, with a hash the relay lacks.
    let resp = common::agent()
        .post(&relay.url("/sync/hashes"))
        .header("jasper-server", &fake.addr.to_string())
        .send_json(json!({ "hashes": [hash] }))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fake.calls("/fetch"),
        before,
        "a call from another address made the relay fetch back from the peer it named"
    );
}
