//! Man pages generated from the clap definition (clap_mangen), with the hand-written sections
//! a man page needs beside it, and jasper.toml(5) from the sample configuration
//! ([`super::config_page`]). `jasper man --out DIR` writes them; the committed `man/` is
//! checked against this output by the tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

use super::Cli;

/// Hand-written sections of jasper(1).
const JASPER_EXTRA: &str = r#".SH FILES
.TP
\fI$XDG_CONFIG_HOME/jasper/config.toml\fR
The configuration file when neither \fB\-\-config\fR nor \fBJASPER_CONFIG\fR names one.
\fBjasper config example\fR prints every key with its default.
.TP
\fI$XDG_DATA_HOME/jasper/identity.pem\fR
Your private key (PKCS#8 PEM, mode 0600), with the public half in \fIidentity.pem.pub\fR.
.TP
\fI$XDG_DATA_HOME/jasper/client/\fR
The client's database: contacts, history, known relays.
.TP
\fI$XDG_DATA_HOME/jasper/relay/\fR
A relay's data: \fIrelay.redb\fR (the index) and \fIsegments/\fR (the packet log).
.TP
\fI$XDG_DATA_HOME/jasper/stun/cert.pem\fR, \fIkey.pem\fR
The STUN service's self-signed TLS certificate and its key (mode 0600), made on first start
unless \fB[stun] tls_certificate\fR and \fBtls_key\fR name others.
.SH ENVIRONMENT
.TP
\fBJASPER_CONFIG\fR
The configuration file, unless \fB\-\-config\fR is given.
.TP
\fBRUST_LOG\fR
Log level and filters (default \fBinfo\fR); logs go to standard error.
.SH EXIT STATUS
.TP
0
Success.
.TP
1
Any other failure.
.TP
2
User error: arguments (an empty message, or one too large for the relay), configuration,
unknown contact or group, a key that exists already, wrong passphrase.
.TP
3
No relay could be reached; or, in transparent mode, the rendezvous could not be reached or
the contact did not come online in time.
.TP
4
A relay rate-limited the request, or the recipient's inbox is full.
.SH EXAMPLES
.TP
\fBjasper relay \-\-listen 0.0.0.0:8080\fR
Run a relay.
.TP
\fBjasper init && jasper id\fR
Create your identity and show the key to give to people.
.TP
\fBjasper contacts add bob bob.pub && jasper send bob "hello"\fR
Save a contact and write to them.
.TP
\fBjasper receive \-\-watch\fR
Print new messages as they arrive.
.TP
\fBjasper chat bob \-\-transparent\fR
Talk to bob directly over WebRTC once both of you are online (needs \fBstun\fR and
\fBrendezvous\fR in the \fB[client]\fR section).
.SH SEE ALSO
\fBjasper\-relay\fR(1), \fBjasper\-init\fR(1), \fBjasper\-send\fR(1), \fBjasper\-receive\fR(1),
\fBjasper\-chat\fR(1), \fBjasper\-config\fR(1), \fBjasper.toml\fR(5)
"#;

/// The date on every page (change it with the release).
pub const MAN_DATE: &str = "2026-11-26";

/// `command` as its pages show it: without clap's `help` subcommands, which have no page
/// (`--help` on each command says the same).
fn for_pages(command: clap::Command) -> clap::Command {
    command
        .disable_help_subcommand(true)
        .mut_subcommands(for_pages)
}

fn render(command: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(for_pages(command))
        .date(MAN_DATE)
        .source(format!("jasper {}", env!("CARGO_PKG_VERSION")))
        .manual("Jasper manual")
        .render(&mut page)?;
    // clap_mangen puts an empty line (a paragraph break) between two line breaks before a
    // list of possible values; mandoc rightly warns. One line break is what is meant.
    let text = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    Ok(text.replace("\n.br\n\n.br\n", "\n.br\n").into_bytes())
}

/// Writes a page for each visible subcommand of `parent` (named `prefix`), and of theirs in
/// turn: `jasper-contacts.1`, `jasper-contacts-add.1`, the names the pages refer to.
fn write_subcommand_pages(
    parent: &clap::Command,
    prefix: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix}-{}", sub.get_name());
        let path = dir.join(format!("{name}.1"));
        let mut page = render(sub.clone().name(name.clone()).display_name(name.clone()))?;
        let up = if prefix == "jasper" {
            String::new()
        } else {
            format!("\\fB{}\\fR(1), ", prefix.replace('-', "\\-"))
        };
        writeln!(
            page,
            ".SH SEE ALSO\n{up}\\fBjasper\\fR(1), \\fBjasper.toml\\fR(5)"
        )?;
        std::fs::write(&path, page)?;
        written.push(path);
        write_subcommand_pages(sub, &name, dir, written)?;
    }
    Ok(())
}

/// Writes jasper(1), one page per subcommand (nested ones too) and jasper.toml(5) into `dir`;
/// returns the files written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let mut written = Vec::new();

    let path = dir.join("jasper.1");
    let mut page = render(command.clone())?;
    page.extend_from_slice(JASPER_EXTRA.as_bytes());
    std::fs::write(&path, page)?;
    written.push(path);
    write_subcommand_pages(&command, "jasper", dir, &mut written)?;

    let path = dir.join("jasper.toml.5");
    let body =
        super::config_page::render_body(super::SAMPLE_CONFIG).map_err(std::io::Error::other)?;
    let page = format!(
        ".TH jasper.toml 5 {MAN_DATE} \"jasper {}\" \"Jasper manual\"\n{body}",
        env!("CARGO_PKG_VERSION")
    );
    std::fs::write(&path, page)?;
    written.push(path);
    Ok(written)
}
