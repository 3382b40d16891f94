//! Limits per client network, shared by the relay's and the STUN service's listeners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What limits count by: an IPv4 address (also one written as IPv4-mapped IPv6), or the /64
/// of an IPv6 address.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Counts connections per [`client_network`] and refuses one past the limit.
pub struct ConnectionCounter {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it uncounts it.
pub struct CountedConnection {
    counter: Arc<ConnectionCounter>,
    network: IpAddr,
}

impl ConnectionCounter {
    /// At most `max` connections per client network.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`; `None` when its network has `max` already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<CountedConnection> {
        let network = client_network(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(network).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(CountedConnection {
            counter: self.clone(),
            network,
        })
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.network);
            }
        }
    }
}
