//! Reading an existing nym-client folder (`~/.nym/clients/<id>/`) for
//! `nymctl import`.
//!
//! Read: the five key files under `data/` (PEM, labels as nym-client writes
//! them; a wrong label is refused, as nym-client does), the websocket host
//! and port from `config/config.toml` when present, and the active gateway
//! registration (gateway identity, listener URL, shared key) from
//! `data/gateways_registrations.sqlite`. With the registration the identity
//! keeps its whole Nym address; without it (no database, or no active
//! gateway), nymd registers with a gateway anew and the address keeps its
//! first two parts only.
//!
//! The database is copied (with its `-wal` file) to a private temporary
//! folder and read there, so a nym-client that is still running and the
//! original files are never touched.

use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use anyhow::{bail, Context};
use nymd_ipc::{ImportRequest, ImportedGateway};

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

/// Name of nym-client's gateway registration database.
pub const REGISTRATIONS_DB: &str = "gateways_registrations.sqlite";

/// What was read from the folder.
#[derive(Debug)]
pub struct Imported {
    /// The request for the daemon.
    pub request: ImportRequest,
    /// A registration database that was there but held no usable active
    /// registration (nymd will register anew).
    pub skipped_registration: Option<PathBuf>,
}

/// Read the active gateway registration from nym-client's database.
/// `Ok(None)` when it names no active gateway or that gateway is not a
/// remote one.
pub fn read_registration(db: &Path) -> anyhow::Result<Option<ImportedGateway>> {
    use rusqlite::OptionalExtension as _;
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    let copy = scratch.path().join(REGISTRATIONS_DB);
    std::fs::copy(db, &copy).with_context(|| format!("cannot read {}", db.display()))?;
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", copy.display()))
            .with_context(|| format!("cannot read {}", wal.display()))?;
    }
    let conn = rusqlite::Connection::open(&copy)
        .with_context(|| format!("{} is not a SQLite database", db.display()))?;
    let active: Option<String> = conn
        .query_row(
            "SELECT active_gateway_id_bs58 FROM active_gateway WHERE id = 0",
            [],
            |r| r.get(0),
        )
        .optional()
        .with_context(|| format!("{}: no active_gateway table", db.display()))?
        .flatten();
    let Some(gateway_id) = active else {
        return Ok(None);
    };
    let row: Option<(Vec<u8>, String)> = conn
        .query_row(
            "SELECT derived_aes256_gcm_siv_key, gateway_listener \
             FROM remote_gateway_details WHERE gateway_id_bs58 = ?1",
            [&gateway_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .with_context(|| format!("{}: no remote_gateway_details table", db.display()))?;
    let Some((shared_key, listener)) = row else {
        return Ok(None);
    };
    if shared_key.len() != 32 {
        bail!(
            "{}: the shared key of gateway {gateway_id} is {} bytes, expected 32",
            db.display(),
            shared_key.len()
        );
    }
    Ok(Some(ImportedGateway {
        gateway_id,
        listener: listener.trim_end_matches('/').to_owned(),
        shared_key: shared_key.into(),
    }))
}

/// Decode a PEM file whose block carries the expected label.
pub fn decode_pem(text: &str, label: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let (got, bytes) = nymd_proto::pem::decode_any(text)?;
    if got != label {
        return Err(nymd_proto::pem::PemError::WrongLabel {
            got,
            expected: label.to_owned(),
        }
        .into());
    }
    Ok(bytes)
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
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        );
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
    // Moved out of their wrappers, not copied: the secret ones live on only
    // in `SecretBytes`, which wipes them.
    let mut next = || {
        keys.next()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default()
    };
    let request = ImportRequest {
        id: id.to_owned(),
        source: dir.display().to_string(),
        private_identity: next().into(),
        public_identity: next(),
        private_encryption: next().into(),
        public_encryption: next(),
        ack_key: next().into(),
        gateway: None,
        port,
        host,
    };
    let mut request = request;
    let db = data.join(REGISTRATIONS_DB);
    let mut skipped = None;
    if db.exists() {
        match read_registration(&db)? {
            Some(g) => request.gateway = Some(g),
            None => skipped = Some(db),
        }
    }
    Ok(Imported {
        request,
        skipped_registration: skipped,
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

/// nym-client's database for the tests, from the pinned schema.
#[cfg(test)]
#[path = "../tests/fixtures/nym_client_db.rs"]
mod nym_client_db;

#[cfg(test)]
mod tests {
    use super::*;

    /// Make a database as nym-client 2026.9 does (the pinned migrations),
    /// with `active` (gateway, shared key, listener) registered and active.
    pub(crate) fn make_db(path: &Path, active: Option<(&str, &[u8], &str)>) {
        let conn = nym_client_db::create(path);
        if let Some((id, key, listener)) = active {
            nym_client_db::register_active(&conn, id, key, listener, None);
        }
    }

    #[test]
    fn registration_is_read_from_nym_clients_database() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join(REGISTRATIONS_DB);
        make_db(&db, Some(("GwIdB58", &[7u8; 32], "ws://1.2.3.4:9000/")));
        let g = read_registration(&db).expect("read").expect("active");
        assert_eq!(g.gateway_id, "GwIdB58");
        assert_eq!(g.shared_key.as_bytes(), &[7u8; 32][..]);
        assert_eq!(g.listener, "ws://1.2.3.4:9000");

        let none = dir.path().join("none.sqlite");
        make_db(&none, None);
        assert!(read_registration(&none).expect("read").is_none());

        let bad = dir.path().join("bad.sqlite");
        std::fs::write(&bad, b"not a database at all, sorry").expect("write");
        assert!(read_registration(&bad).is_err());

        let short = dir.path().join("short.sqlite");
        make_db(&short, Some(("G", &[1u8; 5], "ws://x:1")));
        let err = read_registration(&short).expect_err("short key");
        assert!(err.to_string().contains("expected 32"), "{err}");
    }

    #[test]
    fn the_pinned_migrations_are_nym_client_2026_9s() {
        let names: Vec<&str> = nym_client_db::migrations().iter().map(|m| m.0).collect();
        assert_eq!(
            names,
            [
                "20240304120000_create_initial_tables.sql",
                "20240610120000_nullable_gateway_owner.sql",
                "20240828120000_remove_wg_address.sql",
                "20240916120000_add_aes256_gcm_siv_key.sql",
                "20251126120000_remove_legacy_add_fallback.sql",
            ]
        );
    }

    /// A database made by exactly nym-client 2026.9's migrations, in order,
    /// with a registration stored by nym-client's own statements.
    #[test]
    fn registration_is_read_from_a_database_made_by_nym_clients_migrations() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join(REGISTRATIONS_DB);
        let conn = nym_client_db::create(&db);
        let key: Vec<u8> = (0..32).collect();
        nym_client_db::register_active(
            &conn,
            "8yGFbT4feDFd6eFhhW4Hq9c6vBxmbh3ZYvAdNdqGxp1C",
            &key,
            "ws://203.0.113.7:9000/",
            Some("wss://gateway.example:9001/"),
        );
        // nym-client keeps its connection open: the rows may be in the WAL.
        let g = read_registration(&db).expect("read").expect("active");
        drop(conn);
        assert_eq!(g.gateway_id, "8yGFbT4feDFd6eFhhW4Hq9c6vBxmbh3ZYvAdNdqGxp1C");
        assert_eq!(g.shared_key.as_bytes(), &key[..]);
        assert_eq!(g.listener, "ws://203.0.113.7:9000");
    }

    /// A registration made under an older nym-client (after the aes256
    /// migration) and carried through 2026.9's last migration is read too.
    #[test]
    fn a_registration_carried_through_the_last_migration_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join(REGISTRATIONS_DB);
        let all = nym_client_db::migrations().len();
        let mut conn = nym_client_db::create_with(&db, all - 1);
        conn.execute(
            "INSERT INTO registered_gateway(gateway_id_bs58, registration_timestamp, gateway_type) \
             VALUES ('OldGw', '2025-01-01 00:00:00.0 +00:00:00', 'remote')",
            [],
        )
        .expect("registered_gateway");
        conn.execute(
            "INSERT INTO remote_gateway_details(gateway_id_bs58, gateway_owner_address, \
             gateway_listener, derived_aes256_gcm_siv_key) VALUES ('OldGw', NULL, ?1, ?2)",
            rusqlite::params!["ws://198.51.100.2:9000/", vec![9u8; 32]],
        )
        .expect("remote_gateway_details");
        conn.execute(
            "UPDATE active_gateway SET active_gateway_id_bs58 = 'OldGw'",
            [],
        )
        .expect("active_gateway");
        nym_client_db::migrate(&mut conn, all - 1..all);
        drop(conn);
        let g = read_registration(&db).expect("read").expect("active");
        assert_eq!(g.gateway_id, "OldGw");
        assert_eq!(g.shared_key.as_bytes(), &[9u8; 32][..]);
        assert_eq!(g.listener, "ws://198.51.100.2:9000");
    }

    #[test]
    fn pem_labels_must_match() {
        let pem = "-----BEGIN X25519 PUBLIC KEY-----\nAQID\n-----END X25519 PUBLIC KEY-----\n";
        assert_eq!(
            *decode_pem(pem, "X25519 PUBLIC KEY").expect("decodes"),
            vec![1, 2, 3]
        );
        let err = decode_pem(pem, "ED25519 PUBLIC KEY").expect_err("wrong label");
        assert!(err.to_string().contains("Got 'X25519 PUBLIC KEY'"), "{err}");
        assert!(decode_pem(
            "-----BEGIN X25519 PUBLIC KEY-----\nAQID\n",
            "X25519 PUBLIC KEY"
        )
        .is_err());
        assert!(decode_pem("", "X25519 PUBLIC KEY").is_err());
    }
}
