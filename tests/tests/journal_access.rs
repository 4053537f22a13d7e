//! `history` and `explain` against a journal that is there and cannot be read, and against
//! `--container` values that match nothing: each says what it could not do, with the reason,
//! and exits as `journalctl` would, 1 when nothing could be read or nothing matches.
//!
//! The journal is a real one in shape (a 0600 file in a 0700 directory, as a watch makes it),
//! holding the README's example report, which the crate's own README test keeps a line the
//! code writes.

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use oomtrace_tests::{Staged, TempDir, oomtrace_bin, output_within, privileged, temp_dir};

/// Docker gets 10 s to answer; the kernel log is read in well under a second.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The user the unprivileged runs are made as: nobody.
const NOBODY: u32 = 65534;
/// The container the example report is about.
const KNOWN: &str = "seed0";

struct Ran {
    code: Option<i32>,
    stderr: String,
}

fn run(command: &mut Command) -> Ran {
    let output = output_within(command, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    Ran {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The README's example `oom_kill` line.
fn example_report() -> &'static str {
    include_str!("../../README.md")
        .lines()
        .find(|line| line.starts_with(r#"{"schema":1,"event":"oom_kill""#))
        .expect("the README shows an oom_kill line")
}

/// A journal as a watch leaves it: mode 0600, in a directory of mode 0700, both root's.
fn journal(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("journal.jsonl");
    fs::write(&path, format!("{}\n", example_report())).expect("write the journal");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    path
}

fn as_nobody(bin: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    // std drops root's supplementary groups along with the uid.
    command.args(args).uid(NOBODY).gid(NOBODY);
    command
}

/// Whether the kernel log is closed to users without CAP_SYSLOG.
fn dmesg_restricted() -> bool {
    fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
        .expect("read /proc/sys/kernel/dmesg_restrict")
        .trim()
        != "0"
}

/// What oomtrace must say of the journal to nobody: it cannot read it, why, and what to do.
fn cannot_read(path: &Path, dir: &TempDir) -> String {
    format!(
        "cannot read the journal at {}: permission denied (its directory {} is root's, mode 0700): run oomtrace as root, or give --journal a copy you can read",
        path.display(),
        dir.path().display()
    )
}

fn assert_no_false_journal_facts(what: &str, ran: &Ran) {
    assert!(
        !ran.stderr.contains("journal.jsonl.1"),
        "{what}: named an older half that does not exist: {}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("there is no journal"),
        "{what}: said there is no journal when there is one: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
}

#[test]
fn a_journal_the_user_may_not_read_is_cannot_read_with_the_reason() {
    if !privileged("a_journal_the_user_may_not_read_is_cannot_read_with_the_reason") {
        return;
    }
    let dir = temp_dir("journal-access", 0o700);
    let path = journal(&dir);
    let journal_arg = path.to_str().expect("a UTF-8 temporary path");
    // Nobody cannot reach the checkout's target directory when it is private.
    let bin = Staged::copy_of(&oomtrace_bin());
    let sentence = cannot_read(&path, &dir);
    let restricted = dmesg_restricted();

    let history = run(&mut as_nobody(
        bin.path(),
        &["history", "--journal", journal_arg],
    ));
    assert!(
        history.stderr.contains(&sentence),
        "history: no {sentence:?} in {}",
        history.stderr
    );
    assert_no_false_journal_facts("history", &history);
    if restricted {
        eprintln!("dmesg_restrict is set: nobody may read either source, so history exits 1");
        assert_eq!(history.code, Some(1), "history: {}", history.stderr);
        assert!(
            history.stderr.contains(
                "no OOM kills can be listed: neither the journal nor the kernel log can be read"
            ),
            "history: {}",
            history.stderr
        );
        assert!(
            !history.stderr.contains("OOM kills in"),
            "history: a count from no source: {}",
            history.stderr
        );
    } else {
        eprintln!("dmesg_restrict is 0: nobody reads the kernel log, so history exits 0");
        assert_eq!(history.code, Some(0), "history: {}", history.stderr);
        let count = history.stderr.lines().last().unwrap_or_default();
        assert!(
            count.ends_with(" in the kernel log"),
            "history: the count must name the kernel log alone: {}",
            history.stderr
        );
    }

    let explain = run(&mut as_nobody(
        bin.path(),
        &["explain", KNOWN, "--journal", journal_arg],
    ));
    // Nobody may ask Docker (its socket is root's and the docker group's) or read the
    // journal; the kernel log knows containers by id only, so the name matches nothing.
    assert_eq!(explain.code, Some(1), "explain: {}", explain.stderr);
    assert_eq!(
        explain.stderr.lines().count(),
        1,
        "explain: one sentence: {}",
        explain.stderr
    );
    assert!(
        explain.stderr.contains(&sentence),
        "explain: no {sentence:?} in {}",
        explain.stderr
    );
    assert_no_false_journal_facts("explain", &explain);
    if restricted {
        assert!(
            explain
                .stderr
                .contains(&format!("no source could be asked about \"{KNOWN}\": ")),
            "explain: {}",
            explain.stderr
        );
    }
}

#[test]
fn a_container_value_that_matches_nothing_is_said_once_and_fails() {
    if !privileged("a_container_value_that_matches_nothing_is_said_once_and_fails") {
        return;
    }
    let dir = temp_dir("journal-nosuch", 0o700);
    let path = journal(&dir);
    let journal_arg = path.to_str().expect("a UTF-8 temporary path");
    let history = |args: &[&str]| {
        run(Command::new(oomtrace_bin())
            .args(["history", "--journal", journal_arg])
            .args(args))
    };
    let unmatched = |ran: &Ran| {
        ran.stderr
            .lines()
            .filter(|line| line.contains("matches no container"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let nosuch = history(&["--container", "nosuch"]);
    assert_eq!(nosuch.code, Some(1), "{}", nosuch.stderr);
    let said = unmatched(&nosuch);
    assert_eq!(said.len(), 1, "said once: {}", nosuch.stderr);
    assert!(
        said[0].contains("--container nosuch matches no container in the journal"),
        "the journal was read, and is named: {}",
        nosuch.stderr
    );

    // A known container without kills in the time asked for: nothing is wrong.
    let known = history(&["--container", KNOWN, "--since", "2026-11-26T00:00:00Z"]);
    assert_eq!(known.code, Some(0), "{}", known.stderr);
    assert!(unmatched(&known).is_empty(), "{}", known.stderr);
    assert!(
        known.stderr.contains("0 OOM kills in the journal"),
        "{}",
        known.stderr
    );

    // One value matches: the other is said, and the answer stands.
    let both = history(&["--container", "nosuch", "--container", KNOWN]);
    assert_eq!(both.code, Some(0), "{}", both.stderr);
    assert_eq!(unmatched(&both).len(), 1, "{}", both.stderr);
    assert!(
        both.stderr.contains("1 OOM kill in the journal"),
        "{}",
        both.stderr
    );
}
