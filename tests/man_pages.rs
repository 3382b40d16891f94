//! The man pages in `man/` are what the clap definition generates (so `--help`, the pages and
//! the completions describe one CLI), mandoc finds nothing to lint, and every subcommand and
//! flag is documented.

mod common;

use std::path::Path;

use clap::CommandFactory as _;
use common::run_jasper;

#[test]
fn committed_man_pages_match_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let (code, _, err) = run_jasper(&["man", "--out", out.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut generated: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    on_disk.sort();
    assert_eq!(
        generated, on_disk,
        "run `cargo run -- man --out man` and commit"
    );
    for name in &generated {
        assert_eq!(
            std::fs::read_to_string(out.join(name)).unwrap(),
            std::fs::read_to_string(committed.join(name)).unwrap(),
            "man/{name} is stale: run `cargo run -- man --out man` and commit"
        );
    }
}

#[test]
fn mandoc_finds_nothing_to_lint() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for entry in std::fs::read_dir(&committed).unwrap() {
        let path = entry.unwrap().path();
        let out = std::process::Command::new("mandoc")
            .args(["-Tlint", "-W", "warning"])
            .arg(&path)
            .output()
            .expect("mandoc is installed by tests/run.sh");
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(report.trim().is_empty(), "{}:\n{report}", path.display());
    }
}

fn check_documented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() {
            missing.push(format!("{path} {id}"));
        }
    }
    for sub in command.get_subcommands() {
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() {
            missing.push(sub_path.clone());
        }
        check_documented(sub, &sub_path, missing);
    }
}

#[test]
fn every_subcommand_and_flag_is_documented() {
    let mut missing = Vec::new();
    check_documented(&jasper::cli::Cli::command(), "jasper", &mut missing);
    assert!(missing.is_empty(), "undocumented: {missing:?}");
    // And each top-level subcommand has its page.
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for sub in jasper::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
    {
        assert!(
            man.join(format!("jasper-{}.1", sub.get_name())).is_file(),
            "{}",
            sub.get_name()
        );
    }
}
