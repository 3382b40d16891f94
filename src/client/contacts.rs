//! The local contact list: names a person chose for public keys, with an optional picture.
//! Nothing here leaves the machine.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::db::{ClientDb, DbError};
use crate::proto::PublicKey;
use crate::proto::key::KeyError;

/// Longest contact name.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest avatar picture kept.
pub const MAX_AVATAR_BYTES: u64 = 1 << 20;

/// A contact as kept and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The name chosen for it.
    pub name: String,
    /// Its public key (canonical base64 DER SPKI).
    pub public_key: String,
    /// SHA-256 of the key, hex.
    pub fingerprint: String,
    /// The picture's file in the client's data directory, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<PathBuf>,
}

/// Why a contact operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// Bad name.
    #[error(
        "contact names are 1-{MAX_NAME_CHARS} characters without control characters and not starting with '-'"
    )]
    BadName,
    /// The name is taken.
    #[error("a contact named {0:?} exists already")]
    Exists(String),
    /// A group has the name (commands would take the contact and hide the group).
    #[error("a group is named {0:?}; choose another name for the contact")]
    GroupName(String),
    /// No such contact.
    #[error("no contact named {0:?}; see `jasper contacts list`")]
    Unknown(String),
    /// The key is already someone's.
    #[error("that key is already saved as {0:?}")]
    SameKey(String),
    /// The key does not parse.
    #[error("not a usable public key: {0}")]
    Key(#[from] KeyError),
    /// The picture could not be used.
    #[error("avatar {path}: {reason}")]
    Avatar {
        /// The file given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Whether `name` may name a contact or a group: 1 to [`MAX_NAME_CHARS`] characters, no
/// control characters, no spaces around it, not starting with '-' (the commands take names
/// as arguments, where that would read as a flag).
pub fn is_valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    chars > 0
        && chars <= MAX_NAME_CHARS
        && !name.starts_with('-')
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

fn check_name(name: &str) -> Result<(), ContactError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ContactError::BadName)
    }
}

/// Largest file read as a public key (an RSA-4096 key in PEM is under 1 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Reads a key given as base64 DER, PEM text, or the path of a file holding either.
pub fn read_key(text: &str) -> Result<PublicKey, ContactError> {
    let path = Path::new(text);
    let body = if !text.contains("-----BEGIN") && text.len() < 4096 && path.is_file() {
        // A key file is a few KiB: what lies beyond MAX_KEY_FILE_BYTES is not one.
        let mut body = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut body))
            .map_err(|_| KeyError::Unparseable)?;
        if body.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::Unparseable.into());
        }
        body
    } else {
        text.to_owned()
    };
    Ok(PublicKey::parse(&body, 4096)?)
}

/// The contact list over the client database.
pub struct Contacts<'a> {
    db: &'a ClientDb,
    data_dir: &'a Path,
}

impl<'a> Contacts<'a> {
    /// The list kept in `db`, with pictures under `data_dir/avatars`.
    pub fn new(db: &'a ClientDb, data_dir: &'a Path) -> Self {
        Self { db, data_dir }
    }

