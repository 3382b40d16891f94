//! Relay benchmarks, each run side by side with its ceiling on the same machine:
//!
//! - `send`: `/send` throughput with ~2 KiB packets at 64 keep-alive connections, against the
//!   same HTTP stack (our accept loop + warp) answering an empty handler with the same bodies
//!   (the ceiling), and against that stack writing each body into a file written with zeros
//!   beforehand and answering after a group `fdatasync` (the durable floor: what durability
//!   alone costs here), and against that floor validating each body as the relay does before
//!   appending it (the checked floor: what any durable relay that checks its packets can reach,
//!   with no index at all). Each side also reports the p50, p99 and longest latency of its
//!   requests, so that stalls (the relay's durable index checkpoints) show.
//! - `send-engines`: the same `/send` load on the relay over redb and over Redis
//!   (`store = "redis"`, a `redis-server` with `appendfsync always` started per round), beside
//!   the ceiling; `fetch-engines`, the `fetch` below on both engines. Not in the default set:
//!   they need `redis-server` installed.
//! - `fetch`: `/fetch` latency for a recipient holding 1,000 packets, against the same stack
//!   answering a prepared body of the same size.
//! - `fetch-load`: the same `/fetch` on one relay, idle against while 64 connections send to
//!   other recipients (a read first commits the index the write path holds).
//! - `store`: the per-packet cost of the store's durable batch insert, against one bare redb
//!   insert of the same bytes.
//! - `keys`: recipient-key validation against the `rsa` crate's full key constructor.
//! - `validate`: a whole `/send` body validated with the recipient key parsed each time against
//!   taken from the relay's key cache.
//! - `rss`: resident memory of the real `jasper relay` binary holding 1,000,000 packets, against
//!   the same binary holding none.
//!
//! `cargo bench --bench relay` runs all; `JASPER_BENCH=send,fetch,rss`, `JASPER_BENCH_ROUNDS`
//! (default 5), `JASPER_BENCH_SECS` (default 5) and `JASPER_BENCH_RSS_PACKETS` (default
//! 1,000,000) adjust it; `JASPER_BENCH_PRELOAD=N` starts each `/send` run of the relay on a
//! database already holding N packets. Results are medians over alternating rounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use warp::Filter;
use warp::http::StatusCode;

mod common;

use common::{KEYS, UNLIMITED, env_num, inboxes, key, median, packet};
use jasper::config::RelayConfig;
use jasper::http::{ServeLimits, json_response, read_body, serve};
use jasper::proto::key::KeyCache;
use jasper::proto::{Packet, PacketHash, PacketRules, PublicKey};
use jasper::relay::store::{NewPacket, RedbStore, Store};
use redb::TableDefinition;

const CONNECTIONS: usize = 64;

/// One keep-alive HTTP/1.1 connection speaking just enough of the protocol.
struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (r, w) = stream.into_split();
        Conn {
            reader: BufReader::with_capacity(64 * 1024, r),
            writer: w,
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// POSTs `body`; returns the status and the response body length.
    async fn post(&mut self, path: &str, body: &[u8]) -> (u16, usize) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(body);
        self.writer.write_all(&req).await.expect("write");
        self.line.clear();
        self.reader
            .read_line(&mut self.line)
            .await
            .expect("status line");
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await.expect("header");
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("content-length");
            }
        }
        self.body.resize(len, 0);
        self.reader.read_exact(&mut self.body).await.expect("body");
        (status, len)
    }
}

/// A server running on its own runtime thread, stopped on drop.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The relay's default packet rules, which every side of the bench applies.
const RULES: PacketRules = PacketRules {
    min_key_bits: 4096,
    max_message_bytes: 256 * 1024,
};

fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_relay(data_dir: &std::path::Path) -> Server {
    start_relay_with(data_dir, |_| {})
}

