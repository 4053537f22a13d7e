//! Debian's earlyoom in the guests, for the test that has it kill a hog for real
//! (tests/tests/oom_kill/earlyoom.rs): its package downloaded with apt once into a cache, its
//! binary and the shared libraries `ldd` says it needs (glibc's loader and libc) put into the
//! initramfs at the paths the loader looks for them. The guests' init names the binary in
//! `OOMTRACE_EARLYOOM`. Never run on the host: it acts on the whole machine's memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::debian::{Unpacked, cached_package, download_and_unpack};
use crate::cmd::{self, progress};

const PACKAGE: &str = "earlyoom";
/// Where the package has it, and where the guest's init looks for it.
const PACKAGE_PATH: &str = "usr/bin/earlyoom";
pub(super) const GUEST_PATH: &str = "bin/earlyoom";

/// Files for the initramfs: (path in the guest, file on the host).
pub(super) struct Earlyoom {
    pub files: Vec<(String, PathBuf)>,
}

/// earlyoom from `vm_dir/earlyoom`, downloaded only when missing, with the libraries it needs.
pub(super) fn fetch(vm_dir: &Path) -> Result<Earlyoom> {
    let (dir, version) = cached_package(PACKAGE, &vm_dir.join("earlyoom"), "earlyoom", download)?;
    let binary = dir.join("earlyoom");
    let mut files = vec![(GUEST_PATH.to_string(), binary.clone())];
    files.extend(libraries(&binary)?);
    progress(format_args!(
        "earlyoom {version}: {} with {}",
        binary.display(),
        files[1..]
            .iter()
            .map(|(guest, _)| format!("/{guest}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Earlyoom { files })
}

/// Downloads the package and keeps only its binary in `dir`, made in a scratch directory
/// renamed into place at the end, so an interrupted download is never taken for a cached one.
fn download(version: &str, dir: &Path) -> Result<()> {
    let Unpacked { scratch, root, deb } =
        download_and_unpack(PACKAGE, version, dir, format_args!("earlyoom"))?;
    let binary = root.join(PACKAGE_PATH);
    if !binary.is_file() {
        bail!("{PACKAGE} {version} holds no /{PACKAGE_PATH}");
    }
    fs::rename(&binary, scratch.join("earlyoom"))?;
    fs::remove_dir_all(&root)?;
    fs::remove_file(&deb)?;
    fs::rename(&scratch, dir)
        .with_context(|| format!("could not move earlyoom into {}", dir.display()))
}

/// The shared libraries `binary` loads, as `ldd` resolves them on this host, each to go at
/// the path it was found at: the guest's loader, a copy of the host's, searches the same
/// default directories. The host is the Debian release the package was built for, so its
/// glibc is one the binary runs with.
fn libraries(binary: &Path) -> Result<Vec<(String, PathBuf)>> {
    let ldd = cmd::stdout_of(Command::new("ldd").arg(binary))
        .with_context(|| format!("`ldd {}` failed", binary.display()))?;
    let found = parse_ldd(&ldd)?;
    if !found.iter().any(|p| p.contains("ld-linux")) || !found.iter().any(|p| p.contains("libc.so"))
    {
        bail!(
            "`ldd {}` names no glibc loader or libc:\n{ldd}",
            binary.display()
        );
    }
    Ok(found
        .into_iter()
        .map(|path| {
            let guest = path.trim_start_matches('/').to_string();
            (guest, PathBuf::from(path))
        })
        .collect())
}

/// The absolute paths in `ldd`'s output: `libc.so.6 => /lib/.../libc.so.6 (0x...)` and the
/// loader's own `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has none. A library it could
/// not find fails: the guest would not start the binary either.
fn parse_ldd(output: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = line.split_once(" => ").map_or(line, |(_, target)| target);
        if target.starts_with("not found") {
            bail!("ldd: {line}");
        }
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            paths.push(path.to_string());
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_libraries_ldd_found() {
        let bookworm = "\tlinux-vdso.so.1 (0x00007ffd5b5f2000)\n\
                        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f104ec56000)\n\
                        \t/lib64/ld-linux-x86-64.so.2 (0x00007f104ee55000)\n";
        assert_eq!(
            parse_ldd(bookworm).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
