//! STUN Binding on the wire (RFC 8489): the request a client sends, the answers a server
//! writes, the stream framing of §6.2.2 and the reading of a Binding success response. Pure:
//! bytes in, bytes or typed values out. Shared by the STUN service and the client, which
//! must not depend on each other.
//!
//! Requests and responses are decoded with stun-rs; the few answers a server writes are
//! encoded by hand into a caller's buffer, because they are fixed shapes on a hot path.

use std::net::{IpAddr, SocketAddr};

use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{DecoderContextBuilder, MessageClass, MessageDecoderBuilder, StunAttributeType as _};

/// Bytes of a STUN message header.
pub const HEADER_BYTES: usize = 20;
/// The magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Largest STUN message we read from a stream or a datagram; a Binding request needs far
/// less (RFC 8489 §6.1 keeps messages under the path MTU).
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// Largest answer [`encode_binding_success`] and [`encode_error`] write.
pub const MAX_ANSWER_BYTES: usize = 256;
/// Most attributes an UNKNOWN-ATTRIBUTES answer lists.
pub const MAX_UNKNOWN_LISTED: usize = 32;

/// Message type of a Binding request.
pub const BINDING_REQUEST: u16 = 0x0001;
/// Message type of a Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Message type of a Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;

/// ERROR-CODE attribute (RFC 8489 §14.8).
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES attribute (RFC 8489 §14.9).
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// XOR-MAPPED-ADDRESS attribute (RFC 8489 §14.2).
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// FINGERPRINT attribute (RFC 8489 §14.7).
pub const ATTR_FINGERPRINT: u16 = 0x8028;

/// XORed into the CRC-32 of FINGERPRINT (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The FINGERPRINT value of a message whose bytes up to that attribute are `prefix`
/// (the header's length already counting the FINGERPRINT attribute).
pub fn fingerprint(prefix: &[u8]) -> u32 {
    CRC32.checksum(prefix) ^ FINGERPRINT_XOR
}

/// Whether the message ends in a FINGERPRINT attribute (a message is at least a header).
pub fn ends_with_fingerprint(message: &[u8]) -> bool {
    message.len() >= HEADER_BYTES + 8 && message[message.len() - 8..][..4] == [0x80, 0x28, 0, 4]
}

/// Whether the FINGERPRINT that ends `message` is right.
pub fn fingerprint_matches(message: &[u8]) -> bool {
    let (prefix, attr) = message.split_at(message.len() - 8);
    attr[4..] == fingerprint(prefix).to_be_bytes()
}

/// A Binding request with a FINGERPRINT (28 bytes), for `transaction_id`.
pub fn binding_request(transaction_id: &[u8; 12]) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    out[2..4].copy_from_slice(&8u16.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(transaction_id);
    out[20..24].copy_from_slice(&[0x80, 0x28, 0, 4]);
    let crc = fingerprint(&out[..20]);
    out[24..28].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Why a header cannot start a STUN message on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The first two bits are not zero or the magic cookie is missing: not STUN.
    #[error("not a STUN message")]
    NotStun,
    /// The length is not a multiple of 4 or above [`MAX_MESSAGE_BYTES`].
    #[error("bad STUN message length")]
    BadLength,
}

/// The whole length of the message a 20-byte header starts (RFC 8489 §6.2.2: over TCP and
/// TLS, the header's length field frames the message).
pub fn framed_length(header: &[u8; HEADER_BYTES]) -> Result<usize, FramingError> {
    if header[0] & 0xC0 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Err(FramingError::NotStun);
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if length % 4 != 0 || HEADER_BYTES + length > MAX_MESSAGE_BYTES {
        return Err(FramingError::BadLength);
    }
    Ok(HEADER_BYTES + length)
}

