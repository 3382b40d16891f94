//! Per-source rate limiting of STUN answers: a token bucket per source address, in memory only,
//! in a bounded table. Over-limit requests are dropped without an answer, so the service
//! cannot be used to reflect traffic at an address someone spoofs.
//!
//! The table holds at most [`MAX_TRACKED`] addresses. When a shard is full, buckets that have
//! refilled (and so are the same as a fresh one) are forgotten; if none has, a new address is
//! refused until one does. Spoofed sources therefore cannot grow memory, and cannot reset the
//! bucket of the address they target either.
//!
//! Limits count per [`client_network`]: an IPv6 host holds a whole /64, so counting its
//! addresses one by one would limit nothing.

pub use crate::netlimits::{ConnectionCounter, CountedConnection, client_network};

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source addresses tracked at once.
pub const MAX_TRACKED: usize = 65_536;
const SHARDS: usize = 16;
const PER_SHARD: usize = MAX_TRACKED / SHARDS;
/// Shortest time between two sweeps of a full shard, so that a flood of new sources does not
/// make every packet scan the shard.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// Answers per second in all, whatever the sources: a flood spoofed from many addresses (each
/// within its own limit) is still a bounded amount of traffic sent out.
pub const TOTAL_PER_SECOND: u32 = 20_000;

/// Token buckets per source address, and one for all sources.
pub struct SourceLimiter {
    per_second: f64,
    burst: f64,
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<Shard>>,
    total_per_second: f64,
    total: Mutex<Bucket>,
}

impl SourceLimiter {
    /// `per_second` answers per source on average, with bursts of one second's worth (at
    /// least 1).
    pub fn new(per_second: u32) -> Self {
        Self::with_total(per_second, TOTAL_PER_SECOND)
    }

    /// [`SourceLimiter::new`] with `total_per_second` answers in all.
    pub fn with_total(per_second: u32, total_per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        let total_per_second = f64::from(total_per_second.max(1));
        Self {
            total_per_second,
            total: Mutex::new(Bucket {
                tokens: total_per_second,
                updated: Instant::now(),
            }),
            per_second,
            burst: per_second,
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        last_sweep: None,
                    })
                })
                .collect(),
        }
    }

    /// The bucket size: answers a quiet source may get at once.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    /// Takes one token for `source`, and one of all sources'; false when either is over its
    /// rate (or the table is full of active sources and `source` is new).
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        self.allow_source(source, now) && self.allow_total(now)
    }

    fn allow_total(&self, now: Instant) -> bool {
        let mut total = self.total.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(total.updated).as_secs_f64();
        total.tokens = (total.tokens + elapsed * self.total_per_second).min(self.total_per_second);
        total.updated = total.updated.max(now);
        if total.tokens >= 1.0 {
            total.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn allow_source(&self, source: IpAddr, now: Instant) -> bool {
        let source = client_network(source);
        let index = (self.hasher.hash_one(source) as usize) % SHARDS;
        let mut shard = self.shards[index].lock().unwrap_or_else(|p| p.into_inner());
        let (rate, burst) = (self.per_second, self.burst);
        let refill = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            (b.tokens + elapsed * rate).min(burst)
        };
        if let Some(bucket) = shard.buckets.get_mut(&source) {
            bucket.tokens = refill(bucket);
            bucket.updated = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if shard.buckets.len() >= PER_SHARD {
            let due = shard
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if !due {
                return false;
            }
            shard.last_sweep = Some(now);
            shard.buckets.retain(|_, b| refill(b) < burst);
            if shard.buckets.len() >= PER_SHARD {
                return false;
            }
        }
        shard.buckets.insert(
            source,
            Bucket {
                tokens: burst - 1.0,
                updated: now,
            },
        );
        true
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_an_ipv6_host_by_its_64_and_connections_are_uncounted_when_dropped() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_network(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_network(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        let counter = ConnectionCounter::new(2);
        let a = counter.admit(ip("2001:db8:1:2::1")).expect("first");
        let _b = counter.admit(ip("2001:db8:1:2::ffff")).expect("second");
        assert!(
            counter.admit(ip("2001:db8:1:2::9")).is_none(),
            "the same /64"
        );
        assert!(
            counter.admit(ip("2001:db8:1:3::1")).is_some(),
            "another /64"
        );
        drop(a);
        assert!(counter.admit(ip("2001:db8:1:2::9")).is_some());
    }

    #[test]
    fn answers_in_all_are_bounded_whatever_the_sources() {
        let limiter = SourceLimiter::with_total(5, 100);
        let t0 = Instant::now();
        let allowed = (0..1000u32)
            .filter(|n| limiter.allow(IpAddr::from(n.to_be_bytes()), t0))
            .count();
        assert_eq!(allowed, 100);
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (1000..2000u32)
            .filter(|n| limiter.allow(IpAddr::from(n.to_be_bytes()), t1))
            .count();
        assert_eq!(allowed, 50, "refilled at its rate");
    }

    #[test]
    fn bursts_then_refills() {
        let limiter = SourceLimiter::new(10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| limiter.allow(a, t0)).count(), 10);
        assert!(limiter.allow(b, t0), "sources have their own buckets");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| limiter.allow(a, t1)).count(), 5);
    }

    #[test]
    fn spoofed_sources_cannot_grow_the_table_or_reset_a_victim() {
        let limiter = SourceLimiter::new(5);
        let victim: IpAddr = "198.51.100.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| limiter.allow(victim, t0)).count(), 5);
        for i in 0..(MAX_TRACKED as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1));
            limiter.allow(ip, t0);
        }
        assert!(limiter.tracked() <= MAX_TRACKED);
        assert!(
            !limiter.allow(victim, t0),
            "the victim's bucket is still empty"
        );
        // Once the sources go quiet their buckets refill and are forgotten.
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.allow("203.0.113.9".parse().unwrap(), later));
    }
}
