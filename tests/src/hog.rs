//! The test hog (`src/bin/hog.rs`) in a memory cgroup, and the kill the tests make of it most.

use std::{
    io::BufReader,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
    process::{ChildStdout, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    cgroups::MemCgroup,
    pipes::read_line_within,
    process::{KillOnDrop, readable_within, wait_timeout},
    tracer::{Stopped, Tracer},
};

/// A hog must be OOM-killed well within this: it allocates 256 MiB in a 32 MiB cgroup.
pub const HOG_TIMEOUT: Duration = Duration::from_secs(30);

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
        let adj = oom_score_adj.to_string();
        let args: Vec<&str> = ["--oom-score-adj", &adj]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        Self::start(hog, cgroup, &args)
    }

    /// [`Self::spawn`] with only `args`: the hog keeps the oom_score_adj it inherits.
    pub fn start(hog: &Path, cgroup: &MemCgroup, args: &[&str]) -> Self {
        let mut child = Command::new(hog)
            .arg("--procs")
            .arg(cgroup.procs_file())
            .args(args)
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

    /// Closes the hog's stdin: one the OOM killer spares then exits 3 once it has touched all
    /// its memory, instead of lingering until the test ends.
    pub fn let_go(&mut self) {
        drop(self.child.stdin.take());
    }

    /// The hog's next line on stdout, at most [`HOG_TIMEOUT`] away; `None` at its end.
    pub fn line(&mut self) -> Option<String> {
        read_line_within(&mut self.stdout, HOG_TIMEOUT, "the hog's stdout")
    }

    /// Waits at most [`HOG_TIMEOUT`] for the hog's exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(HOG_TIMEOUT)
            .unwrap_or_else(|| panic!("the hog outlived {HOG_TIMEOUT:?}"))
    }

    /// Waits at most `timeout` for the hog's exit; `None` if it is still running, for a test
    /// that can say more than [`Self::wait`] about why.
    pub fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
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
