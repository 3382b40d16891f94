//! `jasper relay`: the REST relay of JASPER.md — API, storage, group commit and expiry.

pub mod api;
pub mod clock;
pub mod limits;
pub mod mesh;
pub mod store;
pub mod sweep;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::Filter as _;

use crate::config::{RelayConfig, StoreEngine};
use crate::http::{ServeLimits, serve};
use store::redb::StoreOptions;
use store::{PutLimits, RedisStore, ReopeningStore, Store, StoreError};
use writer::Writer;

/// Longest wait for a request's headers (and for the next request on an idle connection),
/// however long `request_timeout` allows for the rest: a client sends its headers at once, and
/// a connection trickling them in holds one of the limited slots.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the relay could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database could not be opened.
    #[error("{error}; {advice}", error = .0, advice = store_advice(.0))]
    Store(#[from] StoreError),
    /// The Redis server could not be used.
    #[error(
        "{0}; check [relay] redis_url and the server, or use the embedded store (store = \"redb\")"
    )]
    Redis(StoreError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another relay running there? choose another address with --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What to do when the database does not open.
fn store_advice(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse { .. } => "stop the other one, or give this one another --data-dir",
        StoreError::Corrupt(_) => {
            "the data directory holds a damaged database or files written by something else: \
             move it aside to start empty (a relay with peers gets their packets again), restore a \
             backup, or choose another with --data-dir"
        }
        _ => {
            "check that the data directory exists and is writable, or choose another with \
             --data-dir"
        }
    }
}

/// Opens the configured storage engine.
async fn open_store(config: &RelayConfig) -> Result<Arc<dyn Store>, RelayError> {
    match config.store {
        StoreEngine::Redb => {
            let dir = config.data_dir.clone();
            let options = StoreOptions {
                checkpoint_interval: config.checkpoint_interval,
                ..StoreOptions::default()
            };
            let opened = tokio::task::spawn_blocking(move || ReopeningStore::open(&dir, options))
                .await
                .expect("opening the store does not panic")?;
            match opened.recovered_on_open() {
                0 => {}
                packets => tracing::info!(
                    packets,
                    "re-indexed packets from the log written after the last index checkpoint (the relay did not stop cleanly)"
                ),
            }
            Ok(Arc::new(opened))
        }
        StoreEngine::Redis => {
            let options = config.redis_options();
            let opened = tokio::task::spawn_blocking(move || RedisStore::open(&options))
                .await
                .expect("opening the store does not panic")
                .map_err(RelayError::Redis)?;
            tracing::info!(server = opened.target(), "storing packets in Redis");
            Ok(Arc::new(opened))
        }
    }
}

/// Makes a write past a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) fail like a
/// write to a full disk, so that the store answers 503 and goes on once there is room, instead
/// of the process being killed: by default SIGXFSZ ends it. A handler, once installed, stays
/// for the life of the process; the kernel then fails the write with EFBIG.
fn survive_file_size_limits() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Err(e) = signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        tracing::warn!(error = %e, "cannot handle SIGXFSZ; a file size limit would end the relay");
    }
}

/// Opens the store, binds the listener and serves until `shutdown` resolves; then finishes
/// in-flight requests, stops background work and closes the database.
/// `on_ready` is called with the bound address once the relay accepts connections.
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), RelayError> {
    survive_file_size_limits();
    let store = open_store(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| RelayError::Bind {
        addr: config.listen,
        source,
    })?;

    let limits = PutLimits {
        max_inbox_packets: config.max_inbox_packets,
        max_stored_bytes: config.max_stored_bytes,
    };
    let (writer, writer_thread) = Writer::spawn(store.clone(), limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(sweep::run(
        store.clone(),
        config.sweep_interval,
        config.tombstone_horizon,
        stop_rx,
    ));
    let serve_limits = ServeLimits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        header_timeout: config.request_timeout.min(HEADER_TIMEOUT),
        write_timeout: config.request_timeout,
        drain_timeout: DRAIN_TIMEOUT,
    };
    let closing = store.clone();
    let (state, mesh_inbox) = api::RelayState::new(store, writer, config, local);
    let state = Arc::new(state);
    let routes = api::routes(state.clone()).boxed();
    let mesh = tokio::spawn(mesh::run(state.clone(), mesh_inbox, stop_tx.subscribe()));
    drop(state);

    tracing::info!(address = %local, "relay listening");
    on_ready(local);
    serve(listener, routes, serve_limits, shutdown).await;

    tracing::info!("relay shutting down");
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    // Peer calls can take up to their timeout; the mesh holds nothing acknowledged.
    if tokio::time::timeout(Duration::from_secs(2), mesh)
        .await
        .is_err()
    {
        tracing::debug!("mesh sync still running at shutdown; leaving it");
    }
    // The writer stores what is queued and ends, even while a call to a slow peer still
    // holds a handle; every acknowledged packet was in the flushed log before its answer was
    // sent, and closing the store commits the index of the last batches.
    let joined = tokio::task::spawn_blocking(move || writer_thread.stop());
    if tokio::time::timeout(DRAIN_TIMEOUT, joined).await.is_err() {
        tracing::warn!("the writer did not stop in time; exiting anyway");
    }
    // A call to a slow peer can still hold the store (the mesh is left to finish on its
    // own), and then it is not closed: its index is made durable here all the same, so the
    // next start has nothing to re-read.
    let checkpoint = tokio::task::spawn_blocking(move || closing.checkpoint());
    match tokio::time::timeout(DRAIN_TIMEOUT, checkpoint).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "the last index checkpoint failed; the next start re-reads the log")
        }
        _ => tracing::warn!("the last index checkpoint did not finish in time"),
    }
    tracing::info!("relay stopped");
    Ok(())
}
