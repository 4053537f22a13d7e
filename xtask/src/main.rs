//! `cargo xtask`: builds, runs and tests oomtrace, first installing what is missing.

mod bench;
mod cmd;
mod fuzz;
mod host;
mod image;
mod soak;
mod toolchain;
mod vm;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use cmd::{progress, run};
use toolchain::{Toolchain, ensure_build_toolchain};

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
  bench [--smoke | --profile]
                   oomtrace against a bpftrace one-liner on the same kills: ready time, memory,
                   idle CPU, latency, a storm, handler cost, size; prints a table and the
                   budgets, writes target/bench/results.json (see BENCHMARKS.md); --smoke is
                   the short run `test` does, --profile records oomtrace's start-up with perf
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
        Some("test") => return test_cmd(rest),
        Some("setup") => setup_cmd(&rest),
        Some("vm-test") => vm_test_cmd(&rest),
        Some("fuzz") => fuzz_cmd(&rest),
        Some("bench") => bench::command(&rest),
        Some("image") => image_cmd(&rest),
        Some("soak") => soak::command(&rest),
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
    build(&toolchain)?;
    Ok(ExitCode::SUCCESS)
}

fn setup_cmd(args: &[String]) -> Result<ExitCode> {
    no_args("setup", args)?;
    ensure_build_toolchain()?;
    test_prerequisites()?;
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
        if count.failed == 0 && count.check_skips(cmd::under_ci()).is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// The eBPF crate is not a default member, so a plain release build covers exactly the host
/// crates; oomtrace/build.rs builds the kernel program with aya-build.
fn build(toolchain: &Toolchain) -> Result<PathBuf> {
    run(toolchain.cargo().args(["build", "--release"]))?;
    let bin = target_dir(toolchain)?.join("release").join("oomtrace");
    if !bin.is_file() {
        bail!("the build succeeded but {} does not exist", bin.display());
    }
    progress(format_args!("built {}", bin.display()));
    Ok(bin)
}

/// Asks cargo, so CARGO_TARGET_DIR and build.target-dir in any config are honoured.
fn target_dir(toolchain: &Toolchain) -> Result<PathBuf> {
    let metadata =
        cmd::stdout_of(
            toolchain
                .cargo()
                .args(["metadata", "--format-version", "1", "--no-deps"]),
        )?;
    json_string_field(&metadata, "target_directory")
        .map(PathBuf::from)
        .context("`cargo metadata` printed no target_directory")
}

/// The first string value of `"field":` in `json`. Enough for cargo metadata's top-level
/// fields without a JSON parser in the xtask's build.
fn json_string_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":");
    let start = json.find(&key)? + key.len();
    let mut chars = json[start..].trim_start().strip_prefix('"')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => value.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                escaped => escaped,
            }),
            c => value.push(c),
        }
    }
}

fn run_cmd(args: Vec<String>) -> Result<ExitCode> {
    let toolchain = ensure_build_toolchain()?;
    let bin = build(&toolchain)?;
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

/// The privileged tests need tracefs, a Docker daemon and the busybox image.
fn test_prerequisites() -> Result<()> {
    host::ensure_tracefs()?;
    host::ensure_docker()?;
    host::ensure_test_image()?;
    // The terminal test drives the human view through tmux; the unit file is checked with
    // systemd-analyze.
    host::ensure_program("tmux", "tmux")?;
    host::ensure_program("systemd-analyze", "systemd")
}

/// Runs every CI step in order and stops at the first failure, naming it. Once tests have run,
/// the last line counts them, whether the run passed or not.
fn test_cmd(extra: Vec<String>) -> ExitCode {
    let mut count = None;
    let code = match test_steps(extra, &mut count) {
        Ok(()) => {
            progress("test passed");
            ExitCode::SUCCESS
        }
        Err((step, err)) => {
            progress(format_args!("error: {err:#}"));
            progress(format_args!("test FAILED: {step}"));
            ExitCode::FAILURE
        }
    };
    if let Some(count) = count {
        // The plain closing lines CI reads: every test of the host run and the VM matrix, with
        // those that returned without testing counted apart from the passed.
        if let Some(line) = count.not_applicable_summary() {
            println!("xtask: {line}");
        }
        println!("xtask: {}", count.summary());
    }
    code
}

/// The steps of `cargo xtask test`; `count` holds the tests counted so far.
fn test_steps(
    extra: Vec<String>,
    count: &mut Option<cmd::TestCount>,
) -> Result<(), (&'static str, anyhow::Error)> {
    fn step<T>(name: &'static str, result: Result<T>) -> Result<T, (&'static str, anyhow::Error)> {
        result.map_err(|err| (name, err))
    }

    let toolchain = step("toolchain", ensure_build_toolchain())?;
    step(
        "fmt",
        run(toolchain.cargo().args(["fmt", "--all", "--", "--check"])),
    )?;
    // Release, like the build below, so clippy and the tests share one build cache.
    step(
        "clippy",
        run(toolchain.cargo().args([
            "clippy",
            "--release",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    step("host setup", test_prerequisites())?;
    let bin = step("build", build(&toolchain))?;
    // The deploy tests run the image as the operator's guide says.
    step("image", image::build(&toolchain))?;
    // Default members only: `--workspace` would build the eBPF crate for the host, which fails.
    let mut test = toolchain.cargo();
    test.args(["test", "--release"]).env("OOMTRACE_BIN", &bin);
    if !extra.is_empty() {
        test.arg("--").args(extra);
    }
    // Where the tests record what they skipped: fresh for each run, under the target directory.
    let skips = step("cargo test", target_dir(&toolchain))?.join("xtask-test-skips.tsv");
    let (host, status) = step("cargo test", cmd::run_counting_tests(&mut test, &skips))?;
    let host = count.insert(host);
    if !status.success() {
        return Err((
            "cargo test",
            anyhow::anyhow!(
                "`{}` failed ({})",
                cmd::display(&test),
                cmd::describe(status)
            ),
        ));
    }
    step("cargo test", host.check_skips(cmd::under_ci()))?;
    step("soak", soak::ci(&toolchain, &bin))?;
    step("fuzz", fuzz::run_all(&toolchain, fuzz::CI_SECONDS))?;
    // A short run of every measurement, no budget enforced: so the bench itself cannot rot.
    step("bench smoke", bench::smoke(&toolchain, &bin))?;
    // Last: the host's own kernel has passed by now, so a failure here is about another kernel.
    let vm = step("vm-test", vm::run_matrix(&toolchain, &[]))?;
    let failed = vm.failed;
    let all = count.as_mut().expect("counted above");
    all.merge(vm);
    if failed > 0 {
        return Err((
            "vm-test",
            anyhow::anyhow!("{failed} tests failed in the kernel matrix (see above)"),
        ));
    }
    step("vm-test", all.check_skips(cmd::under_ci()))
}

#[cfg(test)]
mod tests {
    use super::json_string_field;

    #[test]
    fn reads_a_string_field() {
        let json = r#"{"packages":[],"target_directory":"/w/my \"t\"\\dir\u00e9","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/w/my \"t\"\\dir\u{e9}")
        );
        assert_eq!(json_string_field(json, "workspace_root"), None);
    }
}
