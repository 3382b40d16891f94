//! The WebRTC side of transparent mode: one peer connection with one data channel, and for a
//! call one audio track each way (G.711 µ-law, [`AudioPath`]), set up by exchanging complete
//! session descriptions (no trickle ICE) through the rendezvous.
//!
//! webrtc 0.21 notes we follow: the SDP is exchanged only after ICE gathering completes, so it
//! carries every candidate; the data channel always has a send-buffer limit (without one a burst
//! stalls for seconds); the ICE check interval is lowered so a LAN or loopback connects in
//! tens of milliseconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_PCMU, MediaEngine};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};

/// Largest data-channel message we send or accept (webrtc-rs delivers up to 16 KiB).
pub const MAX_DATA_MESSAGE: usize = 16 * 1024;
/// Bytes that may wait in a data channel's send buffer before `send` waits.
const SEND_BUFFER_LIMIT: usize = 1 << 20;
/// Messages received but not yet read.
const INCOMING_QUEUE: usize = 256;
/// The data channel's label.
const LABEL: &str = "jasper";
/// Silence from the peer after which ICE calls the link disconnected (webrtc's default).
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
/// Further silence after which the link has failed, and the chat or call ends: a peer that
/// vanished (killed, unplugged) is noticed after ~10 s instead of webrtc's default ~30 s.
const ICE_FAILED_AFTER: Duration = Duration::from_secs(5);
/// How often ICE checks the link is alive while nothing else is sent (webrtc's default).
const ICE_KEEPALIVE: Duration = Duration::from_secs(2);
/// The RTP payload type of G.711 µ-law (PCMU), static since RFC 3551.
pub const PCMU_PAYLOAD_TYPE: u8 = 0;
/// PCMU's RTP clock: 8,000 samples a second, one byte each.
pub const PCMU_CLOCK_RATE: u32 = 8000;
/// RTP packets received on the audio track but not yet read.
const AUDIO_QUEUE: usize = 256;

/// Why a direct link could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// webrtc refused something.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A step took too long.
    #[error("WebRTC: {0} timed out")]
    Timeout(&'static str),
    /// The connection failed or closed.
    #[error("the direct connection closed")]
    Closed,
}

/// The offer as sent: the offerer claims the DTLS client role (`a=setup:active`) instead of
/// leaving the choice to the answerer (`actpass`). The DTLS client is the side webrtc-rs lets
/// send the SCTP INIT, and the offerer is the ICE controlling side, the one peers such as
/// aiortc let send it; an answerer that took the client role would leave both waiting. Our
/// own description keeps `actpass`, which accepts the `passive` answer this asks for (our
/// answering side gives it, see `with_answering_dtls_role`).
fn offer_as_dtls_client(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            if line.trim_end_matches(['\r', '\n']) == "a=setup:actpass" {
                line.replacen("actpass", "active", 1)
            } else {
                line.to_owned()
            }
        })
        .collect()
}

fn rtc_err(e: impl std::fmt::Display) -> RtcError {
    RtcError::WebRtc(e.to_string())
}

/// How to build a peer connection.
#[derive(Debug, Clone)]
pub struct RtcOptions {
    /// STUN server for server-reflexive candidates, "host:port" (UDP).
    pub stun: Option<String>,
    /// Local address to gather host candidates on (`0.0.0.0:0`: every interface).
    pub bind: SocketAddr,
    /// Longest wait for ICE gathering.
    pub gather_timeout: Duration,
    /// Also send and receive one audio track (a call), besides the data channel.
    pub audio: bool,
}

struct Events {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    channel: mpsc::Sender<Arc<dyn DataChannel>>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        let _ = self.state.send(state);
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channel.try_send(channel);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(track);
    }
}

/// The one codec a call offers and accepts: G.711 µ-law, which every WebRTC stack implements
/// (RFC 7874) and which needs no codec library.
fn pcmu() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_PCMU.to_owned(),
        clock_rate: PCMU_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Our audio track, before the connection is made.
struct LocalAudio {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
}

