//! Per-client request rate limiting: a token bucket per address, kept in memory only and
//! bounded in size, so the relay never writes client addresses anywhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::netlimits::{SITE_SHARE, client_network, client_site};

/// Most client networks tracked at once; past this, those whose buckets are full again (the
/// same as fresh ones) are forgotten. A flood of new addresses never resets the buckets of
/// the clients that are over their rate.
const MAX_TRACKED: usize = 100_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per client address, and per IPv6 site.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    /// Per [`client_network`].
    networks: HashMap<IpAddr, Bucket>,
    /// Per IPv6 [`client_site`], at [`SITE_SHARE`] times the rate: one customer holds
    /// thousands of /64s, and must not get a budget for each.
    sites: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `per_minute` requests per address on average (0: unlimited), with bursts of a tenth of
    /// that (at least 10).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_second: f64::from(per_minute) / 60.0,
            burst: (f64::from(per_minute) / 10.0).max(10.0),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Takes one token for `addr`'s network (an IPv6 /64 counts as one client, see
    /// [`client_network`]), and for an IPv6 address one of its /48's too; false when either
    /// is over its rate (then neither is charged).
    pub fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let network = client_network(addr);
        let (rate, burst) = (self.per_second, self.burst);
        let Some(network_tokens) = refill(&mut buckets.networks, network, rate, burst, now) else {
            return true; // every tracked client is over its rate: a new one starts full
        };
        let share = SITE_SHARE as f64;
        let site = client_site(addr);
        let site_tokens = match site {
            Some(site) => refill(&mut buckets.sites, site, rate * share, burst * share, now),
            None => Some(f64::INFINITY),
        };
        let allowed = network_tokens >= 1.0 && site_tokens.is_none_or(|t| t >= 1.0);
        if allowed {
            if let Some(b) = buckets.networks.get_mut(&network) {
                b.tokens -= 1.0;
            }
            if let Some(b) = site.and_then(|site| buckets.sites.get_mut(&site)) {
                b.tokens -= 1.0;
            }
        }
        allowed
    }
}

/// Brings `key`'s bucket in `buckets` up to `now` (a new one starts full) and returns its
/// tokens; `None` when it cannot be tracked (every tracked key over its rate).
fn refill(
    buckets: &mut HashMap<IpAddr, Bucket>,
    key: IpAddr,
    rate: f64,
    burst: f64,
    now: Instant,
) -> Option<f64> {
    if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
        // Forget those whose buckets are full again (the same as fresh ones). A flood of new
        // addresses never resets the buckets of the clients that are over their rate.
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if buckets.len() >= MAX_TRACKED {
            return None;
        }
    }
    let bucket = buckets.entry(key).or_insert(Bucket {
        tokens: burst,
        updated: now,
    });
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.updated = now;
    Some(bucket.tokens)
}

/// The addresses of this relay's peers (configured, or learned and have served it), whose
/// requests the rate limit lets through: a relay pushes every packet it stores to its peers,
/// all from one address, far more often than a client sends. Kept up to date by the mesh
/// (see `mesh::peer_address_loop`).
#[derive(Default)]
pub struct PeerAddresses {
    /// Each address, with the peers found at it.
    addresses: std::sync::RwLock<
        std::collections::HashMap<IpAddr, std::collections::HashSet<crate::proto::ServerEntry>>,
    >,
}

