//! Server entries of `/sync/servers`: `{"ip": IPv4|IPv6|DOMAIN, "port": "8080"}` (PROTOCOL.md §4).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde_json::Value;

/// Longest DNS name (RFC 1035 §2.3.4).
const MAX_DOMAIN_BYTES: usize = 253;

/// The host part of a server entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, lowercased, without a trailing dot.
    Domain(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => f.write_str(d),
        }
    }
}

/// A relay's address as exchanged between relays and known to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerEntry {
    /// Address or name.
    pub host: Host,
    /// TCP port, 1–65535.
    pub port: u16,
}

/// Why a server entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerEntryError {
    /// The entry is not an object with `ip` and `port`.
    #[error("a server entry must be an object with string `ip` and string or number `port`")]
    Shape,
    /// `ip` is neither an IP address nor a valid DNS name.
    #[error("{0:?} is neither an IP address nor a DNS name")]
    BadHost(String),
    /// `port` is not 1–65535.
    #[error("port must be 1-65535")]
    BadPort,
}

/// Why a server's address may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The name did not resolve.
    #[error("cannot resolve {name}: {reason}")]
    Unresolvable {
        /// The name.
        name: String,
        /// The resolver's words.
        reason: String,
    },
    /// Every address it has is on loopback, a private or link-local range, or the like.
    #[error("{0} has no public address")]
    NotPublic(String),
}

impl ServerEntry {
    /// One address to connect to. Unless `allow_private`, only a public one (see
    /// [`is_public_ip`]) is taken, checked when connecting (not when learned): a name that
    /// resolves only to loopback, private or link-local addresses is refused, so that a server
    /// learned from others cannot point us into our own network.
    pub fn resolve(&self, allow_private: bool) -> Result<SocketAddr, AddressError> {
        Ok(self.resolve_all(allow_private)?[0])
    }

    /// Every address the entry may be contacted at, in the resolver's order (never empty): a
    /// name's addresses of both families, those outside public ranges left out unless
    /// `allow_private`.
    pub fn resolve_all(&self, allow_private: bool) -> Result<Vec<SocketAddr>, AddressError> {
        let candidates: Vec<SocketAddr> = match &self.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Domain(name) => (name.as_str(), self.port)
                .to_socket_addrs()
                .map_err(|e| AddressError::Unresolvable {
                    name: name.clone(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|a| allow_private || is_public_ip(&a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(AddressError::NotPublic(self.to_string()));
        }
        Ok(allowed)
    }

    /// The `Host` header for a request sent to an address [`Self::resolve`] gave: the name
    /// and port when the entry is a name (an IP literal needs none).
    pub fn host_header(&self) -> Option<String> {
        match &self.host {
            Host::Domain(_) => Some(self.authority()),
            Host::Ip(_) => None,
        }
    }

    /// Parses one entry of a `/sync/servers` list; `port` may be a string or a number.
    pub fn from_json(value: &Value) -> Result<Self, ServerEntryError> {
        let obj = value.as_object().ok_or(ServerEntryError::Shape)?;
        let host = obj
            .get("ip")
            .and_then(Value::as_str)
            .ok_or(ServerEntryError::Shape)?;
        let port = match obj.get("port") {
            Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => return Err(ServerEntryError::Shape),
        };
        let port = port.filter(|p| *p != 0).ok_or(ServerEntryError::BadPort)?;
        Ok(Self {
            host: parse_host(host)?,
            port,
        })
    }

    /// The JSON form we emit: `port` as a string.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "ip": self.host.to_string(), "port": self.port.to_string() })
    }

    /// Whether the entry names a public address. Loopback, private, link-local, unspecified,
    /// multicast, documentation and shared (CGNAT) ranges, and `localhost` names, are not.
    pub fn is_public(&self) -> bool {
        match &self.host {
            Host::Ip(ip) => is_public_ip(ip),
            Host::Domain(d) => {
                !(d == "localhost" || d.ends_with(".localhost") || d.ends_with(".local"))
            }
        }
    }

    /// `host:port` with IPv6 in brackets, as used in URLs and the config's `peers`.
    pub fn authority(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }
}

impl fmt::Display for ServerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

impl FromStr for ServerEntry {
    type Err = ServerEntryError;

    /// Parses `host:port` or `[ipv6]:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| ServerEntryError::BadHost(s.to_owned()))?;
            (h, p)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| ServerEntryError::BadHost(s.to_owned()))?
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(ServerEntryError::BadPort)?;
        Ok(Self {
            host: parse_host(host)?,
            port,
        })
    }
}

