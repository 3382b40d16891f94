//! `jasper relay`: run a relay, or inspect a running one.

use anyhow::Context as _;

use super::{PeersArgs, RelayArgs};
use crate::config::Config;

/// Runs a relay until SIGINT or SIGTERM.
pub fn run_relay(
    mut config: Config,
    args: RelayArgs,
    source: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.relay.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.relay.data_dir = dir;
    }
    if let Some(path) = &source {
        tracing::info!(config = %path.display(), "configuration loaded");
    }
    if config.relay.store == crate::config::StoreEngine::Redb {
        tracing::info!(data_dir = %config.relay.data_dir.display(), "opening the relay database");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(crate::relay::run(config.relay, shutdown_signal(), |_| {}));
    // A sync with a slow peer may still be running on the blocking pool; it holds no
    // acknowledged data, so do not wait for it past a short grace.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(())
}

/// `jasper relay peers`: asks the relay's loopback-only `/peers` and prints the answer.
pub fn show_peers(config: &Config, args: &PeersArgs) -> anyhow::Result<()> {
    let url = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let mut addr = config.relay.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("{url}/peers"))
        .call()
        .with_context(|| format!("cannot reach the relay at {url}; is it running? (--url)"))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .body_mut()
        .read_json()
        .with_context(|| format!("{url}/peers did not answer JSON"))?;
    if status != 200 {
        anyhow::bail!(
            "{url}/peers answered {status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let peers = body["peers"].as_array().cloned().unwrap_or_default();
    if args.json {
        for p in &peers {
            println!("{p}");
        }
        return Ok(());
    }
    if peers.is_empty() {
        println!("no peers known");
        return Ok(());
    }
    println!(
        "{:<40} {:<12} {:>5} {:>9}  LAST PROBLEM",
        "PEER", "STATE", "SCORE", "PENALTIES"
    );
    for p in &peers {
        println!(
            "{:<40} {:<12} {:>5.0} {:>9}  {}",
            p["peer"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            p["score"].as_f64().unwrap_or(0.0),
            p["penalties"].as_u64().unwrap_or(0),
            p["last_problem"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
