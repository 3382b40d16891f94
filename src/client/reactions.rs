//! The reactions database (JASPER.md: a reaction appears only when it is in the client's
//! reactions database): a built-in set of common shortcodes with their emoji, and those the
//! user adds. A reaction is written `:name:` on the wire; here names go without the colons.

use super::db::{ClientDb, DbError};
use super::messaging::is_reaction;

/// Shortcodes every client knows, with their emoji (the names of the usual emoji sets).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("+1", "👍"),
    ("-1", "👎"),
    ("100", "💯"),
    ("angry", "😠"),
    ("beer", "🍺"),
    ("bell", "🔔"),
    ("blush", "😊"),
    ("bug", "🐛"),
    ("cake", "🍰"),
    ("clap", "👏"),
    ("coffee", "☕"),
    ("confused", "😕"),
    ("cry", "😢"),
    ("eyes", "👀"),
    ("facepalm", "🤦"),
    ("fire", "🔥"),
    ("gift", "🎁"),
    ("grin", "😁"),
    ("heart", "❤️"),
    ("heart_eyes", "😍"),
    ("hugs", "🤗"),
    ("joy", "😂"),
    ("laughing", "😆"),
    ("muscle", "💪"),
    ("ok_hand", "👌"),
    ("partying_face", "🥳"),
    ("pray", "🙏"),
    ("question", "❓"),
    ("raised_hands", "🙌"),
    ("rocket", "🚀"),
    ("scream", "😱"),
    ("see_no_evil", "🙈"),
    ("shrug", "🤷"),
    ("slightly_smiling_face", "🙂"),
    ("smile", "😄"),
    ("sob", "😭"),
    ("sparkles", "✨"),
    ("star", "⭐"),
    ("sunglasses", "😎"),
    ("sweat_smile", "😅"),
    ("tada", "🎉"),
    ("thinking", "🤔"),
    ("thumbsdown", "👎"),
    ("thumbsup", "👍"),
    ("upside_down_face", "🙃"),
    ("warning", "⚠️"),
    ("wave", "👋"),
    ("white_check_mark", "✅"),
    ("wink", "😉"),
    ("x", "❌"),
    ("zzz", "💤"),
];

/// Longest emoji (or short text) a reaction of one's own may show, in bytes.
const MAX_EMOJI_BYTES: usize = 32;
/// Most reactions a user may add.
pub const MAX_CUSTOM: usize = 1000;

/// Why the reactions database refused a change.
#[derive(Debug, thiserror::Error)]
pub enum ReactionError {
    /// The name is not a shortcode.
    #[error(
        "{0:?} is not a reaction name: letters, digits, _ + and -, at most 62 (written :name: \
         in messages)"
    )]
    BadName(String),
    /// What it shows is empty, too long, or holds spaces or control characters.
    #[error(
        "a reaction shows an emoji or a few characters (at most {MAX_EMOJI_BYTES} bytes, no \
         spaces or control characters)"
    )]
    BadEmoji,
    /// Built-in reactions stay.
    #[error(":{0}: is built in; only reactions you added can be removed")]
    BuiltIn(String),
    /// No such reaction of one's own.
    #[error(":{0}: is not a reaction you added; see `jasper reactions`")]
    Unknown(String),
    /// Too many.
    #[error("you have {MAX_CUSTOM} reactions of your own already; remove one first")]
    Full,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One entry of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The shortcode, without colons.
    pub name: String,
    /// What it shows.
    pub emoji: String,
    /// Whether the user added it (else it is built in).
    pub custom: bool,
}

const PREFIX: &str = "reaction:";

/// `name` without the colons around it, if it is a shortcode (`thumbsup` or `:thumbsup:`).
pub fn shortcode(name: &str) -> Option<&str> {
    let bare = name
        .strip_prefix(':')
        .and_then(|n| n.strip_suffix(':'))
        .unwrap_or(name);
    is_reaction(&format!(":{bare}:")).then_some(bare)
}

/// The reactions database of one client.
pub struct Reactions<'a> {
    db: &'a ClientDb,
}

impl<'a> Reactions<'a> {
    /// The database in `db`.
    pub fn new(db: &'a ClientDb) -> Self {
        Self { db }
    }

