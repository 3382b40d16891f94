//! The shared storage engine: every relay process that points at one Redis server serves the
//! same packets, so an operator who outgrows one machine runs several relays over one store
//! (JASPER.md recommends Redis for the relay's cache).
//!
//! Layout, under a configurable prefix `P` (hashes and fingerprints as lowercase hex, so keys
//! read well in `redis-cli` and sort like the bytes they stand for):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:pkt:<hash>` | string | `"<seq>\n<expires_at>\n<recipient>\n"` then the packet's JSON |
//! | `P:in:<recipient>` | sorted set | the recipient's packets: member `<hash>:<JSON length>:<expires_at>`, score seq |
//! | `P:exp` | sorted set | every packet: member hash, score expiry (ms) |
//! | `P:all` | sorted set | every packet, score 0: the hash order of `for_each_hash` |
//! | `P:tomb` | sorted set | tombstones: member hash, score the time they are forgotten |
//! | `P:meta` | hash | `schema`, `seq` (last sequence number), `packets`, `bytes` |
//! | `P:servers` | hash | known servers: field `host:port`, value the mesh's record |
//!
//! Every write is one Lua script (or one command), so it is atomic however many relays share
//! the server, and sequence numbers (the `fetch-cursor`) are global to all of them. Reads
//! walk the sorted sets in pages of 512. An inbox page names each packet's length and expiry,
//! so one `MGET` then reads exactly the packets that fit the byte budget; a read by hashes
//! takes one round trip more (each packet's header and length first). No answer holds more
//! than the budget and one packet. Durability is the
//! server's: Redis answers a script only after its append-only file holds it, when it runs
//! with `appendonly yes`, `appendfsync always` and `no-appendfsync-on-rewrite no`.
//! [`RedisStore::open`] refuses a server that
//! does not, or that may evict keys under memory pressure, because either would let a 200 from
//! `/send` stand for a packet that can vanish, and every batch reads those settings again in
//! the round trip that stores it, failing (so nothing is acknowledged) once they changed.
//! Each `put_batch_deferred` is therefore already durable when it returns, and `sync` has
//! nothing left to wait for.
//!
//! The scripts build their keys from the prefix, so this engine needs a standalone Redis, not
//! Redis Cluster. Replicas are not waited for (no `WAIT`): what a 200 promises is the
//! primary's disk, and promoting a replica can lose what the primary acknowledged last.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::{
    Connection, ConnectionAddr, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind,
};

use super::{
    ByteBudget, InboxEnd, NewPacket, PacketView, PutLimits, PutOutcome, Store, StoreError,
    StoreStats, SweepReport, SyncTicket, UnixMillis,
};
use crate::proto::{Fingerprint, PacketHash, ServerEntry};

