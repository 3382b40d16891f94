//! Audio for calls: G.711 µ-law (PCMU), the one codec every WebRTC stack speaks and which
//! needs no codec library, and where the samples come from and go to.
//!
//! A call carries 8 kHz mono audio in 20 ms frames (160 samples). Locally, samples are signed
//! 16-bit little-endian PCM: from the microphone (`arecord`), standard input, a raw file or a
//! WAV file of that format, or silence; to the speaker (`aplay`), standard output, a file
//! (WAV when its name ends in `.wav`, raw otherwise), or nowhere.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Samples a second.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame (one RTP packet).
pub const FRAME_SAMPLES: usize = 160;
/// Bytes of one frame of 16-bit PCM.
pub const FRAME_PCM_BYTES: usize = FRAME_SAMPLES * 2;
/// Most samples accepted in one received packet (200 ms); bigger packets are dropped.
pub const MAX_PACKET_SAMPLES: usize = 1600;
/// Frames read ahead of the sender from a file or standard input.
const READ_AHEAD_FRAMES: usize = 25;
/// Most RIFF chunks skipped before a WAV file's `data` chunk.
const MAX_WAV_CHUNKS: usize = 32;
/// Largest chunk skipped before a WAV file's `data` chunk.
const MAX_WAV_SKIP: u32 = 1 << 20;

/// What went wrong with audio input or output.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The WAV file is not 16-bit mono PCM at 8 kHz.
    #[error(
        "{path}: {why}; calls use 16-bit mono PCM at 8,000 Hz (for example \
         `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The helper program for the microphone or speaker quit at once.
    #[error("{program} could not open the sound device ({status}): {said}")]
    DeviceFailed {
        /// `arecord` or `aplay`.
        program: &'static str,
        /// How it exited.
        status: String,
        /// What it printed.
        said: String,
    },
    /// The helper program for the microphone or speaker is missing.
    #[error(
        "{what} needs `{program}` (Debian: apt install alsa-utils), or pass {flag} with a \
         file or \"-\""
    )]
    NoDevice {
        /// "recording from the microphone" or "playing on the speaker".
        what: &'static str,
        /// The program looked for.
        program: &'static str,
        /// The flag that avoids it.
        flag: &'static str,
    },
}

/// Encodes one sample as G.711 µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    let biased = magnitude.min(CLIP) + BIAS;
    // The biased magnitude's top bit is bit 7..=14: the segment (exponent) 0..=7.
    let exponent = (31 - (biased as u32).leading_zeros()) as i32 - 7;
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one G.711 µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let byte = !byte;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if byte & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }) as i16
}

/// Where the audio we send comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// The microphone, through `arecord`.
    Microphone,
    /// Raw PCM on standard input.
    Stdin,
    /// Silence (listen only).
    Silence,
    /// A WAV file (by its header) or raw PCM.
    File(PathBuf),
}

impl FromStr for AudioSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "mic" => Self::Microphone,
            "-" => Self::Stdin,
            "silence" => Self::Silence,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

/// Where the audio we receive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSink {
    /// The speaker, through `aplay`.
    Speaker,
    /// Raw PCM on standard output.
    Stdout,
    /// Nowhere.
    Discard,
    /// A file: WAV when its name ends in `.wav`, raw PCM otherwise.
    File(PathBuf),
}

