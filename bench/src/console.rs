//! The bench's own lines, and the short commands it runs for their output: each within a
//! timeout, through the end-to-end tests' `output_within`.

use std::fmt::Display;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

/// Every line the bench itself prints goes through here, so its output stands apart from the
/// output of the tools it runs.
pub fn progress(msg: impl Display) {
    eprintln!("oomtrace-bench: {msg}");
}

/// Runs `cmd` to its end, killing it after `timeout`; it must exit 0. Its stdout, trimmed; its
/// stderr goes into the error.
pub fn stdout_within(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = oomtrace_tests::output_within(cmd, timeout).map_err(anyhow::Error::msg)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// [`stdout_within`] for a probe (`bpftrace --version`, `docker image inspect`): `None` if it
/// failed in any way, since a probe only says whether there is something to report.
pub fn probe(cmd: &mut Command, timeout: Duration) -> Option<String> {
    stdout_within(cmd, timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_within_a_timeout() {
        let sh = |script: &str| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]);
            cmd
        };
        let second = Duration::from_secs(10);
        assert_eq!(stdout_within(&mut sh("echo ' hi '"), second).unwrap(), "hi");
        let failed = stdout_within(&mut sh("echo no >&2; exit 3"), second).unwrap_err();
        assert_eq!(
            failed.to_string(),
            r#""sh" "-c" "echo no >&2; exit 3" failed (exit status: 3): no"#
        );
        assert_eq!(probe(&mut sh("sleep 5"), Duration::from_millis(100)), None);
    }
}
