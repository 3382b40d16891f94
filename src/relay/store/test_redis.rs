//! A real `redis-server` for the Redis engine's tests: its own process, directory and Unix
//! socket (no TCP port, so nothing can collide), configured as the engine requires.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::redis::{RedisOptions, RedisStore};

/// A running server, killed when dropped.
pub(crate) struct TestRedis {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts a durable server (`appendonly yes`, `appendfsync always`); `extra` are more
    /// `--name value` settings.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed for these tests (tests/run.sh installs it)");
        let server = Self {
            child,
            socket,
            _dir: dir,
        };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Where its socket is.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Options for a store under a prefix no other store of this process uses.
    pub(crate) fn fresh_options(&self) -> RedisOptions {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        RedisOptions {
            url: self.url(),
            prefix: format!("test{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            ..RedisOptions::default()
        }
    }

    /// A store under a fresh prefix.
    pub(crate) fn fresh_store(&self) -> RedisStore {
        RedisStore::open(&self.fresh_options()).unwrap()
    }

    /// A connection for looking at (or damaging) what the engine wrote.
    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
