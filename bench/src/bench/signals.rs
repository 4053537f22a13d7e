//! The signal storm. oomtrace's `signal_generate` program runs for every signal the machine
//! sends, so the signals it does not keep must cost nothing measurable: a million SIGUSR1
//! (programs trade it as a message) and fatal-class signals to host processes, which pass the
//! program's first test but not the next. A few SIGTERMs to a pid namespace's PID 1, which it
//! does keep, are measured beside them.
//!
//! The bench itself sends them, with kill(2) in a tight loop, to targets that survive them: a
//! host `sleep` that ignores SIGUSR1, SIGHUP and SIGTERM, and a `sleep` that is PID 1 of a
//! pid namespace of its own, which the kernel spares from any signal it has no handler for.
//! The kernel calls the program for an ignored signal as for any other.
//!
//! Two anchors, both measured in the same run. The cost to the sender: kill(2)'s wall time
//! per signal with no oomtrace running, before oomtrace starts and after it stops, against the
//! same with oomtrace watching. The floor of `bpf_stats`'s figure: a bpftrace probe on the same
//! tracepoint that does nothing, beside oomtrace while `bpf_stats` is on, whose run time per
//! call is what the kernel's clock reads around any program cost.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oomtrace_common::{SIGNALS_BYTES, SIGNALS_DROPPED_MAP, SIGNALS_MAP, SignalSent};
use oomtrace_core::source::signal::read_signal;

use super::bpf::{self, Kind, Map, RingPositions};
use super::phases::Bench;
use super::procs::{Watched, read_lines};
use super::report::STEADY_RSS_KIB;
use super::sys::{self, BpfStats, ProgStats};
use super::tools::{Tool, parse_dropped};
use crate::console::{probe, progress};
use crate::proc::{self, Memory};

/// Each target's whole life: the storm takes seconds.
const TARGET_LIFE: Duration = Duration::from_secs(300);
/// How long the pid namespace's shell may take to say its PID 1's pid.
const TARGET_READY: Duration = Duration::from_secs(10);
/// How long a killed target may take to be reaped.
const TARGET_EXIT: Duration = Duration::from_secs(10);
/// How long oomtrace may take to give back its start-up's memory before the storm.
const REST_WAIT: Duration = Duration::from_secs(10);

/// Bytes one [`SignalSent`] takes in the ring buffer.
const SIGNAL_RECORD_BYTES: u64 = bpf::ring_record_bytes(size_of::<SignalSent>());

/// What a part of the storm sends, and to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// SIGUSR1 to a host process: the program returns at its first test.
    NonFatal,
    /// SIGTERM and SIGHUP to a host process: past the first test, not the container test.
    FatalToHost,
    /// SIGTERM to a pid namespace's PID 1: recorded.
    ToContainerInit,
}

impl Part {
    pub const ALL: [Self; 3] = [Self::NonFatal, Self::FatalToHost, Self::ToContainerInit];

    /// The key in results.json.
    pub fn key(self) -> &'static str {
        match self {
            Self::NonFatal => "non_fatal_to_host",
            Self::FatalToHost => "fatal_to_host",
            Self::ToContainerInit => "fatal_to_container_init",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::NonFatal => "SIGUSR1 to a host process",
            Self::FatalToHost => "SIGTERM/SIGHUP to a host process",
            Self::ToContainerInit => "SIGTERM to a pid namespace's PID 1",
        }
    }

    /// The signals sent in turn.
    fn signals(self) -> &'static [i32] {
        match self {
            Self::NonFatal => &[libc::SIGUSR1],
            Self::FatalToHost => &[libc::SIGTERM, libc::SIGHUP],
            Self::ToContainerInit => &[libc::SIGTERM],
        }
    }
}

/// One part of the storm, with `bpf_stats` on.
#[derive(Clone, Debug)]
pub struct PartFigures {
    pub part: Part,
    pub sent: u64,
    /// kill(2)'s wall time over the part.
    pub seconds: f64,
    /// The program's runs over the part: the bench's signals and any other on the machine.
    pub stats: ProgStats,
    /// The empty probe's runs over the part.
    pub floor: ProgStats,
    /// Records the program wrote to the signal ring buffer meanwhile.
    pub written: u64,
    /// Of those, the records of the bench's own signals, the rest being signals elsewhere on
    /// the machine; `None` when more were written than the ring holds, so that the first
    /// could not be read back.
    pub bench_records: Option<u64>,
    /// Records it had no room for.
    pub dropped: u64,
}

impl PartFigures {
    pub fn ns_per_call(&self) -> Option<f64> {
        ns_per_call(&self.stats)
    }

    pub fn floor_ns_per_call(&self) -> Option<f64> {
        ns_per_call(&self.floor)
    }
}

