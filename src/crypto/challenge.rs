//! Proof of key possession for the rendezvous (src/proto/rendezvous.rs): an RSASSA-PSS SHA-256
//! signature over a server's challenge, base64url without padding.

use sha2::Sha256;

use super::identity::Identity;
use super::jose::{b64, unb64};
use crate::proto::PublicKey;

/// Signs `input` with the identity's private key.
pub fn sign(identity: &Identity, input: &[u8]) -> String {
    let signature = identity
        .private()
        .pss_sign::<Sha256>(input)
        .expect("PSS signing with a valid 4096-bit key cannot fail");
    b64(&signature)
}

/// Whether `signature` (base64url) is `key`'s signature over `input`.
pub fn verify(key: &PublicKey, input: &[u8], signature: &str) -> bool {
    let Some(signature) = unb64(signature) else {
        return false;
    };
    if signature.len() != key.modulus_bytes() {
        return false;
    }
    key.rsa()
        .is_ok_and(|rsa| rsa.pss_verify::<Sha256>(input, &signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::tests::fixture;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_input() {
        let alice = fixture("alice");
        let bob = fixture("bob");
        let sig = sign(&alice, b"challenge");
        assert!(verify(alice.public(), b"challenge", &sig));
        assert!(!verify(alice.public(), b"challengE", &sig));
        assert!(!verify(bob.public(), b"challenge", &sig));
        assert!(!verify(alice.public(), b"challenge", "not base64!"));
        assert!(!verify(alice.public(), b"challenge", "AAAA"));
    }
}
