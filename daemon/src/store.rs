//! The identity store: one folder per identity under `<state dir>/identities`.
//!
//! ```text
//! identities/<id>/config.toml            identity settings (port, autostart, …)
//! identities/<id>/private_identity.pem   ED25519 PRIVATE KEY        0600
//! identities/<id>/public_identity.pem    ED25519 PUBLIC KEY         0600
//! identities/<id>/private_encryption.pem X25519 PRIVATE KEY         0600
//! identities/<id>/public_encryption.pem  X25519 PUBLIC KEY          0600
//! identities/<id>/ack_key.pem            AES-128-CTR ACKNOWLEDGEMENTS KEY 0600
//! identities/<id>/gateway_shared.pem     AES-256-GCM-SIV GATEWAY SHARED KEY 0600
//! identities/<id>/gateway.toml           gateway identity, listener URL
//! identities/<id>/state.toml             last authentication timestamp
//! ```
//!
//! A new identity is assembled in a hidden staging folder and renamed into
//! place in one step, so a crash during `init` never leaves a half-written
//! identity under its real name. Every file write is atomic. A folder that
//! cannot be read is reported and skipped; it never affects the others and is
//! never deleted by the daemon.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use nymd_proto::keys::{AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair};
use nymd_proto::pem::PemError;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, SECRET_FILE_MODE};

const CONFIG: &str = "config.toml";
const PRIVATE_IDENTITY: &str = "private_identity.pem";
const PUBLIC_IDENTITY: &str = "public_identity.pem";
const PRIVATE_ENCRYPTION: &str = "private_encryption.pem";
const PUBLIC_ENCRYPTION: &str = "public_encryption.pem";
const ACK_KEY: &str = "ack_key.pem";
const GATEWAY_SHARED: &str = "gateway_shared.pem";
const GATEWAY: &str = "gateway.toml";
const STATE: &str = "state.toml";
const RECEIVED_SETS: &str = "received_sets";
const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".removing-";

/// Longest identity name accepted.
pub const MAX_ID_LEN: usize = nymd_ipc::MAX_IDENTITY_NAME_LEN;

/// Errors of the identity store. Each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The identity name has characters or a length we do not accept.
    #[error("invalid identity name {0:?}: use 1-64 characters from A-Z a-z 0-9 _ - (not starting with '.')")]
    InvalidId(String),
    /// No identity of that name.
    #[error("identity '{0}' does not exist")]
    NotFound(String),
    /// An identity of that name already exists.
    #[error("identity '{0}' already exists; pick another --id or remove it first")]
    AlreadyExists(String),
    /// The state dir is writable by group or others.
    #[error("state dir {path} is writable by group or others; fix with: chmod go-w {path}")]
    InsecureStateDir {
        /// The offending folder.
        path: PathBuf,
    },
    /// The state dir, or a folder above it, belongs to another user (who
    /// could swap the identities in it).
    #[error("{path} belongs to uid {owner}, neither nymd's user (uid {euid}) nor root, so that user could replace the identities and keys in the state dir; fix with: chown {euid} {path} (or choose another --state-dir)")]
    ForeignStateDir {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// nymd's effective uid.
        euid: u32,
    },
    /// A folder above the state dir can be written by other users and is
    /// not sticky (they could rename the state dir away and put their own).
    #[error("{path}, above the state dir, can be written by other users (and is not sticky like /tmp), so they could replace the state dir; fix with: chmod go-w {path} (or choose another --state-dir)")]
    OpenAboveStateDir {
        /// The folder.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A TOML file does not parse.
    #[error("{path} is corrupted: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A key file does not parse.
    #[error("key file {path} is corrupted: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM layer said.
        source: PemError,
    },
    /// The public key file does not match the private key.
    #[error("{path} does not match the private key next to it")]
    KeyMismatch {
        /// The public key file.
        path: PathBuf,
    },
    /// gateway.toml names a gateway identity that is not valid base58 of 32 bytes.
    #[error("{path}: gateway identity is not base58 of a 32-byte key")]
    BadGatewayId {
        /// The file.
        path: PathBuf,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Check an identity name.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    if nymd_ipc::is_valid_identity_name(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_string()))
    }
}

/// Settings of one identity (its `config.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Identity name (same as its folder).
    pub id: String,
    /// Start this identity when the daemon starts.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where apps connect.
    pub websocket: WebsocketConfig,
    /// Traffic settings; absent values take Nym's defaults.
    #[serde(default)]
    pub traffic: TrafficConfig,
    /// The SOCKS5 proxy of the identity (`[socks5]`); absent: none. Written
    /// to the file only when present, so older files load unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks5: Option<Socks5Config>,
}

fn default_true() -> bool {
    true
}