fn parse_host(text: &str) -> Result<Host, ServerEntryError> {
    let bad = || ServerEntryError::BadHost(text.chars().take(64).collect());
    let trimmed = text.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_DOMAIN_BYTES {
        return Err(bad());
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    // A name made only of digits and dots is a malformed IPv4 address, not a domain.
    let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !labels_ok || all_numeric {
        return Err(bad());
    }
    Ok(Host::Domain(name))
}

/// Whether `ip` is globally routable (not loopback, private, link-local and the like).
pub fn is_public_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(&v4);
            }
            let seg = v6.segments();
            // IPv4-compatible (::a.b.c.d, deprecated) and 6to4 (2002:aabb:ccdd::/48) addresses
            // carry an IPv4 address, which must be public too.
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public_v4(&std::net::Ipv4Addr::from(
                    (u32::from(seg[6]) << 16) | u32::from(seg[7]),
                ));
            }
            if seg[0] == 0x2002
                && !is_public_v4(&std::net::Ipv4Addr::from(
                    (u32::from(seg[1]) << 16) | u32::from(seg[2]),
                ))
            {
                return false;
            }
            // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) carries one too.
            if seg[..4] == [0; 4]
                && seg[4] == 0xffff
                && seg[5] == 0
                && !is_public_v4(&std::net::Ipv4Addr::from(
                    (u32::from(seg[6]) << 16) | u32::from(seg[7]),
                ))
            {
                return false;
            }
            let seg0 = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg0 & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed inside sites)
                || (seg0 == 0x2001 && seg[1] == 0) // Teredo: tunnels to hidden IPv4 hosts
                || (seg0 == 0x2001 && seg[1] == 0x0002 && seg[2] == 0) // benchmarking 2001:2::/48
                || (seg0 == 0x0100 && seg[1..4] == [0; 3]) // discard-only 100::/64
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (seg0 == 0x0064 && v6.segments()[1] == 0xff9b)) // NAT64 can reach private v4
        }
    }
}

fn is_public_v4(v4: &Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_as_string_or_number() {
        let a =
            ServerEntry::from_json(&json!({"ip": "relay.example.org", "port": "8080"})).unwrap();
        let b = ServerEntry::from_json(&json!({"ip": "Relay.Example.org.", "port": 8080})).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.to_json(),
            json!({"ip": "relay.example.org", "port": "8080"})
        );
    }

    #[test]
    fn invalid_entries_are_refused() {
        for bad in [
            json!({"ip": "a b", "port": 1}),
            json!({"ip": "x", "port": 0}),
            json!({"ip": "x", "port": 70000}),
            json!({"ip": "x", "port": -1}),
            json!({"ip": "x", "port": 1.5}),
            json!({"ip": 5, "port": 1}),
            json!({"port": 1}),
            json!("x:1"),
            json!({"ip": "999.1.1.1", "port": 1}),
            json!({"ip": "-bad-.org", "port": 1}),
            json!({"ip": "", "port": 1}),
        ] {
            assert!(ServerEntry::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_ranges_are_not_public() {
        for private in [
            "127.0.0.1:1",
            "10.1.2.3:1",
            "172.16.0.1:1",
            "192.168.1.1:1",
            "169.254.1.1:1",
            "100.64.0.1:1",
            "0.0.0.0:1",
            "[::1]:1",
            "[fe80::1]:1",
            "[fd00::1]:1",
            "[::ffff:10.0.0.1]:1",
            "[::10.0.0.1]:1",
            "[::127.0.0.1]:1",
            "[2002:7f00:1::1]:1",
            "[2002:c0a8:101::1]:1",
            "[::ffff:0:10.0.0.1]:1",
            "[::ffff:0:127.0.0.1]:1",
            "[fec0::1]:1",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:1",
            "[2001:2::1]:1",
            "[100::1]:1",
            "localhost:1",
            "db.localhost:1",
        ] {
            let e: ServerEntry = private.parse().unwrap();
            assert!(!e.is_public(), "{private}");
        }
        for public in [
            "8.8.8.8:53",
            "[2606:4700::1111]:443",
            "[2002:808:808::1]:443",
            "[::ffff:0:8.8.8.8]:53",
            "[2001:4860:4860::8888]:53",
            "relay.example.org:8080",
        ] {
            let e: ServerEntry = public.parse().unwrap();
            assert!(e.is_public(), "{public}");
        }
    }

    #[test]
    fn only_public_addresses_resolve_unless_private_ones_are_allowed() {
        for private in [
            "127.0.0.1:8080",
            "10.0.0.1:80",
            "[::1]:80",
            "169.254.0.1:80",
        ] {
            let entry: ServerEntry = private.parse().unwrap();
            assert_eq!(
                entry.resolve(false),
                Err(AddressError::NotPublic(entry.to_string()))
            );
            assert_eq!(entry.resolve(true).unwrap().to_string(), private);
        }
        let public: ServerEntry = "8.8.8.8:53".parse().unwrap();
        assert_eq!(public.resolve(false).unwrap().to_string(), "8.8.8.8:53");
        // A name is judged by what it resolves to: `localhost` is loopback.
        let named: ServerEntry = "localhost:8080".parse().unwrap();
        assert!(matches!(
            named.resolve(false),
            Err(AddressError::NotPublic(_))
        ));
        assert!(named.resolve(true).unwrap().ip().is_loopback());
    }

    #[test]
    fn authority_round_trips() {
        for s in ["1.2.3.4:80", "[2001:db9::1]:8080", "relay.example.org:443"] {
            let e: ServerEntry = s.parse().unwrap();
            assert_eq!(e.authority(), s);
        }
    }
}
