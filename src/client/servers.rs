//! Which relays the client knows and which it uses for what (JASPER.md frontend): start from
//! the configured ones, learn more through `/sync/servers`, probe `/status` for load, and give
//! every recipient key its own TX relay and every own key its own RX relay — never the same
//! relay for sending to a key and reading it when two or more relays are known. Assignments
//! stick, so a relay does not see one key move between relays. Relays that look like one
//! operator's ([`operator`]: one host name, or neighbouring addresses) count as one relay for
//! keeping roles apart whenever others are there.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::db::{ClientDb, DbError};
use super::transport::{Transport, speaks_cursor};
use crate::proto::server::Host;
use crate::proto::{Fingerprint, ServerEntry, Status};

/// How long a relay's probed load is trusted.
pub const PROBE_MAX_AGE_MS: u64 = 60_000;
/// Longest wait before a relay that keeps failing its probes is probed again. The wait starts
/// at [`PROBE_MAX_AGE_MS`] and doubles with each failure in a row, so relays that are gone
/// cost a command a probe only now and then.
pub const MAX_RETRY_WAIT_MS: u64 = 6 * 3_600_000;
/// A learned relay that has not answered for this long is forgotten (it holds nothing of ours:
/// packets live 7 days). Configured relays are kept whatever happens.
pub const FORGET_AFTER_MS: u64 = 7 * 24 * 3_600_000;
/// How long a relay that stopped answering keeps its roles (see [`Servers::assign`]).
pub const ROLE_KEPT_WHILE_DOWN_MS: u64 = 24 * 3_600_000;
/// Most relays learned from others that are remembered (configured ones come on top).
pub const MAX_LEARNED: usize = 200;
/// Most relays learned from one answer of `/sync/servers`.
pub const MAX_LEARNED_AT_ONCE: usize = 100;
/// Probes in flight at once.
const PROBES_AT_ONCE: usize = 32;

/// What the client knows of a relay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayInfo {
    /// Load from its `/status` (0–1), if it answered.
    pub load: Option<f64>,
    /// Whether it speaks `fetch-cursor`.
    pub cursor: bool,
    /// Whether it answered the last probe.
    pub reachable: bool,
    /// When it was last probed (ms).
    pub probed_at: u64,
    /// Probes it failed in a row (0 once it answers).
    pub failures: u32,
    /// When it stopped answering (ms; 0 while it answers).
    pub down_since: u64,
}

impl RelayInfo {
    /// Whether the relay should be probed at `now` when answers are trusted for
    /// `max_age_ms`: never probed, answered longer ago than that, or failed and waited out
    /// its back-off (doubling with each failure in a row, up to [`MAX_RETRY_WAIT_MS`]).
    pub fn probe_due(&self, now: u64, max_age_ms: u64) -> bool {
        if self.probed_at == 0 {
            return true;
        }
        let wait = if self.reachable {
            max_age_ms
        } else {
            let doublings = self.failures.saturating_sub(1).min(20);
            max_age_ms
                .saturating_mul(1 << doublings)
                .min(MAX_RETRY_WAIT_MS.max(max_age_ms))
        };
        now.saturating_sub(self.probed_at) >= wait
    }

    /// What we know after probing at `now` and getting `answer`.
    fn after_probe(&self, now: u64, answer: Option<&Option<Status>>) -> RelayInfo {
        match answer {
            Some(status) => RelayInfo {
                // A load outside 0–1 is no load a relay can have: one that claims it (-1, to
                // be picked first) counts as the busiest.
                load: status.as_ref().map(|s| {
                    if (0.0..=1.0).contains(&s.load) {
                        s.load
                    } else {
                        1.0
                    }
                }),
                cursor: speaks_cursor(status),
                reachable: true,
                probed_at: now,
                failures: 0,
                down_since: 0,
            },
            None => RelayInfo {
                reachable: false,
                probed_at: now,
                failures: self.failures.saturating_add(1),
                down_since: if self.down_since == 0 {
                    now
                } else {
                    self.down_since
                },
                ..self.clone()
            },
        }
    }
}

