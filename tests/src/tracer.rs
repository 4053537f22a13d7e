//! oomtrace under test: started and awaited until it watches, its reports and stderr collected
//! as they arrive, and stopped as Ctrl-C stops it.

use std::{
    fs::File,
    path::Path,
    process::{ChildStdout, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    pipes::PipeLines,
    preconditions::oomtrace_bin,
    process::{KillOnDrop, PIPE_GRACE, terminate, wait_timeout},
};

/// oomtrace reads BTF and loads its program before it says it is ready: about a second on the
/// host, much longer under the kernel matrix's TCG emulation or on a host a soak keeps busy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGINT to the summary line and exit: the output queues drain within a second or two.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `oomtrace --json`, with its reports collected as they arrive.
pub struct Tracer {
    child: KillOnDrop,
    reports: PipeLines<Value>,
    stderr: PipeLines<String>,
}

/// What a stopped tracer left behind.
pub struct Stopped {
    pub status: ExitStatus,
    /// The `"event":"oom_kill"` reports.
    pub reports: Vec<Value>,
    /// The `"event":"container_exit"` events.
    pub exits: Vec<Value>,
    /// The `"event":"userspace_oom_kill"` events: kills by earlyoom and its kin.
    pub userspace_kills: Vec<Value>,
    pub stderr: Vec<String>,
}

impl Stopped {
    /// Fails the test unless oomtrace exited 0, naming its status and stderr.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "oomtrace exited with {:?}: {:?}",
            self.status,
            self.stderr
        );
    }

    /// Once oomtrace has exited with `status`: everything its readers collected, joined.
    fn after(status: ExitStatus, reports: PipeLines<Value>, stderr: PipeLines<String>) -> Self {
        let (reports, others): (Vec<Value>, Vec<Value>) =
            reports.finish(PIPE_GRACE).into_iter().partition(is_kill);
        let (userspace_kills, others): (Vec<Value>, Vec<Value>) =
            others.into_iter().partition(is_userspace_kill);
        Self {
            status,
            stderr: stderr.finish(PIPE_GRACE),
            exits: others.into_iter().filter(is_exit).collect(),
            userspace_kills,
            reports,
        }
    }
}

fn is_kill(value: &Value) -> bool {
    value["event"] == "oom_kill"
}

fn is_exit(value: &Value) -> bool {
    value["event"] == "container_exit"
}

fn is_userspace_kill(value: &Value) -> bool {
    value["event"] == "userspace_oom_kill"
}

/// The line a watch ends with when it reported `reported` kills, the filters hid `filtered`
/// (`None` without filters), nothing was dropped, and the kernel counted every kill seen.
pub fn summary_line(reported: usize, filtered: Option<usize>) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut line = format!("oomtrace: {reported} OOM kill{} reported", plural(reported));
    if let Some(filtered) = filtered {
        line.push_str(&format!(", {filtered} filtered out"));
    }
    let seen = reported + filtered.unwrap_or(0);
    line.push_str(&format!(", 0 events dropped; the kernel counted {seen}"));
    line
}

/// Checks the watch ended with [`summary_line`] for the kills it reported.
pub fn expect_summary(stopped: &Stopped, filtered: Option<usize>) {
    let summary = summary_line(stopped.reports.len(), filtered);
    assert!(
        stopped.stderr.contains(&summary),
        "no `{summary}`: {:?}",
        stopped.stderr
    );
}

