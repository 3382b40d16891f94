//! Limits per client network, shared by the relay's and the STUN service's listeners, and a
//! deadline on writes to a client that stopped reading.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// The /48 of an IPv6 address (what one customer is commonly given: 65,536 /64s); `None`
/// for IPv4.
pub fn client_site(ip: IpAddr) -> Option<IpAddr> {
    match client_network(ip) {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => Some(IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 80) - 1),
        ))),
    }
}

/// Connections one IPv6 site ([`client_site`]) may hold, in per-network limits: one customer
/// has thousands of /64s, and must not take every connection by using a few of them.
pub const SITE_SHARE: usize = 8;

/// Counts connections per [`client_network`] (and per IPv6 [`client_site`], up to
/// [`SITE_SHARE`] times as many) and refuses one past the limit.
pub struct ConnectionCounter {
    max: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    networks: HashMap<IpAddr, usize>,
    sites: HashMap<IpAddr, usize>,
}

/// One counted connection (or, from [`ConnectionCounter::admit_weighted`], amount); dropping
/// it uncounts it.
pub struct CountedConnection {
    counter: Arc<ConnectionCounter>,
    network: IpAddr,
    /// Counted for its site too (connections from IPv6 addresses).
    site: Option<IpAddr>,
    weight: usize,
}

