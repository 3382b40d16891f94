//! Structural checks of JWE compact serializations (RFC 7516 §7.1) for the packet profile.
//!
//! A relay cannot decrypt, so it checks what it can see: five base64url parts, a protected
//! header that is a JSON object naming the profile's `alg` and `enc`, and part lengths that
//! A256GCM and the recipient's RSA modulus fix (PROTOCOL.md §2).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest protected header we decode.
pub const MAX_HEADER_BYTES: usize = 4096;
/// A256GCM initialisation vector length in bytes (RFC 7518 §5.3).
const GCM_IV_BYTES: usize = 12;
/// A256GCM authentication tag length in bytes.
const GCM_TAG_BYTES: usize = 16;

/// Which of the two JWE shapes of PROTOCOL.md §2 is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JweProfile {
    /// `message`: `RSA-OAEP-256` + `A256GCM`; the encrypted key is as long as the modulus.
    Message {
        /// Length in bytes of the recipient's RSA modulus.
        modulus_bytes: usize,
    },
    /// `signature`: `dir` + `A256GCM`; the encrypted key part is empty.
    Signature,
}

impl JweProfile {
    fn alg(self) -> &'static str {
        match self {
            JweProfile::Message { .. } => "RSA-OAEP-256",
            JweProfile::Signature => "dir",
        }
    }

    /// The encoded protected header most senders write (ours among them): exactly
    /// `{"alg":…,"enc":"A256GCM"}`. A packet carrying it needs no header decoding; any
    /// other header is decoded and checked.
    fn usual_header(self) -> &'static str {
        match self {
            // {"alg":"RSA-OAEP-256","enc":"A256GCM"}
            JweProfile::Message { .. } => "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0",
            // {"alg":"dir","enc":"A256GCM"}
            JweProfile::Signature => "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0",
        }
    }
}

/// Why a JWE compact serialization does not fit the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// Not five dot-separated parts.
    #[error("is not a JWE compact serialization (expected 5 dot-separated parts, found {0})")]
    PartCount(usize),
    /// A part holds characters outside unpadded base64url.
    #[error("part {0} is not unpadded base64url")]
    NotBase64Url(usize),
    /// The protected header is not a JSON object.
    #[error("protected header is not a JSON object")]
    HeaderNotJson,
    /// The protected header is larger than [`MAX_HEADER_BYTES`].
    #[error("protected header is larger than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    /// `alg` or `enc` differ from the profile.
    #[error("header has {field} = {found:?}, expected {expected:?}")]
    WrongAlgorithm {
        /// `alg` or `enc`.
        field: &'static str,
        /// What the header said (or `null`).
        found: String,
        /// What the profile requires.
        expected: &'static str,
    },
    /// A part has the wrong length for the profile.
    #[error("{part} is {found} bytes, expected {expected}")]
    WrongLength {
        /// Which part.
        part: &'static str,
        /// Its decoded length.
        found: usize,
        /// The length the profile fixes.
        expected: usize,
    },
}

/// Which bytes the base64url alphabet has.
const BASE64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// Checks `text` against `profile` without decrypting anything.
pub fn check_compact(text: &str, profile: JweProfile) -> Result<(), JweError> {
    let mut parts = [""; 5];
    let mut count = 0;
    for part in text.split('.') {
        if count < 5 {
            parts[count] = part;
        }
        count += 1;
    }
    if count != 5 {
        return Err(JweError::PartCount(count));
    }
    for (i, part) in parts.iter().enumerate() {
        if !part.bytes().all(|b| BASE64URL[b as usize]) {
            return Err(JweError::NotBase64Url(i + 1));
        }
    }
    if parts[0] != profile.usual_header() {
        check_header(parts[0], profile)?;
    }

    let expected_key = match profile {
        JweProfile::Message { modulus_bytes } => modulus_bytes,
        JweProfile::Signature => 0,
    };
    expect_len("encrypted key", parts[1], expected_key)?;
    expect_len("initialization vector", parts[2], GCM_IV_BYTES)?;
    expect_len("authentication tag", parts[4], GCM_TAG_BYTES)?;
    // Ciphertext (part 4) may be any length; it must merely be valid base64url.
    if parts[3].len() % 4 == 1 {
        return Err(JweError::NotBase64Url(4));
    }
    Ok(())
}

/// Decodes a protected header and checks its `alg` and `enc`.
fn check_header(encoded: &str, profile: JweProfile) -> Result<(), JweError> {
    if encoded.len() > MAX_HEADER_BYTES * 4 / 3 + 4 {
        return Err(JweError::HeaderTooLarge);
    }
    let header = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JweError::NotBase64Url(1))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| JweError::HeaderNotJson)?;
    expect_field(&header, "alg", profile.alg())?;
    expect_field(&header, "enc", "A256GCM")
}

