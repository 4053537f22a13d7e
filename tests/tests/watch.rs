//! How a watch behaves around its kills, on the real kernel: a reader that leaves or stalls,
//! usage errors, a closed stderr, namespaces of its own, and names made to fool a terminal.
//! Each test is the regression test of a finding: it failed before the fix.

use std::{
    io::BufReader,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use oomtrace_tests::{
    Hog, MemCgroup, Tracer, field, oomtrace_bin, privileged, read_line_within, run_within, serial,
    spawn_until_ready, wait_timeout,
};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// A watch must end this soon after its reader leaves or a signal comes.
const PROMPTLY: Duration = Duration::from_secs(3);

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are fresh fds nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// `oomtrace --json | head -1` ended only at the next kill, which can be days away.
#[test]
fn a_reader_that_leaves_ends_the_watch_at_once() {
    if !privileged("a_reader_that_leaves_ends_the_watch_at_once") {
        return;
    }
    let _serial = serial();
    let mut command = Command::new(oomtrace_bin());
    // Nothing else may speak on stderr: not Docker enrichment, not the journal, and not the
    // warning of a host whose root cannot lower its own oom_score_adj.
    command.args(["--json", "--no-enrich", "--no-journal", "--no-oom-protect"]);
    let mut started = spawn_until_ready(command);
    // The reader leaves without a single kill to write.
    drop(started.stdout);
    let left = Instant::now();
    let status = wait_timeout(&mut started.child, PROMPTLY)
        .unwrap_or_else(|| panic!("oomtrace outlived its reader by {PROMPTLY:?}"));
    assert!(status.success(), "{status:?}");
    assert!(left.elapsed() < PROMPTLY);
    let stderr = started.stderr.finish_after_exit();
    assert_eq!(stderr.len(), 1, "only the ready line: {stderr:?}");
}

/// Writes to a stalled stdout blocked the runtime's only thread, and signals with it.
#[test]
fn a_stalled_reader_does_not_stall_the_watch() {
    if !privileged("a_stalled_reader_does_not_stall_the_watch") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("stalled", 32);
    let (read_end, write_end) = pipe();
    // The smallest pipe the kernel allows, and nobody reading it: two reports fill it.
    // SAFETY: F_SETPIPE_SZ on our own pipe.
    unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut command = Command::new(oomtrace_bin());
    command
        .args(["--json", "--no-enrich"])
        .stdout(Stdio::from(write_end));
    let (mut child, stderr) = oomtrace_tests::spawn_ready(command);
    for _ in 0..5 {
        let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &[]);
        hog.expect_oom_killed();
    }
    let asked = Instant::now();
    // SAFETY: signals our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_timeout(&mut child, PROMPTLY + Duration::from_secs(2))
        .unwrap_or_else(|| panic!("SIGTERM was not handled while stdout was stalled"));
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < PROMPTLY + Duration::from_secs(2));
    let stderr = stderr.finish_after_exit();
    let summary = stderr
        .iter()
        .find(|l| l.contains(" reported, "))
        .unwrap_or_else(|| panic!("no summary: {stderr:?}"));
    // Whatever stdout could not take is counted, by where it was lost, and not as
    // reported.
    assert!(
        summary.contains("not written to stdout"),
        "the lost lines are not counted: {summary}"
    );
    assert!(
        !summary.starts_with("oomtrace: 5 OOM kills reported"),
        "{summary}"
    );
    drop(read_end);
}

/// A flag given with the wrong mode fell back to the kernel log instead of being refused.
#[test]
fn usage_errors_are_refused_with_status_2() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--tracepoint-layout", "pid-only"],
            "needs --attach tracepoint",
        ),
        (
            &["--backend", "kmsg", "--attach", "tp_btf"],
            "give one or the other",
        ),
        (
            &["--json", "check"],
            "--json does not apply to `oomtrace check`",
        ),
        (&["history", "--output", "x"], "--output does not apply"),
        (&["--since", "banana"], "is not a time"),
    ];
    for (args, expected) in cases {
        let output = run_within(Command::new(oomtrace_bin()).args(args), RUN_TIMEOUT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("watching for OOM kills"),
            "{args:?} must not start anything: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one sentence: {stderr}"
        );
    }
    // A typo gets a suggestion, as the docker CLI gives one.
    let output = run_within(Command::new(oomtrace_bin()).arg("--jsno"), RUN_TIMEOUT);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--json"));
}

