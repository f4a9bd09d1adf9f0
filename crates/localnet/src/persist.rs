//! The saved state of a persistent network ([`LocalnetConfig::state_dir`]):
//! the network file (`localnet.json`: every node's keys and ports, the
//! directory port) and one client file per gateway
//! (`gateway-<id>-clients.json`: each registered client's shared key, last
//! `authenticateV2` timestamp and bandwidth); and the keys of the network's
//! own network requester (`network-requester-keys.json`,
//! [`load_or_create_client_keys`]), made once so that its address stays.
//!
//! Files are JSON, mode 0600, written atomically (temporary sibling, fsync,
//! rename, fsync of the folder); the folder is made with mode 0700. A file
//! that cannot be used gives [`LocalnetError::StateFile`], naming the file
//! and what to do about it. Messages stored for offline clients are not
//! saved.
//!
//! [`LocalnetConfig::state_dir`]: crate::LocalnetConfig::state_dir

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nymd_proto::keys::{
    AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair, X25519Secret,
};
use nymd_proto::topology::NodeId;
use serde::{Deserialize, Serialize};

use crate::gateway::{ClientAddress, ClientRecord};
use crate::network::{LocalnetError, NodeKind};

/// Name of the network file in the state folder.
pub const NETWORK_STATE_FILE: &str = "localnet.json";
/// Version of both file formats.
const FORMAT_VERSION: u32 = 1;
/// Mode of the state files.
const FILE_MODE: u32 = nymd_fsutil::SECRET_FILE_MODE;

/// Name of a gateway's client file in the state folder.
pub fn gateway_clients_file(id: NodeId) -> String {
    format!("gateway-{id}-clients.json")
}

/// What to do about an unusable network file.
fn network_hint(path: &Path) -> String {
    format!(
        "delete {} to start a fresh local network (identities registered on the old one must then be created again)",
        path.display()
    )
}

/// What to do about an unusable client file.
fn clients_hint(path: &Path) -> String {
    format!(
        "delete {} to make that gateway forget its clients (they must then register again)",
        path.display()
    )
}

fn unusable(path: &Path, reason: impl Into<String>, hint: String) -> LocalnetError {
    LocalnetError::StateFile {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint,
    }
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LocalnetError + 'a {
    move |source| LocalnetError::StateIo {
        action,
        path: path.to_path_buf(),
        source,
    }
}

// ------------------------------------------------------------- files

/// Create `dir` (and parents) with mode 0700 for the new parts.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), LocalnetError> {
    nymd_fsutil::create_private_dir(dir).map_err(io_error("create the state folder", dir))
}

/// Write `bytes` to `path` atomically with mode 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    nymd_fsutil::write_atomic(path, bytes, FILE_MODE)
}

/// Refuse a state file of another format version.
fn check_version(
    path: &Path,
    version: u32,
    hint: impl Fn() -> String,
) -> Result<(), LocalnetError> {
    if version == FORMAT_VERSION {
        return Ok(());
    }
    Err(unusable(
        path,
        format!("it has format version {version}, this build reads version {FORMAT_VERSION}"),
        hint(),
    ))
}

/// Read a file, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, LocalnetError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// Before a fresh network is made in `dir`: delete the client files of an
/// older network (their gateways are gone) and temporary files of
/// interrupted writes.
pub(crate) fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_clients = name.starts_with("gateway-") && name.ends_with("-clients.json");
        let temporary = name.starts_with('.') && name.contains(".json.tmp-");
        if stale_clients || temporary {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "deleted a file of an older local network")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "cannot delete a file of an older local network: {e}")
                }
            }
        }
    }
}

fn decode_key32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("{what} is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{what} has {} bytes, not 32", bytes.len()))
}

fn decode_bs58_32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| format!("{what} is not base58: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{what} has {} bytes, not 32", bytes.len()))
}

// ----------------------------------------------------------- network

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    Mixnode,
    Gateway,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    version: u32,
    directory_port: u16,
    nodes: Vec<NodeEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: NodeId,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer: Option<u8>,
    /// Base58 public identity (checked against the secret on load).
    identity: String,
    /// Hex ed25519 secret seed.
    identity_secret: String,
    /// Hex x25519 sphinx secret.
    sphinx_secret: String,
    mix_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ws_port: Option<u16>,
}