impl FromStr for AudioSink {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "speaker" => Self::Speaker,
            "-" => Self::Stdout,
            "none" => Self::Discard,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AudioError + '_ {
    move |source| AudioError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a WAV header up to the start of its samples and checks their format; returns how many
/// bytes of samples follow (`None`: to the end of the file).
pub fn read_wav_header(reader: &mut impl Read, path: &Path) -> Result<Option<u32>, AudioError> {
    let format = |why: &str| AudioError::Format {
        path: path.display().to_string(),
        why: why.to_owned(),
    };
    let mut riff = [0u8; 12];
    reader
        .read_exact(&mut riff)
        .map_err(|_| format("not a WAV file (too short)"))?;
    if &riff[..4] != b"RIFF" || &riff[8..] != b"WAVE" {
        return Err(format("not a WAV file (no RIFF/WAVE header)"));
    }
    let mut seen_format = false;
    for _ in 0..MAX_WAV_CHUNKS {
        let mut head = [0u8; 8];
        reader
            .read_exact(&mut head)
            .map_err(|_| format("the file ends before its samples"))?;
        let size = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        match &head[..4] {
            b"fmt " => {
                if !(16..=64).contains(&size) {
                    return Err(format("a malformed fmt chunk"));
                }
                let mut fmt = vec![0u8; size as usize + (size as usize & 1)];
                reader
                    .read_exact(&mut fmt)
                    .map_err(|_| format("a truncated fmt chunk"))?;
                let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
                let rate = u32::from_le_bytes(fmt[4..8].try_into().expect("4 bytes"));
                let (tag, channels, bits) = (u16_at(0), u16_at(2), u16_at(14));
                if tag != 1 {
                    return Err(format(&format!("encoding {tag} is not plain PCM")));
                }
                if channels != 1 || rate != SAMPLE_RATE || bits != 16 {
                    return Err(format(&format!(
                        "it is {channels}-channel {bits}-bit PCM at {rate} Hz"
                    )));
                }
                seen_format = true;
            }
            b"data" if seen_format => {
                return Ok((size != u32::MAX && size != 0).then_some(size));
            }
            b"data" => return Err(format("samples before the fmt chunk")),
            _ if size <= MAX_WAV_SKIP => {
                let skip = u64::from(size) + u64::from(size & 1);
                let skipped = std::io::copy(&mut reader.take(skip), &mut std::io::sink())
                    .map_err(io_error(path))?;
                if skipped != skip {
                    return Err(format("the file ends before its samples"));
                }
            }
            _ => return Err(format("an oversized chunk before the samples")),
        }
    }
    Err(format("too many chunks before the samples"))
}

/// A WAV header for `data_bytes` of 16-bit mono PCM at 8 kHz.
pub fn wav_header(data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Frames of the audio to send, µ-law encoded, as a reader thread produces them.
pub struct Frames {
    /// The frames; the channel closes when the input ends.
    pub rx: mpsc::Receiver<Bytes>,
    /// Whether the source runs in real time (the microphone): then the sender drops frames
    /// that pile up instead of falling behind. A file is read as fast as it is sent.
    pub live: bool,
    child: Option<Child>,
}

impl Drop for Frames {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `program` can be found on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The arguments `arecord` and `aplay` get: raw 16-bit little-endian mono PCM at 8 kHz.
pub const DEVICE_ARGS: [&str; 9] = ["-q", "-t", "raw", "-f", "S16_LE", "-r", "8000", "-c", "1"];
/// How long a device program is watched for failing at once (no such device, busy).
const DEVICE_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// Starts `program` (`arecord` or `aplay`) on the default sound device. A program that quits
/// within [`DEVICE_GRACE`] failed to open the device: its message is the error. After that,
/// what it prints goes to our log as warnings.
fn spawn_device(
    program: &'static str,
    what: &'static str,
    flag: &'static str,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<Child, AudioError> {
    if !on_path(program) {
        return Err(AudioError::NoDevice {
            what,
            program,
            flag,
        });
    }
    let mut child = Command::new(program)
        .args(DEVICE_ARGS)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error(Path::new(program)))?;
    let mut stderr = child.stderr.take().expect("piped");
    let started = std::time::Instant::now();
    while started.elapsed() < DEVICE_GRACE {
        if let Ok(Some(status)) = child.try_wait() {
            if status.success() {
                // It ran and ended (a device with nothing to give): the stream just ends.
                break;
            }
            let mut said = String::new();
            let _ = stderr.read_to_string(&mut said);
            return Err(AudioError::DeviceFailed {
                program,
                status: status.to_string(),
                said: said.trim().to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            tracing::warn!(program, "{line}");
        }
    });
    Ok(child)
}

/// Starts reading `source` in frames on a thread.
pub fn open_source(source: &AudioSource) -> Result<Frames, AudioError> {
    let (tx, rx) = mpsc::channel(READ_AHEAD_FRAMES);
    let (reader, live, child): (Box<dyn Read + Send>, bool, Option<Child>) = match source {
        AudioSource::Silence => {
            std::thread::spawn(move || {
                let silence = Bytes::from(vec![ulaw_encode(0); FRAME_SAMPLES]);
                while tx.blocking_send(silence.clone()).is_ok() {}
            });
            return Ok(Frames {
                rx,
                live: false,
                child: None,
            });
        }
        AudioSource::Stdin => (Box::new(std::io::stdin()), false, None),
        AudioSource::File(path) => {
            let mut file = std::fs::File::open(path).map_err(io_error(path))?;
            let mut magic = [0u8; 4];
            let n = file.read(&mut magic).map_err(io_error(path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
            let reader: Box<dyn Read + Send> = if n == 4 && &magic == b"RIFF" {
                let mut file = std::io::BufReader::new(file);
                match read_wav_header(&mut file, path)? {
                    Some(len) => Box::new(file.take(u64::from(len))),
                    None => Box::new(file),
                }
            } else {
                Box::new(file)
            };
            (reader, false, None)
        }
        AudioSource::Microphone => {
            let mut child = spawn_device(
                "arecord",
                "recording from the microphone",
                "--input",
                Stdio::null(),
                Stdio::piped(),
            )?;
            let out = child.stdout.take().expect("piped");
            (Box::new(out), true, Some(child))
        }
    };
    std::thread::spawn(move || read_frames(reader, tx));
    Ok(Frames { rx, live, child })
}

/// Reads 16-bit PCM frame by frame, encodes each, and sends it; a last partial frame is
/// padded with silence.
fn read_frames(mut reader: Box<dyn Read + Send>, tx: mpsc::Sender<Bytes>) {
    let mut pcm = [0u8; FRAME_PCM_BYTES];
    loop {
        let mut filled = 0;
        while filled < pcm.len() {
            match reader.read(&mut pcm[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading audio failed");
                    return;
                }
            }
        }
        if filled < 2 {
            return;
        }
        pcm[filled..].fill(0);
        let frame: Vec<u8> = pcm
            .chunks_exact(2)
            .map(|s| ulaw_encode(i16::from_le_bytes([s[0], s[1]])))
            .collect();
        if tx.blocking_send(Bytes::from(frame)).is_err() || filled < pcm.len() {
            return;
        }
    }
}

/// The receiving end of a call's audio: decoded samples go to a writer thread.
pub struct Playback {
    tx: Option<std::sync::mpsc::SyncSender<Vec<i16>>>,
    thread: Option<std::thread::JoinHandle<Result<(), AudioError>>>,
}

impl Playback {
    /// Queues samples for output (dropped if the output has fallen a second behind).
    pub fn play(&self, samples: Vec<i16>) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(samples);
        }
    }

    /// Writes what is queued, completes the file (its WAV header) and closes the output.
    pub fn finish(mut self) -> Result<(), AudioError> {
        drop(self.tx.take());
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Ok(()),
        }
    }
}

/// Where a [`Playback`] writes.
enum Output {
    Raw(Box<dyn Write + Send>),
    Wav(std::fs::File, PathBuf, u32),
    Device(Child),
    Discard,
}

/// Opens `sink` and starts its writer thread.
pub fn open_sink(sink: &AudioSink) -> Result<Playback, AudioError> {
    let output = match sink {
        AudioSink::Discard => Output::Discard,
        AudioSink::Stdout => Output::Raw(Box::new(std::io::stdout())),
        AudioSink::File(path) => {
            // A recording of a call is as private as the messages: only its owner reads it.
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io_error(path))?
            };
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
            {
                file.write_all(&wav_header(0)).map_err(io_error(path))?;
                Output::Wav(file, path.clone(), 0)
            } else {
                Output::Raw(Box::new(std::io::BufWriter::new(file)))
            }
        }
        AudioSink::Speaker => Output::Device(spawn_device(
            "aplay",
            "playing on the speaker",
            "--output",
            Stdio::piped(),
            Stdio::null(),
        )?),
    };
    // 50 frames: a second of audio.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<i16>>(50);
    let thread = std::thread::spawn(move || write_samples(output, rx));
    Ok(Playback {
        tx: Some(tx),
        thread: Some(thread),
    })
}

