//! Children with a time limit each, and their output read line by line with the moment each
//! line arrived. A watchdog kills any child past its limit, and whatever is still running when
//! the bench ends (or fails) is killed and reaped, so no hog or tracer outlives it.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::sys;

/// Children alive, by pid: when each must be gone, what it is, and whether it was killed for
/// overstaying.
type Alive = HashMap<u32, (Instant, String, bool)>;

struct Shared {
    alive: Mutex<Alive>,
    /// Signalled whenever a child is reaped.
    reaped: Condvar,
    stopping: Mutex<bool>,
}

pub struct Supervisor {
    shared: Arc<Shared>,
    watchdog: Option<thread::JoinHandle<()>>,
}

/// How often the watchdog looks for children past their limit.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(100);
/// How often [`Watched::stop`] repeats its signal.
const RESIGNAL: Duration = Duration::from_millis(500);
/// How long the end of the bench waits for killed children to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(10);

impl Supervisor {
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            alive: Mutex::new(HashMap::new()),
            reaped: Condvar::new(),
            stopping: Mutex::new(false),
        });
        let watched = Arc::clone(&shared);
        let watchdog = thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || watchdog(&watched))
            .ok();
        Self { shared, watchdog }
    }

    /// Starts `cmd`, to be killed if still running after `limit`. Its stdout and stderr are
    /// whatever `cmd` says; piped ones are handed back.
    pub fn spawn(&self, cmd: &mut Command, limit: Duration, what: &str) -> Result<Spawned> {
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {what} ({cmd:?})"))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        lock(&self.shared.alive).insert(pid, (Instant::now() + limit, what.to_string(), false));
        let (tx, rx) = channel();
        let shared = Arc::clone(&self.shared);
        let waiter = thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || reap(child, pid, &shared, &tx));
        if let Err(err) = waiter {
            // Without a thread to wait for it, nothing would ever reap it: end it here.
            sys::signal(pid, sys::SIGKILL);
            lock(&self.shared.alive).remove(&pid);
            return Err(err).context("could not start a thread to wait for a child");
        }
        Ok(Spawned {
            child: Watched {
                pid,
                exit: rx,
                status: None,
            },
            stdout,
            stderr,
        })
    }
}

impl Drop for Supervisor {
    /// Kills every child still running and waits (bounded) for each to be reaped.
    fn drop(&mut self) {
        *lock(&self.shared.stopping) = true;
        let mut alive = lock(&self.shared.alive);
        for pid in alive.keys() {
            sys::signal(*pid, sys::SIGKILL);
        }
        let deadline = Instant::now() + REAP_WAIT;
        while !alive.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            alive = self
                .shared
                .reaped
                .wait_timeout(alive, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(alive);
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn reap(mut child: Child, pid: u32, shared: &Shared, tx: &Sender<ExitStatus>) {
    let status = child.wait();
    // Between the wait and this removal the pid is free while still listed; the watchdog
    // could signal a new process that got it within those microseconds. pid_max makes that
    // as unlikely as it gets without pidfds, which std does not offer on stable.
    lock(&shared.alive).remove(&pid);
    shared.reaped.notify_all();
    if let Ok(status) = status {
        let _ = tx.send(status);
    }
}

fn watchdog(shared: &Shared) {
    loop {
        if *lock(&shared.stopping) {
            return;
        }
        let now = Instant::now();
        for (pid, (deadline, what, killed)) in lock(&shared.alive).iter_mut() {
            if now >= *deadline && !*killed {
                *killed = true;
                crate::console::progress(format_args!(
                    "{what} (pid {pid}) ran past its time limit: killing it"
                ));
                sys::signal(*pid, sys::SIGKILL);
            }
        }
        thread::sleep(WATCHDOG_PERIOD);
    }
}

pub struct Spawned {
    pub child: Watched,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// A child the supervisor reaps. Dropping it leaves the child running, still under its limit.
pub struct Watched {
    pub pid: u32,
    exit: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Watched {
    /// Its exit status, waiting at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exit.recv_timeout(timeout) {
                Ok(status) => self.status = Some(status),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
        self.status
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            sys::signal(self.pid, sig);
        }
    }

    /// Sends `sig` until it exits, for up to `grace`, then kills it; how it ended, `None` if it
    /// had to be killed. The signal is repeated: bpftrace 0.17 loses a SIGINT that arrives
    /// just as its `BEGIN` has run (its poll loop starts by clearing the flag the handler set).
    pub fn stop(&mut self, sig: i32, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            self.signal(sig);
            if let Some(status) = self.wait(RESIGNAL.min(grace)) {
                return Some(status);
            }
        }
        self.signal(sys::SIGKILL);
        self.wait(Duration::from_secs(5));
        None
    }
}

/// A line of a child's output and when it arrived (`CLOCK_BOOTTIME`, ns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub at_ns: u64,
}

/// Reads `stream` on a thread of its own. Every line completed by one `read` is stamped with
/// the moment that read returned: when it reached the reader, whatever buffering follows.
pub fn read_lines(mut stream: impl Read + Send + 'static, name: &str) -> Receiver<Line> {
    let (tx, rx) = channel();
    let spawned = thread::Builder::new()
        .name(format!("read-{name}"))
        .spawn(move || {
            let mut pending: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let at_ns = sys::boottime_ns();
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line[..end]).into_owned();
                    if tx.send(Line { text, at_ns }).is_err() {
                        return;
                    }
                }
            }
            if !pending.is_empty() {
                let text = String::from_utf8_lossy(&pending).into_owned();
                let _ = tx.send(Line {
                    text,
                    at_ns: sys::boottime_ns(),
                });
            }
        });
    if spawned.is_err() {
        crate::console::progress(format_args!("could not start a thread to read {name}"));
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn stamps_lines_and_kills_what_overstays() {
        let supervisor = Supervisor::new();
        let mut spawned = supervisor
            .spawn(
                Command::new("sh")
                    .args(["-c", "printf 'a\\nb\\n'; printf c"])
                    .stdout(Stdio::piped()),
                Duration::from_secs(10),
                "sh",
            )
            .unwrap();
        let lines = read_lines(spawned.stdout.take().unwrap(), "sh");
        let texts: Vec<String> = lines.iter().map(|l| l.text).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert!(
            spawned
                .child
                .wait(Duration::from_secs(10))
                .unwrap()
                .success()
        );

        let mut sleeper = supervisor
            .spawn(
                Command::new("sleep").arg("600"),
                Duration::from_millis(200),
                "sleep",
            )
            .unwrap();
        let status = sleeper.child.wait(Duration::from_secs(10)).expect("killed");
        assert!(!status.success());
    }
}