    /// Every contact, by name.
    pub fn list(&self) -> Result<Vec<Contact>, ContactError> {
        Ok(self
            .db
            .contacts()?
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_slice(&json).ok())
            .collect())
    }

    /// One contact.
    pub fn get(&self, name: &str) -> Result<Contact, ContactError> {
        let json = self
            .db
            .contact(name)?
            .ok_or_else(|| ContactError::Unknown(name.to_owned()))?;
        serde_json::from_slice(&json).map_err(|e| DbError::Engine(e.to_string()).into())
    }

    /// Every contact's key (canonical).
    pub fn keys(&self) -> Result<std::collections::HashSet<String>, ContactError> {
        Ok(self.list()?.into_iter().map(|c| c.public_key).collect())
    }

    /// The contact whose key is `key`, if any.
    pub fn by_key(&self, key: &PublicKey) -> Result<Option<Contact>, ContactError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|c| c.public_key == key.canonical()))
    }

    /// Adds a contact.
    pub fn add(
        &self,
        name: &str,
        key: &str,
        avatar: Option<&Path>,
    ) -> Result<Contact, ContactError> {
        check_name(name)?;
        let key = read_key(key)?;
        self.check_free(name)?;
        if let Some(existing) = self.by_key(&key)? {
            return Err(ContactError::SameKey(existing.name));
        }
        let avatar = avatar.map(|p| self.keep_avatar(p, &key)).transpose()?;
        let contact = Contact {
            name: name.to_owned(),
            public_key: key.canonical().to_owned(),
            fingerprint: key.fingerprint().to_string(),
            avatar,
        };
        self.save(&contact)?;
        Ok(contact)
    }

    /// Sets or replaces a contact's picture.
    pub fn set_avatar(&self, name: &str, avatar: &Path) -> Result<Contact, ContactError> {
        let mut contact = self.get(name)?;
        let key = PublicKey::parse(&contact.public_key, 2048)?;
        let kept = self.keep_avatar(avatar, &key)?;
        // A picture of another format had another name.
        if let Some(old) = contact.avatar.replace(kept.clone())
            && old != kept
        {
            let _ = std::fs::remove_file(old);
        }
        self.save(&contact)?;
        Ok(contact)
    }

    /// Refuses `name` when a contact or a group has it: `send`, `history` and `chat` take a
    /// contact's name first, so a contact named like a group would hide the group.
    fn check_free(&self, name: &str) -> Result<(), ContactError> {
        if self.db.contact(name)?.is_some() {
            return Err(ContactError::Exists(name.to_owned()));
        }
        if super::groups::Groups::new(self.db).get(name)?.is_some() {
            return Err(ContactError::GroupName(name.to_owned()));
        }
        Ok(())
    }

    /// Renames a contact.
    pub fn rename(&self, from: &str, to: &str) -> Result<Contact, ContactError> {
        check_name(to)?;
        let mut contact = self.get(from)?;
        self.check_free(to)?;
        contact.name = to.to_owned();
        self.db.rename_contact(from, to)?;
        self.save(&contact)?;
        Ok(contact)
    }

    /// Removes a contact (and its picture).
    pub fn remove(&self, name: &str) -> Result<Contact, ContactError> {
        let contact = self.get(name)?;
        self.db.remove_contact(name)?;
        if let Some(avatar) = &contact.avatar {
            let _ = std::fs::remove_file(avatar);
        }
        Ok(contact)
    }

    fn save(&self, contact: &Contact) -> Result<(), ContactError> {
        let json = serde_json::to_vec(contact).expect("contact serializes");
        Ok(self.db.put_contact(&contact.name, &json)?)
    }

    /// Copies a picture into the data directory, named after the key.
    fn keep_avatar(&self, source: &Path, key: &PublicKey) -> Result<PathBuf, ContactError> {
        let bad = |reason: String| ContactError::Avatar {
            path: source.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(source).map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a file".into()));
        }
        if meta.len() > MAX_AVATAR_BYTES {
            return Err(bad(format!(
                "{} bytes; pictures up to {MAX_AVATAR_BYTES} bytes are kept",
                meta.len()
            )));
        }
        let mut start = [0u8; 12];
        let read = std::fs::File::open(source)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut start))
            .map_err(|e| bad(e.to_string()))?;
        let ext = picture_format(&start[..read])
            .ok_or_else(|| bad("not a PNG, JPEG, GIF or WebP picture".into()))?;
        let dir = self.data_dir.join("avatars");
        std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
        let target = dir.join(format!("{}.{ext}", &key.fingerprint().to_string()[..16]));
        std::fs::copy(source, &target).map_err(|e| bad(e.to_string()))?;
        Ok(target)
    }
}

/// The file extension of the picture format `start` (a file's first bytes) begins, if it is
/// one a picture viewer shows: PNG, JPEG, GIF or WebP.
fn picture_format(start: &[u8]) -> Option<&'static str> {
    match start {
        [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => Some("png"),
        [0xff, 0xd8, 0xff, ..] => Some("jpg"),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some("gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("webp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = include_str!("../../tests/fixtures/keys/alice-4096.pub.pem");
    const BOB: &str = include_str!("../../tests/fixtures/keys/bob-4096.pub.pem");

    #[test]
    fn pictures_are_known_by_their_first_bytes() {
        assert_eq!(
            picture_format(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some("png")
        );
        assert_eq!(picture_format(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("jpg"));
        assert_eq!(picture_format(b"GIF89a\x01\0"), Some("gif"));
        assert_eq!(picture_format(b"RIFF\x24\0\0\0WEBPVP8 "), Some("webp"));
        for other in [
            &b""[..],
            b"\x89PNG",
            b"root:x:0:0:root",
            b"RIFF\x24\0\0\0WAVEfmt ",
        ] {
            assert_eq!(picture_format(other), None, "{other:?}");
        }
    }

    #[test]
    fn add_rename_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        let contacts = Contacts::new(&db, dir.path());
        let alice = contacts.add("alice", ALICE, None).unwrap();
        assert_eq!(contacts.get("alice").unwrap(), alice);
        assert!(matches!(
            contacts.add("alice", BOB, None),
            Err(ContactError::Exists(_))
        ));
        assert!(
            matches!(contacts.add("al", ALICE, None), Err(ContactError::SameKey(n)) if n == "alice")
        );
        contacts.add("bob", BOB, None).unwrap();
        contacts.rename("alice", "Alice Liddell").unwrap();
        assert!(matches!(
            contacts.get("alice"),
            Err(ContactError::Unknown(_))
        ));
        assert_eq!(
            contacts.get("Alice Liddell").unwrap().public_key,
            alice.public_key
        );
        assert!(matches!(
            contacts.rename("bob", "Alice Liddell"),
            Err(ContactError::Exists(_))
        ));
        contacts.remove("bob").unwrap();
        assert_eq!(contacts.list().unwrap().len(), 1);
    }

    #[test]
    fn names_and_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = ClientDb::open(dir.path()).unwrap();
        let contacts = Contacts::new(&db, dir.path());
        for bad in ["", "-x", " padded", "tab\there", &"n".repeat(65)] {
            assert!(
                matches!(contacts.add(bad, ALICE, None), Err(ContactError::BadName)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            contacts.add("x", "not a key", None),
            Err(ContactError::Key(_))
        ));
        let small = include_str!("../../tests/fixtures/keys/small-2048.pub.pem");
        assert!(matches!(
            contacts.add("x", small, None),
            Err(ContactError::Key(_))
        ));
    }
}