/// The app-facing websocket listener of an identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Bind address (default 127.0.0.1).
    #[serde(default = "default_host")]
    pub host: IpAddr,
    /// Port (first identity 1977, then the next free one).
    pub port: u16,
    /// Let several apps connect at once (every connected app receives every
    /// message). `false` restores nym-client's one-app-at-a-time behaviour.
    #[serde(default = "default_true")]
    pub allow_multiple_apps: bool,
    /// At most this many apps connected at once (default
    /// [`DEFAULT_MAX_APPS`]; 1 when `allow_multiple_apps = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_apps: Option<usize>,
    /// Web origins (exact, e.g. `"http://localhost:8080"`) whose pages may
    /// open the port. A handshake that carries any other `Origin` header (a
    /// browser) is refused; apps that send none are not affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Local users (uids) that may connect, besides root and nymd's own uid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uids: Vec<u32>,
    /// Local groups (names) whose members may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// Any local user may connect (no uid check). Absent (`None`) in
    /// identities created before access control existed, which keep that
    /// behaviour ([`WebsocketConfig::any_local_user`]); `nymctl init` writes
    /// `false` with the creating user in `allowed_uids`. Kept absent when
    /// the file is rewritten, so `nymctl status` can say why any user may
    /// connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_local_user: Option<bool>,
    /// Allow `host` to be an address other than loopback (the uid check
    /// cannot apply to remote peers).
    #[serde(default)]
    pub allow_remote_apps: bool,
    /// Tell the app that sent a message when it fails later (recipient
    /// gateway gone, retransmissions exhausted), as an `error` response.
    /// `false` keeps nym-client's silence.
    #[serde(default = "default_true")]
    pub report_send_failures: bool,
    /// Seconds a write to an app (a response or a received message) may
    /// wait for the app to read before its session is closed (default
    /// [`DEFAULT_WRITE_TIMEOUT_SECS`]). What it was being given stays for
    /// the next app. Written to the file only when changed.
    #[serde(
        default = "default_write_timeout_secs",
        skip_serializing_if = "is_default_write_timeout"
    )]
    pub write_timeout_secs: u64,
}

/// Default of [`WebsocketConfig::write_timeout_secs`].
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 60;

fn default_write_timeout_secs() -> u64 {
    DEFAULT_WRITE_TIMEOUT_SECS
}

fn is_default_write_timeout(secs: &u64) -> bool {
    *secs == DEFAULT_WRITE_TIMEOUT_SECS
}

/// Default of [`WebsocketConfig::max_apps`] in multi-app mode.
pub const DEFAULT_MAX_APPS: usize = 64;

impl WebsocketConfig {
    /// Settings of a new identity on `host:port`: several apps, only
    /// `owner` (plus root and nymd's own uid) may connect, no browser
    /// origins.
    pub fn new(host: IpAddr, port: u16, owner: Option<u32>) -> Self {
        Self {
            host,
            port,
            allow_multiple_apps: true,
            max_apps: None,
            allowed_origins: Vec::new(),
            allowed_uids: owner.into_iter().collect(),
            allowed_groups: Vec::new(),
            any_local_user: Some(false),
            allow_remote_apps: false,
            report_send_failures: true,
            write_timeout_secs: DEFAULT_WRITE_TIMEOUT_SECS,
        }
    }

    /// Whether any local user may connect (the uid check is off): as set,
    /// or `true` for an identity created before access control.
    pub fn any_local_user(&self) -> bool {
        self.any_local_user.unwrap_or(true)
    }

    /// Whether the identity predates access control: its config says
    /// nothing about who may connect, so any local user may.
    pub fn predates_access_control(&self) -> bool {
        self.any_local_user.is_none()
    }

    /// How long a write to an app may wait (at least one second).
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_secs.max(1))
    }

    /// The connection limit in effect.
    pub fn max_apps(&self) -> usize {
        if !self.allow_multiple_apps {
            1
        } else {
            self.max_apps.unwrap_or(DEFAULT_MAX_APPS).max(1)
        }
    }
}

fn default_host() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Per-identity traffic settings, in milliseconds. `None` means Nym's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    /// Mean per-hop delay (default 15).
    pub average_packet_delay_ms: Option<u64>,
    /// Mean per-hop delay of acks (default 15).
    pub average_ack_delay_ms: Option<u64>,
    /// Mean gap of the main Poisson stream (default 20).
    pub message_sending_average_delay_ms: Option<u64>,
    /// Mean gap of the loop cover stream (default 200).
    pub loop_cover_average_delay_ms: Option<u64>,
    /// Turn off cover traffic and the Poisson schedule (testing only: it
    /// removes the protection cover traffic gives).
    #[serde(default)]
    pub disable_cover_traffic: bool,
    /// Turn off per-hop delays (testing only).
    #[serde(default)]
    pub disable_delays: bool,
    /// Keep messages not yet acknowledged in `outbox/` and send them again
    /// after a restart or crash (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_outbox: Option<bool>,
    /// Keep messages received while no app is connected in `inbox/` until an
    /// app takes them, across restarts and crashes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_inbox: Option<bool>,
    /// Give up on a message after this many retransmissions of one of its
    /// packets (default [`nymd_mixnet::DEFAULT_MAX_RETRANSMISSIONS`]); the
    /// app that sent it gets an error and its outbox entry is retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retransmissions: Option<u32>,
}

