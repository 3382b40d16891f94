//! The command line: one clap definition that drives parsing, `--help`, and (later) the man
//! pages and completions; and the glue that runs each subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// Jasper: anonymous messaging over a mesh of relays.
#[derive(Debug, Parser)]
#[command(
    name = "jasper",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)
    #[arg(long, global = true, env = "JASPER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a relay: the REST API of the Jasper mesh, backed by an embedded database
    Relay(RelayArgs),
}

/// Flags of `jasper relay`; they override the `[relay]` section of the configuration.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RelayArgs {
    /// Inspect a running relay instead of running one
    #[command(subcommand)]
    pub action: Option<RelayAction>,

    /// Address and port to listen on (config: relay.listen; default 0.0.0.0:8080)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for the relay's database (config: relay.data_dir)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What `jasper relay` can do besides running.
#[derive(Debug, Subcommand)]
pub enum RelayAction {
    /// Show the peers of a running relay: state, score, penalties (asks the relay on loopback)
    Peers(PeersArgs),
}

/// Flags of `jasper relay peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// The relay to ask (default: the configured listen address, on loopback)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// One JSON object per peer and line
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let (mut config, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Relay(RelayArgs {
            action: Some(RelayAction::Peers(args)),
            ..
        }) => show_peers(&config, &args),
        Command::Relay(args) => {
            if let Some(listen) = args.listen {
                config.relay.listen = listen;
            }
            if let Some(dir) = args.data_dir {
                config.relay.data_dir = dir;
            }
            if let Some(path) = &source {
                tracing::info!(config = %path.display(), "configuration loaded");
            }
            tracing::info!(data_dir = %config.relay.data_dir.display(), "opening the relay database");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result =
                runtime.block_on(crate::relay::run(config.relay, shutdown_signal(), |_| {}));
            // A sync with a slow peer may still be running on the blocking pool; it holds no
            // acknowledged data, so do not wait for it past a short grace.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            result?;
            Ok(())
        }
    }
}

/// `jasper relay peers`: asks the relay's loopback-only `/peers` and prints the answer.
fn show_peers(config: &Config, args: &PeersArgs) -> anyhow::Result<()> {
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
