//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Exit codes, stable for scripts.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const OTHER: u8 = 1;
    /// Bad command line or argument value, found by nymctl or by nymd
    /// (also: `remove` without a terminal and without `--yes`).
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
  2  usage error: a bad command line or argument value
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
    /// Show or change an identity's SOCKS5 proxy
    Socks5(Socks5Args),
    /// Print the Nym address of an identity
    Address(IdArg),
    /// List gateways of the current topology
    Gateways(GatewaysArgs),
    /// Summarise the current topology
    Topology,
    /// Send a message through an identity
    Send(SendArgs),
    /// Print the messages an identity receives, as they arrive
    Listen(ListenArgs),
    /// Answer an anonymous sender through the reply SURBs it sent
    Reply(ReplyArgs),
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
    /// Give the identity a SOCKS5 proxy (SOCKS4a and SOCKS5 CONNECT, on 127.0.0.1)
    #[arg(long)]
    pub socks5: bool,
    /// SOCKS5 port (default: the next free one from 1080)
    #[arg(long, value_name = "N", requires = "socks5")]
    pub socks5_port: Option<u16>,
    /// Network requester for the SOCKS5 connections: its Nym address, or auto (one from the
    /// directory)
    #[arg(long, value_name = "ADDRESS|auto", requires = "socks5")]
    pub provider: Option<String>,
    /// SOCKS5 as plain messages carrying the identity's address (as nym-socks5-client does),
    /// not anonymous ones with reply SURBs
    #[arg(long, requires = "socks5")]
    pub plain_socks5: bool,
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

/// `socks5`.
#[derive(Debug, Args)]
#[command(after_help = "\
Actions:
  enable            serve the SOCKS5 port (a new proxy takes the next free port from 1080)
  disable           stop serving it (the settings stay)
  provider ADDRESS  send the connections to this network requester (a Nym address)
  provider auto     choose one from the directory (an exit whose gateway is in the topology)
  show              show the settings and counters (also without an action)

Programs connect with SOCKS4a or SOCKS5 (CONNECT; names are resolved at the exit),
e.g. curl --socks5-hostname 127.0.0.1:1080 https://nymtech.net/. Who may connect is
decided as for the identity's websocket port (nymctl access ID). By default the
connections are anonymous: the network requester answers through reply SURBs and never
learns the identity's address; --plain sends the address with each connection, as
nym-socks5-client does. A running identity restarts when the settings change.")]
pub struct Socks5Args {
    /// Identity name
    #[arg(value_name = "ID")]
    pub id: String,
    /// What to do (default: show)
    #[arg(value_enum, value_name = "ACTION")]
    pub action: Option<Socks5Action>,
    /// The network requester, for `provider`: a Nym address, or auto
    #[arg(value_name = "ADDRESS|auto")]
    pub address: Option<String>,
    /// SOCKS5 port
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Anonymous connections, with reply SURBs (the default)
    #[arg(long, conflicts_with = "plain")]
    pub anonymous: bool,
    /// Plain connections that carry the identity's address
    #[arg(long)]
    pub plain: bool,
}

/// What `socks5` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Socks5Action {
    /// Serve the port
    Enable,
    /// Stop serving the port
    Disable,
    /// Set the network requester
    Provider,
    /// Show the settings
    Show,
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
#[command(after_help = "\
Without --reply-surbs the message carries no sender tag: the recipient cannot
answer it. With --reply-surbs N it is repliable (nym-client's sendAnonymous):
it carries the identity's sender tag and N reply SURBs, through which the
recipient answers without learning the address (nymctl reply, or an app's
reply). nymctl then sends as an app on the identity's websocket port, so your
user must be allowed to connect to it (nymctl access ID); it takes no
received message from the identity's apps. N is at most 500; 0 relies on
SURBs sent before.")]
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
    /// Send anonymously with N reply SURBs, so the recipient can answer
    #[arg(long, value_name = "N")]
    pub reply_surbs: Option<u32>,
}

/// `listen`.
#[derive(Debug, Args)]
#[command(after_help = "\
nymctl connects to the identity's websocket port as one more app (in binary
mode, so payloads arrive intact) and prints what arrives from then on. nymd
gives every message to every connected app, and nymctl takes none from the
others: a message that only nymctl saw still waits for the identity's apps.
Your user must be allowed to connect to the port (nymctl access ID).

Text: one line per message, as UTF-8 (invalid bytes as U+FFFD, control
characters escaped); a message sent anonymously starts with its sender tag in
brackets: answer it with nymctl reply ID --tag TAG.
--json: one JSON object per line: id, bytes, message_base64 (the exact
payload), text (the payload if it is UTF-8, else null), sender_tag (or null).

Exit status: 0 after --count messages, or when --timeout ends without
--count; 1 if --timeout ends before --count messages came, or the identity
stops.")]
pub struct ListenArgs {
    /// Identity whose messages to print
    #[arg(value_name = "ID")]
    pub id: String,
    /// Exit after N messages
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECS seconds
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// `reply`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["message", "file"])))]
#[command(after_help = "\
The tag is the sender tag of a message the identity received (nymctl listen
shows it); the answer travels in the reply SURBs that sender attached, and
the identity asks the sender for more when they run out. nymctl sends as an
app on the identity's websocket port (see nymctl listen --help).")]
pub struct ReplyArgs {
    /// Identity that received the anonymous message
    #[arg(value_name = "ID")]
    pub id: String,
    /// Sender tag of the anonymous sender (base58, from nymctl listen)
    #[arg(long, value_name = "TAG")]
    pub tag: String,
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
