//! Mesh benchmarks with real `jasper relay` processes on loopback:
//!
//! - `reconcile`: two relays holding 100,000 packets each with 1,000 differences; bytes spent
//!   finding the difference and time until both hold everything, `/sync/hashes` against set
//!   reconciliation, side by side, for differences that are recent (the normal case) and
//!   spread evenly over the expiry range.
//! - `spread`: a 10-relay mesh (random connected topology): time until every relay holds a
//!   packet sent to one of them, by broadcast alone (sync every hour) and by sync alone
//!   (broadcast off, sync every 2 s).
//! - `burst`: two relays that know each other, sync off; 2,000 packets sent to one from 16
//!   connections at once; time until the other holds them all (by broadcast alone), with the
//!   receiving relay's default rate limit (`JASPER_BENCH_UNLIMITED=1`: none).
//!
//! `cargo bench --bench mesh`; `JASPER_BENCH=reconcile,spread,burst`, `JASPER_BENCH_ROUNDS`
//! (default 5), `JASPER_BENCH_PACKETS` (default 100,000), `JASPER_BENCH_DIFF` (1,000).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    KEYS, RelayProcess, UNLIMITED, agent, env_num, holds, inboxes, key, median, message_count,
    packet,
};
use jasper::proto::PacketHash;
use jasper::relay::store::{NewPacket, RedbStore, Store};

