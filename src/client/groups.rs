//! Groups (JASPER.md GCs): a name, a channel and the members' keys, kept locally. A group
//! message is sent once per member, each through that member's own TX relay.

use serde::{Deserialize, Serialize};

use super::db::{ClientDb, DbError};

/// Most members in a group.
pub const MAX_MEMBERS: usize = 64;

/// A group as kept locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its channel.
    pub channel_id: String,
    /// The other members' public keys (canonical), without ours.
    pub members: Vec<String>,
    /// When the member list in effect was set, by the clock of whoever set it (milliseconds
    /// since the epoch): a change older than this one does not undo it.
    #[serde(default)]
    pub members_at: u64,
    /// Whether we are out of it (we left, or were removed): nothing is sent to it or taken
    /// from it any more, and its history stays.
    #[serde(default)]
    pub left: bool,
}

fn name_key(name: &str) -> String {
    format!("group:{name}")
}

fn channel_key(channel: &str) -> String {
    format!("groupchan:{channel}")
}

/// The groups in the client database.
pub struct Groups<'a> {
    db: &'a ClientDb,
}

impl<'a> Groups<'a> {
    /// Groups kept in `db`.
    pub fn new(db: &'a ClientDb) -> Self {
        Self { db }
    }

    /// A group by name.
    pub fn get(&self, name: &str) -> Result<Option<Group>, DbError> {
        Ok(self
            .db
            .setting(&name_key(name))?
            .and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// A group by channel.
    pub fn by_channel(&self, channel: &str) -> Result<Option<Group>, DbError> {
        match self.db.setting(&channel_key(channel))? {
            Some(name) => self.get(&name),
            None => Ok(None),
        }
    }

    /// Every group.
    pub fn list(&self) -> Result<Vec<Group>, DbError> {
        Ok(self
            .db
            .settings_with_prefix("group:")?
            .into_iter()
            .filter_map(|(_, j)| serde_json::from_str(&j).ok())
            .collect())
    }

    /// Keeps a group (insert or replace). A name already used by another group, or by a
    /// contact (whose name commands take first), gets a suffix; returns the group as kept.
    pub fn save(&self, mut group: Group) -> Result<Group, DbError> {
        let base = group.name.clone();
        let mut n = 1;
        loop {
            let taken = match self.get(&group.name)? {
                Some(existing) => existing.channel_id != group.channel_id,
                None => self.db.contact(&group.name)?.is_some(),
            };
            if !taken {
                break;
            }
            n += 1;
            group.name = format!("{base} ({n})");
        }
        self.db.set_setting(
            &name_key(&group.name),
            &serde_json::to_string(&group).expect("group serializes"),
        )?;
        self.db
            .set_setting(&channel_key(&group.channel_id), &group.name)?;
        Ok(group)
    }
}
