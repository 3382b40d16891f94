//! The `jasper` binary: parses the command line and hands over to the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// The log filter without `RUST_LOG`: our own information, and only the errors of the WebRTC
/// stack, whose routine warnings (ICE checks racing the answer, say) would fill a chat.
const DEFAULT_LOG: &str = "info,webrtc=error,rtc=error,rtc_ice=error,rtc_dtls=error,\
    rtc_sctp=error,rtc_datachannel=error,rtc_srtp=error,rtc_mdns=error,rtc_stun=error";

/// Exit status when standard output or error went away (`jasper history bob | head -1`):
/// what a shell reports for a process stopped by SIGPIPE.
const EXIT_CLOSED_OUTPUT: i32 = 128 + 13;

/// A command printing to a pipe whose reader is gone stops quietly, as Unix tools do, instead
/// of panicking on the failed write. SIGPIPE itself stays ignored (Rust's default): sockets
/// written with `writev`, as TLS is, would raise it too, and end a chat or a call without a
/// word.
fn stop_quietly_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's message for a failed `println!`/`eprintln!`: "failed printing to stdout:
        // Broken pipe (os error 32)".
        let closed = text.starts_with("failed printing to std")
            && text.ends_with(&format!("(os error {})", libc::EPIPE));
        if closed {
            std::process::exit(EXIT_CLOSED_OUTPUT);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    let cli = jasper::cli::Cli::parse();
    stop_quietly_on_closed_output();
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
