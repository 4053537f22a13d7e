//! The measurements. Each runs both tools under the same conditions: alternating, where one
//! tool's work could disturb the other's figure (ready, latency, storm), or side by side,
//! where both only wait and then see the same kills (memory, idle CPU, kernel cost).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use oomtrace_core::kernel::vmstat;
use oomtrace_tests::Hog;

use super::bpf;
use super::cgroups::{Cgroups, HogEnd, Hogs, Until};
use super::config::Config;
use super::kmsg::KernelLog;
use super::procs::Supervisor;
use super::stats::percentile;
use super::sys::{self, ProgStats};
use super::tools::{Kill, NsecsClock, Paths, Running, Tool, parse_dropped};
use crate::console::{probe, progress};
use crate::proc::{self, Memory};

pub struct Bench<'a> {
    pub supervisor: &'a Supervisor,
    pub paths: &'a Paths,
    pub clock: NsecsClock,
    pub config: &'a Config,
    pub cgroups: &'a Cgroups,
}

/// How long a report may take to reach the bench before it counts as missing.
const REPORT_WAIT: Duration = Duration::from_secs(15);
/// docker answers in well under a second; this bounds a machine in trouble.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The kernel's count of OOM kills so far.
fn kernel_oom_kills() -> Result<u64> {
    vmstat::kernel_oom_kills().context("could not read the kernel's count of OOM kills")
}

impl Bench<'_> {
    pub fn start(&self, tool: Tool, life: Duration) -> Result<Running> {
        Running::start(self.supervisor, self.paths, tool, self.clock, life)
    }

    fn hogs(&self) -> Hogs<'_> {
        Hogs {
            hog: &self.paths.hog,
            cgroups: self.cgroups,
        }
    }
}

pub const READY_TOOLS: [Tool; 5] = [
    Tool::Bpftrace,
    Tool::Oomtrace(None),
    Tool::Oomtrace(Some("tp_btf")),
    Tool::Oomtrace(Some("raw_tp")),
    Tool::Oomtrace(Some("tracepoint")),
];

pub struct Ready {
    pub tool: Tool,
    pub runs_ms: Vec<f64>,
}

/// Exec to ready, `ready_runs` times per tool and mode, in rotating order so that no tool
/// always follows the same one.
pub fn ready(bench: &Bench) -> Result<Vec<Ready>> {
    let runs = bench.config.ready_runs;
    progress(format_args!(
        "ready: {runs} starts of bpftrace and of oomtrace in each mode"
    ));
    let mut results: Vec<Ready> = READY_TOOLS
        .iter()
        .map(|&tool| Ready {
            tool,
            runs_ms: Vec::new(),
        })
        .collect();
    for round in 0..runs {
        for k in 0..READY_TOOLS.len() {
            let i = (round + k) % READY_TOOLS.len();
            let running = bench.start(READY_TOOLS[i], Duration::from_secs(60))?;
            results[i].runs_ms.push(running.ready_ms);
            let stopped = running.stop()?;
            if let Some(line) = stopped
                .stderr
                .iter()
                .find(|l| l.contains("Docker enrichment is unavailable"))
            {
                bail!("ready is measured with Docker enrichment on, but oomtrace said: {line}");
            }
        }
    }
    Ok(results)
}

/// A BPF program of a tool, and what the kernel counted of its runs.
#[derive(Clone, Debug)]
pub struct Prog {
    pub name: String,
    pub stats: ProgStats,
}

pub struct MemoryFigures {
    pub tool: Tool,
    pub idle: Memory,
    /// [`SETTLED_AFTER`] after the first `warm_kills` kills, as `settled` is read after the
    /// last: a watch gives memory back 2 s after activity even while kills go on, so readings
    /// taken during kills differ by whether a release just came, not by growth.
    pub warm: Memory,
    /// Right after the last kill's report, before any release.
    pub after: Memory,
    /// [`SETTLED_AFTER`] after the last kill: the steady state a watch returns to.
    pub settled: Memory,
    pub warm_kills: usize,
    pub kills: usize,
    /// Of `kills`, those the tool reported.
    pub reported: usize,
    pub idle_ticks: u64,
    /// OOM kills elsewhere on the machine (the kernel's count) while the tools were meant to
    /// be idle: each one woke them, so the idle figures are not idle ones.
    pub kills_while_idle: u64,
    /// Kill to line for the first kill after the idle periods, µs: what code and data the
    /// tool let go of while idle, it pays for here.
    pub first_kill_us: Option<f64>,
    /// `mark_victim`'s run time over the kills, if the program was found.
    pub prog: Option<Prog>,
    /// The binary and every shared object it maps.
    pub mapped_files: Vec<PathBuf>,
}

