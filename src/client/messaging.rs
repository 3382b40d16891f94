//! Anonymous-mode messaging: build message objects (JASPER.md), seal them (PROTOCOL.md §2),
//! send each through the recipient's TX relay with a copy to our own key for our other
//! devices, and receive from our RX relay — open, verify, deduplicate, file in the history.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::contacts::{Contact, Contacts};
use super::conversation::Conversation;
use super::db::ClientDb;
use super::groups::{Group, Groups, MAX_MEMBERS};
use super::reactions::Reactions;
use super::servers::Servers;
use super::transport::{Transport, TransportError};
use crate::crypto::{Identity, OpenError, Opened, open, seal};
use crate::proto::time::{parse_rfc3339_ms, rfc3339_ms};
use crate::proto::{PacketHash, PublicKey};

/// Longest `content` accepted from others.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Refuses content longer than recipients accept ([`MAX_CONTENT_BYTES`]), before anything is
/// sealed or sent: a relay would store it and every recipient would skip it.
fn check_content(content: &str) -> Result<(), MessagingError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(MessagingError::Usage(format!(
            "the message is {} bytes; jasper reads at most {MAX_CONTENT_BYTES} bytes (64 KiB) \
             of text per message: send it in parts",
            content.len()
        )));
    }
    Ok(())
}

/// The extension field (PROTOCOL.md §3 allows unknown ones) that a group message carries
/// beside `members`: when that member list was set (RFC 3339). Members keep the list with the
/// latest time, so a message from someone who has not yet seen a change does not undo it.
pub const MEMBERS_AT: &str = "members_at";
/// Extension of a direct MESSAGE that rings for a call (RFC 3339): until when the caller
/// waits at the rendezvous for `jasper call` from the one it rings.
pub const CALL_UNTIL: &str = "call_until";
/// The text of a ring, what clients that do not know [`CALL_UNTIL`] show.
pub const RING_TEXT: &str = "📞 Calling you (a voice call: answer with jasper call).";
/// How far ahead of our clock a member list's time may be.
const MAX_CLOCK_AHEAD_MS: u64 = 10 * 60 * 1000;
/// A message sent longer ago than this is refused as stale: relays keep packets 7 days, so
/// only a packet sent again (replayed) arrives this old.
pub const STALE_AFTER_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long the hash of a handled packet is remembered (so that it is not handled twice);
/// longer than [`STALE_AFTER_MS`], so a packet old enough to be forgotten is refused as stale.
pub const SEEN_KEEP_MS: u64 = 2 * STALE_AFTER_MS;
/// Most remembered hashes one `receive` forgets.
const FORGET_PER_RECEIVE: usize = 10_000;

/// Longest `id` or `channel_id` accepted.
const MAX_ID_CHARS: usize = 64;
/// Most different reactions one message keeps.
const MAX_REACTIONS_PER_MESSAGE: usize = 64;
/// Most edits, deletions and reactions kept until the message they name comes, from people
/// we know (contacts, members of the group it is in, ourselves).
const MAX_EARLY_ACTIONS: u64 = 10_000;
/// The same from anyone else, kept apart: anyone with our key can send them.
const MAX_EARLY_ACTIONS_FROM_STRANGERS: u64 = 1_000;
/// How long they are kept: a message comes within a relay's retention of its actions, or not
/// at all.
const EARLY_KEEP_MS: u64 = 8 * 24 * 3600 * 1000;
/// How far ahead of our clock a message's `timestamp` may be. Further ahead, it would sort
/// after everything sent for years (and from 2286 on, break the history's key order).
const MAX_SENT_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Whether `text` is a reaction as JASPER.md writes them: `:name:`, the name 1-62 ASCII
/// letters, digits, `_`, `+` or `-` (the shortcodes of the usual emoji sets).
pub fn is_reaction(text: &str) -> bool {
    text.len() <= 64
        && text
            .strip_prefix(':')
            .and_then(|t| t.strip_suffix(':'))
            .is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
            })
}

/// The four message types of JASPER.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// A new message.
    Message,
    /// New content for message `id`.
    Edit,
    /// Removal of message `id`.
    Delete,
    /// A `:reaction:` to message `id`.
    React,
}

/// Why messaging failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// A relay problem.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No usable relay.
    #[error(transparent)]
    Servers(#[from] super::servers::ServersError),
    /// Local database.
    #[error(transparent)]
    Db(#[from] super::db::DbError),
    /// Contacts.
    #[error(transparent)]
    Contacts(#[from] super::contacts::ContactError),
    /// Sealing failed.
    #[error("cannot encrypt: {0}")]
    Seal(String),
    /// The user asked for something impossible.
    #[error("{0}")]
    Usage(String),
}

impl MessagingError {
    /// Whether trying again later may work: the relays do not answer now (see
    /// [`TransportError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            MessagingError::Transport(t) => t.is_transient(),
            MessagingError::Servers(s) => s.is_transient(),
            _ => false,
        }
    }
}

/// Why a received packet was not filed.
#[derive(Debug)]
enum NotFiled {
    /// Something about the packet: it is refused for good, for the reason given.
    Refused(String),
    /// This device failed (its database): nothing about the packet is decided, and it is
    /// taken again next time.
    Local(MessagingError),
}

impl From<String> for NotFiled {
    fn from(reason: String) -> Self {
        NotFiled::Refused(reason)
    }
}

impl From<&str> for NotFiled {
    fn from(reason: &str) -> Self {
        NotFiled::Refused(reason.to_owned())
    }
}

impl From<super::db::DbError> for NotFiled {
    fn from(e: super::db::DbError) -> Self {
        NotFiled::Local(e.into())
    }
}

impl From<super::contacts::ContactError> for NotFiled {
    fn from(e: super::contacts::ContactError) -> Self {
        NotFiled::Local(e.into())
    }
}

impl From<MessagingError> for NotFiled {
    /// [`MessagingError::Usage`] is a refusal of the packet; anything else is local.
    fn from(e: MessagingError) -> Self {
        match e {
            MessagingError::Usage(reason) => NotFiled::Refused(reason),
            other => NotFiled::Local(other),
        }
    }
}

/// What the seen-list records for a packet opened with a signature that does not verify: the
/// message with that signature. The hash alone names the message, not the signature (which
/// anyone can swap for junk on its way through the relays), so the genuine copy is still
/// taken when it comes.
fn bad_copy_key(hash: &PacketHash, signature: &str) -> [u8; 32] {
    use sha2::Digest as _;
    let mut digest = sha2::Sha256::new();
    digest.update(b"jasper bad signature\0");
    digest.update(hash.0);
    digest.update(signature.as_bytes());
    digest.finalize().into()
}

