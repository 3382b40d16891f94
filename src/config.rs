//! The one TOML configuration file: serde structs with a default for every field, then
//! [`Config::resolve`] checks invariants. `--config` > `JASPER_CONFIG` > the XDG default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::proto::ServerEntry;
use crate::proto::key::{ABSOLUTE_MIN_KEY_BITS, MAX_KEY_BITS};

/// What went wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[identity]`: who this user is.
    pub identity: IdentityConfig,
    /// `[client]`: the messaging client.
    pub client: ClientConfig,
    /// `[relay]`: the REST relay.
    pub relay: RelayConfig,
    /// `[stun]`: the STUN service and rendezvous of transparent mode.
    pub stun: StunConfig,
}

/// `[identity]`: the user's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The private key: a PKCS#8 PEM file, encrypted or not (created by `jasper init`).
    pub private_key: PathBuf,
    /// More private keys that only receive (give their public keys to some contacts, so that
    /// those contacts' messages reach you through other relays).
    pub receive_keys: Vec<PathBuf>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            private_key: default_data_dir().join("identity.pem"),
            receive_keys: Vec::new(),
        }
    }
}

/// `[client]`: the messaging client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Directory of the client's database (contacts, history, known relays).
    pub data_dir: PathBuf,
    /// Relays to start from, as "host:port". More are learned from them (`/sync/servers`).
    pub servers: Vec<String>,
    /// Whether relays on loopback, private and link-local addresses may be learned (a mesh
    /// on a private network). Configured relays are used whatever their address.
    pub allow_private_servers: bool,
    /// Time allowed for one request to a relay.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// STUN service for transparent mode's ICE, "host:port" (UDP).
    pub stun: Option<String>,
    /// Rendezvous of transparent mode, "host:port" (TLS; the STUN service's `tls_listen`).
    pub rendezvous: Option<String>,
    /// The rendezvous certificate's SHA-256 fingerprint (hex, as `jasper stun` prints it).
    /// When set, only that certificate is accepted; otherwise the first one seen is remembered
    /// and required from then on (trust on first use).
    pub rendezvous_fingerprint: Option<String>,
    /// Local address for transparent mode's WebRTC (`0.0.0.0:0`: every interface, any port).
    pub rtc_bind: SocketAddr,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir().join("client"),
            servers: Vec::new(),
            allow_private_servers: false,
            request_timeout: Duration::from_secs(30),
            stun: None,
            rendezvous: None,
            rendezvous_fingerprint: None,
            rtc_bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

impl ClientConfig {
    /// The configured relays, parsed (resolve() has checked them).
    pub fn peer_entries(&self) -> Vec<ServerEntry> {
        self.servers.iter().filter_map(|p| p.parse().ok()).collect()
    }

    /// Checks the client section.
    pub fn resolve(&self) -> Result<(), ConfigError> {
        for server in &self.servers {
            if let Err(e) = server.parse::<ServerEntry>() {
                return Err(ConfigError::Invalid(format!(
                    "[client] servers: {server:?} is not host:port ({e})"
                )));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "[client] request_timeout must be longer than zero".into(),
            ));
        }
        for (name, value) in [("stun", &self.stun), ("rendezvous", &self.rendezvous)] {
            if let Some(value) = value
                && let Err(e) = value.parse::<ServerEntry>()
            {
                return Err(ConfigError::Invalid(format!(
                    "[client] {name}: {value:?} is not host:port ({e})"
                )));
            }
        }
        if let Some(fp) = &self.rendezvous_fingerprint
            && parse_fingerprint(fp).is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "[client] rendezvous_fingerprint: {fp:?} is not 64 hex digits \
                 (colons allowed), as `jasper stun` prints it"
            )));
        }
        Ok(())
    }
}

