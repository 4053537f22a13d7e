//! The static builds the guest runs. Each is checked for a program interpreter before it goes
//! into the initramfs, since a dynamic one would only fail inside the VM, far from the cause.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::Guest;
use crate::cmd::{self, progress, run};
use crate::toolchain::Toolchain;

/// Only these two: the initramfs has no dynamic loader and no libc.
const GNU: &str = "x86_64-unknown-linux-gnu";
const MUSL: &str = "x86_64-unknown-linux-musl";

/// Builds the tests, the hog and oomtrace as static binaries in their own target directory,
/// so the host build's cache survives. glibc's static link when it works here, since its
/// target is already installed; musl only if it does not.
pub(super) fn build_static(toolchain: &Toolchain, target_dir: &Path) -> Result<Guest> {
    let target = static_target(target_dir)?;
    build_for(toolchain, target_dir, target)
}

/// Only oomtrace, static as for the guests (same target choice, flags and target directory,
/// so one build serves both): for the container image, which has no libc either.
pub(crate) fn build_static_oomtrace(toolchain: &Toolchain, target_dir: &Path) -> Result<PathBuf> {
    let target = static_target(target_dir)?;
    let built = artifacts(&mut static_cargo(
        toolchain,
        target_dir,
        target,
        &["build", "-p", "oomtrace", "--bin", "oomtrace"],
    ))?;
    let oomtrace = find_artifact(&built, "oomtrace", false)?;
    if needs_loader(&oomtrace)? {
        bail!("{} is dynamically linked", oomtrace.display());
    }
    Ok(oomtrace)
}

fn static_target(target_dir: &Path) -> Result<&'static str> {
    if links_statically(GNU, target_dir)? {
        return Ok(GNU);
    }
    progress(format_args!(
        "a static link for {GNU} fails here: building for {MUSL}"
    ));
    ensure_rust_target(MUSL)?;
    Ok(MUSL)
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

/// `cargo ARGS` for a static release build for `target`.
fn static_cargo(toolchain: &Toolchain, target_dir: &Path, target: &str, args: &[&str]) -> Command {
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
}

fn build_for(toolchain: &Toolchain, target_dir: &Path, target: &str) -> Result<Guest> {
    let cargo = |args: &[&str]| static_cargo(toolchain, target_dir, target, args);
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
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    Some(Artifact {
        name: message["target"]["name"].as_str()?.to_owned(),
        test: message["profile"]["test"].as_bool()?,
        // `null` for libraries.
        executable: message["executable"].as_str()?.into(),
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
pub(super) fn needs_loader(path: &Path) -> Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