/// Whether opening failed on the packet's signature part (which its hash does not cover).
fn signature_at_fault(e: &OpenError) -> bool {
    matches!(e, OpenError::BadSignature | OpenError::WrongRecipient)
}

/// One history entry, as filed and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Message id.
    pub id: String,
    /// Sender's public key.
    pub sender: String,
    /// Current content.
    pub content: String,
    /// Original timestamp.
    pub timestamp: String,
    /// Whether it was edited.
    pub edited: bool,
    /// When the edit shown was sent (Unix ms), so that an older edit arriving later is not
    /// shown over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<u64>,
    /// Whether it was deleted.
    #[serde(default)]
    pub deleted: bool,
    /// Reactions: `:name:` → senders.
    #[serde(default)]
    pub reactions: Map<String, Value>,
}

/// A packet received and accepted, as `receive` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Received {
    /// Packet hash.
    pub hash: String,
    /// Contact name of the sender (or of the recipient, for our own copies), if known.
    pub contact: Option<String>,
    /// Whether we sent it (from another device of ours): `contact` is then whom to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_me: bool,
    /// Sender's public key.
    pub sender: String,
    /// Channel.
    pub channel_id: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Content.
    pub content: String,
    /// Message id.
    pub id: String,
    /// Timestamp.
    pub timestamp: String,
    /// The group it was sent in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For a reaction: what it shows, when it is in our reactions database (else it does not
    /// appear in the history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// For a ring (a direct message with [`CALL_UNTIL`]): until when the caller waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_until: Option<String>,
}

/// A packet that could not be accepted (it never stops a receive).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Packet hash, when the packet had one.
    pub hash: Option<String>,
    /// Why.
    pub reason: String,
}

/// What one `receive` did.
#[derive(Debug, Default)]
pub struct ReceiveReport {
    /// New, verified messages.
    pub received: Vec<Received>,
    /// Packets skipped, with the reason: the first [`MAX_REJECTED_KEPT`] (anyone can fill an
    /// inbox with junk, and a relay can answer with as much as it likes).
    pub rejected: Vec<Rejected>,
    /// Packets skipped beyond those in `rejected`.
    pub rejected_more: usize,
    /// Why the receive stopped early, when it had handled packets before: they are filed and
    /// counted as handled, so they are here to be shown all the same.
    pub interrupted: Option<MessagingError>,
    /// More is waiting at a relay than one receive takes ([`MAX_RECEIVE_CONTENT_BYTES`]):
    /// receive again.
    pub more_waiting: bool,
}

/// Most message content one receive keeps (and shows): past it, it stops after the page at
/// hand and the next receive goes on from there. A relay can hold, and answer with, far more
/// than fits in memory.
pub const MAX_RECEIVE_CONTENT_BYTES: usize = 256 << 20;

/// Skipped packets a [`ReceiveReport`] describes one by one; more are counted.
pub const MAX_REJECTED_KEPT: usize = 100;

impl ReceiveReport {
    /// Notes a skipped packet.
    fn reject(&mut self, rejected: Rejected) {
        if self.rejected.len() < MAX_REJECTED_KEPT {
            self.rejected.push(rejected);
        } else {
            self.rejected_more += 1;
        }
    }

    /// Packets skipped in all.
    pub fn skipped(&self) -> usize {
        self.rejected.len() + self.rejected_more
    }

    /// The report, and apart from it the failure that interrupted it.
    pub fn split(mut self) -> (Self, Option<MessagingError>) {
        let failure = self.interrupted.take();
        (self, failure)
    }
}

/// What `send` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendReport {
    /// The message id.
    pub id: String,
    /// The packet hash.
    pub hash: String,
    /// The channel.
    pub channel_id: String,
    /// Whether the copy for our other devices was sent.
    pub copied_to_self: bool,
    /// Group members the message could not be sent to (it went to the others, and is in
    /// the history); empty when it reached everyone.
    pub undelivered: Vec<Undelivered>,
}

/// A group member a message could not be sent to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undelivered {
    /// The member's key (canonical).
    pub member: String,
    /// The contact's name, when the member is one.
    pub name: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// A message sealed for a direct link, by [`Messenger::seal_direct`].
#[derive(Debug, Clone)]
pub struct DirectPacket {
    /// The packet for the peer, as `/send` would carry it.
    pub packet: Value,
    /// The message object, for [`Messenger::seal_copy_for_self`].
    pub object: Value,
    /// The recipient's key (canonical), for the copy's `to`.
    pub recipient: String,
    /// What was sent.
    pub report: SendReport,
    /// The packet's hash, marked seen when the message is filed.
    hash: PacketHash,
}

/// Messaging for one identity.
pub struct Messenger<'a> {
    /// Local database.
    pub db: &'a ClientDb,
    /// HTTP to relays.
    pub transport: &'a Transport,
    /// Relay roles.
    pub servers: &'a Servers<'a>,
    /// Contacts.
    pub contacts: &'a Contacts<'a>,
    /// Who we are.
    pub me: &'a Identity,
    /// Further keys we receive on (`[identity] receive_keys`).
    pub receive_keys: &'a [Identity],
}

/// How far a receive has come, for a progress display: updated as it goes, read from
/// another thread.
#[derive(Debug, Default)]
pub struct ReceiveProgress {
    /// New packets fetched so far, to open.
    pub found: AtomicUsize,
    /// Of those, how many are opened.
    pub opened: AtomicUsize,
}

/// Opens `packets` (hash, message, signature) on every core; results in input order.
/// `opened` counts them as they are done (for a progress display).
pub fn open_all(
    packets: &[(PacketHash, &str, &str)],
    me: &Identity,
    opened: &AtomicUsize,
) -> Vec<Result<Opened, OpenError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(packets.len().max(1));
    let chunk = packets.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = packets
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, message, signature)| {
                            let result = open(message, signature, me);
                            opened.fetch_add(1, Ordering::Relaxed);
                            result
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("opening does not panic"))
            .collect()
    })
}

