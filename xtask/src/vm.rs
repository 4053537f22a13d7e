//! `cargo xtask vm-test`: the privileged end-to-end tests on other kernels than the host's.
//! Each kernel boots under QEMU from a busybox initramfs holding static builds of the tests,
//! the hog and oomtrace, once per cgroup mode it offers; init runs the tests and prints one
//! result line on the serial console.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::TestCount;
use crate::cmd::{self, progress, run, which};
use crate::host;
use crate::toolchain::Toolchain;

/// A passing boot takes about 8 s under TCG. A failing one takes longer, as the tests wait out
/// their own timeouts (a 6.1 verifier rejecting a program after 17 s of emulated work made one
/// take 190 s); a boot that hangs (a lost console, a stuck test) must not hold CI beyond this.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The guest's init prints exactly one line starting with this: `pass`, or `fail <why>`.
const MARKER: &str = "OOMTRACE-VM-RESULT: ";
/// Init prints this, then the kernel log's end, between failed tests and the result line.
const KERNEL_LOG_HEADER: &str = "oomtrace-vm: last kernel messages:";
/// Lines of a failed boot's serial log worth showing: the failing test and the result line.
const TAIL_LINES: usize = 40;
const INIT: &str = include_str!("../vm/init");
/// The attach modes the end-to-end tests name: `<mode>_reports_a_memcg_kill`.
const ATTACH_MODES: [&str; 3] = ["tp_btf", "raw_tp", "tracepoint"];
/// Only these two: the initramfs has no dynamic loader and no libc.
const GNU: &str = "x86_64-unknown-linux-gnu";
const MUSL: &str = "x86_64-unknown-linux-musl";

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

/// A Debian kernel series the matrix always covers. Its packages are named
/// `{prefix}<digits>{suffix}`, the signed image that holds /boot/vmlinuz-*; the `-dbg` (debug
/// symbols only) and `-unsigned` packages of the same kernel end differently and are skipped.
struct Series {
    name: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    /// A regex for `apt-cache search --names-only`; `holds` has the last word.
    search: &'static str,
    modes: &'static [Cgroup],
}

const SERIES: [Series; 2] = [
    Series {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64",
        search: r"^linux-image-6\.1\.0-[0-9]*-cloud-amd64$",
        // A cgroup mode is a mount, and a kernel has one memory controller: a boot per mode.
        modes: &[Cgroup::V2, Cgroup::V1],
    },
    Series {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64",
        search: r"^linux-image-6\.12\.[0-9]*\+deb12-cloud-amd64$",
        // Built without CONFIG_MEMCG_V1: cgroup v1 has no memory controller here.
        modes: &[Cgroup::V2],
    },
];

impl Series {
    fn holds(&self, package: &str) -> bool {
        package
            .strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_suffix(self.suffix))
            .is_some_and(|abi| !abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit()))
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

/// The static guest programs.
struct Guest {
    tests: PathBuf,
    hog: PathBuf,
    oomtrace: PathBuf,
}