/// How far ahead of real time received audio may run: jitter's worth.
const AHEAD_SLACK: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps what is written to real time. A peer sending faster than it talks cannot make a
/// recording grow at the speed of the disk, and a burst after a stall (or the silence made up
/// for a gap) cannot push the playback behind for the rest of the call: whatever would run
/// more than [`AHEAD_SLACK`] ahead is dropped (the later packets of a burst; within one packet,
/// its start, where made-up silence goes). Time that passed with nothing to write is not
/// credit; the clock starts with the first samples, not when the output opened.
#[derive(Debug, Default)]
struct RealTimeGate {
    /// When the audio written so far would have started, played at real time.
    anchor: Option<std::time::Instant>,
    written: u64,
}

impl RealTimeGate {
    /// The part of `samples` to write at `now` (their end: what is cut is the oldest).
    fn admit<'s>(&mut self, now: std::time::Instant, samples: &'s [i16]) -> &'s [i16] {
        let rate = f64::from(SAMPLE_RATE);
        let written_secs = self.written as f64 / rate;
        let anchor = *self.anchor.get_or_insert(now);
        let elapsed = now.saturating_duration_since(anchor).as_secs_f64();
        if elapsed > written_secs {
            // The output ran dry (a stall, a pause): start from here.
            self.anchor = Some(now - std::time::Duration::from_secs_f64(written_secs));
        }
        let elapsed = elapsed.min(written_secs);
        let room = ((elapsed + AHEAD_SLACK.as_secs_f64()) * rate) as u64;
        let room = room.saturating_sub(self.written);
        let take = samples
            .len()
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        if take < samples.len() {
            tracing::debug!(
                dropped = samples.len() - take,
                "received audio ahead of real time; dropped"
            );
        }
        self.written += take as u64;
        &samples[samples.len() - take..]
    }
}

