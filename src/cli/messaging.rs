//! `jasper send`, `receive`, `history`, `edit`, `delete`, `react`: anonymous-mode messaging.

use std::io::Read as _;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use serde_json::json;

use super::identity::{load_identity_keeping, load_receive_keys};
use super::{
    GroupAction, GroupArgs, HistoryArgs, MessageArgs, ReactionsAction, ReactionsArgs, ReceiveArgs,
    SendArgs, ServersAction, ServersArgs, TargetArgs,
};
use crate::client::contacts::Contacts;
use crate::client::conversation::Conversation;
use crate::client::groups::{Group, Groups};
use crate::client::messaging::{
    Kind, Messenger, ReceiveProgress, ReceiveReport, Received, SendReport, is_reaction,
};
use crate::client::reactions::Reactions;
use crate::client::servers::Servers;
use crate::client::terminal;
use crate::client::transport::Transport;
use crate::client::{ClientDb, now_ms};
use crate::config::Config;
use crate::crypto::Identity;
use crate::proto::ServerEntry;

/// What every messaging command opens: the identity, the database, the relays.
pub(super) struct Session {
    pub(super) db: ClientDb,
    pub(super) transport: Transport,
    pub(super) identity: Identity,
    pub(super) receive_keys: Vec<Identity>,
    pub(super) configured: Vec<ServerEntry>,
    /// `[client] allow_private_servers`.
    pub(super) learn_private: bool,
    pub(super) data_dir: std::path::PathBuf,
}

impl Session {
    pub(super) fn open(config: &Config, common: &MessageArgs) -> anyhow::Result<Session> {
        let (identity, passphrase) = load_identity_keeping(config, common.passphrase_stdin)?;
        let receive_keys = load_receive_keys(config, passphrase.as_deref().map(String::as_str))?
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        let db = ClientDb::open(&config.client.data_dir)?;
        Ok(Session {
            db,
            transport: transport(config),
            identity,
            receive_keys,
            configured: config.client.peer_entries(),
            learn_private: config.client.allow_private_servers,
            data_dir: config.client.data_dir.clone(),
        })
    }

    /// A messenger for local work only (sealing, opening, filing): no relay is contacted.
    pub(super) fn with_local<T>(
        &self,
        f: impl FnOnce(&Messenger<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let servers = Servers::new(
            &self.db,
            &self.transport,
            self.configured.clone(),
            self.learn_private,
        );
        let contacts = Contacts::new(&self.db, &self.data_dir);
        f(&Messenger {
            db: &self.db,
            transport: &self.transport,
            servers: &servers,
            contacts: &contacts,
            me: &self.identity,
            receive_keys: &self.receive_keys,
        })
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Messenger<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let servers = Servers::new(
            &self.db,
            &self.transport,
            self.configured.clone(),
            self.learn_private,
        );
        servers.refresh(now_ms())?;
        let contacts = Contacts::new(&self.db, &self.data_dir);
        let messenger = Messenger {
            db: &self.db,
            transport: &self.transport,
            servers: &servers,
            contacts: &contacts,
            me: &self.identity,
            receive_keys: &self.receive_keys,
        };
        f(&messenger)
    }
}

/// How someone who is not a contact is shown: their key's short fingerprint (PROTOCOL.md §1),
/// as `jasper id` shows it to them. (The first characters of a key would not do: every
/// RSA-4096 key in base64 starts with the same 44.)
fn someone(key: &str) -> String {
    crate::proto::PublicKey::parse(key, 2048).map_or_else(
        |_| "(a key that does not parse)".to_owned(),
        |k| k.fingerprint().short(),
    )
}

/// How the lines of a message after its first are indented in human output.
const CONTINUATION: &str = "    ";

/// Prints a received message: one JSON object per line, or one human line.
pub(super) fn print_received(r: &Received, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let who = match (&r.contact, r.from_me) {
        // Our own copy, sent from another device.
        (Some(to), true) => format!("you (to {to})"),
        (None, true) => "you".to_owned(),
        (Some(name), false) => name.clone(),
        (None, false) => format!("unknown {}", someone(&r.sender)),
    };
    let who = match &r.group {
        Some(g) => format!("{who} in {g}"),
        None => who,
    };
    // What others wrote reaches the terminal escaped (see client::terminal).
    let (who, id, at) = (
        terminal::line(&who),
        terminal::line(&r.id),
        terminal::line(&r.timestamp),
    );
    let content = terminal::block(&r.content, CONTINUATION);
    let ring = r
        .call_until
        .as_deref()
        .and_then(crate::proto::time::parse_rfc3339_ms);
    match r.kind {
        Kind::Message if ring.is_some_and(|until| until > now_ms()) => {
            let until = terminal::line(r.call_until.as_deref().unwrap_or_default());
            match &r.contact {
                Some(name) => println!(
                    "[{at}] {who} is calling you: answer with `jasper call {}` before {until}",
                    terminal::line(name)
                ),
                None => println!(
                    "[{at}] {who} is calling you until {until} (add them as a contact to answer)"
                ),
            }
        }
        Kind::Message if ring.is_some() => println!("[{at}] {who} called you (missed)"),
        Kind::Message => println!("[{at}] {who}: {content}"),
        Kind::Edit => println!("[{at}] {who} edited {id}: {content}"),
        Kind::Delete => println!("[{at}] {who} deleted {id}"),
        Kind::React => match &r.emoji {
            Some(emoji) => println!(
                "[{at}] {who} reacted {} {} to {id}",
                terminal::line(&r.content),
                terminal::line(emoji)
            ),
            None => println!(
                "[{at}] {who} reacted {} to {id} (not in your reactions database: it does not \
                 show; `jasper reactions add` adds it)",
                terminal::line(&r.content)
            ),
        },
    }
    Ok(())
}

/// `text`, or standard input when it is "-" (without its last newlines).
fn text_arg(text: &str) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    // Read no more than a message may hold (and a newline), whatever comes in.
    let max = crate::client::messaging::MAX_CONTENT_BYTES;
    let cap = max as u64 + 2;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(cap)
        .read_to_end(&mut bytes)
        .context("cannot read the message from standard input")?;
    let filled = bytes.len() as u64 == cap;
    while bytes.ends_with(b"\n") {
        bytes.pop();
    }
    if filled || bytes.len() > max {
        usage!(
            "the message on standard input is too long: jasper reads at most {max} bytes \
             (64 KiB) of text per message: send it in parts"
        );
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => usage!("the message on standard input is not UTF-8 text"),
    }
}

