//! Shared pieces of oomtrace's privileged end-to-end tests: a running tracer, a real memory
//! cgroup, child processes that cannot hang a test, and the rule that CI never skips.
//!
//! Like aya's integration tests, helpers panic with a message instead of returning errors.
//! No sleep here stands in for synchronisation: a child's exit is awaited on its pidfd, a line
//! on its pipe with poll(2) or a Condvar the reading thread signals, each with a deadline. The
//! few sleeps left say why: re-checking what the kernel gives no notification of (a v1 cgroup
//! emptying), or waiting out wall-clock time itself (the kernel log's rate limit).

use std::{
    ffi::CString,
    fs,
    io::{self, BufRead as _, BufReader, Read, Write as _},
    ops::{Deref, DerefMut},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    },
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod docker;
pub mod record;

/// The file `cargo xtask test` (and the kernel matrix's init) names here collects one line per
/// test that returned without testing: `skipped\tTEST\tWHY` or `n/a\tTEST\tWHY`. libtest counts
/// such a test as passed; the xtask reads the file to count it apart.
pub const SKIPS_ENV: &str = "OOMTRACE_TEST_SKIPS";

/// How long a pipe may stay open after its process exited before the test blames whoever else
/// holds it. Reaching EOF takes microseconds; this only bounds a bug.
const PIPE_GRACE: Duration = Duration::from_secs(5);
/// oomtrace reads BTF and loads its program before it says it is ready: about a second on the
/// host, much longer under the kernel matrix's TCG emulation.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A hog must be OOM-killed well within this: it allocates 256 MiB in a 32 MiB cgroup.
pub const HOG_TIMEOUT: Duration = Duration::from_secs(30);

/// OOM tests share the host's OOM killer and tracing; one at a time keeps every report
/// attributable to the test that caused it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
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
    record_skip("skipped", test, why);
}

/// `test` does not apply to this host at all (a cgroup v2 feature on a cgroup v1 host); other
/// machines, such as the kernel matrix's v2 boots, run it. Allowed under CI, and counted apart
/// from both passed and skipped.
pub fn not_applicable(test: &str, why: &str) {
    eprintln!("n/a {test}: {why}");
    record_skip("n/a", test, why);
}

fn record_skip(kind: &str, test: &str, why: &str) {
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    // One record a line, three tab-separated fields: neither may hold a tab or a line break.
    let clean = |text: &str| text.replace(['\t', '\n', '\r'], " ");
    let line = format!("{kind}\t{}\t{}\n", clean(test), clean(why));
    // O_APPEND and one write(2) of one short line: the records of tests running in parallel,
    // and of several test binaries, never interleave.
    let written = fs::OpenOptions::new()
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

/// True when the test may go on: it runs as root. Otherwise it is [`skip`]ped, which fails
/// it under `CI=true`.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, "it needs root to load eBPF and create memory cgroups");
    false
}

