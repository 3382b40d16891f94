//! The relay's REST API as JASPER.md and PROTOCOL.md describe it, against the real binary.

mod common;

use common::{Relay, key_b64, key_pem, packet_for};
use serde_json::{Value, json};

fn hashes_of(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["hash"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn status_reports_version_load_count_and_capabilities() {
    let relay = Relay::start("");
    let status = relay.status();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let load = status["load"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&load), "{status}");
    assert_eq!(status["messages"], 0);
    assert!(
        status["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("fetch-cursor"))
    );
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
    assert_eq!(relay.status()["messages"], 1);
}

#[test]
fn send_then_fetch_by_recipient_and_by_hashes() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let bob = key_b64("bob-4096");
    let p1 = packet_for(&alice, 1, 300);
    let p2 = packet_for(&alice, 2, 300);
    let p3 = packet_for(&bob, 3, 300);
    for p in [&p1, &p2, &p3] {
        let answer = relay.send_ok(p);
        assert_eq!(answer["hash"], p["hash"]);
        assert_eq!(answer["stored"], true);
    }

    let inbox = relay.inbox(&alice);
    assert_eq!(
        hashes_of(&inbox),
        vec![p1["hash"].clone(), p2["hash"].clone()]
    );
    // The four fields come back exactly as sent.
    for field in ["recipient", "message", "hash", "signature"] {
        assert_eq!(inbox[0][field], p1[field], "{field}");
    }

    // By hashes (server style): unknown hashes are simply absent, `expires` is added.
    let unknown = "0".repeat(64);
    let (status, body) = relay.post(
        "/fetch",
        &json!({ "hashes": [p3["hash"], unknown, p1["hash"]] }),
    );
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        hashes_of(messages),
        vec![p3["hash"].clone(), p1["hash"].clone()]
    );
    let expires = messages[0]["expires"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.contains('T'), "{expires}");
    assert_eq!(messages[0]["message"], p3["message"]);
}

#[test]
fn recipient_is_checked_before_hashes() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let bob = key_b64("bob-4096");
    let pa = packet_for(&alice, 1, 100);
    let pb = packet_for(&bob, 2, 100);
    relay.send_ok(&pa);
    relay.send_ok(&pb);
    let (status, body) = relay.post(
        "/fetch",
        &json!({ "recipient": alice, "hashes": [pb["hash"]] }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        hashes_of(body["messages"].as_array().unwrap()),
        vec![pa["hash"].clone()]
    );
}

#[test]
fn pem_and_base64_recipients_name_one_inbox() {
    let relay = Relay::start("");
    let pem = key_pem("carol-4096");
    let b64 = key_b64("carol-4096");
    let p1 = packet_for(&pem, 1, 100);
    let p2 = packet_for(&b64, 2, 100);
    relay.send_ok(&p1);
    relay.send_ok(&p2);
    let by_b64 = relay.inbox(&b64);
    let by_pem = relay.inbox(&pem);
    assert_eq!(by_b64.len(), 2);
    assert_eq!(by_b64, by_pem);
    // Stored in the canonical form, whatever form was sent.
    assert_eq!(by_b64[0]["recipient"], b64);
}

#[test]
fn duplicate_sends_are_idempotent() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 7, 200);
    assert_eq!(relay.send_ok(&p)["stored"], true);
    let again = relay.send_ok(&p);
    assert_eq!(again["stored"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(relay.inbox(&alice).len(), 1);
    assert_eq!(relay.status()["messages"], 1);
}

#[test]
fn fetching_never_deletes() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    relay.send_ok(&packet_for(&alice, 1, 100));
    let first = relay.inbox(&alice);
    let second = relay.inbox(&alice);
    assert_eq!(first.len(), 1);
    assert_eq!(first, second, "a second device reads the same inbox");
}

#[test]
fn fetch_cursor_returns_only_what_is_new() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let bob = key_b64("bob-4096");
    for n in 0..3 {
        relay.send_ok(&packet_for(&alice, n, 100));
    }
    let (_, first) = relay.post("/fetch", &json!({ "recipient": alice, "since": "0" }));
    assert_eq!(first["messages"].as_array().unwrap().len(), 3);
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    assert_eq!(first["more"], false);

    let (_, none) = relay.post("/fetch", &json!({ "recipient": alice, "since": cursor }));
    assert!(none["messages"].as_array().unwrap().is_empty());
    assert_eq!(none["cursor"], cursor.as_str(), "no news keeps the cursor");

    relay.send_ok(&packet_for(&bob, 10, 100)); // someone else's packet moves nothing for alice
    let newer = packet_for(&alice, 11, 100);
    relay.send_ok(&newer);
    let (_, next) = relay.post("/fetch", &json!({ "recipient": alice, "since": cursor }));
    assert_eq!(
        hashes_of(next["messages"].as_array().unwrap()),
        vec![newer["hash"].clone()]
    );
    // Without `since` the answer is the whole inbox, as JASPER.md describes.
    assert_eq!(relay.inbox(&alice).len(), 4);
}

