//! The two tools side by side: oomtrace, and its peer, a bpftrace one-liner on
//! `tracepoint:oom:mark_victim` (bcc's oomkill and bpftrace's oomkill.bt need kprobes, which
//! the project's kernels lack). Each is started, timed to ready, read kill by kill and
//! stopped the same way.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use serde_json::Value;

use super::procs::{Line, Supervisor, Watched, read_lines};
use super::sys;

/// What bpftrace prints in `BEGIN`, which runs once every probe is attached.
pub const BPFTRACE_READY: &str = "oomtrace-bench: ready";
/// oomtrace's ready line on stderr, printed once the kernel program is attached.
pub const OOMTRACE_READY: &str = "oomtrace: watching for OOM kills (";
/// How long a tool may take to get ready before the bench gives up on it.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a tool may take to exit after SIGINT.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The peer: one line when attached, one line per victim with its pid and the kernel's
/// timestamp. `-B line` flushes each line as printed, as oomtrace does.
pub fn bpftrace_program() -> String {
    format!(
        "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} \
         tracepoint:oom:mark_victim {{ printf(\"kill %d %llu\\n\", args->pid, nsecs); }}"
    )
}

/// The floor of the signal storm: a probe on the tracepoint oomtrace's signal program runs
/// on that does nothing at all (2 instructions once compiled), so that `bpf_stats` counts only
/// what any program there costs: the kernel's clock reads around it and the call.
pub fn empty_signal_probe_program() -> String {
    format!("BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} tracepoint:signal:signal_generate {{ }}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// oomtrace in the mode given, or its default (the richest that works) for `None`.
    Oomtrace(Option<&'static str>),
    Bpftrace,
    /// bpftrace running [`empty_signal_probe_program`], beside oomtrace in the signal storm.
    EmptySignalProbe,
}

impl Tool {
    pub fn label(self) -> String {
        match self {
            Self::Oomtrace(None) => "oomtrace".into(),
            Self::Oomtrace(Some(mode)) => format!("oomtrace --attach {mode}"),
            Self::Bpftrace => "bpftrace".into(),
            Self::EmptySignalProbe => "bpftrace's empty signal_generate probe".into(),
        }
    }

    /// The key in results.json.
    pub fn key(self) -> &'static str {
        match self {
            Self::Oomtrace(None) => "default",
            Self::Oomtrace(Some(mode)) => mode,
            Self::Bpftrace => "bpftrace",
            Self::EmptySignalProbe => "bpftrace_empty_signal_probe",
        }
    }
}

/// Which clock bpftrace's `nsecs` reads. bpftrace 0.17 calls `bpf_ktime_get_boot_ns` where the
/// kernel has it (5.7+), so `nsecs` is `CLOCK_BOOTTIME`, the clock of oomtrace's `boot_ns`;
/// an older kernel would give `CLOCK_MONOTONIC`, which the bench then converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsecsClock {
    Boottime,
    Monotonic,
}

impl NsecsClock {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Boottime => "CLOCK_BOOTTIME (bpf_ktime_get_boot_ns)",
            Self::Monotonic => {
                "CLOCK_MONOTONIC (bpf_ktime_get_ns), converted to CLOCK_BOOTTIME by the offset between the two clocks read as each line arrives"
            }
        }
    }
}

/// Reads which helper bpftrace compiles `nsecs` to, from its dry run's LLVM IR (`-d`): helper
/// 125 is `bpf_ktime_get_boot_ns`, helper 5 `bpf_ktime_get_ns`.
pub fn nsecs_clock(bpftrace: &std::path::Path) -> Result<NsecsClock> {
    let out = Command::new(bpftrace)
        .args(["-d", "-e", &bpftrace_program()])
        .stdin(Stdio::null())
        .output()
        .context("could not run bpftrace -d")?;
    let ir = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    clock_from_ir(&ir).context(
        "bpftrace -d shows no call to bpf_ktime_get_boot_ns (125) or bpf_ktime_get_ns (5) for nsecs",
    )
}

fn clock_from_ir(ir: &str) -> Option<NsecsClock> {
    let line = ir.lines().find(|l| l.contains("%get_ns ="))?;
    if line.contains("inttoptr (i64 125 to") {
        Some(NsecsClock::Boottime)
    } else if line.contains("inttoptr (i64 5 to") {
        Some(NsecsClock::Monotonic)
    } else {
        None
    }
}

