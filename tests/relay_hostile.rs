//! Malformed, oversized, wrong-typed and hostile input: every case gets its status code and a
//! JSON error, and the relay keeps serving afterwards with nothing lost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Relay, key_b64, key_pem, packet_for};
use serde_json::{Value, json};

/// Sends raw bytes on a fresh connection; returns the status code and the rest of the response.
fn raw(relay: &Relay, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the headers and the declared body are in, or the server closes.
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Asserts the relay still stores and serves packets, and that `keep` is still there.
fn still_serving(relay: &Relay, keep: &Value, n: u64) {
    let alice = key_b64("alice-4096");
    relay.send_ok(&packet_for(&alice, 10_000 + n, 64));
    let inbox = relay.inbox(&alice);
    assert!(
        inbox.iter().any(|m| m["hash"] == keep["hash"]),
        "an acknowledged packet was lost"
    );
}

fn assert_error(relay: &Relay, path: &str, body: &[u8], status: u16, needle: &str) {
    let (got, answer) = relay.post_raw(path, body);
    let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    assert_eq!(got, status, "{path} {shown:?} -> {answer}");
    let message = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error for {shown:?}: {answer}"));
    assert!(
        message.contains(needle),
        "{path} {shown:?}: error {message:?} does not mention {needle:?}"
    );
}

fn with(mut packet: Value, field: &str, value: Value) -> Vec<u8> {
    packet[field] = value;
    packet.to_string().into_bytes()
}

#[test]
fn send_refuses_every_malformed_packet_with_a_reason() {
    let relay = Relay::start("max_message_bytes = \"16KiB\"");
    let alice = key_b64("alice-4096");
    let keep = packet_for(&alice, 1, 100);
    relay.send_ok(&keep);
    let good = packet_for(&alice, 2, 100);

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("hash");
    let mut jwe_parts = good.clone();
    jwe_parts["message"] = json!("a.b.c");
    jwe_parts["hash"] = json!(common::sha256_hex("a.b.c"));
    let mut sig_alg = good.clone();
    sig_alg["signature"] = packet_for(&alice, 3, 10)["message"].clone();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"".to_vec(), 400, "not valid JSON"),
        (b"{".to_vec(), 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage".to_vec(), 400, "not valid JSON"),
        (b"[]".to_vec(), 400, "JSON object"),
        (b"\"packet\"".to_vec(), 400, "JSON object"),
        (b"null".to_vec(), 400, "JSON object"),
        (
            missing.to_string().into_bytes(),
            400,
            "missing field `hash`",
        ),
        (
            with(good.clone(), "recipient", json!(42)),
            400,
            "`recipient` must be a string",
        ),
        (
            with(good.clone(), "message", json!(["x"])),
            400,
            "`message` must be a string",
        ),
        (
            with(good.clone(), "signature", json!(null)),
            400,
            "`signature` must be a string",
        ),
        (
            with(good.clone(), "hash", json!({"sha": 1})),
            400,
            "`hash` must be a string",
        ),
        (
            with(good.clone(), "recipient", json!("hello")),
            400,
            "not an RSA public key",
        ),
        (
            with(good.clone(), "recipient", json!(key_pem("small-2048"))),
            400,
            "2048 bits",
        ),
        (
            with(good.clone(), "recipient", json!(key_pem("tiny-1024"))),
            400,
            "1024 bits",
        ),
        (
            with(good.clone(), "hash", json!("0".repeat(64))),
            400,
            "does not match",
        ),
        (
            with(good.clone(), "hash", json!("ABC")),
            400,
            "64 lowercase hex",
        ),
        (
            jwe_parts.to_string().into_bytes(),
            400,
            "5 dot-separated parts",
        ),
        (sig_alg.to_string().into_bytes(), 400, "`signature`"),
        (
            packet_for(&alice, 4, 20_000).to_string().into_bytes(),
            413,
            "at most 16384",
        ),
        (
            with(good.clone(), "signature", json!("x".repeat(20_000))),
            413,
            "`signature`",
        ),
        // Deep nesting is refused by the parser, not by a stack overflow.
        (
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            413,
            "larger than",
        ),
        (
            format!("{{\"x\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
            400,
            "not valid JSON",
        ),
    ];
    for (i, (body, status, needle)) in cases.iter().enumerate() {
        assert_error(&relay, "/send", body, *status, needle);
        if i % 5 == 0 {
            still_serving(&relay, &keep, i as u64);
        }
    }
    still_serving(&relay, &keep, 999);
}

#[test]
fn fetch_and_sync_refuse_malformed_requests() {
    let relay = Relay::start("max_hashes_per_request = 10\nmax_servers_per_request = 5");
    let alice = key_b64("alice-4096");
    let keep = packet_for(&alice, 1, 100);
    relay.send_ok(&keep);
    let h = "a".repeat(64);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/fetch", json!({}), 400, "provide `recipient`"),
        (
            "/fetch",
            json!({"recipient": 5}),
            400,
            "`recipient` must be a string",
        ),
        (
            "/fetch",
            json!({"recipient": "nope"}),
            400,
            "not an RSA public key",
        ),
        (
            "/fetch",
            json!({"recipient": alice, "since": "yesterday"}),
            400,
            "cursor",
        ),
        (
            "/fetch",
            json!({"recipient": alice, "since": 5}),
            400,
            "`since` must be a string",
        ),
        ("/fetch", json!({"hashes": "abc"}), 400, "must be an array"),
        (
            "/fetch",
            json!({"hashes": [1]}),
            400,
            "hashes[0] must be a string",
        ),
        ("/fetch", json!({"hashes": [h, "xyz"]}), 400, "hashes[1]"),
        (
            "/fetch",
            json!({"hashes": vec![h.clone(); 11]}),
            413,
            "at most 10",
        ),
        ("/sync/hashes", json!({}), 400, "missing field `hashes`"),
        (
            "/sync/hashes",
            json!({"hashes": {"a": 1}}),
            400,
            "must be an array",
        ),
        ("/sync/hashes", json!({"hashes": ["zz"]}), 400, "hashes[0]"),
        (
            "/sync/hashes",
            json!({"hashes": vec![h.clone(); 11]}),
            413,
            "at most 10",
        ),
        ("/sync/hashes", json!([1, 2]), 400, "JSON object"),
        ("/sync/servers", json!({}), 400, "missing field `servers`"),
        (
            "/sync/servers",
            json!({"servers": 7}),
            400,
            "must be an array",
        ),
        (
            "/sync/servers",
            json!({"servers": vec![json!({"ip": "a.org", "port": 1}); 6]}),
            413,
            "at most 5",
        ),
    ];
    for (path, body, status, needle) in &cases {
        assert_error(&relay, path, body.to_string().as_bytes(), *status, needle);
    }
    assert_error(&relay, "/fetch", b"not json", 400, "not valid JSON");
    assert_error(&relay, "/sync/hashes", b"", 400, "not valid JSON");
    assert_error(
        &relay,
        "/sync/servers",
        b"{\"servers\":",
        400,
        "not valid JSON",
    );
    // Oversized bodies are refused by size, before parsing.
    let huge = format!(
        "{{\"hashes\":[{}]}}",
        vec![format!("\"{h}\""); 5_000].join(",")
    );
    assert_error(&relay, "/sync/hashes", huge.as_bytes(), 413, "larger than");
    assert_error(&relay, "/fetch", huge.as_bytes(), 413, "larger than");
    still_serving(&relay, &keep, 0);
}

