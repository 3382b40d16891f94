"""A WebRTC peer that is not ours: aiortc (with aioice) as a Jasper contact in transparent mode,
used by tests/client_chat.rs. It meets `jasper chat --transparent` through our rendezvous
(Python's ssl, the certificate pinned by fingerprint; the challenge signed with the
`cryptography` package), exchanges session descriptions sealed with jwcrypto (jose_peer.py),
opens a data channel, and answers every packet it gets with a packet of its own:
"aiortc got: <content>". It prints each message object it receives, one JSON per line.

    rtc_peer.py MY_KEY.pem PEER_PUB.pem RENDEZVOUS_HOST:PORT STUN_HOST:PORT PIN REPLIES [hostile]
    rtc_peer.py MY_KEY.pem PEER_PUB.pem RENDEZVOUS_HOST:PORT STUN_HOST:PORT PIN call SECS

With `hostile`, garbage and a duplicate are sent before each reply.

With `call`, it takes a `jasper call` instead (descriptions with "purpose": "call"): it sends
a 660 Hz tone for SECS seconds as PCMU (aiortc's encoder, ffmpeg's µ-law), then hangs up with
the data-channel message jasper uses (after some that only look like it), and prints what
it heard:
{"event": "heard", "frames", "rms", "p440", "p660"} (Goertzel power per sample at 440 and
660 Hz, computed on the samples aiortc decoded).
"""

import asyncio
import base64
import datetime
import fractions
import hashlib
import json
import math
import ssl
import struct
import sys
import time
import uuid

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from jose_peer import fingerprint, open_dict, read, seal_bytes

# Host candidates on loopback only: the test sends nothing beyond this machine's loopback.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

AUTH_CONTEXT = b"jasper/v1 rendezvous\n"
HANGUP = b'{"op":"hangup"}'


class Tone(MediaStreamTrack):
    """A sine at `hz`, 8 kHz mono, in 20 ms frames paced in real time, for `secs` seconds."""

    kind = "audio"

    def __init__(self, hz: float, secs: float):
        super().__init__()
        self.hz, self.frames, self.sent, self.start = hz, int(secs * 50), 0, None

    async def recv(self):
        if self.sent >= self.frames:
            self.stop()
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.sent * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        first = self.sent * 160
        samples = [
            int(12000 * math.sin(2 * math.pi * self.hz * (first + i) / 8000)) for i in range(160)
        ]
        frame = av.AudioFrame(format="s16", layout="mono", samples=160)
        frame.planes[0].update(struct.pack("<160h", *samples))
        frame.sample_rate = 8000
        frame.pts = first
        frame.time_base = fractions.Fraction(1, 8000)
        self.sent += 1
        return frame


def goertzel(samples, hz: float) -> float:
    coeff = 2 * math.cos(2 * math.pi * hz / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / max(len(samples), 1)


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


async def main(key_path, peer_path, rendezvous, stun, pin, replies, hostile, call_secs) -> None:
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

    # A call bundles its audio and data channel on one ICE transport (max-bundle), which
    # webrtc-rs requires; aiortc's default (balanced) gives each its own ICE credentials.
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=[RTCIceServer(urls=f"stun:{stun}")],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
    )
    done = asyncio.Event()
    answered = 0
    heard = []
    tone = None
    if call_secs is not None:
        tone = Tone(660.0, call_secs)
        pc.addTrack(tone)

        @pc.on("track")
        def on_track(track) -> None:
            async def listen() -> None:
                try:
                    while True:
                        frame = await track.recv()
                        raw = bytes(frame.planes[0])[: frame.samples * 2]
                        heard.append(struct.unpack(f"<{frame.samples}h", raw))
                except MediaStreamError:
                    pass

            asyncio.ensure_future(listen())

    def on_call_channel(channel) -> None:
        async def hang_up_after_the_tone() -> None:
            while tone.readyState != "ended":
                await asyncio.sleep(0.05)
            channel.send(HANGUP)
            await asyncio.sleep(0.5)
            done.set()

        @channel.on("open")
        def on_open() -> None:
            # What a hostile or confused peer might say mid-call; jasper must ignore it all
            # and hang up only on the real message.
            channel.send(b"\x00\xffnot json at all")
            channel.send('{"op":"hangupX"}')
            channel.send('{"op": ["hangup"]}')
            channel.send("x" * 15000)
            asyncio.ensure_future(hang_up_after_the_tone())

        if channel.readyState == "open":
            on_open()

        @channel.on("message")
        def on_message(data) -> None:
            if data == HANGUP or data == HANGUP.decode():
                done.set()

    def on_channel(channel) -> None:
        if call_secs is not None:
            on_call_channel(channel)
            return
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
        obj = {"sender": me.key_b64, "kind": kind, "id": offer_id, "sdp": sdp, "timestamp": now()}
        if call_secs is not None:
            obj["purpose"] = "call"
        return me.seal(obj)

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
    if call_secs is not None:
        samples = [x for frame in heard for x in frame]
        rms = math.sqrt(sum(x * x for x in samples) / max(len(samples), 1))
        print(
            json.dumps(
                {
                    "event": "heard",
                    "frames": len(heard),
                    "rms": rms,
                    "p440": goertzel(samples, 440.0),
                    "p660": goertzel(samples, 660.0),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    key, peer, rendezvous, stun, pin, replies = sys.argv[1:7]
    if replies == "call":
        asyncio.run(main(key, peer, rendezvous, stun, pin, 0, False, float(sys.argv[7])))
    else:
        hostile = sys.argv[7:8] == ["hostile"]
        asyncio.run(main(key, peer, rendezvous, stun, pin, int(replies), hostile, None))