    /// What the reaction `text` (`:name:`) shows, when it is in the database.
    pub fn emoji(&self, text: &str) -> Result<Option<String>, DbError> {
        let Some(name) = text.strip_prefix(':').and_then(|t| t.strip_suffix(':')) else {
            return Ok(None);
        };
        if let Some(custom) = self.db.setting(&format!("{PREFIX}{name}"))? {
            return Ok(Some(custom));
        }
        Ok(BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| (*e).to_owned()))
    }

    /// Every reaction, by name (one's own replace built-in ones of the same name).
    pub fn list(&self) -> Result<Vec<Reaction>, DbError> {
        let mut out: Vec<Reaction> = self
            .db
            .settings_with_prefix(PREFIX)?
            .into_iter()
            .map(|(k, emoji)| Reaction {
                name: k[PREFIX.len()..].to_owned(),
                emoji,
                custom: true,
            })
            .collect();
        for (name, emoji) in BUILT_IN {
            if !out.iter().any(|r| r.name == *name) {
                out.push(Reaction {
                    name: (*name).to_owned(),
                    emoji: (*emoji).to_owned(),
                    custom: false,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Adds (or changes) a reaction of one's own: `name` with or without colons, and what it
    /// shows.
    pub fn add(&self, name: &str, emoji: &str) -> Result<Reaction, ReactionError> {
        let name = shortcode(name).ok_or_else(|| ReactionError::BadName(name.to_owned()))?;
        if emoji.is_empty()
            || emoji.len() > MAX_EMOJI_BYTES
            || emoji.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ReactionError::BadEmoji);
        }
        let key = format!("{PREFIX}{name}");
        if self.db.setting(&key)?.is_none()
            && self.db.settings_with_prefix(PREFIX)?.len() >= MAX_CUSTOM
        {
            return Err(ReactionError::Full);
        }
        self.db.set_setting(&key, emoji)?;
        Ok(Reaction {
            name: name.to_owned(),
            emoji: emoji.to_owned(),
            custom: true,
        })
    }

    /// Removes a reaction one added (a built-in one of the same name shows again).
    pub fn remove(&self, name: &str) -> Result<(), ReactionError> {
        let bare = shortcode(name).ok_or_else(|| ReactionError::BadName(name.to_owned()))?;
        if self.db.remove_setting(&format!("{PREFIX}{bare}"))? {
            return Ok(());
        }
        if BUILT_IN.iter().any(|(n, _)| *n == bare) {
            return Err(ReactionError::BuiltIn(bare.to_owned()));
        }
        Err(ReactionError::Unknown(bare.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_are_shortcodes_sorted_and_unique() {
        for pair in BUILT_IN.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{pair:?}");
        }
        for (name, emoji) in BUILT_IN {
            assert_eq!(shortcode(name), Some(*name));
            assert!(!emoji.is_empty() && emoji.len() <= MAX_EMOJI_BYTES);
        }
    }

    #[test]
    fn own_reactions_are_added_shown_and_removed_and_built_in_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        let reactions = Reactions::new(&db);
        assert_eq!(
            reactions.emoji(":thumbsup:").unwrap().as_deref(),
            Some("👍")
        );
        assert_eq!(reactions.emoji(":crab:").unwrap(), None);
        assert_eq!(reactions.emoji("crab").unwrap(), None);
        reactions.add(":crab:", "🦀").unwrap();
        reactions.add("ship_it", "🚢").unwrap();
        assert_eq!(reactions.emoji(":crab:").unwrap().as_deref(), Some("🦀"));
        let listed = reactions.list().unwrap();
        assert_eq!(listed.len(), BUILT_IN.len() + 2);
        assert!(listed.iter().any(|r| r.name == "ship_it" && r.custom));
        // One's own may show something else for a built-in name, and removing it restores it.
        reactions.add("fire", "FIRE").unwrap();
        assert_eq!(reactions.emoji(":fire:").unwrap().as_deref(), Some("FIRE"));
        assert_eq!(reactions.list().unwrap().len(), BUILT_IN.len() + 2);
        reactions.remove(":fire:").unwrap();
        assert_eq!(reactions.emoji(":fire:").unwrap().as_deref(), Some("🔥"));
        assert!(matches!(
            reactions.remove("fire"),
            Err(ReactionError::BuiltIn(_))
        ));
        assert!(matches!(
            reactions.remove("nope"),
            Err(ReactionError::Unknown(_))
        ));
        reactions.remove("crab").unwrap();
        assert_eq!(reactions.emoji(":crab:").unwrap(), None);
        for bad in ["", "a b", "é", ":x", "a:b", &"n".repeat(63)] {
            assert!(
                matches!(reactions.add(bad, "x"), Err(ReactionError::BadName(_))),
                "{bad:?}"
            );
        }
        for bad in ["", "a b", "\u{1b}[2J", &"x".repeat(33)] {
            assert!(
                matches!(reactions.add("ok", bad), Err(ReactionError::BadEmoji)),
                "{bad:?}"
            );
        }
    }
}
