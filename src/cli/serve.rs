//! `jasper serve`: every service enabled in the configuration, in one process, with one log
//! stream, one readiness signal (systemd `sd_notify` when `NOTIFY_SOCKET` is set) and one
//! graceful shutdown. Adding a service is one entry in `services`.

use std::future::Future;
use std::pin::Pin;

use anyhow::Context as _;
use tokio::sync::watch;

use super::relay::shutdown_signal;
use crate::config::Config;

type Service = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Tells systemd the services are up, when it asked to be told.
fn notify_ready() {
    #[cfg(unix)]
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let socket = std::os::unix::net::UnixDatagram::unbound();
        match socket.and_then(|s| s.send_to(b"READY=1", &path).map(|_| ())) {
            Ok(()) => tracing::debug!("readiness sent to systemd"),
            Err(e) => tracing::warn!(error = %e, "cannot tell systemd we are ready"),
        }
    }
}

/// Runs every enabled service until SIGINT or SIGTERM.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<&'static str>(8);
        let stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut services: Vec<(&'static str, Service)> = Vec::new();
        if config.relay.enabled {
            let (relay, ready, stop_rx) = (config.relay.clone(), ready_tx.clone(), stop_rx.clone());
            services.push((
                "relay",
                Box::pin(async move {
                    crate::relay::run(relay, stop(stop_rx.clone()), move |_| {
                        let _ = ready.try_send("relay");
                    })
                    .await
                    .context("relay")
                }),
            ));
        }
        if config.stun.enabled {
            let (stun, ready, stop_rx) = (config.stun.clone(), ready_tx.clone(), stop_rx.clone());
            services.push((
                "stun",
                Box::pin(async move {
                    crate::stun::run(stun, stop(stop_rx.clone()), move |_| {
                        let _ = ready.try_send("stun");
                    })
                    .await
                    .context("stun")
                }),
            ));
        }
        if services.is_empty() {
            usage!("nothing to serve: every service is disabled in the configuration ([relay] enabled, [stun] enabled)");
        }
        drop(ready_tx);
        let expected = services.len();
        let names: Vec<&str> = services.iter().map(|(n, _)| *n).collect();
        let handles: Vec<_> = services
            .into_iter()
            .map(|(name, service)| (name, tokio::spawn(service)))
            .collect();
        // Ready when every service listens.
        let watcher = tokio::spawn(async move {
            let mut up = 0;
            while up < expected && ready_rx.recv().await.is_some() {
                up += 1;
            }
            if up == expected {
                tracing::info!(services = ?names, "all services ready");
                notify_ready();
            }
        });
        // Stop everything on a signal, or when any service ends.
        let mut failure = None;
        let mut handles = handles;
        tokio::select! {
            () = shutdown_signal() => {}
            (result, index, _) = futures_util::future::select_all(handles.iter_mut().map(|(_, h)| h)) => {
                let name = handles[index].0;
                match result {
                    Ok(Ok(())) => tracing::warn!(service = name, "a service stopped; stopping the others"),
                    Ok(Err(e)) => failure = Some(e),
                    Err(e) => failure = Some(anyhow::anyhow!("{name} panicked: {e}")),
                }
                handles.remove(index);
            }
        }
        let _ = stop_tx.send(true);
        watcher.abort();
        for (name, handle) in handles {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(e) => failure = failure.or(Some(anyhow::anyhow!("{name} panicked: {e}"))),
            }
        }
        failure.map_or(Ok(()), Err)
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
