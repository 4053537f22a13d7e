//! `cargo xtask fuzz [--seconds N]`: runs every cargo-fuzz target in `fuzz/` for a fixed time,
//! starting from the checked-in seeds (real kernel output, real cgroup paths, hostile strings)
//! and, where `fuzz/dictionaries/<target>.dict` exists, splicing in its tokens.

use anyhow::{Context as _, Result, bail};
use std::process::Command;

use crate::{
    cmd::{progress, run, succeeds},
    toolchain::{Toolchain, workspace_root},
};

/// The fuzz targets, each named after `fuzz/fuzz_targets/<name>.rs`: the kernel-text parsers,
/// then what handles strings from whoever runs a container (attribution and the renderers).
pub const TARGETS: [&str; 4] = ["kmsg", "tracefs_format", "cgroup_path", "render"];

/// What `cargo xtask test` spends on each target.
pub const CI_SECONDS: u64 = 10;

pub fn parse_args(args: &[String]) -> Result<u64> {
    match args {
        [] => Ok(60),
        [flag, seconds] if flag == "--seconds" => seconds
            .parse()
            .with_context(|| format!("--seconds takes a whole number, not `{seconds}`")),
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    }
}

pub fn run_all(toolchain: &Toolchain, seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("fuzz");
    for target in TARGETS {
        progress(format_args!("fuzzing {target} for {seconds} s"));
        let corpus = dir.join("corpus").join(target);
        // Sanitizer builds need nightly: the one that already builds the eBPF program.
        let mut fuzz = Command::new("cargo");
        fuzz.current_dir(&dir)
            .arg(format!("+{}", toolchain.nightly()))
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"));
        // Runtimes' cgroup names are long words the fuzzer would take long to find letter by
        // letter.
        let dictionary = dir.join("dictionaries").join(format!("{target}.dict"));
        if dictionary.is_file() {
            fuzz.arg(format!("-dict={}", dictionary.display()));
        }
        run(&mut fuzz)?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    if succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        return Ok(());
    }
    progress("installing cargo-fuzz (about a minute)");
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--version", "0.13.2", "--locked"]))
}
