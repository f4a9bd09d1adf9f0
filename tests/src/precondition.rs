//! Preconditions of tests that need more than a plain user has (root, a
//! second uid, a tmpfs mount). Outside CI a missing precondition skips the
//! test with a line saying why; under CI (`CI` set and not empty, as
//! `.ci/run` does) it fails the test, so a check that CI is meant to run can
//! never pass by not running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// True when running under CI.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Report a missing precondition: panics under CI, prints a skip line
/// otherwise. The caller returns right after.
#[track_caller]
pub fn missing(what: &str) {
    if in_ci() {
        panic!("precondition missing under CI (a skip is a failure here): {what}");
    }
    eprintln!("skipped: {what}");
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A copy of `binary` in a fresh folder every user may enter and execute
/// from, so that a test can run it as another uid whatever the modes of the
/// folders above the build tree are (a checkout under `/root` is not
/// traversable by uid 65534). Keep the returned `TempDir` alive while the
/// copy is used.
pub fn copy_for_other_users(binary: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("nymd-test-bin")
        .tempdir_in("/tmp")
        .expect("temp dir for a binary copy");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod binary folder");
    let name = binary.file_name().expect("binary has a file name");
    let copy = dir.path().join(name);
    std::fs::copy(binary, &copy).expect("copy binary");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .expect("chmod binary copy");
    (dir, copy)
}