impl PeerAddresses {
    /// Whether `ip` is a peer's.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&ip.to_canonical())
    }

    /// Whether `ip` is `peer`'s own address (not just any peer's).
    pub fn is_address_of(&self, ip: IpAddr, peer: &crate::proto::ServerEntry) -> bool {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip.to_canonical())
            .is_some_and(|peers| peers.contains(peer))
    }

    /// Replaces the peers' addresses: (address, peer) pairs.
    pub fn replace(
        &self,
        addresses: impl IntoIterator<Item = (IpAddr, crate::proto::ServerEntry)>,
    ) {
        let mut map: std::collections::HashMap<_, std::collections::HashSet<_>> =
            std::collections::HashMap::new();
        for (ip, peer) in addresses {
            map.entry(ip.to_canonical()).or_default().insert(peer);
        }
        *self.addresses.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let limiter = RateLimiter::new(600); // 10/s, burst 60
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| limiter.allow(a, t0)).count(), 60);
        assert!(limiter.allow(b, t0), "addresses have their own buckets");
        assert!(!limiter.allow(a, t0));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| limiter.allow(a, t1)).count(), 10);
    }

    #[test]
    fn peer_addresses_match_whatever_the_address_family() {
        let peers = PeerAddresses::default();
        assert!(!peers.contains("192.0.2.1".parse().unwrap()));
        let (a, b): (crate::proto::ServerEntry, crate::proto::ServerEntry) = (
            "192.0.2.1:8080".parse().unwrap(),
            "relay.example.org:8080".parse().unwrap(),
        );
        peers.replace([
            ("192.0.2.1".parse().unwrap(), a.clone()),
            ("2001:db8::1".parse().unwrap(), b.clone()),
        ]);
        assert!(peers.contains("192.0.2.1".parse().unwrap()));
        // Each address is its own peer's, not any peer's.
        assert!(peers.is_address_of("::ffff:192.0.2.1".parse().unwrap(), &a));
        assert!(!peers.is_address_of("192.0.2.1".parse().unwrap(), &b));
        assert!(peers.is_address_of("2001:db8::1".parse().unwrap(), &b));
        assert!(
            peers.contains("::ffff:192.0.2.1".parse().unwrap()),
            "v4 on a v6 socket"
        );
        assert!(peers.contains("2001:db8::1".parse().unwrap()));
        assert!(!peers.contains("192.0.2.2".parse().unwrap()));
        peers.replace([]);
        assert!(
            !peers.contains("192.0.2.1".parse().unwrap()),
            "a forgotten peer"
        );
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_a_flood_of_new_ones_resets_nobody() {
        let limiter = RateLimiter::new(600); // burst 60
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Addresses of one /64 share a bucket.
        let allowed = (0..100u32)
            .filter(|n| limiter.allow(ip(&format!("2001:db8:0:1::{n:x}")), t0))
            .count();
        assert_eq!(allowed, 60);
        // A flood of new networks does not give it a fresh bucket.
        for n in 0..(MAX_TRACKED as u32 + 10) {
            limiter.allow(IpAddr::from(n.to_be_bytes()), t0);
        }
        assert!(!limiter.allow(ip("2001:db8:0:1::ffff"), t0));
    }

    #[test]
    fn an_ipv6_48_gets_a_few_networks_worth_not_one_per_64() {
        let limiter = RateLimiter::new(600); // burst 60 per /64; 480 per /48
        let t0 = Instant::now();
        let ip = |s: String| s.parse::<IpAddr>().unwrap();
        // 100 requests from each of 20 /64s of the /48 2001:db8:7::/48, at `at`.
        let from_20_networks = |first: u32, at: Instant| -> usize {
            (first..first + 20)
                .map(|net| {
                    (0..100)
                        .filter(|_| limiter.allow(ip(format!("2001:db8:7:{net:x}::1")), at))
                        .count()
                })
                .sum()
        };
        // 8 networks' worth in all.
        assert_eq!(from_20_networks(0, t0), 60 * SITE_SHARE);
        // Another /48 has its own; a refusal by the site charged no network.
        assert!(limiter.allow(ip("2001:db8:8::1".into()), t0));
        let t1 = t0 + Duration::from_secs(1);
        let refilled = from_20_networks(0x100, t1);
        assert_eq!(
            refilled,
            10 * SITE_SHARE,
            "the site refills at 8 networks' rate"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..10_000).all(|_| limiter.allow(a, Instant::now())));
    }
}
