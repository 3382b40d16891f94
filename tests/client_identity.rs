//! `jasper init`, `jasper id` and `jasper contacts` run as a person would, each in its own
//! home (XDG folders in a temporary directory).

mod common;

use std::path::{Path, PathBuf};

use common::{key_b64, key_pem, run_jasper, run_jasper_with_stdin};
use serde_json::Value;

fn json_line(out: &str) -> Value {
    serde_json::from_str(out.lines().next().expect("a line of output")).expect("JSON")
}

/// A home whose configuration points at a fixture key (no key generation needed).
fn home_with_fixture(name: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("id.pem");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/keys/{name}-4096.key.pem")),
        &key,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = home.path().join("xdg-config/jasper/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[identity]\nprivate_key = \"{}\"\n[client]\ndata_dir = \"{}\"\n",
            key.display(),
            home.path().join("client").display()
        ),
    )
    .unwrap();
    home
}

/// `jasper init` in a new home with the passphrase "correct horse battery"; its `--json`.
fn init_protected(home: &Path) -> Value {
    let (code, out, err) = run_jasper_with_stdin(
        &["init", "--passphrase-stdin", "--json"],
        home,
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "{err}");
    json_line(&out)
}

#[test]
fn init_creates_a_protected_identity_and_a_config() {
    let home = tempfile::tempdir().unwrap();
    let made = init_protected(home.path());
    assert_eq!(made["encrypted"], true);
    let key_file = Path::new(made["private_key_file"].as_str().unwrap());
    let pem = std::fs::read_to_string(key_file).unwrap();
    assert!(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(home.path().join("xdg-config/jasper/config.toml").is_file());

    // `id` shows the same key, without asking for the passphrase.
    let (code, out, err) = run_jasper(&["id", "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    let id = json_line(&out);
    assert_eq!(id["public_key"], made["public_key"]);
    assert_eq!(id["fingerprint"], made["fingerprint"]);
    assert_eq!(id["fingerprint"].as_str().unwrap().len(), 64);

    // Never overwritten.
    let (code, _, err) =
        run_jasper_with_stdin(&["init", "--passphrase-stdin"], home.path(), Some("x\n"));
    assert_eq!(code, 2, "a user error: {err}");
    assert!(err.contains("exists already"), "{err}");

    // Without the .pub file, `id` needs the passphrase: a wrong one is a clear error.
    std::fs::remove_file(key_file.with_file_name("identity.pem.pub")).unwrap();
    let (code, _, err) =
        run_jasper_with_stdin(&["id", "--passphrase-stdin"], home.path(), Some("wrong\n"));
    assert_ne!(code, 0);
    assert!(err.contains("wrong passphrase"), "{err}");
    let (code, out, _) = run_jasper_with_stdin(
        &["id", "--json", "--passphrase-stdin"],
        home.path(),
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0);
    assert_eq!(json_line(&out)["public_key"], made["public_key"]);
}

#[test]
fn init_writes_the_configuration_file_named_when_it_is_not_there_yet() {
    let home = tempfile::tempdir().unwrap();
    let named = home.path().join("elsewhere/jasper.toml");
    let named_arg = named.to_str().unwrap();
    let (code, out, err) = run_jasper(
        &["--config", named_arg, "init", "--no-passphrase", "--json"],
        home.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["config_file"], named_arg);
    assert!(named.is_file());
    assert!(!home.path().join("xdg-config/jasper/config.toml").exists());
    // Commands naming it find the identity it points to.
    let (code, out, err) = run_jasper(&["--config", named_arg, "id", "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["fingerprint"].as_str().unwrap().len(), 64);
    // A file named for any other command must exist.
    let missing = home.path().join("missing.toml");
    let (code, _, err) = run_jasper(&["--config", missing.to_str().unwrap(), "id"], home.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn a_protected_key_file_opens_in_openssl_with_the_passphrase() {
    let home = tempfile::tempdir().unwrap();
    let made = init_protected(home.path());
    let key_file = made["private_key_file"].as_str().unwrap().to_owned();
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed by tests/run.sh")
    };
    let ok = openssl(&[
        "pkey",
        "-in",
        &key_file,
        "-passin",
        "pass:correct horse battery",
        "-noout",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = openssl(&["pkey", "-in", &key_file, "-passin", "pass:wrong", "-noout"]);
    assert!(!wrong.status.success());
    // scrypt, N = 2^14 (0x4000): what README.md says, and what OpenSSL opens by default.
    let parsed = openssl(&["asn1parse", "-in", &key_file]);
    let text = String::from_utf8_lossy(&parsed.stdout);
    assert!(text.contains(":scrypt"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("INTEGER") && l.trim_end().ends_with(":4000")),
        "{text}"
    );
}

#[test]
fn keys_encrypted_by_openssl_open_or_say_why_they_cannot() {
    let home = home_with_fixture("alice");
    let key = home.path().join("id.pem");
    let plain = std::fs::read(&key).unwrap();
    // Re-encrypts the fixture key with openssl's `pkcs8 -topk8` and `scheme` flags.
    let encrypt = |scheme: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["pkcs8", "-topk8", "-passout", "pass:open sesame"])
            .args(scheme)
            .args(["-in", "/dev/stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(&plain)?;
                child.wait_with_output()
            })
            .expect("openssl is installed by tests/run.sh");
        assert!(out.status.success());
        std::fs::write(&key, &out.stdout).unwrap();
        out.stdout
    };
    let id = |passphrase: &str| {
        run_jasper_with_stdin(
            &["id", "--json", "--passphrase-stdin"],
            home.path(),
            Some(passphrase),
        )
    };
    // PBES2 with PBKDF2 (openssl's default) opens, and only with its passphrase.
    encrypt(&["-v2", "aes-256-cbc"]);
    let (code, out, err) = id("open sesame\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));
    let (code, _, err) = id("wrong\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wrong passphrase"), "{err}");
    // PBES1 (3DES) cannot be opened: said so, with what to do, not "wrong passphrase".
    encrypt(&["-v1", "PBE-SHA1-3DES"]);
    let (code, _, err) = id("open sesame\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot open") && err.contains("openssl pkcs8"),
        "{err}"
    );
    // A damaged file is not a key, whatever the passphrase.
    let text = String::from_utf8(encrypt(&["-v2", "aes-256-cbc"])).unwrap();
    let cut: String = text
        .lines()
        .take(6)
        .chain(text.lines().last())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&key, cut).unwrap();
    let (code, _, err) = id("open sesame\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a PKCS#8"), "{err}");
}

#[test]
fn a_key_listed_twice_gets_its_new_passphrase_once() {
    let home = home_with_fixture("alice");
    let key = home.path().join("id.pem");
    let config = home.path().join("xdg-config/jasper/config.toml");
    // The identity again, and by another spelling of its path, as receive keys.
    let again = home.path().join(".").join("id.pem");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[client]",
        &format!(
            "receive_keys = [{:?}, {:?}]\n[client]",
            key.display().to_string(),
            again.display().to_string()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let (code, out, err) = run_jasper_with_stdin(
        &["passphrase", "--passphrase-stdin"],
        home.path(),
        Some("pw words\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("passphrase set"), "{out}");
    assert!(jasper::crypto::Identity::load(&key, Some("pw words")).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn init_without_a_terminal_asks_for_a_flag() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run_jasper(&["init"], home.path());
    assert_ne!(code, 0);
    assert!(err.contains("--passphrase-stdin"), "{err}");
    let (code, _, err) =
        run_jasper_with_stdin(&["init", "--passphrase-stdin"], home.path(), Some("\n"));
    assert_ne!(code, 0);
    assert!(err.contains("empty passphrase"), "{err}");
    assert!(
        !home.path().join("xdg-data/jasper/identity.pem").exists(),
        "nothing written"
    );
}

#[test]
fn an_existing_key_file_is_an_identity_and_a_readable_one_is_refused() {
    let home = home_with_fixture("alice");
    let (code, out, err) = run_jasper(&["id", "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = home.path().join("id.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, _, err) = run_jasper(&["id"], home.path());
        assert_ne!(code, 0);
        assert!(err.contains("chmod 600"), "{err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run_jasper(&["id"], empty.path());
    assert_ne!(code, 0);
    assert!(err.contains("jasper init"), "{err}");
}

#[test]
fn contacts_add_list_show_rename_remove() {
    let home = home_with_fixture("alice");
    let dir = home.path();
    let bob_file = dir.join("bob.pub");
    std::fs::write(&bob_file, key_pem("bob-4096")).unwrap();
    let avatar = dir.join("bob.png");
    std::fs::write(&avatar, b"\x89PNG\r\n\x1a\n and the rest of a picture").unwrap();
    let not_a_picture = dir.join("notes.png");
    std::fs::write(&not_a_picture, b"root:x:0:0:root").unwrap();

    let (code, out, err) = run_jasper(
        &[
            "contacts",
            "add",
            "bob",
            bob_file.to_str().unwrap(),
            "--avatar",
            avatar.to_str().unwrap(),
            "--json",
        ],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let bob = json_line(&out);
    assert_eq!(bob["public_key"], key_b64("bob-4096"));
    let png = PathBuf::from(bob["avatar"].as_str().unwrap());
    assert!(png.is_file(), "the picture was copied");
    assert_eq!(png.extension().unwrap(), "png");
    // A new picture of another format replaces the old one.
    let gif = dir.join("bob-new");
    std::fs::write(&gif, b"GIF89a and the rest").unwrap();
    let (code, out, err) = run_jasper(
        &["contacts", "avatar", "bob", gif.to_str().unwrap(), "--json"],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let kept = PathBuf::from(json_line(&out)["avatar"].as_str().unwrap());
    assert_eq!(kept.extension().unwrap(), "gif");
    assert!(kept.is_file() && !png.exists(), "{kept:?} {png:?}");
    let (code, _, err) = run_jasper(&["contacts", "add", "carol", &key_b64("carol-4096")], dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_jasper(&["contacts", "add", "dave", &key_pem("dave-4096")], dir);
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = run_jasper(&["contacts", "list", "--json"], dir);
    assert_eq!(code, 0);
    let names: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["bob", "carol", "dave"]);

    let (code, _, _) = run_jasper(&["contacts", "rename", "carol", "Carol C."], dir);
    assert_eq!(code, 0);
    let (code, out, _) = run_jasper(&["contacts", "show", "Carol C.", "--json"], dir);
    assert_eq!(code, 0);
    assert_eq!(json_line(&out)["public_key"], key_b64("carol-4096"));
    let (code, _, _) = run_jasper(&["contacts", "rm", "dave"], dir);
    assert_eq!(code, 0);
    let (_, out, _) = run_jasper(&["contacts", "list"], dir);
    assert!(
        out.contains("bob") && out.contains("Carol C.") && !out.contains("dave"),
        "{out}"
    );
    // Each with the short fingerprint its owner's `jasper id` shows.
    let bob_id = home_with_fixture("bob");
    let (_, id, _) = run_jasper(&["id", "--json"], bob_id.path());
    let full = json_line(&id)["fingerprint"].as_str().unwrap().to_owned();
    let short: Vec<&str> = (0..4).map(|i| &full[i * 4..i * 4 + 4]).collect();
    let short = short.join(" ");
    let (_, shown, _) = run_jasper(&["id"], bob_id.path());
    assert!(shown.contains(&short), "{shown}");
    let line = out.lines().find(|l| l.starts_with("bob ")).unwrap();
    assert!(line.contains(&short), "{line}");

    // Mistakes get clear errors and change nothing.
    for (args, needle) in [
        (
            vec!["contacts", "add", "bob", &key_b64("dave-4096")],
            "exists already",
        ),
        (
            vec!["contacts", "add", "eve", "not-a-key"],
            "not a usable public key",
        ),
        (
            vec!["contacts", "add", "eve", &key_pem("small-2048")],
            "2048 bits",
        ),
        (
            vec!["contacts", "add", "again", &key_b64("bob-4096")],
            "already saved as \"bob\"",
        ),
        (vec!["contacts", "show", "nobody"], "no contact named"),
        (
            vec!["contacts", "avatar", "bob", not_a_picture.to_str().unwrap()],
            "not a PNG, JPEG, GIF or WebP picture",
        ),
        (
            vec!["contacts", "rename", "nobody", "x"],
            "no contact named",
        ),
        (vec!["contacts", "rm", "nobody"], "no contact named"),
    ] {
        let (code, _, err) = run_jasper(&args, dir);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (_, out, _) = run_jasper(&["contacts", "list", "--json"], dir);
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn a_damaged_client_database_is_a_clear_error_that_says_what_to_do() {
    let home = home_with_fixture("alice");
    let dir = home.path();
    let (code, _, err) = run_jasper(&["contacts", "add", "bob", &key_b64("bob-4096")], dir);
    assert_eq!(code, 0, "{err}");
    let db = dir.join("client/client.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].fill(0x5a);
    std::fs::write(&db, bytes).unwrap();
    let (code, _, err) = run_jasper(&["contacts", "list"], dir);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot open the client database"), "{err}");
    assert!(
        err.contains("move it aside") && err.contains("restore a backup"),
        "the error says what to do: {err}"
    );
    // Moved aside, jasper starts afresh; the key is untouched.
    std::fs::rename(&db, dir.join("client/client.redb.damaged")).unwrap();
    let (code, out, err) = run_jasper(&["contacts", "list"], dir);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("bob"), "{out}");
    let (code, _, err) = run_jasper(&["id"], dir);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn init_can_make_an_extra_receive_key() {
    let home = home_with_fixture("alice");
    let path = home.path().join("work.pem");
    let (code, out, err) = run_jasper(
        &[
            "init",
            "--receive-key",
            path.to_str().unwrap(),
            "--no-passphrase",
        ],
        home.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("receive_keys"), "it says how to use it: {out}");
    assert!(path.is_file());
    assert!(home.path().join("work.pem.pub").is_file());
    // The main identity is untouched.
    let (_, out, _) = run_jasper(&["id", "--json"], home.path());
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));
}

#[test]
fn a_receive_key_takes_the_identity_s_passphrase_so_that_both_open() {
    let home = home_with_fixture("alice");
    let opens = |path: &Path, passphrase: Option<&str>| {
        jasper::crypto::Identity::load(path, passphrase).is_ok()
    };
    let run = |args: &[&str], stdin: &str| run_jasper_with_stdin(args, home.path(), Some(stdin));
    let config = home.path().join("xdg-config/jasper/config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let list = |paths: &[&Path]| {
        let listed: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        let text = original.replace(
            "[client]",
            &format!("receive_keys = [{}]\n[client]", listed.join(", ")),
        );
        std::fs::write(&config, text).unwrap();
    };
    // The identity has no passphrase: one typed for the receive key is not asked for, and
    // the key is as open as the identity.
    let first = home.path().join("first.pem");
    let (code, out, err) = run(
        &[
            "init",
            "--receive-key",
            first.to_str().unwrap(),
            "--passphrase-stdin",
            "--json",
        ],
        "of its own\n",
    );
    assert_eq!(code, 0, "{err}");
    let made = json_line(&out);
    assert_eq!(made["receive_key"], true);
    assert_eq!(made["encrypted"], false);
    assert!(opens(&first, None));
    list(&[&first]);
    let (code, out, err) = run(&["id", "--json"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");

    // With a passphrase on the identity, the next receive key gets that one.
    let (code, _, err) = run(&["passphrase", "--passphrase-stdin"], "shared words\n");
    assert_eq!(code, 0, "{err}");
    let make = |path: &Path, passphrase: &str| {
        let args = [
            "init",
            "--receive-key",
            path.to_str().unwrap(),
            "--passphrase-stdin",
        ];
        run(&args, passphrase)
    };
    let second = home.path().join("second.pem");
    let (code, out, err) = make(&second, "shared words\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("passphrase-protected"), "{out}");
    assert!(opens(&second, Some("shared words")) && !opens(&second, None));
    // A wrong one for the identity makes nothing.
    let third = home.path().join("third.pem");
    let (code, _, err) = make(&third, "wrong words\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!third.exists());
    // And with both keys listed, the usual commands open them with the one passphrase.
    list(&[&first, &second]);
    let (code, out, err) = run(&["id", "--json", "--passphrase-stdin"], "shared words\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn the_passphrase_can_be_set_changed_and_removed_and_a_wrong_one_changes_nothing() {
    let home = home_with_fixture("alice");
    let key = home.path().join("id.pem");
    // A receive key beside it, unencrypted like the identity.
    let receive = home.path().join("receive.pem");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/dave-4096.key.pem"),
        &receive,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&receive, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = home.path().join("xdg-config/jasper/config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[client]",
        &format!("receive_keys = [\"{}\"]\n[client]", receive.display()),
    );
    std::fs::write(&config, text).unwrap();
    let opens = |path: &Path, passphrase: Option<&str>| {
        jasper::crypto::Identity::load(path, passphrase).is_ok()
    };
    let run = |args: &[&str], stdin: &str| run_jasper_with_stdin(args, home.path(), Some(stdin));

    // Set: the new passphrase is the first line (the keys had none).
    let (code, out, err) = run(&["passphrase", "--passphrase-stdin"], "first words\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("passphrase set"), "{out}");
    for path in [&key, &receive] {
        assert!(
            !opens(path, None) && opens(path, Some("first words")),
            "{path:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    // A wrong current passphrase, or an empty new one, changes nothing.
    let before = (
        std::fs::read(&key).unwrap(),
        std::fs::read(&receive).unwrap(),
    );
    let (code, _, err) = run(&["passphrase", "--passphrase-stdin"], "wrong\nother\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wrong passphrase"), "{err}");
    let (code, _, err) = run(&["passphrase", "--passphrase-stdin"], "first words\n\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty passphrase"), "{err}");
    assert_eq!(
        before,
        (
            std::fs::read(&key).unwrap(),
            std::fs::read(&receive).unwrap()
        )
    );

    // Change: the current one, then the new one.
    let (code, out, err) = run(
        &["passphrase", "--passphrase-stdin", "--json"],
        "first words\nsecond words\n",
    );
    assert_eq!(code, 0, "{err}");
    let result = json_line(&out);
    assert_eq!(result["encrypted"], true);
    assert_eq!(result["receive_keys"][0], receive.display().to_string());
    for path in [&key, &receive] {
        assert!(opens(path, Some("second words")) && !opens(path, Some("first words")));
    }
    // The same key, under the new passphrase (this home keeps no public half beside it).
    let (code, out, err) = run(&["id", "--json", "--passphrase-stdin"], "second words\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));

    // A change that fails on the identity (here its temporary file cannot be made) puts the
    // receive key, already rewritten, back on the old passphrase: one passphrase opens all.
    std::fs::create_dir(home.path().join("id.pem.new")).unwrap();
    let (code, _, err) = run(
        &["passphrase", "--passphrase-stdin"],
        "second words\nthird words\n",
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("the passphrase was not changed"), "{err}");
    for path in [&key, &receive] {
        assert!(opens(path, Some("second words")), "{path:?}: {err}");
    }
    std::fs::remove_dir(home.path().join("id.pem.new")).unwrap();

    // Remove.
    let (code, out, err) = run(
        &["passphrase", "--remove", "--passphrase-stdin"],
        "second words\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NOT encrypted"), "{out}");
    assert!(opens(&key, None) && opens(&receive, None));
    let (code, out, _) = run(&["passphrase", "--remove"], "");
    assert_eq!(code, 0);
    assert!(out.contains("nothing to remove"), "{out}");
    assert!(!home.path().join("id.pem.new").exists());
}

#[test]
fn key_files_and_passphrases_are_read_only_up_to_a_bound() {
    let home = home_with_fixture("alice");
    // A big file given as a key is not read to its end, and is not a key.
    let big = home.path().join("big.pem");
    let mut text = key_pem("bob-4096");
    text.push_str(&"x".repeat(200 * 1024));
    std::fs::write(&big, text).unwrap();
    let (code, _, err) = run_jasper(
        &["contacts", "add", "bob", big.to_str().unwrap()],
        home.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a usable public key"), "{err}");
    // A passphrase on standard input is at most 4096 bytes.
    let (code, _, err) = run_jasper_with_stdin(
        &["passphrase", "--passphrase-stdin"],
        home.path(),
        Some(&format!("{}\n", "p".repeat(10_000))),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("longer than 4096 bytes"), "{err}");
    let (code, _, err) = run_jasper_with_stdin(
        &["passphrase", "--passphrase-stdin"],
        home.path(),
        Some(&format!("{}\n", "p".repeat(4096))),
    );
    assert_eq!(code, 0, "{err}");
}

#[cfg(unix)]
#[test]
fn the_client_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let home = home_with_fixture("alice");
    let (code, _, err) = run_jasper(
        &["contacts", "add", "bob", &key_b64("bob-4096")],
        home.path(),
    );
    assert_eq!(code, 0, "{err}");
    let dir = home.path().join("client");
    let db = dir.join("client.redb");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    // A database left readable by others (an older jasper) is narrowed on the next command.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = run_jasper(&["contacts", "list"], home.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bob"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_public_key_file_that_is_not_the_keys_half_is_not_handed_out() {
    let home = home_with_fixture("alice");
    let pub_of = |name: &str| {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/keys/{name}-4096.pub.pem")),
            home.path().join("id.pem.pub"),
        )
        .unwrap();
    };
    // A `.pub` left beside the key from another one.
    pub_of("bob");
    let (code, out, err) = run_jasper(&["id", "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));
    assert!(err.contains("is not the public half"), "{err}");
    // The right one is used as it is, without a word.
    pub_of("alice");
    let (code, out, err) = run_jasper(&["id", "--json"], home.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["public_key"], key_b64("alice-4096"));
    assert!(err.is_empty(), "{err}");
    // (An encrypted key cannot be checked without its passphrase: `id` takes its `.pub`
    // without asking, as the init test shows.)
}
