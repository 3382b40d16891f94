//! The packet envelope of PROTOCOL.md §2.
//!
//! `message`: JWE compact, `RSA-OAEP-256` + `A256GCM`, to the recipient; its plaintext is the
//! message object's JSON padded with spaces to a size bucket. `signature`: JWE compact, `dir` +
//! `A256GCM`, keyed by HKDF-SHA256(CEK of `message`, salt empty, info "jasper/v1 signature");
//! its plaintext is a detached-payload JWS, `PS256`, by the sender over the exact plaintext of
//! `message`, whose protected header names the recipient's fingerprint in `rcpt`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::identity::Identity;
use super::jose::{b64, header_str, join_jwe, parse_jwe, unb64};
use super::random_bytes;
use crate::proto::{PacketHash, PublicKey};

/// HKDF info string for the signature key.
pub const SIGNATURE_KEY_INFO: &[u8] = b"jasper/v1 signature";
/// Smallest padding bucket; then powers of two.
pub const FIRST_BUCKET: usize = 512;

/// A sealed message: the three computed fields of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The JWE of the message object.
    pub message: String,
    /// SHA-256 of `message`.
    pub hash: PacketHash,
    /// The encrypted signature.
    pub signature: String,
}

/// An opened message whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The message object.
    pub object: Value,
    /// The sender, whose key verified the signature.
    pub sender: PublicKey,
}

/// Why a packet could not be opened, or must not be believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not for this key, or damaged: nothing can be read.
    #[error("cannot decrypt: {0}")]
    Undecryptable(&'static str),
    /// The plaintext is not a message object with a valid `sender`.
    #[error("malformed message object: {0}")]
    Malformed(String),
    /// The signature is missing, damaged, or not by the claimed sender.
    #[error(
        "the signature does not verify: the message is not shown as coming from its claimed sender"
    )]
    BadSignature,
    /// The signature was made for another recipient (`rcpt`).
    #[error("the signature names another recipient: the message was re-encrypted to us")]
    WrongRecipient,
}

/// The padded length for `len` bytes: 512, then the next power of two.
pub fn bucket(len: usize) -> usize {
    len.max(FIRST_BUCKET).next_power_of_two()
}

fn signature_key(cek: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, cek)
        .expand(SIGNATURE_KEY_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

/// AES-256-GCM with `header_b64` as additional data; returns (iv, ciphertext, tag).
fn gcm_encrypt(key: &[u8], header_b64: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let mut iv = [0u8; 12];
    random_bytes(&mut iv);
    let nonce = Nonce::try_from(&iv[..]).expect("12-byte nonce");
    let mut out = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: header_b64.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of a bounded message");
    let tag = out.split_off(out.len() - 16);
    (iv.to_vec(), out, tag)
}

fn gcm_decrypt(key: &[u8], header_b64: &str, iv: &[u8], ct: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    // The tag is checked apart from the ciphertext: AES-GCM decrypts their concatenation, so
    // bytes moved from the end of one part to the start of the other would still open, and
    // the same message would travel under a new hash, past the check for replays.
    if tag.len() != 16 {
        return None;
    }
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let nonce = Nonce::try_from(iv).ok()?;
    let mut combined = Vec::with_capacity(ct.len() + tag.len());
    combined.extend_from_slice(ct);
    combined.extend_from_slice(tag);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &combined,
                aad: header_b64.as_bytes(),
            },
        )
        .ok()
}