pub struct Paths {
    pub oomtrace: PathBuf,
    pub hog: PathBuf,
    pub bpftrace: PathBuf,
    /// The socket of a containerd of the bench's own, which oomtrace is pointed at so that it
    /// runs with both runtime clients connected, as on a node with Docker and containerd.
    pub containerd_socket: Option<String>,
}

impl Paths {
    /// oomtrace and the hog as cargo built them into `target` (or where `OOMTRACE_BIN` and
    /// `OOMTRACE_HOG` say), and bpftrace on PATH.
    pub fn find(target: &std::path::Path) -> Result<Self> {
        let hog = oomtrace_tests::hog_bin(target.join("release").join("hog"));
        if !hog.is_file() {
            bail!(
                "{} is missing: `cargo build --release` builds it",
                hog.display()
            );
        }
        Ok(Self {
            oomtrace: oomtrace_tests::oomtrace_bin(),
            hog,
            bpftrace: which::which("bpftrace")
                .context("bpftrace is missing: `cargo xtask bench` installs it")?,
            containerd_socket: None,
        })
    }
}

/// Fails unless `oomtrace check` finds both Docker and the bench's containerd answering, so
/// that every figure is taken with both clients connected.
pub fn both_runtimes_answer(paths: &Paths) -> Result<()> {
    let mut check = Command::new(&paths.oomtrace);
    check.arg("check");
    if let Some(socket) = &paths.containerd_socket {
        check.args(["--containerd-socket", socket]);
    }
    let output = oomtrace_tests::process::output_within(&mut check, CHECK_TIMEOUT)
        .map_err(|e| anyhow::anyhow!(e))?;
    let said = String::from_utf8_lossy(&output.stdout);
    for runtime in ["Docker", "containerd"] {
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("{runtime}: ")))
            .unwrap_or_default();
        if !line.contains(": answers at ") {
            bail!(
                "the bench measures oomtrace with both runtime clients connected, and {runtime} does not answer: {line:?}"
            );
        }
        crate::console::progress(line);
    }
    Ok(())
}

/// `oomtrace check` attaches and detaches twice and asks both runtimes; seconds here.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// One victim as a tool reported it, and when the line reached the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kill {
    pub pid: u32,
    /// The kernel's stamp of the kill, `CLOCK_BOOTTIME` ns.
    pub boot_ns: u64,
    pub at_ns: u64,
    /// oomtrace's `oom.kind`: killed (true) or only marked (false); unknown for bpftrace.
    pub killed: Option<bool>,
    /// Whether oomtrace's report has every field only the kernel log's OOM report gives
    /// ([`LOG_FIELDS`]); unknown for bpftrace.
    pub log_fields: Option<bool>,
}

/// What only the kernel's OOM report tells about a memory cgroup's OOM: its constraint, the
/// cgroup's usage and breakdown, and the task dump.
pub const LOG_FIELDS: [&str; 4] = ["constraint", "memcg_usage_bytes", "memcg_stat", "top_tasks"];

/// One kill as oomtrace's JSON tells it.
#[derive(Debug, PartialEq, Eq)]
pub struct OomtraceKill {
    pub pid: u32,
    pub boot_ns: u64,
    pub killed: Option<bool>,
    pub log_fields: bool,
}

impl Kill {
    pub fn latency_ns(&self) -> i64 {
        self.at_ns as i64 - self.boot_ns as i64
    }
}

/// A JSON report's victim pid, boot-clock stamp, kind, and whether it has the log's fields.
pub fn parse_oomtrace_kill(text: &str) -> Option<OomtraceKill> {
    if !text.starts_with('{') {
        return None;
    }
    let report: Value = serde_json::from_str(text).ok()?;
    if report["event"] != "oom_kill" {
        return None;
    }
    let victim = &report["victim"];
    let pid = victim["pid"].as_u64().or_else(|| victim["tid"].as_u64())?;
    let boot_ns = report["boot_ns"].as_u64()?;
    let killed = match report["oom"]["kind"].as_str() {
        Some("killed") => Some(true),
        Some("marked") => Some(false),
        _ => None,
    };
    let log_fields = LOG_FIELDS.iter().all(|f| !report["oom"][f].is_null());
    Some(OomtraceKill {
        pid: u32::try_from(pid).ok()?,
        boot_ns,
        killed,
        log_fields,
    })
}

