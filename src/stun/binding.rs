//! What the STUN service answers to one message (RFC 8489 §6.3): a function from the bytes
//! and their source to an optional reply, the same for UDP datagrams and framed TLS messages.
//!
//! - A Binding request gets a success response with XOR-MAPPED-ADDRESS (the source) and
//!   FINGERPRINT.
//! - A Binding request with comprehension-required attributes (0x0000–0x7FFF) that stun-rs
//!   does not know gets 420 with UNKNOWN-ATTRIBUTES (§6.3.1); unknown comprehension-optional
//!   ones are ignored.
//! - A Binding request whose header is sound but whose attributes do not parse gets 400.
//! - Everything else is dropped without an answer (§6.3: the checks that fail discard the
//!   message): not STUN, a wrong magic cookie or length, a wrong FINGERPRINT (§14.7), responses,
//!   indications, and requests of other methods (this service speaks only Binding).
//!
//! No credentials are used, so MESSAGE-INTEGRITY is understood but not checked (§9: a server
//! without authentication ignores it); attributes after it are ignored, as §14.5 says.

use std::net::SocketAddr;

use stun_rs::MessageDecoderBuilder;

use crate::proto::stun::{
    BINDING_REQUEST, HEADER_BYTES, MAGIC_COOKIE, MAX_ANSWER_BYTES, MAX_UNKNOWN_LISTED,
    encode_binding_success, encode_error, ends_with_fingerprint, fingerprint_matches,
};

/// Why a message got no answer (for debug logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than a header, first bits not zero, or no magic cookie.
    NotStun,
    /// The length field disagrees with the bytes, or is not a multiple of 4.
    BadLength,
    /// A FINGERPRINT that does not match.
    BadFingerprint,
    /// A response, an indication, or a request of another method.
    NotBindingRequest,
}

/// The service's verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `n` bytes of the answer buffer.
    Reply(usize),
    /// Send nothing.
    Drop(Dropped),
}