/// The oomtrace binary under test: `OOMTRACE_BIN`, else the release build beside this test.
pub fn oomtrace_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("OOMTRACE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/release/oomtrace
    let target = exe.ancestors().nth(3).expect("a target directory");
    let bin = target.join("release/oomtrace");
    assert!(
        bin.exists(),
        "{} does not exist: build it with `cargo build --release` or run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// The test hog: `OOMTRACE_HOG`, else the one cargo built beside the tests. The override
/// lets the kernel-matrix VMs, whose initramfs has no cargo target directory, run the tests.
pub fn hog_bin(built: &str) -> PathBuf {
    std::env::var_os("OOMTRACE_HOG").map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// A fresh directory from mkdtemp(3) with `mode`, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Under `parent`, named `oomtrace-e2e-TAG-XXXXXX`.
    pub fn create_in(parent: &Path, tag: &str, mode: u32) -> Self {
        let template = parent.join(format!("oomtrace-e2e-{tag}-XXXXXX"));
        let template = CString::new(template.as_os_str().as_bytes()).expect("no NUL in a path");
        let mut template = template.into_bytes_with_nul();
        // SAFETY: a NUL-terminated template ending in XXXXXX, which mkdtemp rewrites in place.
        if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
            panic!(
                "mkdtemp in {}: {}",
                parent.display(),
                io::Error::last_os_error()
            );
        }
        template.pop();
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(&template));
        let made = Self(dir);
        // mkdtemp makes it 0700; set the mode explicitly, whatever the umask.
        set_mode(&made.0, mode);
        made
    }

    /// In the system's temporary directory.
    pub fn create(tag: &str, mode: u32) -> Self {
        Self::create_in(&std::env::temp_dir(), tag, mode)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Whether a user who is neither owner nor in the group can traverse every directory down to
/// and including `dir`.
fn others_can_enter(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    dir.ancestors()
        .all(|d| fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0))
}

/// A copy of a binary that any user can run: in a fresh directory of its own (mode 0755, the
/// copy 0755) under a temporary directory every user can reach, removed on drop.
///
/// For running oomtrace as another user (uid 65534 in the refusal tests): the binary under
/// test lives in the checkout's `target/`, which that user cannot reach when the checkout is
/// in a private directory such as a clone in `/root` (mode 0700). Run in place, the exec
/// itself fails with EACCES before oomtrace can say anything.
pub struct Staged {
    /// Held only to be removed, with the copy in it, on drop.
    _dir: TempDir,
    bin: PathBuf,
}

impl Staged {
    pub fn copy_of(source: &Path) -> Self {
        // TMPDIR may itself be private; /tmp is world-writable and sticky on any Linux.
        let parent = [std::env::temp_dir(), PathBuf::from("/tmp")]
            .into_iter()
            .find(|d| others_can_enter(d))
            .unwrap_or_else(|| {
                panic!(
                    "neither {} nor /tmp can be entered by other users: cannot stage {} for them",
                    std::env::temp_dir().display(),
                    source.display()
                )
            });
        let dir = TempDir::create_in(&parent, "staged", 0o755);
        let name = source.file_name().expect("a binary has a file name");
        let bin = dir.path().join(name);
        fs::copy(source, &bin)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), bin.display()));
        set_mode(&bin, 0o755);
        Self { _dir: dir, bin }
    }

    pub fn path(&self) -> &Path {
        &self.bin
    }
}

/// A child that is killed and reaped when dropped, so a test that fails half-way leaves no
/// process behind.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits at most `timeout` for `child` to exit. Blocks in poll(2) on the child's pidfd, which
/// turns readable when the child exits; `None` if it outlived the timeout (it is left running).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    // Reaped already: the pid may belong to another process by now, so no pidfd for it.
    if let Some(status) = child.try_wait().expect("try_wait") {
        return Some(status);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1. The pid is our
    // unreaped child's, so it cannot have been reused.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    let Ok(fd) = RawFd::try_from(fd) else {
        unreachable!("pidfd_open returned {fd}")
    };
    if fd < 0 {
        // Kernels before 5.3 have no pidfd: re-check the child's state until the deadline.
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    // SAFETY: a fresh fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if !readable_within(pidfd.as_raw_fd(), deadline) {
            return None;
        }
    }
}

/// Blocks until `fd` is readable (or at its end, or in error: a read will not block) or
/// `deadline` passes; false for the deadline.
fn readable_within(fd: RawFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so poll never returns early and turns this into a busy loop.
        let ms = i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pollfd, 1, ms) } {
            0 => return false,
            n if n > 0 => return true,
            _ => {
                let e = io::Error::last_os_error();
                assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
            }
        }
    }
}

/// One line from `reader`, without its line break, waiting at most `timeout` for it: a child
/// that stays silent fails the test, naming `what`, instead of hanging it. `None` at the end
/// of the stream.
pub fn read_line_within<R: Read + std::os::fd::AsRawFd>(
    reader: &mut BufReader<R>,
    timeout: Duration,
    what: &str,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        if reader.buffer().is_empty() && !readable_within(reader.get_ref().as_raw_fd(), deadline) {
            panic!(
                "{what}: no complete line within {timeout:?} (so far {:?})",
                String::from_utf8_lossy(&line)
            );
        }
        // At most one read(2), which poll said will not block.
        let available = reader
            .fill_buf()
            .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
        if available.is_empty() {
            return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
        }
        if let Some(end) = available.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        let taken = available.len();
        line.extend_from_slice(available);
        reader.consume(taken);
    }
}

