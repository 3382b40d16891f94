//! The packet hash: lowercase hex SHA-256 of the `message` string (PROTOCOL.md §2).

use std::fmt;

use sha2::{Digest, Sha256};

/// A packet's identity everywhere in the mesh: SHA-256 of the UTF-8 bytes of `message`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketHash(pub [u8; 32]);

/// Why a string is not a packet hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hash must be 64 lowercase hex digits (SHA-256)")]
pub struct HashFormatError;

impl PacketHash {
    /// Hashes a `message` string.
    pub fn of_message(message: &str) -> Self {
        Self(Sha256::digest(message.as_bytes()).into())
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, HashFormatError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(HashFormatError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Result<u8, HashFormatError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(HashFormatError),
    }
}

impl PacketHash {
    /// The 64 lowercase hex digits, without allocating.
    pub fn to_hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 0xf) as usize];
        }
        out
    }
}

impl fmt::Display for PacketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for PacketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PacketHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_sha256() {
        let h = PacketHash::of_message("abc");
        let text = h.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(PacketHash::parse(&text).unwrap(), h);
    }

    #[test]
    fn refuses_other_spellings() {
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert!(PacketHash::parse(upper).is_err());
        assert!(PacketHash::parse("ab").is_err());
        assert!(PacketHash::parse(&"g".repeat(64)).is_err());
        assert!(PacketHash::parse(&"é".repeat(32)).is_err());
    }
}
