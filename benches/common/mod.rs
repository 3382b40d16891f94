//! Shared by the benchmarks: fixture keys, packet generation, statistics, and running the
//! real `jasper` binary.
#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jasper::proto::{Fingerprint, PacketHash, PublicKey};
use jasper::relay::store::PutLimits;

/// The fixture keys.
pub const KEYS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// No inbox or store limit, for filling a store directly.
pub const UNLIMITED: PutLimits = PutLimits {
    max_inbox_packets: u64::MAX,
    max_stored_bytes: u64::MAX,
};

/// The inboxes (key fingerprints) of `keys`, public keys as the fixtures give them.
pub fn inboxes(keys: &[String]) -> Vec<Fingerprint> {
    keys.iter()
        .map(|k| PublicKey::parse(k, 4096).unwrap().fingerprint())
        .collect()
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn key(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/keys/{name}-4096.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(path).expect("fixture key");
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// A unique JWE-shaped packet to a 4096-bit key with a `ct`-byte ciphertext and a
/// `sig`-byte encrypted signature. Its JSON is about `4/3 (ct + sig) + 1.6 KiB`.
pub fn packet(recipient: &str, n: u64, ct: usize, sig: usize) -> Vec<u8> {
    let fill = |len: usize, seed: u64| {
        let mut out = Vec::with_capacity(len + 8);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        URL_SAFE_NO_PAD.encode(out)
    };
    let message = format!(
        "{}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#),
        fill(512, n),
        fill(12, n + 1),
        fill(ct, n + 2),
        fill(16, n + 3)
    );
    let signature = format!(
        "{}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM"}"#),
        fill(12, n + 4),
        fill(sig, n + 5),
        fill(16, n + 6)
    );
    serde_json::json!({
        "recipient": recipient,
        "hash": PacketHash::of_message(&message).to_string(),
        "message": message,
        "signature": signature,
    })
    .to_string()
    .into_bytes()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A `jasper relay` process, killed on drop; its log lines are kept.
pub struct RelayProcess {
    /// Its address.
    pub addr: SocketAddr,
    /// Its process.
    pub child: Child,
    /// Its log so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Starts the release binary with `config` (TOML text), written next to `data_dir`.
    pub fn start(data_dir: &Path, config: &str) -> RelayProcess {
        let path = data_dir.with_extension("toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_jasper"))
            .arg("--config")
            .arg(&path)
            .args(["relay", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn relay");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, a)) = line.split_once("relay listening address=")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(a.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("relay started")
            .parse()
            .unwrap();
        RelayProcess { addr, child, log }
    }

    /// Log lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for benchmarks.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Whether the relay at `addr` holds the packet `hash`.
pub fn holds(agent: &ureq::Agent, addr: SocketAddr, hash: &PacketHash) -> bool {
    let body = format!("{{\"hashes\":[\"{hash}\"]}}");
    match agent
        .post(&format!("http://{addr}/fetch"))
        .send(body.as_bytes())
    {
        Ok(mut r) => r
            .body_mut()
            .read_to_string()
            .is_ok_and(|t| t.contains(&hash.to_string())),
        Err(_) => false,
    }
}

/// The `messages` count in the relay's `/status`.
pub fn message_count(agent: &ureq::Agent, addr: SocketAddr) -> u64 {
    agent
        .get(&format!("http://{addr}/status"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
        .and_then(|v| v["messages"].as_u64())
        .unwrap_or(0)
}
