//! STUN Binding throughput on loopback: the release `jasper stun` against coturn's
//! `turnserver` (Debian package coturn) in STUN-only mode, on the same machine in the same
//! run, each loaded by the same generator.
//!
//! The generator: `JASPER_BENCH_CLIENTS` threads (default 2), each with its own UDP socket
//! keeping `JASPER_BENCH_WINDOW` requests (default 32) outstanding; it counts Binding success
//! responses to its own transactions. A window that stalls (the server dropped datagrams) is
//! refilled after 20 ms. Our per-source rate limit is raised out of the way for the run (all
//! load comes from 127.0.0.1); coturn applies no per-source limit to Binding.
//!
//! `cargo bench --bench stun`; `JASPER_BENCH_ROUNDS` (default 5) and `JASPER_BENCH_SECS`
//! (default 5) adjust it, and `JASPER_BENCH_CLIENTS` / `JASPER_BENCH_WINDOW` the load. Rounds
//! alternate which server goes first; results are medians.

use std::io::BufRead as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{env_num, median};
use jasper::proto::stun::binding_request;

/// A server process, killed on drop.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_jasper(dir: &std::path::Path) -> Server {
    let config = dir.join("stun.toml");
    std::fs::write(
        &config,
        format!(
            "[stun]\nudp_listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nrate_limit_per_second = 4000000000\n",
            dir.join("stun").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jasper"))
        .arg("--config")
        .arg(&config)
        .arg("stun")
        .env("RUST_LOG", "info")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jasper stun");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some((_, rest)) = line.split_once("stun listening udp=")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("jasper stun started")
        .parse()
        .unwrap();
    Server {
        name: "jasper stun",
        addr,
        child,
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The coturn command line used (STUN only, no auth, no TLS/DTLS/TCP, no CLI, no RFC 5780).
fn coturn_args(port: u16) -> Vec<String> {
    [
        "-n",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        &port.to_string(),
        "--stun-only",
        "--no-auth",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--no-cli",
        "--no-rfc5780",
        "--no-stdout-log",
        "--log-file",
        "/dev/null",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn start_coturn() -> Server {
    let port = free_udp_port();
    let child = Command::new("turnserver")
        .args(coturn_args(port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver (Debian package coturn) is missing: apt-get install coturn");
    let server = Server {
        name: "coturn turnserver",
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
    };
    // Ready when it answers.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 512];
    loop {
        socket
            .send_to(&binding_request(&[1; 12]), server.addr)
            .unwrap();
        if socket.recv_from(&mut buf).is_ok() {
            return server;
        }
        assert!(Instant::now() < deadline, "coturn did not answer");
    }
}

/// Loads `addr` for `secs` seconds; returns Binding success responses per second.
fn load(addr: SocketAddr, secs: u64, clients: usize, window: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.connect(addr).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let mut tid = [0u8; 12];
                tid[0] = c as u8;
                let mut seq: u64 = 0;
                let mut send = |socket: &UdpSocket| {
                    seq += 1;
                    tid[4..12].copy_from_slice(&seq.to_be_bytes());
                    let _ = socket.send(&binding_request(&tid));
                };
                for _ in 0..window {
                    send(&socket);
                }
                let mut answered = 0u64;
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            if n >= 20 && buf[..2] == [0x01, 0x01] && buf[8] == c as u8 {
                                answered += 1;
                            }
                            send(&socket);
                        }
                        Err(_) => {
                            // Stalled: the server dropped some; refill the window.
                            for _ in 0..window {
                                send(&socket);
                            }
                        }
                    }
                }
                answered
            })
        })
        .collect();
    // Let the window fill and the server warm up, then count over a fixed span.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5);
    let secs = env_num("JASPER_BENCH_SECS", 5);
    let clients = env_num("JASPER_BENCH_CLIENTS", 2) as usize;
    let window = env_num("JASPER_BENCH_WINDOW", 32) as usize;
    println!(
        "# STUN Binding over UDP on loopback ({} cores), {clients} client sockets x window {window}, {rounds} rounds of {secs} s\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let coturn = coturn_args(0).join(" ");
    println!(
        "coturn: turnserver {}\n",
        coturn.replace("--listening-port 0", "--listening-port PORT")
    );
    let dir = tempfile::tempdir().unwrap();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for jasper_turn in order {
            let server = if jasper_turn {
                start_jasper(dir.path())
            } else {
                start_coturn()
            };
            let rate = load(server.addr, secs, clients, window);
            println!(
                "round {} {:<18} {:>10.0} req/s",
                round + 1,
                server.name,
                rate
            );
            if jasper_turn {
                ours.push(rate);
            } else {
                theirs.push(rate);
            }
            drop(server);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let (a, b) = (median(ours), median(theirs));
    println!("\n| server | Binding req/s (median) |\n|---|---|");
    println!("| coturn turnserver | {b:.0} |\n| jasper stun | {a:.0} |");
    println!("\njasper / coturn = {:.2} (target >= 1.30)", a / b);
}