/// How long after the last kill the steady RSS is read: oomtrace gives back what a burst of
/// kills mapped once it has been quiet for 2 s.
pub const SETTLED_AFTER: Duration = Duration::from_secs(3);

/// Both tools side by side: RSS after `idle_rss` of idling, CPU ticks over the next
/// `idle_cpu`, then RSS after `warm_kills` kills and after `memory_kills`, with the kernel
/// counting the handlers' run time over those kills.
pub fn memory(bench: &Bench) -> Result<Vec<MemoryFigures>> {
    let config = bench.config;
    let life = config.idle_rss + config.idle_cpu + Duration::from_secs(600);
    progress(format_args!(
        "memory and idle CPU: both tools idle {} s, then {} s, then {} kills",
        config.idle_rss.as_secs(),
        config.idle_cpu.as_secs(),
        config.memory_kills
    ));
    let tools = [Tool::Oomtrace(None), Tool::Bpftrace];
    let mut running = Vec::new();
    for tool in tools {
        running.push(bench.start(tool, life)?);
    }
    let kills_before = kernel_oom_kills()?;
    // The idle periods are the measurement itself: nothing is being waited for.
    std::thread::sleep(config.idle_rss);
    let idle = each(&running, |r| proc::memory(r.pid))?;
    let ticks_before = each(&running, |r| proc::cpu_ticks(r.pid))?;
    std::thread::sleep(config.idle_cpu);
    let ticks_after = each(&running, |r| proc::cpu_ticks(r.pid))?;
    let kills_while_idle = kernel_oom_kills()?.saturating_sub(kills_before);
    if kills_while_idle > 0 {
        progress(format_args!(
            "{kills_while_idle} OOM kills happened elsewhere on this machine while the tools idled: the idle figures are not idle ones"
        ));
    }

    let stats = sys::BpfStats::enable()?;
    let progs_before = each(&running, |r| mark_victim_prog(r.pid))?;
    let hogs = bench.hogs();
    let mut reported = vec![0; running.len()];
    let mut first_kill_us = vec![None; running.len()];
    let mut kills = 0;
    let mut warm = Vec::new();
    for (i, count) in [
        config.warm_kills,
        config.memory_kills.saturating_sub(config.warm_kills),
    ]
    .into_iter()
    .enumerate()
    {
        let driven = hogs.drive(Until::Count(count))?;
        kills += driven.killed.len();
        let deadline = Instant::now() + REPORT_WAIT;
        for (k, r) in running.iter_mut().enumerate() {
            let found = r.kills_of(&driven.killed, deadline);
            reported[k] += found.len();
            if i == 0 {
                first_kill_us[k] = found
                    .iter()
                    .min_by_key(|kill| kill.boot_ns)
                    .map(|kill| kill.latency_ns() as f64 / 1e3);
            }
        }
        if i == 0 {
            // The quiet is the measurement itself: nothing is being waited for.
            std::thread::sleep(SETTLED_AFTER);
            warm = each(&running, |r| proc::memory(r.pid))?;
        }
    }
    let after = each(&running, |r| proc::memory(r.pid))?;
    let progs_after = each(&running, |r| mark_victim_prog(r.pid))?;
    drop(stats);
    // The quiet after the kills is the measurement itself: nothing is being waited for.
    std::thread::sleep(SETTLED_AFTER);
    let settled = each(&running, |r| proc::memory(r.pid))?;
    let mapped = each(&running, |r| proc::mapped_files(r.pid))?;

    let mut figures = Vec::new();
    for (k, r) in running.into_iter().enumerate() {
        let tool = r.tool;
        let stopped = r.stop()?;
        if matches!(tool, Tool::Oomtrace(_))
            && let Some(dropped) = stopped.stderr.iter().find_map(|l| parse_dropped(l))
            && dropped > 0
        {
            progress(format_args!(
                "oomtrace dropped {dropped} events while idle or after kills"
            ));
        }
        let prog = match (&progs_before[k], &progs_after[k]) {
            (Some(before), Some(after)) => Some(Prog {
                name: after.name.clone(),
                stats: ProgStats {
                    run_time_ns: after.stats.run_time_ns - before.stats.run_time_ns,
                    run_cnt: after.stats.run_cnt - before.stats.run_cnt,
                },
            }),
            _ => None,
        };
        figures.push(MemoryFigures {
            tool,
            idle: idle[k],
            warm: warm[k],
            after: after[k],
            settled: settled[k],
            warm_kills: config.warm_kills,
            kills,
            reported: reported[k],
            idle_ticks: ticks_after[k].saturating_sub(ticks_before[k]),
            kills_while_idle,
            first_kill_us: first_kill_us[k],
            prog,
            mapped_files: mapped[k].clone(),
        });
    }
    Ok(figures)
}

