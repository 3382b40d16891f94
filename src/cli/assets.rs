//! The packaging files generated from the CLI and the sample configuration: shell
//! completions and the system service's configuration. `jasper assets --out packaging` writes
//! them; the committed copies are checked against this output by the tests.

use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{Cli, SAMPLE_CONFIG};

/// Where the system service keeps its data (systemd's `StateDirectory=jasper`, the container's
/// volume).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/jasper";

/// Shell completions for `jasper`: its visible subcommands (not the hidden ones that write
/// these files), as `--help` and the man pages list them.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "jasper", &mut out);
    out
}

/// The command line without its hidden subcommands (clap's generators list those too).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut visible = clap::Command::new(full.get_name().to_owned())
        .args(
            full.get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .cloned(),
        )
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(version) = full.get_version() {
        visible = visible.version(version.to_owned());
    }
    if let Some(about) = full.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}

const SYSTEM_PREAMBLE: &str = "\
# /etc/jasper/config.toml: the configuration of the system service (jasper.service, the
# container image). Its data lives under /var/lib/jasper, the only place the service may
# write, so every path below that the sample puts under $XDG_DATA_HOME/jasper is set to
# /var/lib/jasper here. Restart the service after a change: systemctl restart jasper
#
";

/// The system service's configuration: the sample with every path default under
/// `$XDG_DATA_HOME/jasper/` set to the same path under [`SYSTEM_DATA_DIR`].
pub fn system_config() -> String {
    let user_data = "\"$XDG_DATA_HOME/jasper/";
    let mut out = String::from(SYSTEM_PREAMBLE);
    for line in SAMPLE_CONFIG.lines() {
        match line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            Some((key, value)) if value.starts_with(user_data) => {
                let rest = &value[user_data.len()..];
                out.push_str(&format!("{key} = \"{SYSTEM_DATA_DIR}/{rest}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Writes `completions/{jasper.bash,_jasper,jasper.fish}` and `etc/jasper/config.toml` under
/// `dir`; returns the files written.
pub fn write_assets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |relative: &str, contents: &[u8]| -> std::io::Result<()> {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        written.push(path);
        Ok(())
    };
    write("completions/jasper.bash", &completions(Shell::Bash))?;
    write("completions/_jasper", &completions(Shell::Zsh))?;
    write("completions/jasper.fish", &completions(Shell::Fish))?;
    write("etc/jasper/config.toml", system_config().as_bytes())?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_config_keeps_data_under_var_lib_jasper() {
        let text = system_config();
        assert!(
            text.contains("\ndata_dir = \"/var/lib/jasper/relay\"\n"),
            "{text}"
        );
        assert!(!text.contains("\n# data_dir = \"$XDG_DATA_HOME"), "{text}");
        let config = crate::config::Config::from_toml(&text).unwrap();
        assert_eq!(
            config.relay.data_dir,
            Path::new("/var/lib/jasper/relay"),
            "{text}"
        );
    }
}
