//! The mesh: several real relays on loopback, syncing every second, end up holding every
//! live packet (JASPER.md message and server sync).

mod common;

use std::time::Duration;

use common::{Relay, eventually, free_port, key_b64, packet_for};
use serde_json::{Value, json};

/// Mesh settings for tests: fast sync, loopback peers allowed, this relay's own address.
/// `extra` lines may override the sync settings.
fn mesh_config(port: u16, peers: &[u16], extra: &str) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let mut lines = vec![
        "allow_private_peers = true".to_owned(),
        format!("public_address = \"127.0.0.1:{port}\""),
        format!("peers = [{}]", peers.join(", ")),
    ];
    let defaults = [
        ("message_sync_interval", "\"1s\""),
        ("server_sync_interval", "\"1s\""),
    ];
    for (key, value) in defaults {
        if !extra.contains(key) {
            lines.push(format!("{key} = {value}"));
        }
    }
    lines.push(extra.to_owned());
    lines.join("\n")
}

/// A line of relays, each configured with only the one before it.
fn line(n: usize, extra: &str) -> Vec<Relay> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    (0..n)
        .map(|i| {
            let before: Vec<u16> = if i == 0 { vec![] } else { vec![ports[i - 1]] };
            Relay::start_at(ports[i], &mesh_config(ports[i], &before, extra))
        })
        .collect()
}

fn holds(relay: &Relay, packet: &Value) -> bool {
    let (status, body) = relay.post("/fetch", &json!({ "hashes": [packet["hash"]] }));
    status == 200 && body["messages"].as_array().is_some_and(|m| m.len() == 1)
}

