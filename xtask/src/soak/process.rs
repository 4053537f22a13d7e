//! Child processes with deadlines: every `docker` call, the soak's dockerd and oomtrace. A
//! thread waits for each child and reports its exit on a channel, so the soak waits for an
//! exit with a deadline instead of polling for it.

use std::io;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// `kill` returns at once; this only bounds a machine in trouble.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A long-lived child whose exit a thread waits for.
pub struct Watched {
    pub pid: u32,
    what: &'static str,
    exit: Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
}

impl Watched {
    pub fn new(what: &'static str, mut child: Child) -> Self {
        let pid = child.id();
        let (tx, exit) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Self {
            pid,
            what,
            exit,
            status: None,
        }
    }

    /// How it ended, if it has, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.wait(Duration::ZERO)
    }

    /// How it ended, waiting at most `timeout` for it to end.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exit.recv_timeout(timeout) {
                Ok(Ok(status)) => self.status = Some(status),
                // The waiter could not wait (it cannot, for a child it spawned) or is gone: the
                // child can no longer be told apart from an ended one.
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                    self.status = Some(ExitStatus::default());
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.status
    }

    /// Sends `signal` (as `kill` names it: TERM, INT, KILL) unless the child has ended. Its
    /// pid stays its own until the waiter reaps it; only a child ending in the instant between
    /// the check and the signal, and its pid reused in that instant, could make it miss.
    pub fn signal(&mut self, signal: &str) -> Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        send_signal(self.pid, signal).with_context(|| format!("could not signal {}", self.what))
    }

    /// `signal`, then `grace` to end, then SIGKILL. How it ended, or an error if it outlived
    /// even SIGKILL.
    pub fn stop(&mut self, signal: &str, grace: Duration) -> Result<ExitStatus> {
        self.signal(signal)?;
        if let Some(status) = self.wait(grace) {
            return Ok(status);
        }
        cmd::progress(format_args!(
            "{} (pid {}) outlived SIG{signal} by {} s: killing it",
            self.what,
            self.pid,
            grace.as_secs()
        ));
        self.signal("KILL")?;
        self.wait(KILL_TIMEOUT)
            .with_context(|| format!("{} (pid {}) outlived SIGKILL", self.what, self.pid))
    }
}

impl Drop for Watched {
    /// A soak that fails half-way leaves no process of its own behind.
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.signal("KILL");
            let _ = self.wait(KILL_TIMEOUT);
        }
    }
}

/// `kill -SIGNAL PID`, itself bounded: it is the one child not run through [`output_within`],
/// whose own timeout sends a signal.
fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let child = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start `kill`")?;
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match done.recv_timeout(KILL_TIMEOUT) {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => bail!(
            "`kill -{signal} {pid}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(Err(err)) => Err(err).context("could not wait for `kill`"),
        Err(_) => bail!("`kill -{signal} {pid}` did not return within {KILL_TIMEOUT:?}"),
    }
}

/// Runs `command` to its end with an empty stdin and its output captured; kills it if it runs
/// longer than `timeout`.
pub fn output_within(command: &mut Command, timeout: Duration) -> Result<Output> {
    let shown = cmd::display(command);
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match done.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("could not read what `{shown}` printed")),
        Err(_) => {
            // The waiter has not returned, so the child is unreaped and the pid still its own
            // (but for an exit in this very instant; see `Watched::signal`).
            let _ = send_signal(pid, "KILL");
            let _ = done.recv_timeout(KILL_TIMEOUT);
            bail!(
                "`{shown}` did not end within {} s and was killed",
                timeout.as_secs()
            )
        }
    }
}

/// [`output_within`] for a command that must succeed: its stdout, trimmed; its stderr goes
/// into the error.
pub fn stdout_within(command: &mut Command, timeout: Duration) -> Result<String> {
    let out = output_within(command, timeout)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd::display(command),
            cmd::describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
