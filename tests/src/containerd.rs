//! A containerd of the tests' own, for the Kubernetes-shaped tests: its config, root, state and
//! sockets in a scratch directory, never the host's containerd nor Docker's. It is driven with
//! `ctr`, every call with a deadline; when dropped, its tasks and containers are deleted and the
//! daemon stopped, so no shim, mount or cgroup is left behind.
//!
//! The image is the tests' Docker image, `docker save`d and imported: no registry.

use std::{
    fs,
    io::{self, Read as _},
    os::unix::net::UnixStream,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    docker::{self, docker_ready},
    process::{KillOnDrop, output_within, terminate},
    scratch::{TempDir, temp_dir_in},
};

/// The namespace kubelet's CRI plugin keeps its containers in.
pub const NAMESPACE: &str = "k8s.io";
/// The name containerd gives the tests' image, [`docker::IMAGE`], when it imports it from
/// `docker save`: Docker's short name, made a full reference.
pub const IMAGE_REF: &str = "docker.io/library/oomtrace-busybox:latest";
/// The programs the harness runs; `cargo xtask setup` installs them.
const PROGRAMS: [&str; 4] = ["containerd", "ctr", "containerd-shim-runc-v2", "runc"];
/// Any one `ctr` call: a task's start or delete takes a fraction of a second, an OOM-killed
/// exec about one.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// containerd answers within a second of its start; the rest only bounds a bug.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// containerd takes about two seconds to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A unix socket's path, with its NUL, fits in `sun_path`'s 108 bytes.
const SOCKET_PATH_MAX: usize = 107;
/// Where containerd 1.6's runc shim puts its own socket, whatever containerd's config says: the
/// shim computes it from a constant.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// True when the test may go on: root, Docker with the test image (see [`docker_ready`]), and
/// containerd's programs. A missing program fails, with or without CI: `cargo xtask setup`
/// installs them.
pub fn containerd_ready(test: &str) -> bool {
    if !docker_ready(test) {
        return false;
    }
    for program in PROGRAMS {
        assert!(
            on_path(program),
            "{test} needs {program}, which is missing: run `cargo xtask setup`"
        );
    }
    true
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

/// A running containerd of the tests' own, with the test image imported into [`NAMESPACE`].
pub struct Containerd {
    /// Holds the config, `root`, `state`, the sockets, runc's state, ctr's FIFOs and the log.
    dir: TempDir,
    socket: String,
    /// `None` while stopped.
    daemon: Mutex<Option<KillOnDrop>>,
    /// Whether [`SHIM_SOCKET_DIR`] existed before: if not, it is removed again when empty.
    shim_dir_existed: bool,
    execs: AtomicU32,
}

/// One line of `ctr task ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskState {
    pub id: String,
    pub pid: u32,
    /// `RUNNING`, `STOPPED`, ...
    pub status: String,
}

/// What `ctr run` is given for one task.
pub struct TaskSpec<'a> {
    pub id: &'a str,
    /// The task's cgroup, relative to each hierarchy's root, as kubelet names it.
    pub cgroup: &'a str,
    /// The OCI spec's memory limit.
    pub memory_limit: Option<u64>,
    pub labels: &'a [(&'a str, &'a str)],
    /// Host directories bind-mounted into the container: `(host, container)`.
    pub binds: &'a [(&'a Path, &'a str)],
    pub command: &'a [&'a str],
}