/// One node as saved.
pub(crate) struct SavedNode {
    pub id: NodeId,
    pub kind: NodeKind,
    pub identity: IdentityKeyPair,
    pub sphinx: X25519Secret,
    pub mix_port: u16,
    pub ws_port: Option<u16>,
}

impl std::fmt::Debug for SavedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedNode")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("identity", &self.identity)
            .field("mix_port", &self.mix_port)
            .field("ws_port", &self.ws_port)
            .finish_non_exhaustive()
    }
}

/// A network as saved.
#[derive(Debug)]
pub(crate) struct SavedNetwork {
    pub directory_port: u16,
    pub nodes: Vec<SavedNode>,
}

impl SavedNetwork {
    /// Load the network file; `None` if there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, LocalnetError> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(None);
        };
        let hint = || network_hint(path);
        let file: NetworkFile = serde_json::from_slice(&bytes)
            .map_err(|e| unusable(path, format!("it is not a valid network file: {e}"), hint()))?;
        check_version(path, file.version, hint)?;
        let mut nodes = Vec::with_capacity(file.nodes.len());
        for (i, n) in file.nodes.into_iter().enumerate() {
            let node = decode_node(n, i).map_err(|reason| unusable(path, reason, hint()))?;
            nodes.push(node);
        }
        let net = SavedNetwork {
            directory_port: file.directory_port,
            nodes,
        };
        net.shape()
            .map_err(|reason| unusable(path, reason, hint()))?;
        Ok(Some(net))
    }

    /// Mixnodes per layer and gateways, if the nodes are laid out as
    /// [`Localnet::start`](crate::Localnet::start) makes them: layer 1, 2, 3
    /// of equal size, then the gateways.
    fn shape(&self) -> Result<(usize, usize), String> {
        let count = |k: NodeKind| self.nodes.iter().filter(|n| n.kind == k).count();
        let per_layer = count(NodeKind::Mixnode { layer: 1 });
        let gateways = count(NodeKind::Gateway);
        let expected = (1..=3u8)
            .flat_map(|layer| std::iter::repeat_n(NodeKind::Mixnode { layer }, per_layer))
            .chain(std::iter::repeat_n(NodeKind::Gateway, gateways));
        let laid_out = self.nodes.len() == 3 * per_layer + gateways
            && self.nodes.iter().map(|n| n.kind).eq(expected);
        if !laid_out || per_layer == 0 || gateways == 0 {
            return Err(
                "its nodes are not three equal mix layers followed by at least one gateway".into(),
            );
        }
        Ok((per_layer, gateways))
    }

    /// Check that the saved network has the shape the configuration asks
    /// for (a network is never reshaped: that would change node keys).
    pub(crate) fn check_shape(
        &self,
        path: &Path,
        mixnodes_per_layer: usize,
        gateways: usize,
    ) -> Result<(), LocalnetError> {
        let (saved_per_layer, saved_gateways) = self
            .shape()
            .map_err(|reason| unusable(path, reason, network_hint(path)))?;
        if (saved_per_layer, saved_gateways) != (mixnodes_per_layer, gateways) {
            return Err(unusable(
                path,
                format!(
                    "it holds a network of {saved_per_layer} mixnode(s) per layer and {saved_gateways} gateway(s), but {mixnodes_per_layer} and {gateways} were asked for"
                ),
                format!(
                    "start with the saved shape, or {}",
                    network_hint(path)
                ),
            ));
        }
        Ok(())
    }

    /// Write the network file atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<(), LocalnetError> {
        let file = NetworkFile {
            version: FORMAT_VERSION,
            directory_port: self.directory_port,
            nodes: self
                .nodes
                .iter()
                .map(|n| {
                    let (role, layer) = match n.kind {
                        NodeKind::Mixnode { layer } => (Role::Mixnode, Some(layer)),
                        NodeKind::Gateway => (Role::Gateway, None),
                    };
                    NodeEntry {
                        id: n.id,
                        role,
                        layer,
                        identity: bs58::encode(n.identity.public_bytes()).into_string(),
                        identity_secret: hex::encode(n.identity.secret_bytes()),
                        sphinx_secret: hex::encode(n.sphinx.to_bytes()),
                        mix_port: n.mix_port,
                        ws_port: n.ws_port,
                    }
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| LocalnetError::Serialise(format!("network state: {e}")))?;
        write_atomic(path, &json).map_err(io_error("write", path))
    }
}

