//! The guest's root file system: an archive the kernel unpacks itself, so the guest needs no
//! disk image and no driver for one.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::Guest;
use crate::cmd::{progress, run};

const INIT: &str = include_str!("../../vm/init");

/// A gzip'd newc cpio archive, the format the kernel unpacks into its initial root; `extra`
/// adds executables and shared libraries as (path in the guest, file on the host), in
/// directories made for them where needed.
pub(super) fn write_initramfs(path: &Path, guest: &Guest, extra: &[(&str, &Path)]) -> Result<()> {
    let mut cpio = Cpio::default();
    let mut dirs: BTreeSet<String> = ["bin", "dev", "proc", "sys", "root", "tmp"]
        .map(String::from)
        .into();
    dirs.extend(parents(extra.iter().map(|(name, _)| *name)));
    // In order, so each directory comes after its parent.
    for dir in &dirs {
        // Anyone may write to /tmp, as on any system; only its owner may remove a file in it.
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        cpio.dir(dir, mode);
    }
    // The kernel opens /dev/console as init's stdin, stdout and stderr before init can mount
    // devtmpfs; without the node init would run with no output at all.
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, INIT.as_bytes())?;
    for (name, source) in [
        ("bin/busybox", Path::new("/bin/busybox")),
        ("bin/oom_kill", &guest.tests),
        ("bin/hog", &guest.hog),
        ("bin/oomtrace", &guest.oomtrace),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        let body =
            fs::read(source).with_context(|| format!("could not read {}", source.display()))?;
        cpio.file(name, 0o755, &body)?;
    }
    write_gzipped(path, &cpio.finish())?;
    progress(format_args!("initramfs: {}", path.display()));
    Ok(())
}

/// Writes `archive` to `path` (a `.gz` name) compressed, by way of the same name without the
/// `.gz`, which gzip replaces.
pub(super) fn write_gzipped(path: &Path, archive: &[u8]) -> Result<()> {
    let plain = path.with_extension("");
    fs::write(&plain, archive).with_context(|| format!("could not write {}", plain.display()))?;
    run(Command::new("gzip")
        .args(["--force", "--no-name", "--fast"])
        .arg(&plain))
}

/// Every directory the archive paths `names` lie in, parents first in the set's order.
pub(super) fn parents<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for name in names {
        let mut parent = Path::new(name).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    dirs
}

/// A newc ("070701") cpio writer: owner root, mtime 0, one inode per entry.
#[derive(Default)]
pub(super) struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    const DIR: u32 = 0o040_000;
    const FILE: u32 = 0o100_000;
    const CHAR: u32 = 0o020_000;

    pub(super) fn dir(&mut self, name: &str, mode: u32) {
        self.entry(name, Self::DIR | mode, 2, (0, 0), &[]);
    }

    fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, Self::CHAR | mode, 1, (major, minor), &[]);
    }

    pub(super) fn file(&mut self, name: &str, mode: u32, body: &[u8]) -> Result<()> {
        if u32::try_from(body.len()).is_err() {
            bail!("{name} is too large for a newc cpio archive");
        }
        self.entry(name, Self::FILE | mode, 1, (0, 0), body);
        Ok(())
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.data
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), body: &[u8]) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: the same inputs give the same archive
            body.len() as u32,
            0, // device of the archived file: meaningless here
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // checksum: newc has none
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    /// Headers and file data start on 4-byte boundaries.
    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_entries_on_four_byte_boundaries() {
        let mut cpio = Cpio::default();
        cpio.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let archive = cpio.finish();
        assert_eq!(archive.len() % 4, 0);
        assert!(archive.starts_with(b"070701"));
        // mode, then filesize and namesize.
        assert_eq!(&archive[14..22], b"000081ed");
        assert_eq!(&archive[54..62], b"0000000a");
        assert_eq!(&archive[94..102], b"00000005");
        assert_eq!(&archive[110..115], b"init\0");
        // 110 + 5 padded to 116, then 10 bytes of data padded to 128.
        assert_eq!(&archive[116..126], b"#!/bin/sh\n");
        assert_eq!(&archive[128..134], b"070701");
    }
}