impl Containerd {
    /// Starts containerd in a fresh scratch directory, waits until it answers, and imports the
    /// test image.
    pub fn start() -> Self {
        let dir = scratch_dir();
        let socket = format!("{}/grpc.sock", dir.path().display());
        for sub in ["runc", "fifo"] {
            let path = dir.path().join(sub);
            fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        }
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path(), &socket))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let containerd = Self {
            shim_dir_existed: Path::new(SHIM_SOCKET_DIR).exists(),
            dir,
            socket,
            daemon: Mutex::new(None),
            execs: AtomicU32::new(0),
        };
        containerd.try_spawn().unwrap_or_else(|e| panic!("{e}"));
        containerd.import_image();
        containerd
    }

    /// The socket to give oomtrace's `--containerd-socket`.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Stops containerd (SIGTERM, then SIGKILL) and leaves its tasks running under their shims,
    /// as a node's containerd restarting does.
    pub fn stop(&self) {
        let daemon = self.daemon().take().expect("containerd is running");
        stop_daemon(daemon).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts containerd again on the same socket, root and state, after [`Self::stop`], and
    /// waits until it answers: it finds its running tasks again through their shims.
    pub fn restart(&self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// containerd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon().as_ref().map(|child| child.id())
    }

    /// The server's version, as `ctr version` gives it.
    pub fn version(&self) -> String {
        let out = self.ctr(&["version"]);
        out.split("Server:")
            .nth(1)
            .and_then(|server| {
                server
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Version:"))
            })
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("`ctr version` names no server version: {out}"))
    }

    /// `ctr --address SOCKET --namespace k8s.io ARGS` to its end within [`CTR_TIMEOUT`]; the
    /// error names the command. Not run while containerd is stopped: ctr would wait 10 s for
    /// the socket before it failed.
    pub fn try_ctr(&self, args: &[&str]) -> Result<Output, String> {
        if self.daemon().is_none() {
            return Err(format!("ctr {args:?} not run: containerd is stopped"));
        }
        let mut command = Command::new("ctr");
        command
            .args(["--address", &self.socket, "--namespace", NAMESPACE])
            .args(args)
            // ctr would take a snapshotter from the environment; the tests use containerd's.
            .env_remove("CONTAINERD_SNAPSHOTTER");
        output_within(&mut command, CTR_TIMEOUT)
    }

    /// [`Self::try_ctr`], which must succeed: its trimmed stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let output = self.try_ctr(args).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "ctr {args:?} failed with {:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `ctr run --detach`: the task runs on; its host pid.
    pub fn run_detached(&self, spec: &TaskSpec) -> u32 {
        let pid_file = self.pid_file(spec.id);
        let args = self.run_args(spec, "--detach", &pid_file);
        self.ctr(&args.iter().map(String::as_str).collect::<Vec<_>>());
        read_pid(&pid_file)
    }

    /// `ctr run --rm`: waits for the task's end, then ctr deletes the task and its container at
    /// once, as `docker run --rm` does. Its exit status and the host pid it had.
    pub fn run_removed(&self, spec: &TaskSpec) -> (ExitStatus, u32) {
        let pid_file = self.pid_file(spec.id);
        let args = self.run_args(spec, "--rm", &pid_file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.try_ctr(&args).unwrap_or_else(|e| panic!("{e}"));
        (output.status, read_pid(&pid_file))
    }

    fn pid_file(&self, id: &str) -> String {
        format!("{}/{id}.pid", self.path("fifo"))
    }

    fn run_args(&self, spec: &TaskSpec, mode: &str, pid_file: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            mode.into(),
            // No terminal and no output to keep: the tests read what happened from the kernel.
            "--null-io".into(),
            "--fifo-dir".into(),
            self.path("fifo"),
            // runc's state in the scratch directory too, not in /run/containerd/runc.
            "--runc-root".into(),
            self.path("runc"),
            "--pid-file".into(),
            pid_file.into(),
            "--cgroup".into(),
            spec.cgroup.into(),
        ];
        if let Some(limit) = spec.memory_limit {
            args.extend(["--memory-limit".into(), limit.to_string()]);
        }
        for (key, value) in spec.labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        for (host, inside) in spec.binds {
            args.extend([
                "--mount".into(),
                format!(
                    "type=bind,src={},dst={inside},options=rbind:rw",
                    host.display()
                ),
            ]);
        }
        args.extend([IMAGE_REF.into(), spec.id.into()]);
        args.extend(spec.command.iter().map(|&a| a.to_owned()));
        args
    }

    /// `ctr task exec` of `sh -c SCRIPT` in the task `id`, to its end: its exit status, which is
    /// the process's own (137 when the OOM killer took it).
    pub fn exec(&self, id: &str, script: &str) -> ExitStatus {
        let exec_id = format!("exec-{}", self.execs.fetch_add(1, Ordering::Relaxed));
        let fifo = self.path("fifo");
        let args = [
            "task",
            "exec",
            "--exec-id",
            &exec_id,
            "--fifo-dir",
            &fifo,
            id,
            "sh",
            "-c",
            script,
        ];
        self.try_ctr(&args).unwrap_or_else(|e| panic!("{e}")).status
    }

    /// `ctr task ls`.
    pub fn tasks(&self) -> Vec<TaskState> {
        let out = self.ctr(&["task", "ls"]);
        out.lines()
            .skip(1)
            .map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let [id, pid, status] = words[..] else {
                    panic!("`ctr task ls` wrote an unexpected line: {line:?}");
                };
                TaskState {
                    id: id.to_owned(),
                    pid: pid
                        .parse()
                        .unwrap_or_else(|e| panic!("pid in {line:?}: {e}")),
                    status: status.to_owned(),
                }
            })
            .collect()
    }

    /// The ids of every container containerd knows in [`NAMESPACE`].
    pub fn containers(&self) -> Vec<String> {
        self.ctr(&["containers", "ls", "--quiet"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Deletes the container `id` at once: its task killed and removed, then the container
    /// with its snapshot.
    pub fn delete(&self, id: &str) {
        self.try_delete(id).unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`Self::delete`], saying what failed instead of panicking: for drops.
    pub fn try_delete(&self, id: &str) -> Result<(), String> {
        let succeeded = |args: &[&str], absent_is_fine: bool| -> Result<(), String> {
            let output = self.try_ctr(args)?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            if output.status.success() || (absent_is_fine && stderr.contains("not found")) {
                Ok(())
            } else {
                Err(format!(
                    "ctr {args:?} failed with {:?}: {}",
                    output.status,
                    stderr.trim()
                ))
            }
        };
        // A container whose task never started, or already went, has none to delete.
        succeeded(&["task", "delete", "--force", id], true)?;
        succeeded(&["containers", "delete", id], false)
    }

    /// The processes of the shims that serve this containerd's tasks: each names its socket.
    pub fn shim_pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                let is_shim = args.first().is_some_and(|program| {
                    Path::new(std::ffi::OsStr::from_bytes(program))
                        .file_name()
                        .is_some_and(|name| name.as_bytes().starts_with(b"containerd-shim"))
                });
                is_shim
                    && args
                        .windows(2)
                        .any(|pair| pair[0] == b"-address" && pair[1] == self.socket.as_bytes())
            })
            .collect()
    }

    /// The directory everything of this containerd lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, sub: &str) -> String {
        self.dir.path().join(sub).display().to_string()
    }

    fn daemon(&self) -> MutexGuard<'_, Option<KillOnDrop>> {
        self.daemon
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns containerd and waits until it answers.
    fn try_spawn(&self) -> Result<(), String> {
        let mut daemon = self.daemon();
        assert!(daemon.is_none(), "containerd is already running");
        let log_path = self.dir.path().join("containerd.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("share {}: {e}", log_path.display()))?;
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        // A test process killed outright runs no drop: containerd then dies with the thread
        // that started it instead of serving on forever. Tests start and drop it on one thread.
        // SAFETY: prctl is async-signal-safe, so it may run between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut child = KillOnDrop(
            command
                .spawn()
                .map_err(|e| format!("cannot start containerd: {e}"))?,
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.answers() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Err(format!(
                    "containerd exited with {status} before it answered: {}",
                    self.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "containerd did not answer on {} within {READY_TIMEOUT:?}: {}",
                    self.socket,
                    self.log_tail()
                ));
            }
            // containerd says nowhere that it serves: re-ask, within READY_TIMEOUT.
            thread::sleep(Duration::from_millis(20));
        }
        *daemon = Some(child);
        Ok(())
    }

    /// Whether `ctr version` gets the server's answer. Asked only once the socket accepts:
    /// before, ctr would wait for it.
    pub fn answers(&self) -> bool {
        if UnixStream::connect(&self.socket).is_err() {
            return false;
        }
        let mut command = Command::new("ctr");
        command.args(["--address", &self.socket, "version"]);
        output_within(&mut command, Duration::from_secs(5)).is_ok_and(|o| o.status.success())
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn import_image(&self) {
        let tar = self.path("image.tar");
        docker::docker(&["save", "--output", &tar, docker::IMAGE]);
        self.ctr(&["images", "import", &tar]);
        let images = self.ctr(&["images", "ls", "--quiet"]);
        assert!(
            images.lines().any(|name| name == IMAGE_REF),
            "containerd named the imported {} otherwise than {IMAGE_REF}: {images}",
            docker::IMAGE
        );
    }

    /// Everything [`Drop`] does, each failure said instead of panicking mid-unwind.
    fn clean_up(&mut self) {
        let stopped = self.daemon().is_none();
        // A stopped containerd cannot delete its tasks: started again, it finds them.
        if stopped && let Err(e) = self.try_spawn() {
            eprintln!("could not start containerd again to delete its tasks: {e}");
        }
        if self.daemon().is_some() {
            match self.try_ctr(&["containers", "ls", "--quiet"]) {
                Ok(out) => {
                    for id in String::from_utf8_lossy(&out.stdout).lines() {
                        if let Err(e) = self.try_delete(id) {
                            eprintln!("could not delete container {id}: {e}");
                        }
                    }
                }
                Err(e) => eprintln!("could not list containerd's containers: {e}"),
            }
        }
        if let Some(daemon) = self.daemon().take()
            && let Err(e) = stop_daemon(daemon)
        {
            eprintln!("{e}");
        }
        // A shim whose task could not be deleted outlives containerd: it is this one's by the
        // socket it names.
        for pid in self.shim_pids() {
            // SAFETY: kill has no memory preconditions; the shim serves this test's containerd.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        // Rootfs mounts of tasks that could not be deleted: removing the directory would
        // otherwise reach into them.
        for mount in mounts_under(self.dir.path()) {
            let path = std::ffi::CString::new(mount.into_os_string().into_encoded_bytes())
                .expect("no NUL in a mount point");
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        if !self.shim_dir_existed {
            // Only when empty: a shim of another containerd may be using it by now.
            let _ = fs::remove_dir(SHIM_SOCKET_DIR);
            let _ = fs::remove_dir(Path::new(SHIM_SOCKET_DIR).parent().expect("a parent"));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// SIGTERM, then SIGKILL if containerd outlives [`STOP_TIMEOUT`].
fn stop_daemon(mut daemon: KillOnDrop) -> Result<(), String> {
    if terminate(&mut daemon, libc::SIGTERM, STOP_TIMEOUT).is_some()
        || terminate(&mut daemon, libc::SIGKILL, STOP_TIMEOUT).is_some()
    {
        Ok(())
    } else {
        Err(format!(
            "containerd (pid {}) outlived SIGKILL by {STOP_TIMEOUT:?}",
            daemon.id()
        ))
    }
}

/// A scratch directory whose socket paths fit `sun_path`: the system's temporary directory,
/// else /tmp when `TMPDIR` is too deep.
fn scratch_dir() -> TempDir {
    // The longest socket path inside: `<dir>/ttrpc.sock`, the name tempfile adds included.
    let fits = |parent: &Path| {
        parent.display().to_string().len() + "/oomtrace-e2e-containerd-XXXXXX/ttrpc.sock".len()
            <= SOCKET_PATH_MAX
    };
    let parent = [std::env::temp_dir(), PathBuf::from("/tmp")]
        .into_iter()
        .find(|p| fits(p))
        .expect("/tmp is short enough");
    let dir = temp_dir_in(&parent, "containerd", 0o700);
    let shown = dir.path().display().to_string();
    // The config quotes the paths as TOML basic strings.
    assert!(
        !shown.contains(['"', '\\']),
        "{shown} cannot be quoted in TOML"
    );
    dir
}

/// containerd's config: everything in `dir`, the CRI plugin off (it wants CNI, and the tests
/// make the calls kubelet's CRI would), metrics off.
fn config_toml(dir: &Path, socket: &str) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{dir}/ttrpc.sock"

[debug]
  address = "{dir}/debug.sock"

[metrics]
  address = ""
"#
    )
}

fn read_pid(file: &str) -> u32 {
    let mut text = String::new();
    fs::File::open(file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .unwrap_or_else(|e| panic!("read the task's pid file {file}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{file} holds no pid ({e}): {text:?}"))
}

/// The mount points below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    mounts
}
