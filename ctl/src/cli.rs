//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Exit codes, stable for scripts.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const OTHER: u8 = 1;
    /// Bad command line (also: `remove` without a terminal and without `--yes`).
    pub const USAGE: u8 = 2;
    /// nymd is not running (no socket, or nobody listening on it).
    pub const DAEMON_DOWN: u8 = 3;
    /// Not allowed (observe tier, or no access to the socket).
    pub const PERMISSION: u8 = 4;
    /// No such identity.
    pub const NOT_FOUND: u8 = 5;
    /// nymctl and nymd speak different protocol versions.
    pub const VERSION_MISMATCH: u8 = 6;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  other failure
  2  usage error
  3  nymd is not running
  4  permission denied
  5  identity not found
  6  nymctl and nymd versions do not match

Environment:
  NYMD_SOCKET  control socket (default: /run/nymd/nymd.sock as root,
               else $XDG_RUNTIME_DIR/nymd/nymd.sock)

With --json every command prints one JSON document with a \"schema_version\"
field (events --follow prints one per line).";

/// Control the nymd daemon: create, start, stop and watch Nym client
/// identities.
#[derive(Debug, Parser)]
#[command(name = "nymctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Path of nymd's control socket
    #[arg(long, global = true, env = "NYMD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an identity: keys, gateway registration, websocket port
    Init(InitArgs),
    /// Start an identity
    Start(IdArg),
    /// Stop an identity (its keys stay)
    Stop(IdArg),
    /// Stop and start an identity
    Restart(IdArg),
    /// Stop an identity and delete it with its keys
    Remove(RemoveArgs),
    /// List identities
    List,
    /// Show one identity in detail, or all
    Status(StatusArgs),
    /// Show or change who may connect to an identity's websocket port
    Access(AccessArgs),
    /// Print the Nym address of an identity
    Address(IdArg),
    /// List gateways of the current topology
    Gateways(GatewaysArgs),
    /// Summarise the current topology
    Topology,
    /// Send a message through an identity
    Send(SendArgs),
    /// Show the current state, and follow changes
    Events(EventsArgs),
    /// Import a nym-client identity folder (~/.nym/clients/<id>)
    Import(ImportArgs),
    /// The daemon itself
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the manual page (roff)
    Man,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the new identity
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Gateway identity key to register with (default: chosen by nymd)
    #[arg(long, value_name = "KEY")]
    pub gateway: Option<String>,
    /// Choose the gateway with the lowest latency
    #[arg(long)]
    pub latency_based_selection: bool,
    /// Websocket port for apps (default: the next free one from 1977)
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Websocket listen address (default: 127.0.0.1)
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// Create the identity but do not start it
    #[arg(long)]
    pub no_start: bool,
}

/// Commands that take one identity.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Identity name
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Identity name
    #[arg(value_name = "ID")]
    pub id: String,
    /// Do not ask for confirmation (required without a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Identity name (default: all)
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

/// `access`.
#[derive(Debug, Args)]
#[command(after_help = "\
Root and nymd's own user may always connect. A new identity also lets in the
user who created it; one created before access control lets in any local user.
Browsers send the page's origin, and nymd refuses pages of origins not allowed
here (apps that are not browsers send none). Without options: show the settings.
A running identity restarts when they change: its apps must reconnect.")]
pub struct AccessArgs {
    /// Identity name
    #[arg(value_name = "ID")]
    pub id: String,
    /// Let pages from this web origin connect, e.g. http://localhost:8080
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Stop letting pages from this origin connect
    #[arg(long, value_name = "ORIGIN")]
    pub remove_origin: Vec<String>,
    /// Let this local user connect
    #[arg(long, value_name = "NAME|UID")]
    pub allow_user: Vec<String>,
    /// Stop letting this user connect
    #[arg(long, value_name = "NAME|UID")]
    pub remove_user: Vec<String>,
    /// Let members of this local group connect
    #[arg(long, value_name = "NAME")]
    pub allow_group: Vec<String>,
    /// Stop letting members of this group connect
    #[arg(long, value_name = "NAME")]
    pub remove_group: Vec<String>,
    /// Let any local user connect (no user check)
    #[arg(long, conflicts_with = "only_listed")]
    pub any_local_user: bool,
    /// Let only root, nymd's user and the listed users and groups connect
    #[arg(long)]
    pub only_listed: bool,
}

/// `gateways`.
#[derive(Debug, Args)]
pub struct GatewaysArgs {
    /// Measure the latency to each gateway (slower)
    #[arg(long)]
    pub latency: bool,
}

/// `send`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["message", "file"])))]
pub struct SendArgs {
    /// Identity that sends
    #[arg(value_name = "ID")]
    pub id: String,
    /// Recipient Nym address
    #[arg(long, value_name = "ADDRESS")]
    pub to: String,
    /// The message text
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Send the contents of a file instead ("-" for standard input)
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen
    #[arg(long, short)]
    pub follow: bool,
    /// Only this identity (and daemon-wide events)
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name of the new identity
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// The nym-client folder, e.g. ~/.nym/clients/alice
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// `daemon …`.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Version, uptime and paths of the running daemon
    Info,
    /// Stop every identity and exit the daemon
    Shutdown,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}
