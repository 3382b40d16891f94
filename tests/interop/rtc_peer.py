"""A WebRTC peer that is not ours: aiortc (with aioice) as a Jasper contact in transparent mode,
used by tests/client_chat.rs. It meets `jasper chat --transparent` through our rendezvous
(Python's ssl, the certificate pinned by fingerprint; the challenge signed with the
`cryptography` package), exchanges session descriptions sealed with jwcrypto (jose_peer.py),
opens a data channel, and answers every packet it gets with a packet of its own:
"aiortc got: <content>". It prints each message object it receives, one JSON per line.

    rtc_peer.py MY_KEY.pem PEER_PUB.pem RENDEZVOUS_HOST:PORT STUN_HOST:PORT PIN REPLIES [hostile]

With `hostile`, garbage and a duplicate are sent before each reply.
"""

import asyncio
import base64
import datetime
import hashlib
import json
import ssl
import sys
import uuid

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from jose_peer import fingerprint, open_dict, read, seal_bytes

# Host candidates on loopback only: the test sends nothing beyond this machine's loopback.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

AUTH_CONTEXT = b"jasper/v1 rendezvous\n"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now() -> str:
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class Peer:
    def __init__(self, key_pem: bytes, peer_pem: bytes):
        self.key_pem = key_pem
        self.peer_pem = peer_pem
        private = serialization.load_pem_private_key(key_pem, password=None)
        self.private = private
        self.pub_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_b64 = base64.b64encode(der).decode()
        peer = serialization.load_pem_public_key(peer_pem)
        peer_der = peer.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.peer_b64 = base64.b64encode(peer_der).decode()

    def seal(self, obj: dict) -> dict:
        return seal_bytes(json.dumps(obj).encode(), self.key_pem, self.peer_pem)

    def open(self, packet: dict) -> dict:
        return open_dict(packet, self.key_pem, self.peer_pem)


async def send(writer, frame: dict) -> None:
    writer.write((json.dumps(frame) + "\n").encode())
    await writer.drain()


async def recv(reader) -> dict:
    line = await reader.readline()
    if not line:
        raise SystemExit("the rendezvous closed the stream")
    return json.loads(line)


async def main(key_path, peer_path, rendezvous, stun, pin, replies, hostile) -> None:
    me = Peer(read(key_path), read(peer_path))
    host, port = rendezvous.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # pinned by fingerprint below instead
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert hashlib.sha256(certificate).hexdigest() == pin, "not the pinned certificate"

    await send(writer, {"op": "hello", "key": me.key_b64})
    challenge = await recv(reader)
    assert challenge["op"] == "challenge", challenge
    signed = AUTH_CONTEXT + b64url_decode(challenge["nonce"]) + hashlib.sha256(certificate).digest()
    signature = me.private.sign(
        signed,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    sig_text = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    await send(writer, {"op": "auth", "signature": sig_text})
    ready = await recv(reader)
    assert ready["op"] == "ready", ready
    print(json.dumps({"event": "ready"}), flush=True)

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=f"stun:{stun}")]))
    done = asyncio.Event()
    answered = 0

    def on_channel(channel) -> None:
        @channel.on("message")
        def on_message(data) -> None:
            nonlocal answered
            obj = me.open(json.loads(data))
            assert obj["sender"] == me.peer_b64, "not from the peer"
            print(json.dumps(obj), flush=True)
            reply = {
                "sender": me.key_b64,
                "channel_id": obj["channel_id"],
                "type": "MESSAGE",
                "content": f"aiortc got: {obj['content']}",
                "id": str(uuid.uuid4()),
                "timestamp": now(),
            }
            packet = me.seal(reply)
            packet["recipient"] = me.peer_b64
            if hostile:
                # What a hostile peer might send first; jasper must skip it and go on.
                channel.send(b"\x00\xffnot json at all")
                channel.send(json.dumps({"message": 5, "signature": []}))
                channel.send(json.dumps({"message": "a.b.c.d.e", "signature": "x.y.z.w.v"}))
                channel.send("x" * 15000)
                # The same packet twice: filed once.
                channel.send(json.dumps(packet))
            channel.send(json.dumps(packet))
            answered += 1
            if answered >= replies:
                asyncio.get_event_loop().call_later(1.0, done.set)

    pc.on("datachannel", on_channel)

    def description(kind: str, offer_id: str, sdp: str) -> dict:
        return me.seal(
            {"sender": me.key_b64, "kind": kind, "id": offer_id, "sdp": sdp, "timestamp": now()}
        )

    def opened(frame: dict, kind: str) -> str:
        obj = me.open(frame["payload"])
        assert obj["sender"] == me.peer_b64 and obj["kind"] == kind and obj["id"] == frame["id"]
        return obj["sdp"]

    mine, theirs = fingerprint(me.pub_pem), fingerprint(me.peer_pem)
    if mine < theirs:
        channel = pc.createDataChannel("jasper")
        on_channel(channel)
        await pc.setLocalDescription(await pc.createOffer())
        offer_id = str(uuid.uuid4())
        payload = description("offer", offer_id, pc.localDescription.sdp)
        del payload["hash"]
        await send(writer, {"op": "offer", "to": me.peer_b64, "id": offer_id, "payload": payload})
        while True:
            frame = await recv(reader)
            if frame["op"] == "answer" and frame["id"] == offer_id:
                sdp = opened(frame, "answer")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                break
    else:
        while True:
            frame = await recv(reader)
            if frame["op"] == "offer" and frame["from"] == me.peer_b64:
                break
        sdp = opened(frame, "offer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        payload = description("answer", frame["id"], pc.localDescription.sdp)
        del payload["hash"]
        await send(writer, {"op": "answer", "to": me.peer_b64, "id": frame["id"], "payload": payload})
    print(json.dumps({"event": "negotiated"}), flush=True)
    await asyncio.wait_for(done.wait(), timeout=60)
    await pc.close()
    writer.close()


if __name__ == "__main__":
    key, peer, rendezvous, stun, pin, replies = sys.argv[1:7]
    hostile = sys.argv[7:8] == ["hostile"]
    asyncio.run(main(key, peer, rendezvous, stun, pin, int(replies), hostile))