fn decode_node(n: NodeEntry, index: usize) -> Result<SavedNode, String> {
    let expected_id = index + 1;
    if usize::try_from(n.id).ok() != Some(expected_id) {
        return Err(format!(
            "node number {expected_id} has id {}, expected {expected_id}",
            n.id
        ));
    }
    let what = |field: &str| format!("node {}: {field}", n.id);
    let kind = match (n.role, n.layer) {
        (Role::Mixnode, Some(layer @ 1..=3)) => NodeKind::Mixnode { layer },
        (Role::Mixnode, Some(layer)) => {
            return Err(format!("{} {layer} is not 1, 2 or 3", what("layer")))
        }
        (Role::Mixnode, None) => return Err(format!("{} is missing", what("layer"))),
        (Role::Gateway, None) => NodeKind::Gateway,
        (Role::Gateway, Some(_)) => return Err(format!("{} is set for a gateway", what("layer"))),
    };
    match (kind, n.ws_port) {
        (NodeKind::Gateway, None) => return Err(format!("{} is missing", what("ws_port"))),
        (NodeKind::Mixnode { .. }, Some(_)) => {
            return Err(format!("{} is set for a mixnode", what("ws_port")))
        }
        _ => {}
    }
    let identity = IdentityKeyPair::from_secret_bytes(&decode_key32(
        &n.identity_secret,
        &what("identity_secret"),
    )?);
    let public = decode_bs58_32(&n.identity, &what("identity"))?;
    if identity.public_bytes() != public {
        return Err(format!(
            "{} does not match its identity_secret",
            what("identity")
        ));
    }
    let sphinx = X25519Secret::from(decode_key32(&n.sphinx_secret, &what("sphinx_secret"))?);
    Ok(SavedNode {
        id: n.id,
        kind,
        identity,
        sphinx,
        mix_port: n.mix_port,
        ws_port: n.ws_port,
    })
}

// ----------------------------------------------------------- clients

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    version: u32,
    gateway_id: NodeId,
    /// Base58 identity of the gateway the clients registered with.
    gateway_identity: String,
    clients: Vec<ClientEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    /// Base58 client identity.
    client: String,
    /// Hex shared key.
    shared_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_auth: Option<u64>,
    bandwidth: i64,
}

/// Load a gateway's client file (empty if there is none), checking that it
/// belongs to the gateway `identity`.
pub(crate) fn load_clients(
    path: &Path,
    gateway_id: NodeId,
    identity: &[u8; 32],
) -> Result<HashMap<ClientAddress, ClientRecord>, LocalnetError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(HashMap::new());
    };
    let hint = || clients_hint(path);
    let file: ClientsFile = serde_json::from_slice(&bytes)
        .map_err(|e| unusable(path, format!("it is not a valid client file: {e}"), hint()))?;
    check_version(path, file.version, hint)?;
    let saved_identity = decode_bs58_32(&file.gateway_identity, "gateway_identity")
        .map_err(|r| unusable(path, r, hint()))?;
    if file.gateway_id != gateway_id || &saved_identity != identity {
        return Err(unusable(
            path,
            format!(
                "it belongs to gateway {} ({}), not to gateway {gateway_id} ({}) of this network",
                file.gateway_id,
                file.gateway_identity,
                bs58::encode(identity).into_string()
            ),
            hint(),
        ));
    }
    let mut clients = HashMap::with_capacity(file.clients.len());
    for (i, c) in file.clients.into_iter().enumerate() {
        let what = |field: &str| format!("client {}: {field}", i + 1);
        let decoded = decode_bs58_32(&c.client, &what("client")).and_then(|address| {
            let key = decode_key32(&c.shared_key, &what("shared_key"))?;
            Ok((address, key))
        });
        let (address, key) = decoded.map_err(|r| unusable(path, r, hint()))?;
        clients.insert(
            address,
            ClientRecord {
                shared_key: GatewaySharedKey::from_bytes(key),
                last_auth: c.last_auth,
                bandwidth: c.bandwidth,
            },
        );
    }
    Ok(clients)
}

