//! oomtrace under soak: the release binary watching with `--json`, its stdout kept in a file
//! and its kill reports handed over as they arrive, its stderr kept and read, and its memory
//! sampled from `/proc` all along.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::process::Watched;
use crate::cmd;

/// oomtrace reads BTF and loads its program before it says it watches.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGINT to the summary line and exit: the output queues drain within a second or two.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the RSS is read: a spike shorter than this is still in VmHWM.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// What oomtrace says once it watches.
const READY_LINE: &str = "watching for OOM kills";

/// One kill report about a container: what the soak checks it by.
#[derive(Debug)]
pub struct Kill {
    pub id: String,
    pub name: Option<String>,
}

/// oomtrace's memory over the run, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub samples: u64,
    pub peak_rss: u64,
    pub last_rss: u64,
    pub hwm: u64,
}

pub struct Tracer {
    process: Watched,
    pid: u32,
    pub kills: Receiver<Kill>,
    said: Receiver<String>,
    /// Everything read from stderr so far.
    pub stderr: Vec<String>,
    stop_sampling: Option<mpsc::Sender<()>>,
    sampler: Option<JoinHandle<Memory>>,
}

impl Tracer {
    /// Starts `bin ARGS` and waits for its ready line. stdout goes to `stdout_file`, stderr to
    /// `stderr_file` as well as to the soak.
    pub fn start(
        bin: &Path,
        args: &[&str],
        stdout_file: &Path,
        stderr_file: &Path,
    ) -> Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{}`", cmd::display(&command)))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("oomtrace's stdout")?;
        let stderr = child.stderr.take().context("oomtrace's stderr")?;
        let process = Watched::new("oomtrace", child);

        let mut out = File::create(stdout_file)
            .with_context(|| format!("could not create {}", stdout_file.display()))?;
        let (kill, kills) = mpsc::channel();
        // Keeps every line and hands over, of the kill reports, only the container each names:
        // the soak's memory does not grow with oomtrace's output.
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = out.write_all(&line);
                if let Some(report) = container_kill(&String::from_utf8_lossy(&line)) {
                    let _ = kill.send(report);
                }
                line.clear();
            }
        });

        let mut err = File::create(stderr_file)
            .with_context(|| format!("could not create {}", stderr_file.display()))?;
        let (say, said) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(err, "{line}");
                let _ = say.send(line);
            }
        });

        let (stop_sampling, stop) = mpsc::channel();
        let sampler = thread::spawn(move || sample(pid, &stop));

        let mut tracer = Self {
            process,
            pid,
            kills,
            said,
            stderr: Vec::new(),
            stop_sampling: Some(stop_sampling),
            sampler: Some(sampler),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match tracer
                .said
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let ready = line.contains(READY_LINE);
                    tracer.stderr.push(line);
                    if ready {
                        return Ok(tracer);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "oomtrace ended before it watched: {}",
                    tracer.stderr.join(" | ")
                ),
                Err(RecvTimeoutError::Timeout) => bail!(
                    "oomtrace did not say it watches within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    tracer.stderr.join(" | ")
                ),
            }
        }
    }

    /// VmRSS now, in KiB.
    pub fn rss(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        kib(&status, "VmRSS:")
    }

    /// VmRSS, read every [`SAMPLE_EVERY`] until it is at most `budget` KiB or `within` has
    /// passed: the last reading, or `None` if oomtrace is gone.
    pub fn rss_at_rest(&self, budget: u64, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            let rss = self.rss()?;
            if rss <= budget || Instant::now() >= deadline {
                return Some(rss);
            }
            // The sampling period, not a wait for anything.
            std::thread::sleep(SAMPLE_EVERY);
        }
    }

    /// How oomtrace ended, if it has: during the soak it must not.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Stops oomtrace as Ctrl-C does, and collects the rest of its stderr (its summary line
    /// among it) and its memory figures, read last just before the signal.
    pub fn stop(&mut self) -> Result<(ExitStatus, Memory)> {
        if let Some(stop) = self.stop_sampling.take() {
            let _ = stop.send(());
        }
        let memory = self
            .sampler
            .take()
            .map(|sampler| sampler.join().unwrap_or_default())
            .unwrap_or_default();
        let status = self.process.stop("INT", STOP_TIMEOUT)?;
        // The stderr thread ends at oomtrace's end of stderr, so this ends too.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Ok(line) = self
            .said
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.stderr.push(line);
        }
        Ok((status, memory))
    }
}

/// The container of an `oom_kill` report, if it names one.
fn container_kill(line: &str) -> Option<Kill> {
    let report: serde_json::Value = serde_json::from_str(line).ok()?;
    if report["event"] != "oom_kill" {
        return None;
    }
    let container = &report["container"];
    Some(Kill {
        id: container["id"].as_str()?.to_owned(),
        name: container["name"].as_str().map(str::to_owned),
    })
}

/// Reads VmRSS and VmHWM every [`SAMPLE_EVERY`] until told to stop or oomtrace is gone.
fn sample(pid: u32, stop: &Receiver<()>) -> Memory {
    let mut memory = Memory::default();
    let path = format!("/proc/{pid}/status");
    loop {
        let Ok(status) = fs::read_to_string(&path) else {
            return memory;
        };
        if let Some(rss) = kib(&status, "VmRSS:") {
            memory.samples += 1;
            memory.last_rss = rss;
            memory.peak_rss = memory.peak_rss.max(rss);
        }
        if let Some(hwm) = kib(&status, "VmHWM:") {
            memory.hwm = hwm;
        }
        // The sampling period, not a wait for anything.
        if !matches!(
            stop.recv_timeout(SAMPLE_EVERY),
            Err(RecvTimeoutError::Timeout)
        ) {
            return memory;
        }
    }
}

fn kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_container_of_a_kill() {
        let line = r#"{"schema":1,"event":"oom_kill","victim":{"pid":4,"comm":"dd"},"cgroup":{"id":7,"path":"/docker/ab"},"container":{"runtime":"docker","id":"ab","name":"oomtrace-soak-1-hog-0","image":"i","pod":null},"oom":{"id":3}}"#;
        let kill = container_kill(line).expect("a kill");
        assert_eq!(kill.id, "ab");
        assert_eq!(kill.name.as_deref(), Some("oomtrace-soak-1-hog-0"));

        let unnamed = line.replace(r#""name":"oomtrace-soak-1-hog-0""#, r#""name":null"#);
        assert_eq!(container_kill(&unnamed).expect("a kill").name, None);
        let exit = line.replace("oom_kill", "container_exit");
        assert!(container_kill(&exit).is_none());
        let host =
            r#"{"schema":1,"event":"oom_kill","cgroup":{"id":7,"path":"/x"},"container":null}"#;
        assert!(container_kill(host).is_none());
    }

    #[test]
    fn reads_proc_status_sizes() {
        let status = "Name:\toomtrace\nVmHWM:\t    9876 kB\nVmRSS:\t    5432 kB\n";
        assert_eq!(kib(status, "VmRSS:"), Some(5432));
        assert_eq!(kib(status, "VmHWM:"), Some(9876));
        assert_eq!(kib(status, "VmSwap:"), None);
    }
}