/// Default of [`Socks5Config::max_connections`].
pub const DEFAULT_SOCKS5_MAX_CONNECTIONS: usize = 256;
/// Default of [`Socks5Config::connect_timeout_secs`].
pub const DEFAULT_SOCKS5_CONNECT_TIMEOUT_SECS: u64 = 60;
/// Default of [`Socks5Config::idle_timeout_secs`] (Nym's 5 minutes).
pub const DEFAULT_SOCKS5_IDLE_TIMEOUT_SECS: u64 = 300;
/// Port of the first identity's SOCKS5 proxy (nym-socks5-client's); later
/// identities take the next free one.
pub const DEFAULT_SOCKS5_PORT: u16 = 1080;
/// Most SOCKS connections one identity may allow at once.
pub const MAX_SOCKS5_CONNECTIONS: usize = 65_536;
/// Longest connect or idle timeout accepted (one day).
pub const MAX_SOCKS5_TIMEOUT_SECS: u64 = 86_400;

fn default_socks5_max_connections() -> usize {
    DEFAULT_SOCKS5_MAX_CONNECTIONS
}

fn default_socks5_connect_timeout() -> u64 {
    DEFAULT_SOCKS5_CONNECT_TIMEOUT_SECS
}

fn default_socks5_idle_timeout() -> u64 {
    DEFAULT_SOCKS5_IDLE_TIMEOUT_SECS
}

/// An identity's SOCKS5 proxy (nym-socks5-client's job): SOCKS4a and
/// SOCKS5 CONNECT on `host:port`, each connection carried through the
/// mixnet to the network requester `provider`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Socks5Config {
    /// Serve the port (`nymctl socks5 ID disable` keeps the rest).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Bind address (default 127.0.0.1). Another address needs
    /// `allow_remote_apps = true` in `[websocket]`.
    #[serde(default = "default_host")]
    pub host: IpAddr,
    /// Port (first identity 1080, then the next free one).
    pub port: u16,
    /// The Nym address of the network requester the connections go to;
    /// absent: the port is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `true` (default): connections are sent anonymously, with reply SURBs
    /// (20 with each Connect, 3 with each Send) and no return address, so
    /// the network requester does not learn the identity's address.
    /// `false`: plain messages with the identity's address in each Connect,
    /// as nym-socks5-client's command line does.
    #[serde(default = "default_true")]
    pub anonymous: bool,
    /// SOCKS connections open at once, at most; one more gets a SOCKS
    /// failure reply.
    #[serde(default = "default_socks5_max_connections")]
    pub max_connections: usize,
    /// Seconds a CONNECT waits for the network requester's answer.
    #[serde(default = "default_socks5_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds without data either way before a connection is closed.
    #[serde(default = "default_socks5_idle_timeout")]
    pub idle_timeout_secs: u64,
}

impl Socks5Config {
    /// A proxy on `host:port` with the defaults (enabled, anonymous).
    pub fn new(host: IpAddr, port: u16, provider: Option<String>) -> Self {
        Self {
            enabled: true,
            host,
            port,
            provider,
            anonymous: true,
            max_connections: DEFAULT_SOCKS5_MAX_CONNECTIONS,
            connect_timeout_secs: DEFAULT_SOCKS5_CONNECT_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_SOCKS5_IDLE_TIMEOUT_SECS,
        }
    }

    /// The provider's address, if one is set and valid.
    pub fn provider_address(&self) -> Option<nymd_proto::Recipient> {
        self.provider.as_deref().and_then(|p| p.parse().ok())
    }

    /// Whether the port is to be served: enabled, with a provider.
    pub fn serves(&self) -> bool {
        self.enabled && self.provider.is_some()
    }

    /// How long a CONNECT waits for the network requester.
    pub fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.connect_timeout_secs)
    }

    /// How long a connection may carry no data.
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_timeout_secs)
    }

    /// Check the section of an identity whose `[websocket]` section is
    /// `ws`; the error says what to change in `[socks5]`.
    pub fn validate(&self, ws: &WebsocketConfig) -> Result<(), Socks5ConfigError> {
        use Socks5ConfigError as E;
        if self.port == 0 {
            return Err(E::Port);
        }
        if self.port == ws.port && overlaps(self.host, ws.host) {
            return Err(E::SamePort(self.port));
        }
        if let Some(p) = &self.provider {
            if let Err(e) = p.parse::<nymd_proto::Recipient>() {
                return Err(E::Provider {
                    provider: p.clone(),
                    reason: e.to_string(),
                });
            }
        }
        if !(1..=MAX_SOCKS5_CONNECTIONS).contains(&self.max_connections) {
            return Err(E::MaxConnections(self.max_connections));
        }
        for (name, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if !(1..=MAX_SOCKS5_TIMEOUT_SECS).contains(&v) {
                return Err(E::Timeout { name, value: v });
            }
        }
        if !crate::appserver::access::is_loopback(self.host) && !ws.allow_remote_apps {
            return Err(E::RemoteHost(self.host));
        }
        Ok(())
    }
}