pub fn ns_per_call(stats: &ProgStats) -> Option<f64> {
    (stats.run_cnt > 0).then(|| stats.run_time_ns as f64 / stats.run_cnt as f64)
}

pub struct SignalStorm {
    /// oomtrace's program, as bpftool names it.
    pub program: String,
    /// The empty probe's, as bpftool names it.
    pub floor_program: String,
    /// kill(2)'s wall time per SIGUSR1 with no oomtrace running, ns: before it started and
    /// after it stopped.
    pub unwatched_ns: Vec<f64>,
    /// The same with oomtrace watching and `bpf_stats` off, as on a node.
    pub watched_ns: f64,
    /// `signal_generate` programs loaded by others while no oomtrace of the bench's ran: each
    /// runs in the anchor's passes too.
    pub others_attached: usize,
    pub parts: Vec<PartFigures>,
    /// oomtrace before the first part and after the parts it keeps nothing of.
    pub memory_before: Memory,
    pub memory_after: Memory,
    /// oomtrace's CPU ticks over the parts it keeps nothing of.
    pub ticks: u64,
    /// Docker's events meanwhile, from work elsewhere on the machine: each wakes oomtrace,
    /// which follows Docker, so RSS and ticks then move for them. `None` if Docker did not say.
    pub docker_events: Option<u64>,
    /// Records oomtrace read from the ring buffer while the program ran with `bpf_stats` on,
    /// counted once it had stopped (it reads what is left before it exits).
    pub read: u64,
    /// oomtrace's last line.
    pub summary: Option<String>,
    pub summary_dropped: Option<u64>,
}

impl SignalStorm {
    pub fn part(&self, part: Part) -> Option<&PartFigures> {
        self.parts.iter().find(|p| p.part == part)
    }

    /// Every part's runs together.
    pub fn total(&self) -> ProgStats {
        self.parts
            .iter()
            .fold(ProgStats::default(), |sum, p| add(sum, p.stats))
    }

    /// The empty probe's runs over every part.
    pub fn floor_total(&self) -> ProgStats {
        self.parts
            .iter()
            .fold(ProgStats::default(), |sum, p| add(sum, p.floor))
    }

    /// The anchor: the passes with no oomtrace, averaged.
    pub fn unwatched_mean_ns(&self) -> f64 {
        self.unwatched_ns.iter().sum::<f64>() / self.unwatched_ns.len() as f64
    }

    pub fn written(&self) -> u64 {
        self.parts.iter().map(|p| p.written).sum()
    }

    pub fn dropped(&self) -> u64 {
        self.parts.iter().map(|p| p.dropped).sum()
    }
}

fn add(a: ProgStats, b: ProgStats) -> ProgStats {
    ProgStats {
        run_time_ns: a.run_time_ns + b.run_time_ns,
        run_cnt: a.run_cnt + b.run_cnt,
    }
}

/// `after`'s runs since `before`.
fn since(after: ProgStats, before: ProgStats) -> ProgStats {
    ProgStats {
        run_time_ns: after.run_time_ns - before.run_time_ns,
        run_cnt: after.run_cnt - before.run_cnt,
    }
}

/// A process that survives the storm, and how to end it.
struct Target {
    /// The process signalled.
    pid: u32,
    /// The child the supervisor reaps: the target itself, or the shell that forked it.
    child: Watched,
}

