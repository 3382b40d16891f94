//! `jasper stun`: run the STUN service and the rendezvous.

use anyhow::Context as _;

use super::StunArgs;
use super::relay::shutdown_signal;
use crate::config::Config;

/// Runs the STUN service until SIGINT or SIGTERM; prints the certificate fingerprint that
/// clients pin.
pub fn run_stun(
    mut config: Config,
    args: StunArgs,
    source: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if let Some(addr) = args.udp_listen {
        config.stun.udp_listen = addr;
    }
    if let Some(addr) = args.tls_listen {
        config.stun.tls_listen = addr;
    }
    if let Some(dir) = args.data_dir {
        config.stun.data_dir = dir;
    }
    if let Some(path) = &source {
        tracing::info!(config = %path.display(), "configuration loaded");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(crate::stun::run(
        config.stun,
        shutdown_signal(),
        |listening| {
            println!(
                "certificate fingerprint (pin with [client] rendezvous_fingerprint): {}",
                listening.fingerprint
            );
        },
    ));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(())
}