fn known_servers(relay: &Relay) -> Vec<String> {
    let (_, body) = relay.post("/sync/servers", &json!({ "servers": [] }));
    body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["ip"].as_str().unwrap(),
                s["port"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_line_of_four_relays_delivers_both_ways_by_sync() {
    let relays = line(4, "broadcast_fanout = 0");
    let alice = key_b64("alice-4096");
    let bob = key_b64("bob-4096");
    let to_far = packet_for(&alice, 1, 500);
    let to_near = packet_for(&bob, 2, 500);
    relays[0].send_ok(&to_far);
    relays[3].send_ok(&to_near);
    assert!(
        eventually(Duration::from_secs(30), || holds(&relays[3], &to_far)),
        "the packet sent to the first relay never reached the last"
    );
    assert!(
        eventually(Duration::from_secs(30), || holds(&relays[0], &to_near)),
        "the packet sent to the last relay never reached the first"
    );
    // The recipient reads it from any relay, as sent.
    let inbox = relays[3].inbox(&alice);
    assert_eq!(inbox.len(), 1);
    for field in ["recipient", "message", "hash", "signature"] {
        assert_eq!(inbox[0][field], to_far[field]);
    }
    // Every relay ends up holding both; the expiry travelled with the packet.
    for r in &relays {
        assert!(eventually(Duration::from_secs(30), || holds(r, &to_far)
            && holds(r, &to_near)));
    }
    let expiry = |r: &Relay| {
        let (_, body) = r.post("/fetch", &json!({ "hashes": [to_far["hash"]] }));
        body["messages"][0]["expires"].as_str().unwrap().to_owned()
    };
    assert_eq!(expiry(&relays[0]), expiry(&relays[3]));
    // Packets moved by sync (pulled, or fetched back by the answering side), logged at info.
    let logs: String = relays.iter().map(Relay::log).collect();
    assert!(
        logs.contains("message sync") && logs.contains("pulled="),
        "sync is logged at info"
    );
}

#[test]
fn broadcast_alone_crosses_a_line_of_four_in_seconds() {
    // Message sync once an hour: only pushes can carry the packet.
    let relays = line(
        4,
        "message_sync_interval = \"1h\"\nserver_sync_interval = \"2s\"",
    );
    let alice = key_b64("alice-4096");
    // Let the relays learn each other (server sync), so that pushes have somewhere to go.
    let first = format!("127.0.0.1:{}", relays[0].addr.port());
    assert!(eventually(Duration::from_secs(20), || known_servers(
        &relays[1]
    )
    .len()
        >= 2
        && known_servers(&relays[0]).len() >= 2));
    let p = packet_for(&alice, 42, 300);
    let sent = std::time::Instant::now();
    relays[0].send_ok(&p);
    for r in &relays {
        assert!(
            eventually(Duration::from_secs(10), || holds(r, &p)),
            "relay {} did not get the pushed packet; the first is {first}",
            r.addr
        );
    }
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(
        !relays[3].log().contains("message sync peer="),
        "no packet was moved by message sync"
    );
}

#[test]
fn far_relays_discover_each_other() {
    let relays = line(4, "");
    let first = format!("127.0.0.1:{}", relays[0].addr.port());
    let last = format!("127.0.0.1:{}", relays[3].addr.port());
    assert!(
        eventually(Duration::from_secs(30), || known_servers(&relays[3])
            .contains(&first)),
        "the last relay never learned the first: {:?}",
        known_servers(&relays[3])
    );
    assert!(
        eventually(Duration::from_secs(30), || known_servers(&relays[0])
            .contains(&last)),
        "the first relay never learned the last: {:?}",
        known_servers(&relays[0])
    );
    for r in &relays {
        let own = format!("127.0.0.1:{}", r.addr.port());
        assert!(!known_servers(r).contains(&own), "a relay added itself");
    }
}

#[test]
fn a_stopped_relay_catches_up_and_passes_packets_on() {
    // first <- middle <- last: the last relay may contact only its configured peer (the
    // middle one), so every packet from the first must pass through the middle.
    let ports = [free_port(), free_port(), free_port()];
    // The first may not contact private addresses either: it never learns the last one.
    let strict = |c: String| c.replace("allow_private_peers = true", "allow_private_peers = false");
    let first = Relay::start_at(ports[0], &strict(mesh_config(ports[0], &[], "")));
    let middle = Relay::start_at(ports[1], &mesh_config(ports[1], &[ports[0]], ""));
    let last = Relay::start_at(ports[2], &strict(mesh_config(ports[2], &[ports[1]], "")));
    let alice = key_b64("alice-4096");
    let warm = packet_for(&alice, 1, 100);
    first.send_ok(&warm);
    assert!(eventually(Duration::from_secs(30), || holds(&last, &warm)));

    let mut middle = middle;
    middle.kill9();
    let while_down = packet_for(&alice, 2, 100);
    first.send_ok(&while_down);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !holds(&last, &while_down),
        "nothing can pass while the middle is down"
    );

    let middle = middle.restart();
    assert_eq!(middle.addr.port(), ports[1]);
    assert!(
        eventually(Duration::from_secs(30), || holds(&last, &while_down)),
        "the last relay never got the packet through the restarted middle one"
    );
    assert!(holds(&middle, &while_down));
    assert!(
        !known_servers(&last).contains(&format!("127.0.0.1:{}", ports[0])),
        "a relay that refuses private peers learned one"
    );
    assert!(
        !known_servers(&first).contains(&format!("127.0.0.1:{}", ports[2])),
        "a relay that refuses private peers learned one"
    );
}

#[test]
fn an_expired_packet_is_not_pulled_back_from_a_peer_that_still_holds_it() {
    let p1 = free_port();
    let p2 = free_port();
    // The first relay keeps packets 3 s; the second keeps them a day. No broadcast: a push
    // carries the sender's expiry, and the receiving relay would keep the earlier one.
    let short = Relay::start_at(
        p1,
        &mesh_config(
            p1,
            &[p2],
            "retention = \"3s\"\nsweep_interval = \"200ms\"\nbroadcast_fanout = 0",
        ),
    );
    let long = Relay::start_at(p2, &mesh_config(p2, &[p1], "broadcast_fanout = 0"));
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 1, 100);
    // Sent to both by their clients, the long-lived copy first: each keeps its own expiry.
    long.send_ok(&p);
    short.send_ok(&p);
    assert!(eventually(
        Duration::from_secs(20),
        || short.status()["messages"] == 0
    ));
    // Several sync rounds later it is still gone here, though the peer advertises it.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!holds(&short, &p));
    assert!(short.inbox(&alice).is_empty());
    assert!(holds(&long, &p));
}