/// A free port below the ephemeral range.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let port = 21_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 8_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Fills a relay database with the packets `indices` (packet n expires at `expiry(n)`).
fn fill(dir: &Path, indices: impl Iterator<Item = u64>, expiry: &dyn Fn(u64) -> u64) {
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let rcpt = inboxes(&keys);
    let store = RedbStore::open(dir, 64 << 20).unwrap();
    let limits = UNLIMITED;
    let mut batch = Vec::with_capacity(10_000);
    let flush = |batch: &mut Vec<NewPacket>| {
        store.put_batch(batch, limits, 0).unwrap();
        batch.clear();
    };
    for n in indices {
        let json = packet(&keys[(n % 4) as usize], n, 16, 300);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        batch.push(NewPacket {
            hash: PacketHash::parse(v["hash"].as_str().unwrap()).unwrap(),
            recipient: rcpt[(n % 4) as usize],
            expires_at: expiry(n),
            json,
        });
        if batch.len() == 10_000 {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
}

/// Copies a relay's data directory (the index file and the `segments` log) recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Parses `key=value` out of a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

/// One sync between two prepared databases; returns (discovery bytes, seconds to converge).
fn converge(a_dir: &Path, b_dir: &Path, reconciliation: bool, total: u64) -> (u64, f64) {
    let (pa, pb) = (free_port(), free_port());
    let common = format!(
        "allow_private_peers = true\nbroadcast_fanout = 0\nrate_limit_per_minute = 0\n\
         message_sync_interval = \"1h\"\nserver_sync_interval = \"1h\"\n\
         max_inbox_packets = 1000000\nreconciliation = {reconciliation}\n"
    );
    // B first (its own first sync finds A down); then A, whose first sync is the one measured.
    let b = RelayProcess::start(
        b_dir,
        &format!("[relay]\nlisten = \"127.0.0.1:{pb}\"\npeers = [\"127.0.0.1:{pa}\"]\n{common}"),
    );
    let started = Instant::now();
    let a = RelayProcess::start(
        a_dir,
        &format!(
            "[relay]\nlisten = \"127.0.0.1:{pa}\"\npublic_address = \"127.0.0.1:{pa}\"\n\
             peers = [\"127.0.0.1:{pb}\"]\n{common}"
        ),
    );
    let http = agent();
    let deadline = Instant::now() + Duration::from_secs(300);
    while message_count(&http, a.addr) < total || message_count(&http, b.addr) < total {
        assert!(Instant::now() < deadline, "no convergence in 5 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    // The sync's log line follows its last store by a moment.
    let logged = Instant::now() + Duration::from_secs(10);
    while a.lines_with("message sync peer=").is_empty() && Instant::now() < logged {
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = a
        .lines_with("message sync peer=")
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            panic!(
                "the first relay logged no sync:\n{}\n--- second:\n{}",
                a.log.lock().unwrap().join("\n"),
                b.log.lock().unwrap().join("\n")
            )
        });
    let bytes = field(&line, "discovery_bytes").expect("discovery_bytes in the log");
    (bytes, seconds)
}

fn bench_reconcile(rounds: u64) {
    let n = env_num("JASPER_BENCH_PACKETS", 100_000);
    let diff = env_num("JASPER_BENCH_DIFF", 1_000);
    let now = jasper::relay::clock::now_ms();
    let span = 6 * 24 * 3600 * 1000u64;
    println!(
        "## set reconciliation: two relays with {n} packets each and {diff} differences ({} only on each side)",
        diff / 2
    );
    for case in ["recent", "spread"] {
        // Packets 0..n-diff/2 are common; then diff/2 only on A and diff/2 only on B.
        let common = n - diff / 2;
        let total = common + diff;
        let expiry = move |i: u64| -> u64 {
            let pos = match case {
                // Differences are the newest packets: they arrived since the last sync.
                "recent" => i,
                // Differences are scattered evenly among the common packets.
                _ if i >= common => (i - common) * (common / diff.max(1)) * 2 + 1,
                _ => i * 2,
            };
            now + span / 2 + pos * (span / 2) / (2 * total)
        };
        let base = tempfile::tempdir_in(
            std::env::var_os("JASPER_BENCH_TMP").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .unwrap();
        let (a0, b0) = (base.path().join("a0"), base.path().join("b0"));
        let t = Instant::now();
        fill(&a0, (0..common).chain(common..common + diff / 2), &expiry);
        fill(&b0, (0..common).chain(common + diff / 2..total), &expiry);
        println!(
            "case {case}: databases filled in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let (mut hb, mut rb, mut ht, mut rt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let run = |reconciliation: bool| {
                let dir = base.path().join(format!("r{round}-{reconciliation}"));
                let (a, b) = (dir.join("a"), dir.join("b"));
                copy_dir(&a0, &a);
                copy_dir(&b0, &b);
                let result = converge(&a, &b, reconciliation, total);
                let _ = std::fs::remove_dir_all(&dir);
                result
            };
            let (h_bytes, h_secs) = run(false);
            let (r_bytes, r_secs) = run(true);
            println!(
                "round {round}: /sync/hashes {h_bytes} B in {h_secs:.2} s; reconciliation {r_bytes} B in {r_secs:.2} s; bytes ratio {:.4}",
                r_bytes as f64 / h_bytes as f64
            );
            hb.push(h_bytes as f64);
            rb.push(r_bytes as f64);
            ht.push(h_secs);
            rt.push(r_secs);
        }
        let (h, r) = (median(hb), median(rb));
        let target = if case == "recent" {
            "<= 0.01"
        } else {
            "<= 0.15"
        };
        println!(
            "median {case}: /sync/hashes {h:.0} B, {:.2} s to converge; reconciliation {r:.0} B, {:.2} s; bytes ratio {:.4} (target {target})\n",
            median(ht),
            median(rt),
            r / h
        );
    }
}

/// A random connected topology: relay i is configured with one or two earlier relays.
fn topology(n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rand = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    (0..n)
        .map(|i| {
            if i == 0 {
                return vec![];
            }
            let mut peers = vec![rand(i)];
            if i > 1 && rand(2) == 0 {
                let other = rand(i);
                if !peers.contains(&other) {
                    peers.push(other);
                }
            }
            peers
        })
        .collect()
}

/// Seconds until all of a fresh 10-relay mesh hold a packet sent to relay 0.
fn spread_once(round: u64, broadcast: bool) -> f64 {
    let n = 10;
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let topo = topology(n, round + 1);
    let base = tempfile::tempdir().unwrap();
    let sync = if broadcast {
        "message_sync_interval = \"1h\"\nbroadcast_fanout = 8"
    } else {
        "message_sync_interval = \"2s\"\nbroadcast_fanout = 0"
    };
    let relays: Vec<RelayProcess> = (0..n)
        .map(|i| {
            let peers: Vec<String> = topo[i]
                .iter()
                .map(|j| format!("\"127.0.0.1:{}\"", ports[*j]))
                .collect();
            RelayProcess::start(
                &base.path().join(format!("r{i}")),
                &format!(
                    "[relay]\nlisten = \"127.0.0.1:{}\"\npublic_address = \"127.0.0.1:{}\"\n\
                     peers = [{}]\nallow_private_peers = true\nserver_sync_interval = \"1s\"\n{sync}\n",
                    ports[i],
                    ports[i],
                    peers.join(",")
                ),
            )
        })
        .collect();
    // Let every relay learn its neighbours (server sync runs every second).
    std::thread::sleep(Duration::from_secs(3));
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let body = packet(&keys[0], 9_000_000 + round, 16, 300);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let hash = PacketHash::parse(v["hash"].as_str().unwrap()).unwrap();
    let http = agent();
    let start = Instant::now();
    let resp = http
        .post(&format!("http://{}/send", relays[0].addr))
        .send(body.as_slice())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut missing: Vec<usize> = (1..n).collect();
    while !missing.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the packet never reached {missing:?}"
        );
        missing.retain(|i| !holds(&http, relays[*i].addr, &hash));
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed().as_secs_f64()
}

fn bench_spread(rounds: u64) {
    println!(
        "## a 10-relay mesh (random connected topology): time until every relay holds a new packet, {rounds} rounds"
    );
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let by_broadcast = spread_once(round, true);
        let by_sync = spread_once(round, false);
        println!(
            "round {round}: broadcast alone {by_broadcast:.3} s; sync alone (every 2 s) {by_sync:.2} s ({:.2} intervals)",
            by_sync / 2.0
        );
        b.push(by_broadcast);
        s.push(by_sync);
    }
    println!(
        "median: broadcast alone {:.3} s (target < 2 s); sync alone {:.2} s = {:.2} sync intervals (target <= 2)\n",
        median(b),
        median(s.clone()),
        median(s) / 2.0
    );
}

/// Seconds until the second of two relays holds a burst of `n` packets sent to the first
/// (broadcast alone), or `None` if it holds fewer after 30 s (and how many).
fn burst_once(round: u64, n: u64) -> (Option<f64>, u64) {
    let (pa, pb) = (free_port(), free_port());
    let base = tempfile::tempdir().unwrap();
    let config = |me: u16, peer: u16, extra: &str| {
        format!(
            "[relay]\nlisten = \"127.0.0.1:{me}\"\npublic_address = \"127.0.0.1:{me}\"\n\
             peers = [\"127.0.0.1:{peer}\"]\nallow_private_peers = true\n\
             message_sync_interval = \"0s\"\nserver_sync_interval = \"0s\"\n{extra}\n"
        )
    };
    let a = RelayProcess::start(
        &base.path().join("a"),
        &config(pa, pb, "rate_limit_per_minute = 0"),
    );
    // JASPER_BENCH_UNLIMITED=1 lifts the receiving relay's rate limit too (to compare the
    // push machinery alone with builds that limited pushes from peers).
    let b_extra = if env_num("JASPER_BENCH_UNLIMITED", 0) == 1 {
        "rate_limit_per_minute = 0"
    } else {
        ""
    };
    let b = RelayProcess::start(&base.path().join("b"), &config(pb, pa, b_extra));
    // The broadcaster reads its peers once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| packet(&keys[(i % 4) as usize], round * 1_000_000 + i, 16, 300))
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for chunk in bodies.chunks(bodies.len().div_ceil(16)) {
            let addr = a.addr;
            s.spawn(move || {
                let http = agent();
                for body in chunk {
                    let resp = http
                        .post(&format!("http://{addr}/send"))
                        .send(body.as_slice())
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                }
            });
        }
    });
    let http = agent();
    loop {
        let held = message_count(&http, b.addr);
        if held >= n {
            return (Some(start.elapsed().as_secs_f64()), held);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return (None, held);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bench_burst(rounds: u64) {
    let n = 2_000;
    println!(
        "## a burst of {n} packets from 16 connections to one of two relays: time until the other holds them, by broadcast alone, {rounds} rounds"
    );
    let mut times = Vec::new();
    for round in 0..rounds {
        match burst_once(round, n) {
            (Some(secs), _) => {
                println!("round {round}: {secs:.2} s");
                times.push(secs);
            }
            (None, held) => println!("round {round}: only {held} of {n} after 30 s"),
        }
    }
    if !times.is_empty() {
        println!(
            "median of the rounds that completed: {:.2} s\n",
            median(times)
        );
    }
}

fn main() {
    let which = std::env::var("JASPER_BENCH").unwrap_or_else(|_| "reconcile,spread,burst".into());
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5);
    println!("# jasper mesh benchmarks\n");
    for part in which.split(',') {
        match part.trim() {
            "reconcile" => bench_reconcile(rounds),
            "spread" => bench_spread(rounds),
            "burst" => bench_burst(rounds),
            "" => {}
            other => eprintln!("unknown benchmark {other:?}"),
        }
    }
}
