//! `jasper serve`: the enabled services (relay and STUN) in one process, one readiness signal,
//! one graceful shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run_jasper, wait_timeout};
use jasper::proto::stun::{binding_request, parse_binding_response};

#[test]
fn serve_runs_the_relay_and_stun_signals_readiness_once_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jasper.toml");
    std::fs::write(
        &config,
        format!(
            "[relay]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[stun]\nudp_listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.path().join("relay").display(),
            dir.path().join("stun").display()
        ),
    )
    .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(common::jasper_bin())
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut stun = None;
    let mut log = Vec::new();
    while addr.is_none() || stun.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve starts both services:\n{}", log.join("\n")));
        if let Some((_, a)) = line.split_once("relay listening address=") {
            addr = Some(a.trim().to_owned());
        }
        if let Some((udp, _)) = common::stun::listening(&line) {
            stun = Some(udp);
        }
        log.push(line);
    }
    // One readiness message for the whole process.
    let mut buf = [0u8; 64];
    let n = notify
        .recv(&mut buf)
        .expect("READY=1 sent to NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"READY=1");
    let status: serde_json::Value = common::agent()
        .get(&format!("http://{}/status", addr.unwrap()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert!(status["version"].is_string());
    let socket = common::stun::udp_client();
    let tid = [0x33; 12];
    let answer = common::stun::exchange(&socket, stun.unwrap(), &binding_request(&tid))
        .expect("the STUN service answers");
    assert_eq!(
        parse_binding_response(&answer, &tid),
        Some(socket.local_addr().unwrap())
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = wait_timeout(&mut child, Duration::from_secs(20)).expect("serve stops on SIGTERM");
    assert!(code.success(), "{code:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(
        log.contains("configuration loaded")
            && log.contains("all services ready")
            && log.contains("relay stopped")
            && log.contains("stun stopped"),
        "{log}"
    );
}

#[test]
fn serve_with_nothing_enabled_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jasper.toml");
    std::fs::write(
        &config,
        "[relay]\nenabled = false\n[stun]\nenabled = false\n",
    )
    .unwrap();
    let (code, _, err) = run_jasper(&["--config", config.to_str().unwrap(), "serve"], dir.path());
    assert_eq!(code, 2, "a configuration error: {err}");
    assert!(err.contains("nothing to serve"), "{err}");
}
