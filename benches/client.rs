//! Client benchmark: `jasper receive` of 1,000 new packets (the release binary, against a real
//! relay on loopback) side by side with its floor — the same 1,000 RSA-4096 OAEP decryptions
//! alone, spread over all cores — and the `rsa` crate's private-key cost next to
//! `openssl speed rsa4096` on the same machine.
//!
//! `cargo bench --bench client`; `JASPER_BENCH_ROUNDS` (default 5), `JASPER_BENCH_PACKETS`
//! (default 1,000).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{RelayProcess, env_num, median};
use jasper::crypto::jose::unb64;
use jasper::crypto::{Identity, seal};
use rsa::sha2::Sha256;
use serde_json::json;

fn identity(name: &str) -> Identity {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/keys/{name}-4096.key.pem"));
    Identity::from_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
}

/// Runs `f` over `items` on every core.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn openssl_sign_per_second() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa4096"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "rsa 4096 bits 0.004503s 0.000069s    222.1  14492.8"
    text.lines()
        .find(|l| l.trim_start().starts_with("rsa 4096 bits") || l.contains("rsa  4096 bits"))
        .and_then(|l| {
            l.split_whitespace()
                .rev()
                .nth(1)
                .and_then(|v| v.parse().ok())
        })
}

fn main() {
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5);
    let n = env_num("JASPER_BENCH_PACKETS", 1_000) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("# jasper client benchmarks ({cores} cores)\n");
    let (alice, bob) = (identity("alice"), identity("bob"));

    // The rsa crate's private-key operation, one core, next to OpenSSL's.
    let sample = seal(b"{}", &bob, alice.public()).unwrap();
    let key = unb64(sample.message.split('.').nth(1).unwrap()).unwrap();
    let private = jasper_private(&alice);
    let start = Instant::now();
    for _ in 0..20 {
        private.oaep_decrypt::<Sha256>(&key).unwrap();
    }
    let ours = start.elapsed().as_secs_f64() / 20.0;
    match openssl_sign_per_second() {
        Some(ops) => println!(
            "## RSA-4096 private-key operation, one core: rsa 0.10 (blinded) {:.2} ms; openssl speed rsa4096 {:.2} ms ({ops:.0} sign/s); rsa/openssl {:.2}\n",
            ours * 1e3,
            1e3 / ops,
            ours * ops
        ),
        None => println!(
            "## RSA-4096 private-key operation, one core: rsa 0.10 {:.2} ms (openssl not found)\n",
            ours * 1e3
        ),
    }

    // 1,000 packets from bob to alice on a relay.
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(
        &dir.path().join("relay"),
        "[relay]\nlisten = \"127.0.0.1:0\"\nrate_limit_per_minute = 0\nmax_inbox_packets = 100000\n",
    );
    let t = Instant::now();
    let objects: Vec<String> = (0..n)
        .map(|i| {
            json!({
                "sender": bob.public().canonical(),
                "channel_id": "0b9b7c7e-5d3a-4f43-9b1e-0c6e2f1d2a3b",
                "type": "MESSAGE",
                "content": format!("message number {i}"),
                "id": format!("00000000-0000-4000-8000-{i:012}"),
                "timestamp": "2026-11-26T19:27:44.123Z",
            })
            .to_string()
        })
        .collect();
    let sealed = parallel(&objects, |o| {
        seal(o.as_bytes(), &bob, alice.public()).unwrap()
    });
    let http = common::agent();
    for s in &sealed {
        let packet = json!({"recipient": alice.public().canonical(), "message": s.message, "hash": s.hash.to_string(), "signature": s.signature});
        let resp = http
            .post(&format!("http://{}/send", relay.addr))
            .send(packet.to_string().as_bytes())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    println!("prepared {n} packets in {:.1} s", t.elapsed().as_secs_f64());
    let keys: Vec<Vec<u8>> = sealed
        .iter()
        .map(|s| unb64(s.message.split('.').nth(1).unwrap()).unwrap())
        .collect();

    println!("## receive of {n} new packets vs {n} OAEP decryptions on all cores, {rounds} rounds");
    let (mut floors, mut receives) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = Instant::now();
        parallel(&keys, |k| private.oaep_decrypt::<Sha256>(k).unwrap());
        let floor = start.elapsed().as_secs_f64();

        let home = tempfile::tempdir().unwrap();
        let key_path = home.path().join("id.pem");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/alice-4096.key.pem"),
            &key_path,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = home.path().join("config.toml");
        std::fs::write(&config, format!("[identity]\nprivate_key = \"{}\"\n[client]\ndata_dir = \"{}\"\nservers = [\"{}\"]\n", key_path.display(), home.path().join("client").display(), relay.addr)).unwrap();
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_jasper"))
            .arg("--config")
            .arg(&config)
            .args(["receive", "--json"])
            .output()
            .unwrap();
        let took = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(lines, n, "every packet received");
        println!(
            "round {round}: floor {floor:.2} s, receive {took:.2} s, ratio {:.2}",
            took / floor
        );
        floors.push(floor);
        receives.push(took);
    }
    let (f, r) = (median(floors), median(receives));
    println!(
        "median: floor {f:.2} s, receive {r:.2} s, receive/floor {:.2} (target <= 1.5)",
        r / f
    );
}

/// The identity's private key (the benchmark measures the same operation receive does).
fn jasper_private(id: &Identity) -> rsa::PrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    let pem = id.to_pem(None).unwrap();
    rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap()
}
