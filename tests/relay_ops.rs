//! Operating the relay: command line, configuration, start-up errors and what the log says.

mod common;

use std::net::TcpListener;

use common::{Relay, key_b64, packet_for, run_jasper};
use serde_json::json;

/// Runs `jasper relay` on any free loopback port with `data` as its data directory, from `cwd`;
/// for start-ups that are meant to fail.
fn start_relay_on(data: &std::path::Path, cwd: &std::path::Path) -> (i32, String, String) {
    let data = data.to_str().unwrap();
    run_jasper(
        &["relay", "--listen", "127.0.0.1:0", "--data-dir", data],
        cwd,
    )
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run_jasper(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("jasper {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run_jasper(&["--help"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("relay") && out.contains("--config"), "{out}");
    let (code, out, _) = run_jasper(&["relay", "--help"], dir.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("--listen") && out.contains("--data-dir"),
        "{out}"
    );
    let (code, _, err) = run_jasper(&["no-such-command"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn runs_with_no_configuration_file() {
    let relay = Relay::start_without_config();
    assert_eq!(relay.status()["messages"], 0);
    relay.send_ok(&packet_for(&key_b64("alice-4096"), 1, 100));
    assert!(relay.dir.path().join("flag-data/relay.redb").is_file());
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let (code, _, err) = run_jasper(
        &[
            "relay",
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains(&format!("cannot listen on {listen}")), "{err}");
    assert!(err.contains("--listen"), "the error says what to do: {err}");
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "the cause is said once: {err}"
    );
}

#[test]
fn a_data_dir_in_use_is_a_clear_error_and_the_relay_using_it_keeps_serving() {
    let relay = Relay::start("");
    let packet = packet_for(&key_b64("alice-4096"), 1, 100);
    relay.send_ok(&packet);
    let data = relay.dir.path().join("data");
    let (code, _, err) = start_relay_on(&data, relay.dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "the database at {} is in use by another jasper",
            data.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("stop the other one, or give this one another --data-dir"),
        "the error says what to do: {err}"
    );
    assert!(
        !err.contains("writable"),
        "no advice that does not fit: {err}"
    );
    // The first relay neither noticed nor lost anything.
    assert_eq!(relay.status()["messages"], 1);
    let (status, body) = relay.post("/fetch", &json!({"recipient": key_b64("alice-4096")}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let data = file.join("data");
    let (code, _, err) = start_relay_on(&data, dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
}

#[test]
fn a_damaged_database_or_log_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // The index is not a redb database at all.
    let data = dir.path().join("index");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("relay.redb"), vec![0x5a; 64 * 1024]).unwrap();
    // A segment of the packet log that is not one.
    let log = dir.path().join("log");
    std::fs::create_dir_all(log.join("segments")).unwrap();
    std::fs::write(log.join("segments/0000000000000001.seg"), vec![0x5a; 4096]).unwrap();
    for data in [data, log] {
        let (code, _, err) = start_relay_on(&data, dir.path());
        assert_ne!(code, 0, "{err}");
        assert!(err.contains("stored data is corrupt"), "{err}");
        assert!(
            err.contains("move it aside to start empty") && err.contains("restore a backup"),
            "the error says what to do: {err}"
        );
        assert!(
            !err.contains("writable"),
            "no advice that does not fit: {err}"
        );
    }
}

#[test]
fn a_broken_config_file_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jasper.toml");
    std::fs::write(
        &config,
        "[relay]\nlisten = \"127.0.0.1:0\"\nretention = 7\n",
    )
    .unwrap();
    let (code, _, err) = run_jasper(&["--config", config.to_str().unwrap(), "relay"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains(config.to_str().unwrap()), "{err}");

    let (code, _, err) = run_jasper(
        &["--config", "/nonexistent/jasper.toml", "relay"],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot read config file /nonexistent/jasper.toml"),
        "{err}"
    );
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is said once: {err}"
    );
}

#[test]
fn jasper_config_env_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("env.toml");
    std::fs::write(&config, "[relay]\nmin_key_bits = 99\n").unwrap();
    let out = std::process::Command::new(common::jasper_bin())
        .arg("relay")
        .env("JASPER_CONFIG", &config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("min_key_bits = 99"), "{err}");
}

#[test]
fn the_default_log_names_no_client_address_and_no_key() {
    let relay = Relay::start(common::QUIET);
    let alice = key_b64("alice-4096");
    let p = packet_for(&alice, 1, 100);
    relay.send_ok(&p);
    relay.inbox(&alice);
    relay.post("/send", &json!({"recipient": alice, "message": 1}));
    relay.post(
        "/sync/servers",
        &json!({"servers": [{"ip": "relay.example.org", "port": 1}]}),
    );
    let log = relay.log();
    for line in log.lines() {
        if line.contains("127.0.0.1") {
            assert!(
                line.contains("relay listening"),
                "client address in the log: {line}"
            );
        }
    }
    assert!(!log.contains(&alice[..40]), "a key in the log:\n{log}");
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &alice).unwrap();
    let fp: String = <sha2::Sha256 as sha2::Digest>::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!log.contains(&fp[..16]), "a fingerprint in the log:\n{log}");
    assert!(
        !log.contains(p["hash"].as_str().unwrap()),
        "a packet hash in the log:\n{log}"
    );
}