fn each<T>(running: &[Running], f: impl Fn(&Running) -> Result<T>) -> Result<Vec<T>> {
    running.iter().map(f).collect()
}

/// The `mark_victim` program `pid` holds, and its run counts so far.
fn mark_victim_prog(pid: u32) -> Result<Option<Prog>> {
    let held = bpf::held_by(pid)?;
    bpf::find(&held, bpf::Kind::Prog, "mark_victim")
        .map(|prog| {
            Ok(Prog {
                name: prog.name.clone(),
                stats: bpf::prog_stats(pid, prog)?,
            })
        })
        .transpose()
}

pub struct Latency {
    pub tool: Tool,
    /// Kill (the kernel's `boot_ns`) to line at the reader, µs: all, and by round.
    pub us: Vec<f64>,
    pub rounds: Vec<Vec<f64>>,
    /// Of the timed kills whose OOM report the kernel logged (its rate limit lets 10 through
    /// every 5 s), those reported with every field the log gives; `None` for bpftrace.
    pub logged: usize,
    pub log_fields_filled: Option<usize>,
}

impl Latency {
    /// The lowest and highest of a percentile taken round by round.
    pub fn spread(&self, p: f64) -> (f64, f64) {
        let by_round: Vec<f64> = self.rounds.iter().map(|r| percentile(r, p)).collect();
        (
            by_round.iter().copied().fold(f64::NAN, f64::min),
            by_round.iter().copied().fold(f64::NAN, f64::max),
        )
    }
}

