//! `jasper chat`: an interactive conversation with one contact or a group. Lines on standard
//! input are sent, the others' messages are printed as they come (`--json`: one object per
//! line, as `receive --json`). `--transparent` (a contact only) talks directly over WebRTC
//! after meeting through the rendezvous; otherwise, or when the contact does not come online
//! and the user agrees, the chat goes through the relays (anonymous mode).

use std::io::{BufRead, IsTerminal as _};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::messaging::{Outage, Session, is_transient, print_received, show_received};
use super::{ChatArgs, Fallback};
use crate::client::contacts::{Contact, Contacts};
use crate::client::conversation::Conversation;
use crate::client::messaging::{Kind, MessagingError};
use crate::client::rendezvous::{self, Rendezvous, hex};
use crate::client::rtc::{Link, MAX_DATA_MESSAGE, RtcOptions};
use crate::client::transparent::{self, Purpose, TransparentError, TransparentOptions};
use crate::client::{ClientDb, now_ms};
use crate::config::Config;
use crate::proto::PublicKey;

/// Longest line sent in transparent mode: its sealed packet must fit one data-channel message.
const MAX_DIRECT_LINE: usize = 6 * 1024;

/// Longest line read from standard input; a longer one is skipped (no message is that long).
const MAX_INPUT_LINE: usize = 1 << 20;

/// Reads standard input line by line on a thread; the channel closes at end of input. A line
/// that is too long or not UTF-8 is skipped with a word on stderr, and the chat goes on.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let line = match read_line_bounded(&mut stdin, MAX_INPUT_LINE) {
                Ok(None) | Err(_) => break,
                Ok(Some(Line::TooLong)) => {
                    eprintln!("not sent: the line is longer than {MAX_INPUT_LINE} bytes");
                    continue;
                }
                Ok(Some(Line::Text(bytes))) => bytes,
            };
            let Ok(text) = String::from_utf8(line) else {
                eprintln!("not sent: the line is not UTF-8 text");
                continue;
            };
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            if tx.blocking_send(text).is_err() {
                break;
            }
        }
    });
    rx
}

/// One line of input.
enum Line {
    /// Its bytes, newline included.
    Text(Vec<u8>),
    /// Longer than allowed (read through to its end, and dropped).
    TooLong,
}

/// The next line of `input`, holding at most `max` bytes in memory; `None` at end of input.
fn read_line_bounded(input: &mut impl BufRead, max: usize) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(match (line.is_empty(), too_long) {
                (true, false) => None,
                (_, true) => Some(Line::TooLong),
                (false, false) => Some(Line::Text(line)),
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if line.len() + take > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&chunk[..take]);
            }
        }
        input.consume(take);
        if done {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            }));
        }
    }
}

/// Runs `jasper chat`.
pub fn run(config: &Config, args: &ChatArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    let contacts = Contacts::new(&session.db, &session.data_dir);
    let conversation = Conversation::named(&session.db, &contacts, &args.name)?;
    if let (true, Conversation::Group(g)) = (args.transparent, &conversation) {
        usage!(
            "transparent mode connects two people; chat in the group {:?} without --transparent",
            g.name
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut lines = stdin_lines();
        if let (true, Conversation::Direct(contact)) = (args.transparent, &conversation) {
            match direct_chat(config, &session, contact, args, &mut lines).await {
                Err(e) if is_absent(&e) => {
                    eprintln!(
                        "{} did not come online within {} (transparent mode).",
                        contact.name,
                        humantime::format_duration(args.wait)
                    );
                    if !fall_back(args.fallback, &mut lines).await {
                        return Err(e);
                    }
                    eprintln!("Chatting through the relays instead (anonymous mode).");
                }
                other => return other,
            }
        }
        relay_chat(&session, &conversation, args, &mut lines).await
    })
}

fn is_absent(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<TransparentError>(),
        Some(TransparentError::PeerAbsent(_))
    )
}

