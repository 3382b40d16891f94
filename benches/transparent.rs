//! Time from starting `jasper chat` on both sides to the first message delivered, transparent
//! mode (rendezvous + WebRTC through our `jasper stun`) side by side with anonymous mode (two
//! relays, the same chat command without --transparent), in the same run, on loopback.
//!
//!     cargo bench --bench transparent            (JASPER_BENCH_ROUNDS=5)
//!
//! Each round starts both chat processes at once, writes one line to alice's chat at once,
//! and stops the clock when bob's chat prints it. Anonymous mode polls with `--interval 250ms`
//! (its default is 2s), so most of its time is that poll.

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{RelayProcess, env_num, median};

struct Stun {
    child: Child,
    udp: SocketAddr,
    tls: SocketAddr,
    fingerprint: String,
}

impl Drop for Stun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_stun(dir: &Path) -> Stun {
    let config = dir.join("stun.toml");
    std::fs::write(
        &config,
        format!(
            "[stun]\nudp_listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.join("stun").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jasper"))
        .args(["--config", config.to_str().unwrap(), "stun"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jasper stun");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut udp, mut tls) = (None, None);
    let mut line = String::new();
    while udp.is_none() || tls.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "stun exited");
        if let Some((_, rest)) = line.split_once("stun listening ") {
            for part in rest.split_whitespace() {
                if let Some(a) = part.strip_prefix("udp=") {
                    udp = a.parse().ok();
                }
                if let Some(a) = part.strip_prefix("tls=") {
                    tls = a.parse().ok();
                }
            }
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let fingerprint = first.trim().rsplit(' ').next().unwrap().to_owned();
    Stun {
        child,
        udp: udp.unwrap(),
        tls: tls.unwrap(),
        fingerprint,
    }
}

/// A client home for `key` with `client` lines in its [client] section.
fn home(dir: &Path, key: &str, peer: &str, client: &str) -> std::path::PathBuf {
    let home = dir.join(key);
    std::fs::create_dir_all(home.join("xdg-config/jasper")).unwrap();
    let id = home.join("id.pem");
    std::fs::copy(
        format!(
            "{}/tests/fixtures/keys/{key}-4096.key.pem",
            env!("CARGO_MANIFEST_DIR")
        ),
        &id,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        home.join("xdg-config/jasper/config.toml"),
        format!(
            "[identity]\nprivate_key = \"{}\"\n[client]\ndata_dir = \"{}\"\n{client}\n",
            id.display(),
            home.join("client").display()
        ),
    )
    .unwrap();
    let status = jasper(&home)
        .args(["contacts", "add", peer])
        .arg(format!(
            "{}/tests/fixtures/keys/{peer}-4096.pub.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    home
}

fn jasper(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jasper"));
    c.current_dir(home)
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env_remove("JASPER_CONFIG");
    c
}

/// One round: both chats start, alice types a line, bob prints it; then alice types
/// `FOLLOWING` more lines one at a time, each timed from typing to bob printing it.
/// Returns (seconds to the first message, median seconds per following message).
fn round(alice: &Path, bob: &Path, extra: &[&str], n: usize) -> (f64, f64) {
    let text = format!("first message {n}");
    let start = Instant::now();
    let mut b = jasper(bob)
        .args(["chat", "alice", "--json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut a = jasper(alice)
        .args(["chat", "bob", "--json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(a.stdin.as_mut().unwrap(), "{text}").unwrap();
    let mut out = BufReader::new(b.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "bob's chat ended");
        if line.contains(&text) {
            break;
        }
    }
    let took = start.elapsed().as_secs_f64();
    let mut each = Vec::new();
    for k in 0..FOLLOWING {
        let text = format!("message {n}.{k}");
        let sent = Instant::now();
        writeln!(a.stdin.as_mut().unwrap(), "{text}").unwrap();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "bob's chat ended");
            if line.contains(&text) {
                break;
            }
        }
        each.push(sent.elapsed().as_secs_f64());
    }
    for mut c in [a, b] {
        drop(c.stdin.take());
        let _ = c.kill();
        let _ = c.wait();
    }
    (took, median(each))
}

/// Messages timed one by one after the first.
const FOLLOWING: usize = 10;

fn main() {
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5) as usize;
    let dir = tempfile::tempdir().unwrap();
    let stun = start_stun(dir.path());
    let relay_cfg = |me: u16, peer: u16| {
        format!(
            "[relay]\nlisten = \"127.0.0.1:{me}\"\npublic_address = \"127.0.0.1:{me}\"\n\
             peers = [\"127.0.0.1:{peer}\"]\nallow_private_peers = true\nrate_limit_per_minute = 0\n\
             message_sync_interval = \"1s\"\nserver_sync_interval = \"1s\"\n"
        )
    };
    let (p1, p2) = (free_port(), free_port());
    let r1 = RelayProcess::start(&dir.path().join("r1"), &relay_cfg(p1, p2));
    let r2 = RelayProcess::start(&dir.path().join("r2"), &relay_cfg(p2, p1));
    // Both relays must see each other as healthy, or a broadcast waits for the next sync.
    let agent = common::agent();
    let healthy = |addr: SocketAddr| {
        agent
            .get(format!("http://{addr}/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
            .is_some_and(|s| s["peers"]["healthy"] == 1)
    };
    let start = Instant::now();
    while !(healthy(r1.addr) && healthy(r2.addr)) {
        assert!(
            start.elapsed().as_secs() < 30,
            "the relays never saw each other"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let client = format!(
        "servers = [\"{}\", \"{}\"]\nstun = \"{}\"\nrendezvous = \"{}\"\n\
         rendezvous_fingerprint = \"{}\"\nrtc_bind = \"127.0.0.1:0\"\n",
        r1.addr, r2.addr, stun.udp, stun.tls, stun.fingerprint
    );
    let alice = home(dir.path(), "alice", "bob", &client);
    let bob = home(dir.path(), "bob", "alice", &client);
    let (mut direct, mut relayed) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        direct.push(round(
            &alice,
            &bob,
            &["--transparent", "--wait", "30s"],
            2 * n,
        ));
        relayed.push(round(&alice, &bob, &["--interval", "250ms"], 2 * n + 1));
        eprintln!(
            "round {n}: transparent {:.3}s then {:.1}ms/message, anonymous {:.3}s then {:.1}ms/message",
            direct[n].0,
            direct[n].1 * 1e3,
            relayed[n].0,
            relayed[n].1 * 1e3
        );
    }
    let first = |v: &[(f64, f64)]| median(v.iter().map(|x| x.0).collect());
    let next = |v: &[(f64, f64)]| median(v.iter().map(|x| x.1).collect());
    let (d, r) = (first(&direct), first(&relayed));
    let (dn, rn) = (next(&direct), next(&relayed));
    println!("medians of {rounds} rounds          start to first message   each message after");
    println!(
        "transparent (rendezvous + WebRTC)  {:>10.3} s {:>22.1} ms",
        d,
        dn * 1e3
    );
    println!(
        "anonymous (2 relays, 250ms polls)  {:>10.3} s {:>22.1} ms",
        r,
        rn * 1e3
    );
    println!(
        "ratio anonymous / transparent      {:>10.2} {:>24.1}",
        r / d,
        rn / dn
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