/// A peer connection being negotiated.
pub struct Negotiation {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    own_channel: Option<Arc<dyn DataChannel>>,
    gather_timeout: Duration,
    audio: Option<LocalAudio>,
    tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
}

impl Negotiation {
    /// A new peer connection.
    pub async fn new(options: &RtcOptions) -> Result<Self, RtcError> {
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (channel_tx, channels) = mpsc::channel(4);
        let (tracks_tx, tracks) = mpsc::channel(4);
        let events = Arc::new(Events {
            gathered: gathered_tx,
            state: state_tx,
            channel: channel_tx,
            tracks: tracks_tx,
        });
        let ice_servers = options
            .stun
            .iter()
            .map(|s| RTCIceServer {
                urls: vec![format!("stun:{s}")],
                ..Default::default()
            })
            .collect();
        let settings = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), Some(50))
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED_AFTER),
                Some(ICE_FAILED_AFTER),
                Some(ICE_KEEPALIVE),
            )
            .with_include_loopback_candidate(options.bind.ip().is_loopback())
            // The answerer is the DTLS server, hence the SCTP server, and the offerer (the ICE
            // controlling side) opens the SCTP association. webrtc-rs lets only the DTLS client
            // send INIT; peers such as aiortc let only the ICE controlling side send it; this
            // choice satisfies both.
            .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server)
            .build();
        let mut builder = PeerConnectionBuilder::new();
        if options.audio {
            let mut media = MediaEngine::default();
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: pcmu(),
                        payload_type: PCMU_PAYLOAD_TYPE,
                    },
                    RtpCodecKind::Audio,
                )
                .map_err(rtc_err)?;
            builder = builder.with_media_engine(media);
        }
        let pc = builder
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(events)
            .with_runtime(runtime())
            .with_udp_addrs(vec![options.bind.to_string()])
            .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
            .build()
            .await
            .map_err(rtc_err)?;
        let audio = if options.audio {
            let ssrc = getrandom::u32().map_err(rtc_err)?;
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "jasper".to_owned(),
                "jasper-voice".to_owned(),
                "voice".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    active: true,
                    codec: pcmu(),
                    ..Default::default()
                }],
            )));
            if let Err(e) = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await {
                let _ = pc.close().await;
                return Err(rtc_err(e));
            }
            Some(LocalAudio { track, ssrc })
        } else {
            None
        };
        Ok(Self {
            pc: Arc::new(pc),
            gathered,
            state,
            channels,
            own_channel: None,
            gather_timeout: options.gather_timeout,
            audio,
            tracks,
        })
    }

    async fn local_description(&mut self) -> Result<RTCSessionDescription, RtcError> {
        let wait = self.gathered.wait_for(|done| *done);
        tokio::time::timeout(self.gather_timeout, wait)
            .await
            .map_err(|_| RtcError::Timeout("ICE gathering"))?
            .map_err(|_| RtcError::Closed)?;
        self.pc
            .local_description()
            .await
            .ok_or_else(|| RtcError::WebRtc("no local description".into()))
    }

    /// The offer (with every candidate), for the side that opens the data channel.
    pub async fn offer(&mut self) -> Result<String, RtcError> {
        let channel = self
            .pc
            .create_data_channel(LABEL, None)
            .await
            .map_err(rtc_err)?;
        self.own_channel = Some(channel);
        let offer = self.pc.create_offer(None).await.map_err(rtc_err)?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(rtc_err)?;
        Ok(offer_as_dtls_client(&self.local_description().await?.sdp))
    }

    /// Takes the peer's offer and makes the answer (with every candidate).
    pub async fn answer(&mut self, offer_sdp: String) -> Result<String, RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| match e.to_string() {
                why if why.contains("ice-ufrag") => RtcError::WebRtc(format!(
                    "{why}: the peer's offer gives its media separate ICE transports; ours \
                     must share one (the peer's bundle policy must be max-bundle)"
                )),
                why => RtcError::WebRtc(why),
            })?;
        let answer = self.pc.create_answer(None).await.map_err(rtc_err)?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err)?;
        Ok(self.local_description().await?.sdp)
    }

    /// Takes the peer's answer to our offer.
    pub async fn accept_answer(&mut self, answer_sdp: String) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(answer_sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err)
    }

    /// Waits until the data channel is open.
    pub async fn connect(mut self, timeout: Duration) -> Result<Link, RtcError> {
        let work = async {
            let channel = match self.own_channel.take() {
                Some(c) => c,
                None => {
                    let mut state = self.state.clone();
                    tokio::select! {
                        c = self.channels.recv() => c.ok_or(RtcError::Closed)?,
                        _ = state.wait_for(|s| *s == RTCPeerConnectionState::Failed) => {
                            return Err(RtcError::Closed);
                        }
                    }
                }
            };
            let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
            let (open_tx, mut open_rx) = watch::channel(false);
            let poller = channel.clone();
            tokio::spawn(async move {
                while let Some(event) = poller.poll().await {
                    match event {
                        DataChannelEvent::OnOpen => {
                            let _ = open_tx.send(true);
                        }
                        DataChannelEvent::OnMessage(m)
                            if m.data.len() <= MAX_DATA_MESSAGE
                                && incoming_tx.send(m.data.to_vec()).await.is_err() =>
                        {
                            break;
                        }
                        DataChannelEvent::OnClose => break,
                        _ => {}
                    }
                }
            });
            let mut state = self.state.clone();
            // webrtc 0.21's driver sends what its own events produce (the SCTP INIT, the
            // channel's OPEN) only at its next wake, up to the 200 ms SCTP timer later; a
            // call that wakes it every few milliseconds until the channel is open saves
            // ~0.4 s of every connection.
            let nudge = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let _ = channel.set_buffered_amount_low_threshold(0).await;
                }
            };
            tokio::select! {
                r = open_rx.wait_for(|open| *open) => { r.map_err(|_| RtcError::Closed)?; }
                _ = state.wait_for(|s| *s == RTCPeerConnectionState::Failed) => {
                    return Err(RtcError::Closed);
                }
                () = nudge => unreachable!("the nudge never ends"),
            }
            let audio = self.audio.take().map(|local| AudioPath {
                track: local.track,
                ssrc: local.ssrc,
                remote: std::mem::replace(&mut self.tracks, mpsc::channel(1).1),
                state: self.state.clone(),
            });
            Ok(Link {
                pc: self.pc.clone(),
                channel,
                incoming,
                state: self.state.clone(),
                audio,
            })
        };
        let pc = self.pc.clone();
        let result = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RtcError::Timeout("connecting to the peer"))
            .and_then(|r| r);
        if result.is_err() {
            // Dropped unclosed, its driver task, socket and channel poller would stay behind.
            let _ = pc.close().await;
        }
        result
    }

    /// Closes the connection being negotiated.
    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

