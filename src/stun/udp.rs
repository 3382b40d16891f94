//! STUN over UDP: a few threads receiving on one socket, each datagram answered (or not) by
//! [`binding::answer`] after the per-source rate limit. Blocking sockets on plain threads:
//! a Binding answer is a few hundred nanoseconds of work, less than an async wake-up costs.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::binding::{self, Verdict};
use super::limits::SourceLimiter;
use crate::proto::stun::{MAX_ANSWER_BYTES, MAX_MESSAGE_BYTES};

/// How often a receiving thread looks at the stop flag while no datagram arrives.
const POLL: Duration = Duration::from_millis(100);

/// What the UDP service did, counted over its life.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Answers sent (successes and errors).
    pub answered: AtomicU64,
    /// Datagrams dropped as junk (not a Binding request, or malformed).
    pub dropped: AtomicU64,
    /// Binding requests dropped by the rate limit.
    pub limited: AtomicU64,
}

/// The running UDP service.
pub struct UdpService {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<UdpStats>,
}

impl UdpService {
    /// Serves `socket` on `threads` threads (at least one).
    pub fn start(
        socket: UdpSocket,
        limiter: Arc<SourceLimiter>,
        threads: usize,
    ) -> std::io::Result<Self> {
        socket.set_read_timeout(Some(POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(UdpStats::default());
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let socket = socket.try_clone()?;
            let (stop, stats, limiter) = (stop.clone(), stats.clone(), limiter.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("stun-udp-{i}"))
                    .spawn(move || serve(&socket, &limiter, &stop, &stats))?,
            );
        }
        Ok(Self {
            stop,
            threads: handles,
            stats,
        })
    }

    /// Stops the threads and waits for them (each notices within `POLL`).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Counts kept per thread and added to the shared ones now and then.
#[derive(Default)]
struct Local {
    answered: u64,
    dropped: u64,
    limited: u64,
}

impl Local {
    fn flush(&mut self, stats: &UdpStats) {
        stats.answered.fetch_add(self.answered, Ordering::Relaxed);
        stats.dropped.fetch_add(self.dropped, Ordering::Relaxed);
        stats.limited.fetch_add(self.limited, Ordering::Relaxed);
        *self = Local::default();
    }
}

fn serve(socket: &UdpSocket, limiter: &SourceLimiter, stop: &AtomicBool, stats: &UdpStats) {
    let mut buf = [0u8; MAX_MESSAGE_BYTES + 1];
    let mut out = [0u8; MAX_ANSWER_BYTES];
    let mut local = Local::default();
    let mut since_flush = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let (n, source) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                local.flush(stats);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        since_flush += 1;
        if since_flush >= 1024 {
            since_flush = 0;
            local.flush(stats);
        }
        if n > MAX_MESSAGE_BYTES {
            local.dropped += 1;
            continue;
        }
        match binding::answer(&buf[..n], source, &mut out) {
            Verdict::Drop(why) => {
                local.dropped += 1;
                tracing::trace!(?why, %source, "datagram dropped");
            }
            Verdict::Reply(len) => {
                // The limit is checked only for messages we would answer, so junk cannot
                // use up a source's tokens and its lookups cost nothing.
                if !limiter.allow(source.ip(), Instant::now()) {
                    local.limited += 1;
                    continue;
                }
                match socket.send_to(&out[..len], source) {
                    Ok(_) => local.answered += 1,
                    Err(e) => tracing::debug!(error = %e, %source, "udp send failed"),
                }
            }
        }
    }
    local.flush(stats);
}
