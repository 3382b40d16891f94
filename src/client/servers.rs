//! Which relays the client knows and which it uses for what (JASPER.md frontend): start from
//! the configured ones, learn more through `/sync/servers`, probe `/status` for load, and give
//! every recipient key its own TX relay and every own key its own RX relay — never the same
//! relay for sending to a key and reading it when two or more relays are known. Assignments
//! stick, so a relay does not see one key move between relays.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::db::{ClientDb, DbError};
use super::transport::{Transport, speaks_cursor};
use crate::proto::{Fingerprint, ServerEntry};

/// How long a relay's probed load is trusted.
pub const PROBE_MAX_AGE_MS: u64 = 60_000;

/// What the client knows of a relay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Load from its `/status` (0–1), if it answered.
    pub load: Option<f64>,
    /// Whether it speaks `fetch-cursor`.
    pub cursor: bool,
    /// Whether it answered the last probe.
    pub reachable: bool,
    /// When it was last probed (ms).
    pub probed_at: u64,
}

/// Why no relay could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ServersError {
    /// No relay is configured or known.
    #[error("no relay known: add one to [client] servers in the configuration")]
    NoneKnown,
    /// None answered.
    #[error("no known relay answers; check your network or add relays to [client] servers")]
    NoneReachable,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ServersError {
    /// Whether trying again later may work: no relay answers now.
    pub fn is_transient(&self) -> bool {
        matches!(self, ServersError::NoneReachable)
    }
}

/// The relays, their roles, and their probing.
pub struct Servers<'a> {
    db: &'a ClientDb,
    transport: &'a Transport,
    configured: Vec<ServerEntry>,
}

fn tx_key(fp: &Fingerprint) -> String {
    format!("tx:{fp}")
}

fn rx_key(fp: &Fingerprint) -> String {
    format!("rx:{fp}")
}

impl<'a> Servers<'a> {
    /// Relays from the configuration plus those in `db`.
    pub fn new(db: &'a ClientDb, transport: &'a Transport, configured: Vec<ServerEntry>) -> Self {
        Self {
            db,
            transport,
            configured,
        }
    }

