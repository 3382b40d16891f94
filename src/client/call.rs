//! A voice call over an open direct link: our frames go out as RTP every 20 ms, the peer's
//! packets are put back in order (late ones dropped, gaps filled with silence) and played,
//! and either side ends it with a `hangup` message on the data channel.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::audio::{Frames, MAX_PACKET_SAMPLES, Playback, ulaw_decode};
use super::rtc::{AudioOut, AudioPacket, Link, PCMU_PAYLOAD_TYPE};

/// The data-channel message that ends a call.
pub const HANGUP: &[u8] = b"{\"op\":\"hangup\"}";
/// Most frames a live source may be ahead of the sender before the oldest are dropped (keeps
/// the delay of a microphone whose clock runs fast bounded: 100 ms).
const MAX_LIVE_BACKLOG: usize = 5;
/// Once the peer's audio flows, this long without a packet means the peer is gone (every
/// jasper call sends a frame every 20 ms, silence included); webrtc itself would take ~30 s to
/// call the connection failed.
pub const AUDIO_SILENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// A jump in sequence numbers up to this many packets is loss, filled with silence; a bigger
/// one is the peer starting over, played from there.
const MAX_GAP_FILLED: u16 = 50;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallEnd {
    /// We hung up (Ctrl-C, or a signal).
    HungUp,
    /// The peer hung up.
    PeerHungUp,
    /// Our audio input ended.
    InputEnded,
    /// The `--duration` passed.
    Duration,
    /// The connection failed or closed without a hangup.
    ConnectionLost,
}

impl CallEnd {
    /// In words, for the summary line.
    pub fn describe(self) -> &'static str {
        match self {
            Self::HungUp => "you hung up",
            Self::PeerHungUp => "they hung up",
            Self::InputEnded => "the audio input ended",
            Self::Duration => "its time was up",
            Self::ConnectionLost => "the connection was lost",
        }
    }
}

/// What a call did.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// Why it ended.
    pub ended: CallEnd,
    /// From connection to hangup.
    pub duration_ms: u64,
    /// Frames (20 ms packets) we sent.
    pub sent_frames: u64,
    /// Frames played from the peer's packets.
    pub received_frames: u64,
    /// Frames missing from the peer's sequence, played as silence.
    pub lost_frames: u64,
    /// Packets dropped: late, duplicated, of another codec or oversized.
    pub dropped_packets: u64,
    /// Frames of our input dropped because a live source ran ahead.
    pub skipped_input_frames: u64,
}

/// How a call is going, once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Since the connection.
    pub elapsed: Duration,
    /// Frames sent so far.
    pub sent_frames: u64,
    /// Frames received so far.
    pub received_frames: u64,
}

/// Packets in a row from behind what was played that make the playout follow the peer's new
/// numbering (a real late packet arrives among the others; ten in a row, 200 ms, do not).
const RESYNC_AFTER_BEHIND: u16 = 10;

/// Puts the peer's packets back into one stream of samples.
#[derive(Debug, Default)]
pub struct Playout {
    next: Option<u16>,
    /// Packets in a row that came from behind what was played.
    behind_in_a_row: u16,
    /// Frames played from packets.
    pub received: u64,
    /// Frames filled with silence for packets that never came.
    pub lost: u64,
    /// Packets dropped.
    pub dropped: u64,
}