/// How one boot ended, read from its serial log.
struct Boot<'k> {
    kernel: &'k Kernel,
    mode: Cgroup,
    /// `None` for a pass, else why it failed.
    failure: Option<String>,
    /// Each `test NAME ... STATUS` line, in order.
    tests: Vec<(String, String)>,
    time: Duration,
    log: PathBuf,
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
/// tests (a boot that failed outside its tests counts as one failure). `Err` when the matrix
/// could not be run at all.
pub fn run_matrix(toolchain: &Toolchain, user_kernels: &[PathBuf]) -> Result<TestCount> {
    let started = Instant::now();
    let qemu = ensure_tools()?;
    let vm_dir = crate::target_dir(toolchain)?.join("vm");
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
    let initramfs = vm_dir.join("initramfs.cpio.gz");
    write_initramfs(&initramfs, &guest)?;

    let logs = vm_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;
    let mut boots = Vec::new();
    for kernel in &kernels {
        for &mode in &kernel.modes {
            boots.push(boot(&qemu, kernel, mode, &initramfs, &logs)?);
        }
    }
    print_matrix(&boots);
    let failed = boots.iter().filter(|b| b.failure.is_some()).count();
    progress(format_args!(
        "vm-test: {} boots, {failed} failed, {} s in all",
        boots.len(),
        started.elapsed().as_secs()
    ));
    let mut count = TestCount::default();
    for boot in &boots {
        for (_, status) in &boot.tests {
            if status == "ok" {
                count.passed += 1;
            } else {
                count.failed += 1;
            }
        }
        // A boot that failed before or outside its tests still counts as a failure.
        if boot.failure.is_some() && boot.tests.iter().all(|(_, s)| s == "ok") {
            count.failed += 1;
        }
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

/// The newest kernel of `series` apt knows, downloaded once into `cache`. Lists that know no
/// such package, or name a version the mirror has since replaced, are refreshed once; when
/// neither apt nor the network can help, a kernel cached by an earlier run still does.
fn debian_kernel(series: &Series, cache: &Path) -> Result<Kernel> {
    let mut refreshed = false;
    loop {
        let Some((package, version)) = newest_in_apt(series)? else {
            if let Some(kernel) = newest_cached(series, cache) {
                progress(format_args!(
                    "apt lists no {} kernel; using the cached {}",
                    series.name, kernel.label
                ));
                return Ok(kernel);
            }
            if refreshed {
                bail!(
                    "apt knows no package matching {} even after `apt-get update`: is Debian's bookworm-security in its sources?",
                    series.search
                );
            }
            progress(format_args!(
                "apt lists no {} kernel package: refreshing the package lists",
                series.name
            ));
            host::apt_update()?;
            refreshed = true;
            continue;
        };
        let kernel = debian(series, cache, &package, &version);
        if kernel.image.is_file() {
            progress(format_args!(
                "kernel {package} {version}: cached at {}",
                kernel.image.display()
            ));
            return Ok(kernel);
        }
        let Err(err) = download(&package, &version, kernel.image.parent().unwrap_or(cache)) else {
            return Ok(kernel);
        };
        if !refreshed && host::is_root() {
            progress(format_args!(
                "{err:#}; the package lists may be older than the mirror: refreshing them"
            ));
            refreshed = true;
            if host::apt_update().is_ok() {
                continue;
            }
        }
        let Some(cached) = newest_cached(series, cache) else {
            return Err(err);
        };
        progress(format_args!(
            "{err:#}; using the cached {} instead",
            cached.label
        ));
        return Ok(cached);
    }
}

fn debian(series: &Series, cache: &Path, package: &str, version: &str) -> Kernel {
    Kernel {
        label: format!("Debian {version}"),
        file_stem: format!("debian-{version}"),
        image: cache.join(format!("{package}_{version}")).join("vmlinuz"),
        modes: series.modes.to_vec(),
    }
}

/// `(package, version)` of the series' package with the highest candidate version.
fn newest_in_apt(series: &Series) -> Result<Option<(String, String)>> {
    let found =
        cmd::stdout_of(Command::new("apt-cache").args(["search", "--names-only", series.search]))?;
    let packages: Vec<&str> = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| series.holds(p))
        .collect();
    if packages.is_empty() {
        return Ok(None);
    }
    let policy = cmd::stdout_of(Command::new("apt-cache").arg("policy").args(&packages))?;
    Ok(candidates(&policy)
        .into_iter()
        .filter(|(package, _)| series.holds(package))
        .max_by(|a, b| compare_versions(&a.1, &b.1)))
}

/// `(package, candidate version)` pairs from `apt-cache policy`.
fn candidates(policy: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut package = None;
    for line in policy.lines() {
        if !line.starts_with(' ') {
            package = line.strip_suffix(':');
        } else if let (Some(p), Some(version)) = (package, line.trim().strip_prefix("Candidate:")) {
            let version = version.trim();
            if version != "(none)" {
                found.push((p.to_string(), version.to_string()));
            }
        }
    }
    found
}

/// The newest `<package>_<version>/vmlinuz` of the series in the cache.
fn newest_cached(series: &Series, cache: &Path) -> Option<Kernel> {
    let (package, version) = fs::read_dir(cache)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let (package, version) = name.split_once('_')?;
            (series.holds(package) && entry.path().join("vmlinuz").is_file())
                .then(|| (package.to_string(), version.to_string()))
        })
        .max_by(|a, b| compare_versions(&a.1, &b.1))?;
    Some(debian(series, cache, &package, &version))
}

