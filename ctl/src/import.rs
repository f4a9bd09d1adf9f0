//! Reading an existing nym-client folder (`~/.nym/clients/<id>/`) for
//! `nymctl import`.
//!
//! Read: the five key files under `data/` (PEM, labels as nym-client writes
//! them; a wrong label is refused, as nym-client does), and the websocket
//! host and port from `config/config.toml` when present.
//!
//! Not read: the gateway registration. It lives in
//! `data/gateways_registrations.sqlite`, and reading SQLite would need a
//! database dependency in nymctl. The import sends the keys only; nymd
//! registers with a gateway anew. The Nym address is
//! `<identity>.<encryption>@<gateway>`, so it keeps its first two parts and
//! may get another gateway part.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use nymd_ipc::ImportRequest;

/// A key file nym-client writes: file name, PEM label, raw length.
struct KeyFile {
    file: &'static str,
    label: &'static str,
    len: usize,
}

const KEYS: [KeyFile; 5] = [
    KeyFile {
        file: "private_identity.pem",
        label: "ED25519 PRIVATE KEY",
        len: 32,
    },
    KeyFile {
        file: "public_identity.pem",
        label: "ED25519 PUBLIC KEY",
        len: 32,
    },
    KeyFile {
        file: "private_encryption.pem",
        label: "X25519 PRIVATE KEY",
        len: 32,
    },
    KeyFile {
        file: "public_encryption.pem",
        label: "X25519 PUBLIC KEY",
        len: 32,
    },
    KeyFile {
        file: "ack_key.pem",
        label: "AES-128-CTR ACKNOWLEDGEMENTS KEY",
        len: 16,
    },
];

/// Name of the registration database we do not read.
pub const REGISTRATIONS_DB: &str = "gateways_registrations.sqlite";

/// What was read from the folder.
#[derive(Debug)]
pub struct Imported {
    /// The request for the daemon.
    pub request: ImportRequest,
    /// Whether a gateway registration database was there (and skipped).
    pub skipped_registration: Option<PathBuf>,
}

/// Decode a PEM file with exactly one block of the expected label.
pub fn decode_pem(text: &str, label: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    if first != begin {
        let got = first
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .unwrap_or(first);
        bail!("unexpected key pem tag: got '{got}', expected '{label}'");
    }
    let mut body = String::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line == end {
            closed = true;
            break;
        }
        body.push_str(line);
    }
    if !closed {
        bail!("no '{end}' line");
    }
    if lines.next().is_some() {
        bail!("text after the end of the key");
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the key is not valid base64")
}

/// Read a nym-client folder.
pub fn read_client_dir(id: &str, dir: &Path) -> anyhow::Result<Imported> {
    let data = dir.join("data");
    if !data.is_dir() {
        bail!(
            "{} has no data/ folder: expected a nym-client folder such as ~/.nym/clients/<id>",
            dir.display()
        );
    }
    let mut keys = Vec::with_capacity(KEYS.len());
    for k in &KEYS {
        let path = data.join(k.file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let raw = decode_pem(&text, k.label).with_context(|| format!("{}", path.display()))?;
        if raw.len() != k.len {
            bail!(
                "{}: key is {} bytes, expected {}",
                path.display(),
                raw.len(),
                k.len
            );
        }
        keys.push(raw);
    }
    let (port, host) = read_socket_config(&dir.join("config/config.toml"))?;
    let mut keys = keys.into_iter();
    let mut next = || keys.next().unwrap_or_default();
    let request = ImportRequest {
        id: id.to_owned(),
        source: dir.display().to_string(),
        private_identity: next(),
        public_identity: next(),
        private_encryption: next(),
        public_encryption: next(),
        ack_key: next(),
        gateway: None,
        port,
        host,
    };
    let db = data.join(REGISTRATIONS_DB);
    Ok(Imported {
        request,
        skipped_registration: db.exists().then_some(db),
    })
}

/// `socket.listening_port` and `socket.host` of nym-client's config, if the
/// file exists.
fn read_socket_config(path: &Path) -> anyhow::Result<(Option<u16>, Option<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} does not parse", path.display()))?;
    let socket = value.get("socket");
    let port = socket
        .and_then(|s| s.get("listening_port"))
        .and_then(toml::Value::as_integer)
        .and_then(|p| u16::try_from(p).ok());
    let host = socket
        .and_then(|s| s.get("host"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    Ok((port, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_labels_must_match() {
        let pem = "-----BEGIN X25519 PUBLIC KEY-----\nAQID\n-----END X25519 PUBLIC KEY-----\n";
        assert_eq!(
            decode_pem(pem, "X25519 PUBLIC KEY").expect("decodes"),
            vec![1, 2, 3]
        );
        let err = decode_pem(pem, "ED25519 PUBLIC KEY").expect_err("wrong label");
        assert!(err.to_string().contains("got 'X25519 PUBLIC KEY'"), "{err}");
        assert!(decode_pem(
            "-----BEGIN X25519 PUBLIC KEY-----\nAQID\n",
            "X25519 PUBLIC KEY"
        )
        .is_err());
        assert!(decode_pem("", "X25519 PUBLIC KEY").is_err());
    }
}