#[test]
fn unknown_routes_and_methods_get_json_errors() {
    let relay = Relay::start("");
    let (status, text) = raw(
        &relay,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    assert!(text.contains("{\"error\":"), "{text}");
    let (status, text) = raw(
        &relay,
        b"GET /send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("{\"error\":"), "{text}");
    let (status, _) = raw(
        &relay,
        b"DELETE /fetch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    let (status, text) = raw(
        &relay,
        b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "{text}");
    let (status, _) = raw(&relay, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(
        status == 400 || status == 0,
        "garbage gets 400 or a closed connection"
    );
    assert_eq!(relay.status()["messages"], 0);
}

#[test]
fn a_declared_huge_body_is_refused_before_reading_it() {
    let relay = Relay::start("");
    let start = Instant::now();
    let (status, text) = raw(
        &relay,
        b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n{",
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body"
    );
}

#[test]
fn a_chunked_body_over_the_limit_is_cut_off() {
    let relay = Relay::start("max_message_bytes = \"4KiB\"");
    let mut request = b"POST /send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = vec![b'a'; 16 * 1024];
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(&relay, &request);
    assert_eq!(status, 413, "{text}");
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
}

#[test]
fn a_client_that_never_finishes_its_request_is_timed_out() {
    let relay = Relay::start("request_timeout = \"1s\"");
    // Headers never finished.
    let mut idle = TcpStream::connect(relay.addr).unwrap();
    idle.write_all(b"POST /send HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Body promised but never sent.
    let mut slow = TcpStream::connect(relay.addr).unwrap();
    slow.write_all(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "idle connection was closed"
    );
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
}

#[test]
fn a_connection_trickling_its_headers_is_closed_before_the_request_timeout() {
    // The default request timeout (30 s) is for bodies; headers get 10 s.
    let relay = Relay::start("");
    let mut trickle = TcpStream::connect(relay.addr).unwrap();
    trickle
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(25)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = trickle.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the connection stayed open {waited:?}"
    );
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
}

#[test]
fn clients_over_their_rate_get_429() {
    let relay = Relay::start("rate_limit_per_minute = 60");
    let alice = key_b64("alice-4096");
    let mut statuses = Vec::new();
    for n in 0..30 {
        let (status, body) = relay.post("/send", &packet_for(&alice, n, 64));
        if status == 429 {
            assert!(body["error"].as_str().unwrap().contains("slow down"));
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + limited, 30, "{statuses:?}");
    assert!(
        (10..=15).contains(&ok),
        "burst of ~10 then limited: {statuses:?}"
    );
    // Everything acknowledged is there.
    assert_eq!(relay.inbox_unlimited_count(&alice), ok);
}

#[test]
fn status_is_rate_limited_like_every_other_request() {
    // Each /status reads the store, which commits the index held for the latest sends: a
    // flood of them must not go unlimited.
    let relay = Relay::start("rate_limit_per_minute = 60");
    let statuses: Vec<(u16, String)> = (0..30)
        .map(|_| {
            raw(
                &relay,
                b"GET /status HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
            )
        })
        .collect();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert!(limited.iter().all(|(_, body)| body.contains("slow down")));
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 429));
}

#[test]
fn advertising_ones_own_address_as_a_server_does_not_lift_the_rate_limit() {
    // Known peers are not rate-limited; a server that was only advertised (anyone can name
    // their own address) is not one until it has served this relay.
    let relay = Relay::start("rate_limit_per_minute = 60\nallow_private_peers = true");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (status, _) = relay.post(
        "/sync/servers",
        &json!({"servers": [{"ip": "127.0.0.1", "port": port}]}),
    );
    assert_eq!(status, 200);
    // The relay reads its peers' addresses once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let statuses: Vec<u16> = (0..30)
        .map(|_| relay.post("/fetch", &json!({"hashes": []})).0)
        .collect();
    assert!(
        statuses.contains(&429),
        "an advertised address went unlimited: {statuses:?}"
    );
}

#[test]
fn a_full_inbox_answers_429_and_keeps_what_it_has() {
    let relay = Relay::start("max_inbox_packets = 3");
    let alice = key_b64("alice-4096");
    for n in 0..3 {
        relay.send_ok(&packet_for(&alice, n, 64));
    }
    let (status, body) = relay.post("/send", &packet_for(&alice, 9, 64));
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("inbox"));
    relay.send_ok(&packet_for(&key_b64("bob-4096"), 9, 64));
    assert_eq!(relay.inbox(&alice).len(), 3);
}

#[test]
fn a_full_store_answers_503() {
    let relay = Relay::start("max_stored_bytes = \"8KiB\"");
    let alice = key_b64("alice-4096");
    relay.send_ok(&packet_for(&alice, 1, 2000));
    let (status, body) = relay.post("/send", &packet_for(&alice, 2, 6000));
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("full"));
    assert_eq!(relay.inbox(&alice).len(), 1);
}

