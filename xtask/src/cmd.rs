//! Running child processes: one progress line per step, and errors that name the command.

use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

/// Every line the xtask itself prints goes through here, so its output stands apart from the
/// output of the tools it runs.
pub fn progress(msg: impl Display) {
    eprintln!("xtask: {msg}");
}

/// The command as a user would type it, for progress lines and errors.
pub fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` with the terminal attached and returns how it ended, whatever that was.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    progress(format_args!("running `{}`", display(cmd)));
    cmd.status()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Runs `cmd` with the terminal attached and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({})", display(cmd), describe(status));
    }
    Ok(())
}

/// Tests passed and failed, summed over every `test result:` line a test runner printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCount {
    pub passed: u64,
    pub failed: u64,
}

impl TestCount {
    /// Adds the counts of a libtest `test result: ok. 7 passed; 0 failed; ...` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            match (
                words.next().and_then(|n| n.parse::<u64>().ok()),
                words.next(),
            ) {
                (Some(n), Some("passed")) => self.passed += n,
                (Some(n), Some("failed")) => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Like [`run`], but passes the command's stdout through line by line and counts its tests.
pub fn run_counting_tests(cmd: &mut Command) -> Result<TestCount> {
    use std::io::{BufRead as _, BufReader};
    progress(format_args!("running `{}`", display(cmd)));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let mut count = TestCount::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            count.add_line(&line);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("could not wait for `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({})", display(cmd), describe(status));
    }
    Ok(count)
}

/// Whether a silent probe (`tool --version`, `docker info`) starts and exits 0. Probes decide
/// whether something must be installed, so their noise would only confuse.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stdout of a silent probe, or `None` if it could not start or did not exit 0.
pub fn probe_stdout(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stdout of a command whose output the xtask needs; its stderr goes into the error.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// "exit status 101" or "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The exit code a shell would report for `status`, so `cargo xtask run` is transparent.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

/// `dir` followed by the current PATH.
pub fn path_with(dir: &Path) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&rest).filter(|d| d != dir));
    // Joining only fails on a directory containing ':', which no PATH can hold anyway.
    std::env::join_paths(dirs).unwrap_or(rest)
}

/// Finds `name` on PATH or in the sbin directories, which a non-login PATH often lacks.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Keeps the xtask alive through Ctrl-C while it waits for a child. The terminal sends SIGINT to
/// the whole foreground process group: the child must get it (oomtrace prints its summary and
/// exits), but the xtask must outlive the child to pass on its exit status. A no-op handler
/// rather than SIG_IGN, because an ignored signal stays ignored across exec and the child would
/// never see Ctrl-C, while a handled one resets to the default.
pub fn survive_sigint() {
    const SIGINT: i32 = 2;
    extern "C" fn ignore(_: i32) {}
    unsafe extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }
    // SAFETY: the handler does nothing, so it is async-signal-safe.
    unsafe {
        signal(SIGINT, ignore);
    }
}

#[cfg(test)]
mod tests {
    use super::TestCount;

    #[test]
    fn sums_libtest_result_lines() {
        let mut count = TestCount::default();
        for line in [
            "test result: ok. 80 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.47s",
            "running 13 tests",
            "test result: FAILED. 12 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "    test result: ok. 0 passed; 0 failed; 0 ignored",
        ] {
            count.add_line(line);
        }
        assert_eq!(
            count,
            TestCount {
                passed: 92,
                failed: 1
            }
        );
    }
}
