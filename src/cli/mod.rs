//! The command line: one clap definition that drives parsing, `--help`, the man pages and the
//! completions; one module per command family runs them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::proto::ServerEntry;

/// Returns early with a [`UsageError`]: the user asked for something that cannot be done as
/// asked (exit status 2, [`EXIT_USER`]). Takes `format!` arguments.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::UsageError(format!($($arg)*)).into())
    };
}

pub mod assets;
mod call;
mod chat;
pub mod config_page;
mod contacts;
mod identity;
pub mod man;
mod messaging;
mod relay;
mod serve;
mod stun;
mod stun_check;

use crate::client::messaging::Kind;

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
    /// Run the STUN service (UDP and TLS) and the rendezvous of transparent mode
    Stun(StunArgs),
    /// Run every service enabled in the configuration in one process (the self-hosting shape)
    Serve,
    /// Create your identity (an RSA-4096 key) and a configuration file if there is none
    Init(InitArgs),
    /// Show your public key and its fingerprint, to give to the people you talk to
    Id(IdArgs),
    /// Set, change or remove the passphrase of your private key (and of your receive keys)
    Passphrase(PassphraseArgs),
    /// Manage your contacts: names for the public keys you talk to
    Contacts(ContactsArgs),
    /// Send a message to a contact or a group (TEXT "-" reads standard input); prints its id
    Send(SendArgs),
    /// Fetch, decrypt and verify new messages from your RX relay; prints only what is new
    Receive(ReceiveArgs),
    /// Show the conversation with a contact or in a group, edits applied
    History(HistoryArgs),
    /// Replace the text of a message you sent
    Edit(EditArgs),
    /// Delete a message you sent
    Delete(DeleteArgs),
    /// React to a message with :name:
    React(ReactArgs),
    /// Group conversations: one packet per member, each through its own relay
    Group(GroupArgs),
    /// The reactions you can give and see: built-in emoji shortcodes and your own
    Reactions(ReactionsArgs),
    /// Chat with a contact or a group: lines you type go to them, their messages are printed as
    /// they come
    Chat(ChatArgs),
    /// Call a contact (voice, directly over WebRTC): they are rung through the relays and
    /// answer with `jasper call` naming you
    Call(CallArgs),
    /// Show your public address as the STUN service sees it (over TLS, and over UDP)
    StunCheck(StunCheckArgs),
    /// Show the relays you know, their load and roles, and what that means for anonymity; block
    /// one
    Servers(ServersArgs),
    /// Print the sample configuration, or check a configuration file
    Config(ConfigArgs),
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Write the man pages into a directory (for packaging)
    #[command(hide = true)]
    Man {
        /// Where to write them
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the generated packaging files (completions, the service's configuration) into a
    /// directory
    #[command(hide = true)]
    Assets {
        /// Where to write them (the repository's `packaging/`)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `jasper config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// Configuration operations.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print a commented configuration with every key and its default
    Example,
    /// Check a configuration file; errors name the line
    Check {
        /// The file (default: the one jasper reads: --config, else
        /// $XDG_CONFIG_HOME/jasper/config.toml)
        file: Option<PathBuf>,
    },
}

/// A spinner with `message` on stderr for something a person waits on; on a terminal only
/// (hidden otherwise, so that scripts and logs get plain lines).
pub(crate) fn spinner(
    message: impl Into<std::borrow::Cow<'static, str>>,
) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// The commented sample configuration (packaging/jasper.toml).
pub const SAMPLE_CONFIG: &str = include_str!("../../packaging/jasper.toml");

/// `jasper group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// What to do
    #[command(subcommand)]
    pub action: GroupAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// Group operations.
#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Create a group with contacts and tell them
    Create {
        /// The group's name
        name: String,
        /// Contacts to include
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add contacts to a group; everyone in it is told, and they get what is sent from now on
    Add {
        /// The group
        name: String,
        /// Contacts to add
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from a group; they are told too, and get nothing more from it
    Remove {
        /// The group
        name: String,
        /// Members to remove: contacts, or members' fingerprints as `group list` shows them
        /// (their first 8 or more hex digits)
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group: its members are told, and you get nothing more from it
    Leave {
        /// The group
        name: String,
    },
    /// Forget a group you are out of, and its history (jasper keeps at most 1,000 groups)
    Forget {
        /// The group
        name: String,
    },
    /// Send a message to everyone in a group
    Send {
        /// The group
        name: String,
        /// The message ("-" reads standard input)
        #[arg(allow_hyphen_values = true)]
        text: String,
    },
    /// List groups and their members
    List,
}

/// `jasper servers`.
#[derive(Debug, Args)]
pub struct ServersArgs {
    /// Block or unblock a relay (without one: show the relays)
    #[command(subcommand)]
    pub action: Option<ServersAction>,
    /// Print JSON (one object per relay when listing)
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `jasper servers` can change.
#[derive(Debug, Subcommand)]
pub enum ServersAction {
    /// Never use or learn a relay again
    ///
    /// The relay is forgotten, and the keys it carried packets to or read the inbox of move to
    /// other relays. It is for relays learned from others: a configured relay is removed from
    /// [client] servers instead.
    Block {
        /// The relay, "host:port" as `jasper servers` shows it
        relay: ServerEntry,
    },
    /// Let a blocked relay be learned and used again
    Unblock {
        /// The relay, "host:port"
        relay: ServerEntry,
    },
}

/// Flags every messaging command takes.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// Read the key's passphrase from the first line of standard input
    #[arg(long, global = true)]
    pub passphrase_stdin: bool,

    /// Print JSON (one object per line)
    #[arg(long, global = true)]
    pub json: bool,
}

/// `jasper send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The contact or group (a contact's name comes first)
    pub name: String,
    /// The message ("-" reads standard input)
    #[arg(allow_hyphen_values = true)]
    pub text: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// The message an edit, deletion or reaction is about.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The contact or group whose conversation holds it
    pub name: String,
    /// The message's id, as `send` and `history` print it; its first characters are enough
    /// (at least 4) when no other message of the conversation starts with them
    pub id: String,
}

/// `jasper edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    /// The new text ("-" reads standard input)
    #[arg(allow_hyphen_values = true)]
    pub text: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// `jasper delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// `jasper react`.
#[derive(Debug, Args)]
pub struct ReactArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
    /// The reaction, written :name: (e.g. :thumbsup:)
    pub reaction: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// A time between polls of the relays: at least 100 ms (0 would poll without pause, or
/// panic a timer), at most a day.
fn poll_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(86_400))
        .contains(&d)
    {
        return Err("must be between 100ms and 1day".into());
    }
    Ok(d)
}

/// A time to wait or to last: at most a week (timers built from longer ones overflow).
fn bounded_wait(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d > std::time::Duration::from_secs(7 * 86_400) {
        return Err("must be at most 1week".into());
    }
    Ok(d)
}

/// `jasper receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Keep polling
    #[arg(long)]
    pub watch: bool,
    /// Time between polls with --watch (100ms to 1day)
    #[arg(long, default_value = "5s", value_parser = poll_interval)]
    pub interval: std::time::Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// `jasper chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The contact, or a group (through the relays only)
    pub name: String,
    /// Talk directly over WebRTC (transparent mode): faster, but the owner of the STUN service
    /// sees which two keys meet. Needs [client] stun and rendezvous
    #[allow(rustdoc::broken_intra_doc_links)] // `[client]` is a config section, in `--help`
    #[arg(long)]
    pub transparent: bool,
    /// How long to wait for the contact to come online (transparent mode)
    #[arg(long, default_value = "60s", value_parser = bounded_wait)]
    pub wait: std::time::Duration,
    /// When the contact does not come online: ask (on a terminal; otherwise fail), anonymous
    /// (chat through the relays instead) or fail (exit status 3)
    #[arg(long, value_enum, default_value_t = Fallback::Ask)]
    pub fallback: Fallback,
    /// Time between checks of the relays for new messages (anonymous mode; 100ms to 1day)
    #[arg(long, default_value = "2s", value_parser = poll_interval)]
    pub interval: std::time::Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// `jasper call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The contact
    pub name: String,
    /// Audio to send: "mic" (the microphone, through arecord), "-" (raw PCM on standard
    /// input), "silence", or a file (WAV, or raw PCM; ./mic for a file named like a keyword);
    /// 16-bit mono at 8,000 Hz
    #[arg(long, value_name = "SOURCE", default_value = "mic")]
    pub input: crate::client::audio::AudioSource,
    /// Where their audio goes: "speaker" (through aplay), "-" (raw PCM on standard output),
    /// "none", or a file, readable only by you (WAV if it ends in .wav, raw PCM otherwise)
    #[arg(long, value_name = "SINK", default_value = "speaker")]
    pub output: crate::client::audio::AudioSink,
    /// How long to wait for the contact to take the call
    #[arg(long, default_value = "60s", value_parser = bounded_wait)]
    pub wait: std::time::Duration,
    /// Do not ring: by default a message through the relays tells the contact that you are
    /// calling (their `receive --watch` or `chat` shows it); skip it when they call you too
    #[arg(long)]
    pub no_ring: bool,
    /// Hang up after this long (default: when either side hangs up or the input ends)
    #[arg(long, value_parser = bounded_wait)]
    pub duration: Option<std::time::Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: MessageArgs,
}

