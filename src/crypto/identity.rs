//! An identity: an RSA-4096 private key kept as PKCS#8 PEM, encrypted (PBES2, scrypt +
//! AES-256) when a passphrase is set, in a file created 0600 and refused when group or world
//! can read it (PROTOCOL.md §1).

use std::path::{Path, PathBuf};

use rsa::PrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use zeroize::Zeroizing;

use crate::proto::PublicKey;
use crate::proto::key::KeyError;

/// The size of every identity this implementation creates.
pub const IDENTITY_BITS: usize = 4096;

/// Why an identity could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others may read the key file.
    #[error(
        "{path} can be read by group or others (mode {mode:o}); run `chmod 600 {path}` and try again"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file exists already (identities are never overwritten).
    #[error("{0} exists already; move it away first if you mean to replace that identity")]
    Exists(PathBuf),
    /// The passphrase does not open the key.
    #[error("wrong passphrase for {0}")]
    WrongPassphrase(PathBuf),
    /// The key is encrypted and no passphrase was given.
    #[error("{0} is protected by a passphrase; give it (prompt, or --passphrase-stdin)")]
    NeedsPassphrase(PathBuf),
    /// The file is not a PKCS#8 RSA private key.
    #[error("{0} is not a PKCS#8 PEM RSA private key")]
    NotAKey(PathBuf),
    /// The key is encrypted with a scheme this implementation cannot open.
    #[error(
        "{path} is encrypted with a scheme jasper cannot open ({reason}); re-encrypt it as \
         PBES2, e.g. `openssl pkcs8 -topk8 -v2 aes-256-cbc -scrypt -in OLD -out NEW`"
    )]
    UnsupportedEncryption {
        /// The file.
        path: PathBuf,
        /// What the PKCS#5 layer said.
        reason: String,
    },
    /// The key is unusable as an identity.
    #[error("unusable key: {0}")]
    Key(#[from] KeyError),
    /// Key generation or encoding failed.
    #[error("cryptography failed: {0}")]
    Crypto(String),
}

/// A private key and its public half.
pub struct Identity {
    private: PrivateKey,
    public: PublicKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?})", self.public)
    }
}

impl Identity {
    /// Generates a new RSA-4096 identity (seconds of work).
    pub fn generate() -> Result<Self, IdentityError> {
        let private = PrivateKey::new(&mut getrandom::SysRng, IDENTITY_BITS)
            .map_err(|e| IdentityError::Crypto(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateKey) -> Result<Self, IdentityError> {
        let public = PublicKey::from_rsa(&private.to_public_key(), 2048)?;
        Ok(Self { private, public })
    }

    /// Reads a PKCS#8 PEM private key (encrypted or not) from text.
    pub fn from_pem(
        pem: &str,
        passphrase: Option<&str>,
        origin: &Path,
    ) -> Result<Self, IdentityError> {
        let encrypted = pem.contains("ENCRYPTED PRIVATE KEY");
        let private = match (encrypted, passphrase) {
            (true, None) => return Err(IdentityError::NeedsPassphrase(origin.to_path_buf())),
            (true, Some(p)) => PrivateKey::from_pkcs8_encrypted_pem(pem, p.as_bytes())
                .map_err(|e| Self::decrypt_error(pem, e, origin))?,
            (false, _) => PrivateKey::from_pkcs8_pem(pem)
                .map_err(|_| IdentityError::NotAKey(origin.to_path_buf()))?,
        };
        Self::from_private(private)
    }

    /// What a failure to open an encrypted key means: a file that is not an encrypted PKCS#8
    /// key at all, a scheme we cannot decrypt, or (anything else, as a wrong passphrase can
    /// also decrypt to garbage) a wrong passphrase.
    fn decrypt_error(pem: &str, e: rsa::pkcs8::Error, origin: &Path) -> IdentityError {
        use rsa::pkcs8::der::Decode as _;
        use rsa::pkcs8::pkcs5::Error as Pkcs5;
        let unsupported = |reason: String| IdentityError::UnsupportedEncryption {
            path: origin.to_path_buf(),
            reason,
        };
        let Ok((_, der)) = rsa::pkcs8::der::pem::decode_vec(pem.as_bytes()) else {
            return IdentityError::NotAKey(origin.to_path_buf());
        };
        if let Err(e) = rsa::pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der) {
            // Whole DER the PKCS#5 layer cannot read: an algorithm it does not know (PKCS#12's
            // 3DES, say). Not even whole DER: a damaged file.
            return match rsa::pkcs8::der::Document::from_der(&der) {
                Ok(_) => unsupported(e.to_string()),
                Err(_) => IdentityError::NotAKey(origin.to_path_buf()),
            };
        }
        match e {
            rsa::pkcs8::Error::EncryptedPrivateKey(
                reason @ (Pkcs5::UnsupportedAlgorithm { .. }
                | Pkcs5::NoPbes1CryptSupport
                | Pkcs5::AlgorithmParametersInvalid { .. }),
            ) => unsupported(reason.to_string()),
            _ => IdentityError::WrongPassphrase(origin.to_path_buf()),
        }
    }

    /// The key as PKCS#8 PEM, encrypted with `passphrase` when given.
    pub fn to_pem(&self, passphrase: Option<&str>) -> Result<Zeroizing<String>, IdentityError> {
        let crypto = |e: rsa::pkcs8::Error| IdentityError::Crypto(e.to_string());
        match passphrase {
            Some(p) => self
                .private
                .to_pkcs8_encrypted_pem(p.as_bytes(), LineEnding::LF)
                .map_err(crypto),
            None => self.private.to_pkcs8_pem(LineEnding::LF).map_err(crypto),
        }
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Self::from_pem(&pem, passphrase, path)
    }

    /// Writes the key to a new file created with mode 0600, never overwriting one, and never
    /// leaving it written in part: the key is written and flushed beside it first, then linked
    /// in under its name (which fails if the name exists), and the directory flushed.
    pub fn save(&self, path: &Path, passphrase: Option<&str>) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(IdentityError::Exists(path.to_path_buf()));
        }
        // A name of its own (two `init`s at once must not share one), made with O_EXCL.
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| IdentityError::Crypto(e.to_string()))?;
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{:016x}.tmp", u64::from_ne_bytes(suffix)));
        let fresh = path.with_file_name(name);
        self.write_new(&fresh, passphrase)?;
        let linked = std::fs::hard_link(&fresh, path);
        let removed = std::fs::remove_file(&fresh);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(IdentityError::Exists(path.to_path_buf()));
            }
            // A file system without hard links (vfat, exFAT, some network mounts): written in
            // place, as an exclusive new file, flushed.
            Err(_) => return self.write_new(path, passphrase),
        }
        removed.map_err(io)?;
        sync_parent(path).map_err(io)
    }

    /// Writes the key to a new file created with mode 0600 (failing if it exists), flushed.
    fn write_new(&self, path: &Path, passphrase: Option<&str>) -> Result<(), IdentityError> {
        use std::io::Write as _;
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let pem = self.to_pem(passphrase)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Only its owner may look into a new directory that holds keys.
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Writes the key, with `passphrase` or none, over the file at `path` atomically: a new
    /// file (mode 0600) beside it, flushed, renamed over it, and the directory flushed. A crash
    /// leaves the old file or the new one, never a mix.
    pub fn replace(&self, path: &Path, passphrase: Option<&str>) -> Result<(), IdentityError> {
        let fresh = self.write_beside(path, passphrase)?;
        put_in_place(&fresh, path)
    }

    /// The first half of [`Identity::replace`]: the key, with `passphrase` or none, written
    /// and flushed beside `path` as `<name>.new` (mode 0600). Returns that file, for
    /// [`put_in_place`].
    pub fn write_beside(
        &self,
        path: &Path,
        passphrase: Option<&str>,
    ) -> Result<std::path::PathBuf, IdentityError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        let fresh = path.with_file_name(name);
        // Left by a crash in an earlier run: never used, so safe to remove.
        match std::fs::remove_file(&fresh) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(IdentityError::Io {
                    path: fresh,
                    source: e,
                });
            }
            _ => {}
        }
        self.write_new(&fresh, passphrase)?;
        Ok(fresh)
    }
    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The private key, for the envelope.
    pub(crate) fn private(&self) -> &PrivateKey {
        &self.private
    }
}