/// An open data channel to the peer (and, for a call, the audio tracks).
pub struct Link {
    pc: Arc<dyn PeerConnection>,
    channel: Arc<dyn DataChannel>,
    incoming: mpsc::Receiver<Vec<u8>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    audio: Option<AudioPath>,
}

impl Link {
    /// The audio tracks of a call (`RtcOptions::audio`), once; `None` otherwise.
    pub fn take_audio(&mut self) -> Option<AudioPath> {
        self.audio.take()
    }

    /// Sends one message (at most [`MAX_DATA_MESSAGE`] bytes).
    pub async fn send(&self, data: &[u8]) -> Result<(), RtcError> {
        if data.len() > MAX_DATA_MESSAGE {
            return Err(RtcError::WebRtc(format!(
                "a message of {} bytes is over the {MAX_DATA_MESSAGE}-byte limit",
                data.len()
            )));
        }
        self.channel
            .send(BytesMut::from(data))
            .await
            .map_err(|_| RtcError::Closed)
    }

    /// The next message from the peer; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let mut state = self.state.clone();
        tokio::select! {
            m = self.incoming.recv() => m,
            _ = state.wait_for(|s| matches!(
                s,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )) => None,
        }
    }

    /// Waits (at most `timeout`) until everything sent has left the send buffer.
    pub async fn flush(&self, timeout: Duration) {
        let wait = async {
            while self.channel.outstanding_bytes().await.unwrap_or(0) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }

    /// Closes the channel and the connection.
    pub async fn close(self) {
        let _ = self.channel.close().await;
        let _ = self.pc.close().await;
    }
}