/// The bytes of a gateway's client file.
pub(crate) fn encode_clients(
    gateway_id: NodeId,
    identity: &[u8; 32],
    clients: &HashMap<ClientAddress, ClientRecord>,
) -> Result<Vec<u8>, LocalnetError> {
    let mut entries: Vec<ClientEntry> = clients
        .iter()
        .map(|(address, r)| ClientEntry {
            client: bs58::encode(address).into_string(),
            shared_key: hex::encode(r.shared_key.as_bytes()),
            last_auth: r.last_auth,
            bandwidth: r.bandwidth,
        })
        .collect();
    entries.sort_by(|a, b| a.client.cmp(&b.client));
    let file = ClientsFile {
        version: FORMAT_VERSION,
        gateway_id,
        gateway_identity: bs58::encode(identity).into_string(),
        clients: entries,
    };
    serde_json::to_vec_pretty(&file)
        .map_err(|e| LocalnetError::Serialise(format!("gateway clients: {e}")))
}

/// Write a gateway's client file atomically.
pub(crate) fn write_clients(path: &Path, bytes: &[u8]) -> Result<(), LocalnetError> {
    write_atomic(path, bytes).map_err(io_error("write", path))
}

/// Where a gateway saves its clients.
#[derive(Debug, Clone)]
pub(crate) struct ClientsFileRef {
    pub path: PathBuf,
    pub gateway_id: NodeId,
}

// ------------------------------------------------------- client keys

/// Name of the file that keeps the keys of the network's own network
/// requester (the SOCKS5 exit `nymd --localnet` runs), so that its Nym
/// address stays the same across restarts.
pub const NETWORK_REQUESTER_KEYS_FILE: &str = "network-requester-keys.json";

/// The keys of a Nym client that belongs with a persistent local network
/// (its network requester): identity, encryption key and ack key. With the
/// gateway it registers with, they make its Nym address.
pub struct LocalClientKeys {
    /// ed25519 identity.
    pub identity: IdentityKeyPair,
    /// x25519 key that packets to the client are encrypted for.
    pub encryption: EncryptionKeyPair,
    /// AES key of the client's acks.
    pub ack: AckKey,
}

impl std::fmt::Debug for LocalClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClientKeys")
            .field("identity", &self.identity)
            .field("encryption", &self.encryption)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientKeysFile {
    version: u32,
    /// Base58 public identity (checked against the secret on load).
    identity: String,
    /// Hex ed25519 secret seed.
    identity_secret: String,
    /// Base58 public encryption key (checked against the secret on load).
    encryption: String,
    /// Hex x25519 secret.
    encryption_secret: String,
    /// Hex 16-byte ack key.
    ack_key: String,
}

/// What to do about an unusable client key file.
fn client_keys_hint(path: &Path) -> String {
    format!(
        "restore it from a backup, or delete {} to give the client new keys (its Nym address then changes, and whoever names the old address must be given the new one)",
        path.display()
    )
}

/// Load the client keys kept in `path`, or make new ones and write them
/// there (atomically, mode 0600) when there is no such file. True in the
/// second place when they were made now. A file that cannot be used is an
/// error naming it and what to do: new keys would change the address.
pub fn load_or_create_client_keys(path: &Path) -> Result<(LocalClientKeys, bool), LocalnetError> {
    if let Some(bytes) = read_optional(path)? {
        return decode_client_keys(path, &bytes).map(|k| (k, false));
    }
    let mut rng = rand::rngs::OsRng;
    let keys = LocalClientKeys {
        identity: IdentityKeyPair::generate(&mut rng),
        encryption: EncryptionKeyPair::generate(&mut rng),
        ack: AckKey::generate(&mut rng),
    };
    let file = ClientKeysFile {
        version: FORMAT_VERSION,
        identity: bs58::encode(keys.identity.public_bytes()).into_string(),
        identity_secret: hex::encode(keys.identity.secret_bytes()),
        encryption: bs58::encode(keys.encryption.public().as_bytes()).into_string(),
        encryption_secret: hex::encode(keys.encryption.secret().to_bytes()),
        ack_key: hex::encode(keys.ack.as_bytes()),
    };
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| LocalnetError::Serialise(format!("client keys: {e}")))?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    write_atomic(path, &json).map_err(io_error("write", path))?;
    Ok((keys, true))
}