/// The second half of [`Identity::replace`]: `fresh` (from [`Identity::write_beside`]) renamed
/// over `path`, and the directory flushed.
pub fn put_in_place(fresh: &Path, path: &Path) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::rename(fresh, path).map_err(io)?;
    sync_parent(path).map_err(io)
}

/// Flushes the directory holding `path`, so that a name made or changed in it lasts.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        None => std::fs::File::open(".").and_then(|d| d.sync_all()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture identity (tests/fixtures/keys), so that tests need not generate keys.
    pub(crate) fn fixture(name: &str) -> Identity {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(format!("{name}-4096.key.pem"));
        let pem = std::fs::read_to_string(&path).unwrap();
        Identity::from_pem(&pem, None, &path).unwrap()
    }

    #[test]
    fn keys_round_trip_with_and_without_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let alice = fixture("alice");
        let plain = dir.path().join("plain.pem");
        let locked = dir.path().join("locked.pem");
        alice.save(&plain, None).unwrap();
        alice.save(&locked, Some("correct horse")).unwrap();
        assert_eq!(
            Identity::load(&plain, None).unwrap().public(),
            alice.public()
        );
        assert_eq!(
            Identity::load(&locked, Some("correct horse"))
                .unwrap()
                .public(),
            alice.public()
        );
        let text = std::fs::read_to_string(&locked).unwrap();
        assert!(text.contains("BEGIN ENCRYPTED PRIVATE KEY"));
        assert!(matches!(
            Identity::load(&locked, Some("wrong")),
            Err(IdentityError::WrongPassphrase(_))
        ));
        assert!(matches!(
            Identity::load(&locked, None),
            Err(IdentityError::NeedsPassphrase(_))
        ));
        assert!(matches!(
            alice.save(&plain, None),
            Err(IdentityError::Exists(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new-dir/key.pem");
        fixture("bob").save(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The directory made for it is its owner's alone; nothing is left beside it.
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(!dir.path().join("new-dir/key.pem.new").exists());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load(&path, None).unwrap_err();
        assert!(
            matches!(err, IdentityError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn replacing_a_key_file_changes_its_passphrase_and_keeps_it_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let key = fixture("bob");
        key.save(&path, None).unwrap();
        // What a crash in an earlier run left beside it is cleared, not an obstacle.
        std::fs::write(dir.path().join("key.pem.new"), "half a key").unwrap();
        key.replace(&path, Some("new words")).unwrap();
        assert!(!dir.path().join("key.pem.new").exists());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            Identity::load(&path, None),
            Err(IdentityError::NeedsPassphrase(_))
        ));
        let back = Identity::load(&path, Some("new words")).unwrap();
        assert_eq!(back.public(), key.public());
        key.replace(&path, None).unwrap();
        assert_eq!(Identity::load(&path, None).unwrap().public(), key.public());
    }

    #[test]
    fn garbage_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            Identity::load(&path, None),
            Err(IdentityError::NotAKey(_))
        ));
    }
}
