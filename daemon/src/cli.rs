//! Command-line interface of the `nymd` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// nymd runs Nym mixnet client identities for other programs. Each identity
/// serves nym-client's websocket API on its own port; manage them with
/// `nymctl`.
#[derive(Debug, Parser)]
#[command(name = "nymd", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: /etc/nymd/nymd.toml, if it exists].
    #[arg(long, env = "NYMD_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Where identities are stored [default: $STATE_DIRECTORY under systemd, /var/lib/nymd as root, else $XDG_DATA_HOME/nymd].
    #[arg(long, env = "NYMD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Control socket [default: $RUNTIME_DIRECTORY/nymd.sock under systemd, /run/nymd/nymd.sock as root, else $XDG_RUNTIME_DIR/nymd/nymd.sock].
    #[arg(long, env = "NYMD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Start the embedded local mixnet in-process and point every identity at
    /// it. With an empty store, identity `default` is created on port 1977.
    #[arg(long, conflicts_with_all = ["nym_api", "topology_file"])]
    pub localnet: bool,

    /// With --localnet: do not run the local network requester (a SOCKS5
    /// exit to loopback destinations only) on the local mixnet's first gateway.
    #[arg(long, requires = "localnet")]
    pub no_localnet_exit: bool,

    /// nym-api base URL to fetch the topology from (repeatable) [default: Nym mainnet].
    #[arg(long = "nym-api", value_name = "URL")]
    pub nym_api: Vec<String>,

    /// Use a fixed topology file (nym-client's --custom-mixnet format).
    #[arg(long, value_name = "FILE", conflicts_with = "nym_api")]
    pub topology_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace [default: from the config file, else info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log form: journald records when stderr is systemd's journal stream, else text; text is coloured only on a terminal.
    #[arg(
        long,
        env = "NYMD_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto
    )]
    pub log_format: LogFormat,

    /// Serve OpenMetrics on this address, e.g. 127.0.0.1:9477 [default: [metrics] listen in the config file, else off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Subcommand; none runs the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the default configuration file (the shipped /etc/nymd/nymd.toml).
    PrintDefaultConfig,
    /// Print the manual page (roff).
    Man,
    /// Print a shell completion script.
    Completions {
        /// Shell to generate for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}