/// Why no relay could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ServersError {
    /// A configured relay cannot be blocked.
    #[error("{0} is in [client] servers: remove it there to stop using it")]
    Configured(String),
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

/// Which operator a relay likely belongs to, as far as its address tells: its host name, or
/// its IPv4 /24 or IPv6 /48. One machine serves any number of ports and neighbouring
/// addresses come cheap, so one operator can pose as many relays; roles that must not meet on
/// one relay keep apart on these too, whenever the relays known allow it.
pub fn operator(entry: &ServerEntry) -> String {
    match &entry.host {
        Host::Ip(ip) => match crate::netlimits::client_network(*ip) {
            std::net::IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
        Host::Domain(name) => name.clone(),
    }
}

/// Keeps only the candidates that `apart` accepts, if any is.
fn keep_apart(candidates: &mut Vec<ServerEntry>, apart: impl Fn(&ServerEntry) -> bool) {
    if candidates.iter().any(&apart) {
        candidates.retain(apart);
    }
}

/// Narrows the candidates for a new inbox: with two or more groups (by `group`) free of our
/// other inboxes (`taken`), only free ones; with one free group left and taken ones there, only
/// taken ones, leaving that group to a TX role (and then says so).
fn spread_inbox<G: Eq + std::hash::Hash>(
    candidates: &mut Vec<ServerEntry>,
    taken: impl Fn(&ServerEntry) -> bool,
    group: impl Fn(&ServerEntry) -> G,
) -> bool {
    let free: HashSet<G> = candidates
        .iter()
        .filter(|e| !taken(e))
        .map(&group)
        .collect();
    if free.len() >= 2 {
        candidates.retain(|e| !taken(e));
    } else if free.len() == 1 && candidates.iter().any(&taken) {
        candidates.retain(|e| taken(e));
        return true;
    }
    false
}

fn tx_key(fp: &Fingerprint) -> String {
    format!("tx:{fp}")
}

fn rx_key(fp: &Fingerprint) -> String {
    format!("rx:{fp}")
}

const BLOCKED: &str = "blocked:";

/// The relays, their roles, and their probing.
pub struct Servers<'a> {
    db: &'a ClientDb,
    transport: &'a Transport,
    configured: Vec<ServerEntry>,
    learn_private: bool,
}

impl<'a> Servers<'a> {
    /// Relays from the configuration plus those in `db`; `learn_private`: whether relays on
    /// loopback, private and link-local addresses may be learned from others
    /// (`[client] allow_private_servers`).
    pub fn new(
        db: &'a ClientDb,
        transport: &'a Transport,
        configured: Vec<ServerEntry>,
        learn_private: bool,
    ) -> Self {
        Self {
            db,
            transport,
            configured,
            learn_private,
        }
    }

