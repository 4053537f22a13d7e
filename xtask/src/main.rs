//! `cargo xtask`: builds, runs and tests oomtrace, first installing what is missing.

mod bench;
mod cargo;
mod ci;
mod cmd;
mod fuzz;
mod host;
mod image;
mod toolchain;
mod vm;

use std::process::{Command, ExitCode};

use anyhow::{Result, bail};

use cmd::progress;
use toolchain::ensure_build_toolchain;

const HELP: &str = "\
usage: cargo xtask <command> [-- ARGS...]

commands:
  build            install the eBPF toolchain if missing, then `cargo build --release`
  run [-- ARGS]    build, then run target/release/oomtrace ARGS (through sudo unless root)
  test [-- ARGS]   what CI runs: fmt, clippy, host setup, build, the image, `cargo test
                   --release` (passing ARGS to the test harness), a 30-container soak, fuzz
                   for 10 s a target, a smoke run of the bench, then vm-test
  vm-test [--kernel PATH]...
                   the end-to-end tests on Debian's newest 6.1 (cgroup v2 and v1) and 6.12
                   (cgroup v2) cloud kernels, each booted under QEMU (TCG) from an initramfs
                   with static builds; --kernel adds a bzImage of your own (cgroup v2).
                   Prints a kernel x cgroup x attach-mode matrix; exits 1 on any failure.
                   Kernels are cached in target/vm/kernels, serial logs kept in target/vm/logs
  fuzz [--seconds N]
                   run each cargo-fuzz target (kmsg records, tracefs formats, cgroup-path
                   attribution, the renderers) for N seconds (default 60), installing
                   cargo-fuzz if missing
  image            build a static oomtrace, then the container image oomtrace:latest
                   (FROM scratch: the Dockerfile at the root; needs a Docker daemon)
  bench [--smoke | --profile] [--only PHASE,...]
                   oomtrace against a bpftrace one-liner on the same kills: ready time, memory,
                   idle CPU, latency, a storm, handler cost, size, and a signal storm against
                   the same signals with no oomtrace; prints a table and the budgets, writes
                   target/bench/results.json (see BENCHMARKS.md); --smoke is the short run
                   `test` does, --profile records oomtrace's start-up with perf, --only runs
                   some of ready, memory, latency, storm, signals and judges their budgets
  soak [--containers N]
                   N containers (default 300) start and stop in waves, a third OOM-killed,
                   while a release oomtrace watches; Docker (a dockerd of the soak's own)
                   restarts midway and the --output disk (a tmpfs) fills. Checks each kill is
                   reported once and named, nothing else dropped, one warning, RSS in budget
  setup            install the toolchain and the test prerequisites (tracefs, Docker, the
                   oomtrace-busybox image, tmux, systemd-analyze) without building
  help             print this

Missing tools are installed only when needed; apt installs, mounts and starting dockerd need
root. OOMTRACE_EBPF_TOOLCHAIN overrides the nightly that builds the eBPF program.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    // `cargo xtask run -- --help` arrives as `run -- --help`; the `--` is only a separator.
    let mut rest: Vec<String> = args.collect();
    if rest.first().is_some_and(|a| a == "--") {
        rest.remove(0);
    }
    let result = match command.as_deref() {
        Some("build") => build_cmd(&rest),
        Some("run") => run_cmd(rest),
        Some("test") => return ci::test_cmd(rest),
        Some("setup") => setup_cmd(&rest),
        Some("vm-test") => vm_test_cmd(&rest),
        Some("fuzz") => fuzz_cmd(&rest),
        Some("bench") => bench::bench_cmd(&rest),
        Some("image") => image_cmd(&rest),
        Some("soak") => bench::soak_cmd(&rest),
        Some("help" | "-h" | "--help") => {
            println!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprintln!("{HELP}");
            Err(anyhow::anyhow!("unknown command `{other}`"))
        }
        None => {
            eprintln!("{HELP}");
            Err(anyhow::anyhow!("no command given"))
        }
    };
    result.unwrap_or_else(|err| {
        progress(format_args!("error: {err:#}"));
        ExitCode::FAILURE
    })
}

fn no_args(command: &str, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("`{command}` takes no arguments, got `{}`", args.join(" "));
    }
    Ok(())
}

fn build_cmd(args: &[String]) -> Result<ExitCode> {
    no_args("build", args)?;
    let toolchain = ensure_build_toolchain()?;
    cargo::build(&toolchain)?;
    Ok(ExitCode::SUCCESS)
}

fn setup_cmd(args: &[String]) -> Result<ExitCode> {
    no_args("setup", args)?;
    let toolchain = ensure_build_toolchain()?;
    host::ensure_test_prerequisites(&cargo::target_dir(&toolchain)?)?;
    Ok(ExitCode::SUCCESS)
}

fn image_cmd(args: &[String]) -> Result<ExitCode> {
    no_args("image", args)?;
    let toolchain = ensure_build_toolchain()?;
    image::build(&toolchain)?;
    Ok(ExitCode::SUCCESS)
}

fn fuzz_cmd(args: &[String]) -> Result<ExitCode> {
    let seconds = fuzz::parse_args(args)?;
    let toolchain = ensure_build_toolchain()?;
    fuzz::run_all(&toolchain, seconds)?;
    Ok(ExitCode::SUCCESS)
}

fn vm_test_cmd(args: &[String]) -> Result<ExitCode> {
    let kernels = vm::parse_args(args)?;
    let toolchain = ensure_build_toolchain()?;
    let count = vm::run_matrix(&toolchain, &kernels)?;
    if let Some(line) = count.not_applicable_summary() {
        println!("vm-test: {line}");
    }
    println!("vm-test: {}", count.summary());
    Ok(
        if count.failed == 0 && count.check_skips(oomtrace_test_skips::under_ci()).is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn run_cmd(args: Vec<String>) -> Result<ExitCode> {
    let toolchain = ensure_build_toolchain()?;
    let bin = cargo::build(&toolchain)?;
    let mut oomtrace = if host::is_root() {
        Command::new(&bin)
    } else {
        progress("not root: running oomtrace through sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(&bin);
        sudo
    };
    oomtrace.args(args);
    // Ctrl-C stops oomtrace, which then prints its summary; the xtask waits to pass on its status.
    cmd::survive_sigint();
    let status = cmd::status(&mut oomtrace)?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}