/// Whether to go on in anonymous mode.
async fn fall_back(fallback: Fallback, lines: &mut mpsc::Receiver<String>) -> bool {
    match fallback {
        Fallback::Anonymous => true,
        Fallback::Fail => false,
        Fallback::Ask if !std::io::stdin().is_terminal() => false,
        Fallback::Ask => {
            eprint!("Chat through the relays instead (anonymous mode)? [y/N] ");
            matches!(
                lines.recv().await.as_deref().map(str::trim),
                Some("y" | "Y" | "yes")
            )
        }
    }
}

/// Connects to the rendezvous at `addr` with the pinned certificate, or remembers the one it
/// shows the first time.
pub(super) async fn open_rendezvous(
    config: &Config,
    db: &ClientDb,
    addr: &str,
) -> anyhow::Result<Rendezvous> {
    let pinned = rendezvous::pin_for(db, config.client.rendezvous_fingerprint.as_deref(), addr)?;
    let connected = Rendezvous::connect(addr, pinned, config.client.request_timeout).await?;
    if pinned.is_none() {
        let fp = connected.fingerprint();
        rendezvous::remember(db, addr, &fp)?;
        eprintln!(
            "Trusting the rendezvous certificate {} from now on (first use).",
            hex(&fp)
        );
    }
    Ok(connected)
}

/// Meets `contact` through the configured rendezvous and opens a direct link for `purpose`,
/// waiting up to `wait` for them; says on stderr what it waits for.
pub(super) async fn meet(
    config: &Config,
    session: &Session,
    contact: &Contact,
    wait: Duration,
    purpose: Purpose,
) -> anyhow::Result<Link> {
    let Some(addr) = config.client.rendezvous.clone() else {
        return Err(crate::config::ConfigError::Invalid(
            "transparent mode needs a rendezvous: set [client] rendezvous = \"host:port\" \
             (the TLS port of a `jasper stun` service) and [client] stun"
                .into(),
        )
        .into());
    };
    let peer = PublicKey::parse(&contact.public_key, 2048)?;
    let step = config.client.request_timeout;
    let mut rendezvous = open_rendezvous(config, &session.db, &addr).await?;
    rendezvous.authenticate(&session.identity, step).await?;
    let what = match purpose {
        Purpose::Chat => "(transparent mode)",
        Purpose::Call => "to take the call (`jasper call` on their side)",
    };
    eprintln!(
        "Waiting up to {} for {} {what}...",
        humantime::format_duration(wait),
        contact.name
    );
    let options = TransparentOptions {
        rtc: RtcOptions {
            stun: config.client.stun.clone(),
            bind: config.client.rtc_bind,
            gather_timeout: Duration::from_secs(5),
            audio: purpose == Purpose::Call,
        },
        wait,
        step_timeout: step,
        purpose,
    };
    let waiting = super::spinner(format!("waiting for {}", contact.name));
    waiting.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("a valid template"),
    );
    let link = transparent::connect(&mut rendezvous, &session.identity, &peer, &options).await;
    waiting.finish_and_clear();
    Ok(link?)
}

async fn direct_chat(
    config: &Config,
    session: &Session,
    contact: &Contact,
    args: &ChatArgs,
    lines: &mut mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let peer = PublicKey::parse(&contact.public_key, 2048)?;
    // Before the wait, not after: finding the relay may probe relays (as `send` does), which
    // should not hold up a chat that has begun.
    let copies = tokio::task::block_in_place(|| CopiesForOtherDevices::start(session));
    let mut link = meet(config, session, contact, args.wait, Purpose::Chat).await?;
    eprintln!("Connected to {} directly.", contact.name);
    let result = talk(
        session,
        contact,
        &peer,
        &mut link,
        lines,
        copies.as_ref(),
        args.common.json,
    )
    .await;
    link.close().await;
    if let Some(copies) = copies {
        copies.finish().await;
    }
    result
}

/// Most copies waiting to be sent to the relays; past that, copies are dropped (and said so).
const COPY_QUEUE: usize = 256;

/// Sends our other devices what a direct chat says, through the relays as anonymous mode
/// would: a copy of each line we send (sealed to our own key), and each packet the peer sends
/// us (it is sealed to our key already). A thread posts them, so the chat never waits for a
/// relay.
struct CopiesForOtherDevices {
    tx: std::sync::mpsc::SyncSender<serde_json::Value>,
    thread: std::thread::JoinHandle<()>,
}