fn dm_key(fp: &str) -> String {
    format!("dm:{fp}")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Messenger<'_> {
    /// The channel of the direct conversation with `contact` (made on first use).
    fn dm_channel(&self, contact: &Contact) -> Result<String, MessagingError> {
        self.conversation_channel(&contact.fingerprint, None)
    }

    /// The channel our history keeps the direct conversation with the key whose fingerprint
    /// is `fingerprint` under: the one we use already, else `start` (the channel of the
    /// packet that starts it), else a new one.
    fn conversation_channel(
        &self,
        fingerprint: &str,
        start: Option<&str>,
    ) -> Result<String, MessagingError> {
        let key = dm_key(fingerprint);
        if let Some(c) = self.db.setting(&key)? {
            return Ok(c);
        }
        let channel = start.map_or_else(new_id, str::to_owned);
        self.db.set_setting(&key, &channel)?;
        Ok(channel)
    }

    /// Sends a message of `kind` to `contact`; `target` is the message an edit, delete or
    /// reaction is about.
    pub fn send(
        &self,
        contact: &Contact,
        kind: Kind,
        content: &str,
        target: Option<&str>,
        now_ms: u64,
    ) -> Result<SendReport, MessagingError> {
        self.send_extended(contact, kind, content, target, now_ms, Map::new())
    }

    /// Rings `contact` for a call through the relays: a message saying so, with the
    /// extension [`CALL_UNTIL`] (when we stop waiting), which jasper shows as a call to answer
    /// and other clients as the message's text.
    pub fn ring(
        &self,
        contact: &Contact,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<SendReport, MessagingError> {
        let mut extensions = Map::new();
        extensions.insert(CALL_UNTIL.into(), json!(rfc3339_ms(until_ms)));
        self.send_extended(contact, Kind::Message, RING_TEXT, None, now_ms, extensions)
    }

    /// [`Self::send`] with `extensions` in the message object.
    fn send_extended(
        &self,
        contact: &Contact,
        kind: Kind,
        content: &str,
        target: Option<&str>,
        now_ms: u64,
        extensions: Map<String, Value>,
    ) -> Result<SendReport, MessagingError> {
        let recipient = PublicKey::parse(&contact.public_key, 2048)
            .map_err(|e| MessagingError::Seal(e.to_string()))?;
        let channel = self.dm_channel(contact)?;
        let id = self.message_id(kind, content, target, &channel)?;
        // Our inbox's relay is chosen first, so that no TX relay can end up being it.
        self.servers.rx_for(&self.me.public().fingerprint())?;
        let timestamp = rfc3339_ms(now_ms);
        let mut object = json!({
            "sender": self.me.public().canonical(),
            "channel_id": channel,
            "type": kind,
            "content": content,
            "id": id,
            "timestamp": timestamp,
        });
        object
            .as_object_mut()
            .expect("an object")
            .extend(extensions);
        let hash = self.deliver(&object, &recipient)?;
        // Our other devices learn what we sent from a copy to our own key.
        object["to"] = json!([recipient.canonical()]);
        let copied_to_self = self.send_to_self(&object).is_ok();
        self.file(&object, self.me.public(), &channel)?;
        Ok(SendReport {
            id,
            hash: hash.to_string(),
            channel_id: channel,
            copied_to_self,
            undelivered: Vec::new(),
        })
    }

    /// The `id` of a message of `kind` with `content`: a new one for a message, else `target`
    /// once it is known to be in the history of `channel` (and ours, for an edit or a deletion).
    fn message_id(
        &self,
        kind: Kind,
        content: &str,
        target: Option<&str>,
        channel: &str,
    ) -> Result<String, MessagingError> {
        check_content(content)?;
        if kind == Kind::React && !is_reaction(content) {
            return Err(MessagingError::Usage(format!(
                "{content:?} is not a reaction: write :name:, e.g. :thumbsup:"
            )));
        }
        let id = match (kind, target) {
            (Kind::Message, _) => return Ok(new_id()),
            (_, Some(t)) => t.to_owned(),
            (_, None) => return Err(MessagingError::Usage("which message? give its id".into())),
        };
        let entry = self.db.message_in(channel, &id)?.ok_or_else(|| {
            MessagingError::Usage(format!(
                "no message {id} in this conversation; see `jasper history` of it"
            ))
        })?;
        let entry: Entry =
            serde_json::from_slice(&entry).map_err(|e| MessagingError::Usage(e.to_string()))?;
        if kind != Kind::React && entry.sender != self.me.public().canonical() {
            return Err(MessagingError::Usage(
                "only your own messages can be edited or deleted".into(),
            ));
        }
        Ok(id)
    }

    /// Sends a message of `kind` in `conversation`: [`Self::send`] for a contact,
    /// [`Self::send_group`] for a group.
    pub fn send_to(
        &self,
        conversation: &Conversation,
        kind: Kind,
        content: &str,
        target: Option<&str>,
        now_ms: u64,
    ) -> Result<SendReport, MessagingError> {
        match conversation {
            Conversation::Direct(contact) => self.send(contact, kind, content, target, now_ms),
            Conversation::Group(group) => self.send_group(group, kind, content, target, now_ms),
        }
    }

    /// Seals `object` to `recipient` and sends it through the recipient's TX relay.
    fn deliver(&self, object: &Value, recipient: &PublicKey) -> Result<PacketHash, MessagingError> {
        let (packet, hash) = self.seal_packet(object, recipient)?;
        let relay = self.servers.tx_for(&recipient.fingerprint())?;
        self.transport.send(&relay, &packet)?;
        Ok(hash)
    }

    /// Seals `object` to `recipient` into a packet, as `/send` carries it.
    fn seal_packet(
        &self,
        object: &Value,
        recipient: &PublicKey,
    ) -> Result<(Value, PacketHash), MessagingError> {
        let sealed = seal(object.to_string().as_bytes(), self.me, recipient)
            .map_err(MessagingError::Seal)?;
        let packet = json!({
            "recipient": recipient.canonical(),
            "message": sealed.message,
            "hash": sealed.hash.to_string(),
            "signature": sealed.signature,
        });
        Ok((packet, sealed.hash))
    }

    /// Seals a new message to `contact` for a direct (transparent-mode) link instead of a
    /// relay. It is filed in the history by [`Messenger::file_direct`] once the peer has it.
    pub fn seal_direct(
        &self,
        contact: &Contact,
        content: &str,
        now_ms: u64,
    ) -> Result<DirectPacket, MessagingError> {
        check_content(content)?;
        let recipient = PublicKey::parse(&contact.public_key, 2048)
            .map_err(|e| MessagingError::Seal(e.to_string()))?;
        let channel = self.dm_channel(contact)?;
        let id = new_id();
        let object = json!({
            "sender": self.me.public().canonical(),
            "channel_id": channel,
            "type": Kind::Message,
            "content": content,
            "id": id,
            "timestamp": rfc3339_ms(now_ms),
        });
        let (packet, hash) = self.seal_packet(&object, &recipient)?;
        Ok(DirectPacket {
            packet,
            object,
            recipient: recipient.canonical().to_owned(),
            report: SendReport {
                id,
                hash: hash.to_string(),
                channel_id: channel,
                copied_to_self: false,
                undelivered: Vec::new(),
            },
            hash,
        })
    }

    /// Files a message sealed by [`Messenger::seal_direct`] that the peer now has: in the
    /// history, its packet marked seen (a copy coming back through the relays is not shown
    /// again).
    pub fn file_direct(&self, sent: &DirectPacket) -> Result<(), MessagingError> {
        self.db.mark_seen(&sent.hash.0)?;
        self.file(&sent.object, self.me.public(), &sent.report.channel_id)?;
        Ok(())
    }

    /// Seals the copy of a message sent over a direct link that our other devices learn it
    /// from (naming the recipient in `to`), as `send` does through the relays; this device has
    /// it already. Returns the packet for our own inbox.
    pub fn seal_copy_for_self(&self, sent: &DirectPacket) -> Result<Value, MessagingError> {
        let mut object = sent.object.clone();
        object["to"] = json!([sent.recipient]);
        let (copy, hash) = self.seal_packet(&object, self.me.public())?;
        self.db.mark_seen(&hash.0)?;
        Ok(copy)
    }

    /// Opens a packet that came over a direct link from `peer`, and files it like a packet
    /// from a relay. `Ok(None)`: already seen. `Err`: refused, with the reason.
    pub fn accept_direct(
        &self,
        packet: &[u8],
        peer: &PublicKey,
    ) -> Result<Option<Received>, String> {
        let packet: Value =
            serde_json::from_slice(packet).map_err(|_| "not a JSON packet".to_owned())?;
        let (Some(message), Some(signature)) =
            (packet["message"].as_str(), packet["signature"].as_str())
        else {
            return Err("not a packet (no message or signature)".into());
        };
        let hash = PacketHash::of_message(message);
        if self.db.seen(&hash.0).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let opened = open(message, signature, self.me).map_err(|e| e.to_string())?;
        if &opened.sender != peer {
            return Err("signed by someone other than the peer of this link".into());
        }
        match self.accept_opened(hash, opened) {
            Ok(received) => {
                // Filed: shown whatever happens next. Not marked seen, the packet may come
                // again through the relays and be shown twice; that beats not at all.
                if let Err(e) = self.db.mark_seen(&hash.0) {
                    tracing::warn!(error = %e, "a message from the direct link could not be marked as seen");
                }
                Ok(Some(received))
            }
            Err(NotFiled::Refused(reason)) => {
                self.db.mark_seen(&hash.0).map_err(|e| e.to_string())?;
                Err(reason)
            }
            Err(NotFiled::Local(e)) => Err(e.to_string()),
        }
    }

    /// Sends a message of `kind` to every member of `group`, one packet each through each
    /// member's own TX relay, in the group's channel. `target` is the message an edit, delete
    /// or reaction is about.
    pub fn send_group(
        &self,
        group: &Group,
        kind: Kind,
        content: &str,
        target: Option<&str>,
        now_ms: u64,
    ) -> Result<SendReport, MessagingError> {
        if group.left {
            return Err(MessagingError::Usage(format!(
                "you are no longer in the group {:?}",
                group.name
            )));
        }
        if group.members.is_empty() {
            return Err(MessagingError::Usage(format!(
                "nobody else is in the group {:?} any more: `jasper group add {}` someone, or \
                 `jasper group leave {}`",
                group.name, group.name, group.name
            )));
        }
        let id = self.message_id(kind, content, target, &group.channel_id)?;
        let mut object = json!({
            "sender": self.me.public().canonical(),
            "channel_id": group.channel_id,
            "type": kind,
            "content": content,
            "id": id,
            "timestamp": rfc3339_ms(now_ms),
        });
        // Every message carries the member list as we know it, so that a member who has
        // not seen the group yet (packets reach relays in any order) can file it.
        let mut everyone = group.members.clone();
        everyone.push(self.me.public().canonical().to_owned());
        everyone.sort();
        object["members"] = json!(everyone);
        object["name"] = json!(group.name);
        if group.members_at != 0 {
            object[MEMBERS_AT] = json!(rfc3339_ms(group.members_at));
        }
        self.send_to_members(object, &group.members, &group.channel_id)
    }

    /// Tells `group` who is in it from now on: `everyone` (with our key, unless we leave).
    /// The message (`content`, with `members` and `name` as PROTOCOL.md §3 gives them, and
    /// [`MEMBERS_AT`] now) goes to the members before and after the change, so that those who
    /// leave learn it too. Creating a group is changing one that had no members. Returns the
    /// group as now kept.
    pub fn change_group(
        &self,
        group: &Group,
        everyone: &[String],
        content: &str,
        now_ms: u64,
    ) -> Result<(Group, SendReport), MessagingError> {
        check_content(content)?;
        let me = self.me.public().canonical();
        let mut everyone: Vec<String> = everyone.to_vec();
        everyone.sort();
        everyone.dedup();
        let others: Vec<String> = everyone.iter().filter(|k| *k != me).cloned().collect();
        if others.len() > MAX_MEMBERS {
            return Err(MessagingError::Usage(format!(
                "a group has at most {MAX_MEMBERS} members besides you"
            )));
        }
        let mut told: Vec<String> = group.members.iter().chain(&others).cloned().collect();
        told.sort();
        told.dedup();
        let leaving = !everyone.iter().any(|k| k == me);
        // Leaving a group nobody else is in any more tells only our other devices.
        if told.is_empty() && !leaving {
            return Err(MessagingError::Usage(
                "a group needs at least one member besides you".into(),
            ));
        }
        let object = json!({
            "sender": me,
            "channel_id": group.channel_id,
            "type": Kind::Message,
            "content": content,
            "id": new_id(),
            "timestamp": rfc3339_ms(now_ms),
            "members": everyone,
            "name": group.name,
            MEMBERS_AT: rfc3339_ms(now_ms),
        });
        let report = self.send_to_members(object, &told, &group.channel_id)?;
        let group = Groups::new(self.db).save(Group {
            left: leaving,
            members: others,
            members_at: now_ms,
            ..group.clone()
        })?;
        Ok((group, report))
    }

    /// Sends `object` to each of `members` through their own TX relays and a copy to our own
    /// key, and files it in `channel`.
    fn send_to_members(
        &self,
        mut object: Value,
        members: &[String],
        channel: &str,
    ) -> Result<SendReport, MessagingError> {
        self.servers.rx_for(&self.me.public().fingerprint())?;
        let mut last_hash = String::new();
        // Every member is tried: one whose relay refuses must not keep the rest from it.
        let mut undelivered = Vec::new();
        let mut first_error = None;
        for member in members {
            let recipient = PublicKey::parse(member, 2048);
            let sent = match &recipient {
                Ok(recipient) => self.deliver(&object, recipient),
                Err(e) => Err(MessagingError::Seal(e.to_string())),
            };
            match sent {
                Ok(hash) => last_hash = hash.to_string(),
                Err(e) => {
                    let name = recipient
                        .ok()
                        .and_then(|r| self.contacts.by_key(&r).ok().flatten())
                        .map(|c| c.name);
                    undelivered.push(Undelivered {
                        member: member.clone(),
                        name,
                        error: e.to_string(),
                    });
                    first_error.get_or_insert(e);
                }
            }
        }
        // Sent to nobody: an error, as a direct message's failure is.
        if undelivered.len() == members.len()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        object["to"] = json!(members);
        let copied_to_self = self.send_to_self(&object).is_ok();
        self.file(&object, self.me.public(), channel)?;
        Ok(SendReport {
            id: object["id"].as_str().unwrap_or_default().to_owned(),
            hash: last_hash,
            channel_id: channel.to_owned(),
            copied_to_self,
            undelivered,
        })
    }

    fn send_to_self(&self, object: &Value) -> Result<(), MessagingError> {
        let (packet, hash) = self.seal_packet(object, self.me.public())?;
        let relay = self
            .servers
            .copies_to_self(&self.me.public().fingerprint())?;
        self.transport.send(&relay, &packet)?;
        // This device filed it already.
        self.db.mark_seen(&hash.0)?;
        Ok(())
    }

    /// Fetches our inbox from our RX relay (from the last cursor where the relay offers one),
    /// opens and files what is new. Bad packets are reported, never fatal.
    pub fn receive(&self) -> Result<ReceiveReport, MessagingError> {
        self.receive_tracked(&ReceiveProgress::default())
    }

    /// [`Self::receive`], counting in `progress` as it goes (read it from another thread).
    pub fn receive_tracked(
        &self,
        progress: &ReceiveProgress,
    ) -> Result<ReceiveReport, MessagingError> {
        let mut report = ReceiveReport::default();
        // A crash mid-receive only means fetching again: flush once at the end.
        self.db.set_relaxed(true);
        let mut result = Ok(());
        // Every key we receive on has its own RX relay.
        for who in std::iter::once(self.me).chain(self.receive_keys) {
            result = self.receive_for(who, &mut report, progress);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            let now = crate::client::now_ms();
            result = self
                .db
                .forget_seen_before(now.saturating_sub(SEEN_KEEP_MS), FORGET_PER_RECEIVE)
                .and_then(|_| {
                    self.db.forget_early_actions(|kept| {
                        serde_json::from_slice::<EarlyAction>(kept)
                            .map_or(true, |k| now.saturating_sub(k.kept_at) > EARLY_KEEP_MS)
                    })
                })
                .map(drop)
                .map_err(MessagingError::from);
        }
        self.db.set_relaxed(false);
        self.db.flush()?;
        match result {
            Ok(()) => Ok(report),
            Err(e) if report.received.is_empty() && report.skipped() == 0 => Err(e),
            Err(e) => {
                report.interrupted = Some(e);
                Ok(report)
            }
        }
    }

    fn receive_for(
        &self,
        who: &Identity,
        report: &mut ReceiveReport,
        progress: &ReceiveProgress,
    ) -> Result<(), MessagingError> {
        let key = who.public();
        let relay = self.servers.rx_for(&key.fingerprint())?;
        let cursor_key = format!("cursor:{}:{}", relay.authority(), key.fingerprint());
        let use_cursor = self.servers.speaks_cursor(&relay)?;
        self.receive_pages(who, &relay, &cursor_key, use_cursor, report, progress)
    }

    fn receive_pages(
        &self,
        who: &Identity,
        relay: &crate::proto::ServerEntry,
        cursor_key: &str,
        use_cursor: bool,
        report: &mut ReceiveReport,
        progress: &ReceiveProgress,
    ) -> Result<(), MessagingError> {
        let own = who.public();
        let mut kept = 0;
        for _ in 0..1000 {
            let page_start = report.received.len();
            let since = if use_cursor {
                self.db.setting(cursor_key)?
            } else {
                None
            };
            let page = self
                .transport
                .fetch(relay, own.canonical(), since.as_deref())?;
            // New packets only, each once.
            let mut fresh = Vec::new();
            let mut in_page = std::collections::HashSet::new();
            for packet in &page.messages {
                let (Some(message), Some(signature)) =
                    (packet["message"].as_str(), packet["signature"].as_str())
                else {
                    report.reject(Rejected {
                        hash: packet["hash"].as_str().map(str::to_owned),
                        reason: "not a packet (no message or signature)".into(),
                    });
                    continue;
                };
                let hash = PacketHash::of_message(message);
                if self.db.seen(&hash.0)?
                    || self.db.seen(&bad_copy_key(&hash, signature))?
                    || !in_page.insert(hash)
                {
                    continue;
                }
                fresh.push((hash, message, signature));
            }
            // The RSA work, on every core.
            progress.found.fetch_add(fresh.len(), Ordering::Relaxed);
            let opened = open_all(&fresh, who, &progress.opened);
            for ((hash, _, signature), result) in fresh.iter().zip(opened) {
                let reason = match result {
                    Err(e) if signature_at_fault(&e) => {
                        self.db.mark_seen(&bad_copy_key(hash, signature))?;
                        e.to_string()
                    }
                    Err(e) => {
                        self.db.mark_seen(&hash.0)?;
                        e.to_string()
                    }
                    Ok(opened) => match self.accept_opened(*hash, opened) {
                        Ok(r) => {
                            // Filed: reported even if marking it seen fails next.
                            report.received.push(r);
                            self.db.mark_seen(&hash.0)?;
                            continue;
                        }
                        Err(NotFiled::Refused(reason)) => {
                            self.db.mark_seen(&hash.0)?;
                            reason
                        }
                        // Not seen, and the cursor stays: taken again next time.
                        Err(NotFiled::Local(e)) => return Err(e),
                    },
                };
                report.reject(Rejected {
                    hash: Some(hash.to_string()),
                    reason,
                });
            }
            if let (true, Some(c)) = (use_cursor, &page.cursor) {
                self.db.set_setting(cursor_key, c)?;
            }
            if !(use_cursor && page.more) {
                break;
            }
            // "More" must come with a cursor that moved, or the same page would be asked for
            // again and again.
            if page.cursor.is_none() || page.cursor == since {
                return Err(TransportError::Malformed {
                    relay: relay.to_string(),
                    reason: "it says more is waiting but gives no new cursor".into(),
                }
                .into());
            }
            kept += report.received[page_start..]
                .iter()
                .map(|r| r.content.len())
                .sum::<usize>();
            if kept > MAX_RECEIVE_CONTENT_BYTES {
                report.more_waiting = true;
                break;
            }
        }
        Ok(())
    }

    /// Files an opened, verified packet; `Err` (with a reason) when it must be skipped.
    fn accept_opened(&self, hash: PacketHash, opened: Opened) -> Result<Received, NotFiled> {
        let object = opened.object;
        let sender = opened.sender;
        let text = |f: &str, max: usize| -> Result<String, String> {
            match object.get(f).and_then(Value::as_str) {
                Some(s) if s.len() <= max => Ok(s.to_owned()),
                Some(_) => Err(format!("`{f}` is too long")),
                None => Err(format!("no `{f}`")),
            }
        };
        let kind: Kind = serde_json::from_value(object["type"].clone())
            .map_err(|_| "unknown `type`".to_owned())?;
        // Ids name database entries and times order them: only the forms PROTOCOL.md §3
        // gives are taken.
        let uuid = |f: &str| -> Result<String, String> {
            let value = text(f, MAX_ID_CHARS)?;
            match uuid::Uuid::parse_str(&value) {
                Ok(u) if u.hyphenated().to_string() == value => Ok(value),
                _ => Err(format!("`{f}` is not a lowercase hyphenated UUID")),
            }
        };
        let channel_id = uuid("channel_id")?;
        let id = uuid("id")?;
        let content = text("content", MAX_CONTENT_BYTES)?;
        let timestamp = text("timestamp", 64)?;
        let sent_at = parse_rfc3339_ms(&timestamp).ok_or("`timestamp` is not an RFC 3339 time")?;
        let now = crate::client::now_ms();
        if sent_at > now + MAX_SENT_AHEAD_MS {
            return Err(format!(
                "its timestamp {timestamp} is more than a day ahead of this computer's clock"
            )
            .into());
        }
        let age_ms = now.saturating_sub(sent_at);
        if age_ms > STALE_AFTER_MS {
            return Err(format!(
                "sent {} days ago: older than a relay keeps packets, so sent again (replayed) by \
                 someone; jasper refuses messages over {} days old",
                age_ms / (24 * 3600 * 1000),
                STALE_AFTER_MS / (24 * 3600 * 1000)
            )
            .into());
        }
        if kind == Kind::React && !is_reaction(&content) {
            return Err("a reaction that is not :name:".into());
        }
        // Whether the group the message is in (if any) makes its sender someone we know.
        let mut group_vouches = false;
        let (contact, group, channel_id) =
            match self.group_of(&object, &sender, &channel_id, sent_at)? {
                Some(group) => {
                    // A group a stranger started vouches for nobody in it.
                    let contact_keys = self.contacts.keys()?;
                    group_vouches = !group.counts_as_strangers(&|k| contact_keys.contains(k));
                    (self.contacts.by_key(&sender)?, Some(group.name), channel_id)
                }
                None => {
                    // Our own copy (from another device) is filed under the conversation with
                    // its recipient.
                    let counterpart = if &sender == self.me.public() {
                        object["to"][0]
                            .as_str()
                            .and_then(|k| PublicKey::parse(k, 2048).ok())
                            .ok_or("our own copy names no recipient")?
                    } else {
                        sender.clone()
                    };
                    let contact = self.contacts.by_key(&counterpart)?;
                    // A direct conversation is filed by whom it is with, not by the channel the
                    // packet names: two people who write first at the same time each start a
                    // channel, and both halves belong to one history (also for a sender who
                    // becomes a contact only later).
                    let channel = self.conversation_channel(
                        &counterpart.fingerprint().to_string(),
                        Some(&channel_id),
                    )?;
                    (contact, None, channel)
                }
            };
        match self.file(&object, &sender, &channel_id)? {
            Filed::Applied => {}
            Filed::Early => {
                let known = group_vouches || contact.is_some() || &sender == self.me.public();
                self.keep_early(hash, &object, &sender, &channel_id, !known)?
            }
        }
        let emoji = match kind {
            Kind::React => Reactions::new(self.db).emoji(&content)?,
            _ => None,
        };
        // A ring is a direct message from someone else (our own copy of one we sent is just
        // its text); one that names no valid time is just its text too.
        let call_until = object
            .get(CALL_UNTIL)
            .and_then(Value::as_str)
            .filter(|t| {
                kind == Kind::Message
                    && group.is_none()
                    && &sender != self.me.public()
                    && t.len() <= 64
            })
            .and_then(|t| parse_rfc3339_ms(t).map(rfc3339_ms));
        Ok(Received {
            hash: hash.to_string(),
            contact: contact.map(|c| c.name),
            from_me: &sender == self.me.public(),
            sender: sender.canonical().to_owned(),
            channel_id,
            kind,
            content,
            id,
            timestamp,
            group,
            emoji,
            call_until,
        })
    }

    /// The group a received message belongs to: a known group channel, or a new group when
    /// the message names its `members`. The member list with the latest [`MEMBERS_AT`] wins
    /// (one set at or before the message was sent, and not in the future); a group takes
    /// messages only from its members, and none once we are out of it.
    fn group_of(
        &self,
        object: &Value,
        sender: &PublicKey,
        channel_id: &str,
        sent_at: u64,
    ) -> Result<Option<Group>, NotFiled> {
        let groups = Groups::new(self.db);
        let me = self.me.public().canonical();
        let listed = object
            .get("members")
            .and_then(Value::as_array)
            .map(|list| members_listed(list))
            .transpose()?;
        let listed_at = object
            .get(MEMBERS_AT)
            .and_then(Value::as_str)
            .and_then(parse_rfc3339_ms)
            .filter(|&at| at <= sent_at && at <= super::now_ms() + MAX_CLOCK_AHEAD_MS);
        if let Some(mut group) = groups.by_channel(channel_id)? {
            let from_member =
                sender.canonical() == me || group.members.iter().any(|k| k == sender.canonical());
            if !from_member {
                return Err(
                    format!("from someone who is not in the group {:?}", group.name).into(),
                );
            }
            let changed = match (listed, listed_at) {
                (Some(everyone), Some(at)) if at > group.members_at => {
                    group.left = !everyone.iter().any(|k| k == me);
                    group.members = everyone.into_iter().filter(|k| k != me).collect();
                    group.members_at = at;
                    group = groups.save(group)?;
                    true
                }
                _ => false,
            };
            // The message that takes us out is the last one shown.
            if group.left && !changed {
                return Err(format!(
                    "a message in the group {:?}, which you are no longer in",
                    group.name
                )
                .into());
            }
            return Ok(Some(group));
        }
        let Some(everyone) = listed else {
            return Ok(None);
        };
        if !everyone.iter().any(|k| k == me) || !everyone.iter().any(|k| k == sender.canonical()) {
            return Err("a message about a group that you or its sender are not in".into());
        }
        // A group of ours we forgot comes back only with a member list set after we forgot it.
        if let Some(at) = groups.forgotten_at(channel_id)?
            && listed_at.is_none_or(|listed| listed <= at)
        {
            return Err("a message of a group you forgot".into());
        }
        // A new group must not take over a conversation we have (a direct one, say).
        if self.db.has_history(channel_id)? {
            return Err("a new group on the channel of a conversation you have already".into());
        }
        let contact_keys = self.contacts.keys()?;
        let from_stranger = !contact_keys.contains(sender.canonical()) && sender.canonical() != me;
        if let Some(why) =
            groups.refusal_for_new(from_stranger, &|key| contact_keys.contains(key))?
        {
            return Err(format!("a new group, not kept: {why}").into());
        }
        let members: Vec<String> = everyone.into_iter().filter(|k| k != me).collect();
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| super::contacts::is_valid_name(n))
            .map_or_else(
                || format!("group {}", &channel_id.chars().take(8).collect::<String>()),
                str::to_owned,
            );
        let group = groups.save(Group {
            name,
            channel_id: channel_id.to_owned(),
            members,
            members_at: listed_at.unwrap_or(0),
            left: false,
            from_stranger,
            started_by: from_stranger.then(|| sender.canonical().to_owned()),
        })?;
        Ok(Some(group))
    }

    /// Applies a verified message object from `sender` to the history of `channel`.
    ///
    /// An edit, deletion or reaction applies only to a message of the same conversation (one
    /// naming a message elsewhere is refused: a member removed from a group must not reach
    /// the group's history through a direct message). One that names a message not here yet
    /// is [`Filed::Early`]: the caller keeps it for when the message comes, since packets
    /// reach an inbox in no particular order.
    fn file(
        &self,
        object: &Value,
        sender: &PublicKey,
        channel: &str,
    ) -> Result<Filed, MessagingError> {
        let s = |f: &str| object[f].as_str().unwrap_or_default().to_owned();
        let kind: Kind = serde_json::from_value(object["type"].clone())
            .map_err(|_| MessagingError::Usage("unknown type".into()))?;
        let id = s("id");
        match kind {
            Kind::Message => {
                let entry = Entry {
                    id: id.clone(),
                    sender: sender.canonical().to_owned(),
                    content: s("content"),
                    timestamp: s("timestamp"),
                    edited: false,
                    edited_at: None,
                    deleted: false,
                    reactions: Map::new(),
                };
                let ts = parse_rfc3339_ms(&entry.timestamp).unwrap_or(0);
                let fresh = self.db.put_message(
                    channel,
                    ts,
                    &id,
                    &serde_json::to_vec(&entry).expect("entry serializes"),
                )?;
                if fresh {
                    for early in self.db.take_early_actions(&id)? {
                        if let Err(e) = self.file_early(&early) {
                            tracing::debug!(error = %e, "an early action did not apply");
                        }
                    }
                } else if self
                    .db
                    .message(&id)?
                    .and_then(|json| serde_json::from_slice::<Entry>(&json).ok())
                    .is_some_and(|known| known.sender != entry.sender)
                {
                    // Someone else's message has this id (copied, to shadow the real one):
                    // said so, rather than shown as received and filed nowhere.
                    return Err(MessagingError::Usage(format!(
                        "its id {id} is another sender's message already"
                    )));
                }
            }
            Kind::Edit | Kind::Delete | Kind::React => {
                let Some(json) = self.db.message_in(channel, &id)? else {
                    if self.db.message(&id)?.is_some() {
                        return Err(MessagingError::Usage(
                            "it names a message of another conversation".into(),
                        ));
                    }
                    return Ok(Filed::Early);
                };
                let Ok(mut entry) = serde_json::from_slice::<Entry>(&json) else {
                    return Ok(Filed::Applied);
                };
                let sent_at = parse_rfc3339_ms(&s("timestamp"));
                // What changes nothing is refused with its reason, so that it is not reported
                // (and shown) as done.
                let refuse = |why: &str| Err(MessagingError::Usage(why.to_owned()));
                match kind {
                    // Only the author edits or deletes.
                    Kind::Edit | Kind::Delete if entry.sender != sender.canonical() => {
                        return refuse("it changes a message of someone else");
                    }
                    // A deleted message stays deleted, whatever edit comes after.
                    Kind::Edit if entry.deleted => {
                        return refuse("it edits a message that was deleted");
                    }
                    // An edit older than the one shown (they too arrive in any order).
                    Kind::Edit if sent_at.is_some() && sent_at < entry.edited_at => {
                        return refuse("a later edit of that message is shown already");
                    }
                    Kind::Edit => {
                        entry.content = s("content");
                        entry.edited = true;
                        entry.edited_at = sent_at;
                    }
                    Kind::Delete => {
                        entry.deleted = true;
                        entry.content.clear();
                    }
                    Kind::React => {
                        let reaction = s("content");
                        // Bounded: a sender inventing names could grow one entry without end.
                        let room = entry.reactions.len() < MAX_REACTIONS_PER_MESSAGE
                            || entry.reactions.contains_key(&reaction);
                        if !is_reaction(&reaction) || !room {
                            return refuse(
                                "that message has as many kinds of reaction as it keeps",
                            );
                        }
                        let who = entry.reactions.entry(reaction).or_insert(json!([]));
                        if let Some(list) = who.as_array_mut()
                            && !list.iter().any(|v| v == sender.canonical())
                        {
                            list.push(json!(sender.canonical()));
                        }
                    }
                    Kind::Message => unreachable!("messages are filed above"),
                }
                self.db
                    .update_message(&id, &serde_json::to_vec(&entry).expect("entry serializes"))?;
            }
        }
        Ok(Filed::Applied)
    }

    /// Files an action kept by [`Self::keep_early`] now that its message is here.
    fn file_early(&self, kept: &[u8]) -> Result<(), MessagingError> {
        let kept: EarlyAction =
            serde_json::from_slice(kept).map_err(|e| MessagingError::Usage(e.to_string()))?;
        let sender = PublicKey::parse(&kept.sender, 2048)
            .map_err(|e| MessagingError::Usage(e.to_string()))?;
        self.file(&kept.object, &sender, &kept.channel).map(drop)
    }

    /// Keeps an action whose message is not here yet (see [`Self::file`]).
    fn keep_early(
        &self,
        hash: PacketHash,
        object: &Value,
        sender: &PublicKey,
        channel: &str,
        from_stranger: bool,
    ) -> Result<(), NotFiled> {
        let kept = EarlyAction {
            object: object.clone(),
            sender: sender.canonical().to_owned(),
            channel: channel.to_owned(),
            kept_at: crate::client::now_ms(),
        };
        let id = object["id"].as_str().unwrap_or_default();
        let json = serde_json::to_vec(&kept).expect("an early action serializes");
        let max = if from_stranger {
            MAX_EARLY_ACTIONS_FROM_STRANGERS
        } else {
            MAX_EARLY_ACTIONS
        };
        match self
            .db
            .keep_early_action(id, &hash.to_string(), &json, max, from_stranger)
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "it names message {id}, which is not here, and {max} such{} are waiting \
                 already",
                if from_stranger {
                    " from people not in your contacts"
                } else {
                    ""
                }
            )
            .into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What [`Messenger::file`] did with a message object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filed {
    /// It is in the history (or had nothing to change there).
    Applied,
    /// An edit, deletion or reaction of a message not here yet.
    Early,
}

/// An edit, deletion or reaction kept until its message comes.
#[derive(Debug, Serialize, Deserialize)]
struct EarlyAction {
    /// The verified message object.
    object: Value,
    /// Who sent it (canonical key).
    sender: String,
    /// The conversation it was filed under.
    channel: String,
    /// When it was kept (Unix ms), to forget it once its message can no longer come.
    kept_at: u64,
}

/// The keys a group message's `members` lists (canonical, sorted, once each; unusable
/// entries left out), or why the list is refused.
fn members_listed(list: &[Value]) -> Result<Vec<String>, String> {
    if list.len() > MAX_MEMBERS + 1 {
        return Err("a group message with too many members".into());
    }
    let mut everyone: Vec<String> = list
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|k| PublicKey::parse(k, 2048).ok())
        .map(|k| k.canonical().to_owned())
        .collect();
    everyone.sort();
    everyone.dedup();
    if everyone.is_empty() {
        return Err("a group message with no usable members".into());
    }
    Ok(everyone)
}