/// `kill <pid> <nsecs>`.
pub fn parse_bpftrace_kill(text: &str) -> Option<(u32, u64)> {
    let mut words = text.strip_prefix("kill ")?.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let ns = words.next()?.parse().ok()?;
    words.next().is_none().then_some((pid, ns))
}

/// bpftrace's `Lost N events` when its perf buffer overflowed.
pub fn parse_lost(text: &str) -> Option<u64> {
    text.trim()
        .strip_prefix("Lost ")?
        .strip_suffix(" events")?
        .parse()
        .ok()
}

/// The `N events dropped` of oomtrace's summary line.
pub fn parse_dropped(summary: &str) -> Option<u64> {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words.windows(3).find_map(|w| {
        (matches!(w[1], "event" | "events") && w[2].trim_end_matches([',', ';']) == "dropped")
            .then(|| w[0].parse().ok())
            .flatten()
    })
}

pub struct Running {
    pub tool: Tool,
    pub pid: u32,
    /// From just before exec to the ready line reaching the bench.
    pub ready_ms: f64,
    child: Watched,
    stdout: Receiver<Line>,
    stderr: Receiver<Line>,
    stderr_seen: Vec<String>,
    clock: NsecsClock,
    /// Kills read while looking for others, in arrival order.
    aside: Vec<Kill>,
    /// Events bpftrace said it lost.
    pub lost: u64,
}

pub struct Stopped {
    pub stderr: Vec<String>,
    /// Kills that arrived after the last one asked for.
    pub kills: Vec<Kill>,
    pub lost: u64,
}

impl Stopped {
    /// oomtrace's summary line at exit: `oomtrace: N OOM kills reported, …`.
    pub fn summary(&self) -> Option<String> {
        self.stderr
            .iter()
            .rev()
            .find(|l| l.contains("OOM kill") && l.contains("reported"))
            .cloned()
    }
}