/// `latency_kills` kills per tool, one at a time, in `latency_rounds` rounds that alternate
/// the tools (each round a fresh start). Each hog is started without waiting for the previous
/// one's exit: it goes to the next of the cgroups in turn, whose last hog died rounds ago.
pub fn latency(bench: &Bench) -> Result<Vec<Latency>> {
    let config = bench.config;
    let tools = [Tool::Oomtrace(None), Tool::Bpftrace];
    let per_round = config.latency_kills.div_ceil(config.latency_rounds);
    progress(format_args!(
        "latency: {} kills per tool in {} rounds, one at a time",
        per_round * config.latency_rounds,
        config.latency_rounds
    ));
    let hogs = bench.hogs();
    let mut last: Vec<Option<Hog>> = (0..bench.cgroups.len()).map(|_| None).collect();
    let mut next = 0;
    let mut results: Vec<Latency> = tools
        .iter()
        .map(|&tool| Latency {
            tool,
            us: Vec::new(),
            rounds: Vec::new(),
            logged: 0,
            log_fields_filled: matches!(tool, Tool::Oomtrace(_)).then_some(0),
        })
        .collect();
    let mut kernel_log = KernelLog::open()?;
    for round in 0..config.latency_rounds {
        for k in 0..tools.len() {
            let i = (round + k) % tools.len();
            let mut running = bench.start(tools[i], Duration::from_secs(600))?;
            let mut timed = Vec::new();
            // Read only between runs, so that the bench's own reading wakes no one meanwhile.
            kernel_log.reported_victims()?;
            // The first kill of a round warms the tool up (its first report pays for code
            // paths touched once); both tools get one, and neither is counted.
            for n in 0..=per_round {
                let slot = next % bench.cgroups.len();
                next += 1;
                if let Some(mut previous) = last[slot].take()
                    && let HogEnd::Other(why) = Hogs::end(&mut previous)
                {
                    bail!("hog {} was not OOM-killed: {why}", previous.pid());
                }
                let hog = hogs.start(slot);
                let pid = hog.pid();
                last[slot] = Some(hog);
                let kill: Kill = running
                    .kill_of_pid(pid, Instant::now() + REPORT_WAIT)
                    .with_context(|| {
                        format!(
                            "{} reported no kill of hog {pid} within {} s",
                            tools[i].label(),
                            REPORT_WAIT.as_secs()
                        )
                    })?;
                if n > 0 {
                    timed.push(kill);
                }
            }
            running.stop()?;
            let logged = kernel_log.reported_victims()?;
            let result = &mut results[i];
            for kill in timed.iter().filter(|kill| logged.contains(&kill.pid)) {
                result.logged += 1;
                if let (Some(filled), Some(true)) = (&mut result.log_fields_filled, kill.log_fields)
                {
                    *filled += 1;
                }
            }
            let us: Vec<f64> = timed.iter().map(|k| k.latency_ns() as f64 / 1e3).collect();
            result.us.extend(&us);
            result.rounds.push(us);
        }
    }
    if kernel_log.overruns > 0 {
        bail!(
            "the kernel's log overran {} times while the bench read it: which kills it reported is not known",
            kernel_log.overruns
        );
    }
    for mut hog in last.into_iter().flatten() {
        Hogs::end(&mut hog);
    }
    Ok(results)
}

pub struct Storm {
    pub tool: Tool,
    pub seconds: f64,
    /// The kernel's own count over the storm.
    pub kernel: u64,
    pub reports: usize,
    /// Reports of victims the kernel killed (and so counted); oomtrace says which were only
    /// marked. For bpftrace, every report.
    pub killed_reports: usize,
    pub dropped: Option<u64>,
    pub summary: Option<String>,
}

impl Storm {
    pub fn missing(&self) -> u64 {
        self.kernel.saturating_sub(self.killed_reports as u64)
    }

    pub fn kills_per_second(&self) -> f64 {
        self.kernel as f64 / self.seconds
    }
}

/// One hog after another in every cgroup at once for `storm`, per tool, one tool after the
/// other.
pub fn storm(bench: &Bench) -> Result<Vec<Storm>> {
    let config = bench.config;
    progress(format_args!(
        "storm: {} cgroups OOM at once for {} s, per tool",
        bench.cgroups.len(),
        config.storm.as_secs()
    ));
    let hogs = bench.hogs();
    let mut results = Vec::new();
    for tool in [Tool::Oomtrace(None), Tool::Bpftrace] {
        let mut running = bench.start(tool, config.storm + Duration::from_secs(600))?;
        let before = kernel_oom_kills()?;
        let driven = hogs.drive(Until::Deadline(Instant::now() + config.storm))?;
        // Every hog has been reaped: the kernel's count is final.
        let kernel = kernel_oom_kills()?.saturating_sub(before);
        let mut kills = running.kills_until(kernel as usize, Instant::now() + REPORT_WAIT);
        let stopped = running.stop()?;
        let summary = stopped.summary();
        kills.extend(stopped.kills);
        let dropped = match tool {
            Tool::Oomtrace(_) => summary.as_deref().and_then(parse_dropped),
            Tool::Bpftrace | Tool::EmptySignalProbe => Some(stopped.lost),
        };
        results.push(Storm {
            tool,
            seconds: driven.elapsed.as_secs_f64(),
            kernel,
            reports: kills.len(),
            killed_reports: kills.iter().filter(|k| k.killed != Some(false)).count(),
            dropped,
            summary,
        });
    }
    Ok(results)
}

/// The size of `oomtrace:latest`, if that image exists.
pub fn image_size() -> Option<u64> {
    probe(
        Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            "oomtrace:latest",
        ]),
        TOOL_TIMEOUT,
    )
    .and_then(|s| s.parse().ok())
}