/// The history with `contact`, oldest first, with edits applied and deleted messages left out.
pub fn history(db: &ClientDb, contact: &Contact) -> Result<Vec<Entry>, MessagingError> {
    match db.setting(&dm_key(&contact.fingerprint))? {
        Some(channel) => channel_history(db, &channel),
        None => Ok(Vec::new()),
    }
}

/// A channel's history, oldest first, with edits applied and deleted messages left out.
pub fn channel_history(db: &ClientDb, channel: &str) -> Result<Vec<Entry>, MessagingError> {
    Ok(db
        .channel_messages(channel)?
        .into_iter()
        .filter_map(|j| serde_json::from_slice::<Entry>(&j).ok())
        .filter(|e| !e.deleted)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{MessagingError, NotFiled, ReceiveReport, Rejected, is_reaction};

    #[test]
    fn a_refusal_of_the_packet_is_told_apart_from_a_failure_of_this_device() {
        // Refusals are final (the packet is marked seen); a database failure is not (receive
        // stops, and the packet is taken again next time).
        let refused = NotFiled::from(MessagingError::Usage("an edit by someone else".into()));
        assert!(matches!(refused, NotFiled::Refused(r) if r == "an edit by someone else"));
        let db = super::super::db::DbError::Engine("disk full".into());
        assert!(matches!(NotFiled::from(db), NotFiled::Local(_)));
        let db = super::super::db::DbError::Engine("disk full".into());
        let wrapped = NotFiled::from(MessagingError::Db(db));
        assert!(matches!(wrapped, NotFiled::Local(MessagingError::Db(_))));
    }

    #[test]
    fn a_receive_keeps_a_bounded_list_of_skipped_packets_and_counts_the_rest() {
        let mut report = ReceiveReport::default();
        for n in 0..20_000 {
            report.reject(Rejected {
                hash: Some(format!("{n}")),
                reason: "junk".into(),
            });
        }
        assert_eq!(report.rejected.len(), super::MAX_REJECTED_KEPT);
        assert_eq!(report.rejected[0].hash.as_deref(), Some("0"));
        assert_eq!(report.skipped(), 20_000);
    }

    #[test]
    fn reactions_are_shortcodes_between_colons() {
        for good in [":thumbsup:", ":+1:", ":flag-us:", ":smile_cat:", ":a:"] {
            assert!(is_reaction(good), "{good}");
        }
        let long = format!(":{}:", "a".repeat(63));
        for bad in [
            "thumbsup",
            "::",
            ":",
            ":a",
            "a:",
            ": a:",
            ":a\u{1b}[2J:",
            ":é:",
            ":a:b:",
            &long,
        ] {
            assert!(!is_reaction(bad), "{bad:?}");
        }
        assert!(is_reaction(&format!(":{}:", "a".repeat(62))));
    }
}
