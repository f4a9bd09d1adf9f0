//! The daemon's configuration: `/etc/nymd/nymd.toml` (or `--config` /
//! `NYMD_CONFIG`), overridden by environment variables and flags.
//!
//! Precedence for each setting: command-line flag, then environment
//! variable, then the config file, then the built-in default.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the config file is looked for when none is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/nymd/nymd.toml";
/// Nym mainnet's nym-api.
pub const MAINNET_NYM_API: &str = "https://validator.nymtech.net/api/";
/// Port of the first identity (nym-client's default).
pub const DEFAULT_FIRST_PORT: u16 = 1977;

/// The commented default configuration, as shipped in `/etc/nymd/nymd.toml`
/// and printed by `nymd print-default-config`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# nymd configuration.
#
# Every setting can also be given on the command line (see `nymd --help`);
# flags win over environment variables (NYMD_STATE_DIR, NYMD_SOCKET), which
# win over this file.

[daemon]
# Where identities (keys, gateway registrations, settings) are kept.
# Default: systemd's StateDirectory ($STATE_DIRECTORY, /var/lib/nymd in
# nymd.service), else /var/lib/nymd when run as root, $XDG_DATA_HOME/nymd
# otherwise.
# state_dir = "/var/lib/nymd"

# The control socket nymctl and nym-tui connect to.
# Default: nymd.sock in systemd's RuntimeDirectory ($RUNTIME_DIRECTORY,
# /run/nymd in nymd.service), else /run/nymd/nymd.sock as root,
# $XDG_RUNTIME_DIR/nymd/nymd.sock otherwise.
# socket = "/run/nymd/nymd.sock"

# Log level: error, warn, info, debug or trace.
log_level = "info"

# Apps connected to the websocket ports of all identities together, at most
# (each identity also has its own limit, max_apps in its config.toml). A
# connection beyond it is closed before the websocket handshake.
# max_app_connections = 4096

# Memory, in MiB, that all identities together may hold for what other
# parties send them: messages waiting for an app, incomplete messages being
# reassembled, reply SURBs received, keys of the reply SURBs handed out.
# Each identity also bounds each of these on its own (128, 128, 32 and 32
# MiB, plus 64 MiB of messages on their way to the app port). When the
# total is reached, identities stop reading from their gateways (which keep
# the messages) and evict their own oldest incomplete messages, SURBs and
# keys first; `nymctl status` shows the use. nymd.service's MemoryHigh= and
# MemoryMax= are sized from the default: raise them with it.
# memory_budget_mib = 1024

[network]
# nym-api endpoints the topology is fetched from (Nym mainnet by default).
nym_api = ["https://validator.nymtech.net/api/"]

# Use a fixed topology file (nym-client's --custom-mixnet format) instead.
# topology_file = "/etc/nymd/topology.json"

[identities]
# Address new identities' websocket servers bind to.
host = "127.0.0.1"
# Port of the first identity; later identities take the next free port.
# Keep identities' ports below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768 and up by default): an outgoing
# connection may take such a port while nymd is not listening on it (at a
# start or restart), and that identity then cannot start until the
# connection ends.
first_port = 1977

# Traffic settings for new identities (each identity keeps its own copy in
# its config.toml). Absent values take nym-client's defaults.
[identities.traffic]
# average_packet_delay_ms = 15
# average_ack_delay_ms = 15
# message_sending_average_delay_ms = 20
# loop_cover_average_delay_ms = 200
# Keep messages not yet acknowledged by the recipient's gateway on disk
# (identities/<id>/outbox, mode 0600) and send them again after a restart or
# a crash. false: they live in memory only and are lost when nymd stops.
# persist_outbox = true
# Keep messages received while no app is connected on disk
# (identities/<id>/inbox, mode 0600) until an app takes them, across restarts
# and crashes. false: they wait in memory only.
# persist_inbox = true
# Give up on a message when one of its packets was sent this many times
# more without being acknowledged: the first 20 at nym-client's pace (about
# every 1.7 s), then the wait doubles up to 60 s, so 30 gives up after about
# 7 1/2 minutes. The app that sent it gets an error and the outbox forgets
# it. nym-client never gives up.
# max_retransmissions = 30
# Testing only: these remove the protection of cover traffic and delays.
# disable_cover_traffic = false
# disable_delays = false

[metrics]
# Serve metrics over HTTP at http://ADDRESS/metrics (OpenMetrics or
# Prometheus text): per identity (label "identity") packets and bytes sent
# and received, acks, retransmissions, queues, inbox and outbox, gateway
# connection and round trip, connected apps; identities by state. Off
# unless an address is set here or with --metrics-listen.
# listen = "127.0.0.1:9477"
# Whoever reaches the address reads identity names and traffic volumes: an
# address other than loopback is refused unless this is true.
# allow_remote_metrics = false
"#;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// No state dir could be derived.
    #[error("cannot choose a state dir: set --state-dir, NYMD_STATE_DIR or XDG_DATA_HOME/HOME")]
    NoStateDir,
    /// No socket path could be derived.
    #[error("cannot choose a socket path: set --socket, NYMD_SOCKET or XDG_RUNTIME_DIR")]
    NoSocket,
}