trait InboxCount {
    fn inbox_unlimited_count(&self, key: &str) -> usize;
}

impl InboxCount for Relay {
    /// Counts an inbox through /sync/hashes, which the rate limit of this test does not
    /// leave room for otherwise: the limiter is per address, so wait for a token.
    fn inbox_unlimited_count(&self, key: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.post("/fetch", &json!({ "recipient": key }));
            if status == 200 {
                return body["messages"].as_array().unwrap().len();
            }
            assert!(Instant::now() < deadline, "still rate limited");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn large_requests_in_progress_are_bounded_in_memory_and_small_ones_still_pass() {
    // 16 MiB for requests in progress; large bodies from strangers (not peers) share a
    // quarter of it, which one slow /sync/hashes of 1 MB declared takes whole.
    let relay = Relay::start(
        "max_request_memory = \"16MiB\"\nmax_hashes_per_request = 20000\nrate_limit_per_minute = 0",
    );
    let head = "POST /sync/hashes HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
                Content-Length: 1000000\r\n\r\n{\"hashes\":[";
    let mut slow = TcpStream::connect(relay.addr).unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let body_of = |len: usize, hashes: usize| {
        let hashes: Vec<String> = (0..hashes).map(|n| format!("{n:064x}")).collect();
        let mut body = json!({ "hashes": hashes }).to_string().into_bytes();
        body.resize(len, b' ');
        body
    };
    let large = body_of(1_000_000, 14_000);
    // Refused before its body is read: the relay answers 503 and closes, so the client sees
    // the answer or, still writing, a connection cut; either way it was not taken.
    // `None` for a connection cut while the body was being written.
    let large_status = |relay: &Relay| match common::agent()
        .post(&relay.url("/sync/hashes"))
        .header("content-type", "application/json")
        .send(&large[..])
    {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(ureq::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    };
    assert!(
        matches!(large_status(&relay), Some(503) | None),
        "a second large request from strangers was taken"
    );
    // What the relay is for goes on: sends, and small requests.
    let alice = key_b64("alice-4096");
    relay.send_ok(&packet_for(&alice, 1, 200));
    let (status, _) = relay.post_raw("/sync/hashes", &body_of(60_000, 800));
    assert_eq!(status, 200);
    // Once the slow one ends, large requests are served again.
    slow.shutdown(std::net::Shutdown::Both).unwrap();
    drop(slow);
    assert!(
        common::eventually(Duration::from_secs(10), || large_status(&relay)
            == Some(200)),
        "large requests stayed refused"
    );
}

#[test]
fn requests_whose_bodies_never_come_do_not_hold_memory_for_their_answers() {
    // A /sync/hashes may be answered with 250,000 hashes (~16.75 MB): four of those are more
    // than this relay's 64 MiB for requests in progress. Before its body is whole a request
    // holds only its body's share, so stalled ones (13 bytes declared, none sent) leave room.
    let relay = Relay::start("max_request_memory = \"64MiB\"\nrate_limit_per_minute = 0");
    let head = "POST /sync/hashes HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
                Content-Length: 13\r\n\r\n";
    let mut stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(relay.addr).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A large packet (~135 KB of JSON) is stored, and small requests pass.
    let alice = key_b64("alice-4096");
    relay.send_ok(&packet_for(&alice, 1, 100_000));
    assert_eq!(relay.inbox(&alice).len(), 1);
    // A stalled one that sends its body after all is answered.
    let mut one = stalled.pop().unwrap();
    one.write_all(b"{\"hashes\":[]}").unwrap();
    one.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut one, &mut answer).unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn one_address_gets_a_bounded_share_of_connections() {
    let relay = Relay::start("max_connections_per_ip = 2\nrate_limit_per_minute = 0");
    let first = TcpStream::connect(relay.addr).unwrap();
    let _second = TcpStream::connect(relay.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A third from the same address is closed at once.
    let mut third = TcpStream::connect(relay.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /status HTTP/1.1\r\nHost: relay\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "a third connection was served"
    );
    // One closes: a new one is served.
    drop(first);
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let (status, _) = raw(
                &relay,
                b"GET /status HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
            );
            status == 200
        }),
        "the closed connection's place was not freed"
    );
}

#[test]
fn answers_a_client_stops_reading_are_bounded_in_memory_and_time() {
    // Large answers hold their memory until written: 32 MiB for all of them here, of which
    // answers to clients (not peers) may take half, and one client address an eighth of that
    // (or one answer); a connection that takes too little of its answer for 2 s is closed.
    let relay = Relay::start(
        "max_request_memory = \"32MiB\"\nmax_response_bytes = \"8MiB\"\n\
         request_timeout = \"2s\"\nrate_limit_per_minute = 0",
    );
    let alice = key_b64("alice-4096");
    for n in 0..30 {
        relay.send_ok(&packet_for(&alice, n, 180_000));
    }
    let request = json!({ "recipient": alice }).to_string();
    let head = format!(
        "POST /fetch HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{request}",
        request.len()
    );
    // Asks for Alice's inbox (about 7 MB) from `from`; the connection, and the answer's
    // status. A small receive buffer keeps most of the answer in the relay.
    let ask = |from: [u8; 4]| {
        let mut s = connect_from(from, relay.addr);
        s.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut start = [0u8; 12];
        s.read_exact(&mut start).unwrap();
        let status: u16 = String::from_utf8_lossy(&start[9..]).parse().unwrap();
        (s, status)
    };
    // One address asks and reads only the start: a second large answer to it waits.
    let (first, status) = ask([127, 0, 0, 1]);
    assert_eq!(status, 200);
    assert_eq!(
        ask([127, 0, 0, 1]).1,
        503,
        "one address took two large answers"
    );
    // Another address may (the strangers' half holds two such answers), a third not.
    let (second, status) = ask([127, 0, 1, 1]);
    assert_eq!(status, 200);
    assert_eq!(
        ask([127, 0, 2, 1]).1,
        503,
        "a third large answer was built while two wait to be read"
    );
    // Sends and small answers go on.
    relay.send_ok(&packet_for(&key_b64("bob-4096"), 1, 200));
    let (status, body) = relay.post("/fetch", &json!({ "recipient": key_b64("bob-4096") }));
    assert_eq!(status, 200, "{body}");
    // The stalled connections are closed after the write timeout (they took too little for
    // 2 s), and their answers' memory freed.
    assert!(
        common::eventually(Duration::from_secs(15), || ask([127, 0, 2, 1]).1 == 200),
        "large answers stayed refused"
    );
    drop((first, second));
}

/// A connection to `to` from the loopback address `from`, advertising a small receive window
/// (as a client that reads slowly does).
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else {
        panic!("the relay listens on IPv4 loopback")
    };
    let address = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, remote) = (address(from, 0), address(to.ip().octets(), to.port()));
    let size: libc::c_int = 4096;
    // SAFETY: a socket this function owns until it hands it to TcpStream, and pointers to
    // values of the lengths given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let stream = TcpStream::from_raw_fd(fd);
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let rc = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        stream
    }
}