#[test]
fn large_inboxes_are_paged_by_response_size() {
    let relay = Relay::start("max_message_bytes = \"8KiB\"\nmax_response_bytes = \"40KiB\"");
    let alice = key_b64("alice-4096");
    for n in 0..20 {
        relay.send_ok(&packet_for(&alice, n, 4000));
    }
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = relay.post("/fetch", &json!({ "recipient": alice, "since": cursor }));
        assert_eq!(status, 200);
        seen.extend(hashes_of(page["messages"].as_array().unwrap()));
        cursor = page["cursor"].as_str().unwrap().to_owned();
        pages += 1;
        if page["more"] == false {
            break;
        }
        assert!(pages < 20, "paging must end");
    }
    assert!(
        pages > 1,
        "a 40 KiB answer cannot hold 20 packets of 5+ KiB"
    );
    assert_eq!(seen.len(), 20);
}

#[test]
fn sync_hashes_answers_what_the_caller_lacks() {
    let relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let ps: Vec<Value> = (0..4).map(|n| packet_for(&alice, n, 100)).collect();
    for p in &ps {
        relay.send_ok(p);
    }
    let (status, body) = relay.post(
        "/sync/hashes",
        &json!({ "hashes": [ps[0]["hash"], ps[2]["hash"], "f".repeat(64)] }),
    );
    assert_eq!(status, 200, "{body}");
    let mut got: Vec<String> = body["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut expected = vec![
        ps[1]["hash"].as_str().unwrap().to_owned(),
        ps[3]["hash"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let (_, empty) = relay.post("/sync/hashes", &json!({ "hashes": [] }));
    assert_eq!(empty["hashes"].as_array().unwrap().len(), 4);
}

fn server_set(body: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ip"].as_str().unwrap().to_owned(),
                s["port"]
                    .as_str()
                    .expect("port emitted as a string")
                    .to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sync_servers_exchanges_lists_and_skips_bad_entries() {
    let relay = Relay::start(&format!(
        "peers = [\"relay-a.example.org:8080\"]\npublic_address = \"me.example.org:8080\"\n{}",
        common::QUIET
    ));
    let (status, body) = relay.post(
        "/sync/servers",
        &json!({ "servers": [
            {"ip": "relay-b.example.org", "port": "9000"},
            {"ip": "45.33.32.156", "port": 443},
            {"ip": "2606:4700::1111", "port": "8443"},
            {"ip": "not a host!", "port": 1},
            {"ip": "relay-c.example.org", "port": 99999},
            {"ip": "10.0.0.1", "port": 8080},
            {"ip": "127.0.0.1", "port": 8080},
            {"ip": "me.example.org", "port": 8080},
            "garbage",
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    // We answer with what we know and they did not send.
    assert_eq!(
        server_set(&body),
        vec![("relay-a.example.org".to_owned(), "8080".to_owned())]
    );
    // What we learned: valid public entries only, never ourselves, never private ranges.
    let (_, known) = relay.post("/sync/servers", &json!({ "servers": [] }));
    assert_eq!(
        server_set(&known),
        vec![
            ("2606:4700::1111".to_owned(), "8443".to_owned()),
            ("45.33.32.156".to_owned(), "443".to_owned()),
            ("relay-a.example.org".to_owned(), "8080".to_owned()),
            ("relay-b.example.org".to_owned(), "9000".to_owned()),
        ]
    );
}

#[test]
fn private_peers_are_learned_only_when_allowed() {
    let relay = Relay::start("allow_private_peers = true");
    // Two relays on loopback (real ones: a server that does not answer is not handed out).
    let (a, b) = (Relay::start(""), Relay::start(""));
    let (status, _) = relay.post(
        "/sync/servers",
        &json!({ "servers": [
            {"ip": "127.0.0.1", "port": a.addr.port().to_string()},
            {"ip": "127.0.0.1", "port": b.addr.port()},
        ] }),
    );
    assert_eq!(status, 200);
    let (_, known) = relay.post("/sync/servers", &json!({ "servers": [] }));
    assert_eq!(server_set(&known).len(), 2);
    // ...but never the relay's own listening address.
    let own = json!({ "servers": [{"ip": "127.0.0.1", "port": relay.addr.port()}] });
    relay.post("/sync/servers", &own);
    let (_, known) = relay.post("/sync/servers", &json!({ "servers": [] }));
    assert_eq!(server_set(&known).len(), 2);
}

#[test]
fn known_servers_are_bounded() {
    let relay = Relay::start(&format!("max_known_servers = 3\n{}", common::QUIET));
    let many: Vec<Value> = (1..=10)
        .map(|n| json!({"ip": format!("relay{n}.example.org"), "port": 8080}))
        .collect();
    relay.post("/sync/servers", &json!({ "servers": many }));
    let (_, known) = relay.post("/sync/servers", &json!({ "servers": [] }));
    assert_eq!(server_set(&known).len(), 3);
}