/// The layout version written to `P:meta` and checked on open.
/// Layout 1 (a development build's) kept bare hashes in the inboxes.
const SCHEMA: &str = "2";
/// Longest wait for Redis to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one command's answer (a batch of 1,024 packets and its `fsync` included);
/// past it the request fails with 503 instead of hanging.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept for reuse.
const MAX_IDLE_CONNECTIONS: usize = 32;
/// Entries read per round trip when walking an index.
const PAGE: usize = 512;
/// Longest header of a stored packet: sequence number and expiry (up to 20 digits each), the
/// recipient's 64 hex digits and three newlines.
const HEADER_MAX: usize = 20 + 1 + 20 + 1 + 64 + 1;
/// The longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// Stores a batch: decides each packet as the redb engine does (tombstone, duplicate, expired,
/// inbox full, store full) and writes the new ones to every index. ARGV: prefix, now, inbox
/// limit, byte limit, then per packet its hash, packet key, inbox key, expiry, JSON length and
/// stored string without the leading sequence number. Answers one string per packet: its
/// sequence number, or `D`uplicate, `T`ombstoned, `I`nbox full, store `F`ull.
///
/// Each `redis.call` costs more than the command it runs, so the script reads with one
/// `ZMSCORE` per index and writes with one command per index (and one per inbox), whatever
/// the batch's size, instead of several commands per packet.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- Runs cmd over the values of list in slices (unpack has a stack limit).
local function bulk(cmd, key, list)
  for i = 1, #list, 1000 do
    local last = math.min(i + 999, #list)
    if key then
      redis.call(cmd, key, unpack(list, i, last))
    else
      redis.call(cmd, unpack(list, i, last))
    end
  end
end
local function scores(key, members)
  local out = {}
  for i = 1, #members, 1000 do
    local got = redis.call('ZMSCORE', key, unpack(members, i, math.min(i + 999, #members)))
    for j = 1, #got do out[#out + 1] = got[j] end
  end
  return out
end

local p = ARGV[1]
local now = tonumber(ARGV[2])
local max_inbox = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local meta, exps, all, tombs = p .. ':meta', p .. ':exp', p .. ':all', p .. ':tomb'
local state = redis.call('HMGET', meta, 'seq', 'bytes')
local seq = tonumber(state[1] or '0')
local bytes = tonumber(state[2] or '0')

local hashes = {}
for i = 5, #ARGV, 6 do hashes[#hashes + 1] = ARGV[i] end
local expiry = scores(exps, hashes)
local tomb = {}
if redis.call('EXISTS', tombs) == 1 then tomb = scores(tombs, hashes) end

local seen, counts, boxes, box_order = {}, {}, {}, {}
local strings, by_exp, by_hash = {}, {}, {}
local added = 0
local out = {}
for n = 1, #hashes do
  local i = 5 + (n - 1) * 6
  local h, pkey, ikey, exp, size = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local t, e = tomb[n], expiry[n]
  local result
  if t and tonumber(t) > now then
    result = 'T'
  elseif seen[h] then
    result = 'D'
  elseif e then
    if tonumber(e) > now then result = 'D' else result = 'T' end
  elseif tonumber(exp) <= now then
    result = 'T'
  else
    local count = counts[ikey]
    if not count then
      count = redis.call('ZCARD', ikey)
    end
    if count >= max_inbox then
      result = 'I'
    elseif bytes + size > max_bytes then
      result = 'F'
    else
      seq = seq + 1
      counts[ikey] = count + 1
      seen[h] = true
      strings[#strings + 1] = pkey
      strings[#strings + 1] = string.format('%d\n', seq) .. ARGV[i + 5]
      by_exp[#by_exp + 1] = exp
      by_exp[#by_exp + 1] = h
      by_hash[#by_hash + 1] = 0
      by_hash[#by_hash + 1] = h
      local box = boxes[ikey]
      if not box then
        box = {}
        boxes[ikey] = box
        box_order[#box_order + 1] = ikey
      end
      box[#box + 1] = seq
      box[#box + 1] = h .. ':' .. ARGV[i + 4] .. ':' .. exp
      bytes = bytes + size
      added = added + 1
      result = string.format('%d', seq)
    end
  end
  out[n] = result
end
if added > 0 then
  bulk('MSET', nil, strings)
  bulk('ZADD', exps, by_exp)
  bulk('ZADD', all, by_hash)
  for _, ikey in ipairs(box_order) do bulk('ZADD', ikey, boxes[ikey]) end
  redis.call('HSET', meta, 'seq', string.format('%d', seq), 'bytes', string.format('%d', bytes))
  redis.call('HINCRBY', meta, 'packets', added)
end
return out
",
    )
});

/// Removes up to a batch of expired packets from every index, leaving tombstones, and forgets
/// up to a batch of tombstones past their horizon. Answers `{expired, forgotten}`. Reads
/// only each packet's header, not its body.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p = ARGV[1]
local now = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local batch = tonumber(ARGV[4])
local meta, exps, all, tombs = p .. ':meta', p .. ':exp', p .. ':all', p .. ':tomb'
local due = redis.call('ZRANGEBYSCORE', exps, '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, batch)
local expired, freed = 0, 0
for i = 1, #due, 2 do
  local h, exp = due[i], tonumber(due[i + 1])
  redis.call('ZREM', exps, h)
  redis.call('ZREM', all, h)
  local key = p .. ':pkt:' .. h
  -- Only the header is read (at most 107 bytes): packets may be megabytes each.
  local len = redis.call('STRLEN', key)
  if len > 0 then
    local head = redis.call('GETRANGE', key, 0, 127)
    local header, e, r = string.match(head, '^(%d+\n(%d+)\n(%x+)\n)')
    if header then
      local size = len - #header
      redis.call('ZREM', p .. ':in:' .. r, h .. ':' .. size .. ':' .. e)
      freed = freed + size
    end
    redis.call('DEL', key)
    expired = expired + 1
    local forget_at = exp + horizon
    if forget_at > now then
      redis.call('ZADD', tombs, string.format('%d', forget_at), h)
    end
  end
end
if expired > 0 then
  redis.call('HINCRBY', meta, 'packets', -expired)
  redis.call('HINCRBY', meta, 'bytes', -freed)
end
local done = redis.call('ZRANGEBYSCORE', tombs, '-inf', ARGV[2], 'LIMIT', 0, batch)
for i = 1, #done do
  redis.call('ZREM', tombs, done[i])
end
return {expired, #done}
",
    )
});

/// Adds the servers (ARGV[3..]) not yet known while fewer than ARGV[2] are known; answers the
/// 1-based positions of those added.
static ADD_SERVERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = ARGV[1]
local max = tonumber(ARGV[2])
local known = redis.call('HLEN', key)
local added = {}
for i = 3, #ARGV do
  if known >= max then break end
  if redis.call('HSETNX', key, ARGV[i], '') == 1 then
    known = known + 1
    added[#added + 1] = i - 2
  end
end
return added
",
    )
});

/// One page of the expiry index after (ARGV[3] score, ARGV[4] member), or from the first entry
/// above ARGV[2] when no member is given: `member, score, member, score, …`. Continuing from
/// the member's current rank keeps the order when the sweeper removes entries before it.
static EXPIRY_PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, above, n = ARGV[1], ARGV[2], tonumber(ARGV[5])
if ARGV[4] ~= '' then
  local rank = redis.call('ZRANK', key, ARGV[4])
  if rank then
    return redis.call('ZRANGE', key, rank + 1, rank + n, 'WITHSCORES')
  end
  above = ARGV[3]
end
return redis.call('ZRANGEBYSCORE', key, '(' .. above, '+inf', 'WITHSCORES', 'LIMIT', 0, n)
",
    )
});

/// Options of the Redis engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path/to/redis.sock`.
    pub url: String,
    /// Prefix of every key, so that several deployments can share one database.
    pub prefix: String,
    /// For `rediss://`: the certificate authorities (PEM) that may sign the server's
    /// certificate; unset, the system's.
    pub tls_ca: Option<PathBuf>,
    /// For `rediss://`: this relay's certificate (PEM), for servers that ask for one (Redis
    /// does by default, `tls-auth-clients yes`).
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl RedisOptions {
    /// Why these options cannot work, before anything is read or contacted: TLS files for a
    /// URL without TLS, a certificate without its key or the other way round.
    pub fn check(&self) -> Result<(), String> {
        let tls_files = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        if tls_files && !self.url.starts_with("rediss://") {
            return Err(
                "redis_tls_ca, redis_tls_cert and redis_tls_key apply to rediss:// URLs only; \
                 write redis_url as rediss://HOST:PORT/DB"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("set both redis_tls_cert and redis_tls_key, or neither".into());
        }
        if self.url.starts_with("rediss://") && self.url.ends_with("#insecure") {
            return Err(
                "jasper does not talk to Redis without checking its certificate (#insecure); \
                 give the server's CA as redis_tls_ca instead"
                    .into(),
            );
        }
        Ok(())
    }

    /// A client for these options (files read now, nothing contacted yet).
    fn client(&self) -> Result<redis::Client, StoreError> {
        self.check().map_err(|message| StoreError::Open {
            path: "[relay] redis_url".into(),
            message,
        })?;
        let bad_url = |e: RedisError| StoreError::Open {
            path: "[relay] redis_url".into(),
            message: format!(
                "{e}; write redis://HOST:PORT/DB (user and password before an @ if needed), \
                 rediss://HOST:PORT/DB for TLS, or unix:///PATH/TO/SOCKET"
            ),
        };
        if self.tls_ca.is_none() && self.tls_cert.is_none() {
            return redis::Client::open(self.url.as_str()).map_err(bad_url);
        }
        let read = |key: &str, path: &Path| {
            std::fs::read(path).map_err(|e| StoreError::Open {
                path: format!("[relay] {key} = {:?}", path.display().to_string()),
                message: format!("cannot read it: {e}"),
            })
        };
        let root_cert = match &self.tls_ca {
            Some(path) => Some(read("redis_tls_ca", path)?),
            None => None,
        };
        let client_tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("redis_tls_cert", cert)?,
                client_key: read("redis_tls_key", key)?,
            }),
            _ => None,
        };
        redis::Client::build_with_tls(
            self.url.as_str(),
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )
        .map_err(bad_url)
    }
}

/// Relay storage in a Redis server (see the module documentation).
pub struct RedisStore {
    client: redis::Client,
    /// Where the server is, without credentials: for messages and logs.
    target: String,
    keys: Keys,
    idle: Mutex<Vec<Connection>>,
    written: AtomicU64,
    /// See [`Store::instance`]; kept in the meta hash, shared by relays sharing the keys, and
    /// read again with every batch stored.
    instance: AtomicU64,
}

/// The fixed key names under the prefix.
struct Keys {
    prefix: String,
    meta: String,
    exp: String,
    all: String,
    tomb: String,
    servers: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            meta: format!("{prefix}:meta"),
            exp: format!("{prefix}:exp"),
            all: format!("{prefix}:all"),
            tomb: format!("{prefix}:tomb"),
            servers: format!("{prefix}:servers"),
        }
    }

    fn packet(&self, hash: &str) -> String {
        format!("{}:pkt:{hash}", self.prefix)
    }

    fn inbox(&self, recipient: &str) -> String {
        format!("{}:in:{recipient}", self.prefix)
    }
}

