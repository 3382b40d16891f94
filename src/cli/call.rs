//! `jasper call`: a voice call with one contact over a direct WebRTC link (transparent mode).
//! Both people run it, each naming the other; audio comes from the microphone (or a file, or
//! standard input) and goes to the speaker (or a file, or standard output) until either hangs
//! up. Status goes to stderr; `--json` prints a `connected` and an `ended` object on stdout.

use anyhow::Context as _;
use serde_json::json;

use super::CallArgs;
use super::chat::meet;
use super::messaging::Session;
use crate::client::audio::{self, AudioSink};
use crate::client::call::{self, CallAudio, CallReport, Progress};
use crate::client::contacts::{Contact, Contacts};
use crate::client::now_ms;
use crate::client::transparent::{Purpose, TransparentError};
use crate::config::{Config, ConfigError};

/// Runs `jasper call`.
pub fn run(config: &Config, args: &CallArgs) -> anyhow::Result<()> {
    if args.common.json && args.output == AudioSink::Stdout {
        return Err(ConfigError::Invalid(
            "--json and --output - would both write to standard output; pick one".into(),
        )
        .into());
    }
    if args.input == audio::AudioSource::Stdin && args.common.passphrase_stdin {
        return Err(ConfigError::Invalid(
            "--passphrase-stdin and --input - would both read standard input; pick one".into(),
        )
        .into());
    }
    let session = Session::open(config, &args.common)?;
    let contact = Contacts::new(&session.db, &session.data_dir).get(&args.name)?;
    // Audio first: a missing microphone or a wrong file is reported before any waiting.
    let input = audio::open_source(&args.input)?;
    let output = audio::open_sink(&args.output)?;
    if !args.no_ring {
        ring(&session, &contact, args.wait, args.common.json);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let link = meet(config, &session, &contact, args.wait, Purpose::Call)
            .await
            .map_err(|e| match e.downcast_ref::<TransparentError>() {
                Some(TransparentError::PeerAbsent(_)) => {
                    e.context(format!("{} did not take the call", contact.name))
                }
                _ => e,
            })?;
        if args.common.json {
            println!("{}", json!({"event": "connected", "contact": contact.name}));
        }
        eprintln!(
            "Connected to {}. In the call: Ctrl-C hangs up.",
            contact.name
        );
        // A status line that updates in place on a terminal.
        let bar = super::spinner("");
        let name = contact.name.clone();
        let report = call::run(
            link,
            CallAudio { input, output },
            args.duration,
            super::shutdown_signal(),
            |p: Progress| {
                bar.set_message(format!(
                    "{} in a call with {name}: sent {} frames, received {}",
                    clock(p.elapsed.as_secs()),
                    p.sent_frames,
                    p.received_frames
                ));
            },
        )
        .await;
        bar.finish_and_clear();
        anyhow::Ok(report)
    })?;
    print_report(&contact.name, &report, args.common.json);
    Ok(())
}

/// Tells `contact` through the relays that we are calling, until `wait` from now. A ring
/// that cannot be sent (no relay answers, say) is reported and the call waits anyway: the
/// contact may be calling us too.
fn ring(session: &Session, contact: &Contact, wait: std::time::Duration, json: bool) {
    let now = now_ms();
    let until = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    match session.with(|m| Ok(m.ring(contact, until, now)?)) {
        Ok(_) => {
            if json {
                println!("{}", json!({"event": "ringing", "contact": contact.name}));
            }
            eprintln!("Ringing {} through the relays…", contact.name);
        }
        Err(e) => eprintln!(
            "warning: could not ring {}: {}; waiting for them anyway",
            contact.name,
            super::error_report(&e)
        ),
    }
}

/// `m:ss`.
fn clock(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

fn print_report(name: &str, report: &CallReport, json: bool) {
    if json {
        let mut object = serde_json::to_value(report).expect("a report serializes");
        object["event"] = "ended".into();
        object["contact"] = name.into();
        println!("{object}");
    }
    eprintln!(
        "Call with {name} ended after {} ({}): sent {} frames, received {}, {} lost.",
        clock(report.duration_ms / 1000),
        report.ended.describe(),
        report.sent_frames,
        report.received_frames,
        report.lost_frames
    );
}
