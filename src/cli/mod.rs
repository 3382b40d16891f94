//! The command line: one clap definition that drives parsing, `--help`, and (later) the man
//! pages and completions; one module per command family runs them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

mod contacts;
mod identity;
mod relay;

pub use relay::shutdown_signal;

/// Jasper: anonymous messaging over a mesh of relays.
#[derive(Debug, Parser)]
#[command(
    name = "jasper",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file (default: $XDG_CONFIG_HOME/jasper/config.toml when it exists)
    #[arg(long, global = true, env = "JASPER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a relay: the REST API of the Jasper mesh, backed by an embedded database
    Relay(RelayArgs),
    /// Create your identity (an RSA-4096 key) and a configuration file if there is none
    Init(InitArgs),
    /// Show your public key and its fingerprint, to give to the people you talk to
    Id(IdArgs),
    /// Manage your contacts: names for the public keys you talk to
    Contacts(ContactsArgs),
}

/// Flags of `jasper init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Keep the private key unencrypted (anyone who can read the file can read your messages)
    #[arg(long, conflicts_with = "passphrase_stdin")]
    pub no_passphrase: bool,

    /// Read the passphrase from the first line of standard input instead of a prompt
    #[arg(long)]
    pub passphrase_stdin: bool,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Flags of `jasper id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Read the passphrase from standard input, if the public key must be read from the
    /// private one
    #[arg(long)]
    pub passphrase_stdin: bool,

    /// Print `{"public_key", "fingerprint"}`
    #[arg(long)]
    pub json: bool,
}

/// `jasper contacts`.
#[derive(Debug, Args)]
pub struct ContactsArgs {
    /// What to do with contacts
    #[command(subcommand)]
    pub action: ContactsAction,

    /// Print JSON (one object per line for lists)
    #[arg(long, global = true)]
    pub json: bool,
}

/// Contact operations.
#[derive(Debug, Subcommand)]
pub enum ContactsAction {
    /// Save a public key under a name
    Add {
        /// The name to use
        name: String,
        /// The key: base64 DER, PEM text, or a file holding either
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// A picture to show for the contact (copied into the data directory)
        #[arg(long, value_name = "PATH")]
        avatar: Option<PathBuf>,
    },
    /// List contacts
    List,
    /// Show one contact
    Show {
        /// The contact
        name: String,
    },
    /// Rename a contact
    Rename {
        /// The current name
        name: String,
        /// The new name
        new_name: String,
    },
    /// Set a contact's picture
    Avatar {
        /// The contact
        name: String,
        /// The picture
        path: PathBuf,
    },
    /// Remove a contact
    Rm {
        /// The contact
        name: String,
    },
}

/// Flags of `jasper relay`; they override the `[relay]` section of the configuration.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RelayArgs {
    /// Inspect a running relay instead of running one
    #[command(subcommand)]
    pub action: Option<RelayAction>,

    /// Address and port to listen on (config: relay.listen; default 0.0.0.0:8080)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for the relay's database (config: relay.data_dir)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What `jasper relay` can do besides running.
#[derive(Debug, Subcommand)]
pub enum RelayAction {
    /// Show the peers of a running relay: state, score, penalties (asks the relay on loopback)
    Peers(PeersArgs),
}

/// Flags of `jasper relay peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// The relay to ask (default: the configured listen address, on loopback)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// One JSON object per peer and line
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Relay(RelayArgs {
            action: Some(RelayAction::Peers(args)),
            ..
        }) => relay::show_peers(&config, &args),
        Command::Relay(args) => relay::run_relay(config, args, source),
        Command::Init(args) => {
            identity::init(&config, source.as_deref(), cli.config.as_deref(), &args)
        }
        Command::Id(args) => identity::show_id(&config, &args),
        Command::Contacts(args) => contacts::run(&config, args),
    }
}
