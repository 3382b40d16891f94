//! The JOSE pieces the envelope needs, by hand because they are small: compact serialization
//! of JWE (RFC 7516 §7.1) and detached JWS (RFC 7515 App. F), base64url without padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The five parts of a JWE compact serialization, decoded (the header also kept as sent,
/// since it is the AEAD's additional data).
pub struct CompactJwe<'a> {
    /// The protected header as sent (base64url text).
    pub header_b64: &'a str,
    /// The protected header, parsed.
    pub header: Map<String, Value>,
    /// The encrypted content-encryption key (empty for `dir`).
    pub encrypted_key: Vec<u8>,
    /// Initialization vector.
    pub iv: Vec<u8>,
    /// Ciphertext.
    pub ciphertext: Vec<u8>,
    /// Authentication tag.
    pub tag: Vec<u8>,
}

/// Splits and decodes a JWE compact serialization.
pub fn parse_jwe(text: &str) -> Option<CompactJwe<'_>> {
    let parts: Vec<&str> = text.split('.').collect();
    let [h, k, iv, ct, tag] = parts.as_slice() else {
        return None;
    };
    let header: Map<String, Value> = serde_json::from_slice(&unb64(h)?).ok()?;
    Some(CompactJwe {
        header_b64: h,
        header,
        encrypted_key: unb64(k)?,
        iv: unb64(iv)?,
        ciphertext: unb64(ct)?,
        tag: unb64(tag)?,
    })
}

/// Joins the parts of a JWE compact serialization.
pub fn join_jwe(header_b64: &str, key: &[u8], iv: &[u8], ciphertext: &[u8], tag: &[u8]) -> String {
    format!(
        "{header_b64}.{}.{}.{}.{}",
        b64(key),
        b64(iv),
        b64(ciphertext),
        b64(tag)
    )
}

/// A header's string field.
pub fn header_str<'a>(header: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    header.get(field).and_then(Value::as_str)
}