/// Downloads the package and keeps only its kernel image and config in `dir`. Everything is
/// done in a scratch directory renamed into place at the end, so an interrupted download is
/// never mistaken for a cached kernel.
fn download(package: &str, version: &str, dir: &Path) -> Result<()> {
    // Hidden and named apart from `<package>_<version>`, so no cache lookup ever picks it.
    let name = dir.file_name().context("a kernel directory has a name")?;
    let scratch = dir.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    progress(format_args!("downloading kernel {package} {version}"));
    run(Command::new("apt-get")
        .arg("download")
        // stdout is the matrix's: `cargo xtask vm-test > matrix.txt` gets nothing else.
        .stdout(std::io::stderr())
        // As root, apt would otherwise warn that its sandbox user cannot write here.
        .args(["-o", "APT::Sandbox::User=root"])
        .arg(format!("{package}={version}"))
        .current_dir(&scratch))
    .with_context(|| format!("could not download {package} {version}"))?;
    let deb = fs::read_dir(&scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", scratch.display()))?;
    let root = scratch.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let boot = root.join("boot");
    let mut image = None;
    for entry in fs::read_dir(&boot).with_context(|| format!("{package} has no /boot"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") {
            image = Some(entry.path());
        } else if name.starts_with("config-") {
            // Kept to answer "was X built in?" without downloading again.
            fs::rename(entry.path(), scratch.join("config"))?;
        }
    }
    let image = image.with_context(|| format!("{package} holds no /boot/vmlinuz-*"))?;
    fs::rename(&image, scratch.join("vmlinuz"))?;
    // The modules are most of the package and a busybox initramfs loads none.
    fs::remove_dir_all(&root)?;
    fs::remove_file(&deb)?;
    fs::rename(&scratch, dir)
        .with_context(|| format!("could not move the kernel into {}", dir.display()))?;
    progress(format_args!(
        "kernel {package} {version}: {}",
        dir.join("vmlinuz").display()
    ));
    Ok(())
}

/// dpkg's version order (`dpkg --compare-versions`): epoch, then upstream version, then
/// Debian revision, where `~` sorts before everything, even the end of the string.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) => (e.parse().unwrap_or(0), rest),
            None => (0, v),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, upstream, revision)
    }
    let (a, b) = (split(a), split(b));
    a.0.cmp(&b.0)
        .then_with(|| compare_part(a.1.as_bytes(), b.1.as_bytes()))
        .then_with(|| compare_part(a.2.as_bytes(), b.2.as_bytes()))
}

