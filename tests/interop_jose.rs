//! Interoperability of the envelope (PROTOCOL.md §2) with an independent JOSE implementation:
//! Python's jwcrypto opens what jasper seals, and jasper opens what jwcrypto seals. The Python
//! environment is made by `bash tests/run.sh` (.venv with jwcrypto).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jasper::crypto::{Identity, OpenError, open, seal};
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn key_file(name: &str, kind: &str) -> PathBuf {
    root().join(format!("tests/fixtures/keys/{name}-4096.{kind}.pem"))
}

fn identity(name: &str) -> Identity {
    let path = key_file(name, "key");
    Identity::from_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
}

/// Runs the jwcrypto peer; returns (success, stdout, stderr).
fn peer(args: &[&Path], mode: &str, stdin: &[u8]) -> (bool, String, String) {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/run.sh`, which creates it with jwcrypto",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root().join("tests/interop/jose_peer.py"))
        .arg(mode)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the jwcrypto peer");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn message_object(sender: &Identity, content: &str) -> Value {
    json!({
        "sender": sender.public().canonical(),
        "channel_id": "0b9b7c7e-5d3a-4f43-9b1e-0c6e2f1d2a3b",
        "type": "MESSAGE",
        "content": content,
        "id": "5f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c21",
        "timestamp": "2026-11-26T19:27:44.123Z",
    })
}

#[test]
fn jwcrypto_opens_what_jasper_seals() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let object = message_object(&alice, "hello from rust ✓");
    let sealed = seal(object.to_string().as_bytes(), &alice, bob.public()).unwrap();
    let packet = json!({ "message": sealed.message, "signature": sealed.signature });
    let (ok, out, err) = peer(
        &[&key_file("bob", "key"), &key_file("alice", "pub")],
        "open",
        packet.to_string().as_bytes(),
    );
    assert!(ok, "jwcrypto could not open our packet: {err}");
    let opened: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(opened, object);
}

#[test]
fn jasper_opens_what_jwcrypto_seals() {
    let (carol, alice) = (identity("carol"), identity("alice"));
    let object = message_object(&carol, "hello from python");
    let (ok, out, err) = peer(
        &[&key_file("carol", "key"), &key_file("alice", "pub")],
        "seal",
        object.to_string().as_bytes(),
    );
    assert!(ok, "jwcrypto could not seal: {err}");
    let packet: Value = serde_json::from_str(out.trim()).unwrap();
    let message = packet["message"].as_str().unwrap();
    // What a relay checks holds for their packet too.
    jasper::proto::jwe::check_compact(
        message,
        jasper::proto::jwe::JweProfile::Message { modulus_bytes: 512 },
    )
    .unwrap();
    assert_eq!(
        packet["hash"].as_str().unwrap(),
        jasper::proto::PacketHash::of_message(message).to_string()
    );
    let opened = open(message, packet["signature"].as_str().unwrap(), &alice).unwrap();
    assert_eq!(opened.object, object);
    assert_eq!(&opened.sender, carol.public());
    // Sealed for alice, it is no use to bob.
    assert!(matches!(
        open(
            message,
            packet["signature"].as_str().unwrap(),
            &identity("bob")
        ),
        Err(OpenError::Undecryptable(_))
    ));
}

#[test]
fn neither_side_believes_a_forged_sender() {
    // Dave writes a message that claims to be from alice, signed with his own key.
    let (dave, alice, bob) = (identity("dave"), identity("alice"), identity("bob"));
    let claimed = message_object(&alice, "forged");
    let sealed = seal(claimed.to_string().as_bytes(), &dave, bob.public()).unwrap();
    let packet = json!({ "message": sealed.message, "signature": sealed.signature });
    let (ok, _, err) = peer(
        &[&key_file("bob", "key"), &key_file("alice", "pub")],
        "open",
        packet.to_string().as_bytes(),
    );
    assert!(!ok, "jwcrypto believed a forged signature");
    assert!(
        err.contains("Verification failed") || err.contains("InvalidJWSSignature"),
        "{err}"
    );
    let (ok, out, _) = peer(
        &[&key_file("dave", "key"), &key_file("bob", "pub")],
        "seal",
        claimed.to_string().as_bytes(),
    );
    assert!(ok);
    let theirs: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        open(
            theirs["message"].as_str().unwrap(),
            theirs["signature"].as_str().unwrap(),
            &bob
        ),
        Err(OpenError::BadSignature)
    );
}
