//! The Debian kernels every run boots, found with apt and downloaded once into a cache. Each
//! kernel ABI is a package of its own, so the newest is picked by dpkg's version order.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Cgroup, Kernel};
use crate::cmd::{self, progress, run};
use crate::host;

/// A Debian kernel series the matrix always covers. Its packages are named
/// `{prefix}<digits>{suffix}`, the signed image that holds /boot/vmlinuz-*; the `-dbg` (debug
/// symbols only) and `-unsigned` packages of the same kernel end differently and are skipped.
pub(super) struct Series {
    name: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    /// A regex for `apt-cache search --names-only`; `holds` has the last word.
    search: &'static str,
    modes: &'static [Cgroup],
}

pub(super) const SERIES: [Series; 2] = [
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

/// After a download failed with `err`: the package lists may name a version the mirror has
/// since replaced, so they are refreshed, once and only as root. Whether to ask apt again.
pub(super) fn refresh_once(err: &anyhow::Error, refreshed: &mut bool) -> bool {
    if *refreshed || !host::is_root() {
        return false;
    }
    progress(format_args!(
        "{err:#}; the package lists may be older than the mirror: refreshing them"
    ));
    *refreshed = true;
    host::apt_update().is_ok()
}

/// The newest kernel of `series` apt knows, downloaded once into `cache`. Lists that know no
/// such package, or name a version the mirror has since replaced, are refreshed once; when
/// neither apt nor the network can help, a kernel cached by an earlier run still does.
pub(super) fn debian_kernel(series: &Series, cache: &Path) -> Result<Kernel> {
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
        // A cache from before the swap modules were kept is made again.
        if kernel.image.is_file() && kernel.modules_dir().is_dir() {
            progress(format_args!(
                "kernel {package} {version}: cached at {}",
                kernel.image.display()
            ));
            return Ok(kernel);
        }
        let Err(err) = download(&package, &version, kernel.image.parent().unwrap_or(cache)) else {
            return Ok(kernel);
        };
        if refresh_once(&err, &mut refreshed) {
            continue;
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
pub(super) fn candidates(policy: &str) -> Vec<(String, String)> {
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

/// The candidate version of `package`, made once by `fetch(version, dir)` into
/// `cache/<package>_<version>` (which `fetch` must create only once it is complete), and that
/// version. Lists that know no such package, or name a version the mirror has since replaced,
/// are refreshed once; when neither apt nor the network can help, the newest one an earlier
/// run made does. `what` names it in the progress lines.
pub(super) fn cached_package(
    package: &str,
    cache: &Path,
    what: &str,
    fetch: impl Fn(&str, &Path) -> Result<()>,
) -> Result<(PathBuf, String)> {
    let mut refreshed = false;
    loop {
        let Some(version) = candidate(package)? else {
            if let Some((dir, version)) = newest_cached_package(package, cache) {
                progress(format_args!(
                    "{what}: apt lists no {package}; using the cached {}",
                    dir.display()
                ));
                return Ok((dir, version));
            }
            if refreshed {
                bail!(
                    "apt knows no {package} even after `apt-get update`: are Debian's bookworm and bookworm-security in its sources?"
                );
            }
            progress(format_args!(
                "{what}: apt lists no {package}: refreshing the package lists"
            ));
            host::apt_update()?;
            refreshed = true;
            continue;
        };
        let dir = cache.join(format!("{package}_{version}"));
        if dir.is_dir() {
            progress(format_args!(
                "{what}: {package} {version} cached at {}",
                dir.display()
            ));
            return Ok((dir, version));
        }
        let Err(err) = fetch(&version, &dir) else {
            return Ok((dir, version));
        };
        if refresh_once(&err, &mut refreshed) {
            continue;
        }
        let Some((dir, version)) = newest_cached_package(package, cache) else {
            return Err(err);
        };
        progress(format_args!(
            "{err:#}; using the cached {} instead",
            dir.display()
        ));
        return Ok((dir, version));
    }
}

/// The version `apt-get download` would fetch.
fn candidate(package: &str) -> Result<Option<String>> {
    let policy = cmd::stdout_of(Command::new("apt-cache").args(["policy", package]))?;
    Ok(candidates(&policy)
        .into_iter()
        .find(|(p, _)| p == package)
        .map(|(_, version)| version))
}

/// The newest `<package>_<version>` directory in the cache, and its version.
fn newest_cached_package(package: &str, cache: &Path) -> Option<(PathBuf, String)> {
    let prefix = format!("{package}_");
    fs::read_dir(cache)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(&prefix)?.to_string();
            entry.path().is_dir().then(|| (entry.path(), version))
        })
        .max_by(|a, b| compare_versions(&a.1, &b.1))
}

/// The modules zram swap needs, in the order they load (each after those it uses): the
/// systemd guest swaps to zram (xtask/src/vm/systemd.rs). 6.12 compresses with lz4 from lib/.
pub(super) const SWAP_MODULES: [&str; 4] = ["zsmalloc", "lz4_compress", "lz4hc_compress", "zram"];
/// The directory beside a cached kernel's image that holds its [`SWAP_MODULES`].
pub(super) const MODULES_DIR: &str = "modules";

/// Downloads the package and keeps only its kernel image, its config and the
/// [`SWAP_MODULES`] it has (decompressed, in `modules/`) in `dir`. Everything is done in a
/// scratch directory renamed into place at the end, so an interrupted download is never
/// mistaken for a cached kernel.
fn download(package: &str, version: &str, dir: &Path) -> Result<()> {
    let Unpacked { scratch, root, deb } =
        download_and_unpack(package, version, dir, format_args!("kernel"))?;
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
    host::ensure_program("xz", "xz-utils")?;
    keep_swap_modules(&root.join("lib/modules"), &scratch.join(MODULES_DIR))?;
    // The other modules are most of the package, and no guest loads them.
    fs::remove_dir_all(&root)?;
    fs::remove_file(&deb)?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("could not replace {}", dir.display()))?;
    }
    fs::rename(&scratch, dir)
        .with_context(|| format!("could not move the kernel into {}", dir.display()))?;
    progress(format_args!(
        "kernel {package} {version}: {}",
        dir.join("vmlinuz").display()
    ));
    Ok(())
}