impl Tracer {
    /// Starts `oomtrace --json ARGS` and waits for its ready line. Unless ARGS name a
    /// `--journal`, it keeps none: a test must not write into the host's own journal.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_logs(args, None)
    }

    /// [`Self::start`], also writing every line oomtrace prints, as it prints it, into
    /// `stdout.jsonl` and `stderr.log` in `logs`: the record of a long run, such as a soak's.
    pub fn start_logged(args: &[&str], logs: &Path) -> Self {
        let create = |name: &str| {
            let path = logs.join(name);
            File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        };
        Self::start_with_logs(args, Some((create("stdout.jsonl"), create("stderr.log"))))
    }

    fn start_with_logs(args: &[&str], logs: Option<(File, File)>) -> Self {
        let mut command = Command::new(oomtrace_bin());
        command.arg("--json").args(args);
        if !args.iter().any(|a| a.starts_with("--journal")) {
            command.arg("--no-journal");
        }
        command.stdout(Stdio::piped());
        let (stdout_log, stderr_log) = logs.unzip();
        let (mut child, stderr) = spawn_ready_logged(command, stderr_log);
        let stdout = child.stdout.take().expect("stdout");
        let json = |line: Vec<u8>| {
            serde_json::from_slice(&line).map_err(|e| {
                format!(
                    "oomtrace wrote a line that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&line)
                )
            })
        };
        let what = "oomtrace's stdout";
        let reports = match stdout_log {
            Some(log) => PipeLines::spawn_logged(what, stdout, log, json),
            None => PipeLines::spawn(what, stdout, json),
        };
        Self {
            child,
            reports,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What oomtrace wrote to stderr so far, without waiting.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// How oomtrace ended, if it has, without waiting: a watch must not end by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until `enough` holds for the kill reports so far, oomtrace closes its stdout, or
    /// `timeout` passes; the kill reports so far.
    pub fn wait_until(&self, timeout: Duration, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let kills = |events: &[Value]| -> Vec<Value> {
            events.iter().filter(|e| is_kill(e)).cloned().collect()
        };
        let events = self
            .reports
            .wait_until(Instant::now() + timeout, |events| enough(&kills(events)));
        kills(&events)
    }

    /// Waits until `accept` has matched `count` kill reports, oomtrace closes its stdout, or
    /// `timeout` passes, returning the matching reports so far. Fails the test on a line that
    /// is not JSON.
    pub fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.wait_for_event(count, timeout, |r| is_kill(r) && accept(r))
    }

    /// Waits until a stderr line contains `text`, or `timeout`; the stderr lines so far.
    pub fn wait_for_stderr(&self, text: &str, timeout: Duration) -> Vec<String> {
        self.stderr.wait_until(Instant::now() + timeout, |lines| {
            lines.iter().any(|l| l.contains(text))
        })
    }

    /// [`Self::wait_for`] for container exits.
    pub fn wait_for_exit(
        &self,
        count: usize,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.wait_for_event(count, timeout, |r| is_exit(r) && accept(r))
    }

    /// [`Self::wait_for`] for events named `event` (`oom_stall`, `userspace_oom_kill`, ...).
    pub fn wait_for_named(
        &self,
        event: &str,
        count: usize,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        self.wait_for_event(count, timeout, |r| r["event"] == event && accept(r))
    }

    fn wait_for_event(
        &self,
        count: usize,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let reports = self
            .reports
            .wait_until(Instant::now() + timeout, |reports| {
                reports.iter().filter(|r| accept(r)).count() >= count
            });
        reports.into_iter().filter(|r| accept(r)).collect()
    }

    /// Sends `signal`, waits for the exit, and returns everything it wrote: the readers are
    /// joined, so no line is still on its way. Fails the test on a line that is not JSON.
    pub fn stop_with(self, signal: libc::c_int) -> Stopped {
        let Self {
            mut child,
            reports,
            stderr,
        } = self;
        let status = terminate(&mut child, signal, STOP_TIMEOUT).unwrap_or_else(|| {
            panic!("oomtrace did not exit within {STOP_TIMEOUT:?} of signal {signal}")
        });
        Stopped::after(status, reports, stderr)
    }

    /// Waits at most `timeout` for oomtrace to end by itself (`--count`, `--timeout`), and
    /// returns everything it wrote.
    pub fn wait_exit(self, timeout: Duration) -> Stopped {
        let Self {
            mut child,
            reports,
            stderr,
        } = self;
        let status = wait_timeout(&mut child, timeout)
            .unwrap_or_else(|| panic!("oomtrace did not end by itself within {timeout:?}"));
        Stopped::after(status, reports, stderr)
    }

    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGINT)
    }
}