fn decode_client_keys(path: &Path, bytes: &[u8]) -> Result<LocalClientKeys, LocalnetError> {
    let hint = || client_keys_hint(path);
    let file: ClientKeysFile = serde_json::from_slice(bytes)
        .map_err(|e| unusable(path, format!("it is not a valid key file: {e}"), hint()))?;
    check_version(path, file.version, hint)?;
    let decoded = (|| {
        let identity = IdentityKeyPair::from_secret_bytes(&decode_key32(
            &file.identity_secret,
            "identity_secret",
        )?);
        if identity.public_bytes() != decode_bs58_32(&file.identity, "identity")? {
            return Err("identity does not match its identity_secret".to_string());
        }
        let encryption = EncryptionKeyPair::from_secret_bytes(decode_key32(
            &file.encryption_secret,
            "encryption_secret",
        )?);
        if *encryption.public().as_bytes() != decode_bs58_32(&file.encryption, "encryption")? {
            return Err("encryption does not match its encryption_secret".to_string());
        }
        let ack = hex::decode(&file.ack_key).map_err(|e| format!("ack_key is not hex: {e}"))?;
        let ack = <[u8; 16]>::try_from(ack.as_slice())
            .map_err(|_| format!("ack_key has {} bytes, not 16", ack.len()))?;
        Ok(LocalClientKeys {
            identity,
            encryption,
            ack: AckKey::from_bytes(ack),
        })
    })();
    decoded.map_err(|reason| unusable(path, reason, hint()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn client_keys_are_made_once_then_loaded_and_damage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state").join(NETWORK_REQUESTER_KEYS_FILE);
        let (made, created) = load_or_create_client_keys(&p).expect("made");
        assert!(created);
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (loaded, created) = load_or_create_client_keys(&p).expect("loaded");
        assert!(!created);
        assert_eq!(loaded.identity.public_bytes(), made.identity.public_bytes());
        assert_eq!(loaded.encryption.public(), made.encryption.public());
        assert_eq!(loaded.ack.as_bytes(), made.ack.as_bytes());

        let good = fs::read_to_string(&p).expect("read");
        let other = IdentityKeyPair::generate(&mut rand::rngs::OsRng);
        for (damaged, says) in [
            ("{ not json".to_string(), "not a valid key file"),
            (String::new(), "not a valid key file"),
            (good[..good.len() / 2].to_string(), "not a valid key file"),
            (
                good.replace("\"version\": 1", "\"version\": 9"),
                "format version 9",
            ),
            (
                good.replace(
                    &bs58::encode(made.identity.public_bytes()).into_string(),
                    &bs58::encode(other.public_bytes()).into_string(),
                ),
                "identity does not match",
            ),
            (
                good.replace(&hex::encode(made.ack.as_bytes()), "abcd"),
                "ack_key has 2 bytes",
            ),
        ] {
            fs::write(&p, &damaged).expect("damage");
            let e = load_or_create_client_keys(&p).expect_err("refused");
            let text = e.to_string();
            assert!(
                text.contains(says)
                    && text.contains(&p.display().to_string())
                    && text.contains("delete"),
                "{text}"
            );
            // Never replaced by new keys.
            assert_eq!(fs::read_to_string(&p).expect("read"), damaged);
        }
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn clients_round_trip_and_wrong_gateway_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(gateway_clients_file(4));
        let gw = [7u8; 32];
        let mut clients = HashMap::new();
        clients.insert(
            [1u8; 32],
            ClientRecord {
                shared_key: GatewaySharedKey::from_bytes([9; 32]),
                last_auth: Some(1_700_000_000),
                bandwidth: 12345,
            },
        );
        let bytes = encode_clients(4, &gw, &clients).expect("encode");
        write_clients(&p, &bytes).expect("write");
        let back = load_clients(&p, 4, &gw).expect("load");
        let r = back.get(&[1u8; 32]).expect("client");
        assert_eq!(r.shared_key.as_bytes(), &[9; 32]);
        assert_eq!(r.last_auth, Some(1_700_000_000));
        assert_eq!(r.bandwidth, 12345);

        let err = load_clients(&p, 4, &[8u8; 32]).expect_err("other gateway");
        let text = err.to_string();
        assert!(text.contains(&p.display().to_string()), "{text}");
        assert!(text.contains("delete"), "{text}");
        assert!(load_clients(&dir.path().join("none.json"), 4, &gw)
            .expect("missing file")
            .is_empty());
    }
}