/// Copies each of [`SWAP_MODULES`] found under `modules` (the package's /lib/modules, where
/// Debian compresses them with xz) into `into`, decompressed, as `<name>.ko`.
fn keep_swap_modules(modules: &Path, into: &Path) -> Result<()> {
    fs::create_dir_all(into)?;
    let mut dirs = vec![modules.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let Some(module) = SWAP_MODULES
                .iter()
                .find(|m| name == format!("{m}.ko.xz") || name == format!("{m}.ko"))
            else {
                continue;
            };
            let target = into.join(format!("{module}.ko"));
            if name.ends_with(".xz") {
                let out = fs::File::create(&target)?;
                run(Command::new("xz")
                    .args(["--decompress", "--stdout"])
                    .arg(&path)
                    .stdout(out))?;
            } else {
                fs::copy(&path, &target)?;
            }
        }
    }
    Ok(())
}

/// A Debian package unpacked in a scratch directory beside its cache directory.
pub(super) struct Unpacked {
    /// Becomes the cache directory once its contents are complete.
    pub scratch: PathBuf,
    /// The package's files.
    pub root: PathBuf,
    /// The package itself, inside `scratch`.
    pub deb: PathBuf,
}

/// Downloads `package` at `version` with apt and unpacks it, in a scratch directory beside
/// `dir` that is hidden and named apart from `<package>_<version>`, so no cache lookup ever
/// picks a half-made one. `what` names it in the progress lines.
pub(super) fn download_and_unpack(
    package: &str,
    version: &str,
    dir: &Path,
    what: std::fmt::Arguments,
) -> Result<Unpacked> {
    let name = dir.file_name().context("a cache directory has a name")?;
    let scratch = dir.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    progress(format_args!("{what}: downloading {package} {version}"));
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
    progress(format_args!("{what}: unpacking {package} {version}"));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    Ok(Unpacked { scratch, root, deb })
}

/// dpkg's version order (`dpkg --compare-versions`): epoch, then upstream version, then
/// Debian revision, where `~` sorts before everything, even the end of the string.
pub(super) fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
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
}