/// Why `prefix` cannot prefix jasper's keys, if it cannot.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(format!("must be 1 to {MAX_PREFIX_LEN} characters long"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits and _ - . : only"
        ));
    }
    Ok(())
}

/// Where a client connects, without the credentials the URL may carry.
fn describe(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("unix://{}?db={db}", path.display()),
        other => format!("{other}/{db}"),
    }
}

/// Lowercase hex of a hash or fingerprint (both are 32 bytes).
fn hex(bytes: &[u8; 32]) -> String {
    PacketHash(*bytes)
        .to_hex()
        .iter()
        .map(|&c| char::from(c))
        .collect()
}

/// The 32 bytes written as 64 hex digits.
fn parse_hex32(text: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(text).ok()?;
    PacketHash::parse(text).ok().map(|h| h.0)
}

fn parse_hash(member: &[u8]) -> Result<PacketHash, StoreError> {
    parse_hex32(member).map(PacketHash).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "index member {:?} is not a packet hash",
            String::from_utf8_lossy(member)
        ))
    })
}

/// A known server's field name, parsed back.
fn parse_server(name: &str) -> Result<ServerEntry, StoreError> {
    name.parse::<ServerEntry>()
        .map_err(|e| StoreError::Corrupt(format!("stored server {name:?}: {e}")))
}

/// Scores come back as decimal text; ours are whole milliseconds or sequence numbers.
fn parse_score(text: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|s| *s >= 0.0 && s.fract() == 0.0)
        .map(|s| s as u64)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "index score {:?} is not a whole number",
                String::from_utf8_lossy(text)
            ))
        })
}

/// What [`RedisStore::read_within`] found: (position, stored string) of each live packet
/// taken, and the position of the first one left out for the budget.
type ReadWithin = (Vec<(usize, Vec<u8>)>, Option<usize>);

/// A stored packet string, split.
struct Blob<'a> {
    seq: u64,
    expires_at: UnixMillis,
    recipient: [u8; 32],
    json: &'a [u8],
}

impl<'a> Blob<'a> {
    fn decode(hash: &str, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("stored packet {hash} has a damaged header"));
        let mut rest = bytes;
        let mut field = || -> Result<&'a [u8], StoreError> {
            let end = rest.iter().position(|&b| b == b'\n').ok_or_else(corrupt)?;
            let (value, after) = rest.split_at(end);
            rest = &after[1..];
            Ok(value)
        };
        let number = |v: &[u8]| -> Option<u64> { std::str::from_utf8(v).ok()?.parse().ok() };
        let seq = number(field()?).ok_or_else(corrupt)?;
        let expires_at = number(field()?).ok_or_else(corrupt)?;
        let recipient = parse_hex32(field()?).ok_or_else(corrupt)?;
        Ok(Self {
            seq,
            expires_at,
            recipient,
            json: rest,
        })
    }
}

/// An inbox entry: the member `<hash>:<JSON length>:<expires_at>` and its score, the
/// sequence number.
struct InboxMember {
    hash: PacketHash,
    /// The hash as the member spells it (hex), for the packet's key.
    hex: String,
    json_len: u64,
    expires_at: UnixMillis,
    seq: u64,
}

impl InboxMember {
    fn parse(member: &[u8], score: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || {
            StoreError::Corrupt(format!(
                "inbox member {:?} is not <hash>:<length>:<expiry>",
                String::from_utf8_lossy(member)
            ))
        };
        let text = std::str::from_utf8(member).map_err(|_| corrupt())?;
        let mut parts = text.split(':');
        let (Some(hash), Some(len), Some(exp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt());
        };
        Ok(Self {
            hash: parse_hash(hash.as_bytes())?,
            hex: hash.to_owned(),
            json_len: len.parse().map_err(|_| corrupt())?,
            expires_at: exp.parse().map_err(|_| corrupt())?,
            seq: parse_score(score)?,
        })
    }
}

/// What `CONFIG GET append*` and `CONFIG GET maxmemory-policy` answer: names and values, flat.
type DurabilityAnswers = (Vec<String>, Vec<String>);

/// The server settings a 200 from `/send` depends on.
#[derive(Debug, Default)]
struct DurabilitySettings {
    appendonly: Option<String>,
    appendfsync: Option<String>,
    no_appendfsync_on_rewrite: Option<String>,
    maxmemory_policy: Option<String>,
}

impl DurabilitySettings {
    /// Adds the two commands that read the settings to `pipe` (globs, so any Redis version
    /// answers both in one round trip; `*append*` takes in `no-appendfsync-on-rewrite`).
    fn ask(pipe: &mut redis::Pipeline) {
        pipe.cmd("CONFIG")
            .arg("GET")
            .arg("*append*")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
    }

    fn from_answers((append, memory): DurabilityAnswers) -> Self {
        let mut settings = Self::default();
        for pair in append.chunks_exact(2).chain(memory.chunks_exact(2)) {
            let value = Some(pair[1].clone());
            match pair[0].as_str() {
                "appendonly" => settings.appendonly = value,
                "appendfsync" => settings.appendfsync = value,
                "no-appendfsync-on-rewrite" => settings.no_appendfsync_on_rewrite = value,
                "maxmemory-policy" => settings.maxmemory_policy = value,
                _ => {}
            }
        }
        settings
    }

    /// Why a server with these settings could lose a packet it acknowledged, and what to
    /// change; `None` when it cannot.
    fn problem(&self) -> Option<String> {
        let (Some(appendonly), Some(appendfsync), Some(policy)) =
            (&self.appendonly, &self.appendfsync, &self.maxmemory_policy)
        else {
            return Some(
                "it does not report appendonly, appendfsync and maxmemory-policy to CONFIG \
                 GET, so jasper cannot tell whether it keeps what it acknowledges"
                    .into(),
            );
        };
        if appendonly != "yes" || appendfsync != "always" {
            return Some(format!(
                "it runs with appendonly {appendonly} and appendfsync {appendfsync}, so a \
                 packet it acknowledged could be lost in a crash; set `appendonly yes` and \
                 `appendfsync always` in redis.conf (or CONFIG SET them, then CONFIG REWRITE)"
            ));
        }
        // With it, Redis skips the fsync of `appendfsync always` while a background save or
        // rewrite runs, and still answers: what it acknowledged then is in the page cache only.
        if self.no_appendfsync_on_rewrite.as_deref() == Some("yes") {
            return Some(
                "it runs with no-appendfsync-on-rewrite yes, so what it acknowledges during a \
                 background save or rewrite is not flushed; set `no-appendfsync-on-rewrite no` \
                 in redis.conf (or CONFIG SET it, then CONFIG REWRITE)"
                    .into(),
            );
        }
        if policy.starts_with("allkeys") {
            return Some(format!(
                "its maxmemory-policy is {policy}, which may evict stored packets; use \
                 noeviction (the default): a full store then refuses new packets instead"
            ));
        }
        None
    }
}