/// Prints what a send did: its id, or the whole report as JSON.
/// Prints what a send did; every command that sends warns when the copy for our other devices
/// could not go.
fn print_report(report: &SendReport, json: bool) -> anyhow::Result<()> {
    if !report.copied_to_self {
        eprintln!("warning: the copy for your other devices could not be sent");
    }
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", report.id);
    }
    if !report.undelivered.is_empty() {
        let whom: Vec<String> = report
            .undelivered
            .iter()
            .map(|u| {
                let who = u.name.clone().unwrap_or_else(|| {
                    crate::proto::PublicKey::parse(&u.member, 2048)
                        .map_or_else(|_| "a member".to_owned(), |k| k.fingerprint().short())
                });
                format!("{} ({})", terminal::line(&who), terminal::line(&u.error))
            })
            .collect();
        anyhow::bail!(
            "the message went to the others, and is in the history, but not to: {}",
            whom.join("; ")
        );
    }
    Ok(())
}

/// `jasper send NAME TEXT`.
pub fn send(config: &Config, args: &SendArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    let text = text_arg(&args.text)?;
    if text.is_empty() {
        usage!("nothing to send: the message is empty");
    }
    let report = session.with(|m| {
        let conversation = Conversation::named(m.db, m.contacts, &args.name)?;
        Ok(m.send_to(&conversation, Kind::Message, &text, None, now_ms())?)
    })?;
    print_report(&report, args.common.json)
}

/// `jasper edit|delete|react NAME ID …`: `content` is the new text ("-": standard input, after
/// the passphrase) or the reaction.
pub fn act(
    config: &Config,
    kind: Kind,
    target: &TargetArgs,
    content: &str,
    common: &MessageArgs,
) -> anyhow::Result<()> {
    if kind == Kind::React && !is_reaction(content) {
        usage!(
            "a reaction is written :name:, e.g. :thumbsup: (letters, digits, _ + and -, at most \
             62)"
        );
    }
    let session = Session::open(config, common)?;
    if kind == Kind::React && Reactions::new(&session.db).emoji(content)?.is_none() {
        usage!(
            "{content} is not in your reactions database, so you would not see it yourself; \
             `jasper reactions` lists them, `jasper reactions add NAME EMOJI` adds one"
        );
    }
    let content = match kind {
        Kind::Edit => text_arg(content)?,
        _ => content.to_owned(),
    };
    if kind == Kind::Edit && content.is_empty() {
        usage!("an edit needs the new text");
    }
    let report = session.with(|m| {
        let conversation = Conversation::named(m.db, m.contacts, &target.name)?;
        let message = conversation.message(m.db, &target.id)?;
        Ok(m.send_to(&conversation, kind, &content, Some(&message.id), now_ms())?)
    })?;
    print_report(&report, common.json)
}

