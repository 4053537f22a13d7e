//! What the bench runs besides oomtrace: bpftrace (the peer), bpftool (names the programs whose
//! run time the kernel counts) and perf (`--profile`). Each comes from Debian, only if missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::{progress, succeeds, which};
use crate::host;

/// (command that must work, Debian package that provides it)
const TOOLS: [(&str, &str, &str); 3] = [
    ("bpftrace", "--version", "bpftrace"),
    ("bpftool", "version", "bpftool"),
    ("perf", "--version", "linux-perf"),
];

/// Installs whichever tool is missing, with one line saying what; returns bpftrace's path.
pub fn ensure_tools() -> Result<PathBuf> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, probe, _)| !succeeds(Command::new(tool).arg(probe)))
        .map(|(_, _, package)| *package)
        .collect();
    if missing.is_empty() {
        progress("bpftrace, bpftool and perf are installed");
    } else {
        progress(format_args!(
            "the bench needs {}: installing from Debian",
            missing.join(", ")
        ));
        host::apt_install(&missing)?;
    }
    which("bpftrace").context("bpftrace is still missing after installing it")
}

/// `bpftrace --version`, for results.json.
pub fn version(tool: &str, arg: &str) -> Option<String> {
    crate::cmd::probe_stdout(Command::new(tool).arg(arg)).map(|s| s.trim().to_string())
}
