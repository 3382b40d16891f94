//! Interactive commands (`jasper chat`, `jasper call`) run as child processes, and homes
//! set up for transparent mode.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::home::Home;
use super::jasper_in;
use super::stun::StunServer;

/// A running interactive `jasper` command (`chat`, `call`): lines go to its stdin; its stdout
/// lines are collected; its stderr is kept.
pub struct Interactive {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
    err: Arc<Mutex<String>>,
}

impl Interactive {
    pub fn start(home: &Home, args: &[&str]) -> Interactive {
        Self::start_with_log(home, args, "")
    }

    /// Starts it with `RUST_LOG` set to `log` (its log goes to stderr); `args` begin with the
    /// subcommand.
    pub fn start_with_log(home: &Home, args: &[&str], log: &str) -> Interactive {
        let mut command = jasper_in(home.path());
        if log.is_empty() {
            command.env_remove("RUST_LOG");
        } else {
            command.env("RUST_LOG", log);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run jasper");
        let (tx, out) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = Arc::new(Mutex::new(String::new()));
        let (mut stderr, sink) = (child.stderr.take().unwrap(), err.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Interactive {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Writes `bytes` to its stdin as they are (not necessarily text, nor one line).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends the process a signal (`kill -s NAME`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text`.
    pub fn wait_stderr(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                start.elapsed() < limit,
                "never printed {text:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next JSON line on stdout (within `limit`).
    pub fn next_json(&self, limit: Duration) -> Value {
        match self.out.recv_timeout(limit) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr:\n{}", self.stderr())),
            Err(_) => panic!("no output within {limit:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Closes stdin and waits for the exit status.
    pub fn finish(mut self, limit: Duration) -> (i32, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status.code().unwrap_or(-1), self.stderr());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("jasper did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[client]` lines that point a home at `stun` for transparent mode, with WebRTC on
/// loopback and, when `pin`, the printed certificate fingerprint pinned.
pub fn transparent_config(stun: &StunServer, pin: bool) -> String {
    let mut extra = format!(
        "stun = \"{}\"\nrendezvous = \"{}\"\nrtc_bind = \"127.0.0.1:0\"\n",
        stun.udp, stun.tls
    );
    if pin {
        extra.push_str(&format!(
            "rendezvous_fingerprint = \"{}\"\n",
            stun.printed_fingerprint
        ));
    }
    extra
}

/// Starts tests/interop/rtc_peer.py (aiortc) as `theirs`, talking to `ours` through `stun`,
/// with the mode arguments `mode` (see the script's doc).
pub fn aiortc_peer(stun: &StunServer, theirs: &str, ours: &str, mode: &[&str]) -> Child {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/run.sh`, which creates it with aiortc and jwcrypto",
        python.display()
    );
    let keys = root.join("tests/fixtures/keys");
    Command::new(&python)
        .arg(root.join("tests/interop/rtc_peer.py"))
        .arg(keys.join(format!("{theirs}-4096.key.pem")))
        .arg(keys.join(format!("{ours}-4096.pub.pem")))
        .arg(stun.tls.to_string())
        .arg(stun.udp.to_string())
        .arg(&stun.printed_fingerprint)
        .args(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the aiortc peer")
}