/// Whether an error says the connection is gone (the server restarted, or closed an idle
/// connection), so that the command may be tried once more on a new one.
fn connection_lost(e: &RedisError) -> bool {
    (e.is_connection_dropped() || e.is_io_error()) && !e.is_timeout()
}

impl RedisStore {
    /// Connects to the server at `options.url` and checks that it keeps what it acknowledges:
    /// `appendonly yes`, `appendfsync always`, and no eviction of keys without a TTL.
    pub fn open(options: &RedisOptions) -> Result<Self, StoreError> {
        let client = options.client()?;
        check_prefix(&options.prefix).map_err(|message| StoreError::Open {
            path: "[relay] redis_prefix".into(),
            message,
        })?;
        let store = Self {
            target: describe(&client),
            client,
            keys: Keys::new(&options.prefix),
            idle: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            instance: AtomicU64::new(0),
        };
        let mut conn = store.connect().map_err(|e| StoreError::Open {
            path: store.target.clone(),
            message: if store.target.starts_with("rediss://") {
                format!(
                    "{e}; is redis-server running there, and do redis_tls_ca, redis_tls_cert \
                     and redis_tls_key match its TLS settings?"
                )
            } else {
                format!("{e}; is redis-server running there?")
            },
        })?;
        store.check_server(&mut conn)?;
        store.check_schema(&mut conn)?;
        let instance = store.instance_id(&mut conn)?;
        store.instance.store(instance, Ordering::Relaxed);
        store.put_back(conn);
        Ok(store)
    }

    /// Where the server is (without credentials).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn open_error(&self, message: String) -> StoreError {
        StoreError::Open {
            path: self.target.clone(),
            message,
        }
    }

    fn check_server(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        DurabilitySettings::ask(&mut pipe);
        let answers: DurabilityAnswers = pipe.query(conn).map_err(|e| {
            self.open_error(format!(
                "cannot read its settings ({e}); jasper checks that Redis writes every change \
                 to disk before answering, so it needs CONFIG GET"
            ))
        })?;
        match DurabilitySettings::from_answers(answers).problem() {
            Some(problem) => Err(self.open_error(problem)),
            None => Ok(()),
        }
    }

    /// The meta hash's `field`, set to `value` first if it has none (at open).
    fn meta_field_or(
        &self,
        conn: &mut Connection,
        field: &str,
        value: impl redis::ToRedisArgs,
    ) -> Result<Option<String>, StoreError> {
        let _: bool = redis::cmd("HSETNX")
            .arg(&self.keys.meta)
            .arg(field)
            .arg(value)
            .query(conn)
            .map_err(|e| self.open_error(e.to_string()))?;
        redis::cmd("HGET")
            .arg(&self.keys.meta)
            .arg(field)
            .query(conn)
            .map_err(|e| self.open_error(e.to_string()))
    }

    /// The instance id under these keys, made now if there is none yet.
    fn instance_id(&self, conn: &mut Connection) -> Result<u64, StoreError> {
        let kept = self.meta_field_or(conn, "instance", super::new_instance_id())?;
        kept.and_then(|v| v.parse().ok()).ok_or_else(|| {
            self.open_error(format!(
                "the keys under {:?} hold an instance id that is not a number; they were \
                 written by another program; choose another redis_prefix",
                self.keys.prefix
            ))
        })
    }

    fn check_schema(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let schema = self.meta_field_or(conn, "schema", SCHEMA)?;
        match schema.as_deref() {
            Some(SCHEMA) => Ok(()),
            Some("1") => Err(self.open_error(format!(
                "the keys under {:?} hold layout 1, written by a development build of jasper \
                 that was never released; delete them (`redis-cli --scan --pattern '{}:*'`, \
                 then DEL; peers refill the packets at the next message sync) or choose \
                 another redis_prefix",
                self.keys.prefix, self.keys.prefix
            ))),
            other => Err(self.open_error(format!(
                "the keys under {:?} hold layout {other:?}, not {SCHEMA:?}: they were \
                 written by another program or version; choose another redis_prefix",
                self.keys.prefix
            ))),
        }
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let engine = |e: RedisError| StoreError::Engine(format!("Redis at {}: {e}", self.target));
        let conn = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(engine)?;
        conn.set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(engine)?;
        conn.set_write_timeout(Some(COMMAND_TIMEOUT))
            .map_err(engine)?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Runs `op` on a pooled connection; when that connection turns out to be dead, once more
    /// on a new one (every operation here is safe to repeat: a stored packet is a duplicate the
    /// second time). A connection that failed is never reused.
    fn with<T>(
        &self,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let engine = |e: RedisError| StoreError::Engine(format!("Redis at {}: {e}", self.target));
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut conn) = pooled {
            match op(&mut conn) {
                Ok(v) => {
                    self.put_back(conn);
                    return Ok(v);
                }
                Err(e) if connection_lost(&e) => {
                    tracing::debug!(error = %e, "an idle Redis connection was gone; reconnecting");
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(e) => return Err(engine(e)),
            }
        }
        let mut conn = self.connect()?;
        let v = op(&mut conn).map_err(engine)?;
        self.put_back(conn);
        Ok(v)
    }

    /// The live packets among `hashes` (hex), in order, until `budget` is spent: (position in
    /// `hashes`, stored string) each, and the position of the first live packet left out for
    /// the budget, if one was. Two round trips: each packet's header and length first, then
    /// the chosen packets, so an answer holds no more than the budget and one packet.
    fn read_within(
        &self,
        hashes: &[String],
        budget: &mut ByteBudget,
        now: UnixMillis,
    ) -> Result<ReadWithin, StoreError> {
        if hashes.is_empty() {
            return Ok((Vec::new(), None));
        }
        let keys: Vec<String> = hashes.iter().map(|h| self.keys.packet(h)).collect();
        let heads: Vec<(Vec<u8>, usize)> = self.with(|c| {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(HEADER_MAX - 1)
                    .cmd("STRLEN")
                    .arg(key);
            }
            pipe.query(c)
        })?;
        let mut chosen = Vec::new();
        let mut stopped = None;
        for (i, (head, len)) in heads.iter().enumerate() {
            if *len == 0 {
                continue; // not stored (any more)
            }
            let blob = Blob::decode(&hashes[i], head)?;
            if blob.expires_at <= now {
                continue;
            }
            let header_len = head.len() - blob.json.len();
            if !budget.take(len.saturating_sub(header_len) as u64) {
                stopped = Some(i);
                break;
            }
            chosen.push(i);
        }
        if chosen.is_empty() {
            return Ok((Vec::new(), stopped));
        }
        let wanted: Vec<&String> = chosen.iter().map(|&i| &keys[i]).collect();
        let blobs: Vec<Option<Vec<u8>>> =
            self.with(|c| redis::cmd("MGET").arg(&wanted).query(c))?;
        // A packet swept between the two reads is passed over like an expired one.
        let found = chosen
            .into_iter()
            .zip(blobs)
            .filter_map(|(i, blob)| blob.map(|b| (i, b)))
            .collect();
        Ok((found, stopped))
    }
}