/// `[relay]`: everything `jasper relay` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Whether `jasper serve` runs the relay.
    pub enabled: bool,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Directory holding the relay's database.
    pub data_dir: PathBuf,
    /// Where packets are stored: the embedded redb database under `data_dir`, or a Redis
    /// server that several relays may share.
    pub store: StoreEngine,
    /// The Redis server when `store = "redis"`: `redis://[user:password@]host:port/db` or
    /// `unix:///path/to/redis.sock`.
    pub redis_url: String,
    /// Prefix of every Redis key, so that several deployments can share one database.
    pub redis_prefix: String,
    /// For a `rediss://` URL: the certificate authorities (PEM) to trust for the server's
    /// certificate; unset, the system's.
    pub redis_tls_ca: Option<PathBuf>,
    /// For a `rediss://` URL: this relay's client certificate (PEM), when Redis asks for one.
    pub redis_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `redis_tls_cert`.
    pub redis_tls_key: Option<PathBuf>,
    /// How long a packet is kept after it was first stored.
    #[serde(with = "duration_text")]
    pub retention: Duration,
    /// How long an expired packet's hash is remembered and refused.
    #[serde(with = "duration_text")]
    pub tombstone_horizon: Duration,
    /// How often expired packets are swept.
    #[serde(with = "duration_text")]
    pub sweep_interval: Duration,
    /// Longest time between durable commits of the index under load: at most this much of
    /// the log is re-read after a crash. Longer is faster under heavy load, with rarer but
    /// longer pauses. Acknowledged packets are durable either way (they are in the log).
    #[serde(with = "duration_text")]
    pub checkpoint_interval: Duration,
    /// Largest `message` field accepted, in bytes (an integer or a string such as "256KiB").
    #[serde(with = "byte_size")]
    pub max_message_bytes: u64,
    /// Smallest recipient RSA key accepted, in bits (at least 2048).
    pub min_key_bits: usize,
    /// Whether peers on loopback, private and link-local addresses may be learned and contacted.
    pub allow_private_peers: bool,
    /// Relays to sync with from the start, as "host:port".
    pub peers: Vec<String>,
    /// This relay's own public "host:port", so that it never adds itself as a peer.
    pub public_address: Option<String>,
    /// How often packets are synced with peers; zero: never (peers that call this relay
    /// still sync with it, and broadcast still pushes).
    #[serde(with = "duration_text")]
    pub message_sync_interval: Duration,
    /// How often server lists are synced with peers; zero: never.
    #[serde(with = "duration_text")]
    pub server_sync_interval: Duration,
    /// Peers each newly stored packet is pushed to at once (0: no broadcasting, sync only).
    pub broadcast_fanout: usize,
    /// Offer and use set reconciliation with peers that offer it too (else `/sync/hashes`).
    pub reconciliation: bool,
    /// Most live packets stored for one recipient; further sends get 429 until some expire.
    pub max_inbox_packets: u64,
    /// Most bytes of packets stored in all; further sends get 503.
    #[serde(with = "byte_size")]
    pub max_stored_bytes: u64,
    /// Most hashes in one `/fetch` or `/sync/hashes` request.
    pub max_hashes_per_request: usize,
    /// Most servers in one `/sync/servers` request.
    pub max_servers_per_request: usize,
    /// Most servers this relay remembers.
    pub max_known_servers: usize,
    /// Largest `/fetch` answer in bytes; the rest comes with the next cursor.
    #[serde(with = "byte_size")]
    pub max_response_bytes: u64,
    /// Requests per minute one client address may make (0: unlimited). Kept in memory only.
    /// Peers are not limited (configured ones, and learned ones that have served this relay):
    /// a relay pushes every packet it stores.
    pub rate_limit_per_minute: u32,
    /// Most simultaneous TCP connections; more are closed at once.
    pub max_connections: usize,
    /// Most simultaneous TCP connections from one client address (an IPv6 /64 counts as
    /// one); more are closed at once.
    pub max_connections_per_ip: usize,
    /// Most requests handled at once; more get 503 until one finishes.
    pub max_concurrent_requests: usize,
    /// Memory that requests in progress may take, estimated from their sizes (a body, what
    /// parsing it takes, the answer); a request that would go over gets 503. One request
    /// larger than this is still served, alone. Answers over 64 KiB that are waiting to be
    /// written take as much again (answers to addresses that are not peers', at most half;
    /// to one client network, at most an eighth of that half, or one answer).
    #[serde(with = "byte_size")]
    pub max_request_memory: u64,
    /// Time allowed to send request headers and body; also, once an answer has to wait for
    /// its client, the time the client has to take 16 KiB of it (or all of it) before the
    /// connection is closed.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: default_data_dir().join("relay"),
            store: StoreEngine::Redb,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "jasper".into(),
            redis_tls_ca: None,
            redis_tls_cert: None,
            redis_tls_key: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            tombstone_horizon: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(10),
            checkpoint_interval: crate::relay::store::redb::DEFAULT_CHECKPOINT_INTERVAL,
            max_message_bytes: 256 * 1024,
            min_key_bits: 4096,
            allow_private_peers: false,
            peers: Vec::new(),
            public_address: None,
            message_sync_interval: Duration::from_secs(60),
            server_sync_interval: Duration::from_secs(3600),
            broadcast_fanout: 8,
            reconciliation: true,
            max_inbox_packets: 10_000,
            max_stored_bytes: 16 << 30,
            max_hashes_per_request: 250_000,
            max_servers_per_request: 1_000,
            max_known_servers: 1_000,
            max_response_bytes: 4 << 20,
            rate_limit_per_minute: 600,
            max_connections: 4_096,
            max_connections_per_ip: 256,
            max_concurrent_requests: 1_024,
            max_request_memory: 256 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The relay's storage engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// redb, embedded: one process, nothing else to run.
    Redb,
    /// A Redis server, shared by every relay process that points at it.
    Redis,
}

