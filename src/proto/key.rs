//! Public keys on the wire: parse base64 DER SPKI or PEM, canonicalise, fingerprint (PROTOCOL.md §1).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::PublicKey as RsaPublicKey;
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPublicKey as Pkcs1PublicKey};
use rsa::pkcs8::der::Decode as _;
use rsa::pkcs8::der::asn1::{ObjectIdentifier, UintRef};
use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

/// `rsaEncryption` (RFC 8017 App. C).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// Largest public exponent the `rsa` crate accepts.
const MAX_PUBLIC_EXPONENT: u64 = (1 << 33) - 1;

/// Smallest RSA modulus the protocol ever accepts, whatever the configuration says.
pub const ABSOLUTE_MIN_KEY_BITS: usize = 2048;
/// Largest RSA modulus we accept: the largest the `rsa` crate, and so any jasper client, can
/// encrypt to or verify with. A larger key would pass here and then fail every use (a relay
/// would keep packets nobody can write, a rendezvous sessions that can never authenticate).
/// Anything bigger is refused before any arithmetic.
pub const MAX_KEY_BITS: usize = 8192;
/// Longest textual key (base64 or PEM) we look at; an 8192-bit key in PEM is about 1.5 KB.
pub const MAX_KEY_TEXT_BYTES: usize = 8 * 1024;

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is neither base64 DER SPKI nor a PEM public key.
    #[error("not an RSA public key: expected base64 DER SubjectPublicKeyInfo or a PEM public key")]
    Unparseable,
    /// The text is longer than any RSA key we accept.
    #[error(
        "key text is {0} bytes, more than the {MAX_KEY_TEXT_BYTES} bytes any accepted key needs"
    )]
    TooLong(usize),
    /// The modulus is smaller than the configured minimum.
    #[error("RSA key has {bits} bits; this relay requires at least {min}")]
    TooSmall {
        /// Size of the offered key.
        bits: usize,
        /// Minimum the relay accepts.
        min: usize,
    },
    /// The modulus is larger than we are willing to handle.
    #[error("RSA key has {0} bits; at most {MAX_KEY_BITS} are accepted")]
    TooLarge(usize),
}

/// SHA-256 of a key's DER SubjectPublicKeyInfo: what a person compares, and our index key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The short form shown to people: the first 16 hex digits in groups of 4.
    pub fn short(&self) -> String {
        let hex = self.to_string();
        hex.as_bytes()[..16]
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("hex is ascii"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

/// Keys parsed recently, by the text they came as: a relay receives many packets for each inbox
/// and so parses the same recipient key again and again. Bounded: when full, an entry goes for
/// each new one. Only keys that parsed are kept, so a key is refused exactly as
/// [`PublicKey::parse`] would refuse it.
pub struct KeyCache {
    keys: Mutex<HashMap<Box<str>, PublicKey>>,
    capacity: usize,
}

impl KeyCache {
    /// A cache of at most `capacity` keys (each a few KB).
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// [`PublicKey::parse`], answered from the cache when `text` was parsed before.
    pub fn parse(&self, text: &str, min_bits: usize) -> Result<PublicKey, KeyError> {
        if let Some(key) = self.lock().get(text)
            && key.bits >= min_bits.max(ABSOLUTE_MIN_KEY_BITS)
        {
            return Ok(key.clone());
        }
        let key = PublicKey::parse(text, min_bits)?;
        if self.capacity > 0 {
            let mut keys = self.lock();
            if keys.len() >= self.capacity
                && let Some(old) = keys.keys().next().cloned()
            {
                keys.remove(&old);
            }
            keys.insert(text.into(), key.clone());
        }
        Ok(key)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, PublicKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A validated RSA public key with its canonical wire form and fingerprint.
///
/// Parsing checks the structure and the numbers a relay cares about (modulus size and parity,
/// exponent range) without the big-integer set-up that encryption needs; [`PublicKey::rsa`]
/// does that on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    der: Vec<u8>,
    canonical: String,
    fingerprint: Fingerprint,
    bits: usize,
    modulus_bytes: usize,
}

impl PublicKey {
    /// Parses base64 DER SPKI (the canonical form) or PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`),
    /// refusing keys under `min_bits` (never less than [`ABSOLUTE_MIN_KEY_BITS`]).
    pub fn parse(text: &str, min_bits: usize) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLong(text.len()));
        }
        let trimmed = text.trim();
        let der = if trimmed.starts_with("-----BEGIN") {
            let key = RsaPublicKey::from_public_key_pem(trimmed)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(trimmed))
                .map_err(|_| KeyError::Unparseable)?;
            key.to_public_key_der()
                .map_err(|_| KeyError::Unparseable)?
                .into_vec()
        } else {
            STANDARD
                .decode(trimmed.as_bytes())
                .map_err(|_| KeyError::Unparseable)?
        };
        Self::from_der(der, min_bits)
    }

    /// Wraps an RSA public key, checking its size.
    pub fn from_rsa(key: &RsaPublicKey, min_bits: usize) -> Result<Self, KeyError> {
        let der = key
            .to_public_key_der()
            .map_err(|_| KeyError::Unparseable)?
            .into_vec();
        Self::from_der(der, min_bits)
    }

    /// Validates DER SubjectPublicKeyInfo. Input that is valid but not in the canonical
    /// encoding (for example without the NULL algorithm parameters) is re-encoded.
    fn from_der(der: Vec<u8>, min_bits: usize) -> Result<Self, KeyError> {
        let (der, numbers) = match canonical_numbers(&der) {
            Some(numbers) => (der, numbers),
            None => {
                let key =
                    RsaPublicKey::from_public_key_der(&der).map_err(|_| KeyError::Unparseable)?;
                let der = key
                    .to_public_key_der()
                    .map_err(|_| KeyError::Unparseable)?
                    .into_vec();
                let numbers = canonical_numbers(&der).ok_or(KeyError::Unparseable)?;
                (der, numbers)
            }
        };
        let (bits, modulus_bytes) = numbers;
        let min = min_bits.max(ABSOLUTE_MIN_KEY_BITS);
        if bits > MAX_KEY_BITS {
            return Err(KeyError::TooLarge(bits));
        }
        if bits < min {
            return Err(KeyError::TooSmall { bits, min });
        }
        Ok(Self {
            canonical: STANDARD.encode(&der),
            fingerprint: Fingerprint(Sha256::digest(&der).into()),
            der,
            bits,
            modulus_bytes,
        })
    }

    /// Standard padded base64 of the DER SubjectPublicKeyInfo: the form every relay stores.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Modulus size in bytes: the length of an RSA-OAEP ciphertext made with this key.
    pub fn modulus_bytes(&self) -> usize {
        self.modulus_bytes
    }

    /// The key ready for encryption and signature checks (does the big-integer set-up).
    pub fn rsa(&self) -> Result<RsaPublicKey, KeyError> {
        RsaPublicKey::from_public_key_der(&self.der).map_err(|_| KeyError::Unparseable)
    }
}

