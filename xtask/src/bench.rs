//! `cargo xtask bench` and `cargo xtask soak`: the release build (oomtrace, the hog and
//! oomtrace-bench, from bench/) and the host set up, then oomtrace-bench does the work.

use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Result, bail};

use crate::cmd;
use crate::toolchain::{Toolchain, ensure_build_toolchain};
use crate::{cargo, host};

/// The containers of the soak `cargo xtask test` runs: two waves of 15, ten kills, a Docker
/// restart and a full disk in under a minute.
const CI_CONTAINERS: &str = "30";

/// `cargo xtask bench [--smoke | --profile] [--only PHASE,...]`.
pub fn bench_cmd(args: &[String]) -> Result<ExitCode> {
    let toolchain = ensure_build_toolchain()?;
    let oomtrace = cargo::build(&toolchain)?;
    host::ensure_test_prerequisites(&cargo::target_dir(&toolchain)?)?;
    host::ensure_bench_tools()?;
    let status = oomtrace_bench(&toolchain, &oomtrace, "bench", args)?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}

/// `cargo xtask soak [--containers N]`.
pub fn soak_cmd(args: &[String]) -> Result<ExitCode> {
    let toolchain = ensure_build_toolchain()?;
    let oomtrace = cargo::build(&toolchain)?;
    host::ensure_test_prerequisites(&cargo::target_dir(&toolchain)?)?;
    let status = oomtrace_bench(&toolchain, &oomtrace, "soak", args)?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}

/// The bench's step of `cargo xtask test`, after the build and the host set-up: a short run of
/// every measurement, no budget enforced.
pub fn bench_smoke(toolchain: &Toolchain, oomtrace: &Path) -> Result<()> {
    host::ensure_bench_tools()?;
    let args = ["--smoke".to_owned()];
    succeeded(oomtrace_bench(toolchain, oomtrace, "bench", &args)?)
}

/// The soak's step of `cargo xtask test`, after the build and the host set-up.
pub fn soak_ci(toolchain: &Toolchain, oomtrace: &Path) -> Result<()> {
    let args = ["--containers".to_owned(), CI_CONTAINERS.to_owned()];
    succeeded(oomtrace_bench(toolchain, oomtrace, "soak", &args)?)
}

/// Runs `oomtrace-bench COMMAND ARGS` from the release build, on the `oomtrace` built beside it.
fn oomtrace_bench(
    toolchain: &Toolchain,
    oomtrace: &Path,
    command: &str,
    args: &[String],
) -> Result<ExitStatus> {
    let bench = cargo::release_dir(toolchain)?.join("oomtrace-bench");
    let mut run = Command::new(bench);
    run.arg(command).args(args).env("OOMTRACE_BIN", oomtrace);
    cmd::status(&mut run)
}

fn succeeded(status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("oomtrace-bench failed ({})", cmd::describe(status));
    }
    Ok(())
}
