//! Docker for the end-to-end tests: the `docker` CLI with a deadline on every call, containers
//! removed when a test ends, `docker inspect` and `docker events` read as facts.
//!
//! The image, `oomtrace-busybox:latest`, is built locally by `cargo xtask setup`: no registry.

use std::{
    io::BufReader,
    path::PathBuf,
    process::{ChildStdout, Command, Output, Stdio},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use crate::{
    pipes::read_line_within,
    preconditions::privileged,
    process::{KillOnDrop, output_within},
};

pub const MIB: u64 = 1 << 20;
pub const IMAGE: &str = "oomtrace-busybox:latest";
/// Allocates and touches 200 MiB at once: OOM-killed in a 32 or 64 MiB container.
pub const DD: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"];
/// The same, for `sh -c`.
pub const DD_SH: &str = "dd if=/dev/zero of=/dev/null bs=200M count=1";
/// The exit code of a process killed by SIGKILL, as Docker reports it.
pub const KILLED: i32 = 128 + libc::SIGKILL;
/// Any one `docker` command: the slowest, `docker stop --time 10`, takes about 10 s.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// `docker ARGS` to its end within [`DOCKER_TIMEOUT`]; the error names the command.
pub fn try_docker(args: &[&str]) -> Result<Output, String> {
    output_within(Command::new("docker").args(args), DOCKER_TIMEOUT)
}

/// [`try_docker`], failing the test on a docker that cannot start or hangs.
pub fn run_docker(args: &[&str]) -> Output {
    try_docker(args).unwrap_or_else(|e| panic!("{e}: is Docker set up (`cargo xtask setup`)?"))
}

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let output = run_docker(args);
    assert!(
        output.status.success(),
        "docker {args:?} failed with {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `docker ARGS`, which may fail: its exit code and stderr.
pub fn docker_code(args: &[&str]) -> (Option<i32>, String) {
    let output = run_docker(args);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

/// True when the test may go on: root (see [`privileged`]), a Docker Engine that answers and
/// the test image. A missing daemon or image fails, with or without CI: `cargo xtask setup`
/// provides both.
pub fn docker_ready(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let (code, stderr) = docker_code(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(
        code,
        Some(0),
        "{test} needs a running Docker Engine, and `docker version` failed ({stderr}): run `cargo xtask setup`"
    );
    let (code, _) = docker_code(&["image", "inspect", IMAGE]);
    assert_eq!(
        code,
        Some(0),
        "{test} needs the image {IMAGE}, which is missing: run `cargo xtask setup` to build it"
    );
    true
}

/// PID 1 of an idle container: it waits until `docker stop`, then exits 0, as seed 000's did.
/// The sleep is its idle loop (sh runs the trap between commands), not synchronisation.
pub const IDLE_MAIN: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// `docker run -d` of a container named `name` with a `memory` limit (`64m`) whose PID 1 is
/// [`IDLE_MAIN`]: its id. No network is needed, and none can then be missing.
pub fn run_idle(name: &str, memory: &str) -> String {
    docker(&[
        "run",
        "-d",
        &format!("--memory={memory}"),
        "--network=none",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        IDLE_MAIN,
    ])
}

/// `docker run -d --memory=32m --restart=on-failure:3` of a container named `name` whose PID 1
/// is dd, OOM-killed at every run: its id, once Docker has given up restarting it, which must
/// happen `within` the time given. Checks Docker's final word on it: exited 137, OOMKilled,
/// 3 restarts.
pub fn run_restart_loop(name: &str, within: Duration) -> String {
    run_restart_loop_of(name, 3, within)
}

/// [`run_restart_loop`] with `on-failure:RETRIES`: `retries + 1` runs, each OOM-killed.
pub fn run_restart_loop_of(name: &str, retries: u32, within: Duration) -> String {
    let created = SystemTime::now();
    let policy = format!("--restart=on-failure:{retries}");
    let mut args = vec![
        "run",
        "-d",
        "--network=none",
        "--memory=32m",
        &policy,
        "--name",
        name,
        IMAGE,
    ];
    args.extend(DD);
    let id = docker(&args);
    // Each exit is a `die` event, sent after Docker recorded the exit and its decision to
    // restart or not: the state is re-read at each, until the last run has ended for good.
    let state = || {
        docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Restarting}} {{.RestartCount}} {{.State.ExitCode}} {{.State.OOMKilled}}",
            name,
        ])
    };
    let given_up = format!("false false {retries} ");
    let mut dies = Events::watch(&id, "die", created, within);
    let state = loop {
        let event = dies.next_event();
        let state = state();
        if state.starts_with(&given_up) {
            break state;
        }
        assert!(
            event.is_some(),
            "{name} did not finish restarting within {within:?}: {state}"
        );
    };
    assert_eq!(state, format!("{given_up}{KILLED} true"));
    id
}

/// The containers a test creates, removed with `docker rm -f` when it ends, passed or not.
#[derive(Default)]
pub struct Containers(Vec<String>);