/// Whether listeners on `a` and `b` with the same port would collide.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// What is wrong with a `[socks5]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5ConfigError {
    /// Port 0.
    #[error("[socks5] port must be a port number from 1 to 65535 (nym-socks5-client uses 1080)")]
    Port,
    /// The websocket port.
    #[error("[socks5] port {0} is the identity's websocket port too; choose another port for SOCKS5 (e.g. 1080)")]
    SamePort(u16),
    /// Not a Nym address.
    #[error("[socks5] provider {provider:?} is not a Nym address ({reason}); write the network requester's address as <identity>.<encryption>@<gateway>, or run `nymctl socks5 ID provider auto`")]
    Provider {
        /// What the file says.
        provider: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Out of range.
    #[error("[socks5] max_connections = {0} is out of range; use 1 to 65536 (default 256)")]
    MaxConnections(usize),
    /// Out of range.
    #[error("[socks5] {name} = {value} is out of range; use 1 to 86400 seconds")]
    Timeout {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: u64,
    },
    /// Not loopback without `allow_remote_apps`.
    #[error("[socks5] host {0} is not a loopback address, so programs on other machines could use the proxy and nymd could not check which user they run as; set host = \"127.0.0.1\", or allow that with allow_remote_apps = true in [websocket]")]
    RemoteHost(IpAddr),
}

/// The identity's registration with its gateway (`gateway.toml` plus the
/// shared key file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegistration {
    /// The gateway's ed25519 identity.
    pub gateway_id: [u8; 32],
    /// The websocket URL the gateway is reached at.
    pub listener: String,
    /// A second URL to try when the first fails.
    pub fallback_listener: Option<String>,
    /// The key agreed at registration.
    pub shared_key: GatewaySharedKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    gateway_id: String,
    listener: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback_listener: Option<String>,
}

/// Mutable runtime state kept across restarts (`state.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityState {
    /// Highest authenticateV2 timestamp used with the gateway, so that
    /// timestamps stay strictly increasing even if the clock steps back.
    #[serde(default)]
    pub last_auth_timestamp: u64,
}

/// An identity's keys.
#[derive(Debug, Clone)]
pub struct IdentityKeys {
    /// ed25519 identity.
    pub identity: IdentityKeyPair,
    /// x25519 encryption key.
    pub encryption: EncryptionKeyPair,
    /// Ack key.
    pub ack: AckKey,
}

impl IdentityKeys {
    /// Fresh random keys.
    pub fn generate<R: rand::RngCore + rand::CryptoRng>(rng: &mut R) -> Self {
        Self {
            identity: IdentityKeyPair::generate(rng),
            encryption: EncryptionKeyPair::generate(rng),
            ack: AckKey::generate(rng),
        }
    }
}

/// Everything stored for one identity.
#[derive(Debug, Clone)]
pub struct StoredIdentity {
    /// Settings.
    pub config: IdentityConfig,
    /// Keys.
    pub keys: IdentityKeys,
    /// Gateway registration.
    pub registration: StoredRegistration,
    /// Runtime state.
    pub state: IdentityState,
}

