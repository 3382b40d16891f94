//! Groups (JASPER.md GCs): a name, a channel and the members' keys, kept locally. A group
//! message is sent once per member, each through that member's own TX relay.

use serde::{Deserialize, Serialize};

use super::db::{ClientDb, DbError};

/// Most members in a group.
pub const MAX_MEMBERS: usize = 64;
/// Most groups kept, left ones included (their history stays).
pub const MAX_GROUPS: usize = 1_000;
/// Most groups kept that someone not in our contacts started: anyone who has our key can
/// start a group with us, and a group is kept for good.
pub const MAX_GROUPS_FROM_STRANGERS: usize = 100;

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
    /// Whether someone not in our contacts started it: it counts towards
    /// [`MAX_GROUPS_FROM_STRANGERS`] while they are not (see `started_by`).
    #[serde(default)]
    pub from_stranger: bool,
    /// The key (canonical) of the stranger who started it, so that the group stops counting
    /// as a stranger's once they are in our contacts. Groups kept before this was recorded
    /// have none and count as they were marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

impl Group {
    /// Whether the group counts towards [`MAX_GROUPS_FROM_STRANGERS`], given which keys are
    /// our contacts'.
    pub fn counts_as_strangers(&self, is_contact: &dyn Fn(&str) -> bool) -> bool {
        self.from_stranger && !self.started_by.as_deref().is_some_and(is_contact)
    }
}

fn name_key(name: &str) -> String {
    format!("group:{name}")
}

fn channel_key(channel: &str) -> String {
    format!("groupchan:{channel}")
}

fn forgotten_key(channel: &str) -> String {
    format!("groupgone:{channel}")
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

    /// Why no new group can be kept now, if that is so; `from_stranger` for one started by
    /// someone not in our contacts, and `is_contact` tells whether a key is a contact's now.
    pub fn refusal_for_new(
        &self,
        from_stranger: bool,
        is_contact: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, DbError> {
        let groups = self.list()?;
        if groups.len() >= MAX_GROUPS {
            return Ok(Some(format!(
                "{MAX_GROUPS} groups are kept already, the most jasper keeps"
            )));
        }
        if from_stranger
            && groups
                .iter()
                .filter(|g| g.counts_as_strangers(is_contact))
                .count()
                >= MAX_GROUPS_FROM_STRANGERS
        {
            return Ok(Some(format!(
                "{MAX_GROUPS_FROM_STRANGERS} groups started by people not in your contacts are \
                 kept already; add the sender as a contact to take their groups"
            )));
        }
        Ok(None)
    }

    /// Forgets a group and its history; returns how many history entries went, or `None`
    /// when no group has that name.
    pub fn forget(&self, name: &str) -> Result<Option<usize>, DbError> {
        let Some(group) = self.get(name)? else {
            return Ok(None);
        };
        let gone = self.db.forget_channel(&group.channel_id)?;
        // Messages sent before we left may still come, naming us a member: they must not
        // bring the group back. A member list set after this one may (we were added again).
        self.db.set_setting(
            &forgotten_key(&group.channel_id),
            &group.members_at.to_string(),
        )?;
        self.db.remove_setting(&channel_key(&group.channel_id))?;
        self.db.remove_setting(&name_key(&group.name))?;
        Ok(Some(gone))
    }

    /// When the member list in effect was set in the group on `channel` that we forgot, if
    /// we forgot one there.
    pub fn forgotten_at(&self, channel: &str) -> Result<Option<u64>, DbError> {
        Ok(self
            .db
            .setting(&forgotten_key(channel))?
            .and_then(|at| at.parse().ok()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize, from_stranger: bool) -> Group {
        Group {
            name: format!("g{n}"),
            channel_id: format!("channel {n}"),
            members: vec!["someone".into()],
            members_at: 0,
            left: false,
            from_stranger,
            started_by: from_stranger.then(|| format!("stranger {}", n % 2)),
        }
    }

    #[test]
    fn a_strangers_groups_stop_counting_once_they_are_a_contact() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        db.set_relaxed(true);
        let groups = Groups::new(&db);
        let nobody = |_: &str| false;
        for n in 0..MAX_GROUPS_FROM_STRANGERS {
            groups.save(group(n, true)).unwrap();
        }
        assert!(groups.refusal_for_new(true, &nobody).unwrap().is_some());
        // "stranger 0" started half of them, and is a contact now.
        let one_known = |key: &str| key == "stranger 0";
        assert_eq!(groups.refusal_for_new(true, &one_known).unwrap(), None);
        // A group kept before the starter was recorded counts as it was marked.
        let mut old = group(MAX_GROUPS_FROM_STRANGERS, true);
        old.started_by = None;
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("started_by"), "{json}");
        let read: Group = serde_json::from_str(&json).unwrap();
        assert!(read.counts_as_strangers(&|_| true));
    }

    #[test]
    fn groups_from_strangers_and_groups_in_all_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        db.set_relaxed(true);
        let groups = Groups::new(&db);
        for n in 0..MAX_GROUPS_FROM_STRANGERS {
            assert_eq!(groups.refusal_for_new(true, &|_| false).unwrap(), None);
            groups.save(group(n, true)).unwrap();
        }
        let why = groups.refusal_for_new(true, &|_| false).unwrap().unwrap();
        assert!(why.contains("not in your contacts"), "{why}");
        assert_eq!(groups.refusal_for_new(false, &|_| false).unwrap(), None);
        for n in MAX_GROUPS_FROM_STRANGERS..MAX_GROUPS {
            groups.save(group(n, false)).unwrap();
        }
        let why = groups.refusal_for_new(false, &|_| false).unwrap().unwrap();
        assert!(why.contains("the most jasper keeps"), "{why}");
        assert_eq!(groups.list().unwrap().len(), MAX_GROUPS);
    }
}