/// For DER in the canonical encoding of an RSA SubjectPublicKeyInfo whose numbers are sane
/// (odd modulus without leading zeros, odd exponent 3..2^33), its modulus size in bits and
/// bytes; `None` otherwise (the caller then tries the full parser).
fn canonical_numbers(der: &[u8]) -> Option<(usize, usize)> {
    let spki = SubjectPublicKeyInfoRef::from_der(der).ok()?;
    if spki.algorithm.oid != RSA_ENCRYPTION
        || !spki.algorithm.parameters.is_some_and(|p| p.is_null())
    {
        return None;
    }
    let key = Pkcs1PublicKey::<UintRef<'_>>::from_der(spki.subject_public_key.as_bytes()?).ok()?;
    let n = key.modulus.as_bytes();
    let e = key.public_exponent.as_bytes();
    let (&first, &last) = (n.first()?, n.last()?);
    if first == 0 || last & 1 == 0 || e.is_empty() || e.len() > 8 {
        return None;
    }
    let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if e < 3 || e & 1 == 0 || e > MAX_PUBLIC_EXPONENT {
        return None;
    }
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    Some((bits, n.len()))
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({} bits, {})",
            self.bits,
            self.fingerprint.short()
        )
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    include!("../../tests/common/fake_spki.rs");

    /// A distinct 4096-bit public key for each `n`.
    pub fn fake_key(n: u8) -> super::PublicKey {
        super::PublicKey::parse(&spki_of_bits(4096, n), 4096).expect("a well-formed key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_4096_PEM: &str = include_str!("../../tests/fixtures/keys/alice-4096.pub.pem");
    const KEY_2048_PEM: &str = include_str!("../../tests/fixtures/keys/small-2048.pub.pem");
    const KEY_1024_PEM: &str = include_str!("../../tests/fixtures/keys/tiny-1024.pub.pem");
    const KEY_4096_PKCS1: &str = include_str!("../../tests/fixtures/keys/alice-4096.pkcs1.pem");

    #[test]
    fn pem_and_base64_name_the_same_key() {
        let pem = PublicKey::parse(KEY_4096_PEM, 4096).unwrap();
        let b64 = PublicKey::parse(pem.canonical(), 4096).unwrap();
        let pkcs1 = PublicKey::parse(KEY_4096_PKCS1, 4096).unwrap();
        assert_eq!(pem, b64);
        assert_eq!(pem, pkcs1);
        assert_eq!(pem.bits(), 4096);
        assert_eq!(pem.modulus_bytes(), 512);
        assert!(!pem.canonical().contains('\n'));
    }

    #[test]
    fn keys_larger_than_any_client_can_use_are_refused() {
        let largest = PublicKey::parse(&test_keys::spki_of_bits(MAX_KEY_BITS, 0xC5), 4096).unwrap();
        assert_eq!(largest.bits(), MAX_KEY_BITS);
        assert_eq!(
            PublicKey::parse(&test_keys::spki_of_bits(MAX_KEY_BITS + 8, 0xC5), 4096).unwrap_err(),
            KeyError::TooLarge(MAX_KEY_BITS + 8)
        );
        // What every use of a key needs, the `rsa` crate's own key, takes the largest.
        assert!(largest.rsa().is_ok());
    }

    #[test]
    fn small_keys_are_refused_by_size() {
        assert_eq!(
            PublicKey::parse(KEY_2048_PEM, 4096).unwrap_err(),
            KeyError::TooSmall {
                bits: 2048,
                min: 4096
            }
        );
        assert!(PublicKey::parse(KEY_2048_PEM, 2048).is_ok());
        // The configuration can never lower the floor below 2048 bits.
        assert!(matches!(
            PublicKey::parse(KEY_1024_PEM, 512).unwrap_err(),
            KeyError::TooSmall { bits: 1024, .. }
        ));
    }

    #[test]
    fn garbage_is_unparseable() {
        for bad in [
            "",
            "AAAA",
            "not base64 at all!",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ] {
            assert_eq!(
                PublicKey::parse(bad, 2048).unwrap_err(),
                KeyError::Unparseable,
                "{bad:?}"
            );
        }
        let long = "A".repeat(MAX_KEY_TEXT_BYTES + 1);
        assert!(matches!(
            PublicKey::parse(&long, 2048),
            Err(KeyError::TooLong(_))
        ));
    }

    #[test]
    fn other_encodings_are_re_encoded_canonically() {
        let key = PublicKey::parse(KEY_4096_PEM, 4096).unwrap();
        let der = key.der();
        // SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING }
        assert_eq!(&der[..6], &[0x30, 0x82, 0x02, 0x22, 0x30, 0x0d]);
        assert_eq!(&der[17..19], &[0x05, 0x00]);
        // The same key with the NULL parameters left out, as some encoders do.
        let mut no_null = vec![0x30, 0x82, 0x02, 0x20, 0x30, 0x0b];
        no_null.extend_from_slice(&der[6..17]);
        no_null.extend_from_slice(&der[19..]);
        match PublicKey::parse(&STANDARD.encode(&no_null), 4096) {
            Ok(again) => assert_eq!(again, key),
            Err(e) => assert_eq!(e, KeyError::Unparseable),
        }
        // Trailing bytes after the structure are refused.
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert_eq!(
            PublicKey::parse(&STANDARD.encode(&trailing), 4096).unwrap_err(),
            KeyError::Unparseable
        );
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let key = PublicKey::parse(KEY_4096_PEM, 4096).unwrap();
        let der = STANDARD.decode(key.canonical()).unwrap();
        assert_eq!(der, key.der());
        assert_eq!(
            key.rsa().unwrap().to_public_key_der().unwrap().as_bytes(),
            der
        );
        let expected: [u8; 32] = Sha256::digest(&der).into();
        assert_eq!(key.fingerprint().0, expected);
        let short = key.fingerprint().short();
        assert_eq!(short.len(), 19);
        assert!(
            key.fingerprint()
                .to_string()
                .starts_with(&short.replace(' ', ""))
        );
    }

    #[test]
    fn the_key_cache_answers_as_parse_does_and_stays_bounded() {
        let cache = KeyCache::new(2);
        let b64 = PublicKey::parse(KEY_4096_PEM, 4096)
            .unwrap()
            .canonical()
            .to_owned();
        for text in [KEY_4096_PEM, &b64, KEY_4096_PEM, &b64] {
            assert_eq!(cache.parse(text, 4096), PublicKey::parse(text, 4096));
        }
        assert_eq!(cache.len(), 2, "PEM and base64 are two entries");
        // A cached key is still held to the caller's minimum.
        let small = KeyCache::new(4);
        small.parse(KEY_2048_PEM, 2048).unwrap();
        assert_eq!(
            small.parse(KEY_2048_PEM, 4096),
            PublicKey::parse(KEY_2048_PEM, 4096)
        );
        assert!(small.parse(KEY_2048_PEM, 4096).is_err());
        // Refusals are not kept; a full cache makes room.
        assert!(cache.parse(KEY_1024_PEM, 2048).is_err());
        assert!(cache.parse("not a key", 2048).is_err());
        cache.parse(KEY_2048_PEM, 2048).unwrap();
        cache.parse(KEY_4096_PKCS1, 4096).unwrap();
        assert_eq!(cache.len(), 2);
        // Capacity 0 caches nothing and still parses.
        let none = KeyCache::new(0);
        assert!(none.parse(KEY_4096_PEM, 4096).is_ok());
        assert!(none.is_empty());
    }
}
