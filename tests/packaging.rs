//! What the packages ship: the generated files in `packaging/` are what the CLI generates, the
//! systemd unit passes `systemd-analyze verify` and keeps its hardening, the Debian package
//! (`cargo deb`) holds every file and runs, and the container file copies what exists.
//! Tools missing here are installed by tests/run.sh; a test without its tool fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::run_jasper;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a tool, failing the test with a clear message when it is not installed.
fn tool(program: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): tests/run.sh installs it"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn generated_packaging_files_match_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("packaging");
    let (code, listed, err) = run_jasper(&["assets", "--out", out.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    let written: Vec<&str> = listed.lines().collect();
    assert_eq!(written.len(), 4, "{listed}");
    for path in written {
        let relative = Path::new(path).strip_prefix(&out).unwrap();
        assert_eq!(
            read(Path::new(path)),
            read(&repo().join("packaging").join(relative)),
            "packaging/{} is stale: run `cargo run -- assets --out packaging` and commit",
            relative.display()
        );
    }
    // The completions are what `jasper completions` prints.
    let (_, bash, _) = run_jasper(&["completions", "bash"], dir.path());
    assert_eq!(
        bash,
        read(&repo().join("packaging/completions/jasper.bash"))
    );
}

#[test]
fn the_service_configuration_keeps_all_data_in_the_state_directory() {
    let path = repo().join("packaging/etc/jasper/config.toml");
    let config = jasper::config::Config::from_toml(&read(&path)).unwrap();
    // No path may point where the sandboxed service cannot write: every value that names the
    // user's data directory in the defaults must have moved under /var/lib/jasper.
    let user_data = jasper::config::default_data_dir().display().to_string();
    let values = toml::to_string(&config).unwrap();
    assert!(!values.contains(&user_data), "{values}");
    assert!(config.relay.data_dir.starts_with("/var/lib/jasper"));
    let unit = read(&repo().join("packaging/systemd/jasper.service"));
    assert!(unit.contains("\nStateDirectory=jasper\n"), "{unit}");
    // The configuration (which may hold a Redis password) is root's alone; the service gets
    // a copy through its credentials.
    assert!(
        unit.contains("\nLoadCredential=config.toml:/etc/jasper/config.toml\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecStart=/usr/bin/jasper serve --config %d/config.toml\n"),
        "{unit}"
    );
    // Readiness waits for the database to open (crash recovery, a schema migration): no
    // start timeout kills it half way and starts it again for ever.
    assert!(unit.contains("\nTimeoutStartSec=infinity\n"), "{unit}");
}

/// The units with `/usr/bin/jasper` replaced by the binary under test (verify wants the
/// program to exist), and a MANPATH holding our pages (verify looks up `Documentation=`).
fn units_for_verify(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let manpath = dir.join("man");
    for section in ["1", "5"] {
        let to = manpath.join(format!("man{section}"));
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(repo().join("man")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == section) {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("packaging/systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let unit =
                read(&path).replace("/usr/bin/jasper ", &format!("{} ", common::jasper_bin()));
            let copy = dir.join(path.file_name().unwrap());
            std::fs::write(&copy, unit).unwrap();
            units.push(copy);
        }
    }
    (units, manpath)
}

fn systemd_analyze(args: &[&str], unit: &Path, manpath: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .expect("systemd-analyze (package systemd) is installed by tests/run.sh")
}

#[test]
fn systemd_units_verify_cleanly_and_stay_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let (units, manpath) = units_for_verify(dir.path());
    assert!(!units.is_empty());
    for unit in &units {
        let out = systemd_analyze(&["verify"], unit, &manpath);
        let report = text(&out);
        assert!(
            out.status.success() && report.trim().is_empty(),
            "systemd-analyze verify {}:\n{report}",
            unit.display()
        );
        // Exposure 1.2 today ("OK"); dropping a protection pushes it over 1.5.
        let out = systemd_analyze(
            &["security", "--offline=yes", "--threshold=15"],
            unit,
            &manpath,
        );
        assert!(
            out.status.success(),
            "{} lost hardening:\n{}",
            unit.display(),
            text(&out)
        );
    }
    // Each protection the service relies on, by name (the score above weighs some lightly).
    let unit = read(&repo().join("packaging/systemd/jasper.service"));
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=jasper",
        "ConfigurationDirectory=jasper",
        "UMask=0077",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "jasper.service lacks {line}"
        );
    }
    // The check sees mistakes: a misspelt key and a missing man page are reported.
    let broken = dir.path().join("broken.service");
    let unit = read(&units[0])
        .replace("ProtectSystem=", "ProtectSytem=")
        .replace("man:jasper.toml(5)", "man:jasper-nope(5)");
    std::fs::write(&broken, unit).unwrap();
    let report = text(&systemd_analyze(&["verify"], &broken, &manpath));
    assert!(
        report.contains("ProtectSytem") && report.contains("jasper-nope"),
        "{report}"
    );
}