    /// Every known relay with what we know of it.
    pub fn known(&self) -> Result<Vec<(ServerEntry, RelayInfo)>, ServersError> {
        let mut out: Vec<(ServerEntry, RelayInfo)> = Vec::new();
        let mut seen = HashSet::new();
        for (name, json) in self.db.servers()? {
            if let Ok(entry) = name.parse::<ServerEntry>() {
                seen.insert(entry.clone());
                out.push((entry, serde_json::from_slice(&json).unwrap_or_default()));
            }
        }
        for entry in &self.configured {
            if seen.insert(entry.clone()) {
                out.push((entry.clone(), RelayInfo::default()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Probes relays not probed within [`PROBE_MAX_AGE_MS`] and learns new ones from the
    /// first that answers (`/sync/servers`, public addresses only unless configured).
    pub fn refresh(&self, now: u64) -> Result<(), ServersError> {
        self.refresh_older_than(now, PROBE_MAX_AGE_MS)
    }

    /// [`Self::refresh`] for relays not probed within `max_age_ms` (0: every relay, now).
    /// When no relay answered last time, every relay is probed again whatever its age: there
    /// is nothing to lose by asking, and a relay that is back is used at once.
    pub fn refresh_older_than(&self, now: u64, max_age_ms: u64) -> Result<(), ServersError> {
        let known = self.known()?;
        if known.is_empty() {
            return Err(ServersError::NoneKnown);
        }
        let max_age_ms = if known.iter().any(|(_, i)| i.reachable) {
            max_age_ms
        } else {
            0
        };
        let mut learned_from_one = false;
        for (entry, info) in &known {
            if now.saturating_sub(info.probed_at) < max_age_ms && info.probed_at != 0 {
                continue;
            }
            let info = match self.transport.status(entry) {
                Ok(status) => RelayInfo {
                    load: status.as_ref().map(|s| s.load),
                    cursor: speaks_cursor(&status),
                    reachable: true,
                    probed_at: now,
                },
                Err(_) => RelayInfo {
                    reachable: false,
                    probed_at: now,
                    ..info.clone()
                },
            };
            self.db.put_server(
                &entry.authority(),
                &serde_json::to_vec(&info).expect("info serializes"),
            )?;
            if info.reachable && !learned_from_one {
                learned_from_one = true;
                let list: Vec<ServerEntry> = known.iter().map(|(e, _)| e.clone()).collect();
                if let Ok(new) = self.transport.sync_servers(entry, &list) {
                    for server in new.into_iter().filter(ServerEntry::is_public).take(100) {
                        if !list.contains(&server) {
                            self.db.put_server(&server.authority(), b"{}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn reachable(&self) -> Result<Vec<(ServerEntry, RelayInfo)>, ServersError> {
        let known = self.known()?;
        if known.is_empty() {
            return Err(ServersError::NoneKnown);
        }
        let mut up: Vec<_> = known.into_iter().filter(|(_, i)| i.reachable).collect();
        if up.is_empty() {
            return Err(ServersError::NoneReachable);
        }
        up.sort_by(|a, b| {
            let la = a.1.load.unwrap_or(0.5);
            let lb = b.1.load.unwrap_or(0.5);
            la.partial_cmp(&lb)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        Ok(up)
    }

    fn assigned(&self, prefix: &str) -> Result<HashSet<ServerEntry>, ServersError> {
        Ok(self
            .db
            .settings_with_prefix(prefix)?
            .into_iter()
            .filter_map(|(_, v)| v.parse().ok())
            .collect())
    }

    /// The relay that reads the inbox of our key `own`.
    pub fn rx_for(&self, own: &Fingerprint) -> Result<ServerEntry, ServersError> {
        self.assign(&rx_key(own), &["rx:", "tx:"])
    }

    /// The relay that carries packets to `recipient`.
    pub fn tx_for(&self, recipient: &Fingerprint) -> Result<ServerEntry, ServersError> {
        self.assign(&tx_key(recipient), &["rx:", "tx:"])
    }

    /// The sticky assignment under `key`, or a new one: the least loaded reachable relay,
    /// avoiding relays that read our inboxes (for TX) or carry anything (as far as possible).
    fn assign(&self, key: &str, avoid: &[&str]) -> Result<ServerEntry, ServersError> {
        let up = self.reachable()?;
        if let Some(current) = self
            .db
            .setting(key)?
            .and_then(|v| v.parse::<ServerEntry>().ok())
            && up.iter().any(|(e, _)| *e == current)
        {
            return Ok(current);
        }
        let is_tx = key.starts_with("tx:");
        let rx_relays = self.assigned("rx:")?;
        let mut candidates: Vec<ServerEntry> = up.iter().map(|(e, _)| e.clone()).collect();
        // Never TX through a relay that reads one of our inboxes, when there is another.
        if is_tx {
            let without_rx: Vec<_> = candidates
                .iter()
                .filter(|e| !rx_relays.contains(e))
                .cloned()
                .collect();
            if !without_rx.is_empty() {
                candidates = without_rx;
            }
        }
        // Prefer relays with no role yet, so that each key has its own.
        let mut busy = HashSet::new();
        for prefix in avoid {
            busy.extend(self.assigned(prefix)?);
        }
        let fresh: Vec<_> = candidates
            .iter()
            .filter(|e| !busy.contains(e))
            .cloned()
            .collect();
        let chosen = fresh
            .into_iter()
            .next()
            .or_else(|| candidates.into_iter().next())
            .ok_or(ServersError::NoneReachable)?;
        self.db.set_setting(key, &chosen.authority())?;
        Ok(chosen)
    }

    /// Every assignment, for `jasper servers`: (role, key fingerprint, relay).
    pub fn assignments(&self) -> Result<Vec<(String, String, String)>, ServersError> {
        let mut out = Vec::new();
        for prefix in ["rx:", "tx:"] {
            for (k, v) in self.db.settings_with_prefix(prefix)? {
                out.push((
                    prefix.trim_end_matches(':').to_owned(),
                    k[3..].to_owned(),
                    v,
                ));
            }
        }
        Ok(out)
    }

    /// Whether `relay` speaks `fetch-cursor`, as last probed.
    pub fn speaks_cursor(&self, relay: &ServerEntry) -> Result<bool, ServersError> {
        Ok(self
            .known()?
            .into_iter()
            .any(|(e, i)| e == *relay && i.cursor))
    }
}
