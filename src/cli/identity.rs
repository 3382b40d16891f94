//! `jasper init` and `jasper id`: create and show the user's identity.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;
use zeroize::Zeroizing;

use super::{IdArgs, InitArgs, PassphraseArgs};
use crate::config::{Config, default_config_path};
use crate::crypto::Identity;
use crate::proto::PublicKey;

/// Where the public half is kept, so that `jasper id` needs no passphrase.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.file_name().unwrap_or_default().to_os_string();
    name.push(".pub");
    private.with_file_name(name)
}

/// Longest passphrase read.
const MAX_PASSPHRASE_BYTES: u64 = 4096;

/// Reads the passphrase: the first line of stdin with `--passphrase-stdin`, else a prompt on
/// the terminal (asked twice when `confirm`).
pub fn read_passphrase(from_stdin: bool, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let passphrase = if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .take(MAX_PASSPHRASE_BYTES + 2)
            .read_line(&mut line)
            .context("cannot read the passphrase from standard input")?;
        let passphrase = line.trim_end_matches(['\r', '\n']);
        if passphrase.len() as u64 > MAX_PASSPHRASE_BYTES {
            usage!("the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes");
        }
        Zeroizing::new(passphrase.to_owned())
    } else {
        if !std::io::stdin().is_terminal() {
            usage!(
                "no terminal to ask for a passphrase: pass it with --passphrase-stdin (or use --no-passphrase with init)"
            );
        }
        let first = Zeroizing::new(rpassword::prompt_password("Passphrase: ")?);
        if confirm {
            let second = Zeroizing::new(rpassword::prompt_password("Passphrase again: ")?);
            if first != second {
                usage!("the two passphrases differ; nothing was written");
            }
        }
        first
    };
    if passphrase.is_empty() {
        usage!("an empty passphrase protects nothing; use --no-passphrase if you mean it");
    }
    Ok(passphrase)
}

/// `jasper init`.
pub fn init(
    config: &Config,
    loaded_from: Option<&Path>,
    explicit: Option<&Path>,
    args: &InitArgs,
) -> anyhow::Result<()> {
    let receive_only = args.receive_key.is_some();
    let key_path = args
        .receive_key
        .as_ref()
        .unwrap_or(&config.identity.private_key);
    if key_path.exists() {
        usage!(
            "a key exists already at {}; `jasper id` shows it",
            key_path.display()
        );
    }
    let passphrase = if args.no_passphrase {
        None
    } else if receive_only {
        // Receive keys open with the identity's passphrase (or none): a passphrase of their
        // own would make every command that reads them fail. So the identity is opened, with
        // its passphrase if it has one, and the new key gets the same.
        let mut shared = None;
        load_asking(identity_path(config)?, &mut shared, args.passphrase_stdin)
            .context("a receive key takes the identity's passphrase")?;
        shared
    } else {
        Some(read_passphrase(args.passphrase_stdin, true)?)
    };
    // The configuration file, when there is none yet.
    let written_config = match loaded_from {
        Some(_) => None,
        None if receive_only => None,
        None => {
            let path = explicit
                .map(Path::to_path_buf)
                .or_else(default_config_path)
                .context("cannot tell where to write the configuration (set HOME or --config)")?;
            if !path.exists() {
                write_config(&path, config)?;
                Some(path)
            } else {
                None
            }
        }
    };
    let bar = super::spinner("generating an RSA-4096 key…");
    let identity = Identity::generate().context("cannot generate a key")?;
    bar.finish_and_clear();
    identity.save(key_path, passphrase.as_ref().map(|p| p.as_str()))?;
    let public_path = public_key_path(key_path);
    std::fs::write(&public_path, pem_public(identity.public()))
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    let public = identity.public();
    if args.json {
        println!(
            "{}",
            json!({
                "public_key": public.canonical(),
                "fingerprint": public.fingerprint().to_string(),
                "private_key_file": key_path.display().to_string(),
                "encrypted": passphrase.is_some(),
                "receive_key": receive_only,
                "config_file": written_config.as_ref().map(|p| p.display().to_string()),
            })
        );
    } else {
        if let Some(path) = &written_config {
            println!("wrote configuration {}", path.display());
        }
        println!(
            "created {} {} ({})",
            if receive_only {
                "receive key"
            } else {
                "identity"
            },
            key_path.display(),
            if passphrase.is_some() {
                "passphrase-protected"
            } else {
                "NOT encrypted"
            }
        );
        if receive_only {
            // Absolute: a relative path in the configuration would depend on where jasper
            // runs from.
            let absolute = std::path::absolute(key_path).unwrap_or_else(|_| key_path.clone());
            println!(
                "add it to your configuration: [identity] receive_keys = [{:?}]",
                absolute.display().to_string()
            );
        }
        println!("fingerprint {}", public.fingerprint().short());
        println!("public key  {}", public.canonical());
    }
    Ok(())
}

