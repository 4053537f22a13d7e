//! The soak's own Docker daemon. The soak restarts Docker in the middle of its run, and
//! restarting the host's daemon would stop every other container on the host (this one keeps
//! no `live-restore`), other test runs' included. So the soak starts a dockerd of its own, on
//! its own socket, data and state directories, with no networking, and restarts only that.
//! Its containers still live in the host's cgroups under `/docker/<id>`, where oomtrace's
//! eBPF program sees their kills like any others; oomtrace asks this daemon about them.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use oomtrace_tests::{KillOnDrop, terminate};

use crate::console::{progress, stdout_within};

/// The label every soak container carries; its value is the soak's pid.
pub const LABEL_KEY: &str = "oomtrace-soak";
/// Any one `docker` call; `docker stop --time 5` on a wave is the slowest.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// From start to listening: a few seconds, more on a loaded host.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A daemon stopping stops its containers first, 10 s each at most, in parallel.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// `kill -9` is not refused; this bounds a machine in trouble.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// What dockerd logs once its API answers.
const READY_LINE: &str = "API listen on";

/// The `docker` CLI pointed at one daemon.
#[derive(Clone)]
pub struct Docker {
    host: String,
}

impl Docker {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command.arg("--host").arg(&self.host).args(args);
        command
    }

    /// `docker ARGS`, which must succeed: its trimmed stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        stdout_within(&mut self.command(args), DOCKER_TIMEOUT)
    }
}

pub struct Daemon {
    dir: PathBuf,
    pub socket: PathBuf,
    log: PathBuf,
    pub docker: Docker,
    process: Option<KillOnDrop>,
}

impl Daemon {
    /// Starts a dockerd whose every file is under `dir`, logging to `log`.
    pub fn start(dir: &Path, log: &Path) -> Result<Self> {
        let socket = dir.join("docker.sock");
        // Flags and `/etc/docker/daemon.json` may not both set an option: read an empty file.
        fs::write(dir.join("daemon.json"), "{}\n").context("could not write daemon.json")?;
        File::create(log).with_context(|| format!("could not create {}", log.display()))?;
        let mut daemon = Self {
            dir: dir.to_owned(),
            docker: Docker {
                host: format!("unix://{}", socket.display()),
            },
            socket,
            log: log.to_owned(),
            process: None,
        };
        daemon.launch()?;
        Ok(daemon)
    }

    fn launch(&mut self) -> Result<()> {
        let dockerd =
            which::which("dockerd").context("dockerd is missing: run `cargo xtask setup`")?;
        let unshare = which::which("unshare").context("unshare (util-linux) is missing")?;
        // In a network namespace of its own: a dockerd told `--bridge=none` deletes any link
        // named docker0 it can see, and in the host's namespace that is the host daemon's
        // bridge, which every `docker run` on the default network then fails without.
        let mut command = Command::new(unshare);
        command
            .args(["--net", "--"])
            .arg(dockerd)
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            .arg("--host")
            .arg(&self.docker.host)
            // No bridge and no iptables rules: the soak's containers need no network.
            .args(["--bridge=none", "--iptables=false"])
            // Copies the few MiB of busybox per container; needs no FUSE nor overlay support
            // from whatever filesystem the scratch directory is on.
            .arg("--storage-driver=vfs")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start {command:?}"))?;
        let stderr = child.stderr.take().context("dockerd's stderr")?;
        let mut log = OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("could not open {}", self.log.display()))?;
        let (ready, listening) = mpsc::channel();
        // Copies the log for as long as dockerd writes it, and says when it listens: the
        // sign it is ready, rather than a retried `docker info`.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains(READY_LINE) {
                    let _ = ready.send(());
                }
            }
        });
        self.process = Some(KillOnDrop(child));
        match listening.recv_timeout(READY_TIMEOUT) {
            Ok(()) => {
                progress(format_args!(
                    "the soak's dockerd listens on {} after {:.1} s",
                    self.socket.display(),
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                "the soak's dockerd ended before it listened; see {}",
                self.log.display()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the soak's dockerd did not listen within {} s; see {}",
                READY_TIMEOUT.as_secs(),
                self.log.display()
            ),
        }
    }

    /// Stops the daemon as an operator's `systemctl restart docker` does (SIGTERM: it stops its
    /// containers, then exits) and starts it again. How long it was gone.
    pub fn restart(&mut self) -> Result<Duration> {
        let down = Instant::now();
        self.stop()?;
        self.launch()?;
        Ok(down.elapsed())
    }

    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            let status = match terminate(&mut process, libc::SIGTERM, STOP_TIMEOUT) {
                Some(status) => status,
                None => {
                    progress(format_args!(
                        "the soak's dockerd outlived SIGTERM by {} s: killing it",
                        STOP_TIMEOUT.as_secs()
                    ));
                    terminate(&mut process, libc::SIGKILL, KILL_TIMEOUT)
                        .context("the soak's dockerd outlived SIGKILL")?
                }
            };
            if !status.success() {
                progress(format_args!(
                    "the soak's dockerd ended with {status}; see {}",
                    self.log.display()
                ));
            }
        }
        Ok(())
    }

    /// Copies `image` from the host's daemon, which `cargo xtask setup` built it in.
    pub fn load_image(&self, image: &str) -> Result<()> {
        let tar = self.dir.join("image.tar");
        let mut save = Command::new("docker");
        save.args(["save", "--output"]).arg(&tar).arg(image);
        stdout_within(&mut save, DOCKER_TIMEOUT)?;
        let mut load = self.docker.command(&["load", "--input"]);
        load.arg(&tar);
        stdout_within(&mut load, DOCKER_TIMEOUT)?;
        let _ = fs::remove_file(&tar);
        Ok(())
    }

    /// Removes every container labelled `label`; how many there were.
    pub fn remove_labelled(&self, label: &str) -> Result<usize> {
        let filter = format!("label={label}");
        let ids = self
            .docker
            .run(&["ps", "--all", "--quiet", "--filter", &filter])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        for chunk in ids.chunks(100) {
            let mut args = vec!["rm", "--force"];
            args.extend(chunk);
            self.docker.run(&args)?;
        }
        Ok(ids.len())
    }
}

impl Drop for Daemon {
    /// A soak that fails half-way removes its containers and stops its daemon all the same.
    fn drop(&mut self) {
        if self.process.is_none() {
            return;
        }
        if let Err(err) = self.remove_labelled(LABEL_KEY) {
            progress(format_args!(
                "could not remove the soak's containers: {err:#}"
            ));
        }
        if let Err(err) = self.stop() {
            progress(format_args!("could not stop the soak's dockerd: {err:#}"));
        }
    }
}