/// dpkg's `verrevcmp`: alternating runs of non-digits (compared by `order`) and digits
/// (compared as numbers).
fn compare_part(mut a: &[u8], mut b: &[u8]) -> std::cmp::Ordering {
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(b'~') => -1,
            Some(c) => i32::from(*c) + 256,
        }
    }
    let digit = |s: &[u8]| s.first().is_some_and(u8::is_ascii_digit);
    while !a.is_empty() || !b.is_empty() {
        while (!a.is_empty() && !digit(a)) || (!b.is_empty() && !digit(b)) {
            let (ac, bc) = (order(a.first()), order(b.first()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let number = |s: &mut &[u8]| {
            let len = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let (digits, rest) = s.split_at(len);
            *s = rest;
            let digits = &digits[digits.iter().take_while(|&&c| c == b'0').count()..];
            digits.to_vec()
        };
        let (an, bn) = (number(&mut a), number(&mut b));
        let by_number = an.len().cmp(&bn.len()).then_with(|| an.cmp(&bn));
        if by_number.is_ne() {
            return by_number;
        }
    }
    std::cmp::Ordering::Equal
}

/// Builds the tests, the hog and oomtrace as static binaries in their own target directory,
/// so the host build's cache survives. glibc's static link when it works here, since its
/// target is already installed; musl only if it does not.
fn build_static(toolchain: &Toolchain, target_dir: &Path) -> Result<Guest> {
    let target = if links_statically(GNU, target_dir)? {
        GNU
    } else {
        progress(format_args!(
            "a static link for {GNU} fails here: building for {MUSL}"
        ));
        ensure_rust_target(MUSL)?;
        MUSL
    };
    build_for(toolchain, target_dir, target)
}

/// Whether an empty program links statically for `target`. Decided by a probe rather than by
/// the real build failing, so a compile error in oomtrace is reported as one instead of sending
/// the build off to another target.
fn links_statically(target: &str, target_dir: &Path) -> Result<bool> {
    let dir = target_dir.join("static-probe");
    fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let (source, bin) = (dir.join("probe.rs"), dir.join("probe"));
    fs::write(&source, "fn main() {}\n")
        .with_context(|| format!("could not write {}", source.display()))?;
    let _ = fs::remove_file(&bin);
    let linked = cmd::succeeds(
        Command::new("rustc")
            .args(["--target", target, "-C", "target-feature=+crt-static", "-o"])
            .arg(&bin)
            .arg(&source)
            .current_dir(crate::toolchain::workspace_root()),
    );
    Ok(linked && !needs_loader(&bin)?)
}

fn ensure_rust_target(target: &str) -> Result<()> {
    let root = crate::toolchain::workspace_root();
    let installed = cmd::probe_stdout(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(root),
    )
    .is_some_and(|list| list.lines().any(|l| l.trim() == target));
    if installed {
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(root))
    .with_context(|| format!("could not add the {target} target with rustup"))
}

fn build_for(toolchain: &Toolchain, target_dir: &Path, target: &str) -> Result<Guest> {
    let cargo = |args: &[&str]| {
        let mut cmd = toolchain.cargo();
        cmd.args(args)
            .args(["--release", "--target", target, "--target-dir"])
            .arg(target_dir)
            // JSON on stdout for the artifact paths, diagnostics rendered on stderr.
            .arg("--message-format=json-render-diagnostics")
            // With --target, RUSTFLAGS reaches only the target's crates, not build scripts; and
            // aya-build gives the eBPF build its own CARGO_ENCODED_RUSTFLAGS, so the eBPF
            // object is untouched. A CARGO_ENCODED_RUSTFLAGS from the shell would override this.
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        cmd
    };
    let built = artifacts(&mut cargo(&[
        "build", "-p", "oomtrace", "--bin", "oomtrace",
    ]))?;
    let oomtrace = find_artifact(&built, "oomtrace", false)?;
    let built = artifacts(&mut cargo(&[
        "test",
        "--no-run",
        "-p",
        "oomtrace-tests",
        "--test",
        "oom_kill",
    ]))?;
    let guest = Guest {
        tests: find_artifact(&built, "oom_kill", true)?,
        hog: find_artifact(&built, "hog", false)?,
        oomtrace,
    };
    for bin in [&guest.tests, &guest.hog, &guest.oomtrace] {
        if needs_loader(bin)? {
            bail!(
                "{} is dynamically linked: the initramfs has no loader",
                bin.display()
            );
        }
    }
    progress(format_args!("static guest binaries for {target} are built"));
    Ok(guest)
}

/// An executable cargo built, from one line of `--message-format=json`.
#[derive(Debug, PartialEq)]
struct Artifact {
    name: String,
    /// Built with the test harness (`profile.test`).
    test: bool,
    executable: PathBuf,
}

/// Runs a cargo command with JSON messages, its diagnostics on the terminal, and returns
/// the executables it built.
fn artifacts(cargo: &mut Command) -> Result<Vec<Artifact>> {
    progress(format_args!("running `{}`", cmd::display(cargo)));
    let out = cargo
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", cmd::display(cargo)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({})",
            cmd::display(cargo),
            cmd::describe(out.status)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_artifact)
        .collect())
}