/// Runs `command` to its end, with an empty stdin and its output captured, and kills it if it
/// runs longer than `timeout`. The error names the command: it could not start, it timed out,
/// or its output could not be read.
pub fn output_within(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let stdout = read_to_end_in_thread(child.stdout.take().expect("stdout"));
    let stderr = read_to_end_in_thread(child.stderr.take().expect("stderr"));
    let Some(status) = wait_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{shown} did not end within {timeout:?} and was killed"
        ));
    };
    let deadline = Instant::now() + PIPE_GRACE;
    let collect = |pipe: mpsc::Receiver<io::Result<Vec<u8>>>, name: &str| match pipe
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(format!("cannot read the {name} of {shown}: {e}")),
        Err(_) => Err(format!(
            "the {name} of {shown} stayed open after it exited: a process it started holds it"
        )),
    };
    Ok(Output {
        status,
        stdout: collect(stdout, "stdout")?,
        stderr: collect(stderr, "stderr")?,
    })
}

/// [`output_within`], panicking with its error.
pub fn run_within(command: &mut Command, timeout: Duration) -> Output {
    output_within(command, timeout).unwrap_or_else(|e| panic!("{e}"))
}

fn read_to_end_in_thread(
    mut pipe: impl Read + Send + 'static,
) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = tx.send(pipe.read_to_end(&mut bytes).map(|_| bytes));
    });
    rx
}

/// The lines a child writes to one pipe, taken by a thread as they arrive and handed to the
/// test under a Condvar. A line the thread cannot take (bad JSON, a failed read, a panic)
/// is recorded and fails the test the next time the test thread looks: a panic in the thread
/// itself would fail nothing.
pub struct PipeLines<T> {
    what: String,
    shared: Arc<Shared<T>>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Shared<T> {
    state: Mutex<PipeState<T>>,
    changed: Condvar,
}

struct PipeState<T> {
    lines: Vec<T>,
    /// The first line the reader could not take, with why.
    error: Option<String>,
    /// The pipe reached its end, or the reader gave up.
    done: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, PipeState<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Clone + Send + 'static> PipeLines<T> {
    /// Starts the reader. `take` turns a line (without its line break) into a `T` or says why
    /// it cannot.
    pub fn spawn(
        what: impl Into<String>,
        pipe: impl Read + Send + 'static,
        take: impl Fn(Vec<u8>) -> Result<T, String> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(PipeState {
                lines: Vec::new(),
                error: None,
                done: false,
            }),
            changed: Condvar::new(),
        });
        let sink = Arc::clone(&shared);
        let thread = thread::spawn(move || {
            let outcome =
                std::panic::catch_unwind(AssertUnwindSafe(|| read_lines(pipe, &take, &sink)));
            let mut state = sink.lock();
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                state
                    .error
                    .get_or_insert_with(|| format!("its reader thread panicked: {message}"));
            }
            state.done = true;
            drop(state);
            sink.changed.notify_all();
        });
        Self {
            what: what.into(),
            shared,
            thread: Some(thread),
        }
    }

    /// Waits until `enough` holds for the lines so far, the pipe ends, or `deadline` passes,
    /// and returns the lines so far. Panics, naming the line, if the reader met one it could
    /// not take.
    pub fn wait_until(&self, deadline: Instant, enough: impl Fn(&[T]) -> bool) -> Vec<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(error) = state.error.clone() {
                drop(state);
                panic!("{}: {error}", self.what);
            }
            let now = Instant::now();
            if state.done || now >= deadline || enough(&state.lines) {
                return state.lines.clone();
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The lines so far, without waiting.
    pub fn snapshot(&self) -> Vec<T> {
        self.wait_until(Instant::now(), |_| true)
    }

    /// [`finish`](Self::finish) for a pipe whose writer has exited: it reaches its end at once.
    pub fn finish_after_exit(self) -> Vec<T> {
        self.finish(PIPE_GRACE)
    }

    /// Every line the pipe carried, once it has ended (the child exited or closed it); joins
    /// the reader. Panics if the pipe is still open after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Vec<T> {
        let lines = self.wait_until(Instant::now() + timeout, |_| false);
        if !self.shared.lock().done {
            panic!(
                "{} is still open {timeout:?} after its writer was expected to end",
                self.what
            );
        }
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        lines
    }
}

