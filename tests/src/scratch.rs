//! Scratch directories for the tests (tempfile's, with the mode a test asks for), and copies of
//! a binary that other users can run.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

pub use tempfile::TempDir;

/// A fresh directory `oomtrace-e2e-TAG-XXXXXX` in the system's temporary directory, with
/// `mode`, removed with everything in it on drop.
pub fn temp_dir(tag: &str, mode: u32) -> TempDir {
    temp_dir_in(&std::env::temp_dir(), tag, mode)
}

/// [`temp_dir`] under `parent`.
pub fn temp_dir_in(parent: &Path, tag: &str, mode: u32) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("oomtrace-e2e-{tag}-"))
        .permissions(fs::Permissions::from_mode(mode))
        .tempdir_in(parent)
        .unwrap_or_else(|e| panic!("create a directory in {}: {e}", parent.display()));
    // Created with at most `mode`; set it whole, whatever the umask took away.
    set_mode(dir.path(), mode);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Whether a user who is neither owner nor in the group can traverse every directory down to
/// and including `dir`.
fn others_can_enter(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    dir.ancestors()
        .all(|d| fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0))
}

/// A copy of a binary that any user can run: in a fresh directory of its own (mode 0755, the
/// copy 0755) under a temporary directory every user can reach, removed on drop.
///
/// For running oomtrace as another user (uid 65534 in the refusal tests): the binary under
/// test lives in the checkout's `target/`, which that user cannot reach when the checkout is
/// in a private directory such as a clone in `/root` (mode 0700). Run in place, the exec
/// itself fails with EACCES before oomtrace can say anything.
pub struct Staged {
    /// Held only to be removed, with the copy in it, on drop.
    _dir: TempDir,
    bin: PathBuf,
}

impl Staged {
    pub fn copy_of(source: &Path) -> Self {
        // TMPDIR may itself be private; /tmp is world-writable and sticky on any Linux.
        let parent = [std::env::temp_dir(), PathBuf::from("/tmp")]
            .into_iter()
            .find(|d| others_can_enter(d))
            .unwrap_or_else(|| {
                panic!(
                    "neither {} nor /tmp can be entered by other users: cannot stage {} for them",
                    std::env::temp_dir().display(),
                    source.display()
                )
            });
        let dir = temp_dir_in(&parent, "staged", 0o755);
        let name = source.file_name().expect("a binary has a file name");
        let bin = dir.path().join(name);
        fs::copy(source, &bin)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), bin.display()));
        set_mode(&bin, 0o755);
        Self { _dir: dir, bin }
    }

    pub fn path(&self) -> &Path {
        &self.bin
    }
}