/// A relay with the bench's settings, changed by `adjust`.
fn start_relay_with(data_dir: &std::path::Path, adjust: impl FnOnce(&mut RelayConfig)) -> Server {
    let mut config = RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        rate_limit_per_minute: 0,
        ..RelayConfig::default()
    };
    config.max_inbox_packets = 1_000_000;
    adjust(&mut config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        server_runtime().block_on(async move {
            jasper::relay::run(
                config,
                async {
                    let _ = stopped.await;
                },
                move |addr| ready_tx.send(addr).unwrap(),
            )
            .await
            .expect("relay runs");
        });
    });
    Server {
        addr: ready_rx.recv().expect("relay ready"),
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// Serves the relay's stack (our accept loop and warp, two worker threads) reading each POST
/// body with the relay's size limit and handing it to `handle`: the stack without the relay.
fn start_stack<F, Fut>(handle: F) -> Server
where
    F: Fn(Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = warp::http::Response<Bytes>> + Send,
{
    let limit = RULES.max_body_bytes();
    let routes = warp::post()
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(move |len, body| {
            let handle = handle.clone();
            async move {
                match read_body(len, Box::pin(body), limit, Duration::from_secs(30)).await {
                    Ok(bytes) => handle(bytes).await,
                    Err(e) => e.into_response(),
                }
            }
        })
        .boxed();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        server_runtime().block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ready_tx.send(listener.local_addr().unwrap()).unwrap();
            let limits = ServeLimits {
                max_connections: 4096,
                max_connections_per_ip: 4096,
                header_timeout: Duration::from_secs(30),
                write_timeout: Duration::from_secs(30),
                drain_timeout: Duration::from_secs(5),
            };
            serve(listener, routes, limits, async {
                let _ = stopped.await;
            })
            .await;
        });
    });
    Server {
        addr: ready_rx.recv().unwrap(),
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The ceiling: the relay's stack reading the same bodies and answering `answer` without doing
/// any work.
fn start_ceiling(answer: Bytes) -> Server {
    start_stack(move |_| {
        let answer = answer.clone();
        async move { json_response(StatusCode::OK, answer) }
    })
}

/// What any durable store pays here, and nothing else: appended bytes waiting to be flushed,
/// and the ticket of the last request they include.
struct FloorLog {
    pending: std::sync::Mutex<(Vec<u8>, u64)>,
    wake: std::sync::Condvar,
    synced: tokio::sync::watch::Sender<u64>,
}

/// Bytes of zeros the floor writes into its file before it starts and then writes over, round
/// and round: a flush then has no file size or block allocation to journal, only data.
const FLOOR_RING_BYTES: u64 = 64 << 20;

impl FloorLog {
    /// Starts the flush thread: it takes whatever is pending, writes it at the next place in
    /// `path` (a ring of [`FLOOR_RING_BYTES`] written with zeros first) and `fdatasync`s,
    /// then releases every request the flush covered (group commit).
    fn start(path: std::path::PathBuf) -> Arc<Self> {
        let log = Arc::new(Self {
            pending: std::sync::Mutex::new((Vec::new(), 0)),
            wake: std::sync::Condvar::new(),
            synced: tokio::sync::watch::channel(0).0,
        });
        let flusher = Arc::downgrade(&log);
        let file = std::fs::File::create(path).expect("floor log");
        {
            use std::io::Write as _;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..FLOOR_RING_BYTES >> 20 {
                (&file).write_all(&zeros).expect("floor log");
            }
            file.sync_all().expect("floor log");
        }
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt as _;
            let mut at = 0u64;
            let mut bytes = Vec::new();
            while let Some(log) = flusher.upgrade() {
                let ticket = {
                    let mut pending = log.pending.lock().unwrap();
                    while pending.0.is_empty() {
                        let (p, timeout) = log
                            .wake
                            .wait_timeout(pending, Duration::from_millis(100))
                            .unwrap();
                        pending = p;
                        if timeout.timed_out() && Arc::strong_count(&log) == 1 {
                            return;
                        }
                    }
                    std::mem::swap(&mut pending.0, &mut bytes);
                    pending.1
                };
                if at + bytes.len() as u64 > FLOOR_RING_BYTES {
                    at = 0;
                }
                file.write_all_at(&bytes, at).expect("floor write");
                at += bytes.len() as u64;
                file.sync_data().expect("floor fdatasync");
                bytes.clear();
                log.synced.send_replace(ticket);
            }
        });
        log
    }

    /// Appends `body` and waits until a flush covers it.
    async fn put(&self, body: &[u8]) {
        let mut synced = self.synced.subscribe();
        let ticket = {
            let mut pending = self.pending.lock().unwrap();
            pending.0.extend_from_slice(body);
            pending.1 += 1;
            pending.1
        };
        self.wake.notify_one();
        synced
            .wait_for(|t| *t >= ticket)
            .await
            .expect("floor flusher");
    }
}

/// The durable floor: the ceiling's stack, reading the same bodies, that writes each body into
/// one file prepared with zeros and answers only after an `fdatasync` covers it; no
/// validation, no index. About the most a durable store can reach on this machine.
fn start_floor(dir: &std::path::Path) -> Server {
    let log = FloorLog::start(dir.join("floor.log"));
    start_stack(move |bytes| {
        let log = log.clone();
        async move {
            log.put(&bytes).await;
            json_response(StatusCode::OK, Bytes::from_static(b"{}"))
        }
    })
}

