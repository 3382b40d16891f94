//! `jasper call`: voice calls between real clients. They meet through a real `jasper stun`
//! (rendezvous over TLS, STUN over UDP) and send PCMU audio over real WebRTC on loopback.
//! Each side plays a tone from a WAV file and records what it hears into another, and the
//! test checks which tone each recording holds.

mod common;

use std::path::Path;
use std::time::Duration;

use common::home::{Home, alice_and_bob_with};
use common::interactive::{Interactive, aiortc_peer, transparent_config};
use common::run_jasper;
use common::stun::StunServer;

/// 16-bit mono PCM at 8 kHz in a WAV file.
fn wav(samples: &[i16]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend(b"RIFF");
    out.extend((data + 36).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes()); // PCM
    out.extend(1u16.to_le_bytes()); // mono
    out.extend(8000u32.to_le_bytes());
    out.extend(16000u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data.to_le_bytes());
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// `secs` of a sine at `hz`, at 8 kHz.
fn tone(hz: f64, secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|i| (12_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// The samples of one of our recordings (a WAV file with a 44-byte header).
fn recording(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 44, "{}: no WAV header", path.display());
    assert_eq!(&bytes[..4], b"RIFF");
    let data = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert_eq!(data, bytes.len() - 44, "the header counts every sample");
    bytes[44..]
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
        .collect()
}

/// The power of `samples` at `hz` (Goertzel), per sample.
fn power_at(samples: &[i16], hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// Alice and bob as contacts of each other, meeting through `stun`.
fn pair(stun: &StunServer) -> (Home, Home) {
    alice_and_bob_with(&[], &transparent_config(stun, true))
}

/// `jasper call contact --json --wait 30s --input input --output output` in `home`, with
/// `RUST_LOG` set to `log` (empty: unset).
fn start_call(home: &Home, contact: &str, input: &Path, output: &str, log: &str) -> Interactive {
    let args = [
        "call",
        contact,
        "--json",
        "--wait",
        "30s",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
    ];
    Interactive::start_with_log(home, &args, log)
}

/// Alice (with `alice_extra` flags) and bob in a call of silence, both connected: bob starts
/// first, then alice.
fn silent_call(alice: &Home, bob: &Home, alice_extra: &[&str]) -> (Interactive, Interactive) {
    let silent = ["--input", "silence", "--output", "none", "--json"];
    let b = Interactive::start(bob, &[&["call", "alice"][..], &silent].concat());
    let a = Interactive::start(
        alice,
        &[&["call", "bob"][..], &silent, alice_extra].concat(),
    );
    assert_eq!(a.next_json(Duration::from_secs(30))["event"], "connected");
    assert_eq!(b.next_json(Duration::from_secs(5))["event"], "connected");
    (a, b)
}

#[test]
fn a_call_carries_each_sides_voice_to_the_other() {
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    // Alice says 440 Hz for 3 s, bob 660 Hz for longer: alice's input ends first, so she hangs
    // up and bob hears that she did.
    let alice_says = alice.path().join("alice-says.wav");
    let bob_says = bob.path().join("bob-says.wav");
    std::fs::write(&alice_says, wav(&tone(440.0, 3.0))).unwrap();
    std::fs::write(&bob_says, wav(&tone(660.0, 20.0))).unwrap();
    let alice_hears = alice.path().join("alice-hears.wav");
    let bob_hears = bob.path().join("bob-hears.wav");
    let b = start_call(&bob, "alice", &bob_says, bob_hears.to_str().unwrap(), "");
    std::thread::sleep(Duration::from_millis(300));
    let a = start_call(
        &alice,
        "bob",
        &alice_says,
        alice_hears.to_str().unwrap(),
        "",
    );
    for (side, contact) in [(&a, "bob"), (&b, "alice")] {
        let connected = side.next_json(Duration::from_secs(30));
        assert_eq!(connected["event"], "connected", "{connected}");
        assert_eq!(connected["contact"], contact);
        side.wait_stderr("In the call", Duration::from_secs(5));
    }
    let alice_end = a.next_json(Duration::from_secs(20));
    let bob_end = b.next_json(Duration::from_secs(20));
    let (code, err) = a.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the audio input ended"), "{err}");
    let (code, bob_err) = b.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{bob_err}");
    assert!(bob_err.contains("they hung up"), "{bob_err}");

    assert_eq!(alice_end["event"], "ended");
    assert_eq!(alice_end["ended"], "input-ended", "{alice_end}");
    assert_eq!(bob_end["ended"], "peer-hung-up", "{bob_end}");
    // 3 s of input is 150 frames of 20 ms, all sent.
    assert_eq!(alice_end["sent_frames"], 150, "{alice_end}");
    let ms = alice_end["duration_ms"].as_u64().unwrap();
    assert!((2_900..10_000).contains(&ms), "{alice_end}");
    // On loopback (nearly) everything arrives.
    let bob_got = bob_end["received_frames"].as_u64().unwrap();
    assert!(bob_got >= 140, "{bob_end}");
    let alice_got = alice_end["received_frames"].as_u64().unwrap();
    assert!(alice_got >= 130, "{alice_end}");
    assert!(
        alice_end["lost_frames"].as_u64().unwrap() <= 5,
        "{alice_end}"
    );

    // Each recording holds the other side's tone, not its own, and about as much as was said.
    let heard_by_bob = recording(&bob_hears);
    assert!(
        heard_by_bob.len() as u64 >= bob_got * 160,
        "gaps are filled"
    );
    let (p440, p660) = (
        power_at(&heard_by_bob, 440.0),
        power_at(&heard_by_bob, 660.0),
    );
    assert!(
        p440 > 100.0 * p660,
        "bob hears 440 Hz: {p440} against {p660}"
    );
    let heard_by_alice = recording(&alice_hears);
    let (p440, p660) = (
        power_at(&heard_by_alice, 440.0),
        power_at(&heard_by_alice, 660.0),
    );
    assert!(
        p660 > 100.0 * p440,
        "alice hears 660 Hz: {p660} against {p440}"
    );
    // The tone's loudness survives µ-law: power of a 12,000 amplitude sine.
    let expected = 12_000.0f64.powi(2) * heard_by_bob.len() as f64 / 4.0;
    let p = power_at(&heard_by_bob, 440.0);
    assert!(
        p > 0.5 * expected && p < 1.5 * expected,
        "{p} against {expected}"
    );

    // The STUN owner's log at the default level names neither key.
    let log = stun.log();
    assert!(!log.contains(&common::key_b64("alice-4096")[..40]), "{log}");
}

#[test]
fn a_call_with_a_duration_hangs_up_by_itself_and_the_listener_is_told() {
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let (a, b) = silent_call(&alice, &bob, &["--duration", "2s"]);
    let end = a.next_json(Duration::from_secs(20));
    assert_eq!(end["ended"], "duration", "{end}");
    let ms = end["duration_ms"].as_u64().unwrap();
    assert!((1_900..6_000).contains(&ms), "{end}");
    assert!(end["sent_frames"].as_u64().unwrap() >= 80, "{end}");
    let end = b.next_json(Duration::from_secs(20));
    assert_eq!(end["ended"], "peer-hung-up", "{end}");
    // Silence is still audio: the listener got frames.
    assert!(end["received_frames"].as_u64().unwrap() >= 50, "{end}");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
}

#[test]
fn a_call_hung_up_with_a_signal_ends_cleanly_on_both_sides() {
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let (a, b) = silent_call(&alice, &bob, &[]);
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM (what Ctrl-C's SIGINT does too): bob hangs up.
    b.signal("TERM");
    let end = b.next_json(Duration::from_secs(10));
    assert_eq!(end["ended"], "hung-up", "{end}");
    let end = a.next_json(Duration::from_secs(20));
    assert_eq!(end["ended"], "peer-hung-up", "{end}");
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
}

#[test]
fn bad_audio_and_bad_settings_are_refused_before_any_waiting() {
    let stun = StunServer::start("");
    let (alice, _bob) = pair(&stun);
    let dir = alice.path();
    let run = |args: &[&str]| {
        let mut all = vec!["call", "bob", "--wait", "1s"];
        all.extend_from_slice(args);
        run_jasper(&all, dir)
    };
    // A missing file names the file.
    let (code, _, err) = run(&["--input", "/nonexistent/voice.wav"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/voice.wav"), "{err}");
    // A WAV of another format says what it is and how to convert it.
    let mut stereo = wav(&tone(440.0, 0.1));
    stereo[22] = 2;
    std::fs::write(dir.join("stereo.wav"), &stereo).unwrap();
    let (code, _, err) = run(&["--input", dir.join("stereo.wav").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2-channel") && err.contains("sox"), "{err}");
    // Garbage that claims to be a WAV file.
    std::fs::write(
        dir.join("junk.wav"),
        b"RIFF\x00\x00\x00\x00WAVEjunk\xff\xff\xff\xff",
    )
    .unwrap();
    let (code, _, err) = run(&["--input", dir.join("junk.wav").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("junk.wav"), "{err}");
    // An output that cannot be written.
    let (code, _, err) = run(&["--input", "silence", "--output", "/nonexistent/out.wav"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/out.wav"), "{err}");
    // Two things on standard input.
    let (code, _, err) = run(&["--input", "-", "--passphrase-stdin"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pick one"), "{err}");
    // Two things on standard output.
    let (code, _, err) = run(&["--input", "silence", "--output", "-", "--json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pick one"), "{err}");
    // No microphone program: says what to install.
    let out = common::jasper_in(dir)
        .args(["call", "bob", "--wait", "1s", "--output", "none"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("arecord") && err.contains("alsa-utils"),
        "{err}"
    );
    // Bad flag values are clap's errors.
    let (code, _, err) = run(&["--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    // An unknown contact.
    let (code, _, err) = run_jasper(&["call", "nobody", "--input", "silence"], dir);
    assert_eq!(code, 2, "{err}");
    // No rendezvous configured.
    let lone = Home::new("alice", &[]);
    lone.add("bob", "bob-4096");
    let (code, _, err) = run_jasper(
        &["call", "bob", "--input", "silence", "--output", "none"],
        lone.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[client] rendezvous"), "{err}");
    // Nobody answers: a network failure (3), with who and how long.
    let (code, _, err) = run(&["--input", "silence", "--output", "none"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("bob did not take the call: nobody answered within 1s"),
        "{err}"
    );
}

#[test]
fn a_call_does_not_connect_to_a_chat_and_both_sides_are_told_why() {
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let chat = |contact: &'static str| {
        vec![
            "chat",
            contact,
            "--transparent",
            "--wait",
            "4s",
            "--fallback",
            "fail",
        ]
    };
    let call = |contact: &'static str| {
        vec![
            "call", contact, "--input", "silence", "--output", "none", "--wait", "4s",
        ]
    };
    // bob's fingerprint is the lower one, so bob offers. Bob chatting, alice calling: alice
    // refuses the offer and tells him why at once (exit 2); she waits on for him (exit 3).
    // Then the other way round.
    for (bob_args, alice_args, bob_told, alice_told) in [
        (
            chat("alice"),
            call("bob"),
            "the contact is calling: answer with `jasper call`",
            "the contact wants to chat",
        ),
        (
            call("alice"),
            chat("bob"),
            "the contact wants to chat: answer with `jasper chat --transparent`",
            "the contact is calling",
        ),
    ] {
        let a = Interactive::start(&alice, &alice_args);
        a.wait_stderr("Waiting up to 4s", Duration::from_secs(20));
        let started = std::time::Instant::now();
        let (code, _, err) = run_jasper(&bob_args, bob.path());
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(bob_told), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4), "told at once");
        let (code, err) = a.finish(Duration::from_secs(20));
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(alice_told), "{err}");
    }
}

/// Runs `jasper call` as `ours` against tests/interop/rtc_peer.py (aiortc) as `theirs`: jasper
/// says 440 Hz from a file, aiortc 660 Hz for 3 s and then hangs up. Each side's recording is
/// checked for the other's tone and its loudness; aiortc decodes with ffmpeg's µ-law, not ours.
fn call_with_aiortc(ours: &str, theirs: &str) {
    let stun = StunServer::start("");
    let home = Home::with_config(ours, None, &[], &transparent_config(&stun, true));
    home.add(theirs, &format!("{theirs}-4096"));
    let says = home.path().join("says.wav");
    std::fs::write(&says, wav(&tone(440.0, 20.0))).unwrap();
    let hears = home.path().join("hears.wav");
    let peer = aiortc_peer(&stun, theirs, ours, &["call", "3"]);
    let call = start_call(
        &home,
        theirs,
        &says,
        hears.to_str().unwrap(),
        "jasper::client::call=debug",
    );
    let connected = call.next_json(Duration::from_secs(40));
    assert_eq!(connected["event"], "connected", "{connected}");
    let end = call.next_json(Duration::from_secs(30));
    let peer = peer.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&peer.stdout),
        String::from_utf8_lossy(&peer.stderr),
    );
    assert!(peer.status.success(), "aiortc peer failed:\n{out}\n{err}");
    let (code, jasper_err) = call.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{jasper_err}");
    assert_eq!(end["ended"], "peer-hung-up", "{end}\n{jasper_err}");
    // The peer's look-alikes and garbage on the data channel were ignored, one by one.
    assert!(
        jasper_err
            .matches("ignored a data-channel message during a call")
            .count()
            >= 4,
        "{jasper_err}"
    );

    // What jasper heard: aiortc's 3 s of 660 Hz.
    let got = end["received_frames"].as_u64().unwrap();
    assert!(got >= 120, "{end}");
    let heard = recording(&hears);
    let (p440, p660) = (power_at(&heard, 440.0), power_at(&heard, 660.0));
    assert!(
        p660 > 100.0 * p440,
        "jasper hears 660 Hz: {p660} against {p440}"
    );

    // What aiortc heard: ours, 440 Hz, as loud as it was sent (RMS of a 12,000 sine: 8,485).
    let report: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|o| o["event"] == "heard")
        .unwrap_or_else(|| panic!("the peer reported nothing it heard:\n{out}\n{err}"));
    assert!(report["frames"].as_u64().unwrap() >= 100, "{report}");
    let (p440, p660) = (
        report["p440"].as_f64().unwrap(),
        report["p660"].as_f64().unwrap(),
    );
    assert!(p440 > 100.0 * p660, "aiortc hears 440 Hz: {report}");
    let rms = report["rms"].as_f64().unwrap();
    assert!((6_000.0..11_000.0).contains(&rms), "{report}");
}

#[test]
fn aiortc_takes_a_call_that_jasper_offers() {
    // bob's fingerprint is the lower one, so jasper (as bob) offers and aiortc answers.
    call_with_aiortc("bob", "alice");
}

#[test]
fn jasper_takes_a_call_that_aiortc_offers() {
    call_with_aiortc("alice", "bob");
}

#[test]
fn raw_audio_goes_in_on_stdin_and_comes_out_on_stdout() {
    use std::io::{Read as _, Write as _};
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let bob_says = bob.path().join("bob-says.wav");
    std::fs::write(&bob_says, wav(&tone(660.0, 20.0))).unwrap();
    let b = start_call(&bob, "alice", &bob_says, "none", "");
    let dir = alice.path();
    let mut a = common::jasper_in(dir)
        .args([
            "call", "bob", "--input", "-", "--output", "-", "--wait", "30s",
        ])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 2 s of 440 Hz as raw 16-bit PCM, then the end of input: alice hangs up.
    let raw: Vec<u8> = tone(440.0, 2.0)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let mut stdin = a.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&raw));
    let mut heard = Vec::new();
    a.stdout.take().unwrap().read_to_end(&mut heard).unwrap();
    writer.join().unwrap().unwrap();
    let out = a.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the audio input ended"), "{err}");
    // Standard output held only audio: bob's tone, as raw PCM.
    assert_eq!(heard.len() % 2, 0);
    let samples: Vec<i16> = heard
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
        .collect();
    assert!(samples.len() >= 80 * 160, "{} samples", samples.len());
    let (p440, p660) = (power_at(&samples, 440.0), power_at(&samples, 660.0));
    assert!(
        p660 > 100.0 * p440,
        "alice hears 660 Hz: {p660} against {p440}"
    );
    // Bob heard 2 s of alice.
    assert_eq!(b.next_json(Duration::from_secs(5))["event"], "connected");
    let end = b.next_json(Duration::from_secs(20));
    assert_eq!(end["ended"], "peer-hung-up", "{end}");
    assert!(end["received_frames"].as_u64().unwrap() >= 90, "{end}");
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
}

/// A directory with stand-ins for `arecord` and `aplay`: they record their arguments; the
/// microphone plays `mic.raw` in real time (20 ms frames), the speaker writes what it gets to
/// `speaker.raw`. With `broken`, the microphone fails as arecord does without a sound card.
fn fake_sound_devices(dir: &Path, broken: bool) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let arecord = if broken {
        "#!/bin/sh\necho 'arecord: main:831: audio open error: No such file or directory' >&2\nexit 1\n"
            .to_owned()
    } else {
        format!(
            "#!/bin/sh\necho \"$@\" > '{d}/arecord.args'\nexec python3 -c '\n\
             import sys, time\ndata = open(\"{d}/mic.raw\", \"rb\").read()\nstart = time.monotonic()\n\
             for i in range(0, len(data), 320):\n    \
             time.sleep(max(0, start + i / 16000 - time.monotonic()))\n    \
             sys.stdout.buffer.write(data[i:i + 320]); sys.stdout.flush()\n'\n",
            d = dir.display()
        )
    };
    let aplay = format!(
        "#!/bin/sh\necho \"$@\" > '{d}/aplay.args'\nexec cat > '{d}/speaker.raw'\n",
        d = dir.display()
    );
    for (name, text) in [("arecord", arecord), ("aplay", aplay)] {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn the_microphone_and_speaker_are_arecord_and_aplay_on_raw_8khz_pcm() {
    use std::io::Read as _;
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let dir = alice.path();
    let path = fake_sound_devices(dir, false);
    // 4 s of 440 Hz, captured from when alice starts: what comes before the call connects is
    // thrown away, the rest is sent as it is captured.
    let raw: Vec<u8> = tone(440.0, 4.0)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    std::fs::write(dir.join("mic.raw"), raw).unwrap();
    let bob_says = bob.path().join("bob-says.wav");
    std::fs::write(&bob_says, wav(&tone(660.0, 20.0))).unwrap();
    let bob_hears = bob.path().join("bob-hears.wav");
    let b = start_call(&bob, "alice", &bob_says, bob_hears.to_str().unwrap(), "");
    // Alice with the defaults: --input mic --output speaker.
    let mut a = common::jasper_in(dir)
        .args(["call", "bob", "--json", "--wait", "30s"])
        .env_remove("RUST_LOG")
        .env("PATH", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_timeout(&mut a, Duration::from_secs(40));
    let mut out = String::new();
    a.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    a.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{out}\n{err}");
    let end: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(end["ended"], "input-ended", "{end}");
    // The call connects within a second, and in real time nothing piles up after that.
    assert!(end["sent_frames"].as_u64().unwrap() >= 150, "{end}");
    assert!(end["sent_frames"].as_u64().unwrap() <= 200, "{end}");
    assert!(end["skipped_input_frames"].as_u64().unwrap() <= 5, "{end}");
    for program in ["arecord", "aplay"] {
        let args = std::fs::read_to_string(dir.join(format!("{program}.args"))).unwrap();
        assert_eq!(args.trim(), "-q -t raw -f S16_LE -r 8000 -c 1", "{program}");
    }
    // The speaker got bob's tone.
    let speaker: Vec<i16> = std::fs::read(dir.join("speaker.raw"))
        .unwrap()
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
        .collect();
    assert!(speaker.len() >= 80 * 160, "{} samples", speaker.len());
    assert!(power_at(&speaker, 660.0) > 100.0 * power_at(&speaker, 440.0));
    // Bob heard alice's microphone.
    assert_eq!(b.next_json(Duration::from_secs(5))["event"], "connected");
    let end = b.next_json(Duration::from_secs(20));
    assert_eq!(end["ended"], "peer-hung-up", "{end}");
    assert_eq!(b.finish(Duration::from_secs(10)).0, 0);
    let heard = recording(&bob_hears);
    assert!(power_at(&heard, 440.0) > 100.0 * power_at(&heard, 660.0));
}

#[test]
fn a_microphone_that_cannot_be_opened_is_reported_before_any_waiting() {
    let stun = StunServer::start("");
    let (alice, _bob) = pair(&stun);
    let dir = alice.path();
    let path = fake_sound_devices(dir, true);
    let out = common::jasper_in(dir)
        .args(["call", "bob", "--wait", "30s", "--output", "none"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("arecord could not open the sound device"),
        "{err}"
    );
    assert!(err.contains("audio open error"), "{err}");
    assert!(!err.contains("Waiting"), "before any waiting: {err}");
}

#[test]
fn a_peer_that_vanishes_mid_call_ends_the_call_as_lost_within_seconds() {
    let stun = StunServer::start("");
    let (alice, bob) = pair(&stun);
    let (a, b) = silent_call(&alice, &bob, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::time::Instant::now();
    b.signal("KILL");
    let end = a.next_json(Duration::from_secs(60));
    let took = killed.elapsed();
    assert_eq!(end["ended"], "connection-lost", "{end}");
    // Five seconds without the peer's audio, not webrtc's ~30 s to call the link failed.
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(took >= Duration::from_secs(4), "{took:?}");
    assert_eq!(a.finish(Duration::from_secs(10)).0, 0);
}

#[test]
fn a_call_rings_through_the_relays_and_the_ringing_side_is_answered() {
    let stun = StunServer::start("");
    let relay = common::Relay::start_at(common::free_port(), "rate_limit_per_minute = 0");
    let (alice, bob) = alice_and_bob_with(&[relay.addr], &transparent_config(&stun, true));
    let silent = ["--input", "silence", "--output", "none", "--json"];
    let a = Interactive::start(
        &alice,
        &[
            &["call", "bob", "--wait", "30s", "--duration", "2s"][..],
            &silent,
        ]
        .concat(),
    );
    assert_eq!(a.next_json(Duration::from_secs(30))["event"], "ringing");
    // Bob's receive (or watch, or chat) says who calls and how to answer.
    let mut shown = String::new();
    let rang = common::eventually(Duration::from_secs(20), || {
        shown.push_str(&bob.ok(&["receive"]));
        shown.contains("alice is calling you: answer with `jasper call alice` before")
    });
    assert!(rang, "{shown}");
    // He answers without ringing back; both connect, and the call ends after 2 s.
    let b = Interactive::start(
        &bob,
        &[&["call", "alice", "--no-ring"][..], &silent].concat(),
    );
    assert_eq!(b.next_json(Duration::from_secs(30))["event"], "connected");
    assert_eq!(a.next_json(Duration::from_secs(5))["event"], "connected");
    let (code, err) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    let (code, err) = b.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Ringing"), "{err}");
    // The ring stays in the history as what other clients show.
    let history = bob.history("alice");
    assert!(
        history
            .iter()
            .any(|m| m["content"].as_str().unwrap().contains("Calling you"))
    );

    // A ring nobody answers in time is shown as missed.
    let (code, _, err) = run_jasper(
        &[
            "call", "bob", "--wait", "1s", "--input", "silence", "--output", "none",
        ],
        alice.path(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Ringing bob"), "{err}");
    let mut shown = String::new();
    let missed = common::eventually(Duration::from_secs(20), || {
        shown.push_str(&bob.ok(&["receive"]));
        shown.contains("alice called you (missed)")
    });
    assert!(missed, "{shown}");
    let lines = bob.history("alice");
    assert_eq!(lines.len(), 2, "{lines:?}");
}