impl Target {
    /// A host `sleep` with SIGUSR1, SIGHUP and SIGTERM ignored before it execs, so that it
    /// ignores them from its first instruction: no wait for it to set anything up.
    fn on_host(bench: &Bench) -> Result<Self> {
        let mut command = Command::new("sleep");
        command
            .arg(TARGET_LIFE.as_secs().to_string())
            .stdin(Stdio::null());
        // SAFETY: signal(2) is async-signal-safe and touches no memory of the parent's.
        unsafe {
            command.pre_exec(|| {
                for sig in [libc::SIGUSR1, libc::SIGHUP, libc::SIGTERM] {
                    if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let spawned =
            bench
                .supervisor
                .spawn(&mut command, TARGET_LIFE, "the signal storm's host target")?;
        Ok(Self {
            pid: spawned.child.pid,
            child: spawned.child,
        })
    }

    /// A `sleep` that is PID 1 of a new pid namespace, as a container's main process is.
    /// unshare(1) moves only the children of the shell it runs into the namespace, so the
    /// shell's `$!` is its first child's pid on the host, which it prints.
    fn container_init(bench: &Bench) -> Result<Self> {
        let script = format!("sleep {} & echo $!; wait", TARGET_LIFE.as_secs());
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let spawned = bench.supervisor.spawn(
            &mut command,
            TARGET_LIFE,
            "the signal storm's pid namespace",
        )?;
        let mut child = spawned.child;
        let lines = read_lines(spawned.stdout.context("no stdout pipe")?, "pid-namespace");
        let Some(pid) = lines
            .recv_timeout(TARGET_READY)
            .ok()
            .and_then(|line| line.text.trim().parse::<u32>().ok())
        else {
            child.stop(sys::SIGKILL, TARGET_EXIT);
            bail!(
                "unshare --pid did not say its PID 1's pid within {} s",
                TARGET_READY.as_secs()
            );
        };
        let target = Self { pid, child };
        // The namespace's first process is its PID 1 from its fork on.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
        if nspid.and_then(|ids| ids.split_whitespace().last()) != Some("1") {
            target.end();
            bail!("pid {pid} is not PID 1 of a pid namespace (NSpid: {nspid:?})");
        }
        Ok(target)
    }

    /// Sends `count` of `signals` in turn, as fast as kill(2) returns; its wall time.
    fn send(&self, signals: &[i32], count: u64) -> Result<Duration> {
        let started = Instant::now();
        for (n, &sig) in (0..count).zip(signals.iter().cycle()) {
            if !sys::signal(self.pid, sig) {
                bail!(
                    "kill({}, {sig}) failed after {n} signals: {}",
                    self.pid,
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(started.elapsed())
    }

    /// SIGKILL, which a PID 1 gets from the host as any process does; its death ends the
    /// shell that waits for it.
    fn end(mut self) {
        sys::signal(self.pid, sys::SIGKILL);
        if self.child.pid != self.pid {
            self.child.wait(TARGET_EXIT);
        }
        self.child.stop(sys::SIGKILL, TARGET_EXIT);
    }
}

/// oomtrace's program and its signal ring buffer and drop counter, opened by the bench.
struct Watching {
    pid: u32,
    program: bpf::Held,
    ring: Map,
    dropped: Map,
}

/// What the program and the empty probe have done so far.
#[derive(Clone, Copy)]
struct Snapshot {
    stats: ProgStats,
    floor: ProgStats,
    ring: RingPositions,
    dropped: u64,
}

impl Watching {
    fn find(pid: u32) -> Result<Self> {
        let held = bpf::held_by(pid)?;
        let program = bpf::find(&held, Kind::Prog, "signal_generate")
            .context("oomtrace holds no signal_generate program")?
            .clone();
        let map = |name: &str| {
            bpf::find_map(&held, name)
                .with_context(|| format!("oomtrace holds no {name} map"))
                .and_then(|map| Map::open(map.id))
        };
        Ok(Self {
            pid,
            program,
            ring: map(SIGNALS_MAP)?,
            dropped: map(SIGNALS_DROPPED_MAP)?,
        })
    }

    fn snapshot(&self, floor: &Floor) -> Result<Snapshot> {
        Ok(Snapshot {
            stats: bpf::prog_stats(self.pid, &self.program)?,
            floor: bpf::prog_stats(floor.pid, &floor.program)?,
            ring: self.ring.ring_positions()?,
            dropped: self.dropped.per_cpu_sum()?,
        })
    }
}

/// The empty probe's program.
struct Floor {
    pid: u32,
    program: bpf::Held,
}

impl Floor {
    fn find(pid: u32) -> Result<Self> {
        let held = bpf::held_by(pid)?;
        let program = bpf::find(&held, Kind::Prog, "signal_generate")
            .context("bpftrace holds no signal_generate program")?
            .clone();
        Ok(Self { pid, program })
    }
}

/// The storm; see the module's documentation.
pub fn storm(bench: &Bench) -> Result<SignalStorm> {
    let config = bench.config;
    let (non_fatal, fatal, to_init) = (
        config.signals_non_fatal,
        config.signals_fatal_to_host,
        config.signals_to_container_init,
    );
    progress(format_args!(
        "signal storm: {non_fatal} SIGUSR1 and {fatal} SIGTERM/SIGHUP to a host process, \
         {to_init} SIGTERM to a pid namespace's PID 1"
    ));
    let host = Target::on_host(bench)?;
    let init = match Target::container_init(bench) {
        Ok(init) => init,
        Err(err) => {
            host.end();
            return Err(err);
        }
    };
    let measured = measure(bench, &host, &init);
    host.end();
    init.end();
    measured
}

fn measure(bench: &Bench, host: &Target, init: &Target) -> Result<SignalStorm> {
    let config = bench.config;
    let per_signal_ns = |took: Duration, count: u64| took.as_secs_f64() * 1e9 / count.max(1) as f64;
    let others_attached = bpf::loaded_programs()?
        .iter()
        .filter(|name| name.starts_with("signal_generate"))
        .count();
    if others_attached > 0 {
        progress(format_args!(
            "{others_attached} signal_generate programs of other tools are loaded: they run in the anchor's passes too"
        ));
    }
    let non_fatal = Part::NonFatal.signals();
    let mut unwatched_ns = vec![per_signal_ns(
        host.send(non_fatal, config.signals_non_fatal)?,
        config.signals_non_fatal,
    )];

    let running = bench.start(Tool::Oomtrace(None), TARGET_LIFE)?;
    let watching = Watching::find(running.pid)?;
    // oomtrace at rest, as on a node between incidents: its start-up's work is not the
    // storm's, and it gives back what start-up touched once it has been quiet for 2 s (later
    // on a busy machine), so that the RSS compared below is a resting one.
    proc::rss_at_rest(running.pid, STEADY_RSS_KIB, REST_WAIT);
    let watched_ns = per_signal_ns(
        host.send(non_fatal, config.signals_non_fatal)?,
        config.signals_non_fatal,
    );

    // Started only now, so that the pass above had oomtrace's program alone.
    let empty_probe = bench.start(Tool::EmptySignalProbe, TARGET_LIFE)?;
    let floor = Floor::find(empty_probe.pid)?;
    let memory_before = proc::memory(running.pid)?;
    let ticks_before = proc::cpu_ticks(running.pid)?;
    let stats = BpfStats::enable()?;
    let host_parts_since = docker_time();
    let first = watching.snapshot(&floor)?;
    let mut parts = Vec::new();
    let mut last = first;
    let mut after_host_parts = None;
    for part in Part::ALL {
        let (target, count) = match part {
            Part::NonFatal => (host, config.signals_non_fatal),
            Part::FatalToHost => (host, config.signals_fatal_to_host),
            Part::ToContainerInit => (init, config.signals_to_container_init),
        };
        let took = target.send(part.signals(), count)?;
        let now = watching.snapshot(&floor)?;
        // Read back before the next part writes over them.
        let records = watching
            .ring
            .ring_records(last.ring.producer, now.ring.producer)?;
        parts.push(PartFigures {
            part,
            sent: count,
            seconds: took.as_secs_f64(),
            stats: since(now.stats, last.stats),
            floor: since(now.floor, last.floor),
            written: (now.ring.producer - last.ring.producer) / SIGNAL_RECORD_BYTES,
            bench_records: records.map(|records| sent_by_this_process(&records)),
            dropped: now.dropped - last.dropped,
        });
        last = now;
        if part == Part::FatalToHost {
            after_host_parts = Some((
                proc::memory(running.pid)?,
                proc::cpu_ticks(running.pid)?,
                docker_time(),
            ));
        }
    }
    drop(stats);
    let (memory_after, ticks_after, host_parts_until) =
        after_host_parts.context("the host parts ran")?;
    let docker_events = docker_events(&host_parts_since, &host_parts_until);
    if let Some(p) = parts.iter().find(|p| p.part == Part::ToContainerInit)
        && p.dropped > 0
    {
        progress(format_args!(
            "{} of {} signals to the pid namespace's PID 1 found the ring buffer full: the burst \
             outran oomtrace's reading ({} records fit)",
            p.dropped,
            p.sent,
            u64::from(SIGNALS_BYTES) / SIGNAL_RECORD_BYTES
        ));
    }
    empty_probe.stop()?;

    let stopped = running.stop()?;
    // oomtrace read every record left before it exited; the bench's descriptor keeps the
    // ring, so its reader's last position can still be read.
    let read = (watching.ring.ring_positions()?.consumer - first.ring.consumer)
        .min(last.ring.producer - first.ring.producer)
        / SIGNAL_RECORD_BYTES;
    let summary = stopped.summary();
    unwatched_ns.push(per_signal_ns(
        host.send(non_fatal, config.signals_non_fatal)?,
        config.signals_non_fatal,
    ));
    Ok(SignalStorm {
        program: watching.program.name.clone(),
        floor_program: floor.program.name.clone(),
        unwatched_ns,
        watched_ns,
        others_attached,
        parts,
        memory_before,
        memory_after,
        ticks: ticks_after.saturating_sub(ticks_before),
        docker_events,
        read,
        summary_dropped: summary.as_deref().and_then(parse_dropped),
        summary,
    })
}

/// How many of `records` are of signals this process sent.
fn sent_by_this_process(records: &[Vec<u8>]) -> u64 {
    let bench = std::process::id();
    records
        .iter()
        .filter_map(|bytes| read_signal(bytes))
        .filter(|record| record.sender_tgid == bench)
        .count() as u64
}

/// docker answers in well under a second; this bounds a machine in trouble.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Now, as `docker events --since` reads a time: seconds since the epoch, to the nanosecond.
fn docker_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// How many events Docker sent between `since` and `until`; `None` if it did not answer.
fn docker_events(since: &str, until: &str) -> Option<u64> {
    let listed = probe(
        Command::new("docker").args([
            "events",
            "--since",
            since,
            "--until",
            until,
            "--format",
            "{{.Type}}",
        ]),
        DOCKER_TIMEOUT,
    )?;
    Some(listed.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}