/// A running oomtrace in its human view (stdout a pipe, so without `--verbose` no breakdown
/// lines), its lines collected as they arrive.
pub struct HumanWatch {
    child: KillOnDrop,
    lines: PipeLines<String>,
    stderr: PipeLines<String>,
}

impl HumanWatch {
    /// Starts `oomtrace --no-journal ARGS` and waits for its ready line.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(oomtrace_bin());
        command.arg("--no-journal").args(args);
        let Started {
            child,
            stdout,
            stderr,
        } = spawn_until_ready(command);
        let lines = PipeLines::spawn("oomtrace's stdout", stdout, |line| {
            Ok(String::from_utf8_lossy(&line).into_owned())
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// Waits until `enough` holds for the lines so far, or `timeout`; the lines so far.
    pub fn wait_until(&self, timeout: Duration, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.lines.wait_until(Instant::now() + timeout, enough)
    }

    /// SIGINT, then everything it wrote: `(stdout lines, stderr lines)`.
    pub fn stop(self) -> (Vec<String>, Vec<String>) {
        let Self {
            mut child,
            lines,
            stderr,
        } = self;
        let status = terminate(&mut child, libc::SIGINT, STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("oomtrace did not exit within {STOP_TIMEOUT:?} of SIGINT"));
        let stderr = stderr.finish(PIPE_GRACE);
        assert!(
            status.success(),
            "oomtrace exited with {status:?}: {stderr:?}"
        );
        (lines.finish(PIPE_GRACE), stderr)
    }
}

/// oomtrace, started and ready: its stdout for the test to read, its stderr collected.
pub struct Started {
    pub child: KillOnDrop,
    pub stdout: ChildStdout,
    pub stderr: PipeLines<String>,
}

/// Spawns oomtrace and waits (on a Condvar, at most [`READY_TIMEOUT`]) for `watching for OOM
/// kills` on its stderr, which keeps being collected afterwards.
pub fn spawn_until_ready(mut command: Command) -> Started {
    command.stdout(Stdio::piped());
    let (mut child, stderr) = spawn_ready(command);
    let stdout = child.stdout.take().expect("stdout");
    Started {
        child,
        stdout,
        stderr,
    }
}

/// [`spawn_until_ready`] with stdout as the test set it on `command` (a pipe of its own, a
/// file): the child and its stderr.
pub fn spawn_ready(command: Command) -> (KillOnDrop, PipeLines<String>) {
    spawn_ready_logged(command, None)
}

/// [`spawn_ready`], copying stderr into `log` as it arrives, if given.
fn spawn_ready_logged(mut command: Command, log: Option<File>) -> (KillOnDrop, PipeLines<String>) {
    let child = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut child = KillOnDrop(child);
    let pipe = child.stderr.take().expect("stderr");
    let text = |line: Vec<u8>| Ok(String::from_utf8_lossy(&line).into_owned());
    let what = "oomtrace's stderr";
    let stderr = match log {
        Some(log) => PipeLines::spawn_logged(what, pipe, log, text),
        None => PipeLines::spawn(what, pipe, text),
    };
    let is_ready = |lines: &[String]| lines.iter().any(|l| l.contains("watching for OOM kills"));
    if !is_ready(&stderr.wait_until(Instant::now() + READY_TIMEOUT, is_ready)) {
        drop(child);
        panic!(
            "oomtrace never became ready within {READY_TIMEOUT:?}; stderr: {:?}",
            stderr.finish(PIPE_GRACE)
        );
    }
    (child, stderr)
}

/// Field access that names the path in its panic.
pub fn field<'a>(report: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(report, |value, key| {
        value
            .get(key)
            .unwrap_or_else(|| panic!("report has no {path}: {report}"))
    })
}
