//! Durability and expiry: what a 200 promises survives `kill -9` and a disk that refuses
//! writes, concurrency loses nothing, packets expire on time and stay gone, and shutdown is
//! graceful.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Relay, agent, eventually, key_b64, packet_for};
use serde_json::{Value, json};

const KEYS: [&str; 4] = ["alice-4096", "bob-4096", "carol-4096", "dave-4096"];

fn fetch_hashes(relay: &Relay, hashes: &[String]) -> HashSet<String> {
    let mut found = HashSet::new();
    for chunk in hashes.chunks(500) {
        let (status, body) = relay.post("/fetch", &json!({ "hashes": chunk }));
        assert_eq!(status, 200, "{body}");
        for m in body["messages"].as_array().unwrap() {
            found.insert(m["hash"].as_str().unwrap().to_owned());
        }
    }
    found
}

#[test]
fn hundreds_of_concurrent_sends_are_all_stored() {
    let relay = Relay::start("rate_limit_per_minute = 0");
    let keys: Vec<String> = KEYS.iter().map(|k| key_b64(k)).collect();
    let url = relay.url("/send");
    let threads = 32;
    let per_thread = 16;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.clone();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut sent = Vec::new();
                for i in 0..per_thread {
                    let n = (t * per_thread + i) as u64;
                    let p = packet_for(&keys[(n % 4) as usize], n, 1500);
                    let mut resp = agent.post(&url).send_json(&p).expect("send");
                    assert_eq!(resp.status().as_u16(), 200);
                    let body: Value = resp.body_mut().read_json().unwrap();
                    assert_eq!(body["stored"], true);
                    sent.push(p["hash"].as_str().unwrap().to_owned());
                }
                sent
            })
        })
        .collect();
    let sent: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(sent.len(), threads * per_thread);
    assert_eq!(relay.status()["messages"], sent.len());
    let per_key: usize = keys.iter().map(|k| relay.inbox(k).len()).sum();
    assert_eq!(per_key, sent.len());
    assert_eq!(fetch_hashes(&relay, &sent).len(), sent.len());
}

