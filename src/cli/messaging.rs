//! `jasper send`, `receive`, `history`, `edit`, `delete`, `react`: anonymous-mode messaging.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::identity::load_identity;
use super::{HistoryArgs, MessageArgs, ReceiveArgs, SendArgs, TargetArgs};
use crate::client::ClientDb;
use crate::client::contacts::Contacts;
use crate::client::messaging::{Kind, Messenger};
use crate::client::servers::Servers;
use crate::client::transport::Transport;
use crate::config::Config;
use crate::crypto::Identity;
use crate::proto::ServerEntry;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Session {
    db: ClientDb,
    transport: Transport,
    identity: Identity,
    configured: Vec<ServerEntry>,
    data_dir: std::path::PathBuf,
}

impl Session {
    fn open(config: &Config, common: &MessageArgs) -> anyhow::Result<Session> {
        let identity = load_identity(config, common.passphrase_stdin)?;
        let db = ClientDb::open(&config.client.data_dir)?;
        Ok(Session {
            db,
            transport: Transport::new(config.client.request_timeout),
            identity,
            configured: config.client.peer_entries(),
            data_dir: config.client.data_dir.clone(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Messenger<'_>) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let servers = Servers::new(&self.db, &self.transport, self.configured.clone());
        servers.refresh(now_ms())?;
        let contacts = Contacts::new(&self.db, &self.data_dir);
        let messenger = Messenger {
            db: &self.db,
            transport: &self.transport,
            servers: &servers,
            contacts: &contacts,
            me: &self.identity,
        };
        f(&messenger)
    }
}

fn text_arg(text: &str) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    let mut out = String::new();
    std::io::stdin()
        .read_to_string(&mut out)
        .context("cannot read the message from standard input")?;
    Ok(out.trim_end_matches('\n').to_owned())
}

/// `jasper send NAME TEXT`.
pub fn send(config: &Config, args: &SendArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    let text = text_arg(&args.text)?;
    if text.is_empty() {
        bail!("nothing to send: the message is empty");
    }
    let report = session.with(|m| {
        let contact = m.contacts.get(&args.name)?;
        Ok(m.send(&contact, Kind::Message, &text, None, now_ms())?)
    })?;
    if args.common.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.id);
        if !report.copied_to_self {
            eprintln!("warning: the copy for your other devices could not be sent");
        }
    }
    Ok(())
}

/// `jasper edit|delete|react NAME ID [TEXT]`.
pub fn act(config: &Config, kind: Kind, args: &TargetArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    let content = match kind {
        Kind::Delete => String::new(),
        _ => text_arg(args.text.as_deref().unwrap_or_default())?,
    };
    if kind == Kind::React
        && !(content.len() >= 3 && content.starts_with(':') && content.ends_with(':'))
    {
        bail!("a reaction is written :name:, e.g. :thumbsup:");
    }
    if kind == Kind::Edit && content.is_empty() {
        bail!("an edit needs the new text");
    }
    let report = session.with(|m| {
        let contact = m.contacts.get(&args.name)?;
        Ok(m.send(&contact, kind, &content, Some(&args.id), now_ms())?)
    })?;
    if args.common.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.id);
    }
    Ok(())
}

/// `jasper receive [--watch]`.
pub fn receive(config: &Config, args: &ReceiveArgs) -> anyhow::Result<()> {
    let session = Session::open(config, &args.common)?;
    loop {
        let report = session.with(|m| Ok(m.receive()?))?;
        for r in &report.rejected {
            eprintln!(
                "warning: skipped packet {}: {}",
                r.hash.as_deref().unwrap_or("(no hash)"),
                r.reason
            );
        }
        for r in &report.received {
            if args.common.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                let who = r.contact.clone().unwrap_or_else(|| {
                    format!("unknown {}", &r.sender.chars().take(16).collect::<String>())
                });
                match r.kind {
                    Kind::Message => println!("[{}] {who}: {}", r.timestamp, r.content),
                    Kind::Edit => {
                        println!("[{}] {who} edited {}: {}", r.timestamp, r.id, r.content)
                    }
                    Kind::Delete => println!("[{}] {who} deleted {}", r.timestamp, r.id),
                    Kind::React => {
                        println!("[{}] {who} reacted {} to {}", r.timestamp, r.content, r.id)
                    }
                }
            }
        }
        if !args.watch {
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
}

/// `jasper history NAME`.
pub fn history(config: &Config, args: &HistoryArgs) -> anyhow::Result<()> {
    let db = ClientDb::open(&config.client.data_dir)?;
    let contacts = Contacts::new(&db, &config.client.data_dir);
    let contact = contacts.get(&args.name)?;
    let entries = crate::client::messaging::history(&db, &contact)?;
    let me = super::identity::load_public(config, false).ok();
    for e in entries {
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
                contact.name.clone()
            };
            let edited = if e.edited { " (edited)" } else { "" };
            let reactions = if e.reactions.is_empty() {
                String::new()
            } else {
                format!(
                    " {}",
                    e.reactions.keys().cloned().collect::<Vec<_>>().join(" ")
                )
            };
            println!(
                "[{}] {who}: {}{edited}{reactions}  ({})",
                e.timestamp, e.content, e.id
            );
        }
    }
    Ok(())
}