/// `[stun]`: everything `jasper stun` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StunConfig {
    /// Whether `jasper serve` runs the STUN service.
    pub enabled: bool,
    /// Address and port of STUN over UDP.
    pub udp_listen: SocketAddr,
    /// Address and port of STUN over TLS and the rendezvous.
    pub tls_listen: SocketAddr,
    /// Directory holding the generated TLS certificate and key.
    pub data_dir: PathBuf,
    /// TLS certificate chain (PEM). Unset: a self-signed one is made in `data_dir`.
    pub tls_certificate: Option<PathBuf>,
    /// TLS private key (PEM) for `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Binding requests answered per second for one source address (UDP); more are dropped.
    pub rate_limit_per_second: u32,
    /// How long an unanswered offer waits for its peer.
    #[serde(with = "duration_text")]
    pub offer_ttl: Duration,
    /// Offers that may wait for one key at once.
    pub max_offers_per_key: usize,
    /// Offers that may wait in all.
    pub max_pending_offers: usize,
    /// TLS connections served at once.
    pub max_connections: usize,
    /// TLS connections served at once for one client address (IPv6: one /64); more are
    /// closed at once.
    pub max_connections_per_ip: usize,
    /// Time allowed for the TLS handshake and for authentication.
    #[serde(with = "duration_text")]
    pub handshake_timeout: Duration,
    /// A TLS connection silent this long is closed.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for StunConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: SocketAddr::from(([0, 0, 0, 0], 3478)),
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 5349)),
            data_dir: default_data_dir().join("stun"),
            tls_certificate: None,
            tls_key: None,
            rate_limit_per_second: 50,
            offer_ttl: Duration::from_secs(120),
            max_offers_per_key: 16,
            max_pending_offers: 10_000,
            max_connections: 4_096,
            max_connections_per_ip: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl StunConfig {
    /// Checks the STUN section.
    pub fn resolve(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[stun] {m}")));
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return bad("tls_certificate and tls_key go together: set both or neither".into());
        }
        for (name, d) in [
            ("offer_ttl", self.offer_ttl),
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        for (name, n) in [
            ("rate_limit_per_second", self.rate_limit_per_second as usize),
            ("max_offers_per_key", self.max_offers_per_key),
            ("max_pending_offers", self.max_pending_offers),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
        ] {
            if n == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Parses a certificate fingerprint: 64 hex digits, colons allowed between pairs.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    // (`from_str_radix` alone would take a sign: "+a".)
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `$XDG_DATA_HOME/jasper`, else `~/.local/share/jasper`, else `./jasper-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("jasper");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/jasper");
    }
    PathBuf::from("jasper-data")
}

/// `$XDG_CONFIG_HOME/jasper/config.toml`, else `~/.config/jasper/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("jasper/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config/jasper/config.toml"))
}

impl Config {
    /// Loads the configuration: `explicit` (from `--config` or `JASPER_CONFIG`) must exist;
    /// otherwise the XDG default is read when present, else every default applies.
    /// Returns the config and the file it came from.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => default_config_path().filter(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok((Self::default(), None));
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.clone(),
                message,
            },
            ConfigError::Invalid(message) => ConfigError::Parse {
                path: path.clone(),
                message,
            },
            other => other,
        })?;
        Ok((config, Some(path)))
    }

    /// Parses TOML text, expands the paths in it (see [`expand_path`]) and checks it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.expand_paths()?;
        config.resolve()?;
        Ok(config)
    }

    /// Expands `~` and `$HOME`, `$XDG_DATA_HOME`, `$XDG_CONFIG_HOME` at the start of every
    /// path, as the sample's defaults are written.
    fn expand_paths(&mut self) -> Result<(), ConfigError> {
        let Config {
            identity,
            client,
            relay,
            stun,
        } = self;
        let mut paths: Vec<&mut PathBuf> = vec![
            &mut identity.private_key,
            &mut client.data_dir,
            &mut relay.data_dir,
            &mut stun.data_dir,
        ];
        paths.extend(identity.receive_keys.iter_mut());
        paths.extend(
            [
                &mut relay.redis_tls_ca,
                &mut relay.redis_tls_cert,
                &mut relay.redis_tls_key,
                &mut stun.tls_certificate,
                &mut stun.tls_key,
            ]
            .into_iter()
            .flatten(),
        );
        for path in paths {
            *path = expand_path(path)?;
        }
        Ok(())
    }

    /// Checks every invariant the code relies on; never panics.
    pub fn resolve(&self) -> Result<(), ConfigError> {
        self.client.resolve()?;
        self.relay.resolve()?;
        self.stun.resolve()
    }
}

