"""An independent implementation of the Jasper envelope (PROTOCOL.md section 2) on jwcrypto,
used by tests/interop_jose.rs to check that other JOSE stacks open what jasper seals and that
jasper opens what they seal.

    jose_peer.py open RECIPIENT_KEY.pem SENDER_PUB.pem   < {"message":..,"signature":..}
        prints the message object (JSON) when the JWE opens and the signature verifies
    jose_peer.py seal SENDER_KEY.pem RECIPIENT_PUB.pem   < message object (JSON)
        prints {"message":..,"signature":..,"hash":..}
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwe, jwk, jws


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signature_key(cek: bytes) -> jwk.JWK:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jasper/v1 signature").derive(cek)
    return jwk.JWK(kty="oct", k=b64(key))


def fingerprint(pub_pem: bytes) -> str:
    key = serialization.load_pem_public_key(pub_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def open_dict(packet: dict, recipient_pem: bytes, sender_pem: bytes) -> dict:
    """Opens a packet addressed to `recipient_pem` (a private key) and verifies it was signed
    by `sender_pem` (a public key); returns the message object."""
    recipient = jwk.JWK.from_pem(recipient_pem)
    sender = jwk.JWK.from_pem(sender_pem)
    outer = jwe.JWE()
    outer.deserialize(packet["message"], key=recipient)
    header = json.loads(outer.objects["protected"])
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM"}, header
    plaintext = outer.payload
    inner = jwe.JWE()
    inner.deserialize(packet["signature"], key=signature_key(outer.cek))
    assert json.loads(inner.objects["protected"]) == {"alg": "dir", "enc": "A256GCM"}
    token = inner.payload.decode()
    signature = jws.JWS()
    signature.deserialize(token)
    protected = json.loads(signature.objects["protected"])
    assert protected["alg"] == "PS256", protected
    # The recipient named in the signature is the key we decrypted with.
    priv = serialization.load_pem_private_key(recipient_pem, password=None)
    pub_pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert protected["rcpt"] == fingerprint(pub_pem), "rcpt does not name the recipient"
    signature.verify(sender, detached_payload=plaintext)
    return json.loads(plaintext)


def seal_bytes(obj: bytes, sender_pem: bytes, recipient_pem: bytes) -> dict:
    """Seals the message object `obj` (JSON bytes) from `sender_pem` (a private key) to
    `recipient_pem` (a public key); returns message, signature and hash."""
    size = max(len(obj), 512)
    bucket = 1 << (size - 1).bit_length()
    plaintext = obj + b" " * (bucket - len(obj))
    sender = jwk.JWK.from_pem(sender_pem)
    recipient = jwk.JWK.from_pem(recipient_pem)
    outer = jwe.JWE(plaintext, protected=json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"}))
    outer.add_recipient(recipient)
    message = outer.serialize(compact=True)
    signer = jws.JWS(plaintext)
    signer.add_signature(
        sender, alg="PS256", protected=json.dumps({"alg": "PS256", "rcpt": fingerprint(recipient_pem)})
    )
    full = signer.serialize(compact=True)
    head, _, sig = full.split(".")
    detached = f"{head}..{sig}"
    inner = jwe.JWE(detached.encode(), protected=json.dumps({"alg": "dir", "enc": "A256GCM"}))
    inner.add_recipient(signature_key(outer.cek))
    signature = inner.serialize(compact=True)
    return {
        "message": message,
        "signature": signature,
        "hash": hashlib.sha256(message.encode()).hexdigest(),
    }


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def open_packet(recipient_key_path: str, sender_pub_path: str) -> None:
    packet = json.load(sys.stdin)
    obj = open_dict(packet, read(recipient_key_path), read(sender_pub_path))
    print(json.dumps(obj))


def seal_packet(sender_key_path: str, recipient_pub_path: str) -> None:
    obj = sys.stdin.buffer.read().strip()
    print(json.dumps(seal_bytes(obj, read(sender_key_path), read(recipient_pub_path))))


if __name__ == "__main__":
    mode, a, b = sys.argv[1:4]
    {"open": open_packet, "seal": seal_packet}[mode](a, b)