impl Store for RedisStore {
    fn put_batch_deferred(
        &self,
        packets: &[NewPacket],
        limits: PutLimits,
        now: UnixMillis,
        written: &mut dyn FnMut(SyncTicket),
    ) -> Result<(Vec<PutOutcome>, SyncTicket), StoreError> {
        if packets.is_empty() {
            return Ok((Vec::new(), SyncTicket(self.written.load(Ordering::Acquire))));
        }
        let mut invocation = PUT.prepare_invoke();
        invocation
            .arg(&self.keys.prefix)
            .arg(now)
            .arg(limits.max_inbox_packets)
            .arg(limits.max_stored_bytes);
        for p in packets {
            let (hash, recipient) = (hex(&p.hash.0), hex(&p.recipient.0));
            let mut tail = Vec::with_capacity(p.json.len() + 80);
            tail.extend_from_slice(format!("{}\n{recipient}\n", p.expires_at).as_bytes());
            tail.extend_from_slice(&p.json);
            invocation
                .arg(&hash)
                .arg(self.keys.packet(&hash))
                .arg(self.keys.inbox(&recipient))
                .arg(p.expires_at)
                .arg(p.json.len())
                .arg(tail);
        }
        // The settings are read again with every batch, right after its script and in the
        // same round trip: someone may have run `CONFIG SET appendfsync everysec` on the live
        // server since `open`, and then Redis's answer no longer means "on disk".
        // And the instance id, in case Redis lost its data while we ran (a restart without
        // persistence, FLUSHALL): sequence numbers then start again, and cursors of the old
        // contents must not count for the new (see `Store::instance`).
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        DurabilitySettings::ask(&mut pipe);
        pipe.cmd("HSETNX")
            .arg(&self.keys.meta)
            .arg("instance")
            .arg(super::new_instance_id())
            .ignore();
        pipe.cmd("HGET").arg(&self.keys.meta).arg("instance");
        let (answers, settings, instance): (Vec<String>, DurabilityAnswers, Option<String>) = self
            .with(|c| {
                let (answers, append, memory, instance) = match pipe.query(c) {
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        invocation.load(c)?;
                        pipe.query(c)?
                    }
                    result => result?,
                };
                Ok((answers, (append, memory), instance))
            })?;
        if let Some(instance) = instance.and_then(|v| v.parse::<u64>().ok()) {
            self.instance.store(instance, Ordering::Relaxed);
        }
        if let Some(problem) = DurabilitySettings::from_answers(settings).problem() {
            // Not acknowledged, though Redis kept the batch: a retry once the server is fixed
            // is told its packet is there. Under `everysec` the packet reached the file and
            // is flushed within a second; after `appendonly no`, turning it back on makes
            // Redis write all it holds to a new file. Only a crash inside that short window
            // could lose a packet answered there as a duplicate.
            return Err(StoreError::Engine(format!(
                "Redis at {} no longer keeps what it acknowledges: {problem}; refusing packets \
                 until it does",
                self.target
            )));
        }
        if answers.len() != packets.len() {
            return Err(StoreError::Engine(format!(
                "Redis at {} answered {} outcomes for {} packets",
                self.target,
                answers.len(),
                packets.len()
            )));
        }
        let outcomes = answers
            .iter()
            .map(|a| match a.as_str() {
                "D" => Ok(PutOutcome::Duplicate),
                "T" => Ok(PutOutcome::Tombstoned),
                "I" => Ok(PutOutcome::InboxFull),
                "F" => Ok(PutOutcome::StoreFull),
                seq => seq
                    .parse()
                    .map(|seq| PutOutcome::Stored { seq })
                    .map_err(|_| {
                        StoreError::Engine(format!(
                            "unexpected answer {seq:?} from the store script"
                        ))
                    }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Redis answered after its append-only file was flushed: the batch is on disk.
        let ticket = SyncTicket(self.written.fetch_add(1, Ordering::AcqRel) + 1);
        written(ticket);
        Ok((outcomes, ticket))
    }

    fn sync(&self, _ticket: SyncTicket) -> Result<(), StoreError> {
        Ok(())
    }

    fn get_many(
        &self,
        hashes: &[PacketHash],
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<(), StoreError> {
        let mut budget = ByteBudget::new(max_bytes);
        for chunk in hashes.chunks(PAGE) {
            let names: Vec<String> = chunk.iter().map(|h| hex(&h.0)).collect();
            let (found, stopped) = self.read_within(&names, &mut budget, now)?;
            for (i, blob) in &found {
                let blob = Blob::decode(&names[*i], blob)?;
                visit(PacketView {
                    hash: chunk[*i],
                    seq: blob.seq,
                    expires_at: blob.expires_at,
                    json: blob.json,
                });
            }
            if stopped.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn inbox(
        &self,
        recipient: &Fingerprint,
        after: u64,
        max_bytes: u64,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketView<'_>),
    ) -> Result<InboxEnd, StoreError> {
        let key = self.keys.inbox(&hex(&recipient.0));
        let mut end = InboxEnd {
            cursor: after,
            more: false,
        };
        let mut budget = ByteBudget::new(max_bytes);
        loop {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = self.with(|c| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(format!("({}", end.cursor))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(PAGE)
                    .query(c)
            })?;
            // Each member carries its packet's length and expiry, so the packets that fit the
            // budget are chosen before any is read, and read in one MGET.
            let members = entries
                .iter()
                .map(|(member, score)| InboxMember::parse(member, score))
                .collect::<Result<Vec<_>, _>>()?;
            let mut chosen = Vec::new();
            let mut stopped = None;
            for (i, m) in members.iter().enumerate() {
                if m.expires_at <= now {
                    continue;
                }
                if !budget.take(m.json_len) {
                    stopped = Some(i);
                    break;
                }
                chosen.push(i);
            }
            let blobs: Vec<Option<Vec<u8>>> = if chosen.is_empty() {
                Vec::new()
            } else {
                let keys: Vec<String> = chosen
                    .iter()
                    .map(|&i| self.keys.packet(&members[i].hex))
                    .collect();
                self.with(|c| redis::cmd("MGET").arg(&keys).query(c))?
            };
            let mut found = chosen.into_iter().zip(blobs).peekable();
            for (i, m) in members.iter().enumerate() {
                if stopped == Some(i) {
                    end.more = true;
                    return Ok(end);
                }
                // Expired, or swept since the index was read: passed over.
                if let Some((_, Some(blob))) = found.next_if(|(at, _)| *at == i) {
                    let blob = Blob::decode(&m.hex, &blob)?;
                    if blob.recipient != recipient.0
                        || blob.seq != m.seq
                        || blob.json.len() as u64 != m.json_len
                    {
                        return Err(StoreError::Corrupt(format!(
                            "packet {} is indexed in the wrong inbox or position",
                            m.hex
                        )));
                    }
                    visit(PacketView {
                        hash: m.hash,
                        seq: m.seq,
                        expires_at: blob.expires_at,
                        json: blob.json,
                    });
                }
                end.cursor = m.seq;
            }
            if entries.len() < PAGE {
                return Ok(end);
            }
        }
    }

    fn for_each_hash(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        let mut from = "-".to_owned();
        loop {
            let members: Vec<String> = self.with(|c| {
                redis::cmd("ZRANGEBYLEX")
                    .arg(&self.keys.all)
                    .arg(&from)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(PAGE)
                    .query(c)
            })?;
            let Some(last) = members.last() else {
                return Ok(());
            };
            let expiries: Vec<Option<Vec<u8>>> = self.with(|c| {
                redis::cmd("ZMSCORE")
                    .arg(&self.keys.exp)
                    .arg(&members)
                    .query(c)
            })?;
            for (member, expiry) in members.iter().zip(expiries) {
                let Some(expiry) = expiry else { continue };
                if parse_score(&expiry)? <= now {
                    continue;
                }
                if !visit(parse_hash(member.as_bytes())?) {
                    return Ok(());
                }
            }
            if members.len() < PAGE {
                return Ok(());
            }
            from = format!("({last}");
        }
    }

    fn for_each_by_expiry(
        &self,
        now: UnixMillis,
        visit: &mut dyn FnMut(UnixMillis, PacketHash) -> bool,
    ) -> Result<(), StoreError> {
        let mut last: Option<(u64, Vec<u8>)> = None;
        loop {
            let (score, member) = last
                .as_ref()
                .map_or((0, &[][..]), |(s, m)| (*s, m.as_slice()));
            let entries: Vec<(Vec<u8>, Vec<u8>)> = self.with(|c| {
                EXPIRY_PAGE
                    .arg(&self.keys.exp)
                    .arg(now)
                    .arg(score)
                    .arg(member)
                    .arg(PAGE)
                    .invoke(c)
            })?;
            for (member, score) in &entries {
                let expires = parse_score(score)?;
                if !visit(expires, parse_hash(member)?) {
                    return Ok(());
                }
            }
            if entries.len() < PAGE {
                return Ok(());
            }
            last = entries
                .into_iter()
                .last()
                .map(|(member, score)| parse_score(&score).map(|s| (s, member)))
                .transpose()?;
        }
    }

    fn contains(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        let expiry: Option<Vec<u8>> = self.with(|c| {
            redis::cmd("ZSCORE")
                .arg(&self.keys.exp)
                .arg(hex(&hash.0))
                .query(c)
        })?;
        match expiry {
            Some(e) => Ok(parse_score(&e)? > now),
            None => Ok(false),
        }
    }

    fn tombstoned(&self, hash: &PacketHash, now: UnixMillis) -> Result<bool, StoreError> {
        let member = hex(&hash.0);
        let (tomb, expiry): (Option<Vec<u8>>, Option<Vec<u8>>) = self.with(|c| {
            redis::pipe()
                .cmd("ZSCORE")
                .arg(&self.keys.tomb)
                .arg(&member)
                .cmd("ZSCORE")
                .arg(&self.keys.exp)
                .arg(&member)
                .query(c)
        })?;
        if let Some(t) = tomb
            && parse_score(&t)? > now
        {
            return Ok(true);
        }
        match expiry {
            Some(e) => Ok(parse_score(&e)? <= now),
            None => Ok(false),
        }
    }

    fn sweep(
        &self,
        now: UnixMillis,
        tombstone_horizon_ms: u64,
        batch: usize,
    ) -> Result<SweepReport, StoreError> {
        let (expired, forgotten): (usize, usize) = self.with(|c| {
            SWEEP
                .arg(&self.keys.prefix)
                .arg(now)
                .arg(tombstone_horizon_ms)
                .arg(batch)
                .invoke(c)
        })?;
        Ok(SweepReport {
            expired,
            tombstones_forgotten: forgotten,
        })
    }

    fn instance(&self) -> u64 {
        self.instance.load(Ordering::Relaxed)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let (packets, bytes): (Option<i64>, Option<i64>) = self.with(|c| {
            redis::cmd("HMGET")
                .arg(&self.keys.meta)
                .arg("packets")
                .arg("bytes")
                .query(c)
        })?;
        Ok(StoreStats {
            packets: packets.unwrap_or(0).max(0) as u64,
            bytes: bytes.unwrap_or(0).max(0) as u64,
        })
    }

    fn servers(&self) -> Result<Vec<ServerEntry>, StoreError> {
        // Names only: the broadcaster asks every second and needs no records.
        let mut names: Vec<String> =
            self.with(|c| redis::cmd("HKEYS").arg(&self.keys.servers).query(c))?;
        names.sort();
        names.iter().map(|name| parse_server(name)).collect()
    }

    fn peer_records(&self) -> Result<Vec<(ServerEntry, Vec<u8>)>, StoreError> {
        let mut all: Vec<(String, Vec<u8>)> =
            self.with(|c| redis::cmd("HGETALL").arg(&self.keys.servers).query(c))?;
        all.sort();
        all.into_iter()
            .map(|(name, record)| Ok((parse_server(&name)?, record)))
            .collect()
    }

    fn save_peer_record(&self, server: &ServerEntry, record: &[u8]) -> Result<(), StoreError> {
        self.with(|c| {
            redis::cmd("HSET")
                .arg(&self.keys.servers)
                .arg(server.authority())
                .arg(record)
                .query::<i64>(c)
        })?;
        Ok(())
    }

    fn add_servers(
        &self,
        servers: &[ServerEntry],
        max_known: usize,
    ) -> Result<Vec<ServerEntry>, StoreError> {
        if servers.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = ADD_SERVERS.prepare_invoke();
        invocation.arg(&self.keys.servers).arg(max_known);
        for server in servers {
            invocation.arg(server.authority());
        }
        let added: Vec<usize> = self.with(|c| invocation.invoke(c))?;
        Ok(added
            .into_iter()
            .filter_map(|i| servers.get(i.checked_sub(1)?).cloned())
            .collect())
    }

    fn remove_servers(&self, servers: &[ServerEntry]) -> Result<usize, StoreError> {
        if servers.is_empty() {
            return Ok(0);
        }
        let mut command = redis::cmd("HDEL");
        command.arg(&self.keys.servers);
        for server in servers {
            command.arg(server.authority());
        }
        self.with(|c| command.query(c))
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, LIMITS, packet};
    use super::super::test_redis::TestRedis;
    use super::*;

    #[test]
    fn redis_engine_passes_the_conformance_suite() {
        let server = std::sync::Arc::new(TestRedis::start(&[]));
        conformance::run_all(|| (server.fresh_store(), server.clone()));
    }

    #[test]
    fn relays_sharing_a_prefix_share_packets_and_one_sequence() {
        let server = TestRedis::start(&[]);
        let options = server.fresh_options();
        let (a, b) = (
            RedisStore::open(&options).unwrap(),
            RedisStore::open(&options).unwrap(),
        );
        let (p1, p2) = (packet(1, 1, 1_000), packet(2, 1, 1_000));
        assert_eq!(
            a.put_batch(std::slice::from_ref(&p1), LIMITS, 0).unwrap(),
            vec![PutOutcome::Stored { seq: 1 }]
        );
        assert_eq!(
            b.put_batch(&[p1.clone(), p2.clone()], LIMITS, 0).unwrap(),
            vec![PutOutcome::Duplicate, PutOutcome::Stored { seq: 2 }]
        );
        let page = conformance::inbox(&a, &p1.recipient, 0, u64::MAX, 0);
        let hashes: Vec<_> = page.packets.iter().map(|p| p.hash).collect();
        assert_eq!(hashes, vec![p1.hash, p2.hash]);
        assert_eq!(b.stats().unwrap().packets, 2);
        // One store, so one instance: a cursor from one relay holds at the other.
        assert_eq!(a.instance(), b.instance());
        // Another prefix is another store.
        let other = server.fresh_store();
        assert!(!other.contains(&p1.hash, 0).unwrap());
        assert_ne!(other.instance(), a.instance());
    }

    #[test]
    fn contents_lost_while_running_get_a_new_instance() {
        let server = TestRedis::start(&[]);
        let s = server.fresh_store();
        s.put_batch(&[packet(1, 1, 1_000)], LIMITS, 0).unwrap();
        let before = s.instance();
        // Redis loses everything (FLUSHALL, a restart without persistence) under a running
        // relay: its numbering starts again, so its cursors must name other contents.
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut server.connection())
            .unwrap();
        let out = s.put_batch(&[packet(2, 1, 1_000)], LIMITS, 0).unwrap();
        assert_eq!(out, vec![PutOutcome::Stored { seq: 1 }]);
        assert_ne!(s.instance(), before);
    }

    #[test]
    fn indexes_are_walked_in_pages_without_gaps_or_repeats() {
        let server = TestRedis::start(&[]);
        let s = server.fresh_store();
        // More than two pages, most sharing one expiry, in several inboxes.
        let n = 2 * PAGE as u32 + 37;
        let packets: Vec<_> = (0..n)
            .map(|i| packet(i, (i % 2) as u8, if i % 5 == 0 { 2_000 } else { 1_000 }))
            .collect();
        for chunk in packets.chunks(300) {
            s.put_batch(chunk, LIMITS, 0).unwrap();
        }
        let mut by_expiry = Vec::new();
        s.for_each_by_expiry(0, &mut |e, h| {
            by_expiry.push((e, h));
            true
        })
        .unwrap();
        let mut expected: Vec<_> = packets.iter().map(|p| (p.expires_at, p.hash)).collect();
        expected.sort();
        assert_eq!(by_expiry, expected);

        let mut hashes = Vec::new();
        s.for_each_hash(0, &mut |h| {
            hashes.push(h);
            true
        })
        .unwrap();
        let mut expected: Vec<_> = packets.iter().map(|p| p.hash).collect();
        expected.sort();
        assert_eq!(hashes, expected);
        // At time 1,000 only the later fifth is live, in both walks.
        let mut live = 0;
        s.for_each_hash(1_000, &mut |_| {
            live += 1;
            true
        })
        .unwrap();
        assert_eq!(
            live,
            packets.iter().filter(|p| p.expires_at > 1_000).count()
        );

        let inbox = conformance::inbox(&s, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        assert_eq!(inbox.packets.len(), (n / 2) as usize);
        assert!(inbox.packets.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(!inbox.more);
    }

    #[test]
    fn a_batch_larger_than_one_script_command_is_decided_and_stored_whole() {
        let server = TestRedis::start(&[]);
        let s = server.fresh_store();
        // 2,500 packets (the script writes in slices of 1,000) over three inboxes of at most
        // 800, then ten repeats.
        let mut batch: Vec<_> = (0..2_500u32)
            .map(|i| packet(i, (i % 3) as u8, 1_000))
            .collect();
        batch.extend((0..10u32).map(|i| packet(i, (i % 3) as u8, 1_000)));
        let limits = PutLimits {
            max_inbox_packets: 800,
            ..LIMITS
        };
        let out = s.put_batch(&batch, limits, 0).unwrap();
        let count = |what: fn(&PutOutcome) -> bool| out.iter().filter(|o| what(o)).count();
        assert_eq!(count(|o| matches!(o, PutOutcome::Stored { .. })), 2_400);
        assert_eq!(count(|o| *o == PutOutcome::InboxFull), 100);
        assert_eq!(out[2_500..], [PutOutcome::Duplicate; 10]);
        // Each inbox fills up in order: its first 800 are stored, the rest refused.
        for (i, outcome) in out[..2_500].iter().enumerate() {
            let full = i / 3 >= 800;
            assert_eq!(*outcome == PutOutcome::InboxFull, full, "packet {i}");
        }
        let seqs: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                PutOutcome::Stored { seq } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, (1..=2_400).collect::<Vec<u64>>());
        assert_eq!(s.stats().unwrap().packets, 2_400);
        let page = conformance::inbox(&s, &Fingerprint([1; 32]), 0, u64::MAX, 0);
        assert_eq!(page.packets.len(), 800);
        assert_eq!(
            s.put_batch(&[packet(9_999, 1, 1_000)], limits, 0).unwrap(),
            vec![PutOutcome::InboxFull]
        );
    }

    #[test]
    fn the_expiry_walk_goes_on_when_the_sweeper_removes_what_it_passed() {
        let server = TestRedis::start(&[]);
        let s = server.fresh_store();
        let early: Vec<_> = (0..PAGE as u32).map(|i| packet(i, 1, 100)).collect();
        let late: Vec<_> = (0..PAGE as u32 + 5)
            .map(|i| packet(10_000 + i, 2, 5_000))
            .collect();
        s.put_batch(&early, LIMITS, 0).unwrap();
        s.put_batch(&late, LIMITS, 0).unwrap();
        let mut seen = 0;
        let mut swept = false;
        s.for_each_by_expiry(0, &mut |_, _| {
            seen += 1;
            if seen == PAGE && !swept {
                // Between pages: everything walked so far expires and is swept.
                s.sweep(200, 0, 10_000).unwrap();
                swept = true;
            }
            true
        })
        .unwrap();
        assert_eq!(seen, early.len() + late.len());
    }

    #[test]
    fn a_server_that_may_lose_acknowledged_writes_is_refused() {
        for (settings, expect) in [
            (&["--appendfsync", "everysec"][..], "appendfsync everysec"),
            (&["--appendonly", "no"][..], "appendonly no"),
            (
                &["--no-appendfsync-on-rewrite", "yes"][..],
                "no-appendfsync-on-rewrite yes",
            ),
            (
                &["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"][..],
                "allkeys-lru",
            ),
        ] {
            let server = TestRedis::start(settings);
            let err = RedisStore::open(&server.fresh_options())
                .err()
                .expect("refused");
            let text = err.to_string();
            assert!(text.contains(expect), "{text}");
            assert!(
                text.contains("redis.conf") || text.contains("noeviction"),
                "{text}"
            );
        }
        // An eviction policy that never touches keys without a TTL is fine.
        let server = TestRedis::start(&["--maxmemory-policy", "volatile-lru"]);
        RedisStore::open(&server.fresh_options()).unwrap();
    }

    #[test]
    fn a_server_weakened_while_running_is_refused_from_the_next_batch() {
        let server = TestRedis::start(&[]);
        let store = server.fresh_store();
        let mut conn = server.connection();
        let mut set = |name: &str, value: &str| {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query(&mut conn)
                .unwrap();
        };
        let (p1, p2, p3) = (
            packet(1, 1, 1_000),
            packet(2, 1, 1_000),
            packet(3, 1, 1_000),
        );
        assert_eq!(
            store
                .put_batch(std::slice::from_ref(&p1), LIMITS, 0)
                .unwrap(),
            vec![PutOutcome::Stored { seq: 1 }]
        );
        for (name, weak, safe, expect) in [
            ("appendfsync", "everysec", "always", "appendfsync everysec"),
            ("appendonly", "no", "yes", "appendonly no"),
            (
                "no-appendfsync-on-rewrite",
                "yes",
                "no",
                "no-appendfsync-on-rewrite yes",
            ),
            (
                "maxmemory-policy",
                "allkeys-lru",
                "noeviction",
                "allkeys-lru",
            ),
        ] {
            set(name, weak);
            let text = store
                .put_batch(std::slice::from_ref(&p2), LIMITS, 0)
                .expect_err("refused")
                .to_string();
            assert!(text.contains(expect), "{text}");
            assert!(text.contains("refusing packets"), "{text}");
            set(name, safe);
            // Refused is not lost: the batch was written, and is a duplicate once retried.
            assert_eq!(
                store
                    .put_batch(std::slice::from_ref(&p2), LIMITS, 0)
                    .unwrap(),
                vec![PutOutcome::Duplicate]
            );
        }
        assert_eq!(
            store
                .put_batch(std::slice::from_ref(&p3), LIMITS, 0)
                .unwrap(),
            vec![PutOutcome::Stored { seq: 3 }]
        );
        assert_eq!(store.stats().unwrap().packets, 3);
    }

    #[test]
    fn bad_addresses_and_prefixes_are_explained() {
        let server = TestRedis::start(&[]);
        let mut options = server.fresh_options();
        for bad in ["", "has space", &"x".repeat(MAX_PREFIX_LEN + 1), "a*b"] {
            options.prefix = bad.to_owned();
            let text = RedisStore::open(&options).err().unwrap().to_string();
            assert!(text.contains("redis_prefix"), "{text}");
        }
        for (url, expect) in [
            ("http://localhost:6379", "redis_url"),
            (
                "unix:///nonexistent/redis.sock",
                "is redis-server running there?",
            ),
        ] {
            let options = RedisOptions {
                url: url.into(),
                prefix: "jasper".into(),
                ..RedisOptions::default()
            };
            let text = RedisStore::open(&options).err().unwrap().to_string();
            assert!(text.contains(expect), "{url}: {text}");
        }
        // Credentials never appear in what the store says about where it is.
        let client = redis::Client::open("redis://user:secret@127.0.0.1:1/3").unwrap();
        assert_eq!(describe(&client), "redis://127.0.0.1:1/3");
    }

    #[test]
    fn keys_of_another_layout_or_damaged_packets_are_reported_not_served() {
        let server = TestRedis::start(&[]);
        let options = server.fresh_options();
        let s = RedisStore::open(&options).unwrap();
        let p = packet(1, 1, 1_000);
        s.put_batch(std::slice::from_ref(&p), LIMITS, 0).unwrap();
        let mut c = server.connection();
        let key = format!("{}:pkt:{}", options.prefix, p.hash);
        redis::cmd("SET")
            .arg(&key)
            .arg("garbage")
            .query::<()>(&mut c)
            .unwrap();
        let err = s
            .get_many(&[p.hash], u64::MAX, 0, &mut |_| panic!("served"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let read_inbox = || s.inbox(&p.recipient, 0, u64::MAX, 0, &mut |_| panic!("served"));
        let err = read_inbox().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        // An inbox entry that does not name a packet's length and expiry.
        let inbox = format!("{}:in:{}", options.prefix, hex(&p.recipient.0));
        redis::cmd("DEL").arg(&inbox).query::<()>(&mut c).unwrap();
        redis::cmd("ZADD")
            .arg(&inbox)
            .arg(1)
            .arg(p.hash.to_string())
            .query::<()>(&mut c)
            .unwrap();
        let err = read_inbox().unwrap_err();
        assert!(
            err.to_string().contains("<hash>:<length>:<expiry>"),
            "{err}"
        );

        let mut layout = |schema: &str| {
            redis::cmd("HSET")
                .arg(format!("{}:meta", options.prefix))
                .arg("schema")
                .arg(schema)
                .query::<()>(&mut c)
                .unwrap();
            RedisStore::open(&options).err().unwrap().to_string()
        };
        let text = layout("1");
        assert!(text.contains("development build"), "{text}");
        assert!(text.contains("choose another redis_prefix"), "{text}");
        let text = layout("99");
        assert!(text.contains("choose another redis_prefix"), "{text}");
    }

    #[test]
    fn a_restarted_server_is_reconnected_to_without_an_error() {
        let server = TestRedis::start(&[]);
        let s = server.fresh_store();
        let p = packet(1, 1, 1_000);
        s.put_batch(std::slice::from_ref(&p), LIMITS, 0).unwrap();
        // The server closes every client connection, as a restart does.
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query::<i64>(&mut server.connection())
            .unwrap();
        assert!(s.contains(&p.hash, 0).unwrap());
        assert!(server.socket().exists());
    }
}