impl Playout {
    /// What to play for `packet`: silence for the packets missing before it, then its samples;
    /// nothing if it is late, a duplicate, not PCMU or oversized.
    pub fn accept(&mut self, packet: &AudioPacket) -> Vec<i16> {
        let samples = packet.payload.len();
        if packet.payload_type != PCMU_PAYLOAD_TYPE || samples == 0 || samples > MAX_PACKET_SAMPLES
        {
            self.dropped += 1;
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(next) = self.next {
            let ahead = packet.sequence.wrapping_sub(next);
            if ahead >= 0x8000 {
                // Behind what was played: late or repeated, unless it goes on: then the peer
                // started its numbers over lower down, and its stream is followed from here.
                self.behind_in_a_row += 1;
                if self.behind_in_a_row < RESYNC_AFTER_BEHIND {
                    self.dropped += 1;
                    return out;
                }
                self.next = None;
            }
        }
        self.behind_in_a_row = 0;
        if let Some(next) = self.next {
            let ahead = packet.sequence.wrapping_sub(next);
            if ahead > 0 && ahead <= MAX_GAP_FILLED {
                // A frame of silence per packet lost: the sender's packet sizes are not ours
                // to multiply (50 gaps of its largest packet were 10 s of silence a packet).
                out.resize(usize::from(ahead) * crate::client::audio::FRAME_SAMPLES, 0);
                self.lost += u64::from(ahead);
            }
        }
        self.next = Some(packet.sequence.wrapping_add(1));
        self.received += 1;
        out.extend(packet.payload.iter().map(|&b| ulaw_decode(b)));
        out
    }
}

/// Where a call's audio comes from and goes to.
pub struct CallAudio {
    /// Our frames.
    pub input: Frames,
    /// The peer's samples.
    pub output: Playback,
}

/// Runs the call over `link` until one side hangs up, the input ends, `limit` passes or the
/// connection is lost; `hangup` is our side's hang-up (Ctrl-C). The link is closed after.
pub async fn run(
    mut link: Link,
    audio: CallAudio,
    limit: Option<Duration>,
    hangup: impl std::future::Future<Output = ()>,
    mut on_progress: impl FnMut(Progress),
) -> CallReport {
    let started = Instant::now();
    let CallAudio { mut input, output } = audio;
    let Some(path) = link.take_audio() else {
        unreachable!("a call's link is made with audio");
    };
    let (out, mut incoming) = path.split();
    if input.live {
        discard_captured(&mut input).await;
    }
    let mut sender = RtpClock::new();
    let mut playout = Playout::default();
    let mut skipped = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline, hangup);
    let mut incoming_open = true;
    // Armed by the first packet from the peer, pushed back by every one after it.
    let mut last_audio: Option<tokio::time::Instant> = None;
    let report = |ended, sender: &RtpClock, playout: &Playout, skipped| CallReport {
        ended,
        duration_ms: started.elapsed().as_millis() as u64,
        sent_frames: sender.sent,
        received_frames: playout.received,
        lost_frames: playout.lost,
        dropped_packets: playout.dropped,
        skipped_input_frames: skipped,
    };
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                if input.live {
                    while input.rx.len() > MAX_LIVE_BACKLOG {
                        let _ = input.rx.try_recv();
                        skipped += 1;
                    }
                }
                match input.rx.try_recv() {
                    Ok(frame) => {
                        if let Err(e) = sender.send(&out, frame).await {
                            tracing::debug!(error = %e, "sending audio failed");
                            break CallEnd::ConnectionLost;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => break CallEnd::InputEnded,
                }
            }
            packet = incoming.recv(), if incoming_open => match packet {
                Some(packet) => {
                    last_audio = Some(tokio::time::Instant::now());
                    let samples = playout.accept(&packet);
                    if !samples.is_empty() {
                        output.play(samples);
                    }
                }
                None => incoming_open = false,
            },
            message = link.recv() => match message {
                Some(m) if is_hangup(&m) => break CallEnd::PeerHungUp,
                Some(_) => tracing::debug!("ignored a data-channel message during a call"),
                None => break CallEnd::ConnectionLost,
            },
            () = silence_since(last_audio) => break CallEnd::ConnectionLost,
            () = &mut hangup => break CallEnd::HungUp,
            () = &mut until_deadline => break CallEnd::Duration,
            _ = progress.tick() => on_progress(Progress {
                elapsed: started.elapsed(),
                sent_frames: sender.sent,
                received_frames: playout.received,
            }),
        }
    };
    let we_end = !matches!(ended, CallEnd::PeerHungUp | CallEnd::ConnectionLost);
    if we_end && link.send(HANGUP).await.is_ok() {
        link.flush(Duration::from_secs(2)).await;
    }
    let result = report(ended, &sender, &playout, skipped);
    link.close().await;
    drop(input);
    if let Err(e) = tokio::task::spawn_blocking(move || output.finish())
        .await
        .unwrap_or(Ok(()))
    {
        tracing::warn!(error = %e, "finishing the received audio failed");
    }
    result
}

/// Completes [`AUDIO_SILENCE_TIMEOUT`] after the last packet, if one came; never before.
async fn silence_since(last: Option<tokio::time::Instant>) {
    match last {
        Some(at) => tokio::time::sleep_until(at + AUDIO_SILENCE_TIMEOUT).await,
        None => std::future::pending().await,
    }
}

