//! Child processes that cannot hang a test: killed when dropped, awaited on their pidfd with
//! a deadline, and run to their end with a timeout.

use std::{
    io::{self, Read},
    ops::{Deref, DerefMut},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a pipe may stay open after its process exited before the test blames whoever else
/// holds it. Reaching EOF takes microseconds; this only bounds a bug.
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(5);

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

/// Sends `signal` to `child` unless it has already ended, then waits at most `timeout` for its
/// exit; `None` if it outlived the timeout (it is left running).
pub fn terminate(child: &mut Child, signal: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
    // A child already reaped may have handed its pid to another process: signal only one that
    // has not been.
    if child.try_wait().expect("try_wait").is_none() {
        // SAFETY: signals our own child, which is not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }
    wait_timeout(child, timeout)
}

/// Blocks until `fd` is readable (or at its end, or in error: a read will not block) or
/// `deadline` passes; false for the deadline.
pub(crate) fn readable_within(fd: RawFd, deadline: Instant) -> bool {
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

/// Re-checks `done` until it holds or `timeout` passes; whether it held. For what the kernel or a
/// daemon gives no notification of (a process gone that is not our child, a cgroup's usage
/// reaching a level): each check costs microseconds, so one every 20 ms is no load.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process `pid` exists (a zombie counts as gone: it holds nothing but its entry).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}