impl Containers {
    /// A name unique to this test run, owned by the guard; a leftover of a crashed earlier run
    /// with the same name is removed first.
    pub fn name(&mut self, tag: &str) -> String {
        let name = format!("oomtrace-e2e-{tag}-{}", std::process::id());
        let _ = docker_code(&["rm", "-f", &name]);
        self.0.push(name.clone());
        name
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        // Not run_docker: a panic while the test is already unwinding would abort the run.
        if let Err(e) = try_docker(&args) {
            eprintln!("could not remove the test's containers: {e}");
        }
    }
}

/// A scratch directory (cid files, a bind mount), removed when the test ends.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn create(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oomtrace-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }

    pub fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `docker inspect` says about a container.
#[derive(Debug)]
pub struct Inspected {
    pub id: String,
    /// Without Docker's leading slash.
    pub name: String,
    /// Host pid of its PID 1; 0 when it is not running.
    pub pid: u64,
}

pub fn inspect(container: &str) -> Inspected {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.Id}} {{.Name}} {{.State.Pid}}",
        container,
    ]);
    let mut words = out.split_whitespace();
    let (Some(id), Some(name), Some(pid)) = (words.next(), words.next(), words.next()) else {
        panic!("unexpected docker inspect output for {container}: {out:?}");
    };
    Inspected {
        id: id.to_owned(),
        name: name.trim_start_matches('/').to_owned(),
        pid: pid.parse().expect("State.Pid"),
    }
}

/// The container's memory cgroup, relative to the hierarchy's root, as the daemon's cgroup
/// driver names it.
pub fn docker_cgroup(id: &str) -> String {
    if docker(&["info", "--format", "{{.CgroupDriver}}"]) == "systemd" {
        format!("/system.slice/docker-{id}.scope")
    } else {
        format!("/docker/{id}")
    }
}

/// The id Docker wrote into a `--cidfile`.
pub fn cid(file: &str) -> String {
    let id = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read cid file {file}: {e}"));
    let id = id.trim().to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{file} holds no container id: {id:?}"
    );
    id
}

/// Whether a report is about the container `id`, by what oomtrace attributed or by the cgroup.
pub fn about(report: &Value, id: &str) -> bool {
    report["container"]["id"] == id
        || report["cgroup"]["path"]
            .as_str()
            .is_some_and(|path| path.contains(id))
}

pub fn reports_about<'a>(reports: &'a [Value], id: &str) -> Vec<&'a Value> {
    reports.iter().filter(|r| about(r, id)).collect()
}

/// `at` as `docker events --since` and `--until` take it: seconds since the epoch.
pub fn docker_time(at: SystemTime) -> String {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970");
    format!(
        "{}.{:09}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    )
}

/// `docker events` about one container, from `since` (replayed) until `timeout` from now:
/// the daemon's own notification of what happened to it, read line by line as it comes.
pub struct Events {
    child: KillOnDrop,
    stdout: BufReader<ChildStdout>,
    until: Instant,
}

impl Events {
    /// Events named `event` (`die`, `destroy`) about `container`, one `Action` a line.
    pub fn watch(container: &str, event: &str, since: SystemTime, timeout: Duration) -> Self {
        let until = Instant::now() + timeout;
        let mut child = Command::new("docker")
            .args(["events", "--format", "{{.Action}}"])
            .args(["--since", &docker_time(since)])
            .args(["--until", &docker_time(SystemTime::now() + timeout)])
            .args(["--filter", &format!("container={container}")])
            .args(["--filter", &format!("event={event}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker events: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child: KillOnDrop(child),
            stdout,
            until,
        }
    }

    /// The next event, or `None` once `docker events` reached its `--until` and ended.
    pub fn next_event(&mut self) -> Option<String> {
        // docker events ends by itself at --until; a few seconds more only bound a bug.
        let left = self.until.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
        let what = format!("docker events (pid {})", self.child.id());
        read_line_within(&mut self.stdout, left, &what)
    }
}

/// Waits (on Docker's `destroy` event, at most 10 s) until Docker has removed the `--rm`
/// container `id`, created after `since`, and checks that `docker inspect` no longer knows it.
pub fn wait_gone(id: &str, since: SystemTime) {
    let mut events = Events::watch(id, "destroy", since, Duration::from_secs(10));
    assert_eq!(
        events.next_event().as_deref(),
        Some("destroy"),
        "{id} is still known to Docker 10 s after its --rm run ended"
    );
    assert_ne!(
        docker_code(&["inspect", id]).0,
        Some(0),
        "Docker still knows {id} after destroying it"
    );
}

/// `docker run --rm --memory=32m --name NAME --cidfile FILE IMAGE dd ...`, which the OOM killer
/// must end; the container's id.
pub fn run_rm_hog(name: &str, cidfile: &str) -> String {
    let mut args = vec![
        "run",
        "--rm",
        "--memory=32m",
        "--name",
        name,
        "--cidfile",
        cidfile,
        IMAGE,
    ];
    args.extend(DD);
    let (code, stderr) = docker_code(&args);
    assert_eq!(
        code,
        Some(KILLED),
        "dd in {name} must be OOM-killed: {stderr}"
    );
    cid(cidfile)
}

pub fn unavailable_lines(stderr: &[String]) -> Vec<&String> {
    stderr
        .iter()
        .filter(|l| l.starts_with("oomtrace: Docker enrichment is unavailable"))
        .collect()
}