/// Takes `weight` off `key`'s count, forgetting it at zero.
fn uncount(map: &mut HashMap<IpAddr, usize>, key: &IpAddr, weight: usize) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(weight);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl ConnectionCounter {
    /// At most `max` connections per client network.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts a connection from `ip`; `None` when its network has `max` already, or its IPv6
    /// site [`SITE_SHARE`] times that.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<CountedConnection> {
        let network = client_network(ip);
        let site = client_site(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.networks.get(&network).copied().unwrap_or(0) >= self.max {
            return None;
        }
        if let Some(site) = site
            && counts.sites.get(&site).copied().unwrap_or(0) >= self.max.saturating_mul(SITE_SHARE)
        {
            return None;
        }
        *counts.networks.entry(network).or_default() += 1;
        if let Some(site) = site {
            *counts.sites.entry(site).or_default() += 1;
        }
        Some(CountedConnection {
            counter: self.clone(),
            network,
            site,
            weight: 1,
        })
    }

    /// Counts `weight` more for `ip`'s network; `None` when that would take it past `max`,
    /// unless the network holds nothing yet (one amount larger than `max` goes alone).
    pub fn admit_weighted(
        self: &Arc<Self>,
        ip: IpAddr,
        weight: usize,
    ) -> Option<CountedConnection> {
        let network = client_network(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.networks.entry(network).or_default();
        if *n > 0 && *n + weight > self.max {
            return None;
        }
        *n += weight;
        Some(CountedConnection {
            counter: self.clone(),
            network,
            site: None,
            weight,
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
        uncount(&mut counts.networks, &self.network, self.weight);
        if let Some(site) = &self.site {
            uncount(&mut counts.sites, site, self.weight);
        }
    }
}

/// Bytes a client must take within the timeout of a stalled write for the stall to end.
pub const MIN_PROGRESS_BYTES: usize = 16 << 10;

/// A connection whose writes fail once the client stops taking them: when a write has to
/// wait, the client then has `timeout` to take [`MIN_PROGRESS_BYTES`] (or all that was
/// queued). A client that stops reading its answer, or reads a byte now and then, would
/// otherwise hold the connection, and the answer's memory, for as long as it likes.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Running from the first write that had to wait; dropped once the client takes enough.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes written since the stall began.
    taken: usize,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
            taken: 0,
        }
    }

    /// Ends the stall, if any.
    fn unstall(&mut self) {
        self.stalled = None;
        self.taken = 0;
    }

    /// What a write that returned `poll` means: enough progress ends the stall, waiting goes
    /// on until the deadline and then fails.
    fn check_write(
        &mut self,
        poll: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match &poll {
            Poll::Ready(Ok(n)) => {
                if self.stalled.is_some() {
                    self.taken += n;
                    if self.taken >= MIN_PROGRESS_BYTES {
                        self.unstall();
                    }
                }
                poll
            }
            Poll::Ready(Err(_)) => {
                self.unstall();
                poll
            }
            Poll::Pending => self.wait(cx),
        }
    }

    /// What a flush or shutdown that returned `poll` means: done, everything queued went
    /// out, which ends the stall.
    fn check_done(
        &mut self,
        poll: Poll<io::Result<()>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if poll.is_ready() {
            self.unstall();
            return poll;
        }
        self.wait(cx)
    }

    /// A write waits for the client: starts the deadline, or fails once it has passed.
    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took less than {MIN_PROGRESS_BYTES} bytes in {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check_write(poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check_write(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check_done(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check_done(poll, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `len` bytes through a [`WriteDeadline`] of 1 s to a reader taking `chunk` bytes
    /// every 100 ms; the write's result.
    async fn write_to_reader(len: usize, chunk: usize) -> io::Result<()> {
        let (client, server) = tokio::io::duplex(8 << 10);
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut buf = vec![0u8; chunk];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        let mut server = WriteDeadline::new(server, Duration::from_secs(1));
        let result = async {
            server.write_all(&vec![7u8; len]).await?;
            server.flush().await
        }
        .await;
        drop(server);
        reader.await.unwrap();
        result
    }

    #[test]
    fn one_ipv6_site_holds_a_bounded_share_whatever_its_networks() {
        let counter = ConnectionCounter::new(2);
        let mut held = Vec::new();
        // Eight /64s of one /48, two connections each: the site's share.
        for n in 0..SITE_SHARE {
            for host in 1..=2 {
                let ip: IpAddr = format!("2001:db8:1:{n:x}::{host}").parse().unwrap();
                held.push(counter.admit(ip).expect("within the site's share"));
            }
        }
        assert!(
            counter.admit("2001:db8:1:ff::1".parse().unwrap()).is_none(),
            "a ninth /64 of the same /48"
        );
        assert!(counter.admit("2001:db8:2::1".parse().unwrap()).is_some());
        // IPv4 addresses count one by one.
        for n in 0..20 {
            assert!(
                counter
                    .admit(format!("192.0.2.{n}").parse().unwrap())
                    .is_some()
            );
        }
        held.pop();
        assert!(counter.admit("2001:db8:1:ff::1".parse().unwrap()).is_some());
    }

    #[test]
    fn amounts_per_network_are_bounded_but_one_alone_may_be_larger() {
        let counter = ConnectionCounter::new(10);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let big = counter.admit_weighted(ip, 20).expect("alone, any size");
        assert!(counter.admit_weighted(neighbour, 1).is_none(), "same /64");
        assert!(
            counter
                .admit_weighted("2001:db9::1".parse().unwrap(), 1)
                .is_some()
        );
        drop(big);
        let a = counter.admit_weighted(ip, 5).unwrap();
        let b = counter.admit_weighted(neighbour, 5).unwrap();
        assert!(counter.admit_weighted(ip, 1).is_none());
        drop((a, b));
        assert!(counter.admit_weighted(ip, 10).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_too_little_is_cut_off_and_one_that_reads_is_not() {
        // 100 bytes a second: less than MIN_PROGRESS_BYTES within the timeout.
        let err = write_to_reader(64 << 10, 10).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // 80 KiB a second: 256 KiB take longer than the timeout, but each stall ends in time.
        write_to_reader(256 << 10, 8 << 10).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_ends_when_everything_queued_went_out_and_idle_time_does_not_count() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = WriteDeadline::new(server, Duration::from_secs(1));
        // A short answer that waits for the reader, then goes out whole.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256];
            let mut got = 0;
            while got < 200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                got += client.read(&mut buf).await.unwrap();
            }
            client
        });
        server.write_all(&[1u8; 200]).await.unwrap();
        server.flush().await.unwrap();
        let mut client = reader.await.unwrap();
        // Idle for a long time, then another answer that has to wait a moment.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut buf = vec![0u8; 256];
            let mut got = 0;
            while got < 200 {
                got += client.read(&mut buf).await.unwrap();
            }
        });
        server.write_all(&[2u8; 200]).await.unwrap();
        server.flush().await.unwrap();
        reader.await.unwrap();
    }
}