#[test]
fn the_answering_side_fetches_back_only_from_known_servers() {
    let (p1, p2) = (free_port(), free_port());
    // The first relay never runs a message sync of its own (its first, at start, finds
    // nothing) and pushes nothing: a packet can reach it only by fetch-back.
    let quiet =
        "message_sync_interval = \"1h\"\nserver_sync_interval = \"1h\"\nbroadcast_fanout = 0";
    let first = Relay::start_at(p1, &mesh_config(p1, &[], quiet));
    // The second relay speaks plain JASPER.md sync (/sync/hashes), which is what the
    // answering side fetches back from; reconciliation would push instead.
    let second = Relay::start_at(
        p2,
        &mesh_config(p2, &[p1], "broadcast_fanout = 0\nreconciliation = false"),
    );
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 7, 100);
    second.send_ok(&p);
    assert!(
        eventually(Duration::from_secs(20), || holds(&first, &p)),
        "the first relay never fetched back from the second"
    );
    // The relay logs a fetch-back after storing what it pulled, so the line can trail the
    // packet by a moment.
    assert!(
        eventually(Duration::from_secs(10), || first
            .log()
            .contains("fetch-back")),
        "the packet arrived, but not by fetch-back: {}",
        first.log()
    );

    // A caller naming a server the relay does not know gets its answer, and nothing else.
    let stranger = common::fake_peer::FakePeer::start(|_, _| {
        common::fake_peer::Answer::Json("{\"messages\":[]}".into())
    });
    let mut resp = common::agent()
        .post(&first.url("/sync/hashes"))
        .header("jasper-server", &stranger.addr.to_string())
        .send_json(json!({ "hashes": ["cd".repeat(32)] }))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.body_mut().read_json().unwrap();
    assert!(!answer["hashes"].as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        stranger.calls("/fetch"),
        0,
        "the relay was made to contact an unknown address"
    );
}

#[test]
fn a_mixed_mesh_of_reconciling_and_plain_relays_converges() {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let relays: Vec<Relay> = (0..4)
        .map(|i| {
            let before: Vec<u16> = if i == 0 { vec![] } else { vec![ports[i - 1]] };
            let reconciliation = if i % 2 == 0 { "true" } else { "false" };
            let extra = format!("broadcast_fanout = 0\nreconciliation = {reconciliation}");
            Relay::start_at(ports[i], &mesh_config(ports[i], &before, &extra))
        })
        .collect();
    let alice = key_b64("alice-4096");
    let packets: Vec<Value> = (0..4).map(|i| packet_for(&alice, 100 + i, 200)).collect();
    for (r, p) in relays.iter().zip(&packets) {
        r.send_ok(p);
    }
    for r in &relays {
        for p in &packets {
            assert!(
                eventually(Duration::from_secs(40), || holds(r, p)),
                "relay {} never got packet {}",
                r.addr,
                p["hash"]
            );
        }
    }
    let logs: String = relays.iter().map(Relay::log).collect();
    assert!(
        logs.contains("method=\"reconcile\""),
        "two reconciling relays reconcile"
    );
    assert!(
        logs.contains("method=\"hashes\""),
        "with a plain relay, /sync/hashes"
    );
    // Only relays that offer reconciliation advertise it.
    assert!(
        relays[0].status()["capabilities"]
            .to_string()
            .contains("reconcile-negentropy-v1")
    );
    assert!(
        !relays[1].status()["capabilities"]
            .to_string()
            .contains("reconcile")
    );
}

#[test]
fn the_reconcile_endpoint_refuses_bad_input() {
    let relay = Relay::start("");
    let (status, body) = relay.post_raw("/sync/reconcile", b"\x61garbage");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("negentropy"));
    let (status, _) = relay.post_raw("/sync/reconcile", &vec![0x61; 400 * 1024]);
    assert_eq!(status, 413);
    let (status, _) = relay.post_raw("/sync/reconcile", b"");
    assert_eq!(status, 400);
    let plain = Relay::start("reconciliation = false");
    let (status, body) = plain.post_raw("/sync/reconcile", b"\x61");
    assert_eq!(status, 404, "{body}");
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
}

