//! What a call adds to a direct link, side by side on loopback, in one process:
//!
//! - set-up: offer, answer and connect of a peer connection with audio (a call) against one
//!   with only the data channel (a chat);
//! - one-way latency of a 20 ms audio frame (160 PCMU bytes as one SRTP packet, from
//!   `AudioOut::send` to the peer's receiving channel) against a 160-byte data-channel
//!   message over the same connection (SCTP over DTLS), both sent every 20 ms as a call
//!   sends its frames.
//!
//!     cargo bench --bench call                  (JASPER_BENCH_ROUNDS=5, JASPER_BENCH_FRAMES=250)
//!
//! Rounds alternate the two sides of each comparison; figures are medians.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{env_num, median};
use jasper::client::rtc::{Link, Negotiation, RtcOptions};

fn options(audio: bool) -> RtcOptions {
    RtcOptions {
        stun: None,
        bind: "127.0.0.1:0".parse().unwrap(),
        gather_timeout: Duration::from_secs(5),
        audio,
    }
}

/// A connected pair and how long offer, answer and connect took.
async fn pair(audio: bool) -> (Link, Link, f64) {
    let start = Instant::now();
    let mut a = Negotiation::new(&options(audio)).await.unwrap();
    let mut b = Negotiation::new(&options(audio)).await.unwrap();
    let offer = a.offer().await.unwrap();
    let answer = b.answer(offer).await.unwrap();
    a.accept_answer(answer).await.unwrap();
    let (a, b) = tokio::join!(
        a.connect(Duration::from_secs(10)),
        b.connect(Duration::from_secs(10))
    );
    let took = start.elapsed().as_secs_f64() * 1000.0;
    (a.unwrap(), b.unwrap(), took)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 160 bytes of µ-law silence that carry `n` in their first two bytes.
fn numbered_frame(n: u16) -> Vec<u8> {
    let mut payload = vec![0xFFu8; 160];
    payload[..2].copy_from_slice(&n.to_be_bytes());
    payload
}

/// Sends `frames` audio frames every 20 ms from `a` to `b`; latencies in ms. Each frame
/// carries its number, so a lost or reordered one is not mistaken for another.
async fn audio_latencies(a: &mut Link, b: &mut Link, frames: u16) -> Vec<f64> {
    let (out, _a_in) = a.take_audio().unwrap().split();
    let (_b_out, mut incoming) = b.take_audio().unwrap().split();
    let mut sent_at = Vec::with_capacity(usize::from(frames));
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..frames {
        tick.tick().await;
        let payload = numbered_frame(n);
        sent_at.push(Instant::now());
        out.send(n, u32::from(n) * 160, n == 0, Bytes::from(payload))
            .await
            .unwrap();
        while let Ok(p) = incoming.try_recv() {
            let k = u16::from_be_bytes([p.payload[0], p.payload[1]]);
            latencies.push(sent_at[usize::from(k)].elapsed().as_secs_f64() * 1000.0);
        }
        // Wait for this frame (a frame normally arrives well inside its 20 ms).
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(15), incoming.recv()).await
        {
            let k = u16::from_be_bytes([p.payload[0], p.payload[1]]);
            latencies.push(sent_at[usize::from(k)].elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies
}

/// The same over the data channel.
async fn channel_latencies(a: &mut Link, b: &mut Link, frames: u16) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..frames {
        tick.tick().await;
        let payload = numbered_frame(n);
        let sent = Instant::now();
        a.send(&payload).await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(15), b.recv()).await {
            assert_eq!(m[..2], n.to_be_bytes(), "in order");
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies
}

fn main() {
    let rounds = env_num("JASPER_BENCH_ROUNDS", 5);
    let frames = env_num("JASPER_BENCH_FRAMES", 250) as u16;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("## a call against a chat's link: {rounds} rounds, {frames} frames each");
        let (mut call_setup, mut chat_setup) = (Vec::new(), Vec::new());
        let (mut audio_p50, mut audio_p99, mut chan_p50, mut chan_p99) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut audio_got, mut chan_got) = (0usize, 0usize);
        for round in 0..rounds {
            // Alternate which side goes first.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for audio in order {
                let (mut a, mut b, took) = pair(audio).await;
                let mut l = if audio {
                    call_setup.push(took);
                    audio_latencies(&mut a, &mut b, frames).await
                } else {
                    chat_setup.push(took);
                    channel_latencies(&mut a, &mut b, frames).await
                };
                l.sort_by(|x, y| x.partial_cmp(y).unwrap());
                let (p50, p99) = (percentile(&l, 0.5), percentile(&l, 0.99));
                println!(
                    "round {round}, {}: set-up {took:.1} ms, {} of {frames} arrived, p50 {p50:.3} ms, p99 {p99:.3} ms",
                    if audio { "audio frames" } else { "data-channel messages" },
                    l.len()
                );
                if audio {
                    audio_got += l.len();
                    audio_p50.push(p50);
                    audio_p99.push(p99);
                } else {
                    chan_got += l.len();
                    chan_p50.push(p50);
                    chan_p99.push(p99);
                }
                a.close().await;
                b.close().await;
            }
        }
        let total = rounds as usize * usize::from(frames);
        let (cs, ds) = (median(call_setup), median(chat_setup));
        println!("median set-up: call (audio + data channel) {cs:.1} ms, chat (data channel) {ds:.1} ms, ratio {:.2}", cs / ds);
        let (ap50, cp50) = (median(audio_p50), median(chan_p50));
        println!(
            "median one-way latency: audio frame p50 {ap50:.3} ms (p99 {:.3}), data-channel message p50 {cp50:.3} ms (p99 {:.3}), ratio {:.2}",
            median(audio_p99),
            median(chan_p99),
            ap50 / cp50
        );
        println!("arrived: audio {audio_got} of {total}, data channel {chan_got} of {total}");
    });
}