/// `jasper receive [--watch]`.
pub fn receive(config: &Config, args: &ReceiveArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    // Watching outlives relay outages; a single receive reports them.
    let mut outage = Outage::default();
    loop {
        // What was handled before a failure is shown first: it is filed as handled already.
        let (shown, result) = match receive_showing_progress(&session) {
            Ok(report) => {
                let (report, failure) = report.split();
                (Some(report), failure.map_or(Ok(()), |e| Err(e.into())))
            }
            Err(e) => (None, Err(e)),
        };
        if let Some(report) = shown {
            show_received(&report, args.common.json)?;
        }
        if args.watch {
            outage.check(result)?;
        } else {
            result?;
        }
        if !args.watch {
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
}

/// New packets from which a receive shows a progress bar (fewer open in a blink).
const PROGRESS_FROM: usize = 50;

/// A receive, with a progress bar on stderr while it opens many packets (on a terminal only).
fn receive_showing_progress(session: &Session) -> anyhow::Result<ReceiveReport> {
    use std::io::IsTerminal as _;
    let progress = ReceiveProgress::default();
    if !std::io::stderr().is_terminal() {
        return session.with(|m| Ok(m.receive_tracked(&progress)?));
    }
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let progress = &progress;
        scope.spawn(move || {
            let mut bar: Option<indicatif::ProgressBar> = None;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                finished.recv_timeout(std::time::Duration::from_millis(100))
            {
                let found = progress.found.load(Ordering::Relaxed);
                if found < PROGRESS_FROM {
                    continue;
                }
                let bar = bar.get_or_insert_with(|| {
                    indicatif::ProgressBar::new(found as u64).with_style(
                        indicatif::ProgressStyle::with_template(
                            "opening {pos}/{len} new packets {bar:30} {eta} left",
                        )
                        .expect("template parses"),
                    )
                });
                bar.set_length(found as u64);
                bar.set_position(progress.opened.load(Ordering::Relaxed) as u64);
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        let result = session.with(|m| Ok(m.receive_tracked(progress)?));
        drop(done);
        result
    })
}

/// Whether `e` comes from relays that do not answer now (unreachable, rate limiting, failing
/// on their side): what waiting may mend.
pub(super) fn is_transient(e: &anyhow::Error) -> bool {
    use crate::client::messaging::MessagingError;
    use crate::client::servers::ServersError;
    use crate::client::transport::TransportError;
    e.chain().any(|cause| {
        cause
            .downcast_ref::<TransportError>()
            .is_some_and(TransportError::is_transient)
            || cause
                .downcast_ref::<ServersError>()
                .is_some_and(ServersError::is_transient)
            || cause
                .downcast_ref::<MessagingError>()
                .is_some_and(MessagingError::is_transient)
    })
}

/// Keeps a long-running command (`receive --watch`, `chat`) going while the relays do not
/// answer: says so once, and once more when they answer again.
#[derive(Default)]
pub(super) struct Outage {
    down: bool,
}

impl Outage {
    /// `Ok(Some)` for a result, `Ok(None)` for a failure that waiting may mend (reported on
    /// the first one), `Err` for any other failure.
    pub(super) fn check<T>(&mut self, result: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
        match result {
            Ok(value) => {
                if std::mem::take(&mut self.down) {
                    eprintln!("The relays answer again.");
                }
                Ok(Some(value))
            }
            Err(e) if is_transient(&e) => {
                if !self.down {
                    eprintln!("warning: {}; trying again", super::error_report(&e));
                    self.down = true;
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Skipped packets described one by one; more are counted.
const MAX_SKIPPED_SHOWN: usize = 10;

/// Shows what a receive brought: each message (see [`print_received`]), and on stderr what
/// was skipped.
pub(super) fn show_received(report: &ReceiveReport, json: bool) -> anyhow::Result<()> {
    // Anyone can fill an inbox with junk: a few lines say what it was, a count the rest.
    for r in report.rejected.iter().take(MAX_SKIPPED_SHOWN) {
        eprintln!(
            "warning: skipped packet {}: {}",
            // The hash of a packet that did not parse is the relay's text, not a hash.
            terminal::short_line(r.hash.as_deref().unwrap_or("(no hash)"), 80),
            terminal::line(&r.reason)
        );
    }
    if report.skipped() > MAX_SKIPPED_SHOWN {
        let more = report.skipped() - MAX_SKIPPED_SHOWN;
        eprintln!("warning: … and {more} more packets skipped");
    }
    for r in &report.received {
        print_received(r, json)?;
    }
    if report.more_waiting {
        eprintln!("note: more is waiting at the relay than one receive takes; receive again");
    }
    Ok(())
}

/// `jasper reactions [add NAME EMOJI | rm NAME]`.
pub fn reactions(config: &Config, args: &ReactionsArgs) -> anyhow::Result<()> {
    let db = ClientDb::open(&config.client.data_dir)?;
    let reactions = Reactions::new(&db);
    match &args.action {
        Some(ReactionsAction::Add { name, emoji }) => {
            let added = reactions.add(name, emoji)?;
            if args.json {
                println!("{}", json!({ "name": added.name, "emoji": added.emoji }));
            } else {
                println!(":{}: shows {}", added.name, terminal::line(&added.emoji));
            }
        }
        Some(ReactionsAction::Rm { name }) => {
            reactions.remove(name)?;
            if args.json {
                println!("{}", json!({ "removed": name.trim_matches(':') }));
            } else {
                println!("removed :{}:", terminal::line(name.trim_matches(':')));
            }
        }
        None => {
            for r in reactions.list()? {
                if args.json {
                    println!(
                        "{}",
                        json!({ "name": r.name, "emoji": r.emoji, "custom": r.custom })
                    );
                } else {
                    let own = if r.custom { "  (yours)" } else { "" };
                    println!(
                        "{:<24} {}{own}",
                        format!(":{}:", r.name),
                        terminal::line(&r.emoji)
                    );
                }
            }
        }
    }
    Ok(())
}

/// `jasper group create|add|remove|leave|send|list`.
pub fn group(config: &Config, args: &GroupArgs) -> anyhow::Result<()> {
    match &args.action {
        GroupAction::List => {
            let db = ClientDb::open(&config.client.data_dir)?;
            let contacts = Contacts::new(&db, &config.client.data_dir);
            for g in Groups::new(&db).list()? {
                let names: Vec<String> = g
                    .members
                    .iter()
                    .map(|k| display_name(&contacts, k))
                    .collect();
                if args.common.json {
                    println!(
                        "{}",
                        json!({
                            "name": g.name, "channel_id": g.channel_id, "members": g.members,
                            "member_names": names, "left": g.left,
                        })
                    );
                } else {
                    let left = if g.left { "  (you left)" } else { "" };
                    println!(
                        "{:<24} {}{left}",
                        terminal::line(&g.name),
                        terminal::line(&names.join(", "))
                    );
                }
            }
            Ok(())
        }
        GroupAction::Create { name, members } => {
            if !crate::client::contacts::is_valid_name(name) {
                usage!(
                    "group names are 1-64 characters without control characters or spaces \
                     around them, and not starting with '-'"
                );
            }
            let session = Session::open(config, &args.common)?;
            let report = session.with(|m| {
                if Groups::new(m.db).get(name)?.is_some() {
                    usage!("a group named {name:?} exists already");
                }
                if m.db.contact(name)?.is_some() {
                    usage!(
                        "{name:?} is a contact's name, which send, history and chat take first: \
                         name the group otherwise"
                    );
                }
                let group = Group {
                    name: name.clone(),
                    channel_id: uuid::Uuid::new_v4().to_string(),
                    members: Vec::new(),
                    members_at: 0,
                    left: false,
                    from_stranger: false,
                    started_by: None,
                };
                if let Some(why) = Groups::new(m.db).refusal_for_new(false, &|_| false)? {
                    usage!("cannot create another group: {why}");
                }
                let mut everyone = member_keys(m, members)?;
                everyone.push(m.me.public().canonical().to_owned());
                let content = format!("created the group \"{}\"", group.name);
                Ok(m.change_group(&group, &everyone, &content, now_ms())?.1)
            })?;
            if args.common.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.channel_id);
            }
            Ok(())
        }
        GroupAction::Add { name, members } => {
            let session = Session::open(config, &args.common)?;
            let report = session.with(|m| {
                let group = group_in(m, name)?;
                let added = member_keys(m, members)?;
                if let Some(i) = added.iter().position(|k| group.members.contains(k)) {
                    usage!("{} is in {name:?} already", members[i]);
                }
                let mut everyone = group.members.clone();
                everyone.extend(added);
                everyone.push(m.me.public().canonical().to_owned());
                let content = format!("added {}", members.join(", "));
                Ok(m.change_group(&group, &everyone, &content, now_ms())?.1)
            })?;
            print_report(&report, args.common.json)
        }
        GroupAction::Remove { name, members } => {
            let session = Session::open(config, &args.common)?;
            let report = session.with(|m| {
                let group = group_in(m, name)?;
                let mut removed = Vec::new();
                for member in members {
                    removed.push(member_of(m, &group, member)?);
                }
                let mut everyone: Vec<String> = group
                    .members
                    .iter()
                    .filter(|k| !removed.contains(k))
                    .cloned()
                    .collect();
                if everyone.is_empty() {
                    usage!(
                        "that would leave nobody but you in {name:?}: `jasper group leave {name}`"
                    );
                }
                everyone.push(m.me.public().canonical().to_owned());
                let names: Vec<String> = removed
                    .iter()
                    .map(|k| display_name(m.contacts, k))
                    .collect();
                let content = format!("removed {}", names.join(", "));
                Ok(m.change_group(&group, &everyone, &content, now_ms())?.1)
            })?;
            print_report(&report, args.common.json)
        }
        GroupAction::Leave { name } => {
            let session = Session::open(config, &args.common)?;
            let report = session.with(|m| {
                let group = group_in(m, name)?;
                Ok(
                    m.change_group(&group, &group.members, "left the group", now_ms())?
                        .1,
                )
            })?;
            print_report(&report, args.common.json)
        }
        GroupAction::Forget { name } => {
            let db = ClientDb::open(&config.client.data_dir)?;
            let groups = Groups::new(&db);
            let Some(group) = groups.get(name)? else {
                usage!("no group named {name:?}; see `jasper group list`");
            };
            if !group.left {
                usage!("you are still in the group {name:?}: `jasper group leave {name}` first");
            }
            let gone = groups.forget(name)?.unwrap_or(0);
            if args.common.json {
                println!("{}", json!({ "forgot": group.name, "messages": gone }));
            } else {
                println!(
                    "forgot the group {} and its {gone} messages",
                    terminal::line(&group.name)
                );
            }
            Ok(())
        }
        GroupAction::Send { name, text } => {
            let session = Session::open(config, &args.common)?;
            let text = text_arg(text)?;
            if text.is_empty() {
                usage!("nothing to send: the message is empty");
            }
            let report = session.with(|m| {
                let group = group_in(m, name)?;
                Ok(m.send_group(&group, Kind::Message, &text, None, now_ms())?)
            })?;
            print_report(&report, args.common.json)
        }
    }
}

/// The group called `name`, which we are in.
fn group_in(m: &Messenger<'_>, name: &str) -> anyhow::Result<Group> {
    let Some(group) = Groups::new(m.db).get(name)? else {
        usage!("no group named {name:?}; see `jasper group list`");
    };
    if group.left {
        usage!("you are no longer in the group {name:?}");
    }
    Ok(group)
}

/// The key of the member of `group` that `who` names: a contact's name, or the start of a
/// member's fingerprint (at least 8 hex digits, spaces allowed, as `group list` shows members
/// who are not contacts).
fn member_of(m: &Messenger<'_>, group: &Group, who: &str) -> anyhow::Result<String> {
    let key = match m.contacts.get(who) {
        Ok(contact) => contact.public_key,
        Err(e) => {
            let hex: String = who.chars().filter(|c| !c.is_whitespace()).collect();
            let hex = hex.to_ascii_lowercase();
            if hex.len() < 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(e.into());
            }
            let matching: Vec<&String> = group
                .members
                .iter()
                .filter(|k| {
                    crate::proto::PublicKey::parse(k, 2048)
                        .is_ok_and(|k| k.fingerprint().to_string().starts_with(&hex))
                })
                .collect();
            match matching.as_slice() {
                [one] => (*one).clone(),
                [] => usage!(
                    "no member of {:?} has a fingerprint starting {who}",
                    group.name
                ),
                _ => usage!("{who} starts several members' fingerprints: give more of it"),
            }
        }
    };
    if !group.members.contains(&key) {
        usage!("{who} is not in {:?}", group.name);
    }
    Ok(key)
}

/// How `key` is shown: its contact's name, else its short fingerprint.
fn display_name(contacts: &Contacts<'_>, key: &str) -> String {
    crate::proto::PublicKey::parse(key, 2048)
        .ok()
        .and_then(|k| contacts.by_key(&k).ok().flatten())
        .map_or_else(|| someone(key), |c| c.name)
}

/// The public keys of the contacts called `names`, once each.
fn member_keys(m: &Messenger<'_>, names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for name in names {
        let key = m.contacts.get(name)?.public_key;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The client's HTTP to relays, as configured.
fn transport(config: &Config) -> Transport {
    Transport::new(
        config.client.request_timeout,
        config.client.peer_entries(),
        config.client.allow_private_servers,
    )
}

/// `jasper servers`.
pub fn servers(config: &Config, args: &ServersArgs) -> anyhow::Result<()> {
    let db = ClientDb::open(&config.client.data_dir)?;
    let transport = transport(config);
    let servers = Servers::new(
        &db,
        &transport,
        config.client.peer_entries(),
        config.client.allow_private_servers,
    );
    match &args.action {
        Some(ServersAction::Block { relay }) => {
            let fresh = servers.block(relay)?;
            if args.json {
                println!(
                    "{}",
                    json!({ "blocked": relay.authority(), "was_blocked": !fresh })
                );
            } else if fresh {
                println!("blocked {relay}: it will not be used or learned again");
            } else {
                println!("{relay} was blocked already");
            }
            return Ok(());
        }
        Some(ServersAction::Unblock { relay }) => {
            let was = servers.unblock(relay)?;
            if args.json {
                println!(
                    "{}",
                    json!({ "unblocked": relay.authority(), "was_blocked": was })
                );
            } else if was {
                println!("unblocked {relay}: it is used again once a relay names it");
            } else {
                println!("{relay} was not blocked");
            }
            return Ok(());
        }
        None => {}
    }
    // What is asked for is how the relays are doing now.
    let bar = super::spinner("asking the relays…");
    let refreshed = servers.refresh_older_than(now_ms(), 0);
    bar.finish_and_clear();
    refreshed?;
    let contacts = Contacts::new(&db, &config.client.data_dir);
    let own = super::identity::load_public(config, false).ok();
    servers.settle_roles()?;
    let roles = servers.assignments()?;
    let known = servers.known()?;
    let configured = config.client.peer_entries();
    for (entry, info) in &known {
        let mine: Vec<String> = roles
            .iter()
            .filter(|(_, _, relay)| *relay == entry.authority())
            .map(|(role, fp, _)| {
                let who = if own
                    .as_ref()
                    .is_some_and(|k| k.fingerprint().to_string() == *fp)
                {
                    "you".to_owned()
                } else {
                    contacts
                        .list()
                        .ok()
                        .and_then(|l| l.into_iter().find(|c| c.fingerprint == *fp))
                        .map_or_else(|| fp[..16].to_owned(), |c| c.name)
                };
                format!("{role} {who}")
            })
            .collect();
        if args.json {
            println!(
                "{}",
                json!({
                    "server": entry.authority(), "reachable": info.reachable, "load": info.load,
                    "fetch_cursor": info.cursor, "roles": mine, "blocked": false,
                    "configured": configured.contains(entry),
                    "down_since": (info.down_since != 0)
                        .then(|| crate::proto::time::rfc3339_ms(info.down_since)),
                })
            );
        } else {
            // The load a relay that does not answer had last time says nothing about now.
            let load = info
                .load
                .filter(|_| info.reachable)
                .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}"));
            let state = if info.reachable { "up" } else { "down" };
            // How long a relay has been silent helps decide whether to block it.
            let mut notes = mine;
            if info.down_since != 0 {
                notes.push(format!(
                    "down for {}",
                    humantime::format_duration(std::time::Duration::from_secs(
                        now_ms().saturating_sub(info.down_since) / 1000
                    ))
                ));
            }
            if !configured.contains(entry) {
                notes.push("learned".to_owned());
            }
            println!(
                "{:<32} {state:<5} load {load:<5} {}",
                entry.authority(),
                notes.join(", ")
            );
        }
    }
    for relay in servers.blocked()? {
        if known.iter().any(|(e, _)| *e == relay) {
            continue; // configured too, so used
        }
        if args.json {
            println!(
                "{}",
                // The same fields as a relay in use, so that scripts read one shape.
                json!({
                    "server": relay.authority(), "reachable": null, "load": null,
                    "fetch_cursor": null, "roles": [], "blocked": true, "configured": false,
                    "down_since": null,
                })
            );
        } else {
            println!("{:<32} blocked", relay.authority());
        }
    }
    if !args.json {
        let up = known.iter().filter(|(_, i)| i.reachable).count();
        println!();
        println!("{}", anonymity_summary(up));
    }
    Ok(())
}

/// What the number of reachable relays means for anonymity, said plainly.
pub fn anonymity_summary(up: usize) -> String {
    match up {
        0 => "No relay answers: nothing can be sent or received.".to_owned(),
        1 => "Only one relay answers. It both carries what you send and serves your inbox, so its \
              owner can link your key to the keys you write to. Add relays to [client] servers."
            .to_owned(),
        2 => "Two relays answer: one carries what you send, the other serves your inbox, so neither \
              alone links your key to the keys you write to - unless one owner runs both. With more \
              relays each contact gets its own, and you depend less on any one operator."
            .to_owned(),
        n => format!(
            "{n} relays answer: your inbox and your contacts are spread over different relays, so no \
             single relay links your key to the keys you write to unless their owners collude. \
             Every relay learned makes that harder."
        ),
    }
}

/// `jasper history NAME` (a contact or a group).
pub fn history(config: &Config, args: &HistoryArgs) -> anyhow::Result<()> {
    let db = ClientDb::open(&config.client.data_dir)?;
    let contacts = Contacts::new(&db, &config.client.data_dir);
    let conversation = Conversation::named(&db, &contacts, &args.name)?;
    let mut entries = conversation.history(&db)?;
    if let Some(last) = args.last {
        entries.drain(..entries.len().saturating_sub(last));
    }
    let (contact_name, contact_key) = match &conversation {
        Conversation::Direct(c) => (
            Some(c.name.clone()),
            crate::proto::PublicKey::parse(&c.public_key, 2048)
                .ok()
                .map(|k| k.canonical().to_owned()),
        ),
        Conversation::Group(_) => (None, None),
    };
    let me = super::identity::load_public(config, false).ok();
    let known_reactions = Reactions::new(&db);
    for mut e in entries {
        // Only reactions in our reactions database appear (JASPER.md), as what they show.
        let mut shown = Vec::new();
        for (name, who) in std::mem::take(&mut e.reactions) {
            if let Some(emoji) = known_reactions.emoji(&name)? {
                shown.push((emoji, who.as_array().map_or(0, Vec::len)));
                e.reactions.insert(name, who);
            }
        }
        if args.json {
            println!(
                "{}",
                json!({
                    "id": e.id, "sender": e.sender, "content": e.content,
                    "timestamp": e.timestamp, "edited": e.edited, "reactions": e.reactions,
                })
            );
        } else {
            let who = if me.as_ref().is_some_and(|k| k.canonical() == e.sender) {
                "me".to_owned()
            } else {
                crate::proto::PublicKey::parse(&e.sender, 2048)
                    .ok()
                    .and_then(|k| contacts.by_key(&k).ok().flatten())
                    .map(|c| c.name)
                    // The conversation's contact only when the sender is that contact's key
                    // (a stranger's line, or ours when our key is unknown here, is not theirs).
                    .or_else(|| {
                        contact_name
                            .clone()
                            .filter(|_| contact_key.as_deref() == Some(e.sender.as_str()))
                    })
                    .unwrap_or_else(|| someone(&e.sender))
            };
            let edited = if e.edited { " (edited)" } else { "" };
            // Each reaction once, with how many people gave it when more than one did.
            let reactions: String = shown
                .iter()
                .map(|(emoji, n)| match n {
                    0 | 1 => format!(" {emoji}"),
                    n => format!(" {emoji}×{n}"),
                })
                .collect();
            println!(
                "[{}] {}: {}{edited}{}  ({})",
                terminal::line(&e.timestamp),
                terminal::line(&who),
                terminal::block(&e.content, CONTINUATION),
                terminal::line(&reactions),
                terminal::line(&e.id)
            );
        }
    }
    Ok(())
}