    /// Every known relay with what we know of it. Blocked relays are not known, unless they
    /// are configured too: the configuration is used as it says.
    pub fn known(&self) -> Result<Vec<(ServerEntry, RelayInfo)>, ServersError> {
        let blocked: HashSet<ServerEntry> = self
            .blocked()?
            .into_iter()
            .filter(|e| !self.configured.contains(e))
            .collect();
        let mut out: Vec<(ServerEntry, RelayInfo)> = Vec::new();
        for (name, json) in self.db.servers()? {
            if let Ok(entry) = name.parse::<ServerEntry>()
                && !blocked.contains(&entry)
            {
                out.push((entry, serde_json::from_slice(&json).unwrap_or_default()));
            }
        }
        for entry in &self.configured {
            if !out.iter().any(|(e, _)| e == entry) {
                out.push((entry.clone(), RelayInfo::default()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Relays the user blocked.
    pub fn blocked(&self) -> Result<Vec<ServerEntry>, ServersError> {
        Ok(self
            .db
            .settings_with_prefix(BLOCKED)?
            .into_iter()
            .filter_map(|(k, _)| k[BLOCKED.len()..].parse().ok())
            .collect())
    }

    /// Never uses or learns `relay` again (until [`Self::unblock`]): it is forgotten, and
    /// keys it carried or read for move to other relays. False when it was blocked already.
    /// A configured relay is refused: the configuration says to use it.
    pub fn block(&self, relay: &ServerEntry) -> Result<bool, ServersError> {
        if self.configured.contains(relay) {
            return Err(ServersError::Configured(relay.to_string()));
        }
        let key = format!("{BLOCKED}{}", relay.authority());
        let fresh = self.db.setting(&key)?.is_none();
        self.db.set_setting(&key, "")?;
        self.db.update_servers(&[], &[relay.authority()])?;
        for prefix in ["rx:", "tx:"] {
            for (role, on) in self.db.settings_with_prefix(prefix)? {
                if on.parse::<ServerEntry>().is_ok_and(|e| e == *relay) {
                    self.db.remove_setting(&role)?;
                }
            }
        }
        Ok(fresh)
    }

    /// Lets `relay` be learned again; false when it was not blocked.
    pub fn unblock(&self, relay: &ServerEntry) -> Result<bool, ServersError> {
        Ok(self
            .db
            .remove_setting(&format!("{BLOCKED}{}", relay.authority()))?)
    }

    /// Probes the relays that are due (see [`RelayInfo::probe_due`], with answers trusted
    /// for [`PROBE_MAX_AGE_MS`]) and learns new ones from one that answers.
    pub fn refresh(&self, now: u64) -> Result<(), ServersError> {
        self.refresh_older_than(now, PROBE_MAX_AGE_MS)
    }

    /// [`Self::refresh`] with answers trusted for `max_age_ms` (0: every relay, now).
    /// When no relay answered last time, every relay is probed again whatever its age or
    /// back-off: there is nothing to lose by asking, and a relay that is back is used at once.
    ///
    /// Probes run side by side, each waiting
    /// [`PROBE_TIMEOUT`](super::transport::PROBE_TIMEOUT) at most, so relays that hang
    /// hold a command up for about that long, not for one request timeout each. The least
    /// loaded relay that answered is asked for the relays it knows (`/sync/servers`); public
    /// ones are remembered (all, with `learn_private`), up to [`MAX_LEARNED`]. Learned relays
    /// that have not answered for [`FORGET_AFTER_MS`] are forgotten.
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
        let due: Vec<&(ServerEntry, RelayInfo)> = known
            .iter()
            .filter(|(_, info)| info.probe_due(now, max_age_ms))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let entries: Vec<&ServerEntry> = due.iter().map(|(e, _)| e).collect();
        let answers = self.probe_all(&entries);
        let mut put = Vec::new();
        let mut forget = Vec::new();
        let mut learn_from: Option<(&ServerEntry, f64)> = None;
        for ((entry, old), answer) in due.iter().zip(&answers) {
            let info = old.after_probe(now, answer.as_ref());
            if info.reachable {
                let load = info.load.unwrap_or(0.5);
                if learn_from.is_none_or(|(_, best)| load < best) {
                    learn_from = Some((entry, load));
                }
            }
            let learned = !self.configured.contains(entry);
            if learned
                && info.down_since != 0
                && now.saturating_sub(info.down_since) >= FORGET_AFTER_MS
            {
                forget.push(entry.authority());
            } else {
                put.push((
                    entry.authority(),
                    serde_json::to_vec(&info).expect("info serializes"),
                ));
            }
        }
        // Relays learned now are probed at once, so that they can be used at once.
        if let Some((relay, _)) = learn_from {
            let learned = self.learn(relay, &known, forget.len());
            let entries: Vec<&ServerEntry> = learned.iter().collect();
            for (entry, answer) in learned.iter().zip(self.probe_all(&entries)) {
                let info = RelayInfo::default().after_probe(now, answer.as_ref());
                put.push((
                    entry.authority(),
                    serde_json::to_vec(&info).expect("info serializes"),
                ));
            }
        }
        self.db.update_servers(&put, &forget)?;
        Ok(())
    }

    /// Probes `entries` side by side, at most [`PROBES_AT_ONCE`] at a time: each relay's
    /// `/status` (`Some`) or `None` when it does not answer.
    fn probe_all(&self, entries: &[&ServerEntry]) -> Vec<Option<Option<Status>>> {
        let next = AtomicUsize::new(0);
        let answers: Vec<Mutex<Option<Option<Status>>>> =
            entries.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..entries.len().min(PROBES_AT_ONCE) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(entry) = entries.get(i) else { break };
                        let answer = self.transport.status(entry).ok();
                        *answers[i].lock().unwrap_or_else(|p| p.into_inner()) = answer;
                    }
                });
            }
        });
        answers
            .into_iter()
            .map(|a| a.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    /// The relays `relay` knows that we do not, to remember (none when it does not answer):
    /// never blocked ones, public ones unless private ones may be learned, at most [`MAX_LEARNED_AT_ONCE`], and
    /// no more than [`MAX_LEARNED`] learned relays in all once `forgotten` are gone.
    fn learn(
        &self,
        relay: &ServerEntry,
        known: &[(ServerEntry, RelayInfo)],
        forgotten: usize,
    ) -> Vec<ServerEntry> {
        let list: Vec<ServerEntry> = known.iter().map(|(e, _)| e.clone()).collect();
        let Ok(offered) = self.transport.sync_servers(relay) else {
            return Vec::new();
        };
        let mut seen: HashSet<ServerEntry> = list.into_iter().collect();
        seen.extend(self.blocked().unwrap_or_default());
        let learned_now = known
            .iter()
            .filter(|(e, _)| !self.configured.contains(e))
            .count()
            .saturating_sub(forgotten);
        let room = MAX_LEARNED
            .saturating_sub(learned_now)
            .min(MAX_LEARNED_AT_ONCE);
        let mut new: Vec<ServerEntry> = Vec::new();
        for server in offered {
            if new.len() == room {
                break;
            }
            if (self.learn_private || server.is_public()) && seen.insert(server.clone()) {
                new.push(server);
            }
        }
        new
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
        self.assign(&rx_key(own))
    }

    /// The relay that carries the copies of what we send to our own key `own` (for our other
    /// devices): our inbox relay, which knows that key already. A TX relay would see them
    /// beside the packets to a contact, right after each, and learn who writes to that
    /// contact. (A TX role for our own key, from earlier versions, is dropped.)
    pub fn copies_to_self(&self, own: &Fingerprint) -> Result<ServerEntry, ServersError> {
        self.db.remove_setting(&tx_key(own))?;
        self.rx_for(own)
    }

    /// The relay that carries packets to `recipient`.
    pub fn tx_for(&self, recipient: &Fingerprint) -> Result<ServerEntry, ServersError> {
        self.assign(&tx_key(recipient))
    }

    /// The assignment under `key` (`rx:…` or `tx:…`): the relay it had while that relay
    /// answers, else the least loaded reachable relay, preferring one with no role yet so
    /// that each key has its own.
    ///
    /// - A TX relay never reads one of our inboxes when another relay answers: an assignment
    ///   made when only one relay was known moves once more are. Nor is it of the same
    ///   [`operator`] as one of our inbox relays when a relay of another operator answers.
    /// - Our inboxes (the identity's and each receive key's) leave a relay free for sending
    ///   whenever two or more answer: with one relay left that reads none of them, a new inbox
    ///   shares a relay with another of ours rather than take the last one a TX role can use.
    ///   Inboxes keep apart by operator first in the same way, then by relay.
    /// - A relay that stopped answering less than [`ROLE_KEPT_WHILE_DOWN_MS`] ago keeps its
    ///   role: another one stands in without being saved, and the role is its own again once
    ///   it answers. One failed probe does not spread a key over more relays for good.
    fn assign(&self, key: &str) -> Result<ServerEntry, ServersError> {
        let known = self.known()?;
        let mut candidates: Vec<ServerEntry> =
            self.reachable()?.into_iter().map(|(e, _)| e).collect();
        let rx_relays = self.assigned("rx:")?;
        if key.starts_with("tx:") {
            // Apart from our inboxes' operators if possible, else from our inbox relays.
            let rx_operators: HashSet<String> = rx_relays.iter().map(operator).collect();
            keep_apart(&mut candidates, |e| !rx_operators.contains(&operator(e)));
            keep_apart(&mut candidates, |e| !rx_relays.contains(e));
        } else {
            let other_inboxes: HashSet<ServerEntry> = self
                .db
                .settings_with_prefix("rx:")?
                .into_iter()
                .filter(|(k, _)| k != key)
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            // First by operator, then by relay among what is left. Once an operator is left
            // to TX roles, a relay of ours with no inbox yet is taken before sharing one.
            let others: HashSet<String> = other_inboxes.iter().map(operator).collect();
            let shares = |e: &ServerEntry| others.contains(&operator(e));
            if spread_inbox(&mut candidates, shares, operator) {
                keep_apart(&mut candidates, |e| !other_inboxes.contains(e));
            } else {
                spread_inbox(
                    &mut candidates,
                    |e| other_inboxes.contains(e),
                    ServerEntry::authority,
                );
            }
        }
        let current = self
            .db
            .setting(key)?
            .and_then(|v| v.parse::<ServerEntry>().ok());
        if let Some(current) = &current
            && candidates.contains(current)
        {
            return Ok(current.clone());
        }
        let mut busy = rx_relays;
        busy.extend(self.assigned("tx:")?);
        let chosen = candidates
            .iter()
            .find(|e| !busy.contains(e))
            .or(candidates.first())
            .cloned()
            .ok_or(ServersError::NoneReachable)?;
        let now = crate::client::now_ms();
        let standing_in = current.is_some_and(|c| {
            known.iter().any(|(e, info)| {
                *e == c
                    && !info.reachable
                    && info.down_since != 0
                    && now.saturating_sub(info.down_since) < ROLE_KEPT_WHILE_DOWN_MS
            })
        });
        if !standing_in {
            self.db.set_setting(key, &chosen.authority())?;
        }
        Ok(chosen)
    }

    /// Applies the rules of [`Self::assign`] to every TX assignment now (a TX role on the
    /// inbox relay moves once another relay answers), rather than at the next send to that
    /// key, so that `jasper servers` shows where packets will go. Nothing moves while no
    /// relay answers.
    pub fn settle_roles(&self) -> Result<(), ServersError> {
        for (key, _) in self.db.settings_with_prefix("tx:")? {
            match self.assign(&key) {
                Ok(_) | Err(ServersError::NoneReachable) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MINUTE: u64 = 60_000;

    fn down(failures: u32, probed_at: u64) -> RelayInfo {
        RelayInfo {
            probed_at,
            failures,
            down_since: probed_at,
            ..RelayInfo::default()
        }
    }

    #[test]
    fn relays_on_one_name_or_neighbouring_addresses_share_an_operator() {
        let op = |s: &str| operator(&s.parse::<ServerEntry>().unwrap());
        assert_eq!(op("192.0.2.7:8080"), op("192.0.2.200:9090"));
        assert_ne!(op("192.0.2.7:8080"), op("192.0.3.7:8080"));
        assert_eq!(
            op("[2001:db8:1:2::1]:8080"),
            op("[2001:db8:1:ffff::9]:8081")
        );
        assert_ne!(op("[2001:db8:1::1]:8080"), op("[2001:db8:2::1]:8080"));
        assert_eq!(op("[::ffff:192.0.2.7]:8080"), op("192.0.2.9:8080"));
        assert_eq!(op("relay.example.org:8080"), op("relay.example.org:9090"));
        assert_ne!(op("relay.example.org:8080"), op("other.example.org:8080"));
    }

    #[test]
    fn a_load_no_relay_can_have_counts_as_the_busiest() {
        let status = |load: f64| Status {
            version: "x".into(),
            load,
            messages: 0,
            capabilities: Vec::new(),
            peers: None,
        };
        let fresh = down(0, 0);
        for (claimed, believed) in [(0.25, 0.25), (0.0, 0.0), (-1.0, 1.0), (7.0, 1.0)] {
            let info = fresh.after_probe(1, Some(&Some(status(claimed))));
            assert_eq!(info.load, Some(believed), "{claimed}");
        }
    }

    #[test]
    fn a_relay_that_keeps_failing_is_probed_less_and_less_often() {
        let t = 1_000 * MINUTE;
        assert!(RelayInfo::default().probe_due(t, PROBE_MAX_AGE_MS));
        let up = RelayInfo {
            reachable: true,
            probed_at: t,
            ..RelayInfo::default()
        };
        assert!(!up.probe_due(t + MINUTE - 1, PROBE_MAX_AGE_MS));
        assert!(up.probe_due(t + MINUTE, PROBE_MAX_AGE_MS));
        for (failures, wait) in [
            (1, MINUTE),
            (2, 2 * MINUTE),
            (3, 4 * MINUTE),
            (9, 256 * MINUTE),
        ] {
            let info = down(failures, t);
            assert!(
                !info.probe_due(t + wait - 1, PROBE_MAX_AGE_MS),
                "{failures}"
            );
            assert!(info.probe_due(t + wait, PROBE_MAX_AGE_MS), "{failures}");
        }
        // The wait stops growing at MAX_RETRY_WAIT_MS, however long the run of failures.
        for failures in [10, 40, u32::MAX] {
            let info = down(failures, t);
            assert!(!info.probe_due(t + MAX_RETRY_WAIT_MS - 1, PROBE_MAX_AGE_MS));
            assert!(info.probe_due(t + MAX_RETRY_WAIT_MS, PROBE_MAX_AGE_MS));
        }
        // Asked to probe everything now (`jasper servers`), every relay is due.
        assert!(down(u32::MAX, t).probe_due(t, 0));
        assert!(up.probe_due(t, 0));
    }

    #[test]
    fn a_run_of_failures_counts_from_the_first_and_ends_with_an_answer() {
        let first = RelayInfo::default().after_probe(5, None);
        assert_eq!(
            (first.failures, first.down_since, first.reachable),
            (1, 5, false)
        );
        let second = first.after_probe(9, None);
        assert_eq!(
            (second.failures, second.down_since, second.probed_at),
            (2, 5, 9)
        );
        let back = second.after_probe(12, Some(&None));
        assert_eq!(
            (back.failures, back.down_since, back.reachable),
            (0, 0, true)
        );
    }

    /// A loopback address where nothing listens (connections are refused at once).
    fn closed_port() -> ServerEntry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr.to_string().parse().unwrap()
    }

    #[test]
    fn learned_relays_down_for_a_week_are_forgotten_and_configured_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        let transport = Transport::new(Duration::from_secs(5), Vec::new(), true);
        let (configured, week_old, day_old) = (closed_port(), closed_port(), closed_port());
        let now = 100 * FORGET_AFTER_MS;
        let info = |down_since: u64| {
            let info = RelayInfo {
                probed_at: now - MAX_RETRY_WAIT_MS,
                failures: 50,
                down_since,
                ..RelayInfo::default()
            };
            serde_json::to_vec(&info).unwrap()
        };
        db.update_servers(
            &[
                (configured.authority(), info(now - 2 * FORGET_AFTER_MS)),
                (week_old.authority(), info(now - FORGET_AFTER_MS)),
                (day_old.authority(), info(now - FORGET_AFTER_MS / 7)),
            ],
            &[],
        )
        .unwrap();
        let servers = Servers::new(&db, &transport, vec![configured.clone()], true);
        servers.refresh(now).unwrap();
        let known: Vec<ServerEntry> = servers
            .known()
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let mut want = vec![configured.clone(), day_old.clone()];
        want.sort();
        assert_eq!(known, want);
        // Probed again, each failure counted.
        for (_, info) in servers.known().unwrap() {
            assert_eq!((info.failures, info.probed_at), (51, now));
        }
    }
}