/// The state dir and its `identities/` must belong to nymd's effective uid
/// or root, and every folder above the state dir too, and none of those
/// may be writable by others unless sticky (as `/tmp` is): otherwise
/// another user could swap the identities.
fn check_owners(state_dir: &Path, root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    let trusted = |uid: u32| uid == euid || uid == 0;
    for p in [state_dir, root] {
        let meta = fs::metadata(p).map_err(io_err("cannot inspect", p))?;
        if !trusted(meta.uid()) {
            return Err(StoreError::ForeignStateDir {
                path: p.to_path_buf(),
                owner: meta.uid(),
                euid,
            });
        }
    }
    let full = fs::canonicalize(state_dir).map_err(io_err("cannot resolve", state_dir))?;
    for above in full.ancestors().skip(1) {
        let meta = fs::metadata(above).map_err(io_err("cannot inspect", above))?;
        if !trusted(meta.uid()) {
            return Err(StoreError::ForeignStateDir {
                path: above.to_path_buf(),
                owner: meta.uid(),
                euid,
            });
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(StoreError::OpenAboveStateDir {
                path: above.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// An identity folder that could not be loaded.
#[derive(Debug)]
pub struct SkippedIdentity {
    /// Folder name.
    pub id: String,
    /// Why.
    pub error: StoreError,
}

/// The store rooted at `<state dir>/identities`.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    root: PathBuf,
}

impl IdentityStore {
    /// Open (creating with 0700 if missing) the store under `state_dir`.
    /// Refuses a state dir or store folder writable by group or others.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let root = state_dir.join("identities");
        fsutil::create_private_dir(&root).map_err(io_err("cannot create", &root))?;
        for p in [state_dir, root.as_path()] {
            if fsutil::writable_by_others(p).map_err(io_err("cannot inspect", p))? {
                return Err(StoreError::InsecureStateDir {
                    path: p.to_path_buf(),
                });
            }
        }
        check_owners(state_dir, &root)?;
        Ok(Self { root })
    }

    /// The folder of an identity.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Whether an identity of this name exists.
    pub fn exists(&self, id: &str) -> bool {
        validate_id(id).is_ok() && self.dir(id).is_dir()
    }

    /// Names of every identity folder (staging and removal leftovers are
    /// ignored), sorted.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err("cannot list", &self.root))? {
            let entry = entry.map_err(io_err("cannot list", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if entry.path().is_dir() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Load every identity; broken ones are returned separately.
    pub fn load_all(&self) -> Result<(Vec<StoredIdentity>, Vec<SkippedIdentity>), StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(i) => good.push(i),
                Err(error) => bad.push(SkippedIdentity { id, error }),
            }
        }
        Ok((good, bad))
    }

    /// Load one identity.
    pub fn load(&self, id: &str) -> Result<StoredIdentity, StoreError> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let config: IdentityConfig = read_toml(&dir.join(CONFIG))?;
        let identity = IdentityKeyPair::from_private_pem(&read_text(&dir.join(PRIVATE_IDENTITY))?)
            .map_err(pem_err(&dir.join(PRIVATE_IDENTITY)))?;
        let encryption =
            EncryptionKeyPair::from_private_pem(&read_text(&dir.join(PRIVATE_ENCRYPTION))?)
                .map_err(pem_err(&dir.join(PRIVATE_ENCRYPTION)))?;
        let ack = AckKey::from_pem(&read_text(&dir.join(ACK_KEY))?)
            .map_err(pem_err(&dir.join(ACK_KEY)))?;
        // Public key files are for people and tools; they must agree with the
        // private keys so nobody copies a stale address.
        let pub_id_path = dir.join(PUBLIC_IDENTITY);
        let pub_id = nymd_proto::keys::identity_public_from_pem(&read_text(&pub_id_path)?)
            .map_err(|e| match e {
                nymd_proto::keys::KeyError::Pem(source) => StoreError::Pem {
                    path: pub_id_path.clone(),
                    source,
                },
                nymd_proto::keys::KeyError::InvalidEd25519 => StoreError::KeyMismatch {
                    path: pub_id_path.clone(),
                },
            })?;
        if pub_id != identity.public() {
            return Err(StoreError::KeyMismatch { path: pub_id_path });
        }
        let pub_enc_path = dir.join(PUBLIC_ENCRYPTION);
        let pub_enc = nymd_proto::keys::encryption_public_from_pem(&read_text(&pub_enc_path)?)
            .map_err(pem_err(&pub_enc_path))?;
        if pub_enc != encryption.public() {
            return Err(StoreError::KeyMismatch { path: pub_enc_path });
        }
        let gw_path = dir.join(GATEWAY);
        let gw: GatewayFile = read_toml(&gw_path)?;
        let gateway_id =
            decode_gateway_id(&gw.gateway_id).ok_or_else(|| StoreError::BadGatewayId {
                path: gw_path.clone(),
            })?;
        let shared_key = GatewaySharedKey::from_pem(&read_text(&dir.join(GATEWAY_SHARED))?)
            .map_err(pem_err(&dir.join(GATEWAY_SHARED)))?;
        let state_path = dir.join(STATE);
        let state = if state_path.exists() {
            read_toml(&state_path)?
        } else {
            IdentityState::default()
        };
        Ok(StoredIdentity {
            config,
            keys: IdentityKeys {
                identity,
                encryption,
                ack,
            },
            registration: StoredRegistration {
                gateway_id,
                listener: gw.listener,
                fallback_listener: gw.fallback_listener,
                shared_key,
            },
            state,
        })
    }

    /// Create a new identity with all its files, atomically: it appears
    /// complete or not at all.
    pub fn create(&self, identity: &StoredIdentity) -> Result<(), StoreError> {
        let id = identity.config.id.as_str();
        validate_id(id)?;
        let target = self.dir(id);
        if target.exists() {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        let staging = self.root.join(format!(
            "{STAGING_PREFIX}{id}-{:016x}",
            rand::random::<u64>()
        ));
        let result = (|| {
            fsutil::create_private_dir(&staging).map_err(io_err("cannot create", &staging))?;
            write_identity_files(&staging, identity)?;
            fsutil::sync_dir(&staging).map_err(io_err("cannot sync", &staging))?;
            if target.exists() {
                return Err(StoreError::AlreadyExists(id.to_string()));
            }
            fs::rename(&staging, &target).map_err(io_err("cannot move into place", &target))?;
            fsutil::sync_dir(&self.root).map_err(io_err("cannot sync", &self.root))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    /// Replace an identity's settings.
    pub fn save_config(&self, config: &IdentityConfig) -> Result<(), StoreError> {
        let dir = self.existing_dir(&config.id)?;
        write_toml(&dir.join(CONFIG), config)
    }

    /// Replace an identity's gateway registration.
    pub fn save_registration(&self, id: &str, reg: &StoredRegistration) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?;
        write_registration(&dir, reg)
    }

    /// Replace an identity's runtime state.
    pub fn save_state(&self, id: &str, state: &IdentityState) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?;
        write_toml(&dir.join(STATE), state)
    }

    /// Replace the set ids of the messages an identity received (4 bytes
    /// each, big-endian, oldest first).
    pub fn save_received_sets(&self, id: &str, sets: &[i32]) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?;
        let bytes: Vec<u8> = sets.iter().flat_map(|s| s.to_be_bytes()).collect();
        let p = dir.join(RECEIVED_SETS);
        fsutil::write_atomic(&p, &bytes, SECRET_FILE_MODE).map_err(io_err("cannot write", &p))
    }

    /// The set ids saved by [`IdentityStore::save_received_sets`]; empty if
    /// there are none or the file cannot be read (it only suppresses
    /// duplicates, so a damaged file is not worth failing for).
    pub fn load_received_sets(&self, id: &str) -> Vec<i32> {
        let Ok(dir) = self.existing_dir(id) else {
            return Vec::new();
        };
        let p = dir.join(RECEIVED_SETS);
        let bytes = match fs::metadata(&p) {
            Ok(m) if m.len() <= MAX_FILE => fs::read(&p).unwrap_or_default(),
            _ => Vec::new(),
        };
        bytes
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Remove an identity and all its keys. The folder is first renamed away
    /// so that a crash part-way never leaves a half-deleted identity behind
    /// under its name.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?;
        let trash = self
            .root
            .join(format!("{TRASH_PREFIX}{id}-{:016x}", rand::random::<u64>()));
        fs::rename(&dir, &trash).map_err(io_err("cannot remove", &dir))?;
        fsutil::sync_dir(&self.root).map_err(io_err("cannot sync", &self.root))?;
        fs::remove_dir_all(&trash).map_err(io_err("cannot remove", &trash))
    }

    /// Delete leftovers of interrupted `create` and `remove` calls.
    pub fn clean_leftovers(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err("cannot list", &self.root))? {
            let entry = entry.map_err(io_err("cannot list", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                let p = entry.path();
                fs::remove_dir_all(&p).map_err(io_err("cannot remove", &p))?;
                removed.push(p);
            }
        }
        Ok(removed)
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        validate_id(id)?;
        let dir = self.dir(id);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NotFound(id.to_string()))
        }
    }
}

