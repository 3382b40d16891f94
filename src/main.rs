//! The `jasper` binary: parses the command line and hands over to the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// The log filter without `RUST_LOG`: our own information, and only the errors of the WebRTC
/// stack, whose routine warnings (ICE checks racing the answer, say) would fill a chat.
const DEFAULT_LOG: &str = "info,webrtc=error,rtc=error,rtc_ice=error,rtc_dtls=error,\
    rtc_sctp=error,rtc_datachannel=error,rtc_srtp=error,rtc_mdns=error,rtc_stun=error";

/// A command printing to a pipe stops quietly once the reader is gone (`jasper history bob |
/// head -1`), as Unix tools do, instead of panicking on the failed write. The services and
/// `call` keep the signal ignored: they write to sockets and pipes (the audio player's) whose
/// failures they handle.
fn stop_quietly_on_closed_pipes(command: &jasper::cli::Command) {
    use jasper::cli::Command as C;
    if matches!(command, C::Relay(_) | C::Stun(_) | C::Serve | C::Call(_)) {
        return;
    }
    // SAFETY: resets one signal's disposition to the default, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = jasper::cli::Cli::parse();
    stop_quietly_on_closed_pipes(&cli.command);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match jasper::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jasper: error: {}", jasper::cli::error_report(&e));
            ExitCode::from(jasper::cli::exit_code(&e))
        }
    }
}