/// The checked floor: the durable floor that first validates each body as the relay's `/send`
/// does (recipient key from a key cache, hash, JWE structure) and appends the JSON the relay
/// would store. What any durable relay that checks its packets can reach here, whatever it
/// indexes them with.
fn start_checked_floor(dir: &std::path::Path) -> Server {
    let log = FloorLog::start(dir.join("floor.log"));
    let keys = Arc::new(KeyCache::new(1024));
    start_stack(move |bytes| {
        let (log, keys) = (log.clone(), keys.clone());
        async move {
            match Packet::from_json_cached(&bytes, &RULES, &keys) {
                Ok(packet) => {
                    log.put(packet.to_json().as_bytes()).await;
                    json_response(StatusCode::OK, Bytes::from_static(b"{}"))
                }
                Err(e) => json_response(StatusCode::BAD_REQUEST, Bytes::from(e.to_string())),
            }
        }
    })
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What one load run measured.
#[derive(Clone, Copy)]
struct Load {
    /// Requests answered per second.
    rate: f64,
    /// Latency of the requests answered in the run, in milliseconds.
    p50: f64,
    p99: f64,
    max: f64,
}

/// Sends the prepared bodies over 64 connections for `secs`; returns requests per second and
/// the latency of those requests. With `cycle` the bodies are reused (the ceiling does not
/// care); without, each is sent once.
fn load(addr: SocketAddr, bodies: Arc<Vec<Vec<u8>>>, secs: u64, cycle: bool) -> Load {
    client_runtime().block_on(async move {
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (bodies, next, done, stop) =
                (bodies.clone(), next.clone(), done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if cycle {
                        i %= bodies.len();
                    }
                    let Some(body) = bodies.get(i) else { break };
                    let sent = Instant::now();
                    let (status, _) = conn.post("/send", body).await;
                    assert_eq!(status, 200, "every send must succeed");
                    // Only requests answered inside the measured window count.
                    if !stop.load(Ordering::Relaxed) {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            }));
        }
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let n = done.load(Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        assert!(
            cycle || (next.load(Ordering::Relaxed) as usize) < bodies.len(),
            "ran out of prepared packets; lower JASPER_BENCH_SECS"
        );
        assert!(!latencies.is_empty(), "no request was answered in the run");
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Load {
            rate: n as f64 / elapsed,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            max: latencies[latencies.len() - 1],
        }
    })
}

/// `count` distinct packets for load round `round` (numbered from `round` × 10,000,000, so
/// that no two rounds share one), addressed to `keys` in turn.
fn round_bodies(
    keys: &[String],
    round: u64,
    count: usize,
    ct: usize,
    sig: usize,
) -> Arc<Vec<Vec<u8>>> {
    Arc::new(
        (0..count as u64)
            .map(|i| {
                let n = round * 10_000_000 + i;
                packet(&keys[(n % keys.len() as u64) as usize], n, ct, sig)
            })
            .collect(),
    )
}

/// One server of a side-by-side `/send` comparison: its name, and how to start it and load
/// it for a round (given the round's number and its own bodies).
struct Side<'a> {
    name: &'static str,
    run: Box<dyn Fn(u64, Bodies) -> Load + 'a>,
}

/// A round's prepared request bodies, shared by its sides.
type Bodies = Arc<Vec<Vec<u8>>>;

impl<'a> Side<'a> {
    fn new(name: &'static str, run: impl Fn(u64, Bodies) -> Load + 'a) -> Self {
        Self {
            name,
            run: Box::new(run),
        }
    }
}