/// `jasper stun-check`.
#[derive(Debug, Args)]
pub struct StunCheckArgs {
    /// Print one JSON object: tls {server, address, certificate} and udp {server, address}
    #[arg(long)]
    pub json: bool,
}

/// What `jasper chat --transparent` does when the contact does not come online in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Ask on the terminal; fail when standard input is not a terminal
    Ask,
    /// Chat through the relays instead
    Anonymous,
    /// Give up with exit status 3
    Fail,
}

/// `jasper history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The contact or group
    pub name: String,
    /// Only the last N messages
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
    /// One JSON object per message: id, sender, content, timestamp, edited, reactions
    #[arg(long)]
    pub json: bool,
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

    /// Create an additional key that only receives, at PATH (then list it in
    /// `[identity] receive_keys`); it takes the identity's passphrase, if it has one
    /// (`--passphrase-stdin` then reads that one)
    #[arg(long, value_name = "PATH")]
    pub receive_key: Option<PathBuf>,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// `jasper reactions`.
#[derive(Debug, Args)]
pub struct ReactionsArgs {
    /// Add or remove one of your own (without one: list them all)
    #[command(subcommand)]
    pub action: Option<ReactionsAction>,
    /// Print JSON (one object per reaction when listing)
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `jasper reactions` can change.
#[derive(Debug, Subcommand)]
pub enum ReactionsAction {
    /// Add a reaction of your own (or change what one shows)
    Add {
        /// Its name, `name` or `:name:` (letters, digits, _ + and -)
        name: String,
        /// What it shows: an emoji, or a few characters
        emoji: String,
    },
    /// Remove a reaction you added
    Rm {
        /// Its name
        name: String,
    },
}

/// Flags of `jasper passphrase`.
#[derive(Debug, Args)]
pub struct PassphraseArgs {
    /// Remove the passphrase: the keys are written unencrypted (anyone who can read the files
    /// can read your messages)
    #[arg(long)]
    pub remove: bool,

