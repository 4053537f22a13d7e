//! Host prerequisites of the privileged tests: root, apt packages, tracefs, a Docker daemon, the
//! busybox test image and containerd's programs. Each is set up only when missing, and only as
//! root.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{progress, run, succeeds, which};

const TRACEFS: &str = "/sys/kernel/tracing";
const DOCKERD_LOG: &str = "/tmp/oomtrace-dockerd.log";
const DOCKERD_WAIT: Duration = Duration::from_secs(30);

/// The image the tests run their memory hogs in. Built locally from the host's static busybox,
/// so the tests need no registry access.
const TEST_IMAGE: &str = "oomtrace-busybox:latest";
/// Applets the tests call inside the image.
const APPLETS: [&str; 8] = ["sh", "dd", "sleep", "cat", "echo", "true", "kill", "ls"];

/// The effective uid, from /proc so the xtask needs no libc crate.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| effective_uid(&s) == Some(0))
}

fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What the privileged tests need: tracefs, a Docker daemon and the busybox image (put
/// together under `target`, the cargo target directory, if missing), containerd's programs for
/// the Kubernetes-shaped tests; the terminal test drives the human view through tmux, the unit
/// file is checked with systemd-analyze, and the alerting rules with promtool, and a real
/// Prometheus scrapes the metrics. The tests start a containerd and a Prometheus of their own;
/// the packages' own services, if their installation starts them, are not theirs.
pub fn ensure_test_prerequisites(target: &Path) -> Result<()> {
    ensure_tracefs()?;
    ensure_docker()?;
    ensure_test_image(target)?;
    ensure_containerd_programs()?;
    ensure_program("tmux", "tmux")?;
    ensure_program("systemd-analyze", "systemd")?;
    ensure_program("promtool", "prometheus")?;
    ensure_program("prometheus", "prometheus")
}

/// What the bench runs besides oomtrace, each with the command that must work and the Debian
/// package that provides it: bpftrace (the peer), bpftool (names the programs whose run time
/// the kernel counts) and perf (`--profile`).
const BENCH_TOOLS: [(&str, &str, &str); 3] = [
    ("bpftrace", "--version", "bpftrace"),
    ("bpftool", "version", "bpftool"),
    ("perf", "--version", "linux-perf"),
];

/// Installs whichever of the bench's tools is missing, with one line saying what.
pub fn ensure_bench_tools() -> Result<()> {
    let missing: Vec<&str> = BENCH_TOOLS
        .iter()
        .filter(|(tool, probe, _)| !succeeds(Command::new(tool).arg(probe)))
        .map(|(_, _, package)| *package)
        .collect();
    if missing.is_empty() {
        progress("bpftrace, bpftool and perf are installed");
        return Ok(());
    }
    progress(format_args!(
        "the bench needs {}: installing from Debian",
        missing.join(", ")
    ));
    apt_install(&missing)
}

/// The programs the Kubernetes-shaped tests run, each with the Debian package that provides it.
/// The tests start a containerd of their own from these (never the host's, nor Docker's),
/// drive it with ctr, and its shim runs the tasks with runc.
const CONTAINERD_PROGRAMS: [(&str, &str); 4] = [
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("runc", "runc"),
];

/// Installs containerd and runc when any of their programs is missing; nothing is started.
fn ensure_containerd_programs() -> Result<()> {
    for (program, package) in CONTAINERD_PROGRAMS {
        ensure_program(program, package)?;
    }
    progress("containerd, ctr and runc are installed");
    Ok(())
}

/// Installs Debian's `package` when `program` is not on PATH, saying so.
pub fn ensure_program(program: &str, package: &str) -> Result<()> {
    if which(program).is_some() {
        return Ok(());
    }
    progress(format_args!(
        "{program} is missing: installing Debian's {package}"
    ));
    apt_install(&[package])
}

/// Installs Debian packages, running `apt-get update` at most once per xtask run.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!("{list} must be installed: run `sudo apt-get install -y {list}`, or rerun as root");
    }
    apt_update()?;
    progress(format_args!("installing {list}"));
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("could not install {list} with apt-get"))
}

/// Refreshes the apt package lists, at most once per xtask run: a second refresh would only
/// cost time.
pub fn apt_update() -> Result<()> {
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if UPDATED.load(Ordering::Relaxed) {
        return Ok(());
    }
    if !is_root() {
        bail!("the apt package lists need a refresh: run `sudo apt-get update`, or rerun as root");
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("could not refresh the apt package lists")?;
    UPDATED.store(true, Ordering::Relaxed);
    Ok(())
}

/// oomtrace attaches to tracepoints, and the tests read tracefs directly.
pub fn ensure_tracefs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("could not read /proc/mounts")?;
    if tracefs_mounted(&mounts) {
        progress(format_args!("tracefs is mounted at {TRACEFS}"));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "tracefs is not mounted at {TRACEFS}: run `sudo mount -t tracefs tracefs {TRACEFS}`, \
             or rerun as root"
        );
    }
    run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))
        .with_context(|| format!("could not mount tracefs at {TRACEFS}"))?;
    progress(format_args!("mounted tracefs at {TRACEFS}"));
    Ok(())
}

