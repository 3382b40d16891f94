//! `jasper stun` from the outside: Binding over UDP checked by coturn's client, over TLS by
//! Python's ssl, junk that gets no answer and does not stop the service, the rate limit, and
//! the certificate that is generated once and kept.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::stun::{StunServer, TlsClient, exchange, udp_client};
use jasper::proto::stun::{binding_request, parse_binding_response};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn bare_request(tid: &[u8; 12]) -> Vec<u8> {
    let mut m = binding_request(tid)[..20].to_vec();
    m[2..4].fill(0);
    m
}

/// Asserts the service answers a good Binding request over UDP with the right address.
fn assert_answers(server: &StunServer) {
    let socket = udp_client();
    let tid = [0x42; 12];
    let answer = exchange(&socket, server.udp, &binding_request(&tid))
        .unwrap_or_else(|| panic!("no answer to a good request\n{}", server.log()));
    assert_eq!(
        parse_binding_response(&answer, &tid),
        Some(socket.local_addr().unwrap())
    );
}

#[test]
fn coturn_stunclient_gets_the_mapped_address_over_udp() {
    let server = StunServer::start("");
    let out = Command::new("turnutils_stunclient")
        .args(["-p", &server.udp.port().to_string(), "127.0.0.1"])
        .output()
        .expect(
            "turnutils_stunclient (Debian package coturn) is missing: run `bash tests/run.sh`, which installs it",
        );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{}", server.log());
    // "0: : IPv4. UDP reflexive addr: 127.0.0.1:34842"
    let mapped: SocketAddr = text
        .lines()
        .find_map(|l| l.split_once("UDP reflexive addr: ").map(|(_, a)| a.trim()))
        .unwrap_or_else(|| panic!("no reflexive address in {text:?}"))
        .parse()
        .expect("an address");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1", "{text}");
    assert_ne!(mapped.port(), 0);
    assert_ne!(
        mapped.port(),
        server.udp.port(),
        "the client's port, not ours"
    );
}

#[test]
fn our_own_requests_get_the_source_address_back() {
    let server = StunServer::start("");
    assert_answers(&server);
    let socket = udp_client();
    let answer = exchange(&socket, server.udp, &bare_request(&[1; 12])).expect("answer");
    assert_eq!(
        parse_binding_response(&answer, &[1; 12]),
        Some(socket.local_addr().unwrap())
    );
}

/// A Binding request with attributes (type, value), no FINGERPRINT.
fn request_with(tid: &[u8; 12], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = bare_request(tid);
    for (t, v) in attrs {
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&(v.len() as u16).to_be_bytes());
        m.extend_from_slice(v);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
    }
    let len = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

#[test]
fn unknown_comprehension_required_attributes_get_420_listing_them() {
    let server = StunServer::start("");
    let socket = udp_client();
    let tid = [7; 12];
    let req = request_with(&tid, &[(0x0fff, b"why"), (0xbeef, b"ok"), (0x7abc, b"")]);
    let answer = exchange(&socket, server.udp, &req).expect("an error answer");
    // Binding error response, same transaction.
    assert_eq!(&answer[..2], &[0x01, 0x11]);
    assert_eq!(&answer[8..20], &tid);
    // ERROR-CODE first: class 4, number 20.
    assert_eq!(&answer[20..22], &[0x00, 0x09]);
    assert_eq!((answer[26], answer[27]), (4, 20));
    let error_len = usize::from(u16::from_be_bytes([answer[22], answer[23]]));
    let at = 24 + error_len.div_ceil(4) * 4;
    // UNKNOWN-ATTRIBUTES lists exactly the comprehension-required ones.
    assert_eq!(&answer[at..at + 4], &[0x00, 0x0a, 0x00, 0x04]);
    assert_eq!(&answer[at + 4..at + 8], &[0x0f, 0xff, 0x7a, 0xbc]);

    // Unknown comprehension-optional attributes alone are ignored.
    let req = request_with(&tid, &[(0xbeef, b"ok")]);
    let answer = exchange(&socket, server.udp, &req).expect("a success answer");
    assert_eq!(
        parse_binding_response(&answer, &tid),
        Some(socket.local_addr().unwrap())
    );
}