fn read_lines<T>(
    pipe: impl Read,
    take: &impl Fn(Vec<u8>) -> Result<T, String>,
    shared: &Shared<T>,
) {
    let publish = |taken: Result<T, String>| {
        let mut state = shared.lock();
        match taken {
            Ok(item) => state.lines.push(item),
            // The first error is the one that explains.
            Err(why) => {
                state.error.get_or_insert(why);
            }
        }
        drop(state);
        shared.changed.notify_all();
    };
    let mut reader = BufReader::new(pipe);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                }
                // After a line it cannot take, the reader goes on reading, so the writer never
                // blocks on a full pipe.
                publish(take(line));
            }
            Err(e) => return publish(Err(format!("read failed: {e}"))),
        }
    }
}

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
        let (reports, exits): (Vec<Value>, Vec<Value>) =
            reports.finish(PIPE_GRACE).into_iter().partition(is_kill);
        Self {
            status,
            stderr: stderr.finish(PIPE_GRACE),
            exits: exits.into_iter().filter(is_exit).collect(),
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
        let mut command = Command::new(oomtrace_bin());
        command.arg("--json").args(args);
        if !args.iter().any(|a| a.starts_with("--journal")) {
            command.arg("--no-journal");
        }
        let Started {
            child,
            stdout,
            stderr,
        } = spawn_until_ready(command);
        let reports = PipeLines::spawn("oomtrace's stdout", stdout, |line| {
            serde_json::from_slice(&line).map_err(|e| {
                format!(
                    "oomtrace wrote a line that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&line)
                )
            })
        });
        Self {
            child,
            reports,
            stderr,
        }
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
        // SAFETY: signals our own child, which is not reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_timeout(&mut child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("oomtrace did not exit within 10 s of signal {signal}"));
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
        // SAFETY: signals our own child, which is not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = wait_timeout(&mut child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("oomtrace did not exit within 10 s of SIGINT"));
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

/// Spawns oomtrace and waits (on a Condvar, at most 20 s) for `watching for OOM kills` on its
/// stderr, which keeps being collected afterwards.
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
pub fn spawn_ready(mut command: Command) -> (KillOnDrop, PipeLines<String>) {
    let child = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut child = KillOnDrop(child);
    let stderr = PipeLines::spawn(
        "oomtrace's stderr",
        child.stderr.take().expect("stderr"),
        |line| Ok(String::from_utf8_lossy(&line).into_owned()),
    );
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

/// Which cgroup hierarchy holds the memory controller on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    V1,
    V2,
}

impl CgroupMode {
    pub fn json_name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// Finds the memory controller's mount: a v1 `cgroup` mount with the `memory` option, else
/// the `cgroup2` mount if it offers `memory`.
pub fn memory_hierarchy() -> (CgroupMode, PathBuf) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        let mut right = right.split_whitespace();
        let fs_type = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        if fs_type == "cgroup" && options.split(',').any(|o| o == "memory") {
            return (CgroupMode::V1, mount_point.into());
        }
        if fs_type == "cgroup2" {
            v2 = Some(PathBuf::from(mount_point));
        }
    }
    let root = v2.expect("this host has no memory cgroup hierarchy");
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    assert!(
        controllers.split_whitespace().any(|c| c == "memory"),
        "cgroup2 at {} has no memory controller",
        root.display()
    );
    (CgroupMode::V2, root)
}

/// A real memory cgroup with a limit, removed on drop with everything still in it.
pub struct MemCgroup {
    pub mode: CgroupMode,
    pub dir: PathBuf,
    /// The path oomtrace reports: relative to the hierarchy's root.
    pub path: String,
}