/// Everything under `root`, as paths relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn gunzip(path: &Path) -> String {
    let out = tool("gzip", &["-dc", path.to_str().unwrap()], repo());
    assert!(out.status.success(), "{}: {}", path.display(), text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_debian_package_holds_every_file_and_runs() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The README's `cargo deb --no-build --locked --strip`, after `cargo build --release`: here
    // the "release" binary is the one under test, in a target directory of its own.
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(common::jasper_bin(), target.join("release/jasper")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["deb", "--no-build", "--locked", "--strip", "--output"])
        .arg(dir.path())
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb failed (tests/run.sh installs cargo-deb):\n{}",
        text(&out)
    );
    let version = env!("CARGO_PKG_VERSION");
    let deb = dir.path().join(format!("jasper_{version}-1_amd64.deb"));
    assert!(deb.is_file(), "{}", text(&out));
    let deb_arg = deb.to_str().unwrap();

    // Control fields, conffiles and maintainer scripts.
    let control = text(&tool("dpkg-deb", &["-f", deb_arg], repo()));
    for field in [
        "Package: jasper\n".to_owned(),
        format!("Version: {version}-1\n"),
        "Section: net\n".to_owned(),
        "Depends: libc6".to_owned(),
        "Suggests: alsa-utils, redis-server\n".to_owned(),
    ] {
        assert!(control.contains(&field), "{field:?} not in\n{control}");
    }
    let info = dir.path().join("control");
    let out = tool("dpkg-deb", &["-e", deb_arg, info.to_str().unwrap()], repo());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        read(&info.join("conffiles")).trim(),
        "/etc/jasper/config.toml"
    );
    let postinst = read(&info.join("postinst"));
    assert!(
        postinst.contains("try-restart jasper.service"),
        "an upgrade restarts a running service:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "installing must not start the service before it is configured:\n{postinst}"
    );
    assert!(read(&info.join("prerm")).contains("stop jasper.service"));

    // The files, each the same as in the repository.
    let root = dir.path().join("root");
    let out = tool("dpkg-deb", &["-x", deb_arg, root.to_str().unwrap()], repo());
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&tool("dpkg-deb", &["-c", deb_arg], repo()));
    let files = files_under(&root);
    let mut expected: Vec<(String, String)> = vec![
        (
            "etc/jasper/config.toml".into(),
            "packaging/etc/jasper/config.toml".into(),
        ),
        (
            "usr/lib/systemd/system/jasper.service".into(),
            "packaging/systemd/jasper.service".into(),
        ),
        (
            "usr/share/bash-completion/completions/jasper".into(),
            "packaging/completions/jasper.bash".into(),
        ),
        (
            "usr/share/zsh/vendor-completions/_jasper".into(),
            "packaging/completions/_jasper".into(),
        ),
        (
            "usr/share/fish/vendor_completions.d/jasper.fish".into(),
            "packaging/completions/jasper.fish".into(),
        ),
        (
            "usr/share/doc/jasper/examples/config.toml".into(),
            "packaging/jasper.toml".into(),
        ),
        (
            "usr/share/lintian/overrides/jasper".into(),
            "packaging/debian/lintian-overrides".into(),
        ),
    ];
    let mut pages = 0;
    for entry in std::fs::read_dir(repo().join("man")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let section = name.rsplit('.').next().unwrap().to_owned();
        let installed = root.join(format!("usr/share/man/man{section}/{name}.gz"));
        assert_eq!(
            gunzip(&installed),
            read(&repo().join("man").join(&name)),
            "{name} in the package\n{listing}"
        );
        pages += 1;
    }
    assert!(pages >= 17, "{pages} man pages");
    assert!(
        files
            .iter()
            .any(|f| f == "usr/share/man/man5/jasper.toml.5.gz"),
        "{listing}"
    );
    for (installed, source) in expected.drain(..) {
        assert!(
            files.contains(&installed),
            "{installed} not in the package:\n{listing}"
        );
        assert_eq!(
            read(&root.join(&installed)),
            read(&repo().join(source)),
            "{installed}"
        );
    }
    assert!(
        files.iter().any(|f| f == "usr/share/doc/jasper/copyright"),
        "{listing}"
    );
    let binary = root.join("usr/bin/jasper");
    let mode = std::os::unix::fs::PermissionsExt::mode(&binary.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755, "{listing}");
    // The configuration may hold a Redis password: root's alone.
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw------- 0/0") && l.ends_with("./etc/jasper/config.toml")),
        "{listing}"
    );

    // The Debian changelog is the repository's.
    assert_eq!(
        gunzip(&root.join("usr/share/doc/jasper/changelog.Debian.gz")),
        read(&repo().join("packaging/debian/changelog")),
        "{listing}"
    );
    // Debian's own package checker finds nothing to report (errors, warnings or info).
    let out = tool(
        "lintian",
        &["--info", "--tag-display-limit", "0", deb_arg],
        dir.path(),
    );
    let tags: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':' && !l.starts_with("N:"))
        .collect();
    assert!(
        out.status.success() && tags.is_empty(),
        "lintian:\n{}",
        text(&out)
    );

    // The packaged binary runs and accepts the packaged configuration.
    let out = tool(binary.to_str().unwrap(), &["--version"], dir.path());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("jasper {version}")
    );
    let config = root.join("etc/jasper/config.toml");
    let out = tool(
        binary.to_str().unwrap(),
        &["config", "check", config.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("cargo deb and the checks took {:?}", started.elapsed());
}

#[test]
fn the_container_file_copies_what_exists_and_runs_the_service() {
    let file = read(&repo().join("packaging/Containerfile"));
    let instructions: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Every COPY from the build context names a file of the repository.
    let mut copied = Vec::new();
    for line in instructions.iter().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        let (sources, destination) = parts.split_at(parts.len() - 1);
        if sources.iter().any(|s| s.starts_with("--from=")) {
            continue;
        }
        for source in sources.iter().filter(|s| !s.starts_with("--")) {
            assert!(repo().join(source).exists(), "COPY {source}: no such file");
        }
        copied.push((sources.to_vec(), destination[0]));
    }
    assert!(
        copied
            .iter()
            .any(|(s, d)| s.contains(&"packaging/etc/jasper/config.toml")
                && *d == "/etc/jasper/config.toml"),
        "{copied:?}"
    );
    assert!(
        instructions
            .iter()
            .any(|l| l.contains("cargo build --release --locked"))
    );
    assert!(instructions.contains(&"VOLUME /var/lib/jasper"), "{file}");
    assert!(
        instructions
            .iter()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
    assert!(instructions.contains(&r#"ENTRYPOINT ["jasper"]"#), "{file}");
    assert!(
        instructions.contains(&r#"CMD ["serve", "--config", "/etc/jasper/config.toml"]"#),
        "{file}"
    );
    // The relay's default port is exposed, with the STUN ports.
    let port = jasper::config::Config::default().relay.listen.port();
    let expose = instructions
        .iter()
        .find(|l| l.starts_with("EXPOSE "))
        .expect("EXPOSE");
    for p in [format!("{port}"), "3478/udp".into(), "5349".into()] {
        assert!(
            expose.split_whitespace().any(|w| w == p),
            "{expose} lacks {p}"
        );
    }
}