/// Decides what to answer to `message` (one whole datagram, or one framed message) that came
/// from `source`, writing any answer into `out`.
pub fn answer(message: &[u8], source: SocketAddr, out: &mut [u8; MAX_ANSWER_BYTES]) -> Verdict {
    let n = message.len();
    if n < HEADER_BYTES || message[0] & 0xC0 != 0 || message[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Verdict::Drop(Dropped::NotStun);
    }
    let length = usize::from(u16::from_be_bytes([message[2], message[3]]));
    if length % 4 != 0 || HEADER_BYTES + length != n {
        return Verdict::Drop(Dropped::BadLength);
    }
    if u16::from_be_bytes([message[0], message[1]]) != BINDING_REQUEST {
        return Verdict::Drop(Dropped::NotBindingRequest);
    }
    let transaction_id: [u8; 12] = message[8..20].try_into().expect("20-byte header");
    if n == HEADER_BYTES {
        // No attributes: nothing for a decoder to find.
        return Verdict::Reply(encode_binding_success(&transaction_id, source, out));
    }
    if ends_with_fingerprint(message) && !fingerprint_matches(message) {
        return Verdict::Drop(Dropped::BadFingerprint);
    }
    let decoded = MessageDecoderBuilder::default().build().decode(message);
    let Ok((request, _)) = decoded else {
        return Verdict::Reply(encode_error(&transaction_id, 400, "Bad Request", &[], out));
    };
    let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
    let mut count = 0;
    for attr in request.attributes() {
        if attr.is_fingerprint() && !ends_with_fingerprint(message) {
            // FINGERPRINT must be last (§14.7): this is not a STUN message we can trust.
            return Verdict::Drop(Dropped::BadFingerprint);
        }
        let kind = attr.attribute_type().as_u16();
        if attr.is_unknown() && kind < 0x8000 && count < MAX_UNKNOWN_LISTED {
            unknown[count] = kind;
            count += 1;
        }
    }
    if count > 0 {
        return Verdict::Reply(encode_error(
            &transaction_id,
            420,
            "Unknown Attribute",
            &unknown[..count],
            out,
        ));
    }
    Verdict::Reply(encode_binding_success(&transaction_id, source, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stun::{binding_request, parse_binding_response};

    fn src() -> SocketAddr {
        "203.0.113.7:40000".parse().unwrap()
    }

    /// RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    /// MESSAGE-INTEGRITY and FINGERPRINT.
    pub(crate) const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    fn tid(m: &[u8]) -> [u8; 12] {
        m[8..20].try_into().unwrap()
    }

    #[test]
    fn the_rfc5769_request_is_answered_with_the_source_address() {
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let Verdict::Reply(n) = answer(&RFC5769_REQUEST, src(), &mut out) else {
            panic!("no answer");
        };
        assert_eq!(
            parse_binding_response(&out[..n], &tid(&RFC5769_REQUEST)),
            Some(src())
        );
    }

    #[test]
    fn the_rfc5769_vector_is_what_the_rfc_says() {
        // Its MESSAGE-INTEGRITY verifies with the RFC's password, so the bytes are right.
        use stun_rs::{DecoderContextBuilder, HMACKey};
        let ctx = DecoderContextBuilder::default()
            .with_key(HMACKey::new_short_term("VOkJxbRl1RmTxUk/WvJxBt").unwrap())
            .with_validation()
            .build();
        let decoder = MessageDecoderBuilder::default().with_context(ctx).build();
        assert!(decoder.decode(&RFC5769_REQUEST).is_ok());
    }

    #[test]
    fn a_bare_request_is_answered() {
        let mut req = [0u8; 20];
        req[..20].copy_from_slice(&binding_request(&[9; 12])[..20]);
        req[2..4].fill(0);
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let Verdict::Reply(n) = answer(&req, src(), &mut out) else {
            panic!("no answer");
        };
        assert_eq!(parse_binding_response(&out[..n], &[9; 12]), Some(src()));
        let with_fp = binding_request(&[8; 12]);
        let Verdict::Reply(n) = answer(&with_fp, src(), &mut out) else {
            panic!("no answer");
        };
        assert_eq!(parse_binding_response(&out[..n], &[8; 12]), Some(src()));
    }

    /// A Binding request with the given attributes (type, value) and no FINGERPRINT.
    fn request_with(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = binding_request(&[3; 12])[..20].to_vec();
        for (t, v) in attrs {
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&(v.len() as u16).to_be_bytes());
            m.extend_from_slice(v);
            while !m.len().is_multiple_of(4) {
                m.push(0);
            }
        }
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    #[test]
    fn unknown_comprehension_required_attributes_get_420() {
        let req = request_with(&[(0x7ff0, b"abcd"), (0xc0de, b"x"), (0x0033, b"")]);
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let Verdict::Reply(n) = answer(&req, src(), &mut out) else {
            panic!("no answer");
        };
        let (msg, _) = MessageDecoderBuilder::default()
            .build()
            .decode(&out[..n])
            .unwrap();
        assert_eq!(msg.class(), stun_rs::MessageClass::ErrorResponse);
        let code = msg.attributes()[0].as_error_code().unwrap().error_code();
        assert_eq!(code.error_code(), 420);
        let listed = msg.attributes()[1].as_unknown_attributes().unwrap();
        assert_eq!(listed.attributes(), &[0x7ff0, 0x0033]);
        assert!(fingerprint_matches(&out[..n]));
    }

    #[test]
    fn unknown_comprehension_optional_attributes_are_ignored() {
        let req = request_with(&[(0xc0de, b"hello")]);
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let Verdict::Reply(n) = answer(&req, src(), &mut out) else {
            panic!("no answer");
        };
        assert_eq!(parse_binding_response(&out[..n], &[3; 12]), Some(src()));
    }

    #[test]
    fn malformed_attributes_get_400() {
        // An attribute whose length runs past the message.
        let mut req = request_with(&[(0x8022, b"abcd")]);
        req[22..24].copy_from_slice(&40u16.to_be_bytes());
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let Verdict::Reply(n) = answer(&req, src(), &mut out) else {
            panic!("no answer");
        };
        assert_eq!(&out[..2], &[0x01, 0x11]);
        assert_eq!(out[26..28], [4, 0], "error 400: {:?}", &out[..n]);
    }

    #[test]
    fn junk_is_dropped() {
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let good = binding_request(&[4; 12]);
        let cases: Vec<(Vec<u8>, Dropped)> = vec![
            (vec![], Dropped::NotStun),
            (good[..19].to_vec(), Dropped::NotStun),
            (b"GET / HTTP/1.1\r\n\r\nxxxxxxxx".to_vec(), Dropped::NotStun),
            (
                {
                    let mut m = good.to_vec();
                    m[5] ^= 1;
                    m
                },
                Dropped::NotStun,
            ),
            (
                {
                    let mut m = good.to_vec();
                    m[2..4].copy_from_slice(&0xfffcu16.to_be_bytes());
                    m
                },
                Dropped::BadLength,
            ),
            (good[..27].to_vec(), Dropped::BadLength),
            (
                {
                    let mut m = good.to_vec();
                    m[27] ^= 0xff;
                    m
                },
                Dropped::BadFingerprint,
            ),
            (
                {
                    let mut m = good.to_vec();
                    m[1] = 0x11; // Binding indication
                    m
                },
                Dropped::NotBindingRequest,
            ),
            (
                {
                    let mut m = good.to_vec();
                    m[0] = 0x01; // Binding success response
                    m[1] = 0x01;
                    m
                },
                Dropped::NotBindingRequest,
            ),
            (
                {
                    let mut m = good.to_vec();
                    m[1] = 0x03; // Allocate request (TURN)
                    m
                },
                Dropped::NotBindingRequest,
            ),
        ];
        for (bytes, why) in cases {
            assert_eq!(
                answer(&bytes, src(), &mut out),
                Verdict::Drop(why),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut out = [0u8; MAX_ANSWER_BYTES];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..600usize {
            let mut m = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                m.push(x as u8);
            }
            if len >= 20 {
                // Make many of them look like STUN so the attribute walk is exercised.
                m[0] = 0;
                m[1] = 1;
                m[2..4].copy_from_slice(&((len as u16 - 20) & !3).to_be_bytes());
                m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                m.truncate(20 + ((len - 20) & !3));
            }
            let _ = answer(&m, src(), &mut out);
        }
    }
}