fn parse_artifact(line: &str) -> Option<Artifact> {
    if !line.contains(r#""reason":"compiler-artifact""#) {
        return None;
    }
    // No key `name` precedes the target's own: package_id and manifest_path come first.
    let name = crate::json_string_field(line, "name")?;
    // `null` for libraries, which json_string_field does not read as a string.
    let executable = crate::json_string_field(line, "executable")?;
    let profile = &line[line.find(r#""profile":{"#)?..];
    let profile = &profile[..profile.find('}')?];
    Some(Artifact {
        name,
        test: profile.contains(r#""test":true"#),
        executable: executable.into(),
    })
}

fn find_artifact(artifacts: &[Artifact], name: &str, test: bool) -> Result<PathBuf> {
    artifacts
        .iter()
        .find(|a| a.name == name && a.test == test)
        .map(|a| a.executable.clone())
        .with_context(|| format!("cargo reported no executable for `{name}`"))
}

/// Whether the ELF file asks for a program interpreter (PT_INTERP). Static and static-pie
/// executables do not, and those are what `file` calls statically linked.
fn needs_loader(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    let bytes = |at: usize, len: usize| -> Result<&[u8]> {
        elf.get(at..at + len)
            .with_context(|| format!("{} is cut short", path.display()))
    };
    if bytes(0, 5)? != b"\x7fELF\x02" {
        bail!("{} is no 64-bit ELF executable", path.display());
    }
    let le = |at: usize, len: usize| -> Result<usize> {
        let raw = bytes(at, len)?;
        Ok(raw.iter().rev().fold(0, |n, &b| (n << 8) | usize::from(b)))
    };
    let (phoff, phentsize, phnum) = (le(0x20, 8)?, le(0x36, 2)?, le(0x38, 2)?);
    for i in 0..phnum {
        if le(phoff + i * phentsize, 4)? == PT_INTERP as usize {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A gzip'd newc cpio archive, the format the kernel unpacks into its initial root.
fn write_initramfs(path: &Path, guest: &Guest) -> Result<()> {
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "root"] {
        cpio.dir(dir, 0o755);
    }
    cpio.dir("tmp", 0o1777);
    // The kernel opens /dev/console as init's stdin, stdout and stderr before init can mount
    // devtmpfs; without the node init would run with no output at all.
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, INIT.as_bytes())?;
    for (name, source) in [
        ("bin/busybox", Path::new("/bin/busybox")),
        ("bin/oom_kill", &guest.tests),
        ("bin/hog", &guest.hog),
        ("bin/oomtrace", &guest.oomtrace),
    ] {
        let body =
            fs::read(source).with_context(|| format!("could not read {}", source.display()))?;
        cpio.file(name, 0o755, &body)?;
    }
    let plain = path.with_extension("");
    fs::write(&plain, cpio.finish())
        .with_context(|| format!("could not write {}", plain.display()))?;
    run(Command::new("gzip")
        .args(["--force", "--no-name", "--fast"])
        .arg(&plain))?;
    progress(format_args!("initramfs: {}", path.display()));
    Ok(())
}

/// A newc ("070701") cpio writer: owner root, mtime 0, one inode per entry.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    const DIR: u32 = 0o040_000;
    const FILE: u32 = 0o100_000;
    const CHAR: u32 = 0o020_000;

    fn dir(&mut self, name: &str, mode: u32) {
        self.entry(name, Self::DIR | mode, 2, (0, 0), &[]);
    }

    fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, Self::CHAR | mode, 1, (major, minor), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, body: &[u8]) -> Result<()> {
        if u32::try_from(body.len()).is_err() {
            bail!("{name} is too large for a newc cpio archive");
        }
        self.entry(name, Self::FILE | mode, 1, (0, 0), body);
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
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

fn boot<'k>(
    qemu: &Path,
    kernel: &'k Kernel,
    mode: Cgroup,
    initramfs: &Path,
    logs: &Path,
) -> Result<Boot<'k>> {
    let what = format!("{}, cgroup {}", kernel.label, mode.name());
    let log = logs.join(format!("{}-{}.log", kernel.file_stem, mode.name()));
    let _ = fs::remove_file(&log);
    let mut cmd = Command::new(qemu);
    // KVM is present on the project's machines, but stock kernels do not boot under it: TCG.
    cmd.args(["-accel", "tcg", "-m", "512M", "-smp", "1"])
        // No default NIC, VGA or monitor: nothing to probe, and the serial port is the console.
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        // panic=-1 reboots at once on a panic, and -no-reboot turns the reboot into an exit.
        .arg(format!(
            "console=ttyS0 panic=-1 oomtrace.cgroup={}",
            mode.name()
        ))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    progress(format_args!(
        "booting {what} (timeout {} s, serial log {})",
        BOOT_TIMEOUT.as_secs(),
        log.display()
    ));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::display(&cmd)))?;
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(200));
    };
    let time = started.elapsed();
    let serial = fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (verdict, tests) = parse_serial(&serial);
    // Only the guest's own line says pass: QEMU exits 0 after a panic as after a power-off.
    let failure = match (verdict, exit) {
        (Some(verdict), _) => verdict.err(),
        (None, None) => Some("timeout".into()),
        (None, Some(status)) => Some(format!(
            "no result line (QEMU ended with {})",
            cmd::describe(status)
        )),
    };
    match &failure {
        None => progress(format_args!("{what}: pass in {} s", time.as_secs())),
        Some(why) => {
            progress(format_args!(
                "{what}: FAILED ({why}) after {} s; last lines of {}:",
                time.as_secs(),
                log.display()
            ));
            for line in failure_tail(&serial) {
                eprintln!("    {line}");
            }
        }
    }
    Ok(Boot {
        kernel,
        mode,
        failure,
        tests,
        time,
        log,
    })
}

