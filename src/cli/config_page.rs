//! jasper.toml(5), generated from the commented sample configuration (packaging/jasper.toml):
//! the sample is the one place where every key, its default and its meaning are written, so
//! the page lists whatever sections and keys the sample has, with no list kept here.

use crate::config::Config;

/// A section of the sample configuration, such as `[relay]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSection {
    /// The section's name, without brackets.
    pub name: String,
    /// Its keys, in the sample's order.
    pub keys: Vec<SampleKey>,
}

/// One `key = value` line of the sample (commented or not) and the comment above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleKey {
    /// The key.
    pub name: String,
    /// The value as the sample writes it (TOML text): the default, or an example when the
    /// key has no default.
    pub value: String,
    /// The comment lines directly above it, joined by spaces.
    pub doc: String,
}

/// A line of the sample that does not follow its conventions.
#[derive(Debug, thiserror::Error)]
#[error("packaging/jasper.toml line {line}: {message}")]
pub struct SampleError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// `key = value` when `text` is such a line (TOML bare keys as the config uses them).
fn key_line(text: &str) -> Option<(&str, &str)> {
    let (key, value) = text.split_once(" = ")?;
    let bare = !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (bare && !value.trim().is_empty()).then(|| (key, value.trim()))
}

/// Reads the sample's conventions: `[section]` headers; under them, comment lines that
/// describe the `key = value` line (usually commented out) that follows them. A blank line
/// ends a description. Text before the first section is the file's preamble and is skipped.
pub fn parse_sample(text: &str) -> Result<Vec<SampleSection>, SampleError> {
    let mut sections: Vec<SampleSection> = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let error = |message: String| SampleError {
            line: index + 1,
            message,
        };
        if line.is_empty() {
            doc.clear();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push(SampleSection {
                name: name.to_owned(),
                keys: Vec::new(),
            });
            doc.clear();
        } else {
            let comment = line
                .strip_prefix('#')
                .map(|c| c.strip_prefix(' ').unwrap_or(c));
            let Some(section) = sections.last_mut() else {
                if comment.is_none() {
                    return Err(error("a setting before the first [section]".into()));
                }
                continue;
            };
            match (comment, key_line(comment.unwrap_or(line))) {
                (_, Some((key, value))) => {
                    if doc.is_empty() {
                        return Err(error(format!(
                            "[{}] {key} has no comment above it saying what it does",
                            section.name
                        )));
                    }
                    if section.keys.iter().any(|k| k.name == key) {
                        return Err(error(format!("[{}] {key} appears twice", section.name)));
                    }
                    section.keys.push(SampleKey {
                        name: key.to_owned(),
                        value: value.to_owned(),
                        doc: doc.join(" "),
                    });
                    doc.clear();
                }
                (Some(text), None) => doc.push(text),
                (None, None) => {
                    return Err(error(format!(
                        "{line:?} is neither a comment nor key = value"
                    )));
                }
            }
        }
    }
    Ok(sections)
}

/// Roff text: backslashes and hyphens escaped, `code` in bold, no request at a line start.
fn roff(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        let escaped = part.replace('\\', "\\e").replace('-', "\\-");
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{escaped}\\fR"));
        } else {
            out.push_str(&escaped);
        }
    }
    if out.starts_with(['.', '\'']) {
        out.insert_str(0, "\\&");
    }
    out
}

/// What each section is for; a section not named here is listed without an introduction.
const SECTION_INTROS: &[(&str, &str)] = &[
    (
        "identity",
        "Who you are: the keys the client commands read. Servers do not use it.",
    ),
    (
        "client",
        "The messaging client: `jasper send`, `receive` and the other client commands.",
    ),
    (
        "relay",
        "The relay: `jasper relay`, and `jasper serve` when `enabled`.",
    ),
    (
        "stun",
        "The STUN service: `jasper stun`, and `jasper serve` when `enabled`.",
    ),
];

