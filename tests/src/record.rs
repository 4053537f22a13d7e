//! oomtrace's one-shot commands (`history`, `explain`) run to their end, and the journal a
//! test's watches keep, read as the file it is.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{preconditions::oomtrace_bin, process::output_within, scratch::TempDir};

/// `history` and `explain` read the kernel log and ask Docker: seconds, not minutes.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run of oomtrace left.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The stdout with every run of white space as one space: explain wraps its sentences.
    pub fn text(&self) -> String {
        self.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub fn expect_says(&self, parts: &[&str]) {
        let text = self.text();
        for part in parts {
            assert!(
                text.contains(part),
                "no {part:?} in what oomtrace said:\n{}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
    }

    /// The one JSON object `--json` printed.
    pub fn object(&self) -> Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "exactly one line: {}", self.stdout);
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]))
    }

    /// Every line `--json` printed, each one JSON object.
    pub fn objects(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// `oomtrace ARGS`, to its end within [`COMMAND_TIMEOUT`].
pub fn oomtrace(args: &[&str]) -> Ran {
    let output = output_within(Command::new(oomtrace_bin()).args(args), COMMAND_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `history --json ARGS`, which must succeed: its events of `event` (`oom_kill`,
/// `container_exit`) about the container `id`, and the run itself.
pub fn history_of(args: &[&str], event: &str, id: &str) -> (Vec<Value>, Ran) {
    let mut all = vec!["history", "--json"];
    all.extend(args);
    let ran = oomtrace(&all);
    assert_eq!(ran.code, Some(0), "history failed: {}", ran.stderr);
    let events = ran
        .objects()
        .into_iter()
        .filter(|r| r["event"] == event && crate::docker::about(r, id))
        .collect();
    (events, ran)
}

/// A journal path in a scratch directory of its own.
pub fn journal_in(dir: &TempDir) -> (PathBuf, String) {
    let path = dir.path().join("journal.jsonl");
    let text = path.to_string_lossy().into_owned();
    (path, text)
}

/// The journal's lines, each a JSON object; none if there is no journal.
pub fn journal_lines(path: &Path) -> Vec<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a journal line ({e}): {l}")))
        .collect()
}