/// Seals the JSON of a message object from `sender` to `recipient`.
pub fn seal(
    object_json: &[u8],
    sender: &Identity,
    recipient: &PublicKey,
) -> Result<Sealed, String> {
    let rsa = recipient.rsa().map_err(|e| e.to_string())?;
    let mut plaintext = Zeroizing::new(object_json.to_vec());
    plaintext.resize(bucket(object_json.len()), b' ');

    let mut cek = Zeroizing::new([0u8; 32]);
    random_bytes(cek.as_mut());
    let encrypted_key = rsa
        .oaep_encrypt::<Sha256>(cek.as_ref())
        .map_err(|e| e.to_string())?;
    let header = b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    let (iv, ct, tag) = gcm_encrypt(cek.as_ref(), &header, &plaintext);
    let message = join_jwe(&header, &encrypted_key, &iv, &ct, &tag);

    // Detached JWS over the exact plaintext, bound to the recipient.
    let jws_header = b64(
        json!({ "alg": "PS256", "rcpt": recipient.fingerprint().to_string() })
            .to_string()
            .as_bytes(),
    );
    let signing_input = format!("{jws_header}.{}", b64(&plaintext));
    let sig = sender
        .private()
        .pss_sign::<Sha256>(signing_input.as_bytes())
        .map_err(|e| e.to_string())?;
    let jws = format!("{jws_header}..{}", b64(&sig));
    let sig_header = b64(br#"{"alg":"dir","enc":"A256GCM"}"#);
    let key = signature_key(cek.as_ref());
    let (iv, ct, tag) = gcm_encrypt(key.as_ref(), &sig_header, jws.as_bytes());
    let signature = join_jwe(&sig_header, &[], &iv, &ct, &tag);
    Ok(Sealed {
        hash: PacketHash::of_message(&message),
        message,
        signature,
    })
}

/// Opens a packet addressed to `me` and verifies its signature against the sender it names.
pub fn open(message: &str, signature: &str, me: &Identity) -> Result<Opened, OpenError> {
    let jwe = parse_jwe(message).ok_or(OpenError::Undecryptable("not a JWE"))?;
    if header_str(&jwe.header, "alg") != Some("RSA-OAEP-256")
        || header_str(&jwe.header, "enc") != Some("A256GCM")
    {
        return Err(OpenError::Undecryptable("not RSA-OAEP-256 + A256GCM"));
    }
    let cek = Zeroizing::new(
        me.private()
            .oaep_decrypt::<Sha256>(&jwe.encrypted_key)
            .map_err(|_| OpenError::Undecryptable("the key is not for us"))?,
    );
    if cek.len() != 32 {
        return Err(OpenError::Undecryptable("content key is not 256 bits"));
    }
    let plaintext = Zeroizing::new(
        gcm_decrypt(&cek, jwe.header_b64, &jwe.iv, &jwe.ciphertext, &jwe.tag)
            .ok_or(OpenError::Undecryptable("authentication failed"))?,
    );
    let object: Value = serde_json::from_slice(&plaintext)
        .map_err(|e| OpenError::Malformed(format!("not JSON: {e}")))?;
    let sender_text = object
        .get("sender")
        .and_then(Value::as_str)
        .ok_or_else(|| OpenError::Malformed("no `sender`".into()))?;
    let sender = PublicKey::parse(sender_text, 2048)
        .map_err(|e| OpenError::Malformed(format!("`sender`: {e}")))?;

    let sig_jwe = parse_jwe(signature).ok_or(OpenError::BadSignature)?;
    if header_str(&sig_jwe.header, "alg") != Some("dir")
        || header_str(&sig_jwe.header, "enc") != Some("A256GCM")
    {
        return Err(OpenError::BadSignature);
    }
    let key = signature_key(&cek);
    let jws = gcm_decrypt(
        key.as_ref(),
        sig_jwe.header_b64,
        &sig_jwe.iv,
        &sig_jwe.ciphertext,
        &sig_jwe.tag,
    )
    .ok_or(OpenError::BadSignature)?;
    let jws = String::from_utf8(jws).map_err(|_| OpenError::BadSignature)?;
    let (jws_header_b64, rest) = jws.split_once('.').ok_or(OpenError::BadSignature)?;
    let sig_b64 = rest.strip_prefix('.').ok_or(OpenError::BadSignature)?;
    let jws_header: serde_json::Map<String, Value> =
        serde_json::from_slice(&unb64(jws_header_b64).ok_or(OpenError::BadSignature)?)
            .map_err(|_| OpenError::BadSignature)?;
    if header_str(&jws_header, "alg") != Some("PS256") {
        return Err(OpenError::BadSignature);
    }
    if header_str(&jws_header, "rcpt") != Some(me.public().fingerprint().to_string().as_str()) {
        return Err(OpenError::WrongRecipient);
    }
    let sig = unb64(sig_b64).ok_or(OpenError::BadSignature)?;
    let signing_input = format!("{jws_header_b64}.{}", b64(&plaintext));
    let rsa = sender.rsa().map_err(|_| OpenError::BadSignature)?;
    rsa.pss_verify::<Sha256>(signing_input.as_bytes(), &sig)
        .map_err(|_| OpenError::BadSignature)?;
    Ok(Opened { object, sender })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;
    use crate::proto::jwe::{JweProfile, check_compact};

    fn object(sender: &Identity, content: &str) -> Vec<u8> {
        json!({
            "sender": sender.public().canonical(),
            "channel_id": "0b9b7c7e-5d3a-4f43-9b1e-0c6e2f1d2a3b",
            "type": "MESSAGE",
            "content": content,
            "id": "5f1d4c0e-8a57-4c43-a3d0-6e8e0f7b9c21",
            "timestamp": "2026-11-26T19:27:44.123Z",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn sealed_packets_open_and_verify() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let sealed = seal(&object(&alice, "hello bob"), &alice, bob.public()).unwrap();
        // What a relay checks passes.
        check_compact(&sealed.message, JweProfile::Message { modulus_bytes: 512 }).unwrap();
        check_compact(&sealed.signature, JweProfile::Signature).unwrap();
        assert_eq!(sealed.hash, PacketHash::of_message(&sealed.message));
        let opened = open(&sealed.message, &sealed.signature, &bob).unwrap();
        assert_eq!(opened.object["content"], "hello bob");
        assert_eq!(&opened.sender, alice.public());
        // Only bob can read it.
        assert!(matches!(
            open(&sealed.message, &sealed.signature, &alice),
            Err(OpenError::Undecryptable(_))
        ));
    }

    #[test]
    fn padding_hides_the_length_within_a_bucket() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let short = seal(&object(&alice, "hi"), &alice, bob.public()).unwrap();
        let longer = seal(&object(&alice, &"x".repeat(100)), &alice, bob.public()).unwrap();
        assert_eq!(short.message.len(), longer.message.len());
        let big = seal(&object(&alice, &"x".repeat(600)), &alice, bob.public()).unwrap();
        assert!(big.message.len() > short.message.len());
        assert_eq!(bucket(1), 512);
        assert_eq!(bucket(512), 512);
        assert_eq!(bucket(513), 1024);
        assert_eq!(bucket(5000), 8192);
    }

    #[test]
    fn a_forged_sender_is_not_believed() {
        let (alice, bob, mallory) = (fixture("alice"), fixture("bob"), fixture("carol"));
        // Mallory claims to be alice but signs with her own key.
        let forged = seal(&object(&alice, "send money"), &mallory, bob.public()).unwrap();
        assert_eq!(
            open(&forged.message, &forged.signature, &bob),
            Err(OpenError::BadSignature)
        );
        // A signature from another packet does not fit this one.
        let genuine = seal(&object(&alice, "hello"), &alice, bob.public()).unwrap();
        let other = seal(&object(&alice, "other"), &alice, bob.public()).unwrap();
        assert_eq!(
            open(&genuine.message, &other.signature, &bob),
            Err(OpenError::BadSignature)
        );
        assert_eq!(
            open(&genuine.message, "garbage", &bob),
            Err(OpenError::BadSignature)
        );
    }

    #[test]
    fn a_signed_message_re_encrypted_to_someone_else_is_detected() {
        // Bob receives alice's signed message and tries to pass it to carol as sent to her:
        // he re-encrypts the same plaintext and the same JWS to carol.
        let (alice, bob, carol) = (fixture("alice"), fixture("bob"), fixture("carol"));
        let to_bob = seal(&object(&alice, "for bob only"), &alice, bob.public()).unwrap();
        let jwe = parse_jwe(&to_bob.message).unwrap();
        let cek = bob
            .private()
            .oaep_decrypt::<Sha256>(&jwe.encrypted_key)
            .unwrap();
        let plaintext =
            gcm_decrypt(&cek, jwe.header_b64, &jwe.iv, &jwe.ciphertext, &jwe.tag).unwrap();
        let sig_jwe = parse_jwe(&to_bob.signature).unwrap();
        let jws = gcm_decrypt(
            signature_key(&cek).as_ref(),
            sig_jwe.header_b64,
            &sig_jwe.iv,
            &sig_jwe.ciphertext,
            &sig_jwe.tag,
        )
        .unwrap();
        // Re-encrypt both to carol with a fresh content key.
        let carol_rsa = carol.public().rsa().unwrap();
        let mut cek2 = [0u8; 32];
        random_bytes(&mut cek2);
        let header = b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
        let (iv, ct, tag) = gcm_encrypt(&cek2, &header, &plaintext);
        let message = join_jwe(
            &header,
            &carol_rsa.oaep_encrypt::<Sha256>(&cek2).unwrap(),
            &iv,
            &ct,
            &tag,
        );
        let sig_header = b64(br#"{"alg":"dir","enc":"A256GCM"}"#);
        let (iv, ct, tag) = gcm_encrypt(signature_key(&cek2).as_ref(), &sig_header, &jws);
        let signature = join_jwe(&sig_header, &[], &iv, &ct, &tag);
        assert_eq!(
            open(&message, &signature, &carol),
            Err(OpenError::WrongRecipient)
        );
    }

    #[test]
    fn damaged_packets_are_undecryptable_not_panics() {
        let (alice, bob) = (fixture("alice"), fixture("bob"));
        let sealed = seal(&object(&alice, "hello"), &alice, bob.public()).unwrap();
        let mut parts: Vec<String> = sealed.message.split('.').map(str::to_owned).collect();
        parts[3] = b64(b"tampered ciphertext");
        let tampered = parts.join(".");
        assert!(matches!(
            open(&tampered, &sealed.signature, &bob),
            Err(OpenError::Undecryptable(_))
        ));
        // The same bytes split differently between ciphertext and tag (a new hash for the same
        // message) do not open: the tag is 16 bytes in both parts of the packet.
        for parts_of in [&sealed.message, &sealed.signature] {
            let parts: Vec<&str> = parts_of.split('.').collect();
            let (ct, tag) = (unb64(parts[3]).unwrap(), unb64(parts[4]).unwrap());
            let mut moved = parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            moved[3] = b64(&ct[..ct.len() - 1]);
            moved[4] = b64(&[&ct[ct.len() - 1..], &tag[..]].concat());
            let moved = moved.join(".");
            let (message, signature) = if parts_of == &sealed.message {
                (moved.as_str(), sealed.signature.as_str())
            } else {
                (sealed.message.as_str(), moved.as_str())
            };
            assert!(open(message, signature, &bob).is_err(), "{parts_of:.20}");
        }
        for junk in ["", "a.b", "....", "a.b.c.d.e"] {
            assert!(open(junk, &sealed.signature, &bob).is_err(), "{junk:?}");
        }
    }
}