const HEAD: &str = r#".SH NAME
jasper.toml \- the configuration file of jasper
.SH SYNOPSIS
\fI$XDG_CONFIG_HOME/jasper/config.toml\fR
.br
\fI/etc/jasper/config.toml\fR
.SH DESCRIPTION
\fBjasper\fR(1) reads one TOML file: the one named by \fB\-\-config\fR, else by
\fBJASPER_CONFIG\fR, else \fI$XDG_CONFIG_HOME/jasper/config.toml\fR
(\fI~/.config/jasper/config.toml\fR) when it exists.
With no file, every default applies: \fBjasper relay\fR runs with no configuration at all.
.PP
Every key is optional.
Unknown sections and keys, and values of the wrong type, are errors that name the line;
values out of range are errors that name the file and the key.
Paths may start with \fI~\fR, \fI$HOME\fR, \fI$XDG_DATA_HOME\fR or \fI$XDG_CONFIG_HOME\fR
(the XDG ones default to \fI~/.local/share\fR and \fI~/.config\fR); a relative path is taken
from the directory jasper runs in.
Durations are humantime text ("10s", "1m", "7d", "1h 30m").
Sizes are bytes, as an integer or as text with a unit ("256KiB", "16GiB", "1MB").
Addresses of other servers are "host:port".
.PP
\fBjasper config example\fR prints a commented file with every key and its default;
\fBjasper config check\fR \fIFILE\fR checks a file.
.SH KEYS
Each key is shown with its default.
"#;

const TAIL: &str = r#".SH FILES
.TP
\fI$XDG_CONFIG_HOME/jasper/config.toml\fR
Your own configuration, used when neither \fB\-\-config\fR nor \fBJASPER_CONFIG\fR names a
file.
.TP
\fI/etc/jasper/config.toml\fR
The configuration of the system service (\fIjasper.service\fR, from the Debian package, and
the container image), which keeps every data directory under \fI/var/lib/jasper\fR.
.SH EXAMPLES
A public relay that syncs with two others and keeps its data under \fI/var/lib/jasper\fR:
.PP
.EX
[relay]
listen = "0.0.0.0:8080"
data_dir = "/var/lib/jasper/relay"
public_address = "relay.example.org:8080"
peers = ["relay2.example.org:8080", "relay3.example.net:8080"]
max_stored_bytes = "64GiB"
.EE
.PP
A client that starts from two relays and gives up on one after ten seconds:
.PP
.EX
[client]
servers = ["relay.example.org:8080", "relay2.example.org:8080"]
request_timeout = "10s"
.EE
.SH SEE ALSO
\fBjasper\fR(1), \fBjasper\-config\fR(1), \fBjasper\-relay\fR(1), \fBjasper\-serve\fR(1)
"#;

/// The body of jasper.toml(5) (everything after `.TH`), from the sample configuration.
pub fn render_body(sample: &str) -> Result<String, SampleError> {
    let defaults = toml::Value::try_from(Config::default()).expect("the defaults serialize");
    let has_default =
        |section: &str, key: &str| defaults.get(section).and_then(|s| s.get(key)).is_some();
    let mut page = String::from(HEAD);
    for section in parse_sample(sample)? {
        page.push_str(&format!(".SS [{}]\n", section.name));
        if let Some((_, intro)) = SECTION_INTROS.iter().find(|(n, _)| *n == section.name) {
            page.push_str(&roff(intro));
            page.push('\n');
        }
        for key in &section.keys {
            page.push_str(".TP\n");
            if has_default(&section.name, &key.name) {
                page.push_str(&format!(
                    "\\fB{}\\fR = {}\n",
                    roff(&key.name),
                    roff(&key.value)
                ));
                page.push_str(&roff(&key.doc));
                page.push('\n');
            } else {
                page.push_str(&format!("\\fB{}\\fR (unset)\n", roff(&key.name)));
                page.push_str(&roff(&key.doc));
                page.push_str(&format!(" For example: {}.\n", roff(&key.value)));
            }
        }
    }
    page.push_str(TAIL);
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_conventions_are_read() {
        let sample = "# preamble\n\n[a]\n# Does x.\n# Really.\n# x = 1\n\n[b]\n# Y.\ny = \"z\"\n";
        let sections = parse_sample(sample).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].name, "a");
        assert_eq!(
            sections[0].keys,
            [SampleKey {
                name: "x".into(),
                value: "1".into(),
                doc: "Does x. Really.".into()
            }]
        );
        assert_eq!(sections[1].keys[0].value, "\"z\"");
    }

    #[test]
    fn undocumented_or_repeated_keys_are_refused() {
        let e = parse_sample("[a]\n# x = 1\n").unwrap_err();
        assert!(e.to_string().contains("no comment"), "{e}");
        assert_eq!(e.line, 2);
        let e = parse_sample("[a]\n# X.\n# x = 1\n# X.\n# x = 2\n").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = parse_sample("x = 1\n").unwrap_err();
        assert!(e.to_string().contains("before the first"), "{e}");
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("flag --listen"), "flag \\-\\-listen");
        assert_eq!(roff("runs `jasper serve`"), "runs \\fBjasper serve\\fR");
        assert_eq!(roff(".x"), "\\&.x");
        assert_eq!(roff("a\\b"), "a\\eb");
    }
}