/// The config file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[network]`.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[identities]`.
    #[serde(default)]
    pub identities: IdentitiesSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsSection,
}

/// `[daemon]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// State dir.
    pub state_dir: Option<PathBuf>,
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// Log level.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Connections to the app ports of all identities together, at most.
    #[serde(default = "default_max_app_connections")]
    pub max_app_connections: usize,
    /// MiB all identities together may hold for what others send them
    /// (see [`nymd_mixnet::MemoryBudget`]).
    #[serde(default = "default_memory_budget_mib")]
    pub memory_budget_mib: u64,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            state_dir: None,
            socket: None,
            log_level: default_log_level(),
            max_app_connections: default_max_app_connections(),
            memory_budget_mib: default_memory_budget_mib(),
        }
    }
}

impl DaemonSection {
    /// `memory_budget_mib` in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_budget_mib.saturating_mul(1024 * 1024)
    }
}

/// Default of `[daemon] memory_budget_mib`.
pub const DEFAULT_MEMORY_BUDGET_MIB: u64 = nymd_mixnet::DEFAULT_MEMORY_BUDGET / (1024 * 1024);

fn default_memory_budget_mib() -> u64 {
    DEFAULT_MEMORY_BUDGET_MIB
}

/// Default of `[daemon] max_app_connections`.
pub const DEFAULT_MAX_APP_CONNECTIONS: usize = 4096;

fn default_max_app_connections() -> usize {
    DEFAULT_MAX_APP_CONNECTIONS
}

fn default_log_level() -> String {
    "info".into()
}

/// `[network]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// nym-api base URLs.
    #[serde(default = "default_nym_api")]
    pub nym_api: Vec<String>,
    /// A fixed topology file instead of nym-api.
    pub topology_file: Option<PathBuf>,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            nym_api: default_nym_api(),
            topology_file: None,
        }
    }
}

fn default_nym_api() -> Vec<String> {
    vec![MAINNET_NYM_API.to_string()]
}

/// `[identities]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitiesSection {
    /// Bind address of new identities' websocket servers.
    #[serde(default = "default_host")]
    pub host: IpAddr,
    /// First port handed out.
    #[serde(default = "default_first_port")]
    pub first_port: u16,
    /// Traffic settings given to new identities.
    #[serde(default)]
    pub traffic: crate::store::TrafficConfig,
}

impl Default for IdentitiesSection {
    fn default() -> Self {
        Self {
            host: default_host(),
            first_port: DEFAULT_FIRST_PORT,
            traffic: crate::store::TrafficConfig::default(),
        }
    }
}

fn default_host() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn default_first_port() -> u16 {
    DEFAULT_FIRST_PORT
}

impl ConfigFile {
    /// Parse config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Load `path`. A missing file at the default location gives the
    /// defaults; a missing file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Facts about the process environment that pick defaults.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Running as uid 0.
    pub is_root: bool,
    /// `$XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$NYMD_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// `$NYMD_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `$STATE_DIRECTORY`, set by systemd's `StateDirectory=` (first entry).
    pub systemd_state_dir: Option<PathBuf>,
    /// `$RUNTIME_DIRECTORY`, set by systemd's `RuntimeDirectory=` (first entry).
    pub systemd_runtime_dir: Option<PathBuf>,
}

impl Environment {
    /// Read the real environment.
    pub fn from_process(is_root: bool) -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            is_root,
            xdg_data_home: var("XDG_DATA_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            home: var("HOME"),
            state_dir: var("NYMD_STATE_DIR"),
            socket: var("NYMD_SOCKET"),
            systemd_state_dir: first_of_list(var("STATE_DIRECTORY")),
            systemd_runtime_dir: first_of_list(var("RUNTIME_DIRECTORY")),
        }
    }

    /// Default state dir: systemd's `StateDirectory=`, else `/var/lib/nymd`
    /// as root, else `$XDG_DATA_HOME/nymd` (or `~/.local/share/nymd`).
    pub fn default_state_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.systemd_state_dir {
            return Some(d.clone());
        }
        if self.is_root {
            return Some(PathBuf::from("/var/lib/nymd"));
        }
        self.xdg_data_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".local/share")))
            .map(|d| d.join("nymd"))
    }

    /// Default socket: `nymd.sock` in systemd's `RuntimeDirectory=`, else
    /// `/run/nymd/nymd.sock` as root, else `$XDG_RUNTIME_DIR/nymd/nymd.sock`.
    pub fn default_socket(&self) -> Option<PathBuf> {
        if let Some(d) = &self.systemd_runtime_dir {
            return Some(d.join("nymd.sock"));
        }
        if self.is_root {
            return Some(PathBuf::from("/run/nymd/nymd.sock"));
        }
        self.xdg_runtime_dir
            .as_ref()
            .map(|d| d.join("nymd").join("nymd.sock"))
    }
}

