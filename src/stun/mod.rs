//! `jasper stun`: STUN Binding over UDP (RFC 8489) and over TLS (RFC 7064 `stuns:`), and the
//! rendezvous of transparent mode on the TLS listener (src/proto/rendezvous.rs).
//!
//! `binding` decides what to answer to one message, `limits` rate-limits UDP answers per
//! source, `udp` and `conn` are the thin loops around them, `tls` provides the certificate and
//! `rendezvous` is the hub where offers wait for their peers.

pub mod binding;
pub mod conn;
pub mod limits;
pub mod rendezvous;
pub mod tls;
pub mod udp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::StunConfig;
use conn::Shared;
use limits::SourceLimiter;
use rendezvous::{Hub, HubLimits};
use tls::CertificateError;

/// How long a graceful shutdown waits for TLS connections to close.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Most threads receiving UDP.
const MAX_UDP_THREADS: usize = 4;

/// Why the STUN service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StunError {
    /// A listen address could not be bound.
    #[error(
        "cannot listen on {addr} ({what}): {source}; is another STUN server running there? choose another address with --{what}-listen"
    )]
    Bind {
        /// `udp` or `tls`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate could not be loaded or made.
    #[error("{0}; check [stun] tls_certificate and tls_key, or that --data-dir is writable")]
    Certificate(#[from] CertificateError),
    /// A thread could not be started.
    #[error("cannot start the UDP threads: {0}")]
    Threads(std::io::Error),
}

/// What the service listens on, once it does.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The UDP address.
    pub udp: SocketAddr,
    /// The TLS address.
    pub tls: SocketAddr,
    /// SHA-256 of the TLS certificate, 64 lowercase hex digits (what clients pin).
    pub fingerprint: String,
}

/// Binds both listeners and serves until `shutdown` resolves; then closes connections
/// (waiting up to [`DRAIN_TIMEOUT`]) and stops the UDP threads. `on_ready` is called once
/// both listeners are bound.
pub async fn run(
    config: StunConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Listening),
) -> Result<(), StunError> {
    // The ports first: a start that fails on a taken port leaves nothing behind (no
    // certificate generated into the data directory).
    let bind_error = |what, addr| move |source| StunError::Bind { what, addr, source };
    let udp_socket = std::net::UdpSocket::bind(config.udp_listen)
        .map_err(bind_error("udp", config.udp_listen))?;
    let udp_addr = udp_socket
        .local_addr()
        .map_err(bind_error("udp", config.udp_listen))?;
    let listener = TcpListener::bind(config.tls_listen)
        .await
        .map_err(bind_error("tls", config.tls_listen))?;
    let tls_addr = listener
        .local_addr()
        .map_err(bind_error("tls", config.tls_listen))?;
    let certificate = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || tls::load_or_generate(&config))
            .await
            .expect("loading the certificate does not panic")?
    };
    if certificate.generated {
        tracing::info!(dir = %config.data_dir.display(), "generated a self-signed TLS certificate");
    }
    let acceptor = certificate.acceptor()?;

    let limiter = Arc::new(SourceLimiter::new(config.rate_limit_per_second));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_UDP_THREADS);
    let udp = udp::UdpService::start(udp_socket, limiter, threads).map_err(StunError::Threads)?;

    let limits = HubLimits {
        offer_ttl: config.offer_ttl,
        max_offers_per_key: config.max_offers_per_key,
        max_pending_offers: config.max_pending_offers,
    };
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub::new(limits)),
        certificate: certificate.leaf().to_vec(),
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
        next_id: AtomicU64::new(1),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let expiry = tokio::spawn(expire_offers(
        shared.clone(),
        config.offer_ttl,
        stop_rx.clone(),
    ));

    let listening = Listening {
        udp: udp_addr,
        tls: tls_addr,
        fingerprint: certificate.fingerprint_hex(),
    };
    tracing::info!(udp = %udp_addr, tls = %tls_addr, "stun listening");
    tracing::info!(
        "certificate fingerprint (pin with [client] rendezvous_fingerprint): {}",
        listening.fingerprint
    );
    on_ready(&listening);

    let slots = Arc::new(Semaphore::new(config.max_connections));
    let per_client = limits::ConnectionCounter::new(config.max_connections_per_ip);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a TLS connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS connections; closing a new one");
            continue;
        };
        let Some(counted) = per_client.admit(peer.ip()) else {
            tracing::debug!(%peer, "too many TLS connections from this address; closing a new one");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, shared, stop) = (acceptor.clone(), shared.clone(), stop_rx.clone());
        let accepted = std::time::Instant::now();
        connections.spawn(async move {
            let _permit = (permit, counted);
            let handshake = tokio::time::timeout(shared.handshake_timeout, acceptor.accept(tcp));
            match handshake.await {
                Ok(Ok(stream)) => conn::serve(stream, peer, accepted, shared, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }

    tracing::info!("stun shutting down");
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = expiry.await;
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        connections.abort_all();
    }
    let stats = udp.stats.clone();
    tokio::task::spawn_blocking(move || udp.stop())
        .await
        .expect("stopping the UDP threads does not panic");
    tracing::info!(
        answered = stats.answered.load(Ordering::Relaxed),
        dropped = stats.dropped.load(Ordering::Relaxed),
        rate_limited = stats.limited.load(Ordering::Relaxed),
        "stun stopped"
    );
    Ok(())
}

/// Drops offers whose time is up, checking a few times per TTL.
async fn expire_offers(shared: Arc<Shared>, ttl: Duration, mut stop: watch::Receiver<bool>) {
    let every = (ttl / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let expired = shared
            .hub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expire(std::time::Instant::now());
        if expired > 0 {
            tracing::debug!(expired, "offers expired");
        }
    }
}
