//! The packet of JASPER.md `/send`: parsed from JSON into a [`Packet`] only when every rule of
//! PROTOCOL.md §1–§2 holds, so that code past this point never sees an unchecked packet.

use serde_json::{Map, Value};

use super::hash::{HashFormatError, PacketHash};
use super::jwe::{JweError, JweProfile, check_compact};
use super::key::{KeyCache, KeyError, PublicKey};
use super::time::parse_rfc3339_ms;

/// Largest `signature` we accept: an encrypted PS256 JWS over a 16384-bit key is about 5 KB.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
/// Most extra (unknown) fields a packet may carry; they are kept verbatim.
pub const MAX_EXTRA_FIELDS: usize = 16;
/// Largest serialized size of all extra fields together.
pub const MAX_EXTRA_BYTES: usize = 4 * 1024;

/// The limits a relay's configuration puts on packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRules {
    /// Smallest RSA modulus accepted for `recipient`.
    pub min_key_bits: usize,
    /// Largest `message` in bytes.
    pub max_message_bytes: usize,
}

impl PacketRules {
    /// The largest request body a packet under these rules can need.
    pub const fn max_body_bytes(&self) -> usize {
        self.max_message_bytes
            + MAX_SIGNATURE_BYTES
            + super::key::MAX_KEY_TEXT_BYTES
            + MAX_EXTRA_BYTES
            + 1024
    }
}

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("a packet must be a JSON object")]
    NotObject,
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be a string, found {found}")]
    NotAString {
        /// The field.
        field: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// `recipient` is not an acceptable key.
    #[error("field `recipient`: {0}")]
    Recipient(#[from] KeyError),
    /// `hash` is not 64 lowercase hex digits.
    #[error("field `hash`: {0}")]
    HashFormat(#[from] HashFormatError),
    /// `hash` is not SHA-256 of `message`.
    #[error("field `hash` does not match SHA-256 of `message`")]
    HashMismatch,
    /// `message` or `signature` is not a JWE of the profile.
    #[error("field `{field}` {source}")]
    Jwe {
        /// `message` or `signature`.
        field: &'static str,
        /// What was wrong.
        source: JweError,
    },
    /// `message` is larger than the relay accepts.
    #[error("field `message` is {size} bytes; this relay accepts at most {max}")]
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `signature` is larger than any valid one.
    #[error("field `signature` is {size} bytes; at most {MAX_SIGNATURE_BYTES} are accepted")]
    SignatureTooLarge {
        /// Its size.
        size: usize,
    },
    /// `expires` is not an RFC 3339 timestamp.
    #[error("field `expires` must be an RFC 3339 timestamp such as \"2026-11-26T19:27:44Z\"")]
    BadExpires,
    /// Too many or too large extra fields.
    #[error(
        "too many extra fields: at most {MAX_EXTRA_FIELDS} fields and {MAX_EXTRA_BYTES} bytes besides the four of the protocol"
    )]
    TooManyExtras,
}

impl PacketError {
    /// Whether the refusal comes from this relay's own limits, which another relay may set
    /// differently (`max_message_bytes`, `min_key_bits`, the largest key taken, which older
    /// relays set higher): such a packet is not a sign of a bad peer.
    pub fn is_local_policy(&self) -> bool {
        matches!(
            self,
            PacketError::MessageTooLarge { .. }
                | PacketError::Recipient(KeyError::TooSmall { .. } | KeyError::TooLarge(_))
        )
    }

    /// Whether the refusal is about size (HTTP 413) rather than form (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            PacketError::MessageTooLarge { .. }
                | PacketError::SignatureTooLarge { .. }
                | PacketError::TooManyExtras
        )
    }
}

/// A packet that passed every check: canonical recipient, matching hash, JWE-shaped fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    recipient: PublicKey,
    message: String,
    hash: PacketHash,
    signature: String,
    expires: Option<u64>,
    extra: Map<String, Value>,
}

impl Packet {
    /// Parses and validates a JSON body.
    pub fn from_json(body: &[u8], rules: &PacketRules) -> Result<Self, PacketError> {
        Self::parse_body(body, rules, None)
    }

    /// [`Packet::from_json`], taking the recipient key from `keys` when it was parsed before
    /// (a relay's hot path).
    pub fn from_json_cached(
        body: &[u8],
        rules: &PacketRules,
        keys: &KeyCache,
    ) -> Result<Self, PacketError> {
        Self::parse_body(body, rules, Some(keys))
    }