/// Runs `sides` one after the other in every round, each round on its own unique bodies, and
/// prints each round, then the medians: of each side's rate, of every later side's rate over
/// every earlier one's in the same round, and of latencies. `JASPER_BENCH_SIDE` (a list of
/// names) runs only those sides, for profiling and for alternating two builds.
fn compare_sends(rounds: u64, secs: u64, ct: usize, sig: usize, sides: &[Side<'_>]) {
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    // Enough unique packets for the fastest server; each round gets its own.
    let per_round = (secs * 40_000) as usize;
    let only = std::env::var("JASPER_BENCH_SIDE").unwrap_or_default();
    let sides: Vec<&Side> = sides
        .iter()
        .filter(|side| only.is_empty() || only.split(',').any(|s| s == side.name))
        .collect();
    let mut loads: Vec<Vec<Load>> = vec![Vec::new(); sides.len()];
    let pairs: Vec<(usize, usize)> = (0..sides.len())
        .flat_map(|later| (0..later).map(move |earlier| (later, earlier)))
        .collect();
    let ratio_name = |&(later, earlier): &(usize, usize)| {
        format!("{}/{}", sides[later].name, sides[earlier].name)
    };
    for round in 0..rounds {
        let bodies = round_bodies(&keys, round, per_round, ct, sig);
        if round == 0 {
            println!(
                "packet: {} bytes of JSON ({ct}-byte ciphertext, {sig}-byte encrypted signature)",
                bodies[0].len()
            );
        }
        for (side, out) in sides.iter().zip(&mut loads) {
            out.push((side.run)(round, bodies.clone()));
        }
        let this = |i: usize| loads[i][round as usize];
        let rates: Vec<String> = (0..sides.len())
            .map(|i| format!("{} {:.0} req/s", sides[i].name, this(i).rate))
            .collect();
        let ratios: Vec<String> = pairs
            .iter()
            .map(|&(l, e)| format!("{} {:.2}", ratio_name(&(l, e)), this(l).rate / this(e).rate))
            .collect();
        let latencies: Vec<String> = (0..sides.len())
            .map(|i| {
                let l = this(i);
                format!("{} {:.2}/{:.2}/{:.1}", sides[i].name, l.p50, l.p99, l.max)
            })
            .collect();
        println!("round {round}: {}; {}", rates.join(", "), ratios.join(", "));
        println!("  latency p50/p99/max ms: {}", latencies.join(", "));
    }
    let of = |i: usize, f: fn(&Load) -> f64| median(loads[i].iter().map(f).collect());
    let rates: Vec<String> = (0..sides.len())
        .map(|i| format!("{} {:.0} req/s", sides[i].name, of(i, |l| l.rate)))
        .collect();
    let ratios: Vec<String> = pairs
        .iter()
        .map(|&(l, e)| {
            let per_round = loads[l].iter().zip(&loads[e]).map(|(a, b)| a.rate / b.rate);
            format!("{} {:.2}", ratio_name(&(l, e)), median(per_round.collect()))
        })
        .collect();
    let latencies: Vec<String> = (0..sides.len())
        .map(|i| {
            format!(
                "{} {:.2}/{:.2}/{:.1}",
                sides[i].name,
                of(i, |l| l.p50),
                of(i, |l| l.p99),
                of(i, |l| l.max)
            )
        })
        .collect();
    println!(
        "median: {}; per-round ratios (median): {}",
        rates.join(", "),
        ratios.join(", ")
    );
    println!("median latency p50/p99/max ms: {}\n", latencies.join(", "));
}

/// `/send` on the relay beside the ceiling and the durable floors, bare and checked (target:
/// relay/ceiling at least 0.50).
fn bench_send(rounds: u64, secs: u64, ct: usize, sig: usize) {
    println!(
        "## /send throughput: {CONNECTIONS} keep-alive connections, {secs} s per run, {rounds} rounds (target: relay/ceiling >= 0.50)"
    );
    // JASPER_BENCH_PRELOAD=N starts each relay run on a copy of a database holding N packets.
    let preloaded = match env_num("JASPER_BENCH_PRELOAD", 0) {
        0 => None,
        n => {
            let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
            let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
            preload(dir.path(), n, &keys);
            println!("the relay starts each run holding {n} packets");
            Some(dir)
        }
    };
    let sides = [
        Side::new("ceiling", |_, bodies| {
            let server = start_ceiling(Bytes::from_static(b"{}"));
            load(server.addr, bodies, secs, true)
        }),
        Side::new("floor", |_, bodies| {
            let dir = tempfile::tempdir().unwrap();
            let server = start_floor(dir.path());
            // The floor does not look at what it appends, so bodies may repeat.
            load(server.addr, bodies, secs, true)
        }),
        Side::new("checked", |_, bodies| {
            let dir = tempfile::tempdir().unwrap();
            let server = start_checked_floor(dir.path());
            load(server.addr, bodies, secs, true)
        }),
        Side::new("relay", |_, bodies| {
            let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
            if let Some(template) = &preloaded {
                copy_dir(template.path(), dir.path());
            }
            let server = start_relay(dir.path());
            load(server.addr, bodies, secs, false)
        }),
    ];
    compare_sends(rounds, secs, ct, sig, &sides);
}

/// A redis-server as `store = "redis"` requires it (`appendfsync always`), on a free loopback
/// port with its files under [`bench_tmp`]; killed on drop.
struct BenchRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl BenchRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/send` on the two storage engines side by side, with the ceiling, in the same rounds.
fn bench_send_engines(rounds: u64, secs: u64) {
    println!(
        "## /send throughput by storage engine: {CONNECTIONS} keep-alive connections, {secs} s per run, {rounds} rounds"
    );
    // JASPER_BENCH_REDIS_URL uses a server of one's own (for looking at its statistics)
    // instead of starting one per round.
    let external = std::env::var("JASPER_BENCH_REDIS_URL").ok();
    let sides = [
        Side::new("ceiling", |_, bodies| {
            let server = start_ceiling(Bytes::from_static(b"{}"));
            load(server.addr, bodies, secs, true)
        }),
        Side::new("redb", |_, bodies| {
            let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
            let server = start_relay(dir.path());
            load(server.addr, bodies, secs, false)
        }),
        Side::new("redis", |round, bodies| {
            let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
            let own = external.is_none().then(BenchRedis::start);
            let url = external
                .clone()
                .unwrap_or_else(|| format!("redis://127.0.0.1:{}/0", own.as_ref().unwrap().port));
            let server = start_relay_with(dir.path(), |config| {
                config.store = jasper::config::StoreEngine::Redis;
                config.redis_url = url;
                config.redis_prefix = format!("bench{round}");
            });
            load(server.addr, bodies, secs, false)
        }),
    ];
    compare_sends(rounds, secs, 16, 300, &sides);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `n` sequential `/fetch`es of `body`: sorted latencies in milliseconds, and the answer's size.
fn fetch_latencies(addr: SocketAddr, body: &[u8], n: usize) -> (Vec<f64>, usize) {
    fetch_latencies_while(addr, body, |done| done < n)
}

/// Sequential `/fetch`es of `body` until `until`; sorted latencies in milliseconds.
fn fetch_latencies_until(addr: SocketAddr, body: &[u8], until: Instant) -> Vec<f64> {
    fetch_latencies_while(addr, body, |_| Instant::now() < until).0
}

/// Sequential `/fetch`es of `body` on one connection while `go(fetches so far)`: sorted
/// latencies in milliseconds, and the size of the last answer.
fn fetch_latencies_while(
    addr: SocketAddr,
    body: &[u8],
    go: impl Fn(usize) -> bool,
) -> (Vec<f64>, usize) {
    client_runtime().block_on(async {
        let mut conn = Conn::open(addr).await;
        let mut lat = Vec::new();
        let mut size = 0;
        while go(lat.len()) {
            let t = Instant::now();
            let (status, len) = conn.post("/fetch", body).await;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200);
            size = len;
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (lat, size)
    })
}

fn bench_fetch(rounds: u64) {
    println!(
        "## /fetch latency: one recipient holding 1,000 packets of ~2.1 KiB, sequential requests, {rounds} rounds of 200"
    );
    let alice = key("alice");
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(dir.path());
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((0..1000).map(|n| packet(&alice, n, 16, 300)).collect());
    client_runtime().block_on(async {
        let mut conn = Conn::open(relay.addr).await;
        for b in bodies.iter() {
            assert_eq!(conn.post("/send", b).await.0, 200);
        }
    });
    let request = serde_json::json!({ "recipient": alice })
        .to_string()
        .into_bytes();
    let (_, size) = fetch_latencies(relay.addr, &request, 1);
    assert!(
        size > 1000 * 1900,
        "the answer holds all 1,000 packets ({size} bytes)"
    );
    let ceiling = start_ceiling(Bytes::from(vec![b' '; size]));
    let (mut c50, mut r50, mut r99) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (c, _) = fetch_latencies(ceiling.addr, &request, 200);
        let (r, _) = fetch_latencies(relay.addr, &request, 200);
        println!(
            "round {round}: ceiling p50 {:.2} ms, relay p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms",
            percentile(&c, 0.5),
            percentile(&r, 0.5),
            percentile(&r, 0.9),
            percentile(&r, 0.99)
        );
        c50.push(percentile(&c, 0.5));
        r50.push(percentile(&r, 0.5));
        r99.push(percentile(&r, 0.99));
    }
    let (c, r) = (median(c50), median(r50));
    println!(
        "median: answer {:.2} MB; ceiling p50 {c:.2} ms, relay p50 {r:.2} ms (target < 10 ms), relay p99 {:.2} ms, relay/ceiling {:.2}\n",
        size as f64 / 1e6,
        median(r99),
        r / c
    );
}

/// `/fetch` of one recipient's 1,000 packets from the relay on redb and on Redis, beside the
/// ceiling, rounds alternating.
fn bench_fetch_engines(rounds: u64) {
    println!(
        "## /fetch latency by storage engine: one recipient holding 1,000 packets of ~2.1 KiB, sequential requests, {rounds} rounds of 200"
    );
    let alice = key("alice");
    let bodies: Vec<Vec<u8>> = (0..1000).map(|n| packet(&alice, n, 16, 300)).collect();
    let fill = |server: &Server| {
        client_runtime().block_on(async {
            let mut conn = Conn::open(server.addr).await;
            for b in &bodies {
                assert_eq!(conn.post("/send", b).await.0, 200);
            }
        })
    };
    let (redb_dir, redis_dir) = (
        tempfile::tempdir_in(bench_tmp()).unwrap(),
        tempfile::tempdir_in(bench_tmp()).unwrap(),
    );
    let redb = start_relay(redb_dir.path());
    let redis_server = BenchRedis::start();
    let redis = start_relay_with(redis_dir.path(), |config| {
        config.store = jasper::config::StoreEngine::Redis;
        config.redis_url = format!("redis://127.0.0.1:{}/0", redis_server.port);
    });
    fill(&redb);
    fill(&redis);
    let request = serde_json::json!({ "recipient": alice })
        .to_string()
        .into_bytes();
    let (_, size) = fetch_latencies(redis.addr, &request, 1);
    assert_eq!(
        size,
        fetch_latencies(redb.addr, &request, 1).1,
        "same answer"
    );
    assert!(size > 1000 * 1900, "all 1,000 packets ({size} bytes)");
    let ceiling = start_ceiling(Bytes::from(vec![b' '; size]));
    let (mut c50, mut b50, mut r50, mut r99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (c, _) = fetch_latencies(ceiling.addr, &request, 200);
        let (b, _) = fetch_latencies(redb.addr, &request, 200);
        let (r, _) = fetch_latencies(redis.addr, &request, 200);
        println!(
            "round {round}: ceiling p50 {:.2} ms, redb p50 {:.2} ms, redis p50 {:.2} ms p99 {:.2} ms",
            percentile(&c, 0.5),
            percentile(&b, 0.5),
            percentile(&r, 0.5),
            percentile(&r, 0.99)
        );
        c50.push(percentile(&c, 0.5));
        b50.push(percentile(&b, 0.5));
        r50.push(percentile(&r, 0.5));
        r99.push(percentile(&r, 0.99));
    }
    let (c, b, r) = (median(c50), median(b50), median(r50));
    println!(
        "median: answer {:.2} MB; ceiling p50 {c:.2} ms, redb p50 {b:.2} ms, redis p50 {r:.2} ms (target < 10 ms), redis p99 {:.2} ms, redis/redb {:.2}\n",
        size as f64 / 1e6,
        median(r99),
        r / b
    );
}

/// `/fetch` of one recipient's 1,000 packets on one relay, side by side: with nothing else
/// to do, and while 64 connections send new packets (to other recipients) as fast as it takes
/// them. Every read first commits the index the write path holds, so under load a fetch may
/// wait for a batch or a checkpoint.
fn bench_fetch_under_load(rounds: u64, secs: u64) {
    println!(
        "## /fetch latency under /send load: 1,000 packets of ~2.1 KiB, sequential fetches for {secs} s idle, then {secs} s beside {CONNECTIONS} sending connections, {rounds} rounds"
    );
    let alice = key("alice");
    let others: Vec<String> = KEYS[1..].iter().map(|k| key(k)).collect();
    let dir = tempfile::tempdir_in(bench_tmp()).unwrap();
    let relay = start_relay(dir.path());
    client_runtime().block_on(async {
        let mut conn = Conn::open(relay.addr).await;
        for n in 0..1000 {
            assert_eq!(conn.post("/send", &packet(&alice, n, 16, 300)).await.0, 200);
        }
    });
    let request = serde_json::json!({ "recipient": alice })
        .to_string()
        .into_bytes();
    let (mut idle50, mut idle99, mut busy50, mut busy99, mut sends) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let idle = fetch_latencies_until(
            relay.addr,
            &request,
            Instant::now() + Duration::from_secs(secs),
        );
        // Round 0 is the fetched inbox's own numbers.
        let bodies = round_bodies(&others, round + 1, (secs * 40_000) as usize, 16, 300);
        let addr = relay.addr;
        let sender = std::thread::spawn(move || load(addr, bodies, secs, false));
        // Fetch only while the load runs at full speed.
        std::thread::sleep(Duration::from_millis(500));
        let busy = fetch_latencies_until(
            relay.addr,
            &request,
            Instant::now() + Duration::from_secs(secs.saturating_sub(1).max(1)),
        );
        let sent = sender.join().unwrap();
        println!(
            "round {round}: idle p50 {:.2} ms p99 {:.2} ms ({} fetches); under load p50 {:.2} ms p99 {:.2} ms max {:.1} ms ({} fetches, beside {:.0} sends/s)",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99),
            idle.len(),
            percentile(&busy, 0.5),
            percentile(&busy, 0.99),
            busy[busy.len() - 1],
            busy.len(),
            sent.rate
        );
        idle50.push(percentile(&idle, 0.5));
        idle99.push(percentile(&idle, 0.99));
        busy50.push(percentile(&busy, 0.5));
        busy99.push(percentile(&busy, 0.99));
        sends.push(sent.rate);
    }
    let (i50, b50) = (median(idle50), median(busy50));
    println!(
        "median: idle p50 {i50:.2} ms p99 {:.2} ms; under load p50 {b50:.2} ms (target < 10 ms) p99 {:.2} ms, beside {:.0} sends/s; under load/idle p50 {:.2}\n",
        median(idle99),
        median(busy99),
        median(sends),
        b50 / i50
    );
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the real binary on `data_dir`, exercises it, returns (RSS, peak RSS) in MiB.
fn measure_binary(data_dir: &std::path::Path, keys: &[String]) -> (f64, f64) {
    use std::io::BufRead;
    // Defaults except the per-address rate limit, which would refuse a benchmark client.
    let config = data_dir.with_extension("toml");
    std::fs::write(&config, "[relay]\nrate_limit_per_minute = 0\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jasper"))
        .arg("--config")
        .arg(&config)
        .args(["relay", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn relay");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("relay output").unwrap();
        if let Some((_, a)) = line.split_once("relay listening address=") {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let mib = |field| rss_kib(pid, field) as f64 / 1024.0;
    println!("after start: RSS {:.1} MiB", mib("VmRSS:"));
    client_runtime().block_on(async {
        let mut conn = Conn::open(addr).await;
        // Cursors name the store ("<instance>.<seq>"): learn its instance from a first answer.
        let instance = {
            let body = serde_json::json!({ "recipient": keys[0] }).to_string();
            assert_eq!(conn.post("/fetch", body.as_bytes()).await.0, 200);
            let answer: serde_json::Value = serde_json::from_slice(&conn.body).unwrap();
            let cursor = answer["cursor"].as_str().unwrap().to_owned();
            cursor.split_once('.').unwrap().0.to_owned()
        };
        for i in 0..200 {
            let since = format!("{instance}.{}", i * 4000);
            let body = serde_json::json!({ "recipient": keys[i % keys.len()], "since": since });
            assert_eq!(
                conn.post("/fetch", body.to_string().as_bytes()).await.0,
                200
            );
        }
        for i in 0..100u64 {
            let hashes: Vec<String> = (0..100)
                .map(|j| PacketHash::of_message(&format!("rss {}", i * 100 + j)).to_string())
                .collect();
            let body = serde_json::json!({ "hashes": hashes });
            assert_eq!(
                conn.post("/fetch", body.to_string().as_bytes()).await.0,
                200
            );
        }
        println!("after 300 fetches: RSS {:.1} MiB", mib("VmRSS:"));
        // A plain-JASPER sync from an empty peer: the answer lists up to
        // max_hashes_per_request of our hashes, the largest answer a relay builds.
        let (status, len) = conn.post("/sync/hashes", b"{\"hashes\":[]}").await;
        assert_eq!(status, 200);
        println!("/sync/hashes answer: {:.1} MB", len as f64 / 1e6);
        let mut get = TcpStream::connect(addr).await.unwrap();
        get.write_all(b"GET /status HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut s = String::new();
        get.read_to_string(&mut s).await.unwrap();
        println!("status: {}", s.rsplit("\r\n").next().unwrap_or(""));
    });
    let rss = rss_kib(pid, "VmRSS:") as f64 / 1024.0;
    let hwm = rss_kib(pid, "VmHWM:") as f64 / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    (rss, hwm)
}

/// Fills a relay database at `dir` with `packets` packets of ~1 KiB of JSON for the four
/// bench recipients, expiring in six days, through the store itself (no HTTP).
fn preload(dir: &std::path::Path, packets: u64, keys: &[String]) {
    let started = Instant::now();
    let store = RedbStore::open(dir, 64 << 20).unwrap();
    let rcpt = inboxes(keys);
    let limits = UNLIMITED;
    let expires = jasper::relay::clock::now_ms() + 6 * 24 * 3600 * 1000;
    let batch = 20_000u64;
    for start in (0..packets).step_by(batch as usize) {
        let items: Vec<NewPacket> = (start..(start + batch).min(packets))
            .map(|n| {
                let json = format!(
                    "{{\"recipient\":\"{}\",\"n\":{n},\"pad\":\"{}\"}}",
                    &keys[(n % 4) as usize][..32],
                    STANDARD.encode(n.to_le_bytes()).repeat(40)
                );
                NewPacket {
                    hash: PacketHash::of_message(&format!("rss {n}")),
                    recipient: rcpt[(n % 4) as usize],
                    expires_at: expires,
                    json: json.into_bytes(),
                }
            })
            .collect();
        store.put_batch(&items, limits, 0).unwrap();
    }
    drop(store);
    println!(
        "stored {packets} packets in {:.1} s ({:.2} GB on disk)",
        started.elapsed().as_secs_f64(),
        dir_size(dir) as f64 / 1e9
    );
}

fn bench_rss(packets: u64) {
    println!(
        "## relay RSS: the release binary holding {packets} packets vs none, after 300 fetches and a /sync/hashes"
    );
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let empty = tempfile::tempdir_in(bench_tmp()).unwrap();
    let (rss0, hwm0) = measure_binary(empty.path(), &keys);

    let full = tempfile::tempdir_in(bench_tmp()).unwrap();
    preload(full.path(), packets, &keys);
    let (rss1, hwm1) = measure_binary(full.path(), &keys);
    println!(
        "empty relay: RSS {rss0:.1} MiB (peak {hwm0:.1}); {packets} packets: RSS {rss1:.1} MiB (peak {hwm1:.1}) (target < 150 MB)\n"
    );
}

/// Per-packet cost of `RedbStore::put_batch` (five tables, durable) against the floor of the
/// same engine: one durable redb insert of the same bytes under a sequence key, in batches of
/// the same size, in the same run.
fn bench_store(rounds: u64) {
    const BODY: TableDefinition<u64, &[u8]> = TableDefinition::new("body");
    let batch = 32usize;
    let per_round = 50usize;
    println!(
        "## store: durable commits of {batch} packets of ~2.1 KiB, {per_round} commits per run, {rounds} rounds"
    );
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let rcpt = inboxes(&keys);
    let limits = UNLIMITED;
    let (mut floor, mut ours) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let batches: Vec<Vec<NewPacket>> = (0..per_round)
            .map(|b| {
                (0..batch)
                    .map(|i| {
                        let n = round * 1_000_000 + (b * batch + i) as u64;
                        NewPacket {
                            hash: PacketHash::of_message(&format!("store {n}")),
                            recipient: rcpt[(n % 4) as usize],
                            expires_at: u64::MAX / 2,
                            json: packet(&keys[(n % 4) as usize], n, 16, 300),
                        }
                    })
                    .collect()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::builder()
            .set_cache_size(64 << 20)
            .create(dir.path().join("floor.redb"))
            .unwrap();
        let start = Instant::now();
        let mut seq = 0u64;
        for items in &batches {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(BODY).unwrap();
                for p in items {
                    seq += 1;
                    t.insert(seq, p.json.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let f = start.elapsed().as_secs_f64() * 1e6 / (per_round * batch) as f64;
        drop(db);
        let store = RedbStore::open(&dir.path().join("store"), 64 << 20).unwrap();
        let start = Instant::now();
        for items in &batches {
            store.put_batch(items, limits, 0).unwrap();
        }
        let o = start.elapsed().as_secs_f64() * 1e6 / (per_round * batch) as f64;
        println!(
            "round {round}: one bare insert {f:.1} us/packet, put_batch {o:.1} us/packet, ratio {:.2}",
            o / f
        );
        floor.push(f);
        ours.push(o);
    }
    let (f, o) = (median(floor), median(ours));
    println!(
        "median: bare insert {f:.1} us/packet ({:.0}/s), put_batch {o:.1} us/packet ({:.0}/s), ratio {:.2}\n",
        1e6 / f,
        1e6 / o,
        o / f
    );
}

/// Recipient-key validation as `/send` does it, against the `rsa` crate's full public-key
/// constructor on the same bytes.
fn bench_keys(rounds: u64) {
    use rsa::pkcs8::DecodePublicKey as _;
    println!("## recipient key validation: 4096-bit keys, 2,000 parses per run, {rounds} rounds");
    let keys: Vec<String> = KEYS.iter().map(|k| key(k)).collect();
    let ders: Vec<Vec<u8>> = keys.iter().map(|k| STANDARD.decode(k).unwrap()).collect();
    let (mut full, mut ours) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = Instant::now();
        for i in 0..2000 {
            let der = &ders[i % ders.len()];
            std::hint::black_box(rsa::PublicKey::from_public_key_der(der).unwrap());
        }
        let f = start.elapsed().as_secs_f64() * 1e6 / 2000.0;
        let start = Instant::now();
        for i in 0..2000 {
            std::hint::black_box(PublicKey::parse(&keys[i % keys.len()], 4096).unwrap());
        }
        let o = start.elapsed().as_secs_f64() * 1e6 / 2000.0;
        println!(
            "round {round}: rsa::PublicKey from DER {f:.1} us, PublicKey::parse from base64 {o:.1} us"
        );
        full.push(f);
        ours.push(o);
    }
    println!(
        "median: rsa full parse {:.1} us, relay validation {:.1} us\n",
        median(full),
        median(ours)
    );
}

/// Validating a whole `/send` body into a packet and its stored JSON, as the relay does, with
/// the recipient key parsed each time against taken from the relay's key cache; recipients in
/// base64 and in PEM.
fn bench_validate(rounds: u64) {
    const N: usize = 20_000;
    println!("## packet validation: ~2 KiB /send bodies, {N} per run, {rounds} rounds");
    let rules = RULES;
    let pem = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/keys/{name}-4096.pub.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture key")
    };
    for (form, recipients) in [
        ("base64", KEYS.iter().map(|k| key(k)).collect::<Vec<_>>()),
        ("PEM", KEYS.iter().map(|k| pem(k)).collect()),
    ] {
        let bodies: Vec<Vec<u8>> = (0..N as u64)
            .map(|n| packet(&recipients[(n % 4) as usize], n, 16, 300))
            .collect();
        let (mut plain, mut cached) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let start = Instant::now();
            for body in &bodies {
                std::hint::black_box(Packet::from_json(body, &rules).unwrap().to_json());
            }
            let p = start.elapsed().as_secs_f64() * 1e6 / N as f64;
            let keys = KeyCache::new(1024);
            let start = Instant::now();
            for body in &bodies {
                let packet = Packet::from_json_cached(body, &rules, &keys).unwrap();
                std::hint::black_box(packet.to_json());
            }
            let c = start.elapsed().as_secs_f64() * 1e6 / N as f64;
            println!(
                "round {round}, {form} recipients: parsing the key {p:.2} us, key cache {c:.2} us"
            );
            plain.push(p);
            cached.push(c);
        }
        let (p, c) = (median(plain), median(cached));
        println!(
            "median, {form} recipients: parsing the key {p:.2} us/packet, key cache {c:.2} us/packet, ratio {:.2}\n",
            c / p
        );
    }
}

/// Where the large RSS database goes: `JASPER_BENCH_TMP`, else the system temp dir.
fn bench_tmp() -> std::path::PathBuf {
    std::env::var_os("JASPER_BENCH_TMP").map_or_else(std::env::temp_dir, Into::into)
}

/// Bytes of the files under `dir`, subdirectories included.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Copies the files under `from` into `to`, subdirectories included.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn main() {
    let which = std::env::var("JASPER_BENCH")
        .unwrap_or_else(|_| "send,send-4k,store,keys,validate,fetch,fetch-load,rss".into());
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5);
    let secs = env_num("JASPER_BENCH_SECS", 5);
    println!(
        "# jasper relay benchmarks ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for part in which.split(',') {
        match part.trim() {
            // The issue's ~2 KiB packet, then a packet with a 1 KiB ciphertext and a
            // realistic PS256 signature (~4 KiB).
            "send" => bench_send(rounds, secs, 16, 300),
            "send-4k" => bench_send(rounds, secs, 1000, 700),
            "send-engines" => bench_send_engines(rounds, secs),
            "fetch-engines" => bench_fetch_engines(rounds),
            "fetch" => bench_fetch(rounds),
            "fetch-load" => bench_fetch_under_load(rounds, secs),
            "store" => bench_store(rounds),
            "keys" => bench_keys(rounds),
            "validate" => bench_validate(rounds),
            "rss" => bench_rss(env_num("JASPER_BENCH_RSS_PACKETS", 1_000_000)),
            "" => {}
            other => eprintln!("unknown benchmark {other:?}"),
        }
    }
}
