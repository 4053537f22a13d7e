//! How a test that cannot run here says so, and how the runner counts it. `cargo xtask test`
//! (and the kernel matrix's init) names a file in [`SKIPS_ENV`]; each test that returns
//! without testing adds one line to it, `skipped\tTEST\tWHY` or `n/a\tTEST\tWHY`. libtest
//! counts such a test as passed; the xtask reads the file with [`parse_skip`] to count it
//! apart. Under `CI=true` nothing the machine can run is skipped: [`skip`] fails instead.
//!
//! Both sides of the file live here, so the tests that write it and the xtask that reads it
//! cannot drift apart.

use std::{io::Write as _, path::Path};

/// The variable naming the file skips are recorded in.
pub const SKIPS_ENV: &str = "OOMTRACE_TEST_SKIPS";

/// Whether this runs under CI (`CI=true`), where a skip is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Which kind of record a line of the skips file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipKind {
    /// Should run here but could not (no root, say): CI fails on any.
    Skipped,
    /// Only applies elsewhere (a cgroup v2 feature on a v1 host).
    NotApplicable,
}

impl SkipKind {
    /// The record's first field.
    pub fn label(self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::NotApplicable => "n/a",
        }
    }
}

/// A test that returned without testing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub test: String,
    pub why: String,
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
    record(SkipKind::Skipped, test, why);
}

/// `test` does not apply to this host at all (a cgroup v2 feature on a cgroup v1 host); other
/// machines, such as the kernel matrix's v2 boots, run it. Allowed under CI, and counted apart
/// from both passed and skipped.
pub fn not_applicable(test: &str, why: &str) {
    eprintln!("n/a {test}: {why}");
    record(SkipKind::NotApplicable, test, why);
}

/// One record, as a line of the skips file.
fn line(kind: SkipKind, test: &str, why: &str) -> String {
    // Three tab-separated fields: neither may hold a tab or a line break.
    let clean = |text: &str| text.replace(['\t', '\n', '\r'], " ");
    format!("{}\t{}\t{}\n", kind.label(), clean(test), clean(why))
}

fn record(kind: SkipKind, test: &str, why: &str) {
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    let line = line(kind, test, why);
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

/// Reads one record of the skips file; `None` for any other line, so a serial console's other
/// output passes through.
pub fn parse_skip(line: &str) -> Option<(SkipKind, Skip)> {
    let mut fields = line.trim_end_matches(['\r', '\n']).splitn(3, '\t');
    let kind = match fields.next()? {
        "skipped" => SkipKind::Skipped,
        "n/a" => SkipKind::NotApplicable,
        _ => return None,
    };
    let test = fields
        .next()
        .filter(|t| !t.is_empty() && !t.contains(' '))?;
    let why = fields.next()?;
    Some((
        kind,
        Skip {
            test: test.to_string(),
            why: why.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let cases = [
            (
                SkipKind::Skipped,
                "filters",
                "it needs root",
                "it needs root",
            ),
            (
                SkipKind::NotApplicable,
                "v2_only",
                "a cgroup v1 host",
                "a cgroup v1 host",
            ),
            (SkipKind::Skipped, "tabbed", "a\tb\nc\rd", "a b c d"),
        ];
        for (kind, test, why, read_why) in cases {
            let (read_kind, skip) = parse_skip(&line(kind, test, why)).expect("a record");
            assert_eq!(read_kind, kind);
            assert_eq!(skip.test, test);
            assert_eq!(skip.why, read_why);
        }
    }

    #[test]
    fn other_lines_are_not_records() {
        for line in [
            "",
            "ok",
            "skipped",
            "skipped\t\twhy",
            "n/a\ttwo words\twhy",
            "passed\tx\ty",
        ] {
            assert_eq!(parse_skip(line), None, "{line:?}");
        }
    }
}
