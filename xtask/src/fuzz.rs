//! `cargo xtask fuzz [--seconds N]`: runs every cargo-fuzz target in `fuzz/` for a fixed time,
//! starting from the checked-in corpus of real kernel output.

use anyhow::{Context as _, Result, bail};
use std::process::Command;

use crate::{
    cmd::{progress, run, succeeds},
    toolchain::{Toolchain, workspace_root},
};

/// The fuzz targets, each named after `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: [&str; 2] = ["kmsg", "tracefs_format"];

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
        run(Command::new("cargo")
            .current_dir(&dir)
            .arg(format!("+{}", toolchain.nightly()))
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}")))?;
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