/// One RTP packet of audio as the peer sent it, as [`AudioPath::split`] delivers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (in [`PCMU_CLOCK_RATE`] units).
    pub timestamp: u32,
    /// RTP payload type; [`PCMU_PAYLOAD_TYPE`] is the one we negotiate.
    pub payload_type: u8,
    /// The payload: one µ-law byte per sample for PCMU.
    pub payload: Bytes,
}

/// Our audio track to the peer and theirs to us, over an open [`Link`].
pub struct AudioPath {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    remote: mpsc::Receiver<Arc<dyn TrackRemote>>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl AudioPath {
    /// Splits the path: our track to send on, and the peer's audio, which arrives on the
    /// returned channel until the connection ends. A task reads the peer's track; it waits
    /// for the track first (webrtc announces it with its first packet).
    pub fn split(mut self) -> (AudioOut, mpsc::Receiver<AudioPacket>) {
        let (tx, rx) = mpsc::channel(AUDIO_QUEUE);
        let mut state = self.state.clone();
        let mut remote = std::mem::replace(&mut self.remote, mpsc::channel(1).1);
        tokio::spawn(async move {
            let ended = |s: &RTCPeerConnectionState| {
                matches!(
                    s,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                )
            };
            let track = tokio::select! {
                t = remote.recv() => t,
                _ = state.wait_for(ended) => None,
            };
            let Some(track) = track else { return };
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let packet = AudioPacket {
                            sequence: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            payload_type: p.header.payload_type,
                            payload: p.payload,
                        };
                        if tx.send(packet).await.is_err() {
                            break;
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
        let out = AudioOut {
            track: self.track,
            ssrc: self.ssrc,
        };
        (out, rx)
    }
}

/// Our audio track to the peer.
pub struct AudioOut {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
}

impl AudioOut {
    /// Sends one RTP packet of PCMU.
    pub async fn send(
        &self,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) -> Result<(), RtcError> {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: PCMU_PAYLOAD_TYPE,
                sequence_number: sequence,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.track.write_rtp(packet).await.map_err(rtc_err)
    }
}

/// The webrtc runtime handle (tokio), made once.
fn runtime() -> Arc<dyn webrtc::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Arc<dyn webrtc::runtime::Runtime>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| webrtc::runtime::default_runtime().expect("the tokio runtime is built in"))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for a peer on loopback, with or without audio.
    fn loopback(audio: bool) -> RtcOptions {
        RtcOptions {
            stun: None,
            bind: "127.0.0.1:0".parse().unwrap(),
            gather_timeout: Duration::from_secs(5),
            audio,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_peers_on_loopback_open_a_data_channel_and_talk_both_ways() {
        let options = loopback(false);
        let mut a = Negotiation::new(&options).await.unwrap();
        let mut b = Negotiation::new(&options).await.unwrap();
        let offer = a.offer().await.unwrap();
        assert!(offer.contains("a=candidate"), "{offer}");
        assert!(offer.contains("\na=setup:active\r\n"), "{offer}");
        assert!(!offer.contains("actpass"), "{offer}");
        let answer = b.answer(offer).await.unwrap();
        assert!(answer.contains("\na=setup:passive\r\n"), "{answer}");
        a.accept_answer(answer).await.unwrap();
        let (a, b) = tokio::join!(
            a.connect(Duration::from_secs(10)),
            b.connect(Duration::from_secs(10))
        );
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        a.send(b"hello from a").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), b"hello from a");
        b.send(b"hello from b").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), b"hello from b");
        assert!(a.send(&vec![0u8; MAX_DATA_MESSAGE + 1]).await.is_err());
        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_never_opens_is_closed_not_left_running() {
        let mut a = Negotiation::new(&loopback(false)).await.unwrap();
        a.offer().await.unwrap();
        let pc = a.pc.clone();
        // No answer comes.
        assert!(a.connect(Duration::from_millis(300)).await.is_err());
        // A closed connection refuses any more negotiation.
        assert!(pc.create_offer(None).await.is_err(), "it was left open");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_carries_pcmu_audio_both_ways_beside_the_data_channel() {
        let options = loopback(true);
        let mut a = Negotiation::new(&options).await.unwrap();
        let mut b = Negotiation::new(&options).await.unwrap();
        let offer = a.offer().await.unwrap();
        assert!(offer.contains("m=audio"), "{offer}");
        assert!(offer.contains("PCMU/8000"), "{offer}");
        let answer = b.answer(offer).await.unwrap();
        assert!(answer.contains("a=sendrecv"), "{answer}");
        a.accept_answer(answer).await.unwrap();
        let (a, b) = tokio::join!(
            a.connect(Duration::from_secs(10)),
            b.connect(Duration::from_secs(10))
        );
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        let (a_out, mut a_in) = a.take_audio().unwrap().split();
        let (b_out, mut b_in) = b.take_audio().unwrap().split();
        assert!(a.take_audio().is_none());
        for (out, mark) in [(&a_out, 0x11u8), (&b_out, 0x22)] {
            for n in 0..20u16 {
                let payload = Bytes::from(vec![mark ^ n as u8; 160]);
                out.send(1000 + n, u32::from(n) * 160, n == 0, payload)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for (incoming, mark) in [(&mut b_in, 0x11u8), (&mut a_in, 0x22)] {
            let mut got = Vec::new();
            while got.len() < 20 {
                let p = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
                    .await
                    .expect("audio within 10 s")
                    .expect("the track is open");
                got.push(p);
            }
            for (n, p) in got.iter().enumerate() {
                assert_eq!(p.sequence, 1000 + n as u16);
                assert_eq!(p.timestamp, n as u32 * 160);
                assert_eq!(p.payload_type, PCMU_PAYLOAD_TYPE);
                assert_eq!(&p.payload[..], &vec![mark ^ n as u8; 160][..]);
            }
        }
        // The data channel still works beside the audio.
        a.send(b"hangup").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), b"hangup");
        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_offer_with_separate_ice_transports_is_refused_with_the_reason() {
        let options = loopback(true);
        let mut a = Negotiation::new(&options).await.unwrap();
        let mut b = Negotiation::new(&options).await.unwrap();
        let offer = a.offer().await.unwrap();
        // What a peer that does not bundle sends: other ICE credentials on the second medium.
        let mut seen = 0;
        let unbundled: String = offer
            .split_inclusive('\n')
            .map(|line| {
                if line.starts_with("a=ice-ufrag:") {
                    seen += 1;
                    if seen == 2 {
                        return "a=ice-ufrag:someoneelse\r\n".to_owned();
                    }
                }
                line.to_owned()
            })
            .collect();
        assert_eq!(seen, 2, "{offer}");
        let err = b.answer(unbundled).await.err().unwrap().to_string();
        assert!(err.contains("max-bundle"), "{err}");
        a.close().await;
        b.close().await;
    }

    #[test]
    fn the_sent_offer_claims_the_dtls_client_role_and_nothing_else_changes() {
        let sdp = "v=0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                   a=setup:actpass\r\na=x-note:setup:actpass\r\na=mid:0\r\n";
        assert_eq!(
            offer_as_dtls_client(sdp),
            sdp.replace("\r\na=setup:actpass\r\n", "\r\na=setup:active\r\n")
        );
        let lf_only = "a=setup:actpass\na=mid:0\n";
        assert_eq!(offer_as_dtls_client(lf_only), "a=setup:active\na=mid:0\n");
        // An offer that already chose, or has no setup line, is sent as it is.
        for unchanged in ["a=setup:passive\r\n", "v=0\r\n", ""] {
            assert_eq!(offer_as_dtls_client(unchanged), unchanged);
        }
    }
}