impl Running {
    /// Starts `tool` and waits for its ready line. `limit` bounds its whole life.
    pub fn start(
        supervisor: &Supervisor,
        paths: &Paths,
        tool: Tool,
        clock: NsecsClock,
        limit: Duration,
    ) -> Result<Self> {
        let mut cmd = match tool {
            Tool::Oomtrace(mode) => {
                let mut cmd = Command::new(&paths.oomtrace);
                // The journal is on by default; a bench's thousands of kills stay out of it.
                cmd.args(["--json", "--no-journal"]);
                if let Some(socket) = &paths.containerd_socket {
                    cmd.args(["--containerd-socket", socket]);
                }
                if let Some(mode) = mode {
                    cmd.args(["--attach", mode]);
                }
                cmd
            }
            Tool::Bpftrace | Tool::EmptySignalProbe => {
                let program = if tool == Tool::Bpftrace {
                    bpftrace_program()
                } else {
                    empty_signal_probe_program()
                };
                let mut cmd = Command::new(&paths.bpftrace);
                cmd.args(["-B", "line", "-e", &program]);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let exec_ns = sys::boottime_ns();
        let spawned = supervisor.spawn(&mut cmd, limit, &tool.label())?;
        let pid = spawned.child.pid;
        let mut running = Self {
            tool,
            pid,
            ready_ms: f64::NAN,
            child: spawned.child,
            stdout: read_lines(spawned.stdout.context("no stdout pipe")?, "stdout"),
            stderr: read_lines(spawned.stderr.context("no stderr pipe")?, "stderr"),
            stderr_seen: Vec::new(),
            clock,
            aside: Vec::new(),
            lost: 0,
        };
        let ready = running.wait_ready(Instant::now() + READY_LIMIT);
        match ready {
            Some(at_ns) => {
                running.ready_ms = (at_ns.saturating_sub(exec_ns)) as f64 / 1e6;
                Ok(running)
            }
            None => {
                running.child.stop(sys::SIGKILL, Duration::from_secs(5));
                running.drain_stderr(Duration::from_secs(2));
                bail!(
                    "{} did not get ready within {} s; its stderr: {}",
                    tool.label(),
                    READY_LIMIT.as_secs(),
                    running.stderr_seen.join(" | ")
                )
            }
        }
    }

    fn wait_ready(&mut self, deadline: Instant) -> Option<u64> {
        let (stream, ready) = match self.tool {
            Tool::Oomtrace(_) => (&self.stderr, OOMTRACE_READY),
            Tool::Bpftrace | Tool::EmptySignalProbe => (&self.stdout, BPFTRACE_READY),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stream.recv_timeout(left).ok()?;
            let found = line.text.starts_with(ready);
            if matches!(self.tool, Tool::Oomtrace(_)) {
                self.stderr_seen.push(line.text);
            }
            if found {
                return Some(line.at_ns);
            }
        }
    }

    fn drain_stderr(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line.text),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Turns a line of stdout into a kill, if it is one; counts bpftrace's lost events.
    fn kill_of(&mut self, line: &Line) -> Option<Kill> {
        match self.tool {
            Tool::Oomtrace(_) => {
                let kill = parse_oomtrace_kill(&line.text)?;
                Some(Kill {
                    pid: kill.pid,
                    boot_ns: kill.boot_ns,
                    at_ns: line.at_ns,
                    killed: kill.killed,
                    log_fields: Some(kill.log_fields),
                })
            }
            Tool::Bpftrace | Tool::EmptySignalProbe => {
                if let Some(lost) = parse_lost(&line.text) {
                    self.lost += lost;
                    return None;
                }
                let (pid, nsecs) = parse_bpftrace_kill(&line.text)?;
                let boot_ns = match self.clock {
                    NsecsClock::Boottime => nsecs,
                    NsecsClock::Monotonic => {
                        nsecs + sys::boottime_ns().saturating_sub(sys::monotonic_ns())
                    }
                };
                Some(Kill {
                    pid,
                    boot_ns,
                    at_ns: line.at_ns,
                    killed: None,
                    log_fields: None,
                })
            }
        }
    }

    /// The next kill reported, waiting until `deadline`.
    pub fn next_kill(&mut self, deadline: Instant) -> Option<Kill> {
        if !self.aside.is_empty() {
            return Some(self.aside.remove(0));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).ok()?;
            if let Some(kill) = self.kill_of(&line) {
                return Some(kill);
            }
        }
    }

    /// The report of the victim `pid`, waiting until `deadline`; other kills are kept.
    pub fn kill_of_pid(&mut self, pid: u32, deadline: Instant) -> Option<Kill> {
        if let Some(at) = self.aside.iter().position(|k| k.pid == pid) {
            return Some(self.aside.remove(at));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).ok()?;
            if let Some(kill) = self.kill_of(&line) {
                if kill.pid == pid {
                    return Some(kill);
                }
                self.aside.push(kill);
            }
        }
    }