fn decode_gateway_id(s: &str) -> Option<[u8; 32]> {
    bs58::decode(s).into_vec().ok()?.try_into().ok()
}

fn write_identity_files(dir: &Path, i: &StoredIdentity) -> Result<(), StoreError> {
    let files: [(&str, Zeroizing<String>); 5] = [
        (PRIVATE_IDENTITY, i.keys.identity.private_pem()),
        (
            PUBLIC_IDENTITY,
            Zeroizing::new(i.keys.identity.public_pem()),
        ),
        (PRIVATE_ENCRYPTION, i.keys.encryption.private_pem()),
        (
            PUBLIC_ENCRYPTION,
            Zeroizing::new(i.keys.encryption.public_pem()),
        ),
        (ACK_KEY, i.keys.ack.to_pem()),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        fsutil::write_atomic(&p, text.as_bytes(), SECRET_FILE_MODE)
            .map_err(io_err("cannot write", &p))?;
    }
    write_registration(dir, &i.registration)?;
    write_toml(&dir.join(STATE), &i.state)?;
    write_toml(&dir.join(CONFIG), &i.config)
}

fn write_registration(dir: &Path, reg: &StoredRegistration) -> Result<(), StoreError> {
    let p = dir.join(GATEWAY_SHARED);
    fsutil::write_atomic(&p, reg.shared_key.to_pem().as_bytes(), SECRET_FILE_MODE)
        .map_err(io_err("cannot write", &p))?;
    write_toml(
        &dir.join(GATEWAY),
        &GatewayFile {
            gateway_id: bs58::encode(reg.gateway_id).into_string(),
            listener: reg.listener.clone(),
            fallback_listener: reg.fallback_listener.clone(),
        },
    )
}

fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let text = toml::to_string_pretty(value).map_err(|e| StoreError::Toml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(path, text.as_bytes(), SECRET_FILE_MODE)
        .map_err(io_err("cannot write", path))
}

/// Largest file the store reads; identity files are tiny.
const MAX_FILE: u64 = 1 << 20;

