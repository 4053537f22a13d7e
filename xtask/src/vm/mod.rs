//! `cargo xtask vm-test`: the privileged end-to-end tests on other kernels than the host's.
//! Each kernel boots under QEMU from a busybox initramfs holding static builds of the tests,
//! the hog and oomtrace (and Debian's earlyoom with the libraries it loads, for the test that
//! has it kill for real), once per cgroup mode it offers; init runs the tests and prints one
//! result line on the serial console. Then the newest Debian kernel boots once more with
//! Debian's systemd as PID 1 (systemd.rs), for the test that has systemd-oomd kill for real.

mod boot;
mod debian;
mod earlyoom;
mod guest;
mod initramfs;
mod selftests;
mod systemd;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::TestCount;
use crate::cmd::{progress, which};
use crate::host;
use crate::toolchain::Toolchain;
use boot::{BUSYBOX, SYSTEMD, boot, print_matrix};
use debian::{SERIES, debian_kernel};
use guest::build_static;
pub(crate) use guest::build_static_oomtrace;
use initramfs::write_initramfs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cgroup {
    V1,
    V2,
}

impl Cgroup {
    fn name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// A bootable kernel image and the cgroup modes to boot it in.
struct Kernel {
    label: String,
    /// Names its serial logs.
    file_stem: String,
    image: PathBuf,
    modes: Vec<Cgroup>,
}

impl Kernel {
    /// Where a Debian kernel's [`debian::SWAP_MODULES`] are kept, beside its image.
    fn modules_dir(&self) -> PathBuf {
        self.image.with_file_name(debian::MODULES_DIR)
    }

    /// The kept [`debian::SWAP_MODULES`], when there are all of them; `None` for a kernel of
    /// the user's, whose modules are not known.
    fn swap_modules(&self) -> Option<Vec<PathBuf>> {
        let dir = self.modules_dir();
        debian::SWAP_MODULES
            .iter()
            .map(|name| Some(dir.join(format!("{name}.ko"))).filter(|p| p.is_file()))
            .collect()
    }
}

/// The static guest programs.
struct Guest {
    tests: PathBuf,
    hog: PathBuf,
    oomtrace: PathBuf,
}

/// `cargo xtask vm-test [--kernel PATH]...`
pub fn parse_args(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut kernels = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let path = if arg == "--kernel" {
            args.next().context("--kernel needs a path to a bzImage")?
        } else if let Some(path) = arg.strip_prefix("--kernel=") {
            path
        } else {
            bail!("`vm-test` takes only `--kernel PATH`, got `{arg}`");
        };
        let path = Path::new(path);
        if !path.is_file() {
            bail!("--kernel {}: no such file", path.display());
        }
        // QEMU and the logs then name the same file whatever the current directory.
        kernels.push(
            path.canonicalize()
                .with_context(|| format!("could not resolve --kernel {}", path.display()))?,
        );
    }
    Ok(kernels)
}

/// Boots every kernel in every cgroup mode it offers and prints the matrix; counts the guest
/// tests (a boot that failed outside its tests counts as one failure), those that returned as
/// skipped or not applicable apart. `Err` when the matrix could not be run at all.
pub fn run_matrix(toolchain: &Toolchain, user_kernels: &[PathBuf]) -> Result<TestCount> {
    let started = Instant::now();
    let qemu = ensure_tools()?;
    let vm_dir = crate::cargo::target_dir(toolchain)?.join("vm");
    let mut kernels = Vec::new();
    for series in &SERIES {
        kernels.push(debian_kernel(series, &vm_dir.join("kernels"))?);
    }
    for (i, image) in user_kernels.iter().enumerate() {
        let name = image
            .file_name()
            .map_or_else(|| "kernel".into(), |n| n.to_string_lossy().into_owned());
        kernels.push(Kernel {
            label: image.display().to_string(),
            file_stem: format!("user{}-{name}", i + 1),
            image: image.clone(),
            // A kernel of unknown configuration: cgroup v2 is the one every current kernel has.
            modes: vec![Cgroup::V2],
        });
    }

    let guest = build_static(toolchain, &vm_dir.join("build"))?;
    let selftest = selftests::build(&vm_dir)?;
    let earlyoom = earlyoom::fetch(&vm_dir)?;
    let initramfs = vm_dir.join("initramfs.cpio.gz");
    let mut extra = vec![(selftests::GUEST_PATH, selftest.as_path())];
    extra.extend(
        earlyoom
            .files
            .iter()
            .map(|(guest, host)| (guest.as_str(), host.as_path())),
    );
    write_initramfs(&initramfs, &guest, &extra)?;
    // The systemd guest boots the newest Debian kernel, whose zram modules were kept with it.
    let newest = &kernels[SERIES.len() - 1];
    let modules = newest.swap_modules().with_context(|| {
        format!(
            "{} lacks one of the modules zram swap needs: {}",
            newest.label,
            debian::SWAP_MODULES.join(", ")
        )
    })?;
    let systemd_kernel = Kernel {
        label: format!("{} with systemd", newest.label),
        file_stem: format!("{}-systemd", newest.file_stem),
        image: newest.image.clone(),
        modes: vec![Cgroup::V2],
    };
    let systemd_initramfs = vm_dir.join("systemd-initramfs.cpio.gz");
    systemd::write_initramfs(&systemd_initramfs, &vm_dir, &guest, &modules)?;

    let logs = vm_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;
    let mut boots = Vec::new();
    for kernel in &kernels {
        for &mode in &kernel.modes {
            boots.push(boot(&qemu, kernel, mode, &initramfs, &logs, &BUSYBOX)?);
        }
    }
    boots.push(boot(
        &qemu,
        &systemd_kernel,
        Cgroup::V2,
        &systemd_initramfs,
        &logs,
        &SYSTEMD,
    )?);
    print_matrix(&boots);
    let failed = boots.iter().filter(|b| b.failure.is_some()).count();
    progress(format_args!(
        "vm-test: {} boots, {failed} failed, {} s in all",
        boots.len(),
        started.elapsed().as_secs()
    ));
    let mut count = TestCount::default();
    for boot in &boots {
        count.merge(boot.count());
    }
    Ok(count)
}

/// QEMU, the static busybox init runs on, and gzip for the initramfs; returns QEMU's path.
fn ensure_tools() -> Result<PathBuf> {
    if which("qemu-system-x86_64").is_none() {
        host::apt_install(&["qemu-system-x86"])?;
    }
    host::ensure_static_busybox()?;
    if which("gzip").is_none() {
        host::apt_install(&["gzip"])?;
    }
    which("qemu-system-x86_64").context("qemu-system-x86_64 is still missing after the install")
}