impl MemCgroup {
    pub fn create(tag: &str, limit_mib: u64) -> Self {
        let (mode, root) = memory_hierarchy();
        let name = format!("oomtrace-e2e-{tag}-{}", std::process::id());
        let dir = root.join(&name);
        if mode == CgroupMode::V2 {
            // Children only get a memory.max once the parent delegates the controller.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
        }
        if dir.exists() {
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let limit = (limit_mib << 20).to_string();
        let cgroup = Self {
            mode,
            dir,
            path: format!("/{name}"),
        };
        match mode {
            CgroupMode::V1 => cgroup.write("memory.limit_in_bytes", &limit),
            CgroupMode::V2 => {
                cgroup.write("memory.max", &limit);
                if cgroup.dir.join("memory.swap.max").exists() {
                    cgroup.write("memory.swap.max", "0");
                }
            }
        }
        cgroup
    }

    /// A cgroup named `name` inside this one, with no limit of its own: the parent's limit is
    /// the one its processes hit. Drop it before its parent.
    pub fn child(&self, name: &str) -> Self {
        if self.mode == CgroupMode::V2 {
            self.write("cgroup.subtree_control", "+memory");
        }
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self {
            mode: self.mode,
            dir,
            path: format!("{}/{name}", self.path),
        }
    }

    pub fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The kernel's own count of OOM kills in this cgroup: `oom_kill` in `memory.events` on
    /// v2, in `memory.oom_control` on v1.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.mode {
            CgroupMode::V1 => "memory.oom_control",
            CgroupMode::V2 => "memory.events",
        };
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} has no oom_kill line: {text}", path.display()))
    }

    /// The cgroup's id as the kernel reports it: its directory's inode number.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&self.dir).expect("cgroup dir").ino()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // rmdir fails while the killed processes are still exiting, and a v1 cgroup offers no
        // notification that it emptied: re-check, for at most 2 s.
        for _ in 0..100 {
            let procs = std::fs::read_to_string(self.procs_file()).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kills processes this test put in its own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// The test hog (`src/bin/hog.rs`), started in a memory cgroup. Its stdin is a pipe the test
/// holds: a hog the OOM killer spared lingers until that closes, however slow the test.
pub struct Hog {
    child: KillOnDrop,
    stdout: BufReader<ChildStdout>,
}

impl Hog {
    /// Starts `hog` in `cgroup` with `oom_score_adj` and `extra` arguments, and waits until it
    /// says it has joined the cgroup.
    pub fn spawn(hog: &Path, cgroup: &MemCgroup, oom_score_adj: i32, extra: &[&str]) -> Self {
        let mut child = Command::new(hog)
            .arg("--procs")
            .arg(cgroup.procs_file())
            .args(["--oom-score-adj", &oom_score_adj.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", hog.display()));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut hog = Self {
            child: KillOnDrop(child),
            stdout,
        };
        let first = hog.line();
        assert_eq!(
            first.as_deref(),
            Some("joined"),
            "the hog must say it joined {}",
            cgroup.path
        );
        hog
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The hog's next line on stdout, at most [`HOG_TIMEOUT`] away; `None` at its end.
    pub fn line(&mut self) -> Option<String> {
        read_line_within(&mut self.stdout, HOG_TIMEOUT, "the hog's stdout")
    }

    /// Waits at most [`HOG_TIMEOUT`] for the hog's exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_timeout(&mut self.child, HOG_TIMEOUT)
            .unwrap_or_else(|| panic!("the hog outlived {HOG_TIMEOUT:?}"))
    }

    /// Waits for the OOM killer to stop the hog and checks that it did, but leaves it a zombie
    /// (`waitid(WNOWAIT)`): its `/proc` entry stays until [`Self::expect_oom_killed`] reaps
    /// it, so what oomtrace reads there does not race the test's own wait.
    pub fn expect_oom_killed_unreaped(&mut self) {
        let deadline = Instant::now() + HOG_TIMEOUT;
        // SAFETY: pidfd_open of our unreaped child.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid() as libc::pid_t, 0) };
        if let Ok(fd) = RawFd::try_from(fd)
            && fd >= 0
        {
            // SAFETY: a fresh fd that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
            assert!(
                readable_within(pidfd.as_raw_fd(), deadline),
                "the hog outlived {HOG_TIMEOUT:?}"
            );
        }
        // SAFETY: siginfo_t is plain data; waitid fills it for our child without reaping it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let waited = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(waited, 0, "waitid: {}", std::io::Error::last_os_error());
        // SAFETY: filled by waitid for an exited child.
        let (code, status) = (info.si_code, unsafe { info.si_status() });
        assert_eq!(
            (code, status),
            (libc::CLD_KILLED, libc::SIGKILL),
            "the hog was not OOM-killed"
        );
    }

    /// Waits for a hog that the OOM killer must stop, and checks that it did.
    pub fn expect_oom_killed(&mut self) {
        use std::os::unix::process::ExitStatusExt as _;
        let status = self.wait();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the hog was not OOM-killed: {status:?}"
        );
    }
}

/// The kernel prints an OOM's `oom-kill:` summary (the only line naming the victim's cgroup)
/// at most 10 times per 5 s. Tests that read the kernel log wait out that window first, so
/// the kills they cause are logged in full.
///
/// This sleep is not synchronisation with oomtrace or with anything the tests start: it waits
/// out the kernel's printk rate limit, which is measured in wall-clock time and which nothing
/// outside the kernel can observe or be notified of.
pub fn wait_out_oom_log_ratelimit() {
    thread::sleep(Duration::from_millis(5500));
}

/// One hog OOM-killed in `cgroup` (oom_score_adj 500) while `oomtrace --json ARGS` watches.
/// Checks that oomtrace exited 0 and reported the hog exactly once (matched by pid, tid or
/// cgroup path), and returns the hog's pid, the stopped tracer and that report.
pub fn trace_one_kill(args: &[&str], cgroup: &MemCgroup, hog: &Path) -> (u32, Stopped, Value) {
    let tracer = Tracer::start(args);
    let mut child = Hog::spawn(hog, cgroup, 500, &[]);
    let pid = child.pid();
    // Reaped only once oomtrace has reported: a report completed from /proc must not depend
    // on which of the two gets there first.
    child.expect_oom_killed_unreaped();
    let is_ours = |r: &Value| {
        r["victim"]["pid"] == pid
            || r["victim"]["tid"] == pid
            || r["cgroup"]["path"] == cgroup.path.as_str()
    };
    tracer.wait_for(1, Duration::from_secs(5), is_ours);
    child.expect_oom_killed();
    let stopped = tracer.stop();
    stopped.assert_success();
    let ours: Vec<&Value> = stopped.reports.iter().filter(|r| is_ours(r)).collect();
    assert_eq!(
        ours.len(),
        1,
        "expected exactly one report for pid {pid}: {ours:#?}"
    );
    let report = ours[0].clone();
    (pid, stopped, report)
}

/// Field access that names the path in its panic.
pub fn field<'a>(report: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(report, |value, key| {
        value
            .get(key)
            .unwrap_or_else(|| panic!("report has no {path}: {report}"))
    })
}

