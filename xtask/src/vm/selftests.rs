//! The kernel's own memcg OOM tests as a peer suite of the guests' end-to-end tests: the cases
//! of tools/testing/selftests/cgroup/test_memcontrol.c from Debian's linux-source package,
//! downloaded with apt (which checks it against the signed package lists) once into a cache,
//! and built static with the host's C compiler around a driver of ours that runs one case a
//! call (xtask/vm/memcg_selftest.c). None of the kernel's code is kept in this repository.
//! In the v2 guests the test `kernel_memcg_oom_selftests` (tests/tests/oom_kill.rs) runs the
//! cases while oomtrace watches.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::debian::{Unpacked, cached_package, download_and_unpack};
use super::guest::needs_loader;
use crate::cmd::{self, progress, run, which};
use crate::host;

/// The kernel series whose selftests are built: the newest the matrix boots. Its cases run on
/// the older kernels too, as the memcg OOM interface they test has not changed since.
const PACKAGE: &str = "linux-source-6.12";
/// The source tree inside the package, and the tree's top directory in that archive.
const TARBALL: &str = "usr/src/linux-source-6.12.tar.xz";
const TREE: &str = "linux-source-6.12";
/// What the build takes from the tree: the cases and cgroup_util.c, and the headers of the
/// selftests they include. Everything else of the 150 MB archive is dropped.
const PARTS: [&str; 3] = [
    "tools/testing/selftests/kselftest.h",
    "tools/testing/selftests/cgroup",
    "tools/testing/selftests/clone3",
];
const DRIVER: &str = include_str!("../../vm/memcg_selftest.c");
/// The test that runs the cases in the guest, named in the matrix's column of its own.
pub(super) const TEST: &str = "kernel_memcg_oom_selftests";
/// Where the guest finds the build; the guest's init hands it to the tests.
pub(super) const GUEST_PATH: &str = "bin/memcg_selftest";

/// The static selftest driver, built in `vm_dir/build` from the source cached in
/// `vm_dir/selftests`, which is downloaded only when missing.
pub(super) fn build(vm_dir: &Path) -> Result<PathBuf> {
    let build = vm_dir.join("build");
    fs::create_dir_all(&build).with_context(|| format!("could not create {}", build.display()))?;
    ensure_c_toolchain(&build)?;
    let (source, _) = cached_package(
        PACKAGE,
        &vm_dir.join("selftests"),
        "kernel selftests",
        download,
    )?;
    compile(&source, &build)
}

/// A C compiler that links statically, the kernel's UAPI headers the cases include, and xz
/// for the source archive: each installed with apt only if missing.
fn ensure_c_toolchain(build: &Path) -> Result<()> {
    let mut missing = Vec::new();
    if which("cc").is_none() {
        missing.extend(["gcc", "libc6-dev"]);
    } else if !links_statically(build)? {
        // glibc's static archive libc.a is in libc6-dev.
        missing.push("libc6-dev");
    }
    if !Path::new("/usr/include/linux/oom.h").is_file() {
        missing.push("linux-libc-dev");
    }
    if which("xz").is_none() {
        missing.push("xz-utils");
    }
    if missing.is_empty() {
        return Ok(());
    }
    progress(format_args!(
        "kernel selftests: a static C build needs {}: installing",
        missing.join(", ")
    ));
    host::apt_install(&missing)
}

/// Whether an empty C program links statically: a probe, so that a compile error in the
/// selftests is reported as one rather than as a missing package.
fn links_statically(build: &Path) -> Result<bool> {
    let (source, bin) = (build.join("static-probe.c"), build.join("static-probe-c"));
    fs::write(&source, "int main(void) { return 0; }\n")
        .with_context(|| format!("could not write {}", source.display()))?;
    let _ = fs::remove_file(&bin);
    let linked = cmd::succeeds(
        Command::new("cc")
            .args(["-static", "-o"])
            .arg(&bin)
            .arg(&source),
    );
    Ok(linked && !needs_loader(&bin)?)
}

/// Downloads the package and keeps only [`PARTS`] of its tree in `dir`. Everything is done in
/// a scratch directory renamed into place at the end, so an interrupted download is never
/// mistaken for a cached tree.
fn download(version: &str, dir: &Path) -> Result<()> {
    let Unpacked { scratch, root, .. } = download_and_unpack(
        PACKAGE,
        version,
        dir,
        format_args!("kernel selftests (about 150 MB, once)"),
    )?;
    let tarball = root.join(TARBALL);
    if !tarball.is_file() {
        bail!("{PACKAGE} {version} holds no /{TARBALL}");
    }
    let tree = scratch.join("tree");
    fs::create_dir_all(&tree)?;
    run(Command::new("tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg("--strip-components=1")
        .args(PARTS.map(|part| format!("{TREE}/{part}"))))
    .with_context(|| format!("could not extract the selftests from {}", tarball.display()))?;
    fs::rename(&tree, dir)
        .with_context(|| format!("could not move the selftests into {}", dir.display()))?;
    // The archive is most of the package and nothing else of it is needed.
    fs::remove_dir_all(&scratch)?;
    progress(format_args!(
        "kernel selftests: source in {}",
        dir.display()
    ));
    Ok(())
}

/// Builds the driver with test_memcontrol.c and cgroup_util.c from `source`, static, into
/// `build`; returns the binary.
fn compile(source: &Path, build: &Path) -> Result<PathBuf> {
    let cgroup = source.join("tools/testing/selftests/cgroup");
    let driver = build.join("memcg_selftest.c");
    fs::write(&driver, DRIVER).with_context(|| format!("could not write {}", driver.display()))?;
    let bin = build.join("memcg_selftest");
    let mut cc = Command::new("cc");
    // The flags of the selftests' own Makefile, plus -static: the guest has no libc. No -O:
    // the cases touch memory they then free unread, stores an optimiser removes, and the
    // OOM they exist to cause would never come.
    cc.args(["-static", "-Wall", "-pthread", "-I"])
        .arg(&cgroup)
        .arg("-o")
        .arg(&bin)
        .arg(&driver)
        .arg(cgroup.join("cgroup_util.c"))
        .stdin(Stdio::null());
    progress(format_args!(
        "kernel selftests: running `{}`",
        cmd::display(&cc)
    ));
    let out = cc
        .output()
        .with_context(|| format!("could not start `{}`", cmd::display(&cc)))?;
    // Shown only on failure: a successful build warns once, from the linker, that glibc's
    // getaddrinfo wants its shared libraries at run time, which only test_memcg_sock calls, a
    // case the guests never run.
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        bail!(
            "`{}` failed ({})",
            cmd::display(&cc),
            cmd::describe(out.status)
        );
    }
    if needs_loader(&bin)? {
        bail!(
            "{} is dynamically linked: the initramfs has no loader",
            bin.display()
        );
    }
    progress(format_args!("kernel selftests: built {}", bin.display()));
    Ok(bin)
}