/// Writes a header for `message_type` and `transaction_id` into `out[..20]`; the length is
/// set by [`finish`].
fn start(out: &mut [u8], message_type: u16, transaction_id: &[u8; 12]) {
    out[0..2].copy_from_slice(&message_type.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(transaction_id);
}

/// Appends FINGERPRINT after `len` bytes of message and sets the length; returns the total.
fn finish(out: &mut [u8], len: usize) -> usize {
    let total = len + 8;
    let body = u16::try_from(total - HEADER_BYTES).expect("answers are small");
    out[2..4].copy_from_slice(&body.to_be_bytes());
    out[len..len + 4].copy_from_slice(&[0x80, 0x28, 0, 4]);
    let crc = fingerprint(&out[..len]);
    out[len + 4..total].copy_from_slice(&crc.to_be_bytes());
    total
}

/// Writes a Binding success response for `transaction_id` with XOR-MAPPED-ADDRESS =
/// `mapped` and FINGERPRINT into `out`; returns its length (40 bytes for IPv4, 52 for IPv6).
pub fn encode_binding_success(
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    out: &mut [u8; MAX_ANSWER_BYTES],
) -> usize {
    start(out, BINDING_SUCCESS, transaction_id);
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = mapped.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut len = HEADER_BYTES;
    let (family, address_len) = match mapped.ip() {
        IpAddr::V4(_) => (1u8, 4usize),
        IpAddr::V6(_) => (2u8, 16usize),
    };
    out[len..len + 2].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out[len + 2..len + 4].copy_from_slice(&(4 + address_len as u16).to_be_bytes());
    out[len + 4] = 0;
    out[len + 5] = family;
    out[len + 6..len + 8].copy_from_slice(&port.to_be_bytes());
    len += 8;
    match mapped.ip() {
        IpAddr::V4(ip) => {
            for (i, b) in ip.octets().iter().enumerate() {
                out[len + i] = b ^ cookie[i];
            }
        }
        IpAddr::V6(ip) => {
            let octets = ip.octets();
            for i in 0..16 {
                let key = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                out[len + i] = octets[i] ^ key;
            }
        }
    }
    finish(out, len + address_len)
}

/// Writes a Binding error response with ERROR-CODE `code` and `reason`, UNKNOWN-ATTRIBUTES
/// listing `unknown` (at most [`MAX_UNKNOWN_LISTED`]; omitted when empty) and FINGERPRINT
/// into `out`; returns its length.
pub fn encode_error(
    transaction_id: &[u8; 12],
    code: u16,
    reason: &str,
    unknown: &[u16],
    out: &mut [u8; MAX_ANSWER_BYTES],
) -> usize {
    start(out, BINDING_ERROR, transaction_id);
    let reason = &reason.as_bytes()[..reason.len().min(64)];
    let unknown = &unknown[..unknown.len().min(MAX_UNKNOWN_LISTED)];
    let mut len = HEADER_BYTES;
    let value_len = 4 + reason.len();
    out[len..len + 2].copy_from_slice(&ATTR_ERROR_CODE.to_be_bytes());
    out[len + 2..len + 4].copy_from_slice(&(value_len as u16).to_be_bytes());
    out[len + 4..len + 6].fill(0);
    out[len + 6] = (code / 100) as u8;
    out[len + 7] = (code % 100) as u8;
    out[len + 8..len + 8 + reason.len()].copy_from_slice(reason);
    len += 4 + padded(value_len);
    out[len - (padded(value_len) - value_len)..len].fill(0);
    if !unknown.is_empty() {
        let value_len = 2 * unknown.len();
        out[len..len + 2].copy_from_slice(&ATTR_UNKNOWN_ATTRIBUTES.to_be_bytes());
        out[len + 2..len + 4].copy_from_slice(&(value_len as u16).to_be_bytes());
        for (i, t) in unknown.iter().enumerate() {
            out[len + 4 + 2 * i..len + 6 + 2 * i].copy_from_slice(&t.to_be_bytes());
        }
        len += 4 + padded(value_len);
        out[len - (padded(value_len) - value_len)..len].fill(0);
    }
    finish(out, len)
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The transaction id of a message that is at least a header.
pub fn transaction_id(message: &[u8]) -> Option<[u8; 12]> {
    message.get(8..20)?.try_into().ok()
}

/// The address a Binding success response for `transaction_id` reports (XOR-MAPPED-ADDRESS),
/// or `None` when `response` is anything else: another transaction, an error response, a
/// wrong FINGERPRINT, or not STUN.
pub fn parse_binding_response(response: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    if response.len() < HEADER_BYTES || response[8..20] != transaction_id[..] {
        return None;
    }
    if ends_with_fingerprint(response) && !fingerprint_matches(response) {
        return None;
    }
    let decoder = MessageDecoderBuilder::default()
        .with_context(DecoderContextBuilder::default().build())
        .build();
    let (message, size) = decoder.decode(response).ok()?;
    if size != response.len()
        || message.method() != BINDING
        || message.class() != MessageClass::SuccessResponse
    {
        return None;
    }
    let attr = message
        .attributes()
        .iter()
        .find(|a| a.attribute_type() == XorMappedAddress::get_type())?;
    Some(*attr.as_xor_mapped_address().ok()?.socket_address())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_a_valid_fingerprint() {
        let r = binding_request(&[7; 12]);
        assert_eq!(&r[..4], &[0, 1, 0, 8]);
        assert!(ends_with_fingerprint(&r));
        assert!(fingerprint_matches(&r));
        let mut bad = r;
        bad[10] ^= 1;
        assert!(!fingerprint_matches(&bad));
    }

    #[test]
    fn success_responses_round_trip_through_stun_rs() {
        let tid = [0x5a; 12];
        for addr in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = [0u8; MAX_ANSWER_BYTES];
            let n = encode_binding_success(&tid, addr, &mut out);
            assert_eq!(n, if addr.is_ipv4() { 40 } else { 52 });
            assert_eq!(parse_binding_response(&out[..n], &tid), Some(addr));
            assert_eq!(parse_binding_response(&out[..n], &[0; 12]), None);
            let mut broken = out;
            broken[n - 1] ^= 1;
            assert_eq!(parse_binding_response(&broken[..n], &tid), None);
        }
    }

    #[test]
    fn rfc5769_sample_ipv4_response_is_read() {
        // RFC 5769 §2.2 (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
        let response: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        let tid: [u8; 12] = response[8..20].try_into().unwrap();
        assert!(fingerprint_matches(&response));
        assert_eq!(
            parse_binding_response(&response, &tid),
            Some("192.0.2.1:32853".parse().unwrap())
        );
    }

    #[test]
    fn error_responses_carry_code_and_unknown_attributes() {
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let n = encode_error(
            &[1; 12],
            420,
            "Unknown Attribute",
            &[0x7777, 0x0042],
            &mut out,
        );
        let decoder = MessageDecoderBuilder::default().build();
        let (msg, size) = decoder.decode(&out[..n]).unwrap();
        assert_eq!(size, n);
        assert_eq!(msg.class(), MessageClass::ErrorResponse);
        let code = msg.attributes()[0].as_error_code().unwrap().error_code();
        assert_eq!(code.error_code(), 420);
        assert_eq!(code.reason(), "Unknown Attribute");
        let unknown = msg.attributes()[1].as_unknown_attributes().unwrap();
        assert_eq!(unknown.attributes(), &[0x7777, 0x0042]);
        assert!(fingerprint_matches(&out[..n]));
    }

    #[test]
    fn stream_framing_reads_the_length() {
        let r = binding_request(&[1; 12]);
        assert_eq!(framed_length(r[..20].try_into().unwrap()), Ok(28));
        let mut h: [u8; 20] = r[..20].try_into().unwrap();
        h[4] = 0;
        assert_eq!(framed_length(&h), Err(FramingError::NotStun));
        let mut h: [u8; 20] = r[..20].try_into().unwrap();
        h[3] = 3;
        assert_eq!(framed_length(&h), Err(FramingError::BadLength));
        h[2] = 0xff;
        h[3] = 0xfc;
        assert_eq!(framed_length(&h), Err(FramingError::BadLength));
    }
}