#[test]
fn junk_datagrams_get_no_answer_and_do_not_stop_the_service() {
    let server = StunServer::start("");
    let socket = udp_client();
    socket
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let good = binding_request(&[5; 12]);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        good[..19].to_vec(),
        good[..27].to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 1400],
        vec![0; 9000],
    ];
    let mut wrong_cookie = good.to_vec();
    wrong_cookie[4] ^= 0x80;
    junk.push(wrong_cookie);
    let mut huge_length = good.to_vec();
    huge_length[2..4].copy_from_slice(&0xfffc_u16.to_be_bytes());
    junk.push(huge_length);
    let mut bad_fingerprint = good.to_vec();
    bad_fingerprint[27] ^= 1;
    junk.push(bad_fingerprint);
    let mut response = good.to_vec();
    response[..2].copy_from_slice(&[0x01, 0x01]);
    junk.push(response);
    let mut indication = good.to_vec();
    indication[..2].copy_from_slice(&[0x00, 0x11]);
    junk.push(indication);
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for len in [1usize, 20, 28, 100, 548, 1500] {
        junk.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        );
    }
    for bytes in &junk {
        if let Some(answer) = exchange(&socket, server.udp, bytes) {
            panic!(
                "junk {:02x?} got an answer {answer:02x?}",
                &bytes[..bytes.len().min(32)]
            );
        }
    }
    assert_answers(&server);
}

#[test]
fn the_per_source_rate_limit_drops_the_excess() {
    let limit = 20;
    let server = StunServer::start(&format!("rate_limit_per_second = {limit}"));
    let socket = udp_client();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let sent = 500;
    let started = Instant::now();
    for i in 0..sent {
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&(i as u32).to_be_bytes());
        socket.send_to(&binding_request(&tid), server.udp).unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 512];
    while socket.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of one second's worth, then the rate for the time it took.
    let allowed = limit + (limit as f64 * elapsed).ceil() as usize;
    assert!(
        answers <= allowed,
        "{answers} answers to {sent} requests in {elapsed:.2}s; at most {allowed} allowed"
    );
    assert!(
        answers >= limit,
        "only {answers} answers: the burst should pass"
    );
    // Another source is not affected.
    assert_answers(&server);
}

/// Runs the Python ssl peer against `addr`; returns its JSON.
fn python_tls_peer(addr: SocketAddr) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/stun_tls_peer.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .expect("python3 is missing: run `bash tests/run.sh`, which installs it");
    assert!(
        out.status.success(),
        "python peer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python peer prints JSON")
}

