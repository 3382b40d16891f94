//! `jasper chat`: interactive conversations between real clients. Anonymous mode goes through a
//! real relay mesh; transparent mode meets through a real `jasper stun` (rendezvous over TLS,
//! STUN over UDP) and talks over a real WebRTC data channel on loopback.

mod common;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::home::{Home, mesh};
use common::{jasper_bin, key_b64, run_jasper};
use serde_json::Value;

/// A running `jasper chat`: lines go to its stdin; its stdout lines are collected.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
    err: Arc<Mutex<String>>,
}

impl Chat {
    fn start(home: &Home, args: &[&str]) -> Chat {
        let mut child = Command::new(jasper_bin())
            .arg("chat")
            .args(args)
            .current_dir(home.path())
            .env_remove("JASPER_CONFIG")
            .env("XDG_CONFIG_HOME", home.path().join("xdg-config"))
            .env("XDG_DATA_HOME", home.path().join("xdg-data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run jasper chat");
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
        Chat {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// The next JSON line on stdout (within `limit`).
    fn next_json(&self, limit: Duration) -> Value {
        match self.out.recv_timeout(limit) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr:\n{}", self.stderr())),
            Err(_) => panic!("no output within {limit:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Closes stdin and waits for the exit status.
    fn finish(mut self, limit: Duration) -> (i32, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status.code().unwrap_or(-1), self.stderr());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("chat did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn history(home: &Home, with: &str) -> Vec<String> {
    let (code, out, err) = run_jasper(&["history", with, "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn anonymous_chat_goes_both_ways_through_the_relays() {
    let (r1, r2) = mesh();
    let relays = [r1.addr, r2.addr];
    let alice = Home::new("alice", &relays);
    let bob = Home::new("bob", &relays);
    alice.add("bob", "bob-4096");
    bob.add("alice", "alice-4096");

    let mut a = Chat::start(&alice, &["bob", "--json", "--interval", "200ms"]);
    let mut b = Chat::start(&bob, &["alice", "--json", "--interval", "200ms"]);
    a.say("hello bob, through the mesh");
    let got = b.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hello bob, through the mesh");
    assert_eq!(got["contact"], "alice");
    assert_eq!(got["type"], "MESSAGE");
    assert_eq!(got["sender"], key_b64("alice-4096"));
    b.say("hi alice");
    let got = a.next_json(Duration::from_secs(20));
    assert_eq!(got["content"], "hi alice");
    assert_eq!(got["contact"], "bob");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(
        history(&alice, "bob"),
        ["hello bob, through the mesh", "hi alice"]
    );
    assert_eq!(
        history(&bob, "alice"),
        ["hello bob, through the mesh", "hi alice"]
    );
}

#[test]
fn transparent_chat_without_a_rendezvous_says_what_to_configure() {
    let alice = Home::new("alice", &[]);
    alice.add("bob", "bob-4096");
    let (code, _, err) = run_jasper(&["chat", "bob", "--transparent"], alice.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[client] rendezvous"), "{err}");
    // An unknown contact is a user error too.
    let (code, _, err) = run_jasper(&["chat", "nobody", "--transparent"], alice.path());
    assert_eq!(code, 2, "{err}");
}
