//! How a test that cannot run here says so. `cargo xtask test` (and the kernel matrix's init)
//! names a file in [`SKIPS_ENV`]; each test that returns without testing adds one line to it,
//! `skipped\tTEST\tWHY` or `n/a\tTEST\tWHY`. libtest counts such a test as passed; the xtask
//! reads the file to count it apart. Under `CI=true` nothing the machine can run is skipped.

use std::{io::Write as _, path::Path};

/// The variable naming the file skips are recorded in.
pub const SKIPS_ENV: &str = "OOMTRACE_TEST_SKIPS";

/// Whether this runs under CI (`CI=true`), where a skip is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `test` should run here but cannot (no root, an attach mode this host lacks). The caller
/// returns at once. Outside CI this prints one line and records the skip, so it is counted as
/// skipped, not passed. Under `CI=true` it fails the test instead: CI must run everything its
/// machines can run, and a skip there means the machine or the test is broken.
pub fn skip(test: &str, why: &str) {
    if under_ci() {
        panic!("{test} cannot run here ({why}), and CI must run it");
    }
    eprintln!("skipped {test}: {why}");
    record("skipped", test, why);
}

/// `test` does not apply to this host at all (a cgroup v2 feature on a cgroup v1 host); other
/// machines, such as the kernel matrix's v2 boots, run it. Allowed under CI, and counted apart
/// from both passed and skipped.
pub fn not_applicable(test: &str, why: &str) {
    eprintln!("n/a {test}: {why}");
    record("n/a", test, why);
}

/// True when `test` may go on because it runs as root; otherwise it is [`skip`]ped for `why`,
/// which fails it under `CI=true`.
pub fn as_root(test: &str, why: &str) -> bool {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, why);
    false
}

fn record(kind: &str, test: &str, why: &str) {
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    // One record a line, three tab-separated fields: neither may hold a tab or a line break.
    let clean = |text: &str| text.replace(['\t', '\n', '\r'], " ");
    let line = format!("{kind}\t{}\t{}\n", clean(test), clean(why));
    // O_APPEND and one write(2) of one short line: the records of tests running in parallel,
    // and of several test binaries, never interleave.
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    // A lost record would count this test as passed: fail loudly instead.
    if let Err(e) = written {
        panic!(
            "cannot record `{}` in {} ({SKIPS_ENV}): {e}",
            line.trim_end(),
            Path::new(&path).display()
        );
    }
}
