//! HTTP from the client to relays: `/send`, `/fetch` (with the cursor extension where offered),
//! `/status` and `/sync/servers`. Blocking (the client runs one command and exits).

use std::time::Duration;

use serde_json::{Value, json};

use crate::proto::server::AddressError;
use crate::proto::status::CAP_FETCH_CURSOR;
use crate::proto::{ServerEntry, Status};

/// Largest answer read from a relay (a `/fetch` page is at most a few MiB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;
/// Longest reason from a relay that an error repeats.
const MAX_REASON_CHARS: usize = 300;

/// Why a call to a relay failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The relay could not be reached.
    #[error("relay {relay} is unreachable: {reason}")]
    Unreachable {
        /// The relay.
        relay: String,
        /// Why.
        reason: String,
    },
    /// The relay asks us to slow down (or the inbox is full).
    #[error("relay {relay} is rate limiting: {message}")]
    RateLimited {
        /// The relay.
        relay: String,
        /// Its explanation.
        message: String,
    },
    /// The relay refuses a request this large (HTTP 413): for `/send`, a message too long
    /// for it.
    #[error("relay {relay} refuses a message this large ({message}); send a shorter one")]
    TooLarge {
        /// The relay.
        relay: String,
        /// Its explanation.
        message: String,
    },
    /// The relay refused the request.
    #[error("relay {relay} answered {status}: {message}")]
    Refused {
        /// The relay.
        relay: String,
        /// HTTP status.
        status: u16,
        /// Its explanation.
        message: String,
    },
    /// The answer is not what the protocol says.
    #[error("relay {relay} answered something that is not the protocol: {reason}")]
    Malformed {
        /// The relay.
        relay: String,
        /// What was wrong.
        reason: String,
    },
}

