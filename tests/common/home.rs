//! A person's home for client tests: a config naming a fixture key and some relays, and a
//! two-relay mesh to talk through.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{Relay, eventually, free_port, key_b64, run_jasper};

/// Two relays syncing with each other every second. They trust only each other (configured
/// peers): the loopback addresses clients tell them about (proxies) are not learned.
pub fn mesh() -> (Relay, Relay) {
    let (p1, p2) = (free_port(), free_port());
    let cfg = |me: u16, peer: u16| {
        format!(
            "public_address = \"127.0.0.1:{me}\"\npeers = [\"127.0.0.1:{peer}\"]\n\
             message_sync_interval = \"1s\"\nserver_sync_interval = \"1s\"\nrate_limit_per_minute = 0"
        )
    };
    (
        Relay::start_at(p1, &cfg(p1, p2)),
        Relay::start_at(p2, &cfg(p2, p1)),
    )
}

/// Alice and Bob at home on `relays`, each with the other as a contact.
pub fn alice_and_bob(relays: &[SocketAddr]) -> (Home, Home) {
    alice_and_bob_with(relays, "")
}

/// [`alice_and_bob`] with `client_extra` in both `[client]` sections.
pub fn alice_and_bob_with(relays: &[SocketAddr], client_extra: &str) -> (Home, Home) {
    let alice = Home::with_config("alice", None, relays, client_extra);
    let bob = Home::with_config("bob", None, relays, client_extra);
    alice.add("bob", "bob-4096");
    bob.add("alice", "alice-4096");
    (alice, bob)
}

/// A person's home: a config naming a fixture key and the given relays.
pub struct Home {
    dir: tempfile::TempDir,
}

pub fn copy_key(name: &str, to: &Path) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/keys/{name}-4096.key.pem")),
        to,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Home {
    pub fn new(key: &str, relays: &[SocketAddr]) -> Home {
        Self::with_receive_key(key, None, relays)
    }

    /// A home whose identity is `key`, receiving also on `receive` (a fixture key).
    pub fn with_receive_key(key: &str, receive: Option<&str>, relays: &[SocketAddr]) -> Home {
        Self::with_config(key, receive, relays, "")
    }

    /// A home whose identity is `key`, receiving also on `receive` (a fixture key), with
    /// `client_extra` appended to its `[client]` section.
    pub fn with_config(
        key: &str,
        receive: Option<&str>,
        relays: &[SocketAddr],
        client_extra: &str,
    ) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("id.pem");
        copy_key(key, &key_path);
        let receive_keys = match receive {
            Some(name) => {
                let path = dir.path().join("receive.pem");
                copy_key(name, &path);
                format!("receive_keys = [\"{}\"]\n", path.display())
            }
            None => String::new(),
        };
        let servers: Vec<String> = relays.iter().map(|a| format!("\"{a}\"")).collect();
        let config = dir.path().join("xdg-config/jasper/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            format!(
                                "[identity]\nprivate_key = \"{}\"\n{receive_keys}[client]\ndata_dir = \"{}\"\nservers = [{}]\nrequest_timeout = \"5s\"\n{client_extra}\n",
                key_path.display(),
                dir.path().join("client").display(),
                servers.join(", ")
            ),
        )
        .unwrap();
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `from` with `to` in the configuration file (which must hold `from`).
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.dir.path().join("xdg-config/jasper/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} is not in {text}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = run_jasper(args, self.path());
        assert_eq!(code, 0, "jasper {args:?} failed: {err}");
        out
    }

    pub fn add(&self, name: &str, key: &str) {
        self.ok(&["contacts", "add", name, &key_b64(key)]);
    }

    pub fn send(&self, to: &str, text: &str) -> String {
        self.ok(&["send", to, text]).trim().to_owned()
    }

    /// Receives until `want` holds for the new lines (or 20 s pass); returns every line seen.
    pub fn receive_until(&self, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let ok = eventually(Duration::from_secs(20), || {
            let out = self.ok(&["receive", "--json"]);
            seen.extend(
                out.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
            want(&seen)
        });
        assert!(ok, "never received what was expected; got {seen:?}");
        seen
    }

    pub fn history(&self, with: &str) -> Vec<Value> {
        self.ok(&["history", with, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