impl CopiesForOtherDevices {
    /// Starts the sender, or `None` when no relay carries packets to our inbox (transparent
    /// mode needs none): then only this device has the chat.
    fn start(session: &Session) -> Option<Self> {
        let me = session.identity.public().fingerprint();
        let relay = session.with(|m| Ok(m.servers.copies_to_self(&me)?));
        let relay = match relay {
            Ok(relay) => relay,
            Err(e) => {
                tracing::debug!(error = %e, "no relay for copies to our other devices");
                return None;
            }
        };
        let transport = session.transport.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel::<serde_json::Value>(COPY_QUEUE);
        let thread = std::thread::spawn(move || {
            let mut failed = false;
            for packet in rx {
                match transport.send(&relay, &packet) {
                    Ok(_) => failed = false,
                    Err(e) if !failed => {
                        failed = true;
                        eprintln!("warning: your other devices may miss part of this chat: {e}");
                    }
                    Err(_) => {}
                }
            }
        });
        Some(Self { tx, thread })
    }

    /// Queues a packet for our own inbox.
    fn send(&self, packet: serde_json::Value) {
        if self.tx.try_send(packet).is_err() {
            tracing::warn!("the relay is too slow: a copy for your other devices was dropped");
        }
    }

    /// Sends what is queued (within the transport's timeouts) and stops.
    async fn finish(self) {
        drop(self.tx);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// The conversation over an open link, until our input ends or the peer leaves.
async fn talk(
    session: &Session,
    contact: &Contact,
    peer: &PublicKey,
    link: &mut Link,
    lines: &mut mpsc::Receiver<String>,
    copies: Option<&CopiesForOtherDevices>,
    json: bool,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else {
                    link.flush(Duration::from_secs(5)).await;
                    return Ok(());
                };
                if line.is_empty() {
                    continue;
                }
                if line.len() > MAX_DIRECT_LINE {
                    eprintln!(
                        "error: a line over {MAX_DIRECT_LINE} bytes is too long for transparent \
                         mode; send it with `jasper send`"
                    );
                    continue;
                }
                tracing::debug!("sealing a line");
                let sealed = session.with_local(|m| Ok(m.seal_direct(contact, &line, now_ms())?))?;
                let bytes = serde_json::to_vec(&sealed.packet)?;
                // Escaping (quotes, control characters) can grow a line past what one
                // data-channel message holds once sealed.
                if bytes.len() > MAX_DATA_MESSAGE {
                    eprintln!(
                        "error: this line is too long for transparent mode once sealed \
                         ({} bytes; at most {MAX_DATA_MESSAGE}); send it with `jasper send`",
                        bytes.len()
                    );
                    continue;
                }
                tracing::debug!(bytes = bytes.len(), "sending a packet");
                link.send(&bytes).await.context("the direct connection closed")?;
                // In the history once it went out (queued on the link; a link that breaks
                // before the peer has it ends the chat with an error).
                durably(session, |m| Ok(m.file_direct(&sealed)?))?;
                // The copy for our other devices is sealed once the peer has the line.
                if let Some(copies) = copies {
                    copies.send(durably(session, |m| Ok(m.seal_copy_for_self(&sealed)?))?);
                }
            }
            data = link.recv() => {
                let Some(data) = data else {
                    eprintln!("{} left.", contact.name);
                    return Ok(());
                };
                tracing::debug!(bytes = data.len(), "received a packet");
                match durably(session, |m| Ok(m.accept_direct(&data, peer)))? {
                    Ok(Some(received)) => {
                        tracing::debug!("filed a message");
                        print_received(&received, json)?;
                        // The peer's packet is sealed to our key: our other devices can
                        // open it from our inbox as they would any other. Rebuilt from what
                        // was checked, so that it can only ever go to our own inbox.
                        if let Some(copies) = copies {
                            copies.send(for_our_inbox(&data, &session.identity)?);
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => eprintln!("warning: skipped a message: {reason}"),
                }
            }
        }
    }
}

/// A packet that came over the link and was accepted, addressed to our own key (whatever its
/// `recipient` said) with its hash computed here.
fn for_our_inbox(data: &[u8], me: &crate::crypto::Identity) -> anyhow::Result<serde_json::Value> {
    let packet: serde_json::Value = serde_json::from_slice(data)?;
    let field = |name: &str| {
        packet[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("an accepted packet has no {name}"))
    };
    let message = field("message")?;
    Ok(serde_json::json!({
        "recipient": me.public().canonical(),
        "hash": crate::proto::PacketHash::of_message(&message).to_string(),
        "message": message,
        "signature": field("signature")?,
    }))
}

/// Runs `f` (local work) with its several commits made durable by one flush at the end.
fn durably<T>(
    session: &Session,
    f: impl FnOnce(&crate::client::messaging::Messenger<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    session.db.set_relaxed(true);
    let result = session.with_local(f);
    session.db.set_relaxed(false);
    session.db.flush()?;
    result
}

/// Anonymous mode: each line is sent through the relays; the inbox is checked every
/// `--interval` and messages of this conversation are printed.
async fn relay_chat(
    session: &Session,
    conversation: &Conversation,
    args: &ChatArgs,
    lines: &mut mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage = Outage::default();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(()) };
                if line.is_empty() {
                    continue;
                }
                let sent = session
                    .with(|m| Ok(m.send_to(conversation, Kind::Message, &line, None, now_ms())?));
                // A line that cannot be sent as it is (too long, say), or not now (the relays
                // do not answer), is refused with a word, and the chat goes on.
                if let Err(e) = sent {
                    let usage = e.chain().any(|c| {
                        matches!(c.downcast_ref(), Some(MessagingError::Usage(_)))
                    });
                    if !usage && !is_transient(&e) {
                        return Err(e);
                    }
                    eprintln!("not sent: {}", super::error_report(&e));
                } else if let Ok(report) = &sent {
                    for u in &report.undelivered {
                        let who = u.name.clone().unwrap_or_else(|| "a member".to_owned());
                        eprintln!(
                            "not sent to {}: {}",
                            crate::client::terminal::line(&who),
                            crate::client::terminal::line(&u.error)
                        );
                    }
                }
            }
            _ = tick.tick() => {
                // Everything new is shown (it names its sender), so nothing is filed unseen.
                if let Some(report) = outage.check(session.with(|m| Ok(m.receive()?)))? {
                    let (report, failure) = report.split();
                    show_received(&report, args.common.json)?;
                    if let Some(e) = failure {
                        outage.check::<()>(Err(e.into()))?;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;

    #[test]
    fn lines_are_read_with_bounded_memory() {
        let text = b"one\ntoo long a line\n\nlast".to_vec();
        let mut input = std::io::BufReader::with_capacity(4, text.as_slice());
        let mut lines = Vec::new();
        while let Some(line) = read_line_bounded(&mut input, 8).unwrap() {
            lines.push(match line {
                Line::Text(bytes) => String::from_utf8(bytes).unwrap(),
                Line::TooLong => "(too long)".to_owned(),
            });
        }
        assert_eq!(lines, ["one\n", "(too long)", "\n", "last"]);
        let mut long_last = std::io::BufReader::new(&b"0123456789"[..]);
        assert!(matches!(
            read_line_bounded(&mut long_last, 8).unwrap(),
            Some(Line::TooLong)
        ));
        assert!(read_line_bounded(&mut long_last, 8).unwrap().is_none());
    }

    #[test]
    fn a_forwarded_packet_goes_to_our_inbox_whatever_it_named() {
        let (alice, carol) = (fixture("alice"), fixture("carol"));
        let data = serde_json::json!({
            "recipient": carol.public().canonical(),
            "message": "a.b.c.d.e",
            "hash": "00",
            "signature": "f.g.h.i.j",
            "extra": "dropped",
        })
        .to_string();
        let packet = for_our_inbox(data.as_bytes(), &alice).unwrap();
        assert_eq!(packet["recipient"], alice.public().canonical());
        assert_eq!(
            packet["hash"],
            crate::proto::PacketHash::of_message("a.b.c.d.e").to_string()
        );
        assert_eq!(packet["signature"], "f.g.h.i.j");
        assert!(packet.get("extra").is_none());
        assert!(for_our_inbox(b"{\"message\": 5}", &alice).is_err());
    }
}