/// A small text file, wiped from memory when dropped (key files are read
/// with it too).
fn read_text(path: &Path) -> Result<Zeroizing<String>, StoreError> {
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    if meta.len() > MAX_FILE {
        return Err(StoreError::Toml {
            path: path.to_path_buf(),
            message: format!(
                "file is {} bytes, larger than any identity file",
                meta.len()
            ),
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io_err("cannot read", path))?);
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(StoreError::Toml {
            path: path.to_path_buf(),
            message: "not UTF-8 text".into(),
        }),
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let text = read_text(path)?;
    toml::from_str(&text).map_err(|e| StoreError::Toml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn pem_err(path: &Path) -> impl FnOnce(PemError) -> StoreError + '_ {
    move |source| StoreError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample(id: &str, port: u16) -> StoredIdentity {
        let mut rng = rand::thread_rng();
        StoredIdentity {
            config: IdentityConfig {
                id: id.to_string(),
                enabled: true,
                websocket: WebsocketConfig::new(default_host(), port, None),
                traffic: TrafficConfig::default(),
                socks5: None,
            },
            keys: IdentityKeys::generate(&mut rng),
            registration: StoredRegistration {
                gateway_id: IdentityKeyPair::generate(&mut rng).public_bytes(),
                listener: "ws://127.0.0.1:9000".into(),
                fallback_listener: None,
                shared_key: GatewaySharedKey::from_bytes([7; 32]),
            },
            state: IdentityState {
                last_auth_timestamp: 5,
            },
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn create_load_round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let state = tmp.path().join("state");
        let store = IdentityStore::open(&state).expect("open");
        let alice = sample("alice", 1977);
        store.create(&alice).expect("create");
        assert!(matches!(
            store.create(&alice),
            Err(StoreError::AlreadyExists(_))
        ));
        let back = store.load("alice").expect("load");
        assert_eq!(back.config, alice.config);
        assert_eq!(back.keys.identity.public(), alice.keys.identity.public());
        assert_eq!(
            back.keys.encryption.public(),
            alice.keys.encryption.public()
        );
        assert_eq!(back.keys.ack, alice.keys.ack);
        assert_eq!(back.registration, alice.registration);
        assert_eq!(back.state, alice.state);
        assert_eq!(mode(&store.dir("alice")), 0o700);
        for f in fs::read_dir(store.dir("alice")).expect("ls") {
            let f = f.expect("entry");
            assert_eq!(mode(&f.path()), 0o600, "{:?}", f.file_name());
        }
        assert_eq!(store.ids().expect("ids"), vec!["alice".to_string()]);
    }

    #[test]
    fn an_identity_from_before_access_control_keeps_any_user_across_saves() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("old", 1977)).expect("create");
        let path = store.dir("old").join(CONFIG);
        // The [websocket] section as nymd wrote it before access control.
        fs::write(
            &path,
            "id = \"old\"\nenabled = true\n\n[websocket]\nhost = \"127.0.0.1\"\nport = 1977\n",
        )
        .expect("old config");
        let mut config = store.load("old").expect("load").config;
        assert!(config.websocket.any_local_user());
        assert!(config.websocket.predates_access_control());
        assert!(config.websocket.allowed_uids.is_empty());
        // Rewriting the file (e.g. `nymctl stop` clears `enabled`) does not
        // turn the default into a setting.
        config.enabled = false;
        store.save_config(&config).expect("save");
        let text = fs::read_to_string(&path).expect("read");
        assert!(!text.contains("any_local_user"), "{text}");
        assert!(store
            .load("old")
            .expect("load")
            .config
            .websocket
            .predates_access_control());
        // A new identity says so explicitly.
        let new = WebsocketConfig::new(default_host(), 1978, Some(1000));
        assert!(!new.any_local_user() && !new.predates_access_control());
        assert_eq!(new.allowed_uids, vec![1000]);
    }

    #[test]
    fn corrupted_identity_is_skipped_not_deleted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("good", 1977)).expect("good");
        store.create(&sample("bad", 1978)).expect("bad");
        store.create(&sample("torn", 1979)).expect("torn");
        fs::write(store.dir("bad").join(PRIVATE_IDENTITY), "garbage").expect("corrupt");
        fs::write(store.dir("torn").join(CONFIG), "id = \"torn\"\nwebsock").expect("tear");
        let (good, bad) = store.load_all().expect("load");
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].config.id, "good");
        assert_eq!(bad.len(), 2);
        let msgs: Vec<String> = bad.iter().map(|s| s.error.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("private_identity.pem")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("config.toml")), "{msgs:?}");
        assert!(store.dir("bad").exists() && store.dir("torn").exists());
    }

    #[test]
    fn mismatched_public_key_is_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("a", 1977)).expect("a");
        let other = IdentityKeyPair::generate(&mut rand::thread_rng());
        fs::write(store.dir("a").join(PUBLIC_IDENTITY), other.public_pem()).expect("swap");
        assert!(matches!(
            store.load("a"),
            Err(StoreError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn leftovers_are_invisible_and_cleaned() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        fs::create_dir(store.root.join(".staging-x-1")).expect("mk");
        fs::create_dir(store.root.join(".removing-y-1")).expect("mk");
        assert!(store.ids().expect("ids").is_empty());
        assert_eq!(store.clean_leftovers().expect("clean").len(), 2);
    }

    #[test]
    fn received_sets_round_trip_and_tolerate_damage() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("alice", 4000)).expect("create");
        assert!(store.load_received_sets("alice").is_empty());
        let sets = vec![1, -7, i32::MAX, i32::MIN];
        store.save_received_sets("alice", &sets).expect("save");
        assert_eq!(store.load_received_sets("alice"), sets);
        let p = store.dir("alice").join(RECEIVED_SETS);
        assert_eq!(mode(&p), 0o600);
        fs::write(&p, [1, 2, 3, 4, 5]).expect("damage");
        assert_eq!(store.load_received_sets("alice"), vec![0x0102_0304]);
        assert!(store.load_received_sets("nobody").is_empty());
        assert!(store.save_received_sets("nobody", &sets).is_err());
    }

    #[test]
    fn remove_and_names() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("gone", 1977)).expect("create");
        store.remove("gone").expect("remove");
        assert!(!store.exists("gone"));
        assert!(matches!(store.remove("gone"), Err(StoreError::NotFound(_))));
        for bad in ["", ".x", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id("alice_2-b").is_ok());
    }

    #[test]
    fn socks5_section_is_optional_and_written_only_when_present() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = IdentityStore::open(tmp.path()).expect("open");
        store.create(&sample("w", 1977)).expect("create");
        let path = store.dir("w").join(CONFIG);
        let text = fs::read_to_string(&path).expect("read");
        assert!(!text.contains("socks5"), "{text}");
        assert_eq!(store.load("w").expect("load").config.socks5, None);

        // A section with only a port takes every default.
        fs::write(
            &path,
            format!("{text}\n[socks5]\nport = 1080\nprovider = \"{PROVIDER}\"\n"),
        )
        .expect("write");
        let mut config = store.load("w").expect("load").config;
        let socks = config.socks5.clone().expect("section");
        assert_eq!(
            socks,
            Socks5Config::new(default_host(), 1080, Some(PROVIDER.into()))
        );
        assert!(socks.serves() && socks.anonymous);
        assert_eq!(socks.validate(&config.websocket), Ok(()));
        assert!(socks.provider_address().is_some());

        // Saved and read back unchanged, disabled.
        config.socks5.as_mut().expect("section").enabled = false;
        store.save_config(&config).expect("save");
        let back = store.load("w").expect("load").config;
        assert_eq!(back, config);
        assert!(!back.socks5.expect("section").serves());

        // Unknown keys are refused, naming the file.
        fs::write(&path, format!("{text}\n[socks5]\nport = 1080\nprot = 1\n")).expect("write");
        let err = store.load("w").expect_err("unknown key").to_string();
        assert!(err.contains("config.toml") && err.contains("prot"), "{err}");
    }

    const PROVIDER: &str = "DguTcdkWWtDyUFLvQxRdcA8qZhardhE1ZXy1YCC7Zfmq.Dxreouj5RhQqMb3ZaAxgXFdGkmfbDKwk457FdeHGKmQQ@4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";

    #[test]
    fn socks5_validation_says_what_to_fix() {
        let ws = WebsocketConfig::new(default_host(), 1977, None);
        let ok = Socks5Config::new(default_host(), 1080, Some(PROVIDER.into()));
        assert_eq!(ok.validate(&ws), Ok(()));
        let check = |edit: &dyn Fn(&mut Socks5Config), want: &str| {
            let mut c = ok.clone();
            edit(&mut c);
            let e = c.validate(&ws).expect_err(want).to_string();
            assert!(e.contains(want), "{e}");
        };
        check(&|c| c.port = 0, "from 1 to 65535");
        check(&|c| c.port = 1977, "websocket port");
        check(
            &|c| c.host = "0.0.0.0".parse().expect("ip"),
            "not a loopback",
        );
        check(&|c| c.provider = Some("nope".into()), "provider auto");
        check(&|c| c.max_connections = 0, "max_connections");
        check(&|c| c.connect_timeout_secs = 0, "connect_timeout_secs");
        check(&|c| c.idle_timeout_secs = 1 << 40, "idle_timeout_secs");
        // The websocket port on another loopback address is fine; a remote
        // host with allow_remote_apps too.
        let mut c = ok.clone();
        c.port = 1977;
        c.host = "127.0.0.2".parse().expect("ip");
        assert_eq!(c.validate(&ws), Ok(()));
        let mut remote = ws.clone();
        remote.allow_remote_apps = true;
        c.host = "0.0.0.0".parse().expect("ip");
        c.port = 1080;
        assert_eq!(c.validate(&remote), Ok(()));
        // No provider: valid, but not served.
        let mut c = ok.clone();
        c.provider = None;
        assert_eq!(c.validate(&ws), Ok(()));
        assert!(!c.serves());
    }

    #[test]
    fn insecure_state_dir_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("s");
        fs::create_dir(&dir).expect("mk");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = IdentityStore::open(&dir).expect_err("refused");
        assert!(err.to_string().contains("chmod go-w"), "{err}");
    }
}
