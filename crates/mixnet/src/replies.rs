//! The persisted reply state of an identity (its format and pruning are
//! the core's: `nymd_client::snapshot`), kept as one atomic snapshot file
//! (`nymd_fsutil::write_atomic`, mode 0600: it holds reply keys), rewritten
//! by the driver at most once a second when the core says it changed, and
//! once more when the client stops; a SIGKILL loses at most what the last
//! second changed. A file that does not parse or whose checksum fails is
//! reported, set aside and ignored.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nymd_client::snapshot::{decode, unix_ms, Snapshot};

/// Read the snapshot at `path` (blocking). None: no file, or one that
/// does not parse (logged and renamed `<name>.damaged-<unix ms>`).
pub(crate) fn load(path: &Path) -> Option<Snapshot> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the reply state; starting without it");
            return None;
        }
    };
    match decode(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let aside = damaged_name(path);
            tracing::warn!(
                path = %path.display(),
                error = %e,
                kept_as = %aside.display(),
                "the reply state file is damaged; ignoring it (earlier sender tags and reply keys are lost)"
            );
            let _ = std::fs::rename(path, &aside);
            None
        }
    }
}

fn damaged_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "replies".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}.damaged-{}", unix_ms(SystemTime::now())))
}

/// The core's reply state now, encoded for the file (marks it saved).
pub(crate) fn encode_now(core: &mut nymd_client::Client) -> Vec<u8> {
    nymd_client::snapshot::encode(&core.replies_snapshot(unix_ms(SystemTime::now())))
}

/// Write the snapshot bytes (blocking).
pub(crate) fn save(path: &Path, bytes: &[u8]) {
    if let Err(e) = nymd_fsutil::write_atomic(path, bytes, nymd_fsutil::SECRET_FILE_MODE) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the reply state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nymd_client::snapshot::encode;
    use nymd_proto::SenderTag;

    #[test]
    fn a_damaged_file_is_set_aside_and_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replies");
        assert!(load(&path).is_none(), "no file");
        std::fs::write(&path, b"garbage").expect("write");
        assert!(load(&path).is_none());
        let damaged = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("replies.damaged-")
            })
            .count();
        assert_eq!(damaged, 1, "set aside");
        let snap = Snapshot {
            saved_unix_ms: 7,
            rotation_id: 3,
            tags: vec![([9u8; 96], SenderTag([4; 16]))],
            ..Snapshot::default()
        };
        save(&path, &encode(&snap));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it holds reply keys");
        let back = load(&path).expect("loads");
        assert_eq!((back.saved_unix_ms, back.rotation_id), (7, 3));
        assert_eq!(back.tags, snap.tags);
    }
}