fn expect_field(
    header: &serde_json::Map<String, serde_json::Value>,
    field: &'static str,
    expected: &'static str,
) -> Result<(), JweError> {
    match header.get(field) {
        Some(serde_json::Value::String(s)) if s == expected => Ok(()),
        other => Err(JweError::WrongAlgorithm {
            field,
            found: other.map_or_else(|| "null".to_owned(), |v| v.to_string()),
            expected,
        }),
    }
}

fn expect_len(part: &'static str, b64: &str, expected: usize) -> Result<(), JweError> {
    let found = decoded_len(b64).ok_or(JweError::WrongLength {
        part,
        found: 0,
        expected,
    })?;
    if found != expected {
        return Err(JweError::WrongLength {
            part,
            found,
            expected,
        });
    }
    Ok(())
}

/// Decoded length of unpadded base64url, or `None` for an impossible length.
fn decoded_len(b64: &str) -> Option<usize> {
    let n = b64.len();
    match n % 4 {
        0 => Some(n / 4 * 3),
        2 => Some(n / 4 * 3 + 1),
        3 => Some(n / 4 * 3 + 2),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a JWE-shaped string with the given header and part lengths (test helper).
    pub(crate) fn fake_jwe(header: &str, key: usize, ct: usize) -> String {
        let b = |n: usize| URL_SAFE_NO_PAD.encode(vec![7u8; n]);
        format!(
            "{}.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            b(key),
            b(12),
            b(ct),
            b(16)
        )
    }

    const MSG: JweProfile = JweProfile::Message { modulus_bytes: 512 };

    #[test]
    fn accepts_the_profile() {
        let m = fake_jwe(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#, 512, 600);
        check_compact(&m, MSG).unwrap();
        let s = fake_jwe(r#"{"alg":"dir","enc":"A256GCM","kid":"x"}"#, 0, 900);
        check_compact(&s, JweProfile::Signature).unwrap();
    }

    #[test]
    fn the_usual_headers_are_what_they_claim_and_others_are_still_checked() {
        for (profile, json) in [
            (MSG, r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#),
            (JweProfile::Signature, r#"{"alg":"dir","enc":"A256GCM"}"#),
        ] {
            assert_eq!(profile.usual_header(), URL_SAFE_NO_PAD.encode(json));
            check_header(profile.usual_header(), profile).unwrap();
        }
        // The same fields in another order or spacing take the long way, and pass.
        let reordered = fake_jwe(r#"{ "enc": "A256GCM", "alg": "RSA-OAEP-256" }"#, 512, 10);
        check_compact(&reordered, MSG).unwrap();
        // One profile's usual header is no pass for the other.
        let swapped = fake_jwe(r#"{"alg":"dir","enc":"A256GCM"}"#, 512, 10);
        assert!(matches!(
            check_compact(&swapped, MSG),
            Err(JweError::WrongAlgorithm { field: "alg", .. })
        ));
    }

    #[test]
    fn refuses_wrong_algorithms_and_shapes() {
        let wrong_alg = fake_jwe(r#"{"alg":"RSA1_5","enc":"A256GCM"}"#, 512, 10);
        assert!(matches!(
            check_compact(&wrong_alg, MSG),
            Err(JweError::WrongAlgorithm { field: "alg", .. })
        ));
        let wrong_enc = fake_jwe(r#"{"alg":"dir","enc":"A128GCM"}"#, 0, 10);
        assert!(matches!(
            check_compact(&wrong_enc, JweProfile::Signature),
            Err(JweError::WrongAlgorithm { field: "enc", .. })
        ));
        let short_key = fake_jwe(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#, 256, 10);
        assert!(matches!(
            check_compact(&short_key, MSG),
            Err(JweError::WrongLength {
                part: "encrypted key",
                ..
            })
        ));
        assert_eq!(check_compact("a.b.c", MSG), Err(JweError::PartCount(3)));
        assert_eq!(
            check_compact("a.b.c.d.e=", MSG),
            Err(JweError::NotBase64Url(5))
        );
        let not_json = format!("{}.a.a.a.a", URL_SAFE_NO_PAD.encode("[1,2]"));
        assert_eq!(check_compact(&not_json, MSG), Err(JweError::HeaderNotJson));
        let alg_number = fake_jwe(r#"{"alg":5,"enc":"A256GCM"}"#, 512, 10);
        assert!(check_compact(&alg_number, MSG).is_err());
    }
}
