//! Shared pieces of oomtrace's privileged end-to-end tests: a running tracer, a real memory
//! cgroup, and the rule that CI never skips.
//!
//! Like aya's integration tests, helpers panic with a message instead of returning errors.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// OOM tests share the host's OOM killer and tracing; one at a time keeps every report
/// attributable to the test that caused it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when the test may go on. Without root it skips with one line, except under
/// `CI=true`, where a privileged test that cannot run fails.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root, and CI must run it: run the tests as root");
    }
    eprintln!("skipped {test}: it needs root to load eBPF and create memory cgroups");
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

/// A running `oomtrace --json`, with its reports collected as they arrive.
pub struct Tracer {
    child: Child,
    reports: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// What a stopped tracer left behind.
pub struct Stopped {
    pub status: ExitStatus,
    pub reports: Vec<Value>,
    pub stderr: Vec<String>,
}

impl Tracer {
    /// Starts `oomtrace --json ARGS` and waits for its ready line.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(oomtrace_bin());
        command.arg("--json").args(args);
        let (child, stdout, ready) = spawn_until_ready(command);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&reports);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("oomtrace wrote a line that is not JSON ({e}): {line}")
                });
                sink.lock().unwrap().push(value);
            }
        });
        Self {
            child,
            reports,
            stderr: ready,
        }
    }

    /// Waits until `accept` has matched `count` reports or `timeout` passes, returning the
    /// matching reports so far.
    pub fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let matched: Vec<Value> = self
                .reports
                .lock()
                .unwrap()
                .iter()
                .filter(|r| accept(r))
                .cloned()
                .collect();
            if matched.len() >= count || Instant::now() >= deadline {
                return matched;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal`, waits for the exit, and returns everything it wrote.
    pub fn stop_with(mut self, signal: libc::c_int) -> Stopped {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("oomtrace did not exit within 10 s of signal {signal}"));
        // The reader threads finish at EOF; give them a moment to hand over the last lines.
        thread::sleep(Duration::from_millis(50));
        Stopped {
            status,
            reports: self.reports.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }

    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGINT)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns oomtrace and reads stderr until `watching for OOM kills`; stderr keeps being
/// collected afterwards.
pub fn spawn_until_ready(mut command: Command) -> (Child, ChildStdout, Arc<Mutex<Vec<String>>>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    let sink = Arc::clone(&lines);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("watching for OOM kills") {
                let _ = ready_tx.send(());
            }
            sink.lock().unwrap().push(line);
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        thread::sleep(Duration::from_millis(50));
        panic!(
            "oomtrace never became ready; stderr: {:?}",
            lines.lock().unwrap()
        );
    }
    (child, stdout, lines)
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
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

/// The test hog, started in `cgroup` with `oom_score_adj`.
pub fn spawn_hog(hog: &Path, cgroup: &MemCgroup, oom_score_adj: i32, extra: &[&str]) -> Child {
    Command::new(hog)
        .arg("--procs")
        .arg(cgroup.procs_file())
        .args(["--oom-score-adj", &oom_score_adj.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", hog.display()))
}

/// Waits for a hog that the OOM killer must stop, and checks that it did.
pub fn expect_oom_killed(child: &mut Child) {
    use std::os::unix::process::ExitStatusExt as _;
    let status = wait_timeout(child, Duration::from_secs(30)).expect("the hog outlived 30 s");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the hog was not OOM-killed: {status:?}"
    );
}

/// The kernel prints an OOM's `oom-kill:` summary (the only line naming the victim's cgroup)
/// at most 10 times per 5 s. Tests that read the kernel log wait out that window first, so
/// the kills they cause are logged in full.
pub fn wait_out_oom_log_ratelimit() {
    thread::sleep(Duration::from_millis(5500));
}

/// One hog OOM-killed in `cgroup` (oom_score_adj 500) while `oomtrace --json ARGS` watches.
/// Checks that oomtrace exited 0 and reported the hog exactly once (matched by pid, tid or
/// cgroup path), and returns the hog's pid, the stopped tracer and that report.
pub fn trace_one_kill(args: &[&str], cgroup: &MemCgroup, hog: &Path) -> (u32, Stopped, Value) {
    let tracer = Tracer::start(args);
    let mut child = spawn_hog(hog, cgroup, 500, &[]);
    let pid = child.id();
    expect_oom_killed(&mut child);
    let is_ours = |r: &Value| {
        r["victim"]["pid"] == pid
            || r["victim"]["tid"] == pid
            || r["cgroup"]["path"] == cgroup.path.as_str()
    };
    tracer.wait_for(1, Duration::from_secs(5), is_ours);
    let stopped = tracer.stop();
    assert!(
        stopped.status.success(),
        "oomtrace exited with {:?}: {:?}",
        stopped.status,
        stopped.stderr
    );
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