/// Throws away what a live source (the microphone) captured before the call connected, so
/// that the call starts with what is said now, not with the wait.
async fn discard_captured(input: &mut Frames) {
    for _ in 0..50 {
        let mut any = false;
        while input.rx.try_recv().is_ok() {
            any = true;
        }
        if !any {
            return;
        }
        // The reader refills the channel from what the pipe still holds.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether a data-channel message is a hang-up: a JSON object whose `op` is `"hangup"`.
pub fn is_hangup(message: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(message)
        .is_ok_and(|v| v.get("op").and_then(serde_json::Value::as_str) == Some("hangup"))
}

/// Numbers our RTP packets: sequence +1 and timestamp + the frame's samples (160) each.
struct RtpClock {
    sequence: u16,
    timestamp: u32,
    sent: u64,
}

impl RtpClock {
    fn new() -> Self {
        let start = getrandom::u32().unwrap_or(0);
        Self {
            sequence: start as u16,
            timestamp: start,
            sent: 0,
        }
    }

    async fn send(&mut self, out: &AudioOut, frame: Bytes) -> Result<(), super::rtc::RtcError> {
        let samples = frame.len() as u32;
        out.send(self.sequence, self.timestamp, self.sent == 0, frame)
            .await?;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.sent += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::audio::FRAME_SAMPLES;

    fn packet(sequence: u16, byte: u8) -> AudioPacket {
        AudioPacket {
            sequence,
            timestamp: u32::from(sequence) * 160,
            payload_type: PCMU_PAYLOAD_TYPE,
            payload: Bytes::from(vec![byte; FRAME_SAMPLES]),
        }
    }

    #[test]
    fn a_hangup_is_a_json_object_with_op_hangup_and_nothing_else_is() {
        assert!(is_hangup(HANGUP));
        assert!(is_hangup(br#"{ "op" : "hangup", "reason": "bye" }"#));
        for other in [
            &br#"{"op":"hangupX"}"#[..],
            br#"{"op":["hangup"]}"#,
            br#"["hangup"]"#,
            b"hangup",
            b"\x00\xff",
            b"",
        ] {
            assert!(!is_hangup(other), "{other:?}");
        }
    }

    #[test]
    fn packets_in_order_play_as_they_come() {
        let mut p = Playout::default();
        for seq in [65_534, 65_535, 0, 1] {
            assert_eq!(p.accept(&packet(seq, 0x80)).len(), FRAME_SAMPLES);
        }
        assert_eq!((p.received, p.lost, p.dropped), (4, 0, 0));
    }

    #[test]
    fn a_gap_is_played_as_silence_and_counted_lost() {
        let mut p = Playout::default();
        p.accept(&packet(10, 0x80));
        let out = p.accept(&packet(13, 0x80));
        assert_eq!(out.len(), 3 * FRAME_SAMPLES);
        assert!(out[..2 * FRAME_SAMPLES].iter().all(|&s| s == 0));
        assert_eq!(out[2 * FRAME_SAMPLES], ulaw_decode(0x80));
        assert_eq!((p.received, p.lost), (2, 2));
        // Silence is a frame per lost packet, however large the packet after the gap.
        let mut big = packet(20, 0x80);
        big.payload = Bytes::from(vec![0x80; MAX_PACKET_SAMPLES]);
        assert_eq!(p.accept(&big).len(), 6 * FRAME_SAMPLES + MAX_PACKET_SAMPLES);
    }

    #[test]
    fn late_repeated_foreign_and_oversized_packets_are_dropped() {
        let mut p = Playout::default();
        p.accept(&packet(100, 0x80));
        p.accept(&packet(101, 0x80));
        assert!(p.accept(&packet(101, 0x80)).is_empty());
        assert!(p.accept(&packet(99, 0x80)).is_empty());
        let mut foreign = packet(102, 0x80);
        foreign.payload_type = 8;
        assert!(p.accept(&foreign).is_empty());
        let mut huge = packet(102, 0x80);
        huge.payload = Bytes::from(vec![0; MAX_PACKET_SAMPLES + 1]);
        assert!(p.accept(&huge).is_empty());
        let mut empty = packet(102, 0x80);
        empty.payload = Bytes::new();
        assert!(p.accept(&empty).is_empty());
        assert_eq!((p.received, p.lost, p.dropped), (2, 0, 5));
        // The stream goes on where it was.
        assert_eq!(p.accept(&packet(102, 0x80)).len(), FRAME_SAMPLES);
    }

    #[test]
    fn a_big_jump_is_a_new_start_not_a_second_of_silence() {
        let mut p = Playout::default();
        p.accept(&packet(1, 0x80));
        assert_eq!(p.accept(&packet(5_000, 0x80)).len(), FRAME_SAMPLES);
        assert_eq!(p.lost, 0);
        assert_eq!(p.accept(&packet(5_001, 0x80)).len(), FRAME_SAMPLES);
    }

    #[test]
    fn a_peer_starting_its_numbers_over_lower_down_is_followed_after_a_few_packets() {
        let mut p = Playout::default();
        p.accept(&packet(40_000, 0x80));
        p.accept(&packet(40_001, 0x80));
        // One late packet among the others is dropped, and the count starts again.
        assert!(p.accept(&packet(39_990, 0x80)).is_empty());
        assert_eq!(p.accept(&packet(40_002, 0x80)).len(), FRAME_SAMPLES);
        // A new start at 20,000 (behind 40,002): the first few are taken for late ones...
        let played: Vec<usize> = (20_000..20_000 + RESYNC_AFTER_BEHIND + 5)
            .map(|seq| p.accept(&packet(seq, 0x80)).len())
            .collect();
        let silent = usize::from(RESYNC_AFTER_BEHIND) - 1;
        assert!(played[..silent].iter().all(|&n| n == 0), "{played:?}");
        // ...then the stream is followed from there, with no silence made up.
        assert!(
            played[silent..].iter().all(|&n| n == FRAME_SAMPLES),
            "{played:?}"
        );
        assert_eq!(p.lost, 0);
    }
}