#[test]
fn pythons_ssl_gets_a_binding_answer_over_tls_and_the_printed_fingerprint_matches() {
    let server = StunServer::start("");
    let answer = python_tls_peer(server.tls);
    assert_eq!(answer["mapped"], answer["local"], "{answer}");
    assert!(answer["mapped"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        answer["fingerprint"].as_str().unwrap(),
        server.printed_fingerprint,
        "{answer}"
    );
}

#[test]
fn the_certificate_is_generated_once_kept_private_and_reused() {
    let server = StunServer::start("");
    let first = server.printed_fingerprint.clone();
    let key = server.data_dir().join("key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem mode {mode:o}");
    }
    let cert_pem = std::fs::read_to_string(server.data_dir().join("cert.pem")).unwrap();
    assert!(cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(
        server
            .log()
            .contains("generated a self-signed TLS certificate")
    );
    let server = server.restart();
    assert_eq!(server.printed_fingerprint, first);
    assert!(
        !server.log().contains("generated a self-signed"),
        "{}",
        server.log()
    );
    let client = TlsClient::connect(server.tls, &first);
    assert_eq!(hex(&Sha256::digest(&client.certificate)), first);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_configured_certificate_and_key_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["stun.example".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("my.crt"), dir.path().join("my.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let expected = hex(&Sha256::digest(made.cert.der()));
    let extra = format!(
        "tls_certificate = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let server = StunServer::start_in(dir, &extra);
    assert_eq!(server.printed_fingerprint, expected);
    assert!(!server.data_dir().join("key.pem").exists());
    let answer = python_tls_peer(server.tls);
    assert_eq!(answer["fingerprint"].as_str().unwrap(), expected);
}

#[test]
fn binding_over_our_tls_reports_the_tcp_peer_address() {
    let server = StunServer::start("");
    let mut client = TlsClient::connect(server.tls, &server.printed_fingerprint);
    let tid = [9; 12];
    client.write(&binding_request(&tid));
    let answer = client.recv_stun().expect("an answer");
    assert_eq!(
        parse_binding_response(&answer, &tid),
        Some(client.local_addr())
    );
    // And again on the same stream, without attributes.
    client.write(&bare_request(&[8; 12]));
    let answer = client.recv_stun().expect("a second answer");
    assert_eq!(
        parse_binding_response(&answer, &[8; 12]),
        Some(client.local_addr())
    );
}

#[test]
fn junk_on_the_tls_listener_is_refused_and_the_service_goes_on() {
    let server = StunServer::start("");
    let fp = server.printed_fingerprint.clone();
    // Plain TCP without TLS: a STUN request in clear gets nothing back.
    {
        let mut tcp = TcpStream::connect(server.tls).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(&binding_request(&[1; 12])).unwrap();
        let mut buf = [0u8; 64];
        let got = std::io::Read::read(&mut tcp, &mut buf);
        assert!(
            !matches!(got, Ok(n) if n >= 20 && buf[..2] == [0x01, 0x01]),
            "a plain TCP request was answered"
        );
    }
    // A first byte that is neither STUN nor `{`: closed.
    let mut c = TlsClient::connect(server.tls, &fp);
    c.write(b"GARBAGE\n");
    assert!(c.closed(), "garbage did not close the stream");
    // A STUN header with a wrong cookie: closed.
    let mut c = TlsClient::connect(server.tls, &fp);
    let mut bad = binding_request(&[2; 12]);
    bad[4] = 0;
    c.write(&bad);
    assert!(c.closed());
    // Not JSON: an error, then closed.
    let mut c = TlsClient::connect(server.tls, &fp);
    c.write(b"{this is not json}\n");
    let e = c.recv().expect("an error frame");
    assert_eq!(e["op"], "error", "{e}");
    assert!(c.closed());
    // An oversized line: an error, then closed.
    let mut c = TlsClient::connect(server.tls, &fp);
    let mut line = b"{\"op\":\"hello\",\"key\":\"".to_vec();
    line.extend(std::iter::repeat_n(
        b'A',
        jasper::proto::rendezvous::MAX_FRAME_BYTES,
    ));
    line.extend_from_slice(b"\"}\n");
    c.write(&line);
    let e = c.recv().expect("an error frame");
    assert!(e["error"].as_str().unwrap().contains("longer"), "{e}");
    assert!(c.closed());
    // A rendezvous frame before authentication: an error, then closed.
    let mut c = TlsClient::connect(server.tls, &fp);
    c.send(&serde_json::json!({"op": "ping"}));
    let e = c.recv().expect("an error frame");
    assert!(e["error"].as_str().unwrap().contains("authenticate"), "{e}");
    assert!(c.closed());
    // After all that, STUN over TLS and UDP still work.
    let mut c = TlsClient::connect(server.tls, &fp);
    c.write(&binding_request(&[3; 12]));
    let answer = c.recv_stun().expect("answer");
    assert_eq!(
        parse_binding_response(&answer, &[3; 12]),
        Some(c.local_addr())
    );
    assert_answers(&server);
}

#[test]
fn one_address_gets_a_bounded_share_of_connections_and_a_client_that_stops_reading_is_dropped() {
    let server = StunServer::start("max_connections_per_ip = 2\nhandshake_timeout = \"60s\"");
    let fp = server.printed_fingerprint.clone();
    let mut first = TlsClient::connect(server.tls, &fp);
    let _second = TlsClient::connect(server.tls, &fp);
    // A third from the same address is closed at once.
    let third = TlsClient::try_connect(server.tls, &fp);
    assert!(third.is_err(), "a third connection was served");
    // The first asks and asks and never reads the answers: once its queue is full the server
    // closes it rather than wait (which held the connection, and its slot, for good).
    let burst: Vec<u8> = (0..4096u32)
        .flat_map(|n| {
            let mut tid = [0u8; 12];
            tid[..4].copy_from_slice(&n.to_be_bytes());
            bare_request(&tid)
        })
        .collect();
    let started = Instant::now();
    let outcome = loop {
        if let Err(e) = first.try_write(&burst, Duration::from_secs(30)) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server kept taking requests it could not answer"
        );
    };
    assert_ne!(
        outcome.kind(),
        std::io::ErrorKind::WouldBlock,
        "the server stopped reading without closing: {outcome}"
    );
    assert_ne!(outcome.kind(), std::io::ErrorKind::TimedOut, "{outcome}");
    drop(first);
    // Its slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        match TlsClient::try_connect(server.tls, &fp) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("the slot of the dropped connection was not freed: {e}"),
        }
    };
    again.write(&binding_request(&[7; 12]));
    assert!(again.recv_stun().is_some());
}

#[test]
fn an_unauthenticated_connection_is_closed_after_the_handshake_timeout() {
    let server = StunServer::start("handshake_timeout = \"1s\"");
    let mut c = TlsClient::connect(server.tls, &server.printed_fingerprint);
    c.set_timeout(Duration::from_secs(5));
    let started = Instant::now();
    assert!(c.closed());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn the_handshake_timeout_counts_from_the_tcp_accept_tls_included() {
    // A client slow to start TLS does not get the whole timeout again after it.
    let server = StunServer::start("handshake_timeout = \"3s\"");
    let connected = Instant::now();
    let mut c = TlsClient::try_connect_after(
        server.tls,
        &server.printed_fingerprint,
        Duration::from_millis(2500),
    )
    .expect("the handshake finishes within the timeout");
    c.set_timeout(Duration::from_secs(10));
    assert!(c.closed());
    let open_for = connected.elapsed();
    assert!(
        open_for < Duration::from_millis(4500),
        "closed {open_for:?} after the TCP accept"
    );
}

#[test]
fn a_taken_port_is_a_clear_error_and_leaves_nothing_behind() {
    let running = StunServer::start("");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("stun");
    for (what, flag, taken) in [
        ("udp", "--udp-listen", running.udp),
        ("tls", "--tls-listen", running.tls),
    ] {
        let other_flag = if what == "udp" {
            "--tls-listen"
        } else {
            "--udp-listen"
        };
        let taken = taken.to_string();
        let (code, _, err) = common::run_jasper(
            &[
                "stun",
                flag,
                &taken,
                other_flag,
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_ne!(code, 0, "{err}");
        assert!(
            err.contains(&format!("cannot listen on {taken} ({what})")) && err.contains(flag),
            "{err}"
        );
        assert_eq!(
            err.matches("Address already in use").count(),
            1,
            "the cause is said once: {err}"
        );
        assert!(
            !data.exists(),
            "no certificate was generated for a start that failed"
        );
    }
    // The running service did not notice.
    assert_answers(&running);
}

#[test]
fn sigterm_stops_the_service_cleanly() {
    let mut server = StunServer::start("");
    assert_answers(&server);
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(server.log().contains("stun stopped"), "{}", server.log());
}
