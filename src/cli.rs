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
pub struct RelayArgs {
    /// Address and port to listen on (config: relay.listen; default 0.0.0.0:8080)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for the relay's database (config: relay.data_dir)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let (mut config, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
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
