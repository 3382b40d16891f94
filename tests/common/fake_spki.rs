// Shared by the library's unit tests (`include!`d from src/proto/key.rs) and the integration
// tests (from tests/common/mod.rs): one builder of test keys for both.

/// The base64 DER SPKI of an RSA public key whose modulus has `bits` bits, every byte `fill`
/// (made odd) and exponent 65537: no real key (relays check a key's form and size, never its
/// primes), and as many distinct ones as fills, without key generation.
pub fn spki_of_bits(bits: usize, fill: u8) -> String {
    use base64::Engine as _;
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    let mut modulus = vec![fill | 0x80; bits / 8];
    *modulus.last_mut().unwrap() |= 1;
    modulus.insert(0, 0);
    let numbers = [der(0x02, &modulus), der(0x02, &[1, 0, 1])].concat();
    let mut bit_string = vec![0u8];
    bit_string.extend(der(0x30, &numbers));
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let spki = der(0x30, &[&algorithm[..], &der(0x03, &bit_string)].concat());
    base64::engine::general_purpose::STANDARD.encode(spki)
}
