//! The man pages in `man/` are what the clap definition and the sample configuration generate
//! (so `--help`, the pages and the completions describe one CLI, and jasper.toml(5) the one
//! configuration), mandoc finds nothing to lint, and every subcommand, flag and configuration
//! key is documented.

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
        .filter(|n| n.ends_with(".1") || n.ends_with(".5"))
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
    // And each visible subcommand, nested ones too, has its page.
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    fn check_pages(command: &clap::Command, prefix: &str, man: &Path) {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{prefix}-{}", sub.get_name());
            assert!(man.join(format!("{name}.1")).is_file(), "{name}");
            check_pages(sub, &name, man);
        }
    }
    check_pages(&jasper::cli::Cli::command(), "jasper", &man);
}

#[test]
fn every_page_a_page_refers_to_exists() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&man).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // References look like `jasper\-contacts\-add(1)` (bold or not).
        for (at, _) in text.match_indices("(1)") {
            let start = text[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '\\'))
                .map_or(0, |i| i + 1);
            let name = text[start..at].replace("\\-", "-");
            let name = name.trim_start_matches("\\fB").trim_end_matches("\\fR");
            if name.starts_with("jasper") && !man.join(format!("{name}.1")).is_file() {
                missing.push(format!("{} -> {name}(1)", path.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "pages referred to but missing: {missing:#?}"
    );
}

/// jasper.toml(5) as committed, with its `.SS [section]` blocks split out.
fn config_page_sections() -> Vec<(String, String)> {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/jasper.toml.5"))
            .expect("man/jasper.toml.5: run `cargo run -- man --out man` and commit");
    let keys = page
        .split("\n.SH KEYS\n")
        .nth(1)
        .expect("a KEYS section")
        .split("\n.SH ")
        .next()
        .unwrap();
    keys.split(".SS [")
        .skip(1)
        .map(|block| {
            let (name, body) = block.split_once("]\n").unwrap();
            (name.to_owned(), body.to_owned())
        })
        .collect()
}

/// The `key = value` tag lines of a section block, unescaped back to TOML.
fn tag_lines(block: &str) -> Vec<String> {
    block
        .split(".TP\n")
        .skip(1)
        .map(|entry| {
            entry
                .lines()
                .next()
                .unwrap()
                .replace("\\fB", "")
                .replace("\\fR", "")
                .replace("\\-", "-")
                .replace("\\e", "\\")
        })
        .collect()
}

#[test]
fn jasper_toml_5_lists_every_config_key_with_a_description() {
    let sections = config_page_sections();
    // Every key the real configuration has (keys without a default are absent from this
    // serialization) and every key the sample shows.
    let defaults = toml::Value::try_from(jasper::config::Config::default()).unwrap();
    let mut keys = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            keys.push((section.clone(), key.clone()));
        }
    }
    for section in jasper::cli::config_page::parse_sample(jasper::cli::SAMPLE_CONFIG).unwrap() {
        for key in section.keys {
            keys.push((section.name.clone(), key.name));
        }
    }
    assert!(keys.len() > 30, "{keys:?}");
    for (section, key) in keys {
        let (_, block) = sections
            .iter()
            .find(|(name, _)| *name == section)
            .unwrap_or_else(|| panic!("jasper.toml(5) has no [{section}]"));
        let entry = block
            .split(".TP\n")
            .find(|e| e.starts_with(&format!("\\fB{key}\\fR")))
            .unwrap_or_else(|| panic!("jasper.toml(5) lacks [{section}] {key}"));
        let description = entry.lines().nth(1).unwrap_or("");
        assert!(
            description.len() > 10,
            "[{section}] {key} has no description in jasper.toml(5)"
        );
    }
}

#[test]
fn jasper_toml_5_shows_the_real_defaults() {
    // Every `key = value` the page shows, read as a configuration, is the built-in default.
    let data_dir = jasper::config::default_data_dir();
    let mut text = String::new();
    let mut shown = 0;
    for (section, block) in config_page_sections() {
        text.push_str(&format!("[{section}]\n"));
        for line in tag_lines(&block).into_iter().filter(|l| l.contains(" = ")) {
            let line = line.replace("$XDG_DATA_HOME/jasper", &data_dir.display().to_string());
            text.push_str(&line);
            text.push('\n');
            shown += 1;
        }
    }
    assert!(shown >= 25, "{text}");
    let parsed = jasper::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed, jasper::config::Config::default(), "{text}");
}

#[test]
fn jasper_toml_5_examples_are_valid_configurations() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/jasper.toml.5"))
            .unwrap();
    let examples: Vec<&str> = page
        .split(".EX\n")
        .skip(1)
        .map(|e| e.split("\n.EE").next().unwrap())
        .collect();
    assert!(examples.len() >= 2);
    for example in examples {
        assert!(
            !example.contains('\\'),
            "keep roff escapes out of examples: {example}"
        );
        jasper::config::Config::from_toml(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    }
}

#[test]
fn jasper_1_points_to_jasper_toml_5() {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/jasper.1"))
        .unwrap();
    let see_also = page.split(".SH SEE ALSO").nth(1).expect("SEE ALSO");
    assert!(see_also.contains("\\fBjasper.toml\\fR(5)"), "{see_also}");
}