impl TransportError {
    /// Whether trying again later may work: the relay is unreachable, asks us to slow down,
    /// or fails on its side (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Unreachable { .. } | TransportError::RateLimited { .. } => true,
            TransportError::Refused { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// One page of an inbox.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    /// Packets as JSON objects.
    pub messages: Vec<Value>,
    /// Where to continue, if the relay speaks `fetch-cursor`.
    pub cursor: Option<String>,
    /// Whether more is waiting.
    pub more: bool,
}

/// Longest wait for a relay's `/status`. A probe asks only whether a relay is there and how
/// busy it is; a relay that has not answered by then is taken as down for now, so that one
/// relay that hangs cannot hold up a command for the whole request timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking HTTP client for relays.
#[derive(Clone)]
pub struct Transport {
    agent: ureq::Agent,
    /// The same, with [`PROBE_TIMEOUT`] (when shorter), for `/status`.
    probe: ureq::Agent,
    /// Relays used wherever they are (the configured ones).
    trusted: Vec<ServerEntry>,
    /// Whether learned relays may be on loopback, private and link-local addresses.
    allow_private: bool,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        // Never a proxy from the environment (HTTP_PROXY and the like): one proxy would see
        // every TX and RX request of this client, which the relays must not see together.
        .proxy(None)
        // Relays close a connection idle for 10 s (relay::HEADER_TIMEOUT): one kept longer
        // could be reused just as the relay closes it, and the request would fail.
        .max_idle_age(Duration::from_secs(5))
        .user_agent(concat!("jasper/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Transport {
    /// A client whose requests time out after `timeout` (probes after [`PROBE_TIMEOUT`] at
    /// most). It reaches the `trusted` relays (the configured ones) wherever they are, and
    /// others only at public addresses unless `allow_private` (`[client]
    /// allow_private_servers`): a relay learned from others, even by a name, cannot point the
    /// client at its own network.
    pub fn new(timeout: Duration, trusted: Vec<ServerEntry>, allow_private: bool) -> Self {
        Self {
            agent: agent(timeout),
            probe: agent(timeout.min(PROBE_TIMEOUT)),
            trusted,
            allow_private,
        }
    }

    /// The URL of `path` on `relay`, and the `Host` header to send when the URL names the
    /// address a learned relay's name resolved to.
    fn url(
        &self,
        relay: &ServerEntry,
        path: &str,
    ) -> Result<(String, Option<String>), TransportError> {
        if self.allow_private || self.trusted.contains(relay) {
            return Ok((format!("http://{}{path}", relay.authority()), None));
        }
        let addr = relay
            .resolve(false)
            .map_err(|e| TransportError::Unreachable {
                relay: relay.to_string(),
                reason: match e {
                    AddressError::NotPublic(_) => {
                        format!("{e}; set [client] allow_private_servers to use it")
                    }
                    AddressError::Unresolvable { .. } => e.to_string(),
                },
            })?;
        Ok((format!("http://{addr}{path}"), relay.host_header()))
    }

    fn call(
        &self,
        relay: &ServerEntry,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, TransportError> {
        self.call_with(&self.agent, relay, path, body)
    }

    fn call_with(
        &self,
        agent: &ureq::Agent,
        relay: &ServerEntry,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, TransportError> {
        let (url, host) = self.url(relay, path)?;
        let unreachable = |e: ureq::Error| TransportError::Unreachable {
            relay: relay.to_string(),
            reason: e.to_string(),
        };
        let mut response = match body {
            Some(b) => {
                let mut request = agent.post(&url).header("content-type", "application/json");
                if let Some(host) = &host {
                    request = request.header("host", host);
                }
                request
                    .send(b.to_string().as_bytes())
                    .map_err(unreachable)?
            }
            None => {
                let mut request = agent.get(&url);
                if let Some(host) = &host {
                    request = request.header("host", host);
                }
                request.call().map_err(unreachable)?
            }
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(unreachable)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        // The relay's words go to a terminal: escaped, and no longer than a line or two.
        let message = || {
            super::terminal::short_line(
                value["error"].as_str().unwrap_or("no reason given"),
                MAX_REASON_CHARS,
            )
        };
        match status {
            200 => Ok(value),
            429 => Err(TransportError::RateLimited {
                relay: relay.to_string(),
                message: message(),
            }),
            413 => Err(TransportError::TooLarge {
                relay: relay.to_string(),
                message: message(),
            }),
            _ => Err(TransportError::Refused {
                relay: relay.to_string(),
                status,
                message: message(),
            }),
        }
    }

    /// `POST /send`; true when newly stored, false when the relay had it already.
    pub fn send(&self, relay: &ServerEntry, packet: &Value) -> Result<bool, TransportError> {
        let answer = self.call(relay, "/send", Some(packet))?;
        Ok(answer["stored"].as_bool().unwrap_or(true))
    }

    /// `POST /fetch` for `recipient`, from `since` when the relay speaks `fetch-cursor`.
    pub fn fetch(
        &self,
        relay: &ServerEntry,
        recipient: &str,
        since: Option<&str>,
    ) -> Result<InboxPage, TransportError> {
        let mut body = json!({ "recipient": recipient });
        if let Some(since) = since {
            body["since"] = json!(since);
        }
        let mut answer = self.call(relay, "/fetch", Some(&body))?;
        let Some(Value::Array(messages)) = answer.get_mut("messages").map(Value::take) else {
            return Err(TransportError::Malformed {
                relay: relay.to_string(),
                reason: "no `messages` array".into(),
            });
        };
        Ok(InboxPage {
            messages,
            cursor: answer["cursor"].as_str().map(str::to_owned),
            more: answer["more"].as_bool().unwrap_or(false),
        })
    }

    /// `GET /status`, waiting [`PROBE_TIMEOUT`] at most; `None` for a relay that speaks only
    /// JASPER.md.
    pub fn status(&self, relay: &ServerEntry) -> Result<Option<Status>, TransportError> {
        match self.call_with(&self.probe, relay, "/status", None) {
            Ok(v) => Ok(serde_json::from_value(v).ok()),
            Err(TransportError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /sync/servers` with an empty list; returns every relay the relay names. A client
    /// does not tell a relay what it knows: the list of relays one client has learned is
    /// nearly its own, and would let a relay know it again from another address.
    pub fn sync_servers(&self, relay: &ServerEntry) -> Result<Vec<ServerEntry>, TransportError> {
        let answer = self.call(relay, "/sync/servers", Some(&json!({ "servers": [] })))?;
        Ok(answer["servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| ServerEntry::from_json(v).ok())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Whether a status advertises the cursor extension.
pub fn speaks_cursor(status: &Option<Status>) -> bool {
    status
        .as_ref()
        .is_some_and(|s| s.capabilities.iter().any(|c| c == CAP_FETCH_CURSOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_learned_relay_named_into_our_own_network_is_never_contacted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let named: ServerEntry = format!("localhost:{port}").parse().unwrap();
        let strict = Transport::new(Duration::from_secs(1), Vec::new(), false);
        match strict.status(&named) {
            Err(TransportError::Unreachable { reason, .. }) => {
                assert!(reason.contains("no public address"), "{reason}");
                assert!(reason.contains("allow_private_servers"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(listener.accept().is_err(), "the strict client connected");
        // Configured, or with private relays allowed, it is contacted (and says nothing).
        for transport in [
            Transport::new(Duration::from_secs(1), vec![named.clone()], false),
            Transport::new(Duration::from_secs(1), Vec::new(), true),
        ] {
            assert!(transport.status(&named).is_err());
            assert!(listener.accept().is_ok(), "no connection");
        }
    }
}
