//! The systemd guest: Debian bookworm with its own systemd as PID 1, systemd-oomd and rsyslog,
//! for the test that has systemd-oomd kill for real (tests/tests/oom_kill/systemd_oomd.rs).
//! The busybox guests cannot run systemd-oomd: it learns which cgroups to watch from PID 1.
//!
//! Its root is debootstrap's, packed once into a cached archive. Each run appends an archive of
//! its own (the tests, the hog, oomtrace, the units in xtask/vm/systemd/, the kernel's zram
//! modules), which the kernel unpacks over the first: concatenated archives are one root.
//! systemd-oomd kills only "with reclaim activity", and a root in RAM has nothing to reclaim
//! without swap, so the guest swaps to zram.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::Guest;
use super::initramfs::{Cpio, parents, write_gzipped};
use crate::cmd::{progress, run};
use crate::host;

const RELEASE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// kmod for insmod; systemd-oomd is a package of its own in bookworm.
const PACKAGES: &str = "systemd,systemd-sysv,systemd-oomd,rsyslog,kmod";
/// Names the cached root: a change to what goes into it must change the name.
const ROOT_NAME: &str = "bookworm-systemd-oomd-rsyslog-kmod-1";
/// Bounds debootstrap, which downloads about 60 MB.
const DEBOOTSTRAP_TIMEOUT_SECS: &str = "900";
/// What the root does not need, removed before it is packed: about 140 MB of 245.
const PRUNED: [&str; 6] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "var/cache/apt",
    "var/lib/apt/lists",
];
/// Timers start apt and cleanups at random moments; the guest wants none of them.
const TIMERS: &str = "etc/systemd/system/timers.target.wants";

/// PID 1: systemd, from the root's own init. With no /etc/initrd-release, systemd in an
/// initramfs boots as the system itself.
const INIT: &str = "#!/bin/sh\nexec /lib/systemd/systemd\n";
const RUNNER: &str = include_str!("../../vm/systemd/oomtrace-vm-test");
/// (path in the guest, contents) of the configuration the test relies on.
const UNITS: [(&str, &str); 4] = [
    (
        "etc/systemd/system/oomtrace-vm-test.service",
        include_str!("../../vm/systemd/oomtrace-vm-test.service"),
    ),
    (
        "etc/systemd/system/oomtrace-pressure.slice",
        include_str!("../../vm/systemd/oomtrace-pressure.slice"),
    ),
    (
        "etc/systemd/system/oomtrace-pressure.service",
        include_str!("../../vm/systemd/oomtrace-pressure.service"),
    ),
    (
        "etc/systemd/oomd.conf.d/oomtrace.conf",
        include_str!("../../vm/systemd/oomd.conf"),
    ),
];
/// Where the runner loads the modules from, in the order of their names.
const MODULES_DIR: &str = "usr/local/lib/oomtrace-vm";

/// The kernel command line past the console's: the test unit started once the system is up,
/// no login prompt on the console the host parses, and only emergencies from the kernel.
pub(super) const APPEND: &str = "systemd.unified_cgroup_hierarchy=1 \
    systemd.wants=oomtrace-vm-test.service systemd.mask=serial-getty@ttyS0.service \
    systemd.mask=getty@tty1.service systemd.show_status=0 loglevel=1";

/// Writes the systemd guest's initramfs to `path`: the cached root, then this run's files.
/// `modules` are the booted kernel's swap modules, in load order.
pub(super) fn write_initramfs(
    path: &Path,
    vm_dir: &Path,
    guest: &Guest,
    modules: &[PathBuf],
) -> Result<()> {
    let root = root_archive(&vm_dir.join("systemd"))?;
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![
        ("init".into(), 0o755, INIT.into()),
        (
            "usr/local/sbin/oomtrace-vm-test".into(),
            0o755,
            RUNNER.into(),
        ),
    ];
    files.extend(
        UNITS
            .iter()
            .map(|(name, body)| (name.to_string(), 0o644, body.as_bytes().to_vec())),
    );
    for (name, source) in [
        ("usr/local/bin/oom_kill", &guest.tests),
        ("usr/local/bin/hog", &guest.hog),
        ("usr/local/bin/oomtrace", &guest.oomtrace),
    ] {
        files.push((name.into(), 0o755, read(source)?));
    }
    // Numbered, so that the runner's glob loads them in order.
    for (at, module) in modules.iter().enumerate() {
        let name = module.file_name().context("a module has a file name")?;
        let name = format!("{MODULES_DIR}/{at}-{}", name.to_string_lossy());
        files.push((name, 0o644, read(module)?));
    }
    let mut cpio = Cpio::default();
    // Directories the root has already are left as they are.
    for dir in parents(files.iter().map(|(name, _, _)| name.as_str())) {
        cpio.dir(&dir, 0o755);
    }
    for (name, mode, body) in &files {
        cpio.file(name, *mode, body)?;
    }
    let overlay = path.with_file_name("systemd-overlay.cpio.gz");
    write_gzipped(&overlay, &cpio.finish())?;
    let mut archive = read(&root)?;
    archive.extend(read(&overlay)?);
    fs::write(path, archive).with_context(|| format!("could not write {}", path.display()))?;
    progress(format_args!(
        "systemd guest initramfs: {} ({} over the cached root)",
        path.display(),
        root.display()
    ));
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("could not read {}", path.display()))
}

/// The root, debootstrap'd and packed once into `dir`: built in a scratch directory and renamed
/// into place only when whole, so an interrupted build is never taken for a cached one.
fn root_archive(dir: &Path) -> Result<PathBuf> {
    let archive = dir.join(format!("{ROOT_NAME}.cpio.gz"));
    if archive.is_file() {
        progress(format_args!(
            "systemd guest: root cached at {}",
            archive.display()
        ));
        return Ok(archive);
    }
    host::ensure_program("debootstrap", "debootstrap")?;
    host::ensure_program("cpio", "cpio")?;
    let root = dir.join(".root.partial");
    let partial = dir.join(format!(".{ROOT_NAME}.cpio.gz.partial"));
    if root.exists() {
        fs::remove_dir_all(&root)
            .with_context(|| format!("could not remove {}", root.display()))?;
    }
    fs::create_dir_all(&root).with_context(|| format!("could not create {}", root.display()))?;
    progress(format_args!(
        "systemd guest: debootstrap of Debian {RELEASE} with {PACKAGES} into {} (about a minute)",
        root.display()
    ));
    run(Command::new("timeout")
        .args([DEBOOTSTRAP_TIMEOUT_SECS, "debootstrap", "--variant=minbase"])
        .arg(format!("--include={PACKAGES}"))
        .arg(RELEASE)
        .arg(&root)
        .arg(MIRROR)
        // stdout is the matrix's: `cargo xtask vm-test > matrix.txt` gets nothing else.
        .stdout(std::io::stderr()))
    .context("debootstrap of the systemd guest's root failed")?;
    for pruned in PRUNED.iter().chain([&TIMERS]) {
        let path = root.join(pruned);
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("could not remove {}", path.display()))?;
        }
    }
    progress(format_args!("systemd guest: packing {}", root.display()));
    // cpio itself, not the writer of the busybox guests': the root holds links and devices.
    run(Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -print0 | cpio --null --create --format=newc --quiet | gzip --fast --no-name > \"$2\"")
        .arg("pack")
        .arg(&root)
        .arg(&partial))?;
    fs::rename(&partial, &archive)
        .with_context(|| format!("could not move the root into {}", archive.display()))?;
    fs::remove_dir_all(&root).with_context(|| format!("could not remove {}", root.display()))?;
    Ok(archive)
}
