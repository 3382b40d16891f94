//! `store = "redis"`: the relay over a real `redis-server` on loopback. The API answers as it
//! does over redb; what a 200 promises survives `kill -9` of Redis and of the relay; several
//! relays over one Redis serve the same inboxes; a Redis that could lose acknowledged packets
//! is refused at start, and one that goes away costs 503s, not the relay.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, TlsFiles};
use common::{Relay, agent, eventually, jasper_in, key_b64, packet_for};
use serde_json::{Value, json};

fn inbox_hashes(relay: &Relay, recipient: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    let mut cursor = "0".to_owned();
    loop {
        let (status, page) = relay.post(
            "/fetch",
            &json!({ "recipient": recipient, "since": cursor }),
        );
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap();
        if messages.is_empty() {
            return found;
        }
        for m in messages {
            assert!(found.insert(m["hash"].as_str().unwrap().to_owned()));
        }
        cursor = page["cursor"].as_str().unwrap().to_owned();
    }
}

/// Sends `n` packets to `recipient` from 8 threads; returns the hashes acknowledged with 200
/// (a send that fails, as while Redis is down, is not acknowledged).
fn send_concurrently(relay: &Relay, recipient: &str, first: u64, n: u64) -> Vec<String> {
    let url = relay.url("/send");
    let threads = 8;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, recipient) = (url.clone(), recipient.to_owned());
            std::thread::spawn(move || {
                let agent = agent();
                let mut acked = Vec::new();
                for i in (t..n).step_by(threads as usize) {
                    let p = packet_for(&recipient, first + i, 600);
                    let Ok(mut resp) = agent.post(&url).send_json(&p) else {
                        continue;
                    };
                    if resp.status().as_u16() == 200 {
                        // Stored, or (when another relay took it first) a duplicate.
                        let body: Value = resp.body_mut().read_json().unwrap();
                        assert_eq!(body["hash"], p["hash"], "{body}");
                        acked.push(p["hash"].as_str().unwrap().to_owned());
                    }
                }
                acked
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_relay_on_redis_serves_the_api_as_on_redb() {
    let redis = RedisServer::start();
    let relay = Relay::start(&format!(
        "rate_limit_per_minute = 0\n{}",
        redis.relay_config("api")
    ));
    assert!(
        relay.log().contains("storing packets in Redis"),
        "{}",
        relay.log()
    );
    let alice = key_b64("alice-4096");
    let p1 = packet_for(&alice, 1, 300);
    let first = relay.send_ok(&p1);
    assert_eq!(first["stored"], true);
    let again = relay.send_ok(&p1);
    assert_eq!(again["duplicate"], true, "{again}");

    let (status, page) = relay.post("/fetch", &json!({ "recipient": alice }));
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0], p1, "served as sent");
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let p2 = packet_for(&alice, 2, 300);
    relay.send_ok(&p2);
    let (_, next) = relay.post("/fetch", &json!({ "recipient": alice, "since": cursor }));
    assert_eq!(next["messages"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["messages"][0]["hash"], p2["hash"]);

    let (status, by_hash) = relay.post(
        "/fetch",
        &json!({ "hashes": [p2["hash"], "00".repeat(32), p1["hash"]] }),
    );
    assert_eq!(status, 200);
    let got: Vec<&Value> = by_hash["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["hash"])
        .collect();
    assert_eq!(got, vec![&p2["hash"], &p1["hash"]]);

    let (status, sync) = relay.post("/sync/hashes", &json!({ "hashes": [p1["hash"]] }));
    assert_eq!(status, 200, "{sync}");
    assert!(sync.to_string().contains(p2["hash"].as_str().unwrap()));
    assert_eq!(relay.status()["messages"], 2);

    // Bad input is refused before the store, and the relay goes on serving.
    assert_eq!(relay.post_raw("/send", b"{not json").0, 400);
    let mut wrong = p1.clone();
    wrong["hash"] = json!("ab".repeat(32));
    assert_eq!(relay.post("/send", &wrong).0, 400);
    assert_eq!(relay.post_raw("/send", &vec![b'x'; 2 << 20]).0, 413);
    relay.send_ok(&packet_for(&alice, 3, 300));

    // What the relay wrote is under its prefix only.
    let keys = redis.command(&["DBSIZE"]).unwrap();
    assert!(keys.starts_with(':'), "{keys}");
    assert_eq!(
        redis.command(&[
            "EXISTS",
            &format!("api:pkt:{}", p1["hash"].as_str().unwrap())
        ]),
        Some(":1".into())
    );
}

#[test]
fn acknowledged_packets_survive_kill_9_of_redis_and_of_the_relay() {
    let mut redis = RedisServer::start();
    let mut relay = Relay::start(&format!(
        "rate_limit_per_minute = 0\n{}",
        redis.relay_config("durable")
    ));
    let bob = key_b64("bob-4096");
    let acked = send_concurrently(&relay, &bob, 0, 80);
    assert_eq!(
        acked.len(),
        80,
        "every send is acknowledged while Redis runs"
    );

    // Redis dies in the middle of a stream of sends, and comes back from its files.
    let during = std::thread::scope(|s| {
        let sender = s.spawn(|| send_concurrently(&relay, &bob, 1_000, 2_000));
        std::thread::sleep(Duration::from_millis(400));
        redis.kill9();
        sender.join().unwrap()
    });
    assert!(
        !during.is_empty() && during.len() < 2_000,
        "{}",
        during.len()
    );
    let (status, body) = relay.post("/send", &packet_for(&bob, 10_000, 100));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("storage"),
        "{body}"
    );
    assert_eq!(relay.post("/fetch", &json!({ "recipient": bob })).0, 503);
    let status = agent().get(&relay.url("/status")).call().unwrap();
    assert_eq!(status.status().as_u16(), 503);
    assert!(relay.is_running(), "the relay keeps running without Redis");
    redis.restart();
    let found = inbox_hashes(&relay, &bob);
    let missing: Vec<_> = acked
        .iter()
        .chain(&during)
        .filter(|h| !found.contains(*h))
        .collect();
    assert!(
        missing.is_empty(),
        "lost after kill -9 of Redis: {missing:?}"
    );

    // The relay dies instead, in the middle of more sends; it starts again on the same Redis.
    let pid = relay.pid().to_string();
    let more = std::thread::scope(|s| {
        let sender = s.spawn(|| send_concurrently(&relay, &bob, 5_000, 2_000));
        std::thread::sleep(Duration::from_millis(400));
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        sender.join().unwrap()
    });
    assert!(!more.is_empty() && more.len() < 2_000, "{}", more.len());
    let relay = relay.restart();
    let found = inbox_hashes(&relay, &bob);
    for h in acked.iter().chain(&during).chain(&more) {
        assert!(found.contains(h), "lost after kill -9 of the relay: {h}");
    }
    assert_eq!(
        relay.status()["messages"].as_u64().unwrap() as usize,
        found.len(),
        "the counters agree with the inbox"
    );
}

#[test]
fn relays_sharing_one_redis_serve_the_same_inboxes() {
    let redis = RedisServer::start();
    let config = format!("rate_limit_per_minute = 0\n{}", redis.relay_config("mesh"));
    let (a, b) = (Relay::start(&config), Relay::start(&config));
    let carol = key_b64("carol-4096");

    // Sent through one, read through the other; sent again through the other: a duplicate.
    let p = packet_for(&carol, 1, 200);
    a.send_ok(&p);
    assert_eq!(b.inbox(&carol), vec![p.clone()]);
    assert_eq!(b.send_ok(&p)["duplicate"], true);

    // One sequence: a cursor from one relay is good on the other.
    let (_, page) = a.post("/fetch", &json!({ "recipient": carol }));
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let q = packet_for(&carol, 2, 200);
    b.send_ok(&q);
    let (_, next) = a.post("/fetch", &json!({ "recipient": carol, "since": cursor }));
    assert_eq!(next["messages"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["messages"][0]["hash"], q["hash"]);

    // Both take the same packets at once: each stored once, all of them kept.
    let (from_a, from_b) = std::thread::scope(|s| {
        let x = s.spawn(|| send_concurrently(&a, &carol, 100, 200));
        let y = s.spawn(|| send_concurrently(&b, &carol, 100, 200));
        (x.join().unwrap(), y.join().unwrap())
    });
    let acked: HashSet<String> = from_a.into_iter().chain(from_b).collect();
    assert_eq!(acked.len(), 200);
    let found = inbox_hashes(&b, &carol);
    assert!(acked.is_subset(&found));
    assert_eq!(found.len(), 202);
    assert_eq!(a.status()["messages"], 202);
}

#[test]
fn packets_expire_in_redis_and_stay_gone() {
    let redis = RedisServer::start();
    let relay = Relay::start(&format!(
        "retention = \"2s\"\nsweep_interval = \"200ms\"\n{}",
        redis.relay_config("ttl")
    ));
    let dave = key_b64("dave-4096");
    let p = packet_for(&dave, 1, 100);
    relay.send_ok(&p);
    assert!(
        eventually(Duration::from_secs(20), || relay.status()["messages"] == 0),
        "the sweeper did not remove the packet"
    );
    assert!(relay.inbox(&dave).is_empty());
    let key = format!("ttl:pkt:{}", p["hash"].as_str().unwrap());
    assert_eq!(redis.command(&["EXISTS", &key]), Some(":0".into()));
    let (status, body) = relay.post("/send", &p);
    assert_eq!(status, 410, "{body}");
    relay.send_ok(&packet_for(&dave, 2, 100));
}

#[test]
fn a_redis_weakened_while_the_relay_runs_costs_503s_until_it_is_fixed() {
    let redis = RedisServer::start();
    let relay = Relay::start(&format!(
        "rate_limit_per_minute = 0\n{}",
        redis.relay_config("weak")
    ));
    let erin = key_b64("alice-4096");
    relay.send_ok(&packet_for(&erin, 1, 100));

    assert_eq!(
        redis.command(&["CONFIG", "SET", "appendfsync", "everysec"]),
        Some("+OK".into())
    );
    let late = packet_for(&erin, 2, 100);
    let (status, body) = relay.post("/send", &late);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "storage is unavailable; retry later");
    assert!(
        eventually(Duration::from_secs(5), || relay
            .log()
            .contains("no longer keeps what it acknowledges")),
        "{}",
        relay.log()
    );
    // The operator is told what is wrong; clients are not.
    assert!(
        relay.log().contains("appendfsync everysec"),
        "{}",
        relay.log()
    );
    assert!(!body.to_string().contains("appendfsync"), "{body}");

    assert_eq!(
        redis.command(&["CONFIG", "SET", "appendfsync", "always"]),
        Some("+OK".into())
    );
    relay.send_ok(&late);
    relay.send_ok(&packet_for(&erin, 3, 100));
    assert_eq!(inbox_hashes(&relay, &erin).len(), 3);
}

/// Runs `jasper relay` with this `[relay]` section; it must fail to start. Returns its stderr.
fn relay_refuses(relay_section: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[relay]\nlisten = \"127.0.0.1:0\"\n{relay_section}\n"),
    )
    .unwrap();
    let mut child = jasper_in(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("relay")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = common::wait_timeout(&mut child, Duration::from_secs(30))
        .expect("the relay exits by itself");
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_redis_that_could_lose_acknowledged_packets_is_refused_at_start() {
    let lax = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let stderr = relay_refuses(&lax.relay_config("x"));
    assert!(stderr.contains("appendfsync everysec"), "{stderr}");
    assert!(stderr.contains("appendfsync always"), "{stderr}");

    let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let stderr = relay_refuses(&evicting.relay_config("x"));
    assert!(stderr.contains("allkeys-lru"), "{stderr}");

    // Nothing listening there.
    let gone = RedisServer::start();
    let config = gone.relay_config("x");
    drop(gone);
    let stderr = relay_refuses(&config);
    assert!(
        stderr.contains("is redis-server running there?"),
        "{stderr}"
    );
    assert!(stderr.contains("redis_url"), "{stderr}");

    // Configuration mistakes are named before anything is contacted.
    let stderr = relay_refuses("store = \"redis\"\nredis_url = \"http://127.0.0.1:1\"");
    assert!(stderr.contains("redis_url"), "{stderr}");
    let stderr = relay_refuses("store = \"redis\"\nredis_prefix = \"no spaces\"");
    assert!(stderr.contains("redis_prefix"), "{stderr}");
    let stderr = relay_refuses("store = \"postgres\"");
    assert!(stderr.contains("store"), "{stderr}");

    // Credentials in the URL are not repeated in the error.
    let stderr =
        relay_refuses("store = \"redis\"\nredis_url = \"redis://u:hunter2@127.0.0.1:1/0\"");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_relay_reaches_redis_over_tls_with_its_own_certificate() {
    let tls = TlsFiles::make();
    let redis = RedisServer::start_tls(&tls);
    let lines = |ca: &std::path::Path, with_client: bool| {
        let mut config = format!(
            "{}\nredis_tls_ca = \"{}\"",
            redis.relay_config("tls"),
            ca.display()
        );
        if with_client {
            config.push_str(&format!(
                "\nredis_tls_cert = \"{}\"\nredis_tls_key = \"{}\"",
                tls.client_cert.display(),
                tls.client_key.display()
            ));
        }
        config
    };
    let relay = Relay::start(&lines(&tls.ca, true));
    assert!(
        relay.log().contains("rediss://127.0.0.1:"),
        "{}",
        relay.log()
    );
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 1, 200);
    relay.send_ok(&p);
    assert_eq!(relay.inbox(&alice), vec![p]);

    // Without a client certificate Redis refuses the relay; with another CA the relay refuses
    // Redis. Either way the relay says so and does not start.
    let stderr = relay_refuses(&lines(&tls.ca, false));
    assert!(stderr.contains("CertificateRequired"), "{stderr}");
    assert!(stderr.contains("redis_tls_cert"), "{stderr}");
    let stranger = TlsFiles::make();
    let stderr = relay_refuses(&lines(&stranger.ca, true));
    assert!(stderr.contains("redis_tls_ca"), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");

    // TLS files with a plain URL, half a client identity, an unreadable file, #insecure.
    let plain = format!(
        "store = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"\nredis_tls_ca = \"{}\"",
        redis.port,
        tls.ca.display()
    );
    assert!(relay_refuses(&plain).contains("rediss://"));
    let half = format!(
        "{}\nredis_tls_cert = \"{}\"",
        redis.relay_config("tls"),
        tls.client_cert.display()
    );
    assert!(relay_refuses(&half).contains("set both redis_tls_cert and redis_tls_key"));
    let missing = lines(&tls.dir.path().join("nope.pem"), false);
    assert!(relay_refuses(&missing).contains("cannot read it"));
    let insecure = format!(
        "store = \"redis\"\nredis_url = \"rediss://127.0.0.1:{}/0#insecure\"",
        redis.port
    );
    assert!(relay_refuses(&insecure).contains("without checking its certificate"));
}