/// Set to `1` by the kernel matrix's init (`cargo xtask vm-test`, xtask/vm/init): the tests run
/// in a VM of their own, the only place a test may exhaust the machine's memory or count every
/// OOM kill the kernel makes as its own.
pub const VM_ENV: &str = "OOMTRACE_VM";

/// Whether this runs inside a kernel-matrix VM; see [`VM_ENV`].
pub fn in_kernel_matrix_vm() -> bool {
    std::env::var_os(VM_ENV).is_some_and(|v| v == "1")
}

/// The kernel's count of OOM kills since boot, `oom_kill` in `/proc/vmstat`: one for each
/// SIGKILL the OOM killer sent, so a `memory.oom.group` kill's chosen victim counts twice.
pub fn kernel_oom_kills() -> u64 {
    let vmstat = fs::read_to_string("/proc/vmstat").expect("read /proc/vmstat");
    vmstat
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/vmstat has no oom_kill line"))
}

/// `/dev/kmsg` from the moment it was opened on: the kernel's own list of the processes its OOM
/// killer killed, independent of anything oomtrace reads.
pub struct KernelLog {
    kmsg: fs::File,
}

impl KernelLog {
    /// Opens the log at its end, so only records written from now on are read.
    pub fn from_now() -> Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Non-blocking: a read at the end of the log returns EAGAIN instead of waiting.
        let kmsg = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap_or_else(|e| panic!("open /dev/kmsg: {e}"));
        // SAFETY: lseek on a file descriptor we own; SEEK_END on /dev/kmsg moves it past the
        // last record.
        let at = unsafe { libc::lseek(kmsg.as_raw_fd(), 0, libc::SEEK_END) };
        assert!(at >= 0, "seek /dev/kmsg: {}", io::Error::last_os_error());
        Self { kmsg }
    }

    /// The pid of each `Killed process <pid>` record since the log was opened or last read,
    /// in order. The kernel writes one for every SIGKILL its OOM killer sends, with the same
    /// count as `/proc/vmstat` (and unlike the OOM report around it, never rate-limited), so a
    /// `memory.oom.group` kill's chosen victim appears twice.
    pub fn killed_pids(&mut self) -> Vec<u32> {
        self.messages()
            .iter()
            .filter_map(|message| {
                message
                    .split_once("Killed process ")
                    .and_then(|(_, rest)| rest.split_once(' '))
                    .and_then(|(pid, _)| pid.parse().ok())
            })
            .collect()
    }

    /// Whether the log, since it was opened or last read, lists process `pid` in an OOM
    /// report's task dump (`[  pid]   uid  tgid total_vm ...`). The kernel prints its reports
    /// at most 10 times in 5 s, so a kill soon after others may have none.
    pub fn dumped_task(&mut self, pid: u32) -> bool {
        self.messages().iter().any(|message| {
            message
                .trim_start()
                .strip_prefix('[')
                .and_then(|rest| rest.split_once(']'))
                .is_some_and(|(dumped, _)| dumped.trim().parse() == Ok(pid))
        })
    }

    /// Every record's message since the log was opened or last read, in order.
    fn messages(&mut self) -> Vec<String> {
        let mut messages = Vec::new();
        // Each read(2) returns exactly one record, which must fit: the kernel's records are at
        // most 8 KiB with their prefix.
        let mut record = vec![0u8; 16 * 1024];
        loop {
            match self.kmsg.read(&mut record) {
                Ok(0) => return messages,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&record[..n]);
                    // `<prio>,<seq>,<usec>,<flags>;<message>`: the message follows the `;`.
                    let message = text.split_once(';').map_or(&*text, |(_, m)| m);
                    messages.push(message.to_string());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return messages,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the ring buffer overwrote records before they were read, so a kill
                // may be missing from the count.
                Err(e) => panic!("read /dev/kmsg: {e}: the kernel's list of kills is incomplete"),
            }
        }
    }
}