/// The one peer `relay` knows, as `GET /peers` shows it.
fn only_peer(relay: &Relay) -> Value {
    let mut resp = common::agent().get(&relay.url("/peers")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.body_mut().read_json().unwrap();
    body["peers"][0].clone()
}

#[test]
fn a_peer_that_was_down_gets_broadcasts_as_soon_as_it_calls_us() {
    // Syncs once an hour: only the peer's own call can end the back-off within the test.
    let (p1, p2) = (free_port(), free_port());
    let slow = "message_sync_interval = \"1h\"\nserver_sync_interval = \"1h\"";
    let r1 = Relay::start_at(p1, &mesh_config(p1, &[p2], slow));
    // r1 tries r2, which is not there yet, and backs off.
    assert!(
        eventually(Duration::from_secs(20), || only_peer(&r1)["state"]
            == "backing-off"),
        "{}",
        only_peer(&r1)
    );
    // r2 comes up and syncs with r1 at once, naming itself.
    let r2 = Relay::start_at(p2, &mesh_config(p2, &[p1], slow));
    assert!(
        eventually(Duration::from_secs(20), || only_peer(&r1)["state"]
            == "healthy"),
        "{}",
        only_peer(&r1)
    );
    // So a packet sent to r1 now is pushed to r2 right away, not after an hour.
    let p = packet_for(&key_b64("alice-4096"), 7, 300);
    r1.send_ok(&p);
    assert!(eventually(Duration::from_secs(10), || holds(&r2, &p)));
}

#[test]
fn relays_sharing_one_redis_take_part_in_the_mesh_as_one_store() {
    use common::redis::RedisServer;
    let redis = RedisServer::start();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let shared = format!("broadcast_fanout = 0\n{}", redis.relay_config("mesh"));
    // A and B share Redis; only A names C, and C (on its own redb) names only A.
    let a = Relay::start_at(pa, &mesh_config(pa, &[pc], &shared));
    let b = Relay::start_at(pb, &mesh_config(pb, &[], &shared));
    let c = Relay::start_at(pc, &mesh_config(pc, &[pa], "broadcast_fanout = 0"));
    let alice = key_b64("alice-4096");

    // Sent to B, which has no peer of its own: C gets it by syncing with A.
    let to_b = packet_for(&alice, 1, 100);
    b.send_ok(&to_b);
    assert!(holds(&a, &to_b), "A serves what B stored");
    assert!(
        eventually(Duration::from_secs(20), || holds(&c, &to_b)),
        "the packet reached C"
    );
    // Sent to C: it reaches the shared store, so B serves it too.
    let to_c = packet_for(&alice, 2, 100);
    c.send_ok(&to_c);
    assert!(
        eventually(Duration::from_secs(20), || holds(&b, &to_c)),
        "the packet reached B through A"
    );
    assert_eq!(b.inbox(&alice).len(), 2);
    assert_eq!(a.status()["messages"], 2);
}

#[test]
fn a_learned_server_that_cannot_be_reached_is_not_handed_out() {
    let honest = Relay::start("");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let relay = Relay::start(&format!(
        "allow_private_peers = true\npeers = [\"{}\"]\nmessage_sync_interval = \"1s\"\nserver_sync_interval = \"1h\"",
        honest.addr
    ));
    // Someone tells the relay of a server that is gone.
    let (status, _) = relay.post(
        "/sync/servers",
        &json!({ "servers": [{"ip": "127.0.0.1", "port": gone.port()}] }),
    );
    assert_eq!(status, 200);
    // Once a sync has failed to reach it, clients and peers asking for servers do not get it.
    let gone = gone.to_string();
    assert!(
        eventually(Duration::from_secs(10), || !known_servers(&relay)
            .contains(&gone)),
        "{:?}",
        known_servers(&relay)
    );
    assert!(known_servers(&relay).contains(&honest.addr.to_string()));
}

#[test]
fn a_relay_with_sync_off_contacts_no_peer_and_still_syncs_with_those_that_call_it() {
    // A configured peer that counts what it is asked.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let watcher = common::fake_peer::FakePeer::start(move |_, _| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        common::fake_peer::Answer::Json(r#"{"hashes": [], "servers": []}"#.into())
    });
    let quiet_port = free_port();
    let quiet = Relay::start_at(
        quiet_port,
        &format!(
            "allow_private_peers = true\npeers = [\"{}\"]\n{}",
            watcher.addr,
            common::QUIET
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || quiet
            .log()
            .contains("message sync is off")),
        "{}",
        quiet.log()
    );
    // A relay that syncs with the quiet one every second brings it its packet.
    let caller_port = free_port();
    // (No broadcast from the caller: the packet must come by the caller's sync round. No
    // server sync either: the quiet relay would name the watcher, and the caller's own calls
    // to it would be counted too.)
    let caller = Relay::start_at(
        caller_port,
        &mesh_config(
            caller_port,
            &[quiet_port],
            "broadcast_fanout = 0\nserver_sync_interval = \"0s\"",
        ),
    );
    let packet = packet_for(&key_b64("alice-4096"), 4242, 100);
    caller.send_ok(&packet);
    assert!(
        eventually(Duration::from_secs(10), || quiet.status()["messages"] == 1),
        "the caller's packet never reached the quiet relay: {}",
        caller.log()
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the quiet relay contacted its configured peer"
    );
    drop(watcher);
}