fn tracefs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
    })
}

/// The container tests need a Docker daemon; a CI machine may have none running, or none at all.
pub fn ensure_docker() -> Result<()> {
    if docker_answers() {
        progress("the Docker daemon is running");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the Docker daemon is not reachable (`docker info` fails): start it, or rerun as root"
        );
    }
    if which("dockerd").is_none() || which("docker").is_none() {
        apt_install(&["docker.io"])?;
    }
    let dockerd =
        which("dockerd").context("dockerd is still missing after installing docker.io")?;
    let log = fs::File::create(DOCKERD_LOG)
        .with_context(|| format!("could not create the dockerd log {DOCKERD_LOG}"))?;
    progress(format_args!(
        "starting {} in the background (log: {DOCKERD_LOG})",
        dockerd.display()
    ));
    let mut daemon = spawn_detached(
        Command::new(&dockerd)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .context("could not share the dockerd log file")?,
            )
            .stderr(log),
    )
    .with_context(|| format!("could not start {}", dockerd.display()))?;

    let started = Instant::now();
    while started.elapsed() < DOCKERD_WAIT {
        if docker_answers() {
            progress(format_args!(
                "the Docker daemon is up after {} s",
                started.elapsed().as_secs()
            ));
            return Ok(());
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            bail!("dockerd exited ({status}) before it answered; see {DOCKERD_LOG}");
        }
        sleep(Duration::from_millis(500));
    }
    bail!(
        "dockerd did not answer `docker info` within {} s; see {DOCKERD_LOG}",
        DOCKERD_WAIT.as_secs()
    )
}

/// Spawns in a new session, so neither a Ctrl-C meant for the tests nor the terminal closing
/// stops the daemon: it must outlive the xtask, like a service would.
fn spawn_detached(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    unsafe extern "C" {
        fn setsid() -> i32;
    }
    // SAFETY: setsid is async-signal-safe, so it may run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.spawn()
}

fn docker_answers() -> bool {
    succeeds(Command::new("docker").arg("info"))
}

/// Builds the tests' image from the host's static busybox: a static binary needs no libc in the
/// image, and the import needs no registry.
fn ensure_test_image(target: &Path) -> Result<()> {
    if succeeds(Command::new("docker").args(["image", "inspect", TEST_IMAGE])) {
        progress(format_args!("test image {TEST_IMAGE} is present"));
        return Ok(());
    }
    ensure_static_busybox()?;
    progress(format_args!("building test image {TEST_IMAGE}"));
    let dir = target.join("test-image");
    // Whatever an earlier build left here is stale.
    let _ = fs::remove_dir_all(&dir);
    let rootfs = dir.join("rootfs");
    write_rootfs(&rootfs)?;
    let tar = dir.join("rootfs.tar");
    run(Command::new("tar")
        .args([
            "--create",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--file",
        ])
        .arg(&tar)
        .arg("--directory")
        .arg(&rootfs)
        .arg("."))
    .context("could not pack the test image's root filesystem")?;
    run(Command::new("docker")
        .args(["import", "--change", r#"CMD ["/bin/sh"]"#])
        .arg(&tar)
        .arg(TEST_IMAGE))
    .with_context(|| format!("could not import the test image {TEST_IMAGE}"))?;
    // Kept only if a step failed, for a look at what it was given.
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// A statically linked /bin/busybox, for the test image and the kernel-matrix initramfs:
/// neither has a libc for it to load.
pub fn ensure_static_busybox() -> Result<()> {
    if !static_busybox_installed() {
        // Replaces Debian's dynamically linked busybox.
        apt_install(&["busybox-static"])?;
    }
    Ok(())
}

fn static_busybox_installed() -> bool {
    let mut query = Command::new("dpkg-query");
    query.args(["--show", "--showformat=${Status}", "busybox-static"]);
    crate::cmd::probe_stdout(&mut query).is_some_and(|s| s.trim() == "install ok installed")
        && Path::new("/bin/busybox").is_file()
}

fn write_rootfs(rootfs: &Path) -> Result<()> {
    let bin = rootfs.join("bin");
    let tmp = rootfs.join("tmp");
    let mkdirs = || -> std::io::Result<()> {
        fs::create_dir_all(&bin)?;
        fs::create_dir_all(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
    };
    mkdirs().with_context(|| format!("could not create directories in {}", rootfs.display()))?;
    fs::copy("/bin/busybox", bin.join("busybox"))
        .context("could not copy /bin/busybox into the test image")?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))
        .context("could not make the image's busybox executable")?;
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).with_context(|| {
            format!("could not link /bin/{applet} to busybox in the test image")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_uid() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
    }

    #[test]
    fn finds_tracefs_only_at_its_mount_point() {
        let mounts = "sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/debug/tracing tracefs rw 0 0\n";
        assert!(!tracefs_mounted(mounts));
        assert!(tracefs_mounted(
            "tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n"
        ));
    }
}