fn write_samples(
    mut output: Output,
    rx: std::sync::mpsc::Receiver<Vec<i16>>,
) -> Result<(), AudioError> {
    let mut bytes = Vec::with_capacity(FRAME_PCM_BYTES);
    let mut gate = RealTimeGate::default();
    for samples in rx {
        let samples = gate.admit(std::time::Instant::now(), &samples);
        if samples.is_empty() {
            continue;
        }
        bytes.clear();
        bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        let written = match &mut output {
            Output::Discard => Ok(()),
            Output::Raw(w) => w.write_all(&bytes).and_then(|()| w.flush()),
            Output::Wav(file, _, len) => {
                *len = len.saturating_add(bytes.len() as u32);
                file.write_all(&bytes)
            }
            Output::Device(child) => child.stdin.as_mut().expect("piped").write_all(&bytes),
        };
        if let Err(e) = written {
            // A closed pipe (the player quit) ends playback, not the call.
            tracing::warn!(error = %e, "writing received audio failed; not playing the rest");
            break;
        }
    }
    match output {
        Output::Wav(mut file, path, len) => {
            let header = wav_header(len);
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(&header))
                .and_then(|()| file.flush())
                .map_err(io_error(&path))
        }
        Output::Device(mut child) => {
            drop(child.stdin.take());
            let _ = child.wait();
            Ok(())
        }
        Output::Raw(mut w) => {
            let _ = w.flush();
            Ok(())
        }
        Output::Discard => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_audio_keeps_to_real_time_and_a_burst_after_a_stall_does_not_delay_the_rest() {
        use std::time::{Duration, Instant};
        let frame = vec![1i16; FRAME_SAMPLES];
        let mut gate = RealTimeGate::default();
        let t0 = Instant::now() + Duration::from_secs(3600);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // In time: every frame is written, however long the output waited before (the clock
        // starts with the first samples).
        for n in 0..50u64 {
            assert_eq!(gate.admit(at(20 * n), &frame).len(), FRAME_SAMPLES);
        }
        // A peer sending faster than real time: half a second ahead, then nothing more.
        let mut ahead = 0;
        for _ in 0..100 {
            ahead += gate.admit(at(1000), &frame).len();
        }
        assert_eq!(ahead, 4000);
        // After a three-second stall, a burst of 150 frames: half a second of it is written,
        // the later frames are dropped; then frames in time are written again.
        let mut burst = 0;
        for _ in 0..150 {
            burst += gate.admit(at(5000), &frame).len();
        }
        assert_eq!(burst, 4000);
        assert!(gate.admit(at(5000 + 520), &frame).len() == FRAME_SAMPLES);
        // Silence made up for a long gap, with the packet after it: the end is kept.
        let mut long = vec![0i16; 50 * FRAME_SAMPLES];
        long.extend_from_slice(&frame);
        let kept = gate.admit(at(20_000), &long);
        assert_eq!(kept.len(), 4000);
        assert_eq!(kept[kept.len() - 1], 1, "the packet itself is kept");
    }

    #[test]
    fn every_ulaw_code_but_negative_zero_survives_decoding_and_encoding() {
        for code in 0..=255u8 {
            let again = ulaw_encode(ulaw_decode(code));
            if code == 0x7F {
                // −0 decodes to 0, which encodes as +0.
                assert_eq!(again, 0xFF);
            } else {
                assert_eq!(again, code, "code {code:#04x}");
            }
        }
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
    }

    #[test]
    fn ulaw_keeps_samples_within_its_step_size() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let back = i32::from(ulaw_decode(ulaw_encode(sample)));
            let sample = i32::from(sample).clamp(-32635, 32635);
            // The step doubles with each segment: at most 1/16 of the magnitude, plus rounding.
            let allowed = (sample.abs() / 16).max(8) + 132;
            assert!(
                (back - sample).abs() <= allowed,
                "{sample} came back as {back}"
            );
        }
        assert!(ulaw_decode(ulaw_encode(i16::MAX)) > 30_000);
        assert!(ulaw_decode(ulaw_encode(i16::MIN)) < -30_000);
    }

    #[test]
    fn our_wav_header_reads_back_and_wrong_formats_say_what_they_are() {
        let path = Path::new("x.wav");
        let mut ok = wav_header(320).to_vec();
        ok.extend([0u8; 320]);
        assert_eq!(read_wav_header(&mut &ok[..], path).unwrap(), Some(320));
        // A chunk before the samples (LIST, say) is skipped.
        let mut listed = ok[..36].to_vec();
        listed.extend(b"LIST\x03\x00\x00\x00abc\x00");
        listed.extend(&ok[36..]);
        assert_eq!(read_wav_header(&mut &listed[..], path).unwrap(), Some(320));

        let mut stereo = ok.clone();
        stereo[22] = 2;
        let err = read_wav_header(&mut &stereo[..], path).unwrap_err();
        assert!(
            err.to_string().contains("2-channel 16-bit PCM at 8000 Hz"),
            "{err}"
        );
        let mut cd = ok.clone();
        cd[24..28].copy_from_slice(&44_100u32.to_le_bytes());
        let err = read_wav_header(&mut &cd[..], path).unwrap_err();
        assert!(err.to_string().contains("44100 Hz"), "{err}");
        assert!(err.to_string().contains("sox"), "{err}");
        let mut float = ok.clone();
        float[20] = 3;
        assert!(
            read_wav_header(&mut &float[..], path)
                .unwrap_err()
                .to_string()
                .contains("not plain PCM")
        );
        // Hostile or broken files: refused with a reason, never a panic.
        let mut huge = ok[..36].to_vec();
        huge.extend(b"junk\xff\xff\xff\x7f");
        for bad in [
            &b""[..],
            b"RIFF",
            b"RIFX\x00\x00\x00\x00WAVE",
            &ok[..30],
            &ok[..40],
            &huge,
        ] {
            assert!(read_wav_header(&mut &bad[..], path).is_err(), "{bad:?}");
        }
        let mut no_fmt = ok[..12].to_vec();
        no_fmt.extend(&ok[36..]);
        assert!(
            read_wav_header(&mut &no_fmt[..], path)
                .unwrap_err()
                .to_string()
                .contains("before the fmt chunk")
        );
        let mut bad_fmt = ok.clone();
        bad_fmt[16..20].copy_from_slice(&4u32.to_le_bytes());
        assert!(read_wav_header(&mut &bad_fmt[..], path).is_err());
    }

    #[test]
    fn sources_and_sinks_are_named_on_the_command_line() {
        assert_eq!("mic".parse(), Ok(AudioSource::Microphone));
        assert_eq!("-".parse(), Ok(AudioSource::Stdin));
        assert_eq!("silence".parse(), Ok(AudioSource::Silence));
        assert_eq!(
            "a.wav".parse(),
            Ok(AudioSource::File(PathBuf::from("a.wav")))
        );
        assert_eq!("speaker".parse(), Ok(AudioSink::Speaker));
        assert_eq!("-".parse(), Ok(AudioSink::Stdout));
        assert_eq!("none".parse(), Ok(AudioSink::Discard));
        assert_eq!("b.raw".parse(), Ok(AudioSink::File(PathBuf::from("b.raw"))));
    }

    #[tokio::test]
    async fn a_wav_file_round_trips_through_frames_and_playback() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.wav");
        // 2.5 frames of a ramp: the last frame is padded with silence.
        let samples: Vec<i16> = (0..400).map(|i| (i * 50 - 10_000) as i16).collect();
        let mut bytes = wav_header(800).to_vec();
        bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        // Bytes after the data chunk (a trailing chunk) are not audio.
        bytes.extend(b"LIST\x04\x00\x00\x00abcd");
        std::fs::write(&input, bytes).unwrap();
        let mut frames = open_source(&AudioSource::File(input)).unwrap();
        assert!(!frames.live);
        let mut got = Vec::new();
        while let Some(f) = frames.rx.recv().await {
            assert_eq!(f.len(), FRAME_SAMPLES);
            got.push(f);
        }
        assert_eq!(got.len(), 3);
        assert!(got[2][80..].iter().all(|&b| b == ulaw_encode(0)));

        let output = dir.path().join("out.wav");
        let playback = open_sink(&AudioSink::File(output.clone())).unwrap();
        for f in &got {
            playback.play(f.iter().map(|&b| ulaw_decode(b)).collect());
        }
        playback.finish().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&output).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "a recording is private");
        let mut file = std::fs::File::open(&output).unwrap();
        assert_eq!(
            read_wav_header(&mut file, &output).unwrap(),
            Some(3 * FRAME_PCM_BYTES as u32)
        );
        let mut pcm = Vec::new();
        file.read_to_end(&mut pcm).unwrap();
        let back: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]))
            .collect();
        for (a, b) in samples.iter().zip(&back) {
            assert!(
                (i32::from(*a) - i32::from(*b)).abs() <= 400,
                "{a} against {b}"
            );
        }
    }

    #[test]
    fn a_missing_input_file_names_the_file() {
        let err = open_source(&AudioSource::File("/nonexistent/in.wav".into()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/in.wav"), "{err}");
    }
    use std::sync::{Arc, Mutex};

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn received_audio_is_written_no_faster_than_real_time() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<i16>>(50);
        let writer = {
            let out = out.clone();
            std::thread::spawn(move || write_samples(Output::Raw(Box::new(Shared(out))), rx))
        };
        // Ten seconds of audio, sent at once.
        for _ in 0..500 {
            tx.send(vec![0; FRAME_SAMPLES]).unwrap();
        }
        drop(tx);
        writer.join().unwrap().unwrap();
        let seconds = out.lock().unwrap().len() as f64 / 2.0 / f64::from(SAMPLE_RATE);
        // Half a second of slack, and what real time allowed while it ran.
        assert!(
            (0.45..2.5).contains(&seconds),
            "{seconds} s written at once"
        );
    }
}
