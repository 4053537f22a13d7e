//! Watches that end by themselves, for scripts: `--count`, `--timeout`, SIGHUP, and `--since`
//! replaying the past before it follows live, with no gap and no duplicate at the seam. Real
//! kernel, real cgroups.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use oomtrace_tests::{
    Hog, KillOnDrop, MemCgroup, PipeLines, Tracer, expect_summary, field, oomtrace_bin, privileged,
    serial, summary_line, wait_out_oom_log_ratelimit, wait_timeout,
};
use serde_json::Value;

/// How long a report may take to arrive, or a watch to end once it should.
const PROMPTLY: Duration = Duration::from_secs(10);
/// oomtrace is ready within a second on the host, far later under TCG emulation.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

fn kill_one(cgroup: &MemCgroup) -> u32 {
    let mut hog = Hog::spawn(&hog_path(), cgroup, 500, &[]);
    let pid = hog.pid();
    hog.expect_oom_killed();
    pid
}

/// `--count 2`: the watch goes on after the first report and ends, status 0 and with its
/// summary, right after the second.
#[test]
fn count_ends_the_watch_after_that_many_reports() {
    if !privileged("count_ends_the_watch_after_that_many_reports") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("count", 32);
    let tracer = Tracer::start(&["--count", "2"]);
    let first = kill_one(&cgroup);
    tracer.wait_for(1, PROMPTLY, |r| r["victim"]["pid"] == first);
    let second = kill_one(&cgroup);
    let stopped = tracer.wait_exit(PROMPTLY);
    stopped.assert_success();
    let pids: Vec<&Value> = stopped
        .reports
        .iter()
        .map(|r| &r["victim"]["pid"])
        .collect();
    assert_eq!(pids, [first, second], "{:?}", stopped.stderr);
    expect_summary(&stopped, None);
}

/// `--timeout 2s`: the watch ends by itself once that time has passed, status 0, with its
/// summary.
#[test]
fn timeout_ends_the_watch() {
    if !privileged("timeout_ends_the_watch") {
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let tracer = Tracer::start(&["--timeout", "2s", "--comm", "oomtrace-e2e-nobody"]);
    let stopped = tracer.wait_exit(Duration::from_secs(2) + PROMPTLY);
    let took = started.elapsed();
    stopped.assert_success();
    assert!(took >= Duration::from_secs(2), "ended after {took:?}");
    assert!(
        stopped
            .stderr
            .iter()
            .any(|l| l.starts_with("oomtrace: 0 OOM kills reported")),
        "{:?}",
        stopped.stderr
    );
}

/// SIGHUP (the terminal closing) ends a watch as SIGTERM does: detach, summary, status 0.
#[test]
fn sighup_ends_the_watch_like_sigterm() {
    if !privileged("sighup_ends_the_watch_like_sigterm") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("sighup", 32);
    let tracer = Tracer::start(&[]);
    let pid = kill_one(&cgroup);
    tracer.wait_for(1, PROMPTLY, |r| r["victim"]["pid"] == pid);
    let stopped = tracer.stop_with(libc::SIGHUP);
    stopped.assert_success();
    assert!(
        stopped.reports.iter().any(|r| r["victim"]["pid"] == pid),
        "{:?}",
        stopped.reports
    );
    let summary = summary_line(stopped.reports.len(), None);
    assert!(
        stopped
            .stderr
            .iter()
            .any(|l| l.starts_with(&summary[..summary.find(';').unwrap_or(0)])),
        "{:?}",
        stopped.stderr
    );
}

/// `oomtrace --since`: the kills from before are printed first, marked as past, then the
/// watch follows live. A kill made while oomtrace starts may be seen by both the replay and
/// the live source: it must be reported exactly once, and none may be missed.
#[test]
fn since_replays_the_past_then_follows_without_gap_or_duplicate() {
    if !privileged("since_replays_the_past_then_follows_without_gap_or_duplicate") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("since", 32);
    // The replay reads the kernel log, which names a victim's cgroup only while its OOM
    // report is not rate-limited.
    wait_out_oom_log_ratelimit();
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .saturating_sub(1);
    let past = kill_one(&cgroup);

    let mut command = Command::new(oomtrace_bin());
    command
        .args(["--json", "--no-journal", "--since", &before.to_string()])
        .args(["--comm", "hog"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().expect("oomtrace starts"));
    let reports = PipeLines::spawn(
        "oomtrace's stdout",
        child.stdout.take().expect("stdout"),
        |l| serde_json::from_slice::<Value>(&l).map_err(|e| e.to_string()),
    );
    let stderr = PipeLines::spawn(
        "oomtrace's stderr",
        child.stderr.take().expect("stderr"),
        |l| Ok(String::from_utf8_lossy(&l).into_owned()),
    );
    // At the seam: while oomtrace attaches and replays.
    let seam = kill_one(&cgroup);
    let ready = stderr.wait_until(Instant::now() + READY_TIMEOUT, |lines| {
        lines.iter().any(|l| l.contains("watching for OOM kills"))
    });
    assert!(
        ready.iter().any(|l| l.contains("watching for OOM kills")),
        "{ready:?}"
    );
    let live = kill_one(&cgroup);
    reports.wait_until(Instant::now() + PROMPTLY, |lines| {
        lines.iter().any(|r| r["victim"]["pid"] == live)
    });
    // SAFETY: signals our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_timeout(&mut child, PROMPTLY).expect("exits after SIGINT");
    assert!(status.success(), "{status:?}");
    let reports = reports.finish(PROMPTLY);
    let stderr = stderr.finish(PROMPTLY);
    let of = |pid: u32| -> Vec<&Value> {
        reports
            .iter()
            .filter(|r| r["victim"]["pid"] == pid || r["victim"]["tid"] == pid)
            .collect()
    };
    let (past_reports, seam_reports, live_reports) = (of(past), of(seam), of(live));
    assert_eq!(past_reports.len(), 1, "{reports:#?} {stderr:?}");
    assert_eq!(field(past_reports[0], "past"), true);
    assert_eq!(field(past_reports[0], "cgroup.path"), cgroup.path.as_str());
    assert_eq!(seam_reports.len(), 1, "the seam's kill once: {reports:#?}");
    assert_eq!(live_reports.len(), 1, "{reports:#?}");
    assert_eq!(field(live_reports[0], "past"), false);
    // The past comes first.
    let position = |pid: u32| reports.iter().position(|r| r["victim"]["pid"] == pid);
    assert!(position(past) < position(live), "{reports:#?}");
}