    /// Validates an already-parsed JSON object (for example one item of a `/fetch` answer).
    pub fn from_map(map: Map<String, Value>, rules: &PacketRules) -> Result<Self, PacketError> {
        Self::check_map(map, rules, None)
    }

    /// [`Packet::from_map`] with a [`KeyCache`], as [`Packet::from_json_cached`].
    pub fn from_map_cached(
        map: Map<String, Value>,
        rules: &PacketRules,
        keys: &KeyCache,
    ) -> Result<Self, PacketError> {
        Self::check_map(map, rules, Some(keys))
    }

    fn parse_body(
        body: &[u8],
        rules: &PacketRules,
        keys: Option<&KeyCache>,
    ) -> Result<Self, PacketError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| PacketError::NotJson(e.to_string()))?;
        match value {
            Value::Object(map) => Self::check_map(map, rules, keys),
            _ => Err(PacketError::NotObject),
        }
    }

    fn check_map(
        mut map: Map<String, Value>,
        rules: &PacketRules,
        keys: Option<&KeyCache>,
    ) -> Result<Self, PacketError> {
        let recipient = take_string(&mut map, "recipient")?;
        let message = take_string(&mut map, "message")?;
        let hash = take_string(&mut map, "hash")?;
        let signature = take_string(&mut map, "signature")?;
        let expires = match map.remove("expires") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                Some(parse_rfc3339_ms(&text).ok_or(PacketError::BadExpires)?)
            }
            Some(other) => {
                return Err(PacketError::NotAString {
                    field: "expires",
                    found: json_type(&other),
                });
            }
        };

        if message.len() > rules.max_message_bytes {
            return Err(PacketError::MessageTooLarge {
                size: message.len(),
                max: rules.max_message_bytes,
            });
        }
        if signature.len() > MAX_SIGNATURE_BYTES {
            return Err(PacketError::SignatureTooLarge {
                size: signature.len(),
            });
        }
        if !map.is_empty()
            && (map.len() > MAX_EXTRA_FIELDS
                || serde_json::to_vec(&map).map_or(usize::MAX, |v| v.len()) > MAX_EXTRA_BYTES)
        {
            return Err(PacketError::TooManyExtras);
        }

        // The hash before the key: a packet refused only under this relay's key policy (see
        // [`PacketError::is_local_policy`]) must still be the one its hash names, or a peer
        // could pass junk off as a packet it was asked for.
        let hash = PacketHash::parse(&hash)?;
        if PacketHash::of_message(&message) != hash {
            return Err(PacketError::HashMismatch);
        }
        let recipient = match keys {
            Some(keys) => keys.parse(&recipient, rules.min_key_bits)?,
            None => PublicKey::parse(&recipient, rules.min_key_bits)?,
        };
        check_compact(
            &message,
            JweProfile::Message {
                modulus_bytes: recipient.modulus_bytes(),
            },
        )
        .map_err(|source| PacketError::Jwe {
            field: "message",
            source,
        })?;
        check_compact(&signature, JweProfile::Signature).map_err(|source| PacketError::Jwe {
            field: "signature",
            source,
        })?;
        Ok(Self {
            recipient,
            message,
            hash,
            signature,
            expires,
            extra: map,
        })
    }

    /// The recipient's key.
    pub fn recipient(&self) -> &PublicKey {
        &self.recipient
    }

    /// The JWE compact serialization of the message object.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// SHA-256 of `message`.
    pub fn hash(&self) -> PacketHash {
        self.hash
    }

    /// The encrypted signature.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The expiry another relay gave this packet (PROTOCOL.md §4), in milliseconds since the
    /// epoch. It travels between relays and is never stored as a field.
    pub fn expires(&self) -> Option<u64> {
        self.expires
    }

    /// Fields beyond the four of the protocol, kept verbatim.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// The JSON a relay stores and serves: the four fields (recipient in canonical form) plus
    /// any extra fields.
    pub fn to_json(&self) -> String {
        if self.extra.is_empty() {
            // The usual packet, written directly: none of these strings needs escaping (base64,
            // base64url and hex alphabets), and the keys are in the order the map below sorts
            // them, so both ways give the same bytes.
            let recipient = self.recipient.canonical();
            let mut out = String::with_capacity(
                64 + recipient.len() + self.message.len() + self.signature.len() + 64,
            );
            out.push_str("{\"hash\":\"");
            out.push_str(std::str::from_utf8(&self.hash.to_hex()).expect("hex digits are ASCII"));
            out.push_str("\",\"message\":\"");
            out.push_str(&self.message);
            out.push_str("\",\"recipient\":\"");
            out.push_str(recipient);
            out.push_str("\",\"signature\":\"");
            out.push_str(&self.signature);
            out.push_str("\"}");
            return out;
        }
        let mut map = self.extra.clone();
        map.insert(
            "recipient".into(),
            Value::String(self.recipient.canonical().to_owned()),
        );
        map.insert("message".into(), Value::String(self.message.clone()));
        map.insert("hash".into(), Value::String(self.hash.to_string()));
        map.insert("signature".into(), Value::String(self.signature.clone()));
        Value::Object(map).to_string()
    }
}