/// `path` with a leading `~` or `$HOME`, `$XDG_DATA_HOME` or `$XDG_CONFIG_HOME` (also as
/// `${…}`) replaced by its value (the XDG ones default to `~/.local/share` and `~/.config`
/// when unset, as the XDG specification says). Other `$` names are refused rather than kept
/// as a directory literally named so.
pub fn expand_path(path: &Path) -> Result<PathBuf, ConfigError> {
    expand_path_with(path, &|name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// [`expand_path`] with the environment given as `var`.
fn expand_path_with(
    path: &Path,
    var: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<PathBuf, ConfigError> {
    let Some(text) = path.to_str() else {
        return Ok(path.to_path_buf());
    };
    let home = || {
        var("HOME").ok_or_else(|| {
            ConfigError::Invalid(format!("{text:?}: HOME is not set, so `~` means nothing"))
        })
    };
    let (head, rest) = match text.split_once('/') {
        Some((head, rest)) => (head, Some(rest)),
        None => (text, None),
    };
    let base = match head {
        "~" | "$HOME" | "${HOME}" => home()?,
        "$XDG_DATA_HOME" | "${XDG_DATA_HOME}" => match var("XDG_DATA_HOME") {
            Some(dir) => dir,
            None => home()?.join(".local/share"),
        },
        "$XDG_CONFIG_HOME" | "${XDG_CONFIG_HOME}" => match var("XDG_CONFIG_HOME") {
            Some(dir) => dir,
            None => home()?.join(".config"),
        },
        other if other.starts_with('$') => {
            return Err(ConfigError::Invalid(format!(
                "{text:?}: only ~, $HOME, $XDG_DATA_HOME and $XDG_CONFIG_HOME are expanded in \
                 paths; write the path out"
            )));
        }
        _ => return Ok(path.to_path_buf()),
    };
    Ok(match rest {
        Some(rest) => base.join(rest),
        None => base,
    })
}

/// Shortest `[relay] sweep_interval`.
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Shortest `[relay] message_sync_interval` and `server_sync_interval` that is not zero (off).
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest `[relay] checkpoint_interval`: shorter would stall the write path most of the time.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// Largest `[relay] max_message_bytes`. The packet log's records are sized for it.
pub const MAX_MESSAGE_BYTES: u64 = 64 << 20;

/// Longest `[relay] checkpoint_interval`: bounds the log a restart after a crash re-reads.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

impl RelayConfig {
    /// Checks the relay section.
    pub fn resolve(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[relay] {m}")));
        if !(ABSOLUTE_MIN_KEY_BITS..=MAX_KEY_BITS).contains(&self.min_key_bits) {
            return bad(format!(
                "min_key_bits = {} is outside {ABSOLUTE_MIN_KEY_BITS}..={MAX_KEY_BITS}",
                self.min_key_bits
            ));
        }
        if !(1024..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return bad(format!(
                "max_message_bytes = {} is outside 1KiB..=64MiB",
                self.max_message_bytes
            ));
        }
        if !(MIN_CHECKPOINT_INTERVAL..=MAX_CHECKPOINT_INTERVAL).contains(&self.checkpoint_interval)
        {
            return bad(format!(
                "checkpoint_interval = {} is outside {}..={}",
                humantime::format_duration(self.checkpoint_interval),
                humantime::format_duration(MIN_CHECKPOINT_INTERVAL),
                humantime::format_duration(MAX_CHECKPOINT_INTERVAL),
            ));
        }
        for (name, d) in [
            ("retention", self.retention),
            ("sweep_interval", self.sweep_interval),
            ("request_timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        // Loops that run every so often: shorter periods would keep a core busy.
        if self.sweep_interval < MIN_SWEEP_INTERVAL {
            return bad(format!(
                "sweep_interval = {} is shorter than {}",
                humantime::format_duration(self.sweep_interval),
                humantime::format_duration(MIN_SWEEP_INTERVAL)
            ));
        }
        for (name, d) in [
            ("message_sync_interval", self.message_sync_interval),
            ("server_sync_interval", self.server_sync_interval),
        ] {
            if !d.is_zero() && d < MIN_SYNC_INTERVAL {
                return bad(format!(
                    "{name} = {} is shorter than {} (\"0s\" turns it off)",
                    humantime::format_duration(d),
                    humantime::format_duration(MIN_SYNC_INTERVAL)
                ));
            }
        }
        for (name, n) in [
            ("max_inbox_packets", self.max_inbox_packets),
            ("max_stored_bytes", self.max_stored_bytes),
            ("max_hashes_per_request", self.max_hashes_per_request as u64),
            (
                "max_servers_per_request",
                self.max_servers_per_request as u64,
            ),
            ("max_known_servers", self.max_known_servers as u64),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("max_request_memory", self.max_request_memory),
        ] {
            if n == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.max_response_bytes < self.max_message_bytes * 2 {
            return bad(format!(
                "max_response_bytes = {} must hold at least two packets of max_message_bytes = {}",
                self.max_response_bytes, self.max_message_bytes
            ));
        }
        if let Err(e) = crate::relay::store::redis::check_prefix(&self.redis_prefix) {
            return bad(format!("redis_prefix = {:?} {e}", self.redis_prefix));
        }
        if let Err(e) = self.redis_options().check() {
            return bad(e);
        }
        for peer in self.peers.iter().chain(self.public_address.iter()) {
            if let Err(e) = peer.parse::<ServerEntry>() {
                return bad(format!("{peer:?} is not host:port ({e})"));
            }
        }
        Ok(())
    }

    /// The Redis engine's options (used when `store = "redis"`).
    pub fn redis_options(&self) -> crate::relay::store::RedisOptions {
        crate::relay::store::RedisOptions {
            url: self.redis_url.clone(),
            prefix: self.redis_prefix.clone(),
            tls_ca: self.redis_tls_ca.clone(),
            tls_cert: self.redis_tls_cert.clone(),
            tls_key: self.redis_tls_key.clone(),
        }
    }

    /// The configured peers, parsed (resolve() has checked them).
    pub fn peer_entries(&self) -> Vec<ServerEntry> {
        self.peers.iter().filter_map(|p| p.parse().ok()).collect()
    }
}

/// Durations as humantime text ("7d", "10s", "1h 30m").
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Longest duration any setting takes: timers and expiry times built from longer ones
    /// would overflow.
    const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"10s\", \"1m\" or \"7d\""
            ))
        })?;
        if duration > LONGEST {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is longer than any setting takes (10 years)"
            )));
        }
        Ok(duration)
    }
}

