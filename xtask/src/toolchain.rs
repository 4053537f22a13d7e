//! What building oomtrace needs beyond stable Rust: a nightly with rust-src for the eBPF crate
//! (aya-build runs `rustup run <toolchain> cargo build -Z build-std=core`), and a bpf-linker
//! whose LLVM major matches that nightly's.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{path_with, probe_stdout, progress, run, succeeds};
use crate::host;

/// bpf-linker links the nightly's LLVM bitcode, so their LLVM majors must match.
const LLVM_MAJOR: u32 = 22;
/// Used when the installed nightly is missing or has another LLVM: a newer nightly on a new
/// machine must not break the link.
const PINNED_NIGHTLY: &str = "nightly-2026-05-19";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Read by oomtrace/build.rs.
const TOOLCHAIN_VAR: &str = "OOMTRACE_EBPF_TOOLCHAIN";

/// The tools found or installed; hands out cargo commands that use them.
pub struct Toolchain {
    ebpf: String,
}

impl Toolchain {
    /// The nightly toolchain's name, for `cargo +<name>`.
    pub fn nightly(&self) -> &str {
        &self.ebpf
    }

    /// A `cargo` run from the workspace root that builds the eBPF crate with the chosen nightly.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(workspace_root())
            .env(TOOLCHAIN_VAR, &self.ebpf);
        cmd
    }
}

/// The workspace root, fixed at compile time so the xtask works from any directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

pub fn ensure_build_toolchain() -> Result<Toolchain> {
    add_cargo_bin_to_path()?;
    if !succeeds(Command::new("rustup").arg("--version")) {
        bail!(
            "rustup is needed to install the nightly that builds the eBPF program; install it from https://rustup.rs and rerun"
        );
    }
    let ebpf = choose_ebpf_toolchain()?;
    ensure_rust_src(&ebpf)?;
    ensure_bpf_linker()?;
    // containerd's client crate compiles containerd's .proto files at build time.
    host::ensure_program("protoc", "protobuf-compiler")?;
    Ok(Toolchain { ebpf })
}

/// `cargo install` puts bpf-linker in ~/.cargo/bin, which a root shell or a CI job often lacks
/// on PATH. Set in the xtask's own environment so every child (cargo, aya-build, probes) sees it.
fn add_cargo_bin_to_path() -> Result<()> {
    let bin = cargo_home()?.join("bin");
    let path = path_with(&bin);
    // SAFETY: the xtask is single-threaded; no other thread reads the environment.
    unsafe { env::set_var("PATH", path) };
    Ok(())
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(home.into());
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(Path::new(&home).join(".cargo"))
}

fn choose_ebpf_toolchain() -> Result<String> {
    // An explicit choice wins, as it does in oomtrace/build.rs.
    if let Some(name) = env::var(TOOLCHAIN_VAR).ok().filter(|n| !n.is_empty()) {
        match llvm_major(&name) {
            None => bail!(
                "{TOOLCHAIN_VAR}={name} names a toolchain rustup cannot run; install it or unset the variable"
            ),
            Some(major) if major != LLVM_MAJOR => progress(format_args!(
                "warning: {name} (from {TOOLCHAIN_VAR}) has LLVM {major}, bpf-linker is built for LLVM {LLVM_MAJOR}"
            )),
            Some(_) => progress(format_args!(
                "eBPF toolchain: {name} (from {TOOLCHAIN_VAR})"
            )),
        }
        return Ok(name);
    }
    match llvm_major("nightly") {
        Some(LLVM_MAJOR) => {
            progress(format_args!("eBPF toolchain: nightly (LLVM {LLVM_MAJOR})"));
            return Ok("nightly".into());
        }
        Some(major) => progress(format_args!(
            "nightly has LLVM {major}, bpf-linker needs LLVM {LLVM_MAJOR}: using {PINNED_NIGHTLY}"
        )),
        None => progress(format_args!("no nightly toolchain: using {PINNED_NIGHTLY}")),
    }
    if llvm_major(PINNED_NIGHTLY).is_none() {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            PINNED_NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .with_context(|| format!("could not install {PINNED_NIGHTLY} with rustup"))?;
    }
    match llvm_major(PINNED_NIGHTLY) {
        Some(LLVM_MAJOR) => {
            progress(format_args!(
                "eBPF toolchain: {PINNED_NIGHTLY} (LLVM {LLVM_MAJOR})"
            ));
            Ok(PINNED_NIGHTLY.into())
        }
        Some(major) => bail!(
            "{PINNED_NIGHTLY} has LLVM {major}, but bpf-linker is built for LLVM {LLVM_MAJOR}"
        ),
        None => bail!("rustup installed {PINNED_NIGHTLY}, but its rustc does not run"),
    }
}

/// The LLVM major of `toolchain`'s rustc, or `None` if rustup cannot run it.
fn llvm_major(toolchain: &str) -> Option<u32> {
    let out = probe_stdout(
        Command::new("rustup")
            .args(["run", toolchain, "rustc", "-vV"])
            // Newer rustup would otherwise install a missing toolchain just to answer the probe.
            .env("RUSTUP_AUTO_INSTALL", "0"),
    )?;
    parse_llvm_major(&out)
}

fn parse_llvm_major(rustc_vv: &str) -> Option<u32> {
    let version = rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))?;
    version.trim().split('.').next()?.parse().ok()
}

/// `-Z build-std=core` compiles core from source.
fn ensure_rust_src(toolchain: &str) -> Result<()> {
    let installed = probe_stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]))
    .is_some_and(|list| list.lines().any(|l| l.trim() == "rust-src"));
    if installed {
        progress(format_args!("rust-src is installed for {toolchain}"));
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", toolchain]))
        .with_context(|| format!("could not add rust-src to {toolchain}"))
}

fn ensure_bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        progress("bpf-linker is installed");
        return Ok(());
    }
    let llvm_bin = PathBuf::from(format!("/usr/lib/llvm-{LLVM_MAJOR}/bin"));
    if !llvm_bin.join("llvm-config").is_file() {
        let (llvm, polly) = (
            format!("llvm-{LLVM_MAJOR}-dev"),
            format!("libpolly-{LLVM_MAJOR}-dev"),
        );
        host::apt_install(&[&llvm, &polly])?;
    }
    progress(format_args!(
        "installing bpf-linker {BPF_LINKER_VERSION} for LLVM {LLVM_MAJOR} (about a minute or two)"
    ));
    let install = |locked: bool| {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION]);
        if locked {
            cmd.arg("--locked");
        }
        cmd.args(["--no-default-features", "--features"])
            .arg(format!("llvm-{LLVM_MAJOR}"))
            // llvm-sys finds LLVM through the llvm-config first on PATH.
            .env("PATH", path_with(&llvm_bin));
        run(&mut cmd)
    };
    if install(true).is_err() {
        // The published lockfile can lag behind a yanked or broken dependency.
        progress("`cargo install --locked` failed; retrying without --locked");
        install(false).context("could not install bpf-linker with cargo install")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }
}