#[test]
fn a_fetch_right_after_a_200_sees_the_packet_while_others_send() {
    // Batches share an index commit that reads make first: a packet acknowledged is
    // visible to the very next request, even while other sends keep the writer busy.
    let relay = Relay::start("rate_limit_per_minute = 0");
    let keys: Vec<String> = KEYS.iter().map(|k| key_b64(k)).collect();
    let (send, fetch) = (relay.url("/send"), relay.url("/fetch"));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let (send, fetch, keys) = (send.clone(), fetch.clone(), keys.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for i in 0..16 {
                    let n = 1_000 * t + i;
                    let key = &keys[(n % 4) as usize];
                    let p = packet_for(key, n, 1500);
                    let hash = p["hash"].as_str().unwrap().to_owned();
                    let resp = agent.post(&send).send_json(&p).expect("send");
                    assert_eq!(resp.status().as_u16(), 200);
                    let found: Value = if i % 2 == 0 {
                        agent.post(&fetch).send_json(json!({ "hashes": [hash] }))
                    } else {
                        agent.post(&fetch).send_json(json!({ "recipient": key }))
                    }
                    .expect("fetch")
                    .body_mut()
                    .read_json()
                    .unwrap();
                    let messages = found["messages"].as_array().unwrap();
                    assert!(
                        messages.iter().any(|m| m["hash"] == hash.as_str()),
                        "packet {n} was acknowledged but the next fetch did not see it"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(relay.status()["messages"], 256);
}

#[test]
fn acknowledged_sends_survive_kill_9() {
    acknowledged_sends_survive_kill_9_with("rate_limit_per_minute = 0");
}

/// Durable index commits many times a second: the kill may land in the middle of one.
#[test]
fn acknowledged_sends_survive_kill_9_with_frequent_checkpoints() {
    acknowledged_sends_survive_kill_9_with(
        "rate_limit_per_minute = 0\ncheckpoint_interval = \"100ms\"",
    );
}

/// No durable index commit before the kill (nor from the sweeper, which commits durably when
/// it removes something, and here runs once at start and then not for an hour): every
/// acknowledged packet comes back from the log.
#[test]
fn acknowledged_sends_survive_kill_9_with_no_checkpoint_before_it() {
    let (relay, acked) = acknowledged_sends_survive_kill_9_with(
        "rate_limit_per_minute = 0\ncheckpoint_interval = \"1h\"\nsweep_interval = \"1h\"",
    );
    let log = relay.log();
    let line = log
        .lines()
        .find(|l| l.contains("re-indexed packets from the log"))
        .unwrap_or_else(|| panic!("the restart says it re-read the log:\n{log}"));
    let count: usize = line
        .split("packets=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(
        count >= acked,
        "re-indexed {count} packets, fewer than the {acked} acknowledged"
    );
}

/// Sends from 16 threads until 300 are acknowledged, kills the relay with SIGKILL, restarts it
/// and checks every acknowledged packet is there.
/// Returns the restarted relay and how many packets were acknowledged.
fn acknowledged_sends_survive_kill_9_with(relay_config: &str) -> (Relay, usize) {
    let relay = Relay::start(relay_config);
    let keys: Vec<String> = KEYS.iter().map(|k| key_b64(k)).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = relay.url("/send");
    let stop_at = Instant::now() + Duration::from_secs(30);
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let (url, keys, acked) = (url.clone(), keys.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = t * 1_000_000;
                while Instant::now() < stop_at {
                    n += 1;
                    let p = packet_for(&keys[(n % 4) as usize], n, 2000);
                    match agent.post(&url).send_json(&p) {
                        Ok(resp) if resp.status().as_u16() == 200 => {
                            acked
                                .lock()
                                .unwrap()
                                .push(p["hash"].as_str().unwrap().to_owned());
                        }
                        // The relay died under us: everything acknowledged so far counts.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Let the senders get going, then kill the relay mid-stream.
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < stop_at, "senders made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut relay = relay;
    relay.kill9();
    for h in handles {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let relay = relay.restart();
    eprintln!("{} packets acknowledged before kill -9", acked.len());
    let found = fetch_hashes(&relay, &acked);
    let lost: Vec<_> = acked.iter().filter(|h| !found.contains(*h)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged packets lost",
        lost.len(),
        acked.len()
    );
    // The restarted relay keeps working.
    relay.send_ok(&packet_for(&keys[0], 1, 100));
    (relay, acked.len())
}

#[test]
fn a_torn_log_tail_after_kill_9_is_cut_and_nothing_acknowledged_is_lost() {
    let mut relay = Relay::start("rate_limit_per_minute = 0");
    let alice = key_b64("alice-4096");
    let acked: Vec<String> = (0..40)
        .map(|n| {
            let p = packet_for(&alice, n, 500);
            relay.send_ok(&p);
            p["hash"].as_str().unwrap().to_owned()
        })
        .collect();
    relay.kill9();
    // What a crash in the middle of an unacknowledged append leaves: a partial record.
    let segments = relay.dir.path().join("data").join("segments");
    let newest = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("the relay keeps its packets in segment files");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    file.write_all(&[0x00, 0x10, 0x00, 0x00, 0xde, 0xad])
        .unwrap();
    file.write_all(&[0x42; 700]).unwrap();
    drop(file);

    let relay = relay.restart();
    let found = fetch_hashes(&relay, &acked);
    assert_eq!(
        found.len(),
        acked.len(),
        "every acknowledged packet is there"
    );
    let log = relay.log();
    assert!(log.contains("torn tail"), "{log}");
    assert!(
        log.contains("indexed packets from the log"),
        "the restart re-read the log past the last durable index commit: {log}"
    );
    let kept = std::fs::read_dir(&segments)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".damaged-at-")
        })
        .count();
    assert_eq!(kept, 1, "the cut bytes are kept for the operator");
    // Appends continue on sound data, and survive another restart.
    let more = packet_for(&alice, 1_000, 500);
    relay.send_ok(&more);
    let relay = relay.restart();
    let mut all = acked.clone();
    all.push(more["hash"].as_str().unwrap().to_owned());
    assert_eq!(fetch_hashes(&relay, &all).len(), all.len());
}

#[test]
fn expired_packets_are_swept_and_stay_gone() {
    let relay = Relay::start("retention = \"2s\"\nsweep_interval = \"200ms\"");
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 1, 100);
    relay.send_ok(&p);
    assert_eq!(relay.inbox(&alice).len(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.status()["messages"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not remove the packet"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(relay.inbox(&alice).is_empty());
    let (status, body) = relay.post("/fetch", &json!({ "hashes": [p["hash"]] }));
    assert_eq!(status, 200);
    assert!(body["messages"].as_array().unwrap().is_empty());
    // The same packet sent again is refused: its hash is a tombstone.
    let (status, body) = relay.post("/send", &p);
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("expired"));
    assert!(relay.inbox(&alice).is_empty());
    // The sweep logs after its commit, so the line can trail the packet's removal.
    assert!(
        eventually(Duration::from_secs(10), || relay.log().contains("swept")),
        "the sweep is logged"
    );
    // Other packets are unaffected.
    relay.send_ok(&packet_for(&alice, 2, 100));
}

#[test]
fn a_restart_changes_no_expiry() {
    let relay = Relay::start("retention = \"3s\"\nsweep_interval = \"1h\"");
    let alice = key_b64("alice-4096");
    let sent_at = Instant::now();
    relay.send_ok(&packet_for(&alice, 1, 100));
    std::thread::sleep(Duration::from_millis(1500));
    let relay = relay.restart();
    assert_eq!(relay.inbox(&alice).len(), 1, "still live before its expiry");
    // Had the restart reset the clock, the packet would live until 4.5 s.
    let wait = Duration::from_millis(3800).saturating_sub(sent_at.elapsed());
    std::thread::sleep(wait);
    assert!(
        relay.inbox(&alice).is_empty(),
        "expired at its original time"
    );
}

#[test]
fn sigterm_lets_an_in_flight_send_finish_then_exits_cleanly() {
    let mut relay = Relay::start("");
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 1, 1000).to_string();
    let (head, tail) = p.as_bytes().split_at(p.len() / 2);
    let mut conn = TcpStream::connect(relay.addr).unwrap();
    write!(
        conn,
        "POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        p.len()
    )
    .unwrap();
    conn.write_all(head).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = relay.pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(tail).unwrap();
    let mut answer = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = relay.wait_exit();
    assert!(status.success(), "exit status {status:?}\n{}", relay.log());
    let log = relay.log();
    assert!(
        log.contains("shutdown requested") && log.contains("relay stopped"),
        "{log}"
    );
    let relay = relay.restart();
    assert_eq!(relay.inbox(&alice).len(), 1);
}

/// The largest file under `dir`, in bytes.
fn largest_file(dir: &std::path::Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        largest = largest.max(if meta.is_dir() {
            largest_file(&entry.path())
        } else {
            meta.len()
        });
    }
    largest
}

/// Sets the relay's soft limit on file sizes (`prlimit`, util-linux).
fn limit_file_size(relay: &Relay, soft: &str) {
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(relay.pid().to_string())
        .arg(format!("--fsize={soft}:"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
}

/// What a full disk does to the write path, with a file size limit standing in for it: a
/// write past the limit fails (EFBIG, as a full disk gives ENOSPC; the relay handles SIGXFSZ,
/// which would otherwise kill it). Sends get 503 and nothing else changes: the relay keeps
/// serving what it holds, takes packets again as soon as there is room, without a restart,
/// and after `kill -9` every packet it acknowledged is there.
#[test]
fn a_disk_that_refuses_writes_costs_503s_and_loses_nothing() {
    let relay = Relay::start("rate_limit_per_minute = 0");
    let key = key_b64("alice-4096");
    let acked = std::cell::RefCell::new(Vec::new());
    let mut n = 0;
    let mut send = |relay: &Relay| {
        n += 1;
        let p = packet_for(&key, n, 2000);
        let (status, body) = relay.post("/send", &p);
        if status == 200 {
            acked
                .borrow_mut()
                .push(p["hash"].as_str().unwrap().to_owned());
        }
        (status, body)
    };
    for _ in 0..40 {
        assert_eq!(send(&relay).0, 200);
    }
    // Room for two more packets in the packet log, then none.
    let data = relay.dir.path().join("data");
    let log = std::fs::metadata(data.join("segments/0000000000000001.seg"))
        .unwrap()
        .len();
    assert_eq!(
        largest_file(&data),
        log,
        "the packet log is the largest file"
    );
    limit_file_size(&relay, &(log + 12_000).to_string());
    let mut refused = 0;
    for _ in 0..40 {
        let (status, body) = send(&relay);
        match status {
            200 => assert_eq!(refused, 0, "a 200 after a refusal while still full"),
            503 => {
                assert_eq!(body["error"], "storage is unavailable; retry later");
                refused += 1;
            }
            other => panic!("/send answered {other}: {body}"),
        }
    }
    assert!(refused >= 35, "only {refused} of 40 sends refused");
    assert!(
        relay.log().contains("storing packets failed"),
        "{}",
        relay.log()
    );
    // Still serving what it holds.
    assert_eq!(relay.status()["messages"], acked.borrow().len());
    let inbox = relay.inbox(&key);
    assert_eq!(inbox.len(), acked.borrow().len());

    // Room again: packets are taken at once, no restart needed.
    limit_file_size(&relay, "unlimited");
    for _ in 0..20 {
        let (status, body) = send(&relay);
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(relay.status()["messages"], acked.borrow().len());

    let relay = relay.restart();
    let found = fetch_hashes(&relay, &acked.borrow());
    assert_eq!(
        found.len(),
        acked.borrow().len(),
        "acknowledged packets lost"
    );
    assert_eq!(relay.status()["messages"], acked.borrow().len());
}

/// An I/O error inside redb (a write of the index past a file-size limit, made by the sweeper
/// here) leaves redb refusing every operation until the database is opened again. The relay
/// does that by itself once the disk takes writes again: sends get 503 meanwhile, then 200,
/// without a restart.
#[test]
fn an_io_error_in_the_index_is_healed_without_a_restart() {
    let relay =
        Relay::start("rate_limit_per_minute = 0\nretention = \"4s\"\nsweep_interval = \"300ms\"");
    let key = key_b64("bob-4096");
    for n in 0..100 {
        relay.send_ok(&packet_for(&key, n, 100));
    }
    // Below the index file's size: redb's next write to it fails (the sweeper's, once the
    // packets expire), and so does every append to the packet log.
    let index = std::fs::metadata(relay.dir.path().join("data/relay.redb"))
        .unwrap()
        .len();
    limit_file_size(&relay, &(index / 4).to_string());
    assert!(
        eventually(Duration::from_secs(30), || relay
            .log()
            .contains("the store failed; reopening it")),
        "{}",
        relay.log()
    );
    let (status, body) = relay.post("/send", &packet_for(&key, 1_000, 100));
    assert_eq!(status, 503, "{body}");

    limit_file_size(&relay, "unlimited");
    let fresh = packet_for(&key, 2_000, 100);
    assert!(
        eventually(Duration::from_secs(20), || relay.post("/send", &fresh).0
            == 200),
        "{}",
        relay.log()
    );
    assert!(
        relay.log().contains("reopened the store after a failure"),
        "{}",
        relay.log()
    );
    let found = fetch_hashes(&relay, &[fresh["hash"].as_str().unwrap().to_owned()]);
    assert_eq!(found.len(), 1);
    relay.send_ok(&packet_for(&key, 3_000, 100));
}

#[test]
fn a_client_cannot_shorten_a_packets_life_with_expires() {
    // `expires` passes a packet's expiry from relay to relay. From a client it would let anyone
    // have a packet they read swept early (and its hash refused after) by sending it again
    // with a near expiry to relays that lack it. This relay has no peers: the caller is a client.
    let relay = Relay::start("sweep_interval = \"100ms\"");
    let alice = key_b64("alice-4096");
    let mut p = packet_for(&alice, 1, 100);
    let soon = std::time::SystemTime::now() + Duration::from_secs(1);
    p["expires"] = json!(humantime::format_rfc3339_millis(soon).to_string());
    relay.send_ok(&p);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(relay.inbox(&alice).len(), 1, "the packet was swept early");
    let (_, body) = relay.post("/fetch", &json!({ "hashes": [p["hash"]] }));
    let expires = body["messages"][0]["expires"].as_str().unwrap();
    let expires = humantime::parse_rfc3339(expires).unwrap();
    assert!(
        expires > std::time::SystemTime::now() + Duration::from_secs(6 * 24 * 3600),
        "kept for the relay's retention: {expires:?}"
    );
}

#[test]
fn sigterm_with_a_client_that_never_finishes_still_closes_the_database() {
    // The index is made durable only when the database closes (or once an hour).
    let mut relay = Relay::start("checkpoint_interval = \"1h\"\nrate_limit_per_minute = 0");
    let alice = key_b64("alice-4096");
    for n in 0..5 {
        relay.send_ok(&packet_for(&alice, n, 500));
    }
    // A client that sends half a request and then nothing, within its request timeout.
    let mut stuck = TcpStream::connect(relay.addr).unwrap();
    write!(
        stuck,
        "POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{\"recipient\":"
    )
    .unwrap();
    stuck.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = relay.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", relay.log());
    let log = relay.log();
    assert!(log.contains("closing them"), "{log}");
    assert!(log.contains("relay stopped"), "{log}");
    assert!(!log.contains("did not stop in time"), "{log}");
    assert_index_was_durable(relay, &alice, 5);
    drop(stuck);
}

/// Restarts `relay`: it holds `packets` for `key` and had nothing to index again from the
/// log (the stop left its index durable).
fn assert_index_was_durable(relay: Relay, key: &str, packets: usize) {
    let relay = relay.restart();
    assert_eq!(relay.inbox(key).len(), packets);
    assert!(
        !relay.log().contains("indexed packets from the log"),
        "{}",
        relay.log()
    );
}

#[test]
fn sigterm_while_a_peer_call_hangs_still_makes_the_index_durable() {
    // A peer that accepts connections and never answers: the mesh's calls to it hold the
    // relay's state (and its store) for their whole timeout, past the shutdown.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hung.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut relay = Relay::start(&format!(
        "checkpoint_interval = \"1h\"\nrate_limit_per_minute = 0\nallow_private_peers = true\n\
         peers = [\"127.0.0.1:{hung_port}\"]\nmessage_sync_interval = \"1s\""
    ));
    let alice = key_b64("alice-4096");
    for n in 0..5 {
        relay.send_ok(&packet_for(&alice, n, 500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = relay.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", relay.log());
    assert!(relay.log().contains("relay stopped"), "{}", relay.log());
    // The hung call holds a handle to the writer; the stop does not wait for it.
    assert!(
        !relay.log().contains("the writer did not stop in time"),
        "{}",
        relay.log()
    );
    assert_index_was_durable(relay, &alice, 5);
}
