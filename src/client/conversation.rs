//! Conversations as people name them: a contact's name or a group's, and the messages in one
//! named by their id or by a unique start of it (as `history` prints them).

use super::contacts::{Contact, ContactError, Contacts};
use super::db::ClientDb;
use super::groups::{Group, Groups};
use super::messaging::{Entry, MessagingError, channel_history, history};

/// Fewest characters of an id that may name a message.
pub const MIN_ID_PREFIX: usize = 4;

/// A conversation: with one contact, or in a group.
#[derive(Debug, Clone)]
pub enum Conversation {
    /// The direct conversation with a contact.
    Direct(Contact),
    /// A group's conversation.
    Group(Group),
}

impl Conversation {
    /// The conversation called `name`: a contact's if there is one, else a group's.
    pub fn named(
        db: &ClientDb,
        contacts: &Contacts<'_>,
        name: &str,
    ) -> Result<Conversation, MessagingError> {
        match contacts.get(name) {
            Ok(contact) => Ok(Conversation::Direct(contact)),
            Err(ContactError::Unknown(_) | ContactError::BadName) => {
                match Groups::new(db).get(name)? {
                    Some(group) => Ok(Conversation::Group(group)),
                    None => Err(MessagingError::Usage(format!(
                        "no contact or group named {name:?}; see `jasper contacts list` and \
                     `jasper group list`"
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The name it goes by.
    pub fn name(&self) -> &str {
        match self {
            Conversation::Direct(c) => &c.name,
            Conversation::Group(g) => &g.name,
        }
    }

    /// Its messages, oldest first, edits applied, deleted ones left out.
    pub fn history(&self, db: &ClientDb) -> Result<Vec<Entry>, MessagingError> {
        match self {
            Conversation::Direct(c) => history(db, c),
            Conversation::Group(g) => channel_history(db, &g.channel_id),
        }
    }

    /// The message of this conversation that `id` names: its whole id, or a start of it at
    /// least [`MIN_ID_PREFIX`] characters long that no other message of the conversation
    /// shares.
    pub fn message(&self, db: &ClientDb, id: &str) -> Result<Entry, MessagingError> {
        find_message(self.history(db)?, id, self.name())
    }
}

/// The entry of `entries` that `id` names (see [`Conversation::message`]); `name` is the
/// conversation's, for the errors.
pub fn find_message(entries: Vec<Entry>, id: &str, name: &str) -> Result<Entry, MessagingError> {
    let wanted = id.trim().to_ascii_lowercase();
    let not_found = || {
        MessagingError::Usage(format!(
            "no message {id:?} in the conversation with {name:?}; see `jasper history {name}`"
        ))
    };
    if wanted.is_empty() {
        return Err(not_found());
    }
    if let Some(exact) = entries.iter().position(|e| e.id == wanted) {
        return Ok(entries
            .into_iter()
            .nth(exact)
            .expect("position is in range"));
    }
    if wanted.chars().count() < MIN_ID_PREFIX {
        return Err(MessagingError::Usage(format!(
            "{id:?} is too short to name a message: give at least {MIN_ID_PREFIX} characters of \
             its id"
        )));
    }
    let mut matching: Vec<Entry> = entries
        .into_iter()
        .filter(|e| e.id.starts_with(&wanted))
        .collect();
    match matching.len() {
        0 => Err(not_found()),
        1 => Ok(matching.remove(0)),
        n => {
            let ids: Vec<&str> = matching.iter().take(3).map(|e| e.id.as_str()).collect();
            Err(MessagingError::Usage(format!(
                "{id:?} starts {n} messages' ids ({}{}): give more of it",
                ids.join(", "),
                if n > 3 { ", …" } else { "" }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            sender: "k".into(),
            content: "c".into(),
            timestamp: "2026-12-07T00:00:00.000Z".into(),
            edited: false,
            edited_at: None,
            deleted: false,
            reactions: serde_json::Map::new(),
        }
    }

    fn entries() -> Vec<Entry> {
        vec![
            entry("2892c6f7-5f03-4a0a-8156-e1f37c5073cd"),
            entry("2892d001-0000-4000-8000-000000000000"),
            entry("11ea9310-9e2c-4bb5-99e9-f4cddf9cca62"),
        ]
    }

    fn usage(r: Result<Entry, MessagingError>) -> String {
        match r {
            Err(MessagingError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_id_or_a_unique_start_names_one_message() {
        let whole = "11ea9310-9e2c-4bb5-99e9-f4cddf9cca62";
        assert_eq!(find_message(entries(), whole, "bob").unwrap().id, whole);
        assert_eq!(find_message(entries(), "11ea", "bob").unwrap().id, whole);
        assert_eq!(
            find_message(entries(), " 11EA93 ", "bob").unwrap().id,
            whole
        );
        assert_eq!(
            find_message(entries(), "2892c", "bob").unwrap().id,
            "2892c6f7-5f03-4a0a-8156-e1f37c5073cd"
        );
    }

    #[test]
    fn a_shared_short_missing_or_empty_id_is_a_usage_error() {
        let shared = usage(find_message(entries(), "2892", "bob"));
        assert!(shared.contains("starts 2 messages' ids"), "{shared}");
        assert!(
            shared.contains("2892c6f7-5f03-4a0a-8156-e1f37c5073cd"),
            "{shared}"
        );
        let short = usage(find_message(entries(), "11e", "bob"));
        assert!(short.contains("at least 4 characters"), "{short}");
        let missing = usage(find_message(entries(), "ffff", "bob"));
        assert!(missing.contains("jasper history bob"), "{missing}");
        let empty = usage(find_message(entries(), "  ", "bob"));
        assert!(empty.contains("no message"), "{empty}");
    }

    #[test]
    fn many_matches_are_listed_three_at_most() {
        let many: Vec<Entry> = (0..5)
            .map(|i| entry(&format!("abcd{i}000-0000-4000-8000-000000000000")))
            .collect();
        let msg = usage(find_message(many, "abcd", "g"));
        assert!(msg.contains("starts 5 messages' ids"), "{msg}");
        assert!(msg.ends_with(", …): give more of it"), "{msg}");
    }
}