/// The capability that lowering an oom_score_adj needs.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// One of this process's capability sets (`CapEff`, `CapBnd`, ...) from `/proc/self/status`.
pub fn capabilities(set: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {set} in /proc/self/status"))
}

/// Sets this process's `oom_score_adj` (which the processes it starts from then on inherit)
/// and puts the old value back on drop.
pub struct OomScoreAdj {
    previous: String,
}

impl OomScoreAdj {
    pub fn set(adj: i32) -> Self {
        const FILE: &str = "/proc/self/oom_score_adj";
        let previous = fs::read_to_string(FILE).unwrap_or_else(|e| panic!("read {FILE}: {e}"));
        fs::write(FILE, adj.to_string()).unwrap_or_else(|e| panic!("write {adj} to {FILE}: {e}"));
        Self {
            previous: previous.trim().to_string(),
        }
    }
}

impl Drop for OomScoreAdj {
    fn drop(&mut self) {
        let _ = fs::write("/proc/self/oom_score_adj", &self.previous);
    }
}

impl Tracer {
    /// What oomtrace wrote to stderr so far, without waiting.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.snapshot()
    }
}

/// The address `oomtrace --metrics-addr` serves, from its `serving Prometheus metrics at
/// http://ADDR/metrics` line on stderr (written before the ready line).
pub fn metrics_addr(stderr: &[String]) -> std::net::SocketAddr {
    stderr
        .iter()
        .find_map(|line| {
            line.strip_prefix("oomtrace: serving Prometheus metrics at http://")?
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("oomtrace named no metrics address: {stderr:?}"))
}

/// `GET PATH` over a plain TCP connection, which the server closes after its answer: the
/// status and the body. Every step has a deadline, so a stuck server fails the test.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::net::TcpStream;
    const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("send to {addr}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("read from {addr}{path}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/1.1 status: {head:?}"));
    (status, body.to_owned())
}

/// One sample of a Prometheus text exposition: its labels, unescaped, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of metric `name` in a Prometheus text exposition. Fails the test on a line it
/// cannot parse: a broken exposition is a bug.
pub fn samples(exposition: &str, name: &str) -> Vec<Sample> {
    let mut found = Vec::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let sample = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
        if sample.0 == name {
            found.push(sample.1);
        }
    }
    found
}

fn parse_sample(line: &str) -> Option<(&str, Sample)> {
    let end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(end);
    let mut labels = std::collections::BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = after[close + 1..].trim_start_matches(',');
        }
    }
    let value = rest.trim().split(' ').next()?.parse().ok()?;
    Some((name, Sample { labels, value }))
}
