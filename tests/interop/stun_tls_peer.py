"""An independent STUN-over-TLS client (RFC 8489 §6.2.3, RFC 7064), standard library only:
Python's ssl module (OpenSSL) is a different TLS stack from rustls, and the STUN encoding and
decoding here are written from the RFC, not taken from jasper.

Usage: stun_tls_peer.py HOST PORT
Prints one JSON object: the mapped address the server reported, this socket's local address,
and the SHA-256 of the server's certificate (hex). Exits non-zero on anything unexpected.
"""

import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import zlib

MAGIC_COOKIE = 0x2112A442


def fingerprint(data: bytes) -> int:
    return (zlib.crc32(data) & 0xFFFFFFFF) ^ 0x5354554E


def binding_request(tid: bytes) -> bytes:
    header = struct.pack("!HHI12s", 0x0001, 8, MAGIC_COOKIE, tid)
    return header + struct.pack("!HHI", 0x8028, 4, fingerprint(header))


def read_exact(stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.recv(n - len(out))
        if not chunk:
            raise SystemExit("connection closed before a whole STUN message arrived")
        out += chunk
    return out


def parse_response(message: bytes, tid: bytes):
    msg_type, length, cookie, got_tid = struct.unpack("!HHI12s", message[:20])
    if msg_type != 0x0101:
        raise SystemExit(f"not a Binding success response: type {msg_type:#06x}")
    if cookie != MAGIC_COOKIE or got_tid != tid or len(message) != 20 + length:
        raise SystemExit("bad header")
    mapped = None
    pos = 20
    while pos < len(message):
        attr_type, attr_len = struct.unpack("!HH", message[pos:pos + 4])
        value = message[pos + 4:pos + 4 + attr_len]
        if attr_type == 0x0020:  # XOR-MAPPED-ADDRESS
            family = value[1]
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            if family == 1:
                raw = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
                mapped = (socket.inet_ntop(socket.AF_INET, struct.pack("!I", raw)), port)
            else:
                key = struct.pack("!I", MAGIC_COOKIE) + tid
                raw = bytes(a ^ b for a, b in zip(value[4:20], key))
                mapped = ("[" + socket.inet_ntop(socket.AF_INET6, raw) + "]", port)
        elif attr_type == 0x8028:  # FINGERPRINT
            expected = fingerprint(message[:pos])
            if struct.unpack("!I", value)[0] != expected:
                raise SystemExit("FINGERPRINT does not match")
        pos += 4 + ((attr_len + 3) // 4) * 4
    if mapped is None:
        raise SystemExit("no XOR-MAPPED-ADDRESS")
    return mapped


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The server's certificate is self-signed: it is pinned by fingerprint, checked by the
    # caller against what `jasper stun` printed.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="jasper-stun") as tls:
            certificate = tls.getpeercert(binary_form=True)
            tid = os.urandom(12)
            tls.sendall(binding_request(tid))
            header = read_exact(tls, 20)
            length = struct.unpack("!H", header[2:4])[0]
            message = header + read_exact(tls, length)
            ip, mapped_port = parse_response(message, tid)
            local = tls.getsockname()
            print(json.dumps({
                "mapped": f"{ip}:{mapped_port}",
                "local": f"{local[0]}:{local[1]}",
                "fingerprint": hashlib.sha256(certificate).hexdigest(),
                "tls_version": tls.version(),
            }))


if __name__ == "__main__":
    main()