    /// Reads kills until every pid in `pids` has been reported or `deadline` passes. Returns
    /// the reports of those pids; others are kept.
    pub fn kills_of(&mut self, pids: &[u32], deadline: Instant) -> Vec<Kill> {
        let mut wanted: std::collections::HashSet<u32> = pids.iter().copied().collect();
        let mut found = Vec::new();
        self.aside.retain(|kill| {
            if wanted.remove(&kill.pid) {
                found.push(*kill);
                false
            } else {
                true
            }
        });
        while !wanted.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.stdout.recv_timeout(left) else {
                break;
            };
            if let Some(kill) = self.kill_of(&line) {
                if wanted.remove(&kill.pid) {
                    found.push(kill);
                } else {
                    self.aside.push(kill);
                }
            }
        }
        found
    }

    /// Reads kills until `count` have arrived in all (those kept aside included), or
    /// `deadline`. Returns them all.
    pub fn kills_until(&mut self, count: usize, deadline: Instant) -> Vec<Kill> {
        let mut kills = std::mem::take(&mut self.aside);
        while kills.len() < count {
            match self.next_kill(deadline) {
                Some(kill) => kills.push(kill),
                None => break,
            }
        }
        kills
    }

    /// SIGINT, as a user's Ctrl-C: oomtrace detaches and prints its summary. Returns what was
    /// left on its streams.
    pub fn stop(mut self) -> Result<Stopped> {
        let status = self.child.stop(sys::SIGINT, STOP_GRACE);
        let mut kills = std::mem::take(&mut self.aside);
        // The streams end when the process does: read them to the end.
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            if let Some(kill) = self.kill_of(&line) {
                kills.push(kill);
            }
        }
        self.drain_stderr(Duration::from_secs(5));
        let label = self.tool.label();
        match status {
            None => bail!(
                "{label} did not exit within {} s of SIGINT; its stderr: {}",
                STOP_GRACE.as_secs(),
                self.stderr_seen.join(" | ")
            ),
            Some(status) if !status.success() && matches!(self.tool, Tool::Oomtrace(_)) => bail!(
                "{label} exited with {status} after SIGINT; its stderr: {}",
                self.stderr_seen.join(" | ")
            ),
            Some(_) => {}
        }
        Ok(Stopped {
            stderr: self.stderr_seen,
            kills,
            lost: self.lost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_tools_lines() {
        let report = r#"{"schema":1,"event":"oom_kill","time":"2026-11-22T04:47:30.033410Z","boot_ns":123456789,"victim":{"pid":10390,"tid":10391},"oom":{"kind":"killed"},"source":"tp_btf"}"#;
        assert_eq!(
            parse_oomtrace_kill(report),
            Some(OomtraceKill {
                pid: 10390,
                boot_ns: 123_456_789,
                killed: Some(true),
                log_fields: false
            })
        );
        let logged = r#"{"event":"oom_kill","boot_ns":1,"victim":{"pid":7},"oom":{"kind":"marked","constraint":"CONSTRAINT_MEMCG","memcg_usage_bytes":1,"memcg_stat":{},"top_tasks":[]}}"#;
        assert_eq!(
            parse_oomtrace_kill(logged),
            Some(OomtraceKill {
                pid: 7,
                boot_ns: 1,
                killed: Some(false),
                log_fields: true
            })
        );
        let exit = r#"{"schema":1,"event":"container_exit","boot_ns":1}"#;
        assert_eq!(parse_oomtrace_kill(exit), None);
        assert_eq!(
            parse_bpftrace_kill("kill 4242 5885384165401"),
            Some((4242, 5_885_384_165_401))
        );
        assert_eq!(parse_bpftrace_kill("Attaching 2 probes..."), None);
        assert_eq!(parse_bpftrace_kill("kill 1 2 3"), None);
        assert_eq!(parse_lost("Lost 17 events"), Some(17));
        assert_eq!(parse_lost("kill 1 2"), None);
    }

    #[test]
    fn reads_the_dropped_count_of_the_summary() {
        assert_eq!(
            parse_dropped(
                "oomtrace: 87 OOM kills reported, 0 events dropped; the kernel counted 87"
            ),
            Some(0)
        );
        assert_eq!(
            parse_dropped(
                "oomtrace: 5 OOM kills reported, 2 events dropped (2 found the kernel's ring buffer full); the kernel counted 7"
            ),
            Some(2)
        );
        assert_eq!(
            parse_dropped("oomtrace: 1 OOM kill reported, 1 event dropped; the kernel counted 2"),
            Some(1)
        );
        assert_eq!(parse_dropped("oomtrace: watching for OOM kills"), None);
    }

    #[test]
    fn tells_the_clock_of_nsecs_from_the_ir() {
        let boot = "  %get_ns = tail call i64 inttoptr (i64 125 to i64 ()*)()";
        let mono = "  %get_ns = tail call i64 inttoptr (i64 5 to i64 ()*)()";
        assert_eq!(clock_from_ir(boot), Some(NsecsClock::Boottime));
        assert_eq!(clock_from_ir(mono), Some(NsecsClock::Monotonic));
        assert_eq!(clock_from_ir("no such call"), None);
    }

    #[test]
    fn the_one_liner_prints_what_the_bench_reads() {
        let program = bpftrace_program();
        assert!(program.contains("tracepoint:oom:mark_victim"));
        assert!(program.contains(BPFTRACE_READY));
        assert!(program.contains("kill %d %llu"));
        let empty = empty_signal_probe_program();
        assert!(empty.contains(BPFTRACE_READY));
        assert!(empty.ends_with("tracepoint:signal:signal_generate { }"));
    }
}
