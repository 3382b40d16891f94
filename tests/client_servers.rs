//! The relays a client knows and what it asks them: `jasper servers`, learning relays from
//! the mesh (`/sync/servers`), probing them side by side with a short timeout, backing off
//! from relays that do not answer, keeping TX off the inbox relay, and bounding what a relay
//! can make a client remember.

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::fake_peer::{Answer, FakePeer};
use common::home::{Home, alice_and_bob, mesh};
use common::{Relay, free_port, run_jasper};
use serde_json::{Value, json};

/// `jasper servers --json`, one object per relay.
fn servers(home: &Home) -> Vec<Value> {
    home.ok(&["servers", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The relay `home` has given `role` (say "tx bob").
fn relay_with_role(home: &Home, role: &str) -> String {
    servers(home)
        .into_iter()
        .find(|s| s["roles"].as_array().unwrap().iter().any(|r| r == role))
        .unwrap_or_else(|| panic!("no relay has the role {role}"))["server"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A "relay" that accepts connections and never answers; counts the connections.
struct Hung {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Hung {
    fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                // Read whatever comes and say nothing, until the client gives up.
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Hung { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

#[test]
fn a_client_learns_the_mesh_from_its_relay_and_spreads_its_roles_over_it() {
    let (r1, r2) = mesh();
    // Alice starts from r1 alone; r1 knows r2 (its peer).
    let alice = Home::with_config("alice", None, &[r1.addr], "allow_private_servers = true");
    alice.add("bob", "bob-4096");
    let known = servers(&alice);
    let addrs: Vec<&str> = known
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, [r1.addr.to_string(), r2.addr.to_string()]);
    // Learned relays are probed at once, not shown as down until the next command.
    assert!(known.iter().all(|s| s["reachable"] == true), "{known:?}");
    assert_eq!(known[0]["configured"], true);
    assert_eq!(known[1]["configured"], false);
    let shown = alice.ok(&["servers"]);
    assert!(shown.contains("Two relays answer"), "{shown}");
    let r2_line = shown
        .lines()
        .find(|l| l.starts_with(&r2.addr.to_string()))
        .unwrap();
    assert!(r2_line.ends_with("learned"), "{shown}");
    // So sending and reading go through different relays from the first message on.
    alice.send("bob", "hello");
    alice.ok(&["receive"]);
    assert_ne!(
        relay_with_role(&alice, "tx bob"),
        relay_with_role(&alice, "rx you")
    );

    // Loopback and private addresses are learned only when the configuration says so.
    let carol = Home::new("carol", &[r1.addr]);
    let known = servers(&carol);
    assert_eq!(known.len(), 1, "{known:?}");
    assert!(carol.ok(&["servers"]).contains("Only one relay answers"));
}

#[test]
fn a_tx_relay_chosen_when_only_the_inbox_relay_was_known_moves_once_another_is() {
    let (r1, r2) = mesh();
    let (alice, bob) = alice_and_bob(&[r1.addr]);
    let first = alice.send("bob", "while r1 is all alice knows");
    alice.ok(&["receive"]);
    let r1_name = r1.addr.to_string();
    assert_eq!(relay_with_role(&alice, "tx bob"), r1_name);
    assert_eq!(relay_with_role(&alice, "rx you"), r1_name);

    alice.edit_config(
        "request_timeout",
        "allow_private_servers = true\nrequest_timeout",
    );
    // `servers` learns r2, and shows sending to bob on it already.
    alice.ok(&["servers"]);
    assert_eq!(relay_with_role(&alice, "tx bob"), r2.addr.to_string());
    let second = alice.send("bob", "now through r2");
    // The inbox stays where it was (the relay holding it); sending to bob moves off it.
    assert_eq!(relay_with_role(&alice, "rx you"), r1_name);
    assert_eq!(relay_with_role(&alice, "tx bob"), r2.addr.to_string());
    bob.receive_until(|l| {
        [&first, &second]
            .iter()
            .all(|id| l.iter().any(|m| m["id"] == id.as_str()))
    });
}

#[test]
fn a_relay_that_hangs_costs_a_command_one_short_probe_and_then_is_left_alone() {
    let relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let hung = Hung::start();
    let (alice, bob) = alice_and_bob(&[relay.addr, hung.addr]);
    // Requests may take a minute; a probe gives up far sooner.
    alice.edit_config("request_timeout = \"5s\"", "request_timeout = \"60s\"");
    let started = Instant::now();
    let id = alice.send("bob", "past the hung relay");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "send waited {took:?} on a relay that never answers"
    );
    assert_eq!(hung.accepted(), 1);
    // Probed down moments ago, it is not asked again by the next commands.
    alice.send("bob", "again");
    alice.ok(&["receive"]);
    assert_eq!(hung.accepted(), 1);
    // `servers` asks every relay, and says it is down.
    let started = Instant::now();
    let out = alice.ok(&["servers"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(hung.accepted(), 2);
    let line = out
        .lines()
        .find(|l| l.starts_with(&hung.addr.to_string()))
        .unwrap();
    assert!(line.contains("down") && line.contains("down for"), "{out}");
    let listed = servers(&alice);
    let hung_entry = listed
        .iter()
        .find(|s| s["server"] == hung.addr.to_string().as_str())
        .unwrap();
    assert!(hung_entry["down_since"].is_string(), "{listed:?}");
    bob.receive_until(|l| l.iter().any(|m| m["id"] == id.as_str()));
}

#[test]
fn what_a_relay_offers_to_learn_is_bounded() {
    // A relay that offers a thousand relays (closed loopback ports) every time it is asked.
    let status = r#"{"version":"fake","load":0.1,"messages":0,"capabilities":[]}"#;
    let offer: Vec<Value> = (0..1000)
        .map(|i| serde_json::json!({ "ip": "127.0.0.3", "port": 20000 + i }))
        .collect();
    let offer = serde_json::json!({ "servers": offer }).to_string();
    let fake = FakePeer::start(move |path, _| match path {
        "/status" => Answer::Json(status.to_owned()),
        "/sync/servers" => Answer::Json(offer.clone()),
        "/fetch" => Answer::Json(r#"{"messages":[]}"#.to_owned()),
        _ => Answer::Status(404),
    });
    let alice = Home::with_config("alice", None, &[fake.addr], "allow_private_servers = true");
    // At most a hundred from one answer, at most two hundred in all.
    assert_eq!(servers(&alice).len(), 1 + 100);
    assert_eq!(servers(&alice).len(), 1 + 200);
    assert_eq!(servers(&alice).len(), 1 + 200);
    assert_eq!(fake.calls("/sync/servers"), 3);
    // The relay that offered them still carries the roles (the others never answer).
    let (code, _, err) = run_jasper(&["receive"], alice.path());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn servers_says_what_the_relays_give() {
    let (r1, r2) = mesh();
    let alice = Home::new("alice", &[r1.addr, r2.addr]);
    alice.add("bob", "bob-4096");
    alice.send("bob", "hello");
    let out = alice.ok(&["servers"]);
    assert!(out.contains("rx you"), "{out}");
    assert!(out.contains("tx bob"), "{out}");
    assert!(out.contains("Two relays answer"), "{out}");
    let lines: Vec<Value> = alice
        .ok(&["servers", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["reachable"] == true && l["load"].is_number())
    );
    let lonely = Home::new("bob", &[r1.addr]);
    assert!(lonely.ok(&["servers"]).contains("Only one relay answers"));
    // A relay that stops answering shows as down at once, without the load it had.
    let gone = r2.addr.to_string();
    drop(r2);
    let out = alice.ok(&["servers"]);
    let line = out.lines().find(|l| l.starts_with(&gone)).unwrap();
    assert!(line.contains("down") && line.contains("load -"), "{out}");
    assert!(out.contains("Only one relay answers"), "{out}");
}

#[test]
fn a_relay_that_comes_back_is_used_at_once() {
    let mut relay = Relay::start_at(free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob(&[relay.addr]);
    let id = alice.send("bob", "kept on the relay's disk");
    relay.kill9();
    // Probed now, the relay is down; receiving fails as a network failure.
    assert!(bob.ok(&["servers"]).contains("down"));
    let (code, _, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 3, "{err}");
    // Back again: the next command asks it, though it was probed down moments ago.
    let _relay = relay.restart();
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
}

#[test]
fn a_blocked_relay_is_forgotten_never_learned_again_and_its_keys_move() {
    let (r1, r2) = mesh();
    let (r1_name, r2_name) = (r1.addr.to_string(), r2.addr.to_string());
    let (alice, bob) = alice_and_bob(&[r1.addr]);
    alice.edit_config(
        "request_timeout",
        "allow_private_servers = true\nrequest_timeout",
    );
    alice.send("bob", "hello");
    alice.ok(&["receive"]);
    let roles = [
        relay_with_role(&alice, "tx bob"),
        relay_with_role(&alice, "rx you"),
    ];
    assert!(roles.contains(&r2_name), "r2 carries nothing: {roles:?}");

    let out = alice.ok(&["servers", "block", &r2_name]);
    assert!(
        out.contains("it will not be used or learned again"),
        "{out}"
    );
    let listed = servers(&alice);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["server"], r1_name.as_str());
    assert_eq!(listed[1]["server"], r2_name.as_str());
    assert_eq!(listed[1]["blocked"], true);
    // A blocked relay has the fields every relay has (one shape for scripts), and no role.
    let fields = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(fields(&listed[0]), fields(&listed[1]), "{listed:?}");
    assert_eq!(listed[1]["roles"], json!([]), "{listed:?}");
    // Its roles moved to r1, the one relay left, and messages still flow both ways.
    let id = alice.send("bob", "through r1 now");
    bob.receive_until(|l| l.iter().any(|m| m["id"] == id.as_str()));
    let id = bob.send("alice", "to your inbox on r1");
    alice.receive_until(|l| l.iter().any(|m| m["id"] == id.as_str()));
    assert_eq!(relay_with_role(&alice, "tx bob"), r1_name);
    assert_eq!(relay_with_role(&alice, "rx you"), r1_name);
    // r1 names r2 every time it is asked; it is not learned again.
    alice.ok(&["servers"]);
    assert_eq!(
        alice.ok(&["servers", "block", &r2_name]).trim(),
        format!("{r2_name} was blocked already")
    );
    let reachable: Vec<Value> = servers(&alice)
        .into_iter()
        .filter(|s| s["blocked"] == false)
        .collect();
    assert_eq!(reachable.len(), 1, "{reachable:?}");

    // A configured relay is not blocked: the configuration says to use it.
    let (code, _, err) = run_jasper(&["servers", "block", &r1_name], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is in [client] servers"), "{err}");
    let (code, _, err) = run_jasper(&["servers", "block", "not an address"], alice.path());
    assert_eq!(code, 2, "{err}");

    // Unblocked, it is learned again from r1.
    let out = alice.ok(&["servers", "unblock", &r2_name]);
    assert!(out.contains("unblocked"), "{out}");
    let listed = servers(&alice);
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|s| s["blocked"] == false && s["reachable"] == true),
        "{listed:?}"
    );
}

/// Each relay's roles, as `jasper servers --json` lists them.
fn roles_by_relay(home: &Home) -> Vec<(String, Vec<String>)> {
    servers(home)
        .into_iter()
        .map(|s| {
            let roles = s["roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            (s["server"].as_str().unwrap().to_owned(), roles)
        })
        .collect()
}

#[test]
fn with_two_relays_and_two_inboxes_sending_keeps_a_relay_that_reads_none() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    // Bob reads two inboxes (his identity and a receive key), then writes to Alice.
    let bob = Home::with_receive_key("bob", Some("dave"), &relays);
    bob.add("alice", "alice-4096");
    let (code, _, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    bob.send("alice", "hello");
    let roles = roles_by_relay(&bob);
    let sending = roles
        .iter()
        .find(|(_, r)| r.iter().any(|r| r == "tx alice"))
        .unwrap_or_else(|| panic!("no TX relay for alice: {roles:?}"));
    assert!(
        !sending.1.iter().any(|r| r.starts_with("rx")),
        "the relay sending to alice reads one of bob's inboxes: {roles:?}"
    );
    // The copy for bob's other devices goes through his own inbox relay, not beside the
    // packet to alice.
    assert!(
        !roles.iter().any(|(_, r)| r.iter().any(|r| r == "tx you")),
        "{roles:?}"
    );
}

#[test]
fn a_relay_down_for_a_moment_keeps_its_roles() {
    let ports = [free_port(), free_port(), free_port()];
    let mut relays: Vec<Option<Relay>> = ports
        .iter()
        .map(|&p| Some(Relay::start_at(p, "rate_limit_per_minute = 0")))
        .collect();
    let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.as_ref().unwrap().addr).collect();
    let (alice, bob) = alice_and_bob(&addrs);
    bob.send("alice", "first");
    let before = roles_by_relay(&bob);
    let tx = relay_with_role(&bob, "tx alice");
    // The TX relay to alice goes away; a send goes through another meanwhile.
    let i = addrs.iter().position(|a| a.to_string() == tx).unwrap();
    drop(relays[i].take());
    // `servers` probes every relay: this one is seen down.
    let (code, _, err) = run_jasper(&["servers"], bob.path());
    assert_eq!(code, 0, "{err}");
    bob.send("alice", "while it is down");
    // Back at the same address: the roles are where they were, not spread further.
    relays[i] = Some(Relay::start_at(ports[i], "rate_limit_per_minute = 0"));
    assert_eq!(roles_by_relay(&bob), before);
    drop(alice);
}

#[test]
fn relays_at_neighbouring_addresses_count_as_one_operator_for_keeping_roles_apart() {
    // Two relays on one address (one machine can serve any number of ports) and one on
    // another network: sending must not go through the inbox relays' operator.
    let relays = [
        Relay::start_on("127.0.0.1:0", "rate_limit_per_minute = 0"),
        Relay::start_on("127.0.0.1:0", "rate_limit_per_minute = 0"),
        Relay::start_on("127.0.1.1:0", "rate_limit_per_minute = 0"),
    ];
    let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
    let network = |relay: &str| relay.rsplit_once('.').unwrap().0.to_owned();
    // One inbox: it goes to the first relay, and sending to the other operator's.
    let (alice, carol) = alice_and_bob(&addrs);
    carol.send("alice", "hello");
    let (reading, sending) = (
        relay_with_role(&carol, "rx you"),
        relay_with_role(&carol, "tx alice"),
    );
    assert_ne!(
        network(&reading),
        network(&sending),
        "{:?}",
        roles_by_relay(&carol)
    );
    drop(alice);
    // Bob reads two inboxes (his identity and a receive key), then writes to Alice.
    let bob = Home::with_receive_key("bob", Some("dave"), &addrs);
    bob.add("alice", "alice-4096");
    let (code, _, err) = run_jasper(&["receive"], bob.path());
    assert_eq!(code, 0, "{err}");
    bob.send("alice", "hello");
    let roles = roles_by_relay(&bob);
    let reading: Vec<String> = roles
        .iter()
        .filter(|(_, r)| r.iter().any(|r| r.starts_with("rx")))
        .map(|(relay, _)| network(relay))
        .collect();
    assert_eq!(reading.len(), 2, "{roles:?}");
    assert_eq!(
        reading[0], reading[1],
        "the inboxes leave the other operator to sending: {roles:?}"
    );
    let sending = relay_with_role(&bob, "tx alice");
    assert!(
        !reading.contains(&network(&sending)),
        "the relay sending to alice is of the operator reading bob's inboxes: {roles:?}"
    );
}

#[test]
fn a_relay_that_answers_with_floods_of_junk_gets_ten_lines_and_a_count() {
    // A hostile inbox relay answers a fetch with 20,000 things that are not packets.
    let junk = format!("{{\"messages\":[{}{{}}]}}", "{},".repeat(19_999));
    let fake = FakePeer::start(move |path, _| match path {
        "/status" => {
            Answer::Json(r#"{"version":"x","load":0.1,"messages":0,"capabilities":[]}"#.to_owned())
        }
        "/sync/servers" => Answer::Json(r#"{"servers":[]}"#.to_owned()),
        "/fetch" => Answer::Json(junk.clone()),
        _ => Answer::Status(404),
    });
    let bob = Home::new("bob", &[fake.addr]);
    let (code, out, err) = run_jasper(&["receive", "--json"], bob.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().is_empty(), "{out}");
    let described = err.matches("warning: skipped packet").count();
    assert_eq!(described, 10, "{err}");
    assert!(
        err.contains("and 19990 more packets skipped"),
        "{}",
        &err[err.len().saturating_sub(300)..]
    );
}

#[test]
fn a_relay_saying_more_without_moving_its_cursor_is_not_asked_again_and_again() {
    let fake = FakePeer::start(move |path, _| match path {
        "/status" => Answer::Json(
            r#"{"version":"x","load":0.1,"messages":0,"capabilities":["fetch-cursor"]}"#.to_owned(),
        ),
        "/sync/servers" => Answer::Json(r#"{"servers":[]}"#.to_owned()),
        "/fetch" => Answer::Json(r#"{"messages":[],"cursor":"5","more":true}"#.to_owned()),
        _ => Answer::Status(404),
    });
    let bob = Home::new("bob", &[fake.addr]);
    let (code, _, err) = run_jasper(&["receive"], bob.path());
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no new cursor"), "{err}");
    assert!(
        fake.calls("/fetch") <= 3,
        "{} fetches",
        fake.calls("/fetch")
    );
}
