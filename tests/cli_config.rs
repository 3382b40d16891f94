//! `jasper config example|check` and `jasper completions`: the sample names every key, parses
//! to the defaults, and broken files are reported with their line.

mod common;

use common::run_jasper;

#[test]
fn the_sample_config_names_every_key_and_parses_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (code, sample, err) = run_jasper(&["config", "example"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(sample, jasper::cli::SAMPLE_CONFIG);
    let parsed = jasper::config::Config::from_toml(&sample).unwrap();
    assert_eq!(parsed, jasper::config::Config::default());
    // Every key of every section is shown (commented) under its section.
    let defaults = toml::Value::try_from(jasper::config::Config::default()).unwrap();
    let mut keys = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            keys.push((section.clone(), key.clone()));
        }
    }
    // Keys that are unset by default.
    for (section, key) in [
        ("relay", "public_address"),
        ("client", "stun"),
        ("client", "rendezvous"),
        ("client", "rendezvous_fingerprint"),
        ("stun", "tls_certificate"),
        ("stun", "tls_key"),
    ] {
        keys.push((section.into(), key.into()));
    }
    for (section, key) in keys {
        let after = sample.split(&format!("[{section}]")).nth(1).unwrap();
        let body = after.split("\n[").next().unwrap();
        assert!(
            body.contains(&format!("# {key} = ")),
            "[{section}] {key} is not in the sample"
        );
    }
}

