//! Test fixture: runs the real `jasper` binary on a free loopback port with its own temporary
//! data directory, waits until it listens, and kills it on drop, printing its log when a test
//! failed.

#![allow(dead_code)]

pub mod fake_peer;
pub mod home;
pub mod interactive;
pub mod redis;
pub mod stun;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The binary under test.
pub fn jasper_bin() -> &'static str {
    env!("CARGO_BIN_EXE_jasper")
}

/// Test keys shipped in tests/fixtures/keys (see the README there).
pub fn key_pem(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(format!("{name}.pub.pem"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

include!("fake_spki.rs");

/// The base64 DER SPKI of an RSA public key with a `bits`-bit modulus that is no real key
/// (see [`spki_of_bits`]).
pub fn fake_key_b64(bits: usize) -> String {
    spki_of_bits(bits, 0xC5)
}

/// The canonical (base64 DER SPKI) form of a fixture key.
pub fn key_b64(name: &str) -> String {
    let pem = key_pem(name);
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    body
}

/// A packet that passes a relay's checks (the relay cannot decrypt, so random bytes in JWE
/// shape are enough): `n` makes it unique, `ciphertext_bytes` sets its size.
pub fn packet_for(recipient: &str, n: u64, ciphertext_bytes: usize) -> Value {
    let part = |len: usize, seed: u64| {
        let mut bytes = Vec::with_capacity(len);
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        while bytes.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(len);
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let message = format!(
        "{}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#),
        part(512, n),
        part(12, n + 1),
        part(ciphertext_bytes, n + 2),
        part(16, n + 3)
    );
    let signature = format!(
        "{}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM"}"#),
        part(12, n + 4),
        part(900, n + 5),
        part(16, n + 6)
    );
    json!({
        "recipient": recipient,
        "hash": sha256_hex(&message),
        "message": message,
        "signature": signature,
    })
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HTTP client that returns 4xx/5xx as responses rather than errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `[relay]` lines for a relay that contacts no peer on its own: no sync rounds, no
/// broadcast. For tests that hand a relay public (made-up) servers, which it must never try
/// to reach: tests send traffic nowhere but loopback.
pub const QUIET: &str =
    "message_sync_interval = \"0s\"\nserver_sync_interval = \"0s\"\nbroadcast_fanout = 0";

/// A running relay process.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    config_path: PathBuf,
    child: Child,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Relay {
    /// Starts a relay whose `[relay]` section is the defaults for tests plus `extra` lines.
    pub fn start(extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        let config = format!(
            "[relay]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{extra}\n",
            dir.path().join("data").display()
        );
        std::fs::write(&config_path, config).expect("write config");
        Self::spawn_in(dir, config_path)
    }

    /// Starts a relay listening on `127.0.0.1:port` (see [`free_port`]), for meshes whose
    /// configuration must name each other's addresses up front.
    pub fn start_at(port: u16, extra: &str) -> Relay {
        Self::start_on(&format!("127.0.0.1:{port}"), extra)
    }

    /// Starts a relay listening on `listen` (another loopback address, say).
    pub fn start_on(listen: &str, extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        let config = format!(
            "[relay]\nlisten = \"{listen}\"\ndata_dir = \"{}\"\n{extra}\n",
            dir.path().join("data").display()
        );
        std::fs::write(&config_path, config).expect("write config");
        Self::spawn_in(dir, config_path)
    }

    /// Starts a relay with no configuration file at all, only flags.
    pub fn start_without_config() -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("flag-data");
        let args = vec![
            "relay".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        let (child, addr, log) = spawn_relay(&args, dir.path());
        Relay {
            config_path: PathBuf::new(),
            dir,
            addr,
            child,
            log,
            agent: agent(),
        }
    }

    fn args(&self) -> Vec<String> {
        if self.config_path.as_os_str().is_empty() {
            vec![
                "relay".to_owned(),
                "--listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--data-dir".to_owned(),
                self.dir.path().join("flag-data").display().to_string(),
            ]
        } else {
            vec![
                "--config".to_owned(),
                self.config_path.display().to_string(),
                "relay".to_owned(),
            ]
        }
    }

    fn spawn_in(dir: tempfile::TempDir, config_path: PathBuf) -> Relay {
        let args = vec![
            "--config".to_owned(),
            config_path.display().to_string(),
            "relay".to_owned(),
        ];
        let (child, addr, log) = spawn_relay(&args, dir.path());
        Relay {
            dir,
            addr,
            config_path,
            child,
            log,
            agent: agent(),
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs JSON and returns status and parsed body (Null when the body is not JSON).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// POSTs raw bytes.
    pub fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let mut resp = self
            .agent
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET /status.
    pub fn status(&self) -> Value {
        let mut resp = self
            .agent
            .get(&self.url("/status"))
            .call()
            .unwrap_or_else(|e| panic!("GET /status: {e}\n{}", self.log()));
        assert_eq!(resp.status().as_u16(), 200);
        resp.body_mut().read_json().expect("status is JSON")
    }

    /// Sends a packet and asserts it was accepted.
    pub fn send_ok(&self, packet: &Value) -> Value {
        let (status, body) = self.post("/send", packet);
        assert_eq!(status, 200, "send failed: {body}\n{}", self.log());
        body
    }

    /// The messages a `/fetch` by recipient returns.
    pub fn inbox(&self, recipient: &str) -> Vec<Value> {
        let (status, body) = self.post("/fetch", &json!({ "recipient": recipient }));
        assert_eq!(status, 200, "fetch failed: {body}");
        body["messages"].as_array().expect("messages array").clone()
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("relay exits after SIGTERM")
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("relay exits")
    }

    /// Starts the relay again on the same data directory and configuration (killing it first
    /// if it still runs).
    pub fn restart(self) -> Relay {
        let mut this = self;
        this.kill9();
        let (child, addr, log) = spawn_relay(&this.args(), this.dir.path());
        this.child = child;
        this.addr = addr;
        this.log = log;
        this
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- relay log ({}) -----\n{}", self.addr, self.log());
        }
    }
}

/// A TCP port that is free on 127.0.0.1 now, chosen below Linux's ephemeral range
/// (32768–60999) so that relays listening on port 0 and outgoing connections, which take
/// ephemeral ports, cannot grab it before its relay binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(13))) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a child to exit, up to `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts a relay process logging at `info`, or at `TEST_RELAY_LOG` when set (a `RUST_LOG`
/// filter, for looking into a failing test: `TEST_RELAY_LOG=info,jasper::relay::mesh=debug`).
fn spawn_relay(args: &[String], cwd: &Path) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let mut child = jasper_in(cwd)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RELAY_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jasper relay");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some((_, addr)) = line.split_once("relay listening address=")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_owned());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (child, addr.parse().expect("listen address"), log),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("relay did not start:\n{}", log.lock().unwrap());
        }
    }
}

/// `jasper` to run in `cwd`, whose `xdg-config` and `xdg-data` folders stand in for the
/// user's (and no `JASPER_CONFIG` from the environment).
pub fn jasper_in(cwd: &Path) -> Command {
    let mut command = Command::new(jasper_bin());
    command
        .current_dir(cwd)
        .env_remove("JASPER_CONFIG")
        .env("XDG_CONFIG_HOME", cwd.join("xdg-config"))
        .env("XDG_DATA_HOME", cwd.join("xdg-data"));
    command
}

/// Runs `jasper` with `args` and returns (exit code, stdout, stderr).
pub fn run_jasper(args: &[&str], cwd: &Path) -> (i32, String, String) {
    run_jasper_with_stdin(args, cwd, None)
}

/// Runs `jasper` in `cwd` (whose `xdg-config` and `xdg-data` folders stand in for the user's),
/// feeding `stdin` when given; returns (exit code, stdout, stderr).
pub fn run_jasper_with_stdin(
    args: &[&str],
    cwd: &Path,
    stdin: Option<&str>,
) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = jasper_in(cwd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jasper");
    if let Some(text) = stdin {
        // The program may exit without reading (say, on an early error): a broken pipe here
        // is its answer, not the harness's failure.
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    let out = child.wait_with_output().expect("jasper finishes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