/// systemd passes several directories as a colon-separated list; nymd
/// configures one.
fn first_of_list(v: Option<PathBuf>) -> Option<PathBuf> {
    let v = v?;
    let first = v.to_str().map_or(v.clone(), |s| {
        PathBuf::from(s.split(':').next().unwrap_or(s))
    });
    (!first.as_os_str().is_empty()).then_some(first)
}

/// Resolve the state dir by precedence.
pub fn resolve_state_dir(
    flag: Option<&Path>,
    env: &Environment,
    file: &ConfigFile,
) -> Result<PathBuf, ConfigError> {
    flag.map(Path::to_path_buf)
        .or_else(|| env.state_dir.clone())
        .or_else(|| file.daemon.state_dir.clone())
        .or_else(|| env.default_state_dir())
        .ok_or(ConfigError::NoStateDir)
}

/// Resolve the control socket path by precedence.
pub fn resolve_socket(
    flag: Option<&Path>,
    env: &Environment,
    file: &ConfigFile,
) -> Result<PathBuf, ConfigError> {
    flag.map(Path::to_path_buf)
        .or_else(|| env.socket.clone())
        .or_else(|| file.daemon.socket.clone())
        .or_else(|| env.default_socket())
        .ok_or(ConfigError::NoSocket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_parses_to_defaults() {
        let parsed = ConfigFile::parse(DEFAULT_CONFIG_TOML, Path::new("x")).expect("parses");
        assert_eq!(parsed, ConfigFile::default());
    }

    #[test]
    fn unknown_keys_are_reported_with_the_file() {
        let err = ConfigFile::parse(
            "[daemon]\nstate_dri = \"/x\"\n",
            Path::new("/etc/nymd/nymd.toml"),
        )
        .expect_err("typo");
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/nymd/nymd.toml") && msg.contains("state_dri"),
            "{msg}"
        );
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = ConfigFile {
            daemon: DaemonSection {
                state_dir: Some("/file".into()),
                socket: None,
                log_level: "info".into(),
                max_app_connections: DEFAULT_MAX_APP_CONNECTIONS,
                memory_budget_mib: DEFAULT_MEMORY_BUDGET_MIB,
            },
            ..ConfigFile::default()
        };
        let mut env = Environment {
            xdg_data_home: Some("/xdg".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Environment::default()
        };
        assert_eq!(
            resolve_state_dir(Some(Path::new("/flag")), &env, &file).expect("dir"),
            PathBuf::from("/flag")
        );
        env.state_dir = Some("/env".into());
        assert_eq!(
            resolve_state_dir(None, &env, &file).expect("dir"),
            PathBuf::from("/env")
        );
        env.state_dir = None;
        assert_eq!(
            resolve_state_dir(None, &env, &file).expect("dir"),
            PathBuf::from("/file")
        );
        assert_eq!(
            resolve_state_dir(None, &env, &ConfigFile::default()).expect("dir"),
            PathBuf::from("/xdg/nymd")
        );
        assert_eq!(
            resolve_socket(None, &env, &ConfigFile::default()).expect("sock"),
            PathBuf::from("/run/user/1000/nymd/nymd.sock")
        );
        env.is_root = true;
        assert_eq!(
            resolve_state_dir(None, &env, &ConfigFile::default()).expect("dir"),
            PathBuf::from("/var/lib/nymd")
        );
        let none = Environment::default();
        assert!(resolve_socket(None, &none, &ConfigFile::default()).is_err());

        // Under systemd (User=nymd, not root): StateDirectory= and
        // RuntimeDirectory= are the defaults; the config file still wins.
        let unit = Environment {
            systemd_state_dir: first_of_list(Some("/var/lib/nymd:/var/lib/other".into())),
            systemd_runtime_dir: first_of_list(Some("/run/nymd".into())),
            home: Some("/var/lib/nymd".into()),
            ..Environment::default()
        };
        assert_eq!(
            resolve_state_dir(None, &unit, &ConfigFile::default()).expect("dir"),
            PathBuf::from("/var/lib/nymd")
        );
        assert_eq!(
            resolve_socket(None, &unit, &ConfigFile::default()).expect("sock"),
            PathBuf::from("/run/nymd/nymd.sock")
        );
        assert_eq!(
            resolve_state_dir(None, &unit, &file).expect("dir"),
            PathBuf::from("/file")
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_explicit_is_not() {
        let p = Path::new("/nonexistent/nymd.toml");
        assert_eq!(
            ConfigFile::load(p, false).expect("defaults"),
            ConfigFile::default()
        );
        assert!(ConfigFile::load(p, true).is_err());
    }
}