#[test]
fn a_burst_of_sends_reaches_a_peer_by_broadcast_alone() {
    // No sync rounds anywhere: every packet the peer holds came by a push. The peer keeps the
    // default rate limit (600 requests a minute per address), which must not apply to a relay
    // it knows: 400 pushes come from it within seconds.
    let (peer_port, relay_port) = (free_port(), free_port());
    let peer = Relay::start_at(
        peer_port,
        &format!(
            "allow_private_peers = true\npeers = [\"127.0.0.1:{relay_port}\"]\n{}",
            common::QUIET
        ),
    );
    let relay = Relay::start_at(
        relay_port,
        &format!(
            "allow_private_peers = true\npeers = [\"127.0.0.1:{peer_port}\"]\n\
             message_sync_interval = \"0s\"\nserver_sync_interval = \"0s\"\nrate_limit_per_minute = 0"
        ),
    );
    // Once the broadcaster has read the peers (within a second), every packet goes to it.
    std::thread::sleep(Duration::from_millis(1500));
    let alice = key_b64("alice-4096");
    let packets: Vec<Value> = (0..400)
        .map(|n| packet_for(&alice, 70_000 + n, 200))
        .collect();
    std::thread::scope(|s| {
        for chunk in packets.chunks(50) {
            let relay = &relay;
            s.spawn(move || {
                for p in chunk {
                    relay.send_ok(p);
                }
            });
        }
    });
    assert!(
        eventually(Duration::from_secs(20), || peer.status()["messages"]
            == packets.len()),
        "the peer got {} of {} packets: {}",
        peer.status()["messages"],
        packets.len(),
        relay.log()
    );
}

#[test]
fn a_peer_taking_fewer_hashes_per_request_than_we_hold_still_syncs() {
    // B takes at most 5 hashes in a request; A holds 10 packets, and B one that A lacks.
    let b_port = free_port();
    let b = Relay::start_at(
        b_port,
        &mesh_config(
            b_port,
            &[],
            "max_hashes_per_request = 5\nmessage_sync_interval = \"1h\"\nserver_sync_interval = \"1h\"",
        ),
    );
    let a_port = free_port();
    let a = Relay::start_at(
        a_port,
        &mesh_config(
            a_port,
            &[b_port],
            "broadcast_fanout = 0\nreconciliation = false\nserver_sync_interval = \"1h\"",
        ),
    );
    let alice = key_b64("alice-4096");
    for n in 0..10 {
        a.send_ok(&packet_for(&alice, n, 100));
    }
    let only_b = packet_for(&alice, 100, 100);
    b.send_ok(&only_b);
    assert!(
        eventually(Duration::from_secs(20), || holds(&a, &only_b)),
        "{}",
        a.log()
    );
}
