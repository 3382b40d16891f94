//! HTTP calls from this relay to its peers: bounded in time and size, and never to an address
//! the configuration does not allow (loopback, private and link-local ranges are refused for
//! peers learned from others unless `allow_private_peers`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proto::ServerEntry;
use crate::proto::server::AddressError;
use crate::proto::server::Host;
use crate::relay::api::CALLER_HEADER;

/// Time allowed to connect to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole exchange with a peer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The name did not resolve, or resolved only to refused addresses.
    #[error("{0}")]
    Address(String),
    /// The peer could not be reached or the exchange failed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error status.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The answer was larger than we accept.
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
    /// The answer is not what the protocol says.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl PeerError {
    /// Whether the failure is the peer's misbehaviour (as opposed to it being unreachable).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(self, PeerError::TooLarge(_) | PeerError::Malformed(_))
    }
}

/// Makes bounded, guarded HTTP requests to peers. Blocking: call from the blocking pool.
#[derive(Clone)]
pub struct PeerClient {
    agent: ureq::Agent,
    allow_private: bool,
    configured: Vec<ServerEntry>,
    own: Option<ServerEntry>,
    /// The addresses each peer named by a domain resolved to when last contacted.
    resolved: Arc<Mutex<HashMap<ServerEntry, Vec<IpAddr>>>>,
}

impl PeerClient {
    /// A client; `allow_private` lets it contact loopback, private and link-local addresses.
    /// `configured` are the operator's own `peers`: chosen, not learned, so always allowed.
    pub fn new(allow_private: bool, configured: Vec<ServerEntry>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .max_response_header_size(16 * 1024)
            // Relays close a connection idle for 10 s (`relay::HEADER_TIMEOUT`).
            .max_idle_age(Duration::from_secs(5))
            .user_agent(concat!("jasper/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            allow_private,
            configured,
            own: None,
            resolved: Arc::default(),
        }
    }

    /// Names this relay (its public address) to the peers it calls, so that they can fetch
    /// back from it (header `jasper-server`).
    pub fn with_own_address(mut self, own: Option<ServerEntry>) -> Self {
        self.own = own;
        self
    }

    /// Resolves `peer` to one address this relay may contact.
    pub fn resolve(&self, peer: &ServerEntry) -> Result<SocketAddr, PeerError> {
        let trusted = self.allow_private || self.configured.contains(peer);
        let addrs = peer.resolve_all(trusted).map_err(|e| match e {
            AddressError::NotPublic(_) => {
                PeerError::Address(format!("{e}; set allow_private_peers to contact it"))
            }
            AddressError::Unresolvable { .. } => PeerError::Address(e.to_string()),
        })?;
        if matches!(peer.host, Host::Domain(_)) {
            let ips = addrs.iter().map(SocketAddr::ip).collect();
            self.lock_resolved().insert(peer.clone(), ips);
        }
        Ok(addrs[0])
    }

    /// The addresses `peer` has: its IP, or for a name, every address (of both families) it
    /// resolved to when this relay last contacted it (none before that: names are not looked
    /// up for this).
    pub fn addresses_of(&self, peer: &ServerEntry) -> Vec<IpAddr> {
        match &peer.host {
            Host::Ip(ip) => vec![*ip],
            Host::Domain(_) => self.lock_resolved().get(peer).cloned().unwrap_or_default(),
        }
    }

    /// Forgets the resolved addresses of every peer but `known`.
    pub fn keep_resolved(&self, known: &[ServerEntry]) {
        self.lock_resolved().retain(|peer, _| known.contains(peer));
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, HashMap<ServerEntry, Vec<IpAddr>>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POSTs JSON to `path` on `peer` and returns the body of a 200 answer, read up to `limit`
    /// bytes.
    pub fn post(
        &self,
        peer: &ServerEntry,
        path: &str,
        body: &[u8],
        limit: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let mut response = self.send_post(peer, path, "application/json", body)?;
        read_limited(&mut response, limit)
    }

    /// POSTs JSON to `path` on `peer` and returns the first `limit` bytes of a 200 answer, and
    /// whether the answer went on past them (the rest is not read).
    pub fn post_prefix(
        &self,
        peer: &ServerEntry,
        path: &str,
        body: &[u8],
        limit: u64,
    ) -> Result<(Vec<u8>, bool), PeerError> {
        use std::io::Read;
        let mut response = self.send_post(peer, path, "application/json", body)?;
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let cut = bytes.len() as u64 > limit;
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((bytes, cut))
    }

    /// As [`PeerClient::post`], with a binary body.
    pub fn post_bytes(
        &self,
        peer: &ServerEntry,
        path: &str,
        body: &[u8],
        limit: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let mut response = self.send_post(peer, path, "application/octet-stream", body)?;
        read_limited(&mut response, limit)
    }

    /// Sends a POST and returns the response to a 200, its body not yet read.
    fn send_post(
        &self,
        peer: &ServerEntry,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, PeerError> {
        let addr = self.resolve(peer)?;
        let url = format!("http://{addr}{path}");
        let mut request = self.agent.post(&url).header("content-type", content_type);
        if let Some(own) = &self.own {
            request = request.header(CALLER_HEADER, own.to_string());
        }
        if let Some(host) = peer.host_header() {
            request = request.header("host", host);
        }
        let response = request
            .send(body)
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(PeerError::Status(status));
        }
        Ok(response)
    }

    /// GETs `path` on `peer`, read up to `limit` bytes; `None` when the peer answers 404.
    pub fn get(
        &self,
        peer: &ServerEntry,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let addr = self.resolve(peer)?;
        let mut request = self.agent.get(&format!("http://{addr}{path}"));
        if let Some(host) = peer.host_header() {
            request = request.header("host", host);
        }
        let mut response = request
            .call()
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            other => return Err(PeerError::Status(other)),
        }
        read_limited(&mut response, limit).map(Some)
    }
}

/// Reads an answer's body, at most `limit` bytes.
fn read_limited(
    response: &mut ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, PeerError> {
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => PeerError::TooLarge(limit),
            other => PeerError::Unreachable(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_peers_must_be_public_unless_private_ones_are_allowed() {
        let strict = PeerClient::new(false, vec!["10.9.9.9:1".parse().unwrap()]);
        let lax = PeerClient::new(true, vec![]);
        // A peer the operator configured is contacted wherever it is.
        assert!(strict.resolve(&"10.9.9.9:1".parse().unwrap()).is_ok());
        for private in ["10.0.0.1:80", "localhost:8080"] {
            let peer: ServerEntry = private.parse().unwrap();
            let err = strict.resolve(&peer).unwrap_err().to_string();
            assert!(err.contains("set allow_private_peers"), "{err}");
            assert!(lax.resolve(&peer).is_ok(), "{private}");
        }
    }

    #[test]
    fn a_named_peer_has_addresses_once_contacted() {
        let client = PeerClient::new(true, vec![]);
        let named: ServerEntry = "localhost:8080".parse().unwrap();
        let literal: ServerEntry = "192.0.2.7:8080".parse().unwrap();
        assert_eq!(
            client.addresses_of(&literal),
            ["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        assert!(
            client.addresses_of(&named).is_empty(),
            "not looked up for this alone"
        );
        client.resolve(&named).unwrap();
        let ips = client.addresses_of(&named);
        assert!(
            ips.iter().all(IpAddr::is_loopback) && !ips.is_empty(),
            "{ips:?}"
        );
        client.keep_resolved(&[literal]);
        assert!(
            client.addresses_of(&named).is_empty(),
            "forgotten with the peer"
        );
    }
}