/// Byte sizes as an integer or text with a unit ("256KiB", "16 GiB", "1MB").
pub mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses "256KiB"-style text.
    pub fn parse(text: &str) -> Option<u64> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return None,
        };
        n.checked_mul(mult)
    }

    pub(super) fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(n),
            Either::Text(t) => parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a size; write bytes as an integer or e.g. \"256KiB\", \"16GiB\""
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_64_hex_digits_colons_allowed_and_nothing_else() {
        let hex = "3f".repeat(32);
        assert_eq!(parse_fingerprint(&hex), Some([0x3f; 32]));
        let colons: Vec<&str> = (0..32).map(|_| "3F").collect();
        assert_eq!(parse_fingerprint(&colons.join(":")), Some([0x3f; 32]));
        for bad in [
            "3f".repeat(30),
            format!("+a{}", "3f".repeat(31)),
            format!("-a{}", "3f".repeat(31)),
            format!("g0{}", "3f".repeat(31)),
            format!("é{}", "3f".repeat(31)),
        ] {
            assert_eq!(parse_fingerprint(&bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_expand_home_and_the_xdg_directories_at_their_start_only() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        let home_only = env(&[("HOME", "/home/u")]);
        let xdg = env(&[
            ("HOME", "/home/u"),
            ("XDG_DATA_HOME", "/data"),
            ("XDG_CONFIG_HOME", "/cfg"),
        ]);
        type Env<'a> = &'a dyn Fn(&str) -> Option<PathBuf>;
        let cases: [(&str, Env<'_>, &str); 9] = [
            ("~/k.pem", &home_only, "/home/u/k.pem"),
            ("~", &home_only, "/home/u"),
            ("$HOME/a", &home_only, "/home/u/a"),
            ("${HOME}/a", &home_only, "/home/u/a"),
            (
                "$XDG_DATA_HOME/jasper/relay",
                &home_only,
                "/home/u/.local/share/jasper/relay",
            ),
            ("$XDG_DATA_HOME/jasper/relay", &xdg, "/data/jasper/relay"),
            ("$XDG_CONFIG_HOME/x", &home_only, "/home/u/.config/x"),
            ("/srv/a/~/$HOME", &home_only, "/srv/a/~/$HOME"),
            ("rel/~x", &home_only, "rel/~x"),
        ];
        for (path, var, expanded) in cases {
            assert_eq!(
                expand_path_with(Path::new(path), var).unwrap(),
                PathBuf::from(expanded),
                "{path}"
            );
        }
        assert!(expand_path_with(Path::new("$OTHER/x"), &home_only).is_err());
        assert!(expand_path_with(Path::new("~/x"), &env(&[])).is_err());
        // `~user` is not expanded (nor refused): it is a name like any other.
        assert_eq!(
            expand_path_with(Path::new("~bob/x"), &home_only).unwrap(),
            PathBuf::from("~bob/x")
        );
    }

    #[test]
    fn stun_settings_are_checked() {
        let c = Config::from_toml("[stun]\noffer_ttl = \"5s\"\n").unwrap();
        assert_eq!(c.stun.offer_ttl, Duration::from_secs(5));
        assert_eq!(c.stun.udp_listen.port(), 3478);
        assert_eq!(c.stun.tls_listen.port(), 5349);
        let err = Config::from_toml("[stun]\ntls_key = \"k.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("tls_certificate"), "{err}");
        let err = Config::from_toml("[client]\nrendezvous_fingerprint = \"ab\"\n").unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
        let fp = "ab:".repeat(31) + "ab";
        assert_eq!(parse_fingerprint(&fp), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert!(Config::from_toml("[client]\nstun = \"nohost\"\n").is_err());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.relay.listen.port(), 8080);
        assert_eq!(c.relay.retention, Duration::from_secs(604_800));
        assert_eq!(c.relay.max_message_bytes, 262_144);
    }

    #[test]
    fn humane_values_parse() {
        let c = Config::from_toml(
            "[relay]\nretention = \"2h 30m\"\nmax_message_bytes = \"64KiB\"\npeers = [\"a.example:1\", \"[::1]:2\"]\n",
        )
        .unwrap();
        assert_eq!(c.relay.retention, Duration::from_secs(9000));
        assert_eq!(c.relay.max_message_bytes, 65_536);
        assert_eq!(c.relay.peer_entries().len(), 2);
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let e = Config::from_toml("[relay]\nretension = \"1d\"\n").unwrap_err();
        assert!(e.to_string().contains("retension"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Config::from_toml("[relay]\nretention = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = Config::from_toml("[relay]\nmin_key_bits = 1024\n").unwrap_err();
        assert!(e.to_string().contains("min_key_bits"), "{e}");
        let e = Config::from_toml("[relay]\npeers = [\"nope\"]\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = Config::from_toml("[relay]\nsweep_interval = \"0s\"\n").unwrap_err();
        assert!(e.to_string().contains("sweep_interval"), "{e}");
        // Zero turns the sync rounds off; it is no period for anything else.
        let quiet = Config::from_toml(
            "[relay]\nmessage_sync_interval = \"0s\"\nserver_sync_interval = \"0s\"\n",
        )
        .unwrap();
        assert!(quiet.relay.message_sync_interval.is_zero());
        assert!(quiet.relay.server_sync_interval.is_zero());
        let e = Config::from_toml("[relay]\nretention = \"0s\"\n").unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
        for out_of_range in ["0s", "99ms", "61m", "1d"] {
            let e = Config::from_toml(&format!(
                "[relay]\ncheckpoint_interval = \"{out_of_range}\"\n"
            ))
            .unwrap_err();
            assert!(
                e.to_string().contains("checkpoint_interval = ")
                    && e.to_string().contains("100ms..=1h"),
                "{out_of_range}: {e}"
            );
        }
        let e = Config::from_toml("[relay]\ncheckpoint_interval = 5\n").unwrap_err();
        assert!(e.to_string().contains("checkpoint_interval"), "{e}");
        for in_range in ["100ms", "1s", "1h"] {
            let c = Config::from_toml(&format!("[relay]\ncheckpoint_interval = \"{in_range}\"\n"))
                .unwrap();
            assert_eq!(
                c.relay.checkpoint_interval,
                humantime::parse_duration(in_range).unwrap()
            );
        }
    }

    #[test]
    fn serialized_defaults_parse_back() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size::parse("256KiB"), Some(262_144));
        assert_eq!(byte_size::parse("16 GiB"), Some(16 << 30));
        assert_eq!(byte_size::parse("10"), Some(10));
        assert_eq!(byte_size::parse("10 parsecs"), None);
        assert_eq!(byte_size::parse("99999999999999 TiB"), None);
    }
}
