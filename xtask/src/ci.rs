//! `cargo xtask test`: every step CI runs, in order, stopping at the first failure and naming
//! it. Once tests have run, the last line counts them, whether the run passed or not.

use std::process::ExitCode;

use anyhow::Result;

use crate::cmd::{self, TestCount, progress, run};
use crate::toolchain::ensure_build_toolchain;
use crate::{bench, cargo, fuzz, host, image, vm};

pub fn test_cmd(extra: Vec<String>) -> ExitCode {
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
    count: &mut Option<TestCount>,
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
    let target = step("host setup", cargo::target_dir(&toolchain))?;
    step("host setup", host::ensure_test_prerequisites(&target))?;
    let bin = step("build", cargo::build(&toolchain))?;
    // The deploy tests run the image as the operator's guide says.
    step("image", image::build(&toolchain))?;
    // Default members only: `--workspace` would build the eBPF crate for the host, which fails.
    let mut test = toolchain.cargo();
    test.args(["test", "--release"]).env("OOMTRACE_BIN", &bin);
    if !extra.is_empty() {
        test.arg("--").args(extra);
    }
    // Where the tests record what they skipped: fresh for each run, under the target directory.
    let skips = target.join("xtask-test-skips.tsv");
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
    step(
        "cargo test",
        host.check_skips(oomtrace_test_skips::under_ci()),
    )?;
    step("soak", bench::soak_ci(&toolchain, &bin))?;
    step("fuzz", fuzz::run_all(&toolchain, fuzz::CI_SECONDS))?;
    // A short run of every measurement, no budget enforced: so the bench itself cannot rot.
    step("bench smoke", bench::bench_smoke(&toolchain, &bin))?;
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
    step("vm-test", all.check_skips(oomtrace_test_skips::under_ci()))
}