#[test]
fn config_check_reports_good_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[relay]\nretention = \"3d\"\n[client]\nservers = [\"relay.example.org:8080\"]\n",
    )
    .unwrap();
    let (code, out, err) = run_jasper(&["config", "check", good.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[relay]\nretention = \"3d\"\nmax_message_bytes = \"lots\"\n",
    )
    .unwrap();
    let (code, _, err) = run_jasper(&["config", "check", broken.to_str().unwrap()], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 3") && err.contains("max_message_bytes"),
        "{err}"
    );
    let (code, _, err) = run_jasper(&["config", "check", "/nonexistent.toml"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    // Without FILE it checks the file jasper reads: --config, else the XDG default, and says
    // so when there is none.
    let (code, out, err) = run_jasper(&["config", "check"], dir.path());
    assert_eq!(code, 0, "{err}");
    let xdg_default = dir.path().join("xdg-config/jasper/config.toml");
    assert!(
        out.contains(&format!(
            "no configuration file at {}",
            xdg_default.display()
        )) && out.contains("every setting has its default"),
        "{out}"
    );
    let (code, _, err) = run_jasper(
        &["--config", broken.to_str().unwrap(), "config", "check"],
        dir.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 3"), "{err}");
    std::fs::create_dir_all(xdg_default.parent().unwrap()).unwrap();
    std::fs::copy(&good, &xdg_default).unwrap();
    let (code, out, err) = run_jasper(&["config", "check"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{}: ok", xdg_default.display()));
    // A duration too long for any timer is refused, not a panic later.
    let forever = dir.path().join("forever.toml");
    std::fs::write(&forever, "[relay]\nrequest_timeout = \"300000000000y\"\n").unwrap();
    let (code, _, err) = run_jasper(&["config", "check", forever.to_str().unwrap()], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("longer than any setting takes"), "{err}");
    // So are polling intervals of zero, and waits too long.
    for args in [
        &["receive", "--watch", "--interval", "0s"][..],
        &["chat", "bob", "--interval", "0s"],
        &["call", "bob", "--wait", "300000000000y"],
    ] {
        let (code, _, err) = run_jasper(args, dir.path());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("must be"), "{args:?}: {err}");
    }
    // A broken configuration does not stop `config example`.
    let out = std::process::Command::new(common::jasper_bin())
        .args(["--config", broken.to_str().unwrap(), "config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn completions_for_each_shell_know_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run_jasper(&["completions", shell], dir.path());
        assert_eq!(code, 0, "{shell}: {err}");
        for sub in ["relay", "send", "receive", "contacts", "group", "servers"] {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
        // Not the hidden commands that write the packaging files.
        assert!(
            !out.contains("assets"),
            "{shell} completions offer `assets`"
        );
        assert!(
            out.contains("--config") || out.contains("-l config"),
            "{shell} completions lack --config"
        );
    }
    let (code, _, _) = run_jasper(&["completions", "tcsh"], dir.path());
    assert_eq!(code, 2);
}

#[test]
fn a_reader_that_goes_away_stops_a_command_quietly_not_with_a_panic() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    // More than a pipe holds (64 KiB): whenever the reader goes, a write is still to come.
    let (_, all, _) = run_jasper(&["completions", "bash"], dir.path());
    assert!(all.len() > 70_000, "{}", all.len());
    let mut child = common::jasper_in(dir.path())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes without reading (`| head -0`, say).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "{err}");
    // The status a shell shows for a process stopped by SIGPIPE (128 + 13), not a panic's 101.
    assert_eq!(out.status.code(), Some(141), "{:?}: {err}", out.status);
}

#[test]
fn paths_may_start_with_home_or_an_xdg_directory_as_the_sample_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paths.toml");
    // The sample's defaults, uncommented, name the same places as the defaults.
    std::fs::write(
        &config,
        "[identity]\nprivate_key = \"~/keys/identity.pem\"\n\
         [client]\ndata_dir = \"$XDG_DATA_HOME/jasper/client\"\n",
    )
    .unwrap();
    // HOME is the test's directory too: nothing is written outside it.
    let out = common::jasper_in(dir.path())
        .env("HOME", dir.path())
        .args([
            "--config",
            config.to_str().unwrap(),
            "init",
            "--no-passphrase",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        made["private_key_file"].as_str().unwrap(),
        dir.path().join("keys/identity.pem").to_str().unwrap()
    );
    // (jasper_in sets XDG_DATA_HOME to <dir>/xdg-data.)
    assert!(dir.path().join("keys/identity.pem").is_file());
    // Nothing was made under a directory literally named `~` or `$XDG_DATA_HOME`.
    assert!(!dir.path().join("~").exists() && !dir.path().join("$XDG_DATA_HOME").exists());

    // Another variable is refused, naming the file; so are busy-loop periods.
    for (text, says) in [
        (
            "[relay]\ndata_dir = \"$SOMEWHERE/relay\"\n",
            "only ~, $HOME",
        ),
        ("[relay]\nsweep_interval = \"1ns\"\n", "sweep_interval"),
        (
            "[relay]\nmessage_sync_interval = \"10ms\"\n",
            "\"0s\" turns it off",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let (code, _, err) = run_jasper(&["config", "check", config.to_str().unwrap()], dir.path());
        assert_eq!(code, 2, "{text}: {err}");
        assert!(
            err.contains(says) && err.contains("paths.toml"),
            "{text}: {err}"
        );
    }
}

#[test]
fn every_commented_key_of_the_sample_is_valid_once_uncommented() {
    // "Uncomment what you change": each `# key = value` line, uncommented alone under its
    // section, must parse and check.
    let mut section = String::new();
    let mut tried = 0;
    let mut failed = Vec::new();
    for line in jasper::cli::SAMPLE_CONFIG.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some(setting) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, _)) = setting.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        // Settings that go with another, as the sample says.
        let partner = match key {
            "redis_tls_ca" => "redis_url = \"rediss://redis.example.org:6380/0\"",
            "redis_tls_cert" => {
                "redis_url = \"rediss://r.example.org:6380/0\"\nredis_tls_key = \"/k.pem\""
            }
            "redis_tls_key" => {
                "redis_url = \"rediss://r.example.org:6380/0\"\nredis_tls_cert = \"/c.pem\""
            }
            "tls_certificate" => "tls_key = \"/var/lib/jasper/stun.key\"",
            "tls_key" => "tls_certificate = \"/var/lib/jasper/stun.crt\"",
            _ => "",
        };
        let text = format!("{section}\n{setting}\n{partner}\n");
        if let Err(e) = jasper::config::Config::from_toml(&text) {
            failed.push(format!("{text}: {e}"));
        }
        tried += 1;
    }
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(tried > 40, "only {tried} settings found");
}