fn take_string(map: &mut Map<String, Value>, field: &'static str) -> Result<String, PacketError> {
    match map.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(PacketError::NotAString {
            field,
            found: json_type(&other),
        }),
        None => Err(PacketError::MissingField(field)),
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jwe::tests::fake_jwe;

    const KEY: &str = include_str!("../../tests/fixtures/keys/alice-4096.pub.pem");
    const RULES: PacketRules = PacketRules {
        min_key_bits: 4096,
        max_message_bytes: 4096,
    };

    fn packet_json(ct: usize) -> Value {
        let message = fake_jwe(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#, 512, ct);
        let signature = fake_jwe(r#"{"alg":"dir","enc":"A256GCM"}"#, 0, 800);
        serde_json::json!({
            "recipient": KEY,
            "hash": PacketHash::of_message(&message).to_string(),
            "message": message,
            "signature": signature,
        })
    }

    #[test]
    fn valid_packet_round_trips_in_canonical_form() {
        let mut v = packet_json(600);
        v["x-future"] = serde_json::json!({"kept": true});
        let p = Packet::from_json(v.to_string().as_bytes(), &RULES).unwrap();
        let stored: Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(stored["recipient"], p.recipient().canonical());
        assert_eq!(stored["message"], v["message"]);
        assert_eq!(stored["x-future"], v["x-future"]);
        let again = Packet::from_json(p.to_json().as_bytes(), &RULES).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn the_direct_json_of_a_plain_packet_is_what_serde_json_writes() {
        let v = packet_json(600);
        let p = Packet::from_json(v.to_string().as_bytes(), &RULES).unwrap();
        let direct = p.to_json();
        let expected = serde_json::json!({
            "recipient": p.recipient().canonical(),
            "message": p.message(),
            "hash": p.hash().to_string(),
            "signature": p.signature(),
        })
        .to_string();
        assert_eq!(direct, expected);
        assert_eq!(
            PacketHash::of_message("x").to_string(),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }

    #[test]
    fn expires_travels_but_is_not_stored() {
        let mut v = packet_json(600);
        v["expires"] = Value::String("2026-11-26T19:27:44.123Z".into());
        let p = Packet::from_json(v.to_string().as_bytes(), &RULES).unwrap();
        assert_eq!(p.expires(), Some(1_795_721_264_123));
        assert!(!p.to_json().contains("expires"));
        v["expires"] = Value::String("soon".into());
        assert_eq!(
            Packet::from_json(v.to_string().as_bytes(), &RULES),
            Err(PacketError::BadExpires)
        );
    }

    #[test]
    fn each_rule_has_its_error() {
        let mut v = packet_json(600);
        v["hash"] = Value::String("0".repeat(64));
        assert_eq!(
            Packet::from_json(v.to_string().as_bytes(), &RULES),
            Err(PacketError::HashMismatch)
        );
        let mut v = packet_json(600);
        v["hash"] = Value::from(5);
        assert_eq!(
            Packet::from_json(v.to_string().as_bytes(), &RULES),
            Err(PacketError::NotAString {
                field: "hash",
                found: "a number"
            })
        );
        let mut v = packet_json(600);
        v.as_object_mut().unwrap().remove("signature");
        assert_eq!(
            Packet::from_json(v.to_string().as_bytes(), &RULES),
            Err(PacketError::MissingField("signature"))
        );
        let v = packet_json(5000);
        let err = Packet::from_json(v.to_string().as_bytes(), &RULES).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        assert_eq!(
            Packet::from_json(b"[1]", &RULES),
            Err(PacketError::NotObject)
        );
        assert!(matches!(
            Packet::from_json(b"{\"recipient\":", &RULES),
            Err(PacketError::NotJson(_))
        ));
    }
}