fn pem_public(key: &PublicKey) -> String {
    let body = key.canonical();
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

fn write_config(path: &Path, config: &Config) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = format!(
        "# jasper configuration, written by `jasper init`. Every key has a default.\n\n\
         [identity]\nprivate_key = {:?}\n\n[client]\ndata_dir = {:?}\n# servers = [\"relay.example.org:8080\"]\n",
        config.identity.private_key.display().to_string(),
        config.client.data_dir.display().to_string(),
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The identity's key file (`[identity] private_key`), which must exist.
fn identity_path(config: &Config) -> anyhow::Result<&Path> {
    let key_path = config.identity.private_key.as_path();
    if !key_path.exists() {
        usage!(
            "no identity at {}; create one with `jasper init`",
            key_path.display()
        );
    }
    Ok(key_path)
}

/// The key at `path`, asking for the passphrase when it is encrypted (once: it is kept in
/// `passphrase`, which may hold one already, as receive keys share the identity's).
fn load_asking(
    path: &Path,
    passphrase: &mut Option<Zeroizing<String>>,
    passphrase_stdin: bool,
) -> anyhow::Result<Identity> {
    match Identity::load(path, None) {
        Err(crate::crypto::IdentityError::NeedsPassphrase(_)) => {
            if passphrase.is_none() {
                *passphrase = Some(read_passphrase(passphrase_stdin, false)?);
            }
            Ok(Identity::load(
                path,
                passphrase.as_deref().map(String::as_str),
            )?)
        }
        other => Ok(other?),
    }
}

/// The user's public key: from the `.pub` file beside the private key, else from the private
/// key itself (which may need the passphrase).
pub fn load_public(config: &Config, passphrase_stdin: bool) -> anyhow::Result<PublicKey> {
    public_half(identity_path(config)?, &mut None, passphrase_stdin)
}

/// The public half of the key at `path`: from the `.pub` file beside it, else from the key
/// itself (see [`load_asking`]).
fn public_half(
    path: &Path,
    passphrase: &mut Option<Zeroizing<String>>,
    passphrase_stdin: bool,
) -> anyhow::Result<PublicKey> {
    if let Ok(text) = std::fs::read_to_string(public_key_path(path))
        && let Ok(key) = PublicKey::parse(&text, 2048)
    {
        // An unencrypted key is checked against it for free: a `.pub` left from another key
        // would have us hand out a key whose messages we cannot open.
        // Anything else (an encrypted key, one that cannot be read now) leaves the `.pub` as
        // the answer, as before.
        return Ok(match Identity::load(path, None) {
            Ok(identity) if identity.public().canonical() != key.canonical() => {
                eprintln!(
                    "warning: {} is not the public half of {}; using the key's own (delete \
                     that file to stop this warning)",
                    public_key_path(path).display(),
                    path.display()
                );
                identity.public().clone()
            }
            _ => key,
        });
    }
    Ok(load_asking(path, passphrase, passphrase_stdin)?
        .public()
        .clone())
}

/// The user's identity, asking for the passphrase when the key is encrypted; also the
/// passphrase it was given (for receive keys that share it).
pub fn load_identity_keeping(
    config: &Config,
    passphrase_stdin: bool,
) -> anyhow::Result<(Identity, Option<Zeroizing<String>>)> {
    let mut passphrase = None;
    let identity = load_asking(identity_path(config)?, &mut passphrase, passphrase_stdin)?;
    Ok((identity, passphrase))
}

/// The keys of `[identity] receive_keys`, each unencrypted or under the identity's
/// `passphrase` (none is asked for).
pub fn load_receive_keys<'c>(
    config: &'c Config,
    passphrase: Option<&str>,
) -> anyhow::Result<Vec<(&'c PathBuf, Identity)>> {
    let mut keys = Vec::new();
    for path in &config.identity.receive_keys {
        let key = match (Identity::load(path, None), passphrase) {
            (Err(crate::crypto::IdentityError::NeedsPassphrase(_)), Some(p)) => {
                Identity::load(path, Some(p))
            }
            (other, _) => other,
        };
        let key = key.with_context(|| {
            format!(
                "receive key {} (from [identity] receive_keys)",
                path.display()
            )
        })?;
        keys.push((path, key));
    }
    Ok(keys)
}

/// `jasper id`: the identity, then any receive keys (marked so).
pub fn show_id(config: &Config, args: &IdArgs) -> anyhow::Result<()> {
    let mut passphrase = None;
    let key = public_half(
        identity_path(config)?,
        &mut passphrase,
        args.passphrase_stdin,
    )?;
    let mut keys = vec![(key, None)];
    for path in &config.identity.receive_keys {
        let public = public_half(path, &mut passphrase, args.passphrase_stdin)
            .with_context(|| format!("receive key {}", path.display()))?;
        keys.push((public, Some(path)));
    }
    for (key, receive_only) in keys {
        if args.json {
            let mut line = json!({ "public_key": key.canonical(), "fingerprint": key.fingerprint().to_string() });
            if let Some(path) = receive_only {
                line["receive_key"] = json!(path.display().to_string());
            }
            println!("{line}");
        } else {
            if let Some(path) = receive_only {
                println!("\nreceive key {}", path.display());
            }
            println!("fingerprint {}", key.fingerprint().short());
            println!("full        {}", key.fingerprint());
            println!("public key  {}", key.canonical());
        }
    }
    Ok(())
}

/// `jasper passphrase`: the identity and the receive keys written again with a new
/// passphrase, or none. Every key is opened first (with the current passphrase, which
/// encrypted receive keys share), so a wrong passphrase changes nothing; every new file is
/// then written beside its key, and only then is each renamed over it, receive keys first;
/// when a rename fails, the keys already renamed are given the old passphrase back.
pub fn change_passphrase(config: &Config, args: &PassphraseArgs) -> anyhow::Result<()> {
    let (identity, current) = load_identity_keeping(config, args.passphrase_stdin)?;
    let receive_keys = load_receive_keys(config, current.as_deref().map(String::as_str))
        .context("nothing was changed")?;
    let key_path = &config.identity.private_key;
    if args.remove && current.is_none() {
        // Nothing was encrypted: the receive keys opened without a passphrase too.
        if args.json {
            println!(
                "{}",
                json!({
                    "private_key_file": key_path.display().to_string(),
                    "encrypted": false,
                    "changed": false,
                })
            );
        } else {
            println!(
                "{} has no passphrase; nothing to remove",
                key_path.display()
            );
        }
        return Ok(());
    }
    let new = if args.remove {
        None
    } else {
        Some(read_passphrase(args.passphrase_stdin, true)?)
    };
    let new = new.as_ref().map(|p| p.as_str());
    // All keys share one passphrase: when one cannot be rewritten, those already rewritten go
    // back to the old one, or no passphrase would open them all any more.
    let old = current.as_deref().map(String::as_str);
    // Each file once, however often it is listed (`~/k.pem` and `/home/u/k.pem` are one).
    let mut seen = std::collections::HashSet::new();
    let targets: Vec<(&Path, &crate::crypto::Identity)> = receive_keys
        .iter()
        .map(|(p, k)| (p.as_path(), k))
        .chain(std::iter::once((key_path.as_path(), &identity)))
        .filter(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())))
        .collect();
    // Every new file is written first, so that what can fail (the disk, a file in the way)
    // fails before any key changes; only the renames remain, one after the other.
    let mut written = Vec::new();
    for (path, key) in &targets {
        match key.write_beside(path, new) {
            Ok(fresh) => written.push(fresh),
            Err(e) => {
                for fresh in &written {
                    let _ = std::fs::remove_file(fresh);
                }
                return Err(e).context("the passphrase was not changed");
            }
        }
    }
    let mut changed: Vec<(&Path, &crate::crypto::Identity)> = Vec::new();
    for ((path, key), fresh) in targets.iter().zip(&written) {
        if let Err(e) = crate::crypto::identity::put_in_place(fresh, path) {
            for fresh in &written {
                let _ = std::fs::remove_file(fresh);
            }
            for (done, key) in changed.iter().rev() {
                if let Err(undo) = key.replace(done, old) {
                    eprintln!(
                        "error: {} has the new passphrase and could not be given the old one \
                         back: {undo}",
                        done.display()
                    );
                }
            }
            return Err(e).context("the passphrase was not changed");
        }
        changed.push((path, key));
    }
    let receive_paths: Vec<String> = receive_keys
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    if args.json {
        println!(
            "{}",
            json!({
                "private_key_file": key_path.display().to_string(),
                "receive_keys": receive_paths,
                "encrypted": new.is_some(),
                "changed": true,
            })
        );
    } else {
        let path = key_path.display();
        match (current.is_some(), new.is_some()) {
            (_, false) => println!("passphrase removed: {path} is NOT encrypted now"),
            (false, true) => println!("passphrase set: {path} is encrypted now"),
            (true, true) => println!("passphrase changed: {path}"),
        }
        for path in receive_paths {
            println!("and receive key {}", path);
        }
    }
    Ok(())
}