/// What explains a failure: the last lines before the kernel log init appends after failed
/// tests (the harness's failure report), then the result line. Without that header (a panic,
/// a hang) the plain end of the log, where the kernel's last words are.
fn failure_tail(serial: &str) -> Vec<&str> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    let (report, rest) = match lines.iter().position(|l| *l == KERNEL_LOG_HEADER) {
        Some(at) => lines.split_at(at),
        None => (&lines[..], &[][..]),
    };
    let mut tail = report[report.len().saturating_sub(TAIL_LINES)..].to_vec();
    tail.extend(rest.iter().filter(|l| l.starts_with(MARKER)));
    tail
}

/// The result line (`Ok` for pass, `Err(why)` for fail) and the test harness's per-test lines.
type Serial = (Option<Result<(), String>>, Vec<(String, String)>);

fn parse_serial(serial: &str) -> Serial {
    let mut verdict = None;
    let mut tests = Vec::new();
    for line in serial.lines() {
        // The console's line discipline ends lines with \r\n.
        let line = line.trim_end();
        if let Some(result) = line.strip_prefix(MARKER) {
            verdict = Some(match result {
                "pass" => Ok(()),
                fail => {
                    let why = fail.strip_prefix("fail").unwrap_or(fail).trim();
                    Err(match why.parse::<i32>() {
                        Ok(code) => format!("tests exited with {code}"),
                        Err(_) => why.to_string(),
                    })
                }
            });
        } else if let Some((name, status)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        {
            if !name.contains(' ') && !status.is_empty() {
                tests.push((name.to_string(), status.to_string()));
            }
        }
    }
    (verdict, tests)
}

/// kernel × cgroup mode × attach mode, on stdout: the answer `vm-test` exists for.
fn print_matrix(boots: &[Boot]) {
    let mut rows = vec![
        [
            "kernel",
            "cgroup",
            "tp_btf",
            "raw_tp",
            "tracepoint",
            "other tests",
            "result",
            "time",
        ]
        .map(String::from),
    ];
    for boot in boots {
        let attach = ATTACH_MODES.map(|mode| {
            boot.tests
                .iter()
                .find(|(name, _)| name.strip_prefix(mode).is_some_and(|r| r.starts_with('_')))
                .map_or_else(|| "-".to_string(), |(_, status)| status.clone())
        });
        let others: Vec<&(String, String)> = boot
            .tests
            .iter()
            .filter(|(name, _)| {
                !ATTACH_MODES
                    .iter()
                    .any(|m| name.strip_prefix(m).is_some_and(|r| r.starts_with('_')))
            })
            .collect();
        let ok = others.iter().filter(|(_, status)| status == "ok").count();
        let [tp_btf, raw_tp, tracepoint] = attach;
        rows.push([
            boot.kernel.label.clone(),
            boot.mode.name().to_string(),
            tp_btf,
            raw_tp,
            tracepoint,
            format!("{ok}/{} ok", others.len()),
            boot.failure
                .as_ref()
                .map_or_else(|| "pass".into(), |why| format!("FAIL: {why}")),
            format!("{} s", boot.time.as_secs()),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for boot in boots.iter().filter(|b| b.failure.is_some()) {
        let failed: Vec<&str> = boot
            .tests
            .iter()
            .filter(|(_, status)| status != "ok" && !status.starts_with("ignored"))
            .map(|(name, _)| name.as_str())
            .collect();
        let failed = if failed.is_empty() {
            String::new()
        } else {
            format!("failed {}; ", failed.join(", "))
        };
        println!(
            "\n{}, cgroup {}: {failed}serial log {}",
            boot.kernel.label,
            boot.mode.name(),
            boot.log.display()
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    #[test]
    fn orders_versions_like_dpkg() {
        assert_eq!(
            compare_versions("6.12.117-1~deb12u1", "6.12.115-2~deb12u1"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("6.1.192-2", "6.1.192-10"), Ordering::Less);
        assert_eq!(compare_versions("1.0~rc1-1", "1.0-1"), Ordering::Less);
        assert_eq!(compare_versions("1:0.1-1", "9.9-1"), Ordering::Greater);
        assert_eq!(compare_versions("1.01-1", "1.1-1"), Ordering::Equal);
        assert_eq!(compare_versions("1.0a-1", "1.0-1"), Ordering::Greater);
        assert_eq!(compare_versions("1.0+b1", "1.0"), Ordering::Greater);
    }

    #[test]
    fn picks_the_kernel_packages_only() {
        let [six_one, six_twelve] = &SERIES;
        assert!(six_one.holds("linux-image-6.1.0-56-cloud-amd64"));
        assert!(!six_one.holds("linux-image-6.1.0-56-cloud-amd64-dbg"));
        assert!(!six_one.holds("linux-image-6.1.0-56-cloud-amd64-unsigned"));
        assert!(!six_one.holds("linux-image-6.1.0-56-amd64"));
        assert!(six_twelve.holds("linux-image-6.12.117+deb12-cloud-amd64"));
        assert!(!six_twelve.holds("linux-image-6.12.117+deb12-cloud-amd64-unsigned"));
        assert!(!six_twelve.holds("linux-image-6.12.117+deb13-cloud-amd64"));
    }

    #[test]
    fn reads_candidates_from_apt_cache_policy() {
        let policy = "\
linux-image-6.12.117+deb12-cloud-amd64:
  Installed: (none)
  Candidate: 6.12.117-1~deb12u1
  Version table:
     6.12.117-1~deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.12.99+deb12-cloud-amd64:
  Installed: (none)
  Candidate: (none)
";
        assert_eq!(
            candidates(policy),
            [(
                "linux-image-6.12.117+deb12-cloud-amd64".to_string(),
                "6.12.117-1~deb12u1".to_string()
            )]
        );
    }

    #[test]
    fn reads_a_test_artifact() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#oomtrace-tests@0.1.0","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"oom_kill","src_path":"/w/tests/tests/oom_kill.rs","edition":"2024","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":true},"features":[],"filenames":["/w/t/deps/oom_kill-a612"],"executable":"/w/t/deps/oom_kill-a612","fresh":false}"#;
        assert_eq!(
            parse_artifact(line),
            Some(Artifact {
                name: "oom_kill".into(),
                test: true,
                executable: "/w/t/deps/oom_kill-a612".into(),
            })
        );
        let bin = line
            .replace(r#""test":true},"features""#, r#""test":false},"features""#)
            .replace("oom_kill", "hog");
        assert!(!parse_artifact(&bin).unwrap().test);
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"libc"},"profile":{"test":false},"executable":null}"#;
        assert_eq!(parse_artifact(lib), None);
    }

    #[test]
    fn reads_the_serial_console() {
        let serial = "[    1.2] Run /init as init process\r\n\
                      test raw_tp_reports_a_memcg_kill ... ok\r\n\
                      test tp_btf_reports_a_memcg_kill ... FAILED\r\n\
                      test result: FAILED. 1 passed; 1 failed\r\n\
                      OOMTRACE-VM-RESULT: fail 101\r\n";
        let (verdict, tests) = parse_serial(serial);
        assert_eq!(verdict, Some(Err("tests exited with 101".into())));
        assert_eq!(
            tests,
            [
                ("raw_tp_reports_a_memcg_kill".into(), "ok".into()),
                ("tp_btf_reports_a_memcg_kill".into(), "FAILED".into())
            ]
        );
        assert_eq!(parse_serial("OOMTRACE-VM-RESULT: pass\r\n").0, Some(Ok(())));
        assert_eq!(parse_serial("Kernel panic - not syncing\r\n").0, None);
    }

    #[test]
    fn shows_the_failure_report_not_the_kernel_log() {
        let serial = "test a ... FAILED\r\nfailures:\r\n    a\r\n\
                      oomtrace-vm: last kernel messages:\r\n[ 1.0] oom-kill\r\n\
                      OOMTRACE-VM-RESULT: fail 101\r\n[ 1.1] reboot: Power down\r\n";
        assert_eq!(
            failure_tail(serial),
            [
                "test a ... FAILED",
                "failures:",
                "    a",
                "OOMTRACE-VM-RESULT: fail 101"
            ]
        );
        assert_eq!(
            failure_tail("[ 2.0] Kernel panic\r\n"),
            ["[ 2.0] Kernel panic"]
        );
    }

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