    /// Read the passphrases from standard input instead of prompts: the current one on the
    /// first line (only when the key has one), then the new one
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
        /// A picture to show for the contact: PNG, JPEG, GIF or WebP, up to 1 MiB (copied
        /// into the data directory)
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
        /// The picture: PNG, JPEG, GIF or WebP, up to 1 MiB (it replaces the last one)
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

/// Flags of `jasper stun`; they override the `[stun]` section of the configuration.
#[derive(Debug, Args)]
pub struct StunArgs {
    /// Address and port of STUN over UDP (config: stun.udp_listen; default 0.0.0.0:3478)
    #[arg(long, value_name = "ADDR:PORT")]
    pub udp_listen: Option<SocketAddr>,

    /// Address and port of STUN over TLS and the rendezvous (config: stun.tls_listen; default
    /// 0.0.0.0:5349)
    #[arg(long, value_name = "ADDR:PORT")]
    pub tls_listen: Option<SocketAddr>,

    /// Directory of the generated TLS certificate and key (config: stun.data_dir)
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
    let load = || Config::load(cli.config.as_deref());
    match cli.command {
        // These work whatever the configuration says.
        Command::Config(ConfigArgs {
            action: ConfigAction::Example,
        }) => {
            print!("{SAMPLE_CONFIG}");
            Ok(())
        }
        Command::Config(ConfigArgs {
            action: ConfigAction::Check { file },
        }) => {
            match Config::load(file.or(cli.config).as_deref())? {
                (_, Some(path)) => println!("{}: ok", path.display()),
                (_, None) => println!(
                    "no configuration file at {}: every setting has its default",
                    crate::config::default_config_path().map_or_else(
                        || "$XDG_CONFIG_HOME/jasper/config.toml".into(),
                        |p| p.display().to_string()
                    )
                ),
            }
            Ok(())
        }
        Command::Completions { shell } => {
            // `print!`, as every command's output: a reader gone stops it quietly (main.rs).
            print!("{}", String::from_utf8_lossy(&assets::completions(shell)));
            Ok(())
        }
        Command::Man { out } => {
            for path in man::write_pages(&out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Assets { out } => {
            for path in assets::write_assets(&out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Relay(RelayArgs {
            action: Some(RelayAction::Peers(args)),
            ..
        }) => relay::show_peers(&load()?.0, &args),
        Command::Relay(args) => {
            let (config, source) = load()?;
            relay::run_relay(config, args, source)
        }
        Command::Stun(args) => {
            let (config, source) = load()?;
            stun::run_stun(config, args, source)
        }
        Command::Serve => {
            let (config, source) = load()?;
            if let Some(path) = &source {
                tracing::info!(config = %path.display(), "configuration loaded");
            }
            serve::serve(config)
        }
        Command::Init(args) => {
            // A configuration file named but not there yet is what `init` writes.
            let (config, source) = match cli.config.as_deref() {
                Some(path) if !path.exists() => (Config::default(), None),
                _ => load()?,
            };
            identity::init(&config, source.as_deref(), cli.config.as_deref(), &args)
        }
        Command::Id(args) => identity::show_id(&load()?.0, &args),
        Command::Passphrase(args) => identity::change_passphrase(&load()?.0, &args),
        Command::Reactions(args) => messaging::reactions(&load()?.0, &args),
        Command::Contacts(args) => contacts::run(&load()?.0, args),
        Command::Send(args) => messaging::send(&load()?.0, &args),
        Command::Receive(args) => messaging::receive(&load()?.0, &args),
        Command::History(args) => messaging::history(&load()?.0, &args),
        Command::Edit(args) => messaging::act(
            &load()?.0,
            Kind::Edit,
            &args.target,
            &args.text,
            &args.common,
        ),
        Command::Delete(args) => {
            messaging::act(&load()?.0, Kind::Delete, &args.target, "", &args.common)
        }
        Command::React(args) => messaging::act(
            &load()?.0,
            Kind::React,
            &args.target,
            &args.reaction,
            &args.common,
        ),
        Command::Group(args) => messaging::group(&load()?.0, &args),
        Command::Chat(args) => chat::run(&load()?.0, &args),
        Command::Call(args) => call::run(&load()?.0, &args),
        Command::StunCheck(args) => stun_check::run(&load()?.0, &args),
        Command::Servers(args) => messaging::servers(&load()?.0, &args),
    }
}

/// A mistake in what the user asked for (an empty message, a group that does not exist, a key
/// that exists already); its message says what to do instead. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for failures not covered below (storage, bugs).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for user errors: bad arguments, configuration, unknown contact, wrong
/// passphrase (clap's own usage errors are 2 as well).
pub const EXIT_USER: u8 = 2;
/// Exit status when no relay could be reached, or one failed on its side (5xx).
pub const EXIT_NETWORK: u8 = 3;
/// Exit status when a relay rate-limits us (or the recipient's inbox is full).
pub const EXIT_RATE_LIMITED: u8 = 4;

fn rendezvous_exit_code(r: &crate::client::rendezvous::RendezvousError) -> u8 {
    use crate::client::rendezvous::RendezvousError as R;
    match r {
        R::Address(_) | R::WrongCertificate { .. } | R::Refused(_) => EXIT_USER,
        R::Unreachable { .. } | R::Timeout | R::Protocol(_) => EXIT_NETWORK,
    }
}

/// An error and its causes on one line, each said once: many of our errors already name their
/// cause in their own message (`{path}: {source}`), so a cause that the text so far contains
/// is not repeated. Text from the other side (a relay's or rendezvous service's `error`) is in
/// it: control characters come out escaped, so that it cannot drive the terminal, and lines
/// after the first are indented, so that none passes for a line of its own.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    crate::client::terminal::block(&report, "  ").into_owned()
}

/// Whether a key file's error is for the user to mend (a wrong passphrase, a file that is not
/// a key, or one others can read), not a failure of the machine (a full disk) or of the code.
fn identity_error_is_the_user_s(e: &crate::crypto::IdentityError) -> bool {
    use crate::crypto::IdentityError as E;
    match e {
        E::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        ),
        E::Crypto(_) => false,
        _ => true,
    }
}

/// The exit status for an error, from the most specific cause in its chain.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use crate::client::messaging::MessagingError;
    use crate::client::servers::ServersError;
    use crate::client::transport::TransportError;
    let transport = |t: &TransportError| match t {
        // A relay failing on its side is, like one not reachable, what retrying may mend.
        TransportError::Unreachable { .. } => EXIT_NETWORK,
        TransportError::Refused { status, .. } if *status >= 500 => EXIT_NETWORK,
        TransportError::RateLimited { .. } => EXIT_RATE_LIMITED,
        TransportError::TooLarge { .. } => EXIT_USER,
        _ => EXIT_FAILURE,
    };
    let servers = |s: &ServersError| match s {
        ServersError::NoneReachable => EXIT_NETWORK,
        ServersError::NoneKnown | ServersError::Configured(_) => EXIT_USER,
        ServersError::Db(_) => EXIT_FAILURE,
    };
    for cause in err.chain() {
        if let Some(t) = cause.downcast_ref::<crate::client::transparent::TransparentError>() {
            use crate::client::transparent::TransparentError as T;
            return match t {
                T::Rendezvous(r) => rendezvous_exit_code(r),
                T::Rtc(_) | T::PeerAbsent(_) => EXIT_NETWORK,
                T::BadDescription(_) => EXIT_FAILURE,
                T::OtherPurpose(_) => EXIT_USER,
            };
        }
        if let Some(r) = cause.downcast_ref::<crate::client::rendezvous::RendezvousError>() {
            return rendezvous_exit_code(r);
        }
        if let Some(t) = cause.downcast_ref::<TransportError>() {
            return transport(t);
        }
        if let Some(s) = cause.downcast_ref::<ServersError>() {
            return servers(s);
        }
        if let Some(m) = cause.downcast_ref::<MessagingError>() {
            return match m {
                MessagingError::Transport(t) => transport(t),
                MessagingError::Servers(s) => servers(s),
                MessagingError::Contacts(crate::client::ContactError::Db(_)) => EXIT_FAILURE,
                MessagingError::Usage(_) | MessagingError::Contacts(_) => EXIT_USER,
                _ => EXIT_FAILURE,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some()
            || cause
                .downcast_ref::<crate::client::ContactError>()
                .is_some_and(|e| !matches!(e, crate::client::ContactError::Db(_)))
            || cause
                .downcast_ref::<crate::client::reactions::ReactionError>()
                .is_some_and(|e| !matches!(e, crate::client::reactions::ReactionError::Db(_)))
            || cause
                .downcast_ref::<crate::crypto::IdentityError>()
                .is_some_and(identity_error_is_the_user_s)
            || cause.downcast_ref::<crate::config::ConfigError>().is_some()
            || cause
                .downcast_ref::<crate::client::audio::AudioError>()
                .is_some()
        {
            return EXIT_USER;
        }
    }
    EXIT_FAILURE
}

#[cfg(test)]
mod tests {
    use super::error_report;

    /// An error that names its cause in its own message, as most of ours do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Naming {
        path: &'static str,
        source: std::io::Error,
    }

    /// An error that leaves its cause to the chain.
    #[derive(Debug, thiserror::Error)]
    #[error("the relay failed")]
    struct Silent(#[source] std::io::Error);

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn a_key_file_error_is_the_user_s_unless_the_machine_failed() {
        use super::{EXIT_FAILURE, EXIT_USER, exit_code};
        use crate::crypto::IdentityError as E;
        let io = |kind| E::Io {
            path: "/k.pem".into(),
            source: std::io::Error::new(kind, "x"),
        };
        for (err, code) in [
            (E::WrongPassphrase("/k.pem".into()), EXIT_USER),
            (E::NotAKey("/k.pem".into()), EXIT_USER),
            (io(std::io::ErrorKind::PermissionDenied), EXIT_USER),
            (io(std::io::ErrorKind::StorageFull), EXIT_FAILURE),
            (E::Crypto("rng".into()), EXIT_FAILURE),
        ] {
            let text = err.to_string();
            assert_eq!(exit_code(&anyhow::Error::new(err)), code, "{text}");
        }
    }

    #[test]
    fn a_cause_the_message_names_is_not_repeated() {
        let err = anyhow::Error::new(Naming {
            path: "/etc/x.toml",
            source: not_found(),
        });
        assert_eq!(error_report(&err), "cannot read /etc/x.toml: no such file");
    }

    #[test]
    fn a_cause_the_message_leaves_out_is_added() {
        let err = anyhow::Error::new(Silent(not_found()));
        assert_eq!(error_report(&err), "the relay failed: no such file");
    }

    #[test]
    fn text_from_the_other_side_cannot_drive_the_terminal() {
        let hostile = anyhow::anyhow!("\u{1b}]0;owned\u{7}\u{1b}[2J").context("refused");
        let report = error_report(&hostile);
        assert!(
            !report.contains('\u{1b}') && !report.contains('\u{7}'),
            "{report}"
        );
        assert!(report.starts_with("refused: "), "{report}");
    }

    #[test]
    fn contexts_and_causes_are_each_said_once_in_order() {
        let err = anyhow::Error::new(Naming {
            path: "/etc/x.toml",
            source: not_found(),
        })
        .context("starting the relay")
        .context("jasper serve");
        assert_eq!(
            error_report(&err),
            "jasper serve: starting the relay: cannot read /etc/x.toml: no such file"
        );
        let err = anyhow::Error::new(Silent(not_found())).context("jasper serve");
        assert_eq!(
            error_report(&err),
            "jasper serve: the relay failed: no such file"
        );
    }
}