/// `eprintln!` panics when stderr is a pipe nobody reads any more (a closed fd it ignores):
/// the refusal must still be an exit 1.
#[test]
fn a_broken_stderr_does_not_panic() {
    if !privileged("a_broken_stderr_does_not_panic") {
        return;
    }
    let (read_end, write_end) = pipe();
    drop(read_end);
    let mut command = Command::new(oomtrace_bin());
    command
        .args(["--output", "/nonexistent/dir/out.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end));
    let mut child = command.spawn().expect("oomtrace starts");
    let status = wait_timeout(&mut child, RUN_TIMEOUT).expect("oomtrace exits");
    assert_eq!(status.code(), Some(1), "{status:?}");
}

/// In a pid namespace of its own, /proc shows other processes than the kernel's thread ids
/// name. oomtrace must say so and leave those fields null rather than read the wrong ones.
#[test]
fn a_pid_namespace_of_its_own_is_named_not_read() {
    let test = "a_pid_namespace_of_its_own_is_named_not_read";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("pidns", 32);
    let mut command = Command::new("unshare");
    command
        // When unshare dies, oomtrace gets SIGINT: its summary still comes.
        .args([
            "--pid",
            "--fork",
            "--kill-child=SIGINT",
            "--mount-proc",
            "--",
        ])
        .arg(oomtrace_bin())
        .args(["--json", "--no-enrich", "--attach", "tracepoint"]);
    let started = spawn_until_ready(command);
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &[]);
    let pid = hog.pid();
    hog.expect_oom_killed_unreaped();
    let mut stdout = BufReader::new(started.stdout);
    let line = read_line_within(&mut stdout, RUN_TIMEOUT, "oomtrace's stdout").expect("a report");
    hog.expect_oom_killed();
    let report: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(
        field(&report, "victim.tid"),
        pid,
        "the kernel's own thread id"
    );
    for key in ["victim.pid", "victim.ns_pid", "victim.comm"] {
        assert!(
            field(&report, key).is_null(),
            "{key} must not come from this namespace's /proc: {report}"
        );
    }
    let mut unshare = started.child;
    // unshare ignores SIGINT and SIGTERM while it waits for its child; its death makes the
    // kernel send oomtrace SIGINT.
    // SAFETY: signals our own child.
    unsafe { libc::kill(unshare.id() as i32, libc::SIGKILL) };
    wait_timeout(&mut unshare, PROMPTLY).expect("unshare exits");
    let stderr = started.stderr.finish_after_exit();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("pid namespace of its own")),
        "{stderr:?}"
    );
}

/// A process names itself: its name reached the terminal byte for byte, escapes included.
#[test]
fn a_victim_s_name_cannot_drive_the_terminal() {
    if !privileged("a_victim_s_name_cannot_drive_the_terminal") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("escape", 32);
    let mut command = Command::new(oomtrace_bin());
    command.arg("--no-enrich");
    let started = spawn_until_ready(command);
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &["--name", "\x1b[31mred\x07"]);
    hog.expect_oom_killed();
    let mut stdout = BufReader::new(started.stdout);
    let line = read_line_within(&mut stdout, RUN_TIMEOUT, "oomtrace's stdout").expect("a line");
    assert!(
        !line.trim_end_matches('\n').chars().any(char::is_control),
        "a control character reached the terminal: {line:?}"
    );
    assert!(line.contains("\\x1b[31mred\\x07 (pid "), "{line}");

    // JSON keeps the name exact.
    let tracer = Tracer::start(&["--no-enrich"]);
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &["--name", "\x1b[31mred\x07"]);
    let pid = hog.pid();
    hog.expect_oom_killed();
    let reports = tracer.wait_for(1, RUN_TIMEOUT, |r| r["victim"]["tid"] == pid);
    assert_eq!(field(&reports[0], "victim.thread_comm"), "\x1b[31mred\x07");
    let _ = tracer.stop();
}
