//! Running child processes: one progress line per step, and errors that name the command.

use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};
use oomtrace_test_skips::{SKIPS_ENV, Skip, SkipKind, parse_skip};

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

/// The tests of a run: libtest's counts, with the tests that returned without testing counted
/// apart. libtest counts those as passed, so they are taken out of `passed()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestCount {
    /// What libtest's `test result:` lines call passed, skipped and not-applicable included.
    pub ok: u64,
    pub failed: u64,
    pub skipped: Vec<Skip>,
    pub not_applicable: Vec<Skip>,
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
                (Some(n), Some("passed")) => self.ok += n,
                (Some(n), Some("failed")) => self.failed += n,
                _ => {}
            }
        }
    }

    /// Adds one record of the skips file; false if `line` is none.
    pub fn add_skip_line(&mut self, line: &str) -> bool {
        let Some((kind, skip)) = parse_skip(line) else {
            return false;
        };
        self.add_skip(kind, skip);
        true
    }

    pub fn add_skip(&mut self, kind: SkipKind, skip: Skip) {
        match kind {
            SkipKind::Skipped => self.skipped.push(skip),
            SkipKind::NotApplicable => self.not_applicable.push(skip),
        }
    }

    /// Adds every record of a skips file's text.
    pub fn add_skips(&mut self, text: &str) {
        for line in text.lines() {
            self.add_skip_line(line);
        }
    }

    /// Tests that ran and passed: libtest's passed, less those that returned without testing.
    pub fn passed(&self) -> u64 {
        let returned_early = (self.skipped.len() + self.not_applicable.len()) as u64;
        self.ok.saturating_sub(returned_early)
    }

    pub fn merge(&mut self, other: TestCount) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.skipped.extend(other.skipped);
        self.not_applicable.extend(other.not_applicable);
    }

    /// `N passed, M failed, K skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed,
            self.skipped.len()
        )
    }

    /// `N not applicable here (TEST: WHY; ...)`, if any test was.
    pub fn not_applicable_summary(&self) -> Option<String> {
        (!self.not_applicable.is_empty()).then(|| {
            format!(
                "{} not applicable here ({})",
                self.not_applicable.len(),
                list(&self.not_applicable, "; ")
            )
        })
    }

    /// Under CI (`ci`) a skip fails the run: CI must run every test its machines can run.
    /// The tests already fail instead of skipping under `CI=true`; this catches a skip that
    /// reached the file anyway.
    pub fn check_skips(&self, ci: bool) -> Result<()> {
        if ci && !self.skipped.is_empty() {
            bail!(
                "CI=true, yet {} tests skipped instead of running: {}",
                self.skipped.len(),
                list(&self.skipped, "; ")
            );
        }
        Ok(())
    }
}

fn list(skips: &[Skip], separator: &str) -> String {
    skips
        .iter()
        .map(|s| format!("{}: {}", s.test, s.why))
        .collect::<Vec<_>>()
        .join(separator)
}

/// Runs `cargo test` (or any libtest runner) with [`SKIPS_ENV`] naming `skips`, a file it
/// empties first; passes its stdout through line by line and counts its tests, reading the
/// skips file afterwards. Returns the count even when tests failed, with how the run ended.
pub fn run_counting_tests(cmd: &mut Command, skips: &Path) -> Result<(TestCount, ExitStatus)> {
    use std::io::{BufRead as _, BufReader};
    // Fresh: records of an earlier run must not count in this one.
    std::fs::write(skips, "").with_context(|| format!("could not create {}", skips.display()))?;
    cmd.env(SKIPS_ENV, skips);
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
    let recorded = std::fs::read_to_string(skips)
        .with_context(|| format!("could not read {}", skips.display()))?;
    count.add_skips(&recorded);
    Ok((count, status))
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
    use super::*;

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
                ok: 92,
                failed: 1,
                ..TestCount::default()
            }
        );
        assert_eq!(count.passed(), 92);
    }

    #[test]
    fn counts_skipped_and_not_applicable_apart_from_passed() {
        let mut count = TestCount::default();
        count.add_line("test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured");
        count.add_line("test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured");
        count.add_skips(
            "n/a\tgroup_kill_reports_every_member\tmemory.oom.group exists only on cgroup v2; the kernel matrix runs it\n\
             skipped\tfilters\tit needs root to load eBPF and create memory cgroups\n\
             skipped\tbroken line without a reason\n\
             something else\n",
        );
        assert_eq!(count.passed(), 18);
        assert_eq!(count.failed, 0);
        assert_eq!(
            count.skipped,
            [Skip {
                test: "filters".into(),
                why: "it needs root to load eBPF and create memory cgroups".into()
            }]
        );
        assert_eq!(count.summary(), "18 passed, 0 failed, 1 skipped");
        assert_eq!(
            count.not_applicable_summary().as_deref(),
            Some(
                "1 not applicable here (group_kill_reports_every_member: memory.oom.group \
                 exists only on cgroup v2; the kernel matrix runs it)"
            )
        );

        let mut vm = TestCount {
            ok: 12,
            failed: 1,
            ..TestCount::default()
        };
        assert!(vm.add_skip_line("n/a\tgroup_kill_reports_every_member\tv2 only\r"));
        assert!(!vm.add_skip_line("test group_kill_reports_every_member ... ok"));
        count.merge(vm);
        assert_eq!(count.summary(), "29 passed, 1 failed, 1 skipped");
        assert_eq!(count.not_applicable.len(), 2);
        assert_eq!(count.not_applicable[1].why, "v2 only");
        assert_eq!(TestCount::default().not_applicable_summary(), None);

        assert!(count.check_skips(false).is_ok());
        let ci = count.check_skips(true).unwrap_err().to_string();
        assert!(
            ci.contains("1 tests skipped") && ci.contains("filters: it needs root"),
            "{ci}"
        );
        count.skipped.clear();
        assert!(count.check_skips(true).is_ok(), "n/a is allowed under CI");
    }
}
