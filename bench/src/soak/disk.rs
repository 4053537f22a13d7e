//! The soak's disks: a scratch directory for its dockerd and its tmpfs, and the small tmpfs
//! whose filling up oomtrace's `--output` must survive.

use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use oomtrace_tests::{TempDir, temp_dir};

use crate::console::{progress, stdout_within};

/// Small enough that the lines of a few kills fill it.
const TMPFS_SIZE: &str = "64k";
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// The soak's scratch directory (the daemon's state, the tmpfs), removed at the end unless
/// something is still mounted below it.
pub struct Scratch(Option<TempDir>);

impl Scratch {
    pub fn create() -> Self {
        Self(Some(temp_dir("soak", 0o755)))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("kept until dropped").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        if mounted_below(dir.path()) {
            // Removing it would reach into the filesystem mounted there.
            progress(format_args!(
                "soak: left {} in place: something is still mounted below it",
                dir.keep().display()
            ));
        }
    }
}

/// Whether any mount point lies below `dir`: removing it would reach into that filesystem.
fn mounted_below(dir: &Path) -> bool {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|point| point.starts_with(&prefix))
    })
}

/// The small tmpfs `--output` writes to, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path) -> Result<Self> {
        fs::create_dir_all(at).with_context(|| format!("could not create {}", at.display()))?;
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={TMPFS_SIZE},mode=0755"))
            .arg("oomtrace-soak")
            .arg(at);
        stdout_within(&mut mount, MOUNT_TIMEOUT)?;
        Ok(Self(at.to_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(err) = stdout_within(Command::new("umount").arg(&self.0), MOUNT_TIMEOUT) {
            progress(format_args!("soak: could not unmount the tmpfs: {err:#}"));
        }
    }
}

/// Fills the disk `path` is on, as another writer would; how many bytes it took.
pub fn fill(path: &Path) -> Result<u64> {
    let mut file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let chunk = [0u8; 4096];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => bail!("{} took no more bytes but said no error", path.display()),
            Ok(n) => written += n as u64,
            Err(err) if err.kind() == ErrorKind::StorageFull => return Ok(written),
            Err(err) => return Err(err).context(format!("could not fill {}", path.display())),
        }
    }
}
