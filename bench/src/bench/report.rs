//! The figures of a run, the budgets, and the table. Every oomtrace figure sits beside
//! bpftrace's from the same run, with their ratio.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use oomtrace_core::kernel::cgroups::CgroupMode;
use serde::Serialize;

use super::config::{Config, Phase};
use super::phases::{Latency, MemoryFigures, Ready, Storm};
use super::signals::{Part, SignalStorm, ns_per_call};
use super::stats::{max, median, percentile, ratio};
use super::sys;
use super::sys::ProgStats;
use super::tools::{LOG_FIELDS, NsecsClock, Tool};
use crate::console::probe;

pub struct Binaries {
    pub oomtrace: u64,
    pub bpftrace: u64,
    /// `oomtrace:latest`, if it exists.
    pub image: Option<u64>,
}

pub struct Results {
    pub config: Config,
    pub machine: Machine,
    pub clock: NsecsClock,
    pub ready: Vec<Ready>,
    pub memory: Vec<MemoryFigures>,
    pub latency: Vec<Latency>,
    pub storm: Vec<Storm>,
    pub signals: Option<SignalStorm>,
    pub binary: Binaries,
}

/// Also `machine` in results.json, as it is.
#[derive(Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_mib: u64,
    pub cgroup: &'static str,
    pub docker: Option<String>,
    pub bpftrace: Option<String>,
    #[serde(rename = "oomtrace_commit")]
    pub commit: Option<String>,
    /// `/proc/loadavg`'s 1-minute figure when the bench started and when it ended: other work
    /// on the machine shows here.
    #[serde(rename = "load_average_start")]
    pub load_start: String,
    #[serde(rename = "load_average_end")]
    pub load_end: String,
}

/// git, docker and bpftrace answer their probes at once; this bounds a machine in trouble.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

impl Machine {
    pub fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let answer = |program: &str, args: &[&str]| {
            probe(Command::new(program).args(args), PROBE_TIMEOUT).filter(|s| !s.is_empty())
        };
        let commit = answer("git", &["rev-parse", "--short", "HEAD"]).map(|commit| {
            let dirty = answer("git", &["status", "--porcelain", "--untracked-files=no"]);
            if dirty.is_some() {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            }
        });
        Self {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
                .unwrap_or_default(),
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            cgroup: CgroupMode::of_host().json_name().unwrap_or("none"),
            docker: answer("docker", &["version", "--format", "{{.Server.Version}}"]),
            bpftrace: answer("bpftrace", &["--version"]),
            commit,
            load_start: load_average(),
            load_end: String::new(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "Linux {}, {} x {}, {} MiB RAM, cgroup {}, Docker {}, {}, oomtrace {}, load average {} at the start, {} at the end",
            self.kernel,
            self.cpus,
            self.cpu,
            self.memory_mib,
            self.cgroup,
            self.docker.as_deref().unwrap_or("not running"),
            self.bpftrace.as_deref().unwrap_or("bpftrace ?"),
            self.commit.as_deref().unwrap_or("?"),
            self.load_start,
            self.load_end
        )
    }
}

/// A budget and whether this run met it; `None` when the figure could not be measured.
pub struct Budget {
    /// The phase that measures it: a run without that phase judges no budget of it.
    pub phase: Phase,
    pub name: &'static str,
    pub limit: String,
    pub value: String,
    pub met: Option<bool>,
}

/// Steady RSS, peak RSS and handler budgets.
pub const STEADY_RSS_KIB: u64 = 4 * 1024;
const PEAK_RSS_KIB: u64 = 12 * 1024;
const HANDLER_NS: f64 = 2000.0;
const READY_RATIO: f64 = 0.2;
/// What the signal program may add per signal it keeps nothing of (issue 19): its run time per
/// call less an empty program's over the same signals. `bpf_stats` times a program between two
/// reads of the kernel's clock, and those alone take 66–74 ns on the project's VMs, so a
/// figure that includes them measures the machine's clock, not the program.
const NON_FATAL_SIGNAL_NS: f64 = 50.0;
/// What the quiet RSS may move between the warm-up kills and the last one without it being
/// growth: a burst of simultaneous reports larger than any before leaves a few heap pages
/// behind. A leak of 72 bytes per kill over the 900 kills in between exceeds it.
const GROWTH_NOISE_KIB: u64 = 64;

impl Results {
    fn ready(&self, tool: Tool) -> Option<&Ready> {
        self.ready.iter().find(|r| r.tool == tool)
    }

    fn memory(&self, oomtrace: bool) -> Option<&MemoryFigures> {
        self.memory
            .iter()
            .find(|m| matches!(m.tool, Tool::Oomtrace(_)) == oomtrace)
    }

    fn latency(&self, oomtrace: bool) -> Option<&Latency> {
        self.latency
            .iter()
            .find(|l| matches!(l.tool, Tool::Oomtrace(_)) == oomtrace)
    }

    fn storm(&self, oomtrace: bool) -> Option<&Storm> {
        self.storm
            .iter()
            .find(|s| matches!(s.tool, Tool::Oomtrace(_)) == oomtrace)
    }
}

pub fn per_call_ns(m: &MemoryFigures) -> Option<f64> {
    m.prog
        .as_ref()
        .filter(|p| p.stats.run_cnt > 0)
        .map(|p| p.stats.run_time_ns as f64 / p.stats.run_cnt as f64)
}

pub fn budgets(r: &Results) -> Vec<Budget> {
    let mut out = Vec::new();
    let ready = |tool| r.ready(tool).map(|x| median(&x.runs_ms));
    let (o, b) = (ready(Tool::Oomtrace(None)), ready(Tool::Bpftrace));
    out.push(Budget {
        phase: Phase::Ready,
        name: "ready, default mode, enrichment on",
        limit: format!("≤ {READY_RATIO} × bpftrace's median"),
        value: match (o, b) {
            (Some(o), Some(b)) => format!("{o:.1} ms = {:.2} × {b:.1} ms", o / b),
            _ => "not measured".into(),
        },
        met: o.zip(b).map(|(o, b)| o <= READY_RATIO * b),
    });
    let m = r.memory(true);
    out.push(Budget {
        phase: Phase::Memory,
        name: "steady RSS (after 10 s idle, and once quiet after the kills)",
        limit: format!("≤ {} MiB", STEADY_RSS_KIB / 1024),
        value: m.map_or("not measured".into(), |m| {
            format!("{} and {}", mib(m.idle.rss), mib(m.settled.rss))
        }),
        met: m.map(|m| m.idle.rss.max(m.settled.rss) <= STEADY_RSS_KIB),
    });
    out.push(Budget {
        phase: Phase::Memory,
        name: "no RSS growth with kills",
        limit: format!(
            "RSS once quiet after the last kill ≤ RSS once quiet after the first {} + {GROWTH_NOISE_KIB} KiB",
            r.config.warm_kills
        ),
        value: m.map_or("not measured".into(), |m| {
            format!(
                "{} KiB → {} KiB ({:+} KiB)",
                m.warm.rss,
                m.settled.rss,
                m.settled.rss as i64 - m.warm.rss as i64
            )
        }),
        met: m.map(|m| m.settled.rss <= m.warm.rss + GROWTH_NOISE_KIB),
    });
    out.push(Budget {
        phase: Phase::Memory,
        name: "peak RSS (VmHWM)",
        limit: format!("≤ {} MiB", PEAK_RSS_KIB / 1024),
        value: m.map_or("not measured".into(), |m| mib(m.after.hwm)),
        met: m.map(|m| m.after.hwm <= PEAK_RSS_KIB),
    });
    out.push(Budget {
        phase: Phase::Memory,
        name: "idle CPU",
        limit: format!("0 ticks over {} s", r.config.idle_cpu.as_secs()),
        value: m.map_or("not measured".into(), |m| {
            if m.kills_while_idle > 0 {
                format!(
                    "{} ticks, not idle: {} OOM kills elsewhere on the machine woke it",
                    m.idle_ticks, m.kills_while_idle
                )
            } else {
                format!("{} ticks", m.idle_ticks)
            }
        }),
        // A kill elsewhere is work, not idling: the window measured nothing.
        met: m
            .filter(|m| m.kills_while_idle == 0)
            .map(|m| m.idle_ticks == 0),
    });
    let lat = |oomtrace: bool, p: f64| r.latency(oomtrace).map(|l| percentile(&l.us, p));
    let spread = |oomtrace: bool, p: f64| {
        r.latency(oomtrace).map_or("–".into(), |l| {
            let (low, high) = l.spread(p);
            format!("{}–{}", ms(low), ms(high))
        })
    };
    for (name, p) in [("latency p50", 50.0), ("latency p99", 99.0)] {
        let (o, b) = (lat(true, p), lat(false, p));
        out.push(Budget {
            phase: Phase::Latency,
            name,
            limit: "≤ bpftrace's".into(),
            value: match (o, b) {
                (Some(o), Some(b)) => format!(
                    "{} vs {} (rounds: {} vs {})",
                    ms(o),
                    ms(b),
                    spread(true, p),
                    spread(false, p)
                ),
                _ => "not measured".into(),
            },
            met: o.zip(b).map(|(o, b)| o <= b),
        });
    }
    let o = r.latency(true);
    out.push(Budget {
        phase: Phase::Latency,
        name: "the kernel log's fields in the latency kills",
        limit: format!(
            "every one of {} filled whenever the kernel logged its report",
            LOG_FIELDS.join(", ")
        ),
        value: o.map_or("not measured".into(), |o| {
            format!(
                "{} of {} kills with a logged report",
                o.log_fields_filled.unwrap_or(0),
                o.logged
            )
        }),
        met: o.map(|o| o.logged > 0 && o.log_fields_filled == Some(o.logged)),
    });
    let handler = m.and_then(per_call_ns);
    out.push(Budget {
        phase: Phase::Memory,
        name: "handler run time per call",
        limit: format!("≤ {:.0} µs", HANDLER_NS / 1000.0),
        value: handler.map_or("not measured".into(), |ns| format!("{:.2} µs", ns / 1000.0)),
        met: handler.map(|ns| ns <= HANDLER_NS),
    });
    let s = r.storm(true);
    out.push(Budget {
        phase: Phase::Storm,
        name: "storm: nothing dropped or missing",
        limit: "0 dropped, 0 missing against the kernel's count".into(),
        value: s.map_or("not measured".into(), |s| {
            format!(
                "{} dropped, {} missing",
                s.dropped.map_or("?".into(), |d| d.to_string()),
                s.missing()
            )
        }),
        met: s.map(|s| s.dropped == Some(0) && s.missing() == 0),
    });
    let signals = r.signals.as_ref();
    let non_fatal = signals.and_then(|s| s.part(Part::NonFatal));
    let per_call = non_fatal.and_then(|p| p.ns_per_call().zip(p.floor_ns_per_call()));
    out.push(Budget {
        phase: Phase::Signals,
        name: "signal program per non-fatal signal, above an empty program's",
        limit: format!("≤ {NON_FATAL_SIGNAL_NS:.0} ns per call more than the empty probe"),
        value: match (signals, non_fatal, per_call) {
            (Some(s), Some(p), Some((ns, floor))) => format!(
                "{:.1} ns ({ns:.1} ns against the empty probe's {floor:.1} ns, {:.2} ×) over {} \
                 calls; kill(2) takes {:.2} × its time with no oomtrace",
                ns - floor,
                ns / floor,
                thousands(p.stats.run_cnt),
                s.watched_ns / s.unwatched_mean_ns()
            ),
            _ => "not measured".into(),
        },
        met: per_call.map(|(ns, floor)| ns - floor <= NON_FATAL_SIGNAL_NS),
    });
    let host_parts = signals.map(|s| {
        s.parts
            .iter()
            .filter(|p| p.part != Part::ToContainerInit)
            .fold((Some(0), 0), |(ours, dropped), p| {
                (
                    ours.zip(p.bench_records).map(|(a, b)| a + b),
                    dropped + p.dropped,
                )
            })
    });
    out.push(Budget {
        phase: Phase::Signals,
        name: "signal storm: nothing written or dropped for signals oomtrace keeps nothing of",
        limit: "0 records of the bench's signals, 0 dropped".into(),
        value: match (signals, host_parts) {
            (Some(s), Some((ours, dropped))) => format!(
                "{} of the bench's signals among {} written, {dropped} dropped",
                ours.map_or("?".into(), |n| n.to_string()),
                host_written(s)
            ),
            _ => "not measured".into(),
        },
        // Unknown when signals elsewhere wrote more than the ring holds.
        met: host_parts.and_then(|(ours, dropped)| ours.map(|ours| ours == 0 && dropped == 0)),
    });
    out.retain(|b| r.config.runs(b.phase));
    out
}

/// Appends a table: the header, a rule, then the rows, the figure left-aligned and the rest
/// right-aligned.
fn render(out: &mut String, header: [&str; 4], body: Vec<Row>) {
    let mut rows = vec![header.map(str::to_string)];
    rows.extend(body);
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    for (n, row) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        if n == 0 {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 6));
        }
    }
}

/// The signal storm's rows: kill(2)'s wall time against the same with no oomtrace, then the
/// program's run time per part against the empty probe's over the same signals, what the
/// program wrote, and whether oomtrace stirred.
pub fn signal_rows(s: &SignalStorm) -> Vec<Row> {
    let mut rows = Vec::new();
    let anchor = s.unwatched_mean_ns();
    rows.push(row(
        format!(
            "kill(2) per SIGUSR1, wall time, {} sent, bpf_stats off (anchor: no oomtrace, mean of {})",
            thousands(s.part(Part::NonFatal).map_or(0, |p| p.sent)),
            s.unwatched_ns.len()
        ),
        ns(s.watched_ns),
        ns(anchor),
        ratio(s.watched_ns, anchor),
    ));
    let runs = |stats: &ProgStats| {
        format!(
            "{} / {}",
            thousands(stats.run_cnt),
            ns(stats.run_time_ns as f64)
        )
    };
    let per_call = |stats: &ProgStats| ns_per_call(stats).unwrap_or(f64::NAN);
    let mut program_rows = |what: String, sent: u64, stats: &ProgStats, floor: &ProgStats| {
        rows.push(row(
            format!("program per call, {what} (anchor: the empty probe)"),
            ns(per_call(stats)),
            ns(per_call(floor)),
            ratio(per_call(stats), per_call(floor)),
        ));
        rows.push(row(
            format!("  calls / run time, {} sent", thousands(sent)),
            runs(stats),
            runs(floor),
            f64::NAN,
        ));
    };
    for p in &s.parts {
        program_rows(p.part.describe().to_string(), p.sent, &p.stats, &p.floor);
    }
    let sent = s.parts.iter().map(|p| p.sent).sum();
    program_rows("all parts".into(), sent, &s.total(), &s.floor_total());
    let mut fact = |figure: &str, value: String| {
        rows.push(row(figure, value, String::new(), f64::NAN));
    };
    for p in &s.parts {
        fact(
            &format!(
                "ring buffer records written (of the bench's signals) / dropped, {}",
                p.part.describe()
            ),
            format!(
                "{} ({}) / {}",
                thousands(p.written),
                p.bench_records.map_or("?".into(), thousands),
                p.dropped
            ),
        );
    }
    fact(
        "ring buffer records oomtrace read, of all written",
        format!("{} of {}", thousands(s.read), thousands(s.written())),
    );
    fact(
        "Docker events elsewhere during the host parts",
        s.docker_events.map_or("?".into(), |n| n.to_string()),
    );
    fact(
        "oomtrace RSS at rest, before → after the host parts",
        format!("{} → {}", mib(s.memory_before.rss), mib(s.memory_after.rss)),
    );
    fact(
        "oomtrace CPU ticks over the host parts",
        s.ticks.to_string(),
    );
    rows
}

/// Records the host parts wrote, the bench's signals' and others'.
fn host_written(s: &SignalStorm) -> u64 {
    s.parts
        .iter()
        .filter(|p| p.part != Part::ToContainerInit)
        .map(|p| p.written)
        .sum()
}

/// `1000000` as `1,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in ns, in the unit that keeps it short.
fn ns(ns: f64) -> String {
    if !ns.is_finite() {
        "–".into()
    } else if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(us: f64) -> String {
    if us.is_finite() {
        format!("{:.2} ms", us / 1000.0)
    } else {
        "–".into()
    }
}

fn ratio_text(x: f64) -> String {
    if x.is_finite() {
        if x < 0.1 {
            format!("{x:.3}")
        } else {
            format!("{x:.2}")
        }
    } else {
        "–".into()
    }
}

/// One row: the figure, oomtrace's value, bpftrace's value, the ratio.
type Row = [String; 4];

fn row(figure: impl Into<String>, o: String, b: String, ratio: f64) -> Row {
    [figure.into(), o, b, ratio_text(ratio)]
}

pub fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    let bpf_ready = r.ready(Tool::Bpftrace).map(|x| x.runs_ms.as_slice());
    let n = r.config.ready_runs;
    for ready in r.ready.iter().filter(|x| x.tool != Tool::Bpftrace) {
        let mode = match ready.tool {
            Tool::Oomtrace(None) => "default mode".to_string(),
            tool => tool.key().to_string(),
        };
        for (what, f) in [("median", median as fn(&[f64]) -> f64), ("max", max)] {
            let o = f(&ready.runs_ms);
            let b = bpf_ready.map_or(f64::NAN, f);
            rows.push(row(
                format!("ready, {mode}, {what} of {n}"),
                format!("{o:.1} ms"),
                format!("{b:.1} ms"),
                ratio(o, b),
            ));
        }
    }
    if let (Some(o), Some(b)) = (r.memory(true), r.memory(false)) {
        let kib =
            |o: u64, b: u64, figure: String| row(figure, mib(o), mib(b), ratio(o as f64, b as f64));
        rows.push(kib(o.after.hwm, b.after.hwm, "peak RSS (VmHWM)".into()));
        rows.push(kib(
            o.idle.rss,
            b.idle.rss,
            format!("RSS after {} s idle", r.config.idle_rss.as_secs()),
        ));
        rows.push(kib(
            o.warm.rss,
            b.warm.rss,
            format!(
                "RSS {} s after kill {}",
                super::phases::SETTLED_AFTER.as_secs(),
                o.warm_kills
            ),
        ));
        rows.push(kib(
            o.after.rss,
            b.after.rss,
            format!("RSS after {} kills", o.kills),
        ));
        rows.push(kib(
            o.settled.rss,
            b.settled.rss,
            format!(
                "RSS {} s after the last kill",
                super::phases::SETTLED_AFTER.as_secs()
            ),
        ));
        rows.push(row(
            format!(
                "RSS growth once quiet, kill {} → kill {}",
                o.warm_kills, o.kills
            ),
            format!("{:+} KiB", o.settled.rss as i64 - o.warm.rss as i64),
            format!("{:+} KiB", b.settled.rss as i64 - b.warm.rss as i64),
            f64::NAN,
        ));
        rows.push(row(
            "  of which anon / file / shmem",
            format!(
                "{} / {} / {}",
                mib(o.after.anon),
                mib(o.after.file),
                mib(o.after.shmem)
            ),
            format!(
                "{} / {} / {}",
                mib(b.after.anon),
                mib(b.after.file),
                mib(b.after.shmem)
            ),
            f64::NAN,
        ));
        rows.push(row(
            format!("kills reported of {}", o.kills),
            o.reported.to_string(),
            b.reported.to_string(),
            f64::NAN,
        ));
        rows.push(row(
            format!(
                "idle CPU ticks over {} s ({} OOM kills elsewhere meanwhile)",
                r.config.idle_cpu.as_secs(),
                o.kills_while_idle
            ),
            o.idle_ticks.to_string(),
            b.idle_ticks.to_string(),
            ratio(o.idle_ticks as f64, b.idle_ticks as f64),
        ));
        let (oh, bh) = (per_call_ns(o), per_call_ns(b));
        rows.push(row(
            format!("handler run time per call ({} calls)", o.kills),
            oh.map_or("–".into(), |ns| format!("{:.2} µs", ns / 1000.0)),
            bh.map_or("–".into(), |ns| format!("{:.2} µs", ns / 1000.0)),
            ratio(oh.unwrap_or(f64::NAN), bh.unwrap_or(f64::NAN)),
        ));
    }
    if let (Some(o), Some(b)) = (r.memory(true), r.memory(false)) {
        let (ov, bv) = (
            o.first_kill_us.unwrap_or(f64::NAN),
            b.first_kill_us.unwrap_or(f64::NAN),
        );
        rows.push(row(
            format!(
                "latency kill → line, first kill after {} s idle",
                (r.config.idle_rss + r.config.idle_cpu).as_secs()
            ),
            ms(ov),
            ms(bv),
            ratio(ov, bv),
        ));
    }
    if let (Some(o), Some(b)) = (r.latency(true), r.latency(false)) {
        for (what, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
            let (ov, bv) = (percentile(&o.us, p), percentile(&b.us, p));
            rows.push(row(
                format!("latency kill → line, {what} of {}", o.us.len()),
                ms(ov),
                ms(bv),
                ratio(ov, bv),
            ));
        }
        for (what, p) in [("p50", 50.0), ("p99", 99.0)] {
            let range = |l: &Latency| {
                let (low, high) = l.spread(p);
                format!("{}–{}", ms(low), ms(high))
            };
            rows.push(row(
                format!(
                    "latency {what}, lowest–highest of {} rounds",
                    o.rounds.len()
                ),
                range(o),
                range(b),
                f64::NAN,
            ));
        }
    }
    if let (Some(o), Some(b)) = (r.storm(true), r.storm(false)) {
        rows.push(row(
            format!("storm: kills/s, {} cgroups", r.config.storm_cgroups),
            format!("{:.1}", o.kills_per_second()),
            format!("{:.1}", b.kills_per_second()),
            ratio(o.kills_per_second(), b.kills_per_second()),
        ));
        let reports = |s: &Storm| format!("{} of {}", s.reports, s.kernel);
        rows.push(row(
            "storm: reports of the kernel's count",
            reports(o),
            reports(b),
            f64::NAN,
        ));
        let lost = |s: &Storm| {
            format!(
                "{} / {}",
                s.missing(),
                s.dropped.map_or("?".into(), |d| d.to_string())
            )
        };
        rows.push(row("storm: missing / dropped", lost(o), lost(b), f64::NAN));
    }
    let bin = &r.binary;
    let bytes = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    rows.push(row(
        "binary size",
        bytes(bin.oomtrace),
        bytes(bin.bpftrace),
        ratio(bin.oomtrace as f64, bin.bpftrace as f64),
    ));
    if let (Some(o), Some(b)) = (r.memory(true), r.memory(false)) {
        let total = |files: &[std::path::PathBuf]| -> u64 {
            files.iter().filter_map(|f| sys::file_size(f).ok()).sum()
        };
        let (ot, bt) = (total(&o.mapped_files), total(&b.mapped_files));
        rows.push(row(
            "binary + shared objects it maps",
            bytes(ot),
            bytes(bt),
            ratio(ot as f64, bt as f64),
        ));
    }
    rows.push(row(
        "container image oomtrace:latest",
        bin.image.map_or("no image".into(), bytes),
        "–".into(),
        f64::NAN,
    ));
    rows
}

pub fn table(r: &Results, budgets: &[Budget]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nbench on {}", r.machine.describe());
    let header = ["figure", "oomtrace", "bpftrace", "ratio"];
    render(&mut out, header, self::rows(r));
    if let Some(storm) = &r.signals {
        let _ = writeln!(
            out,
            "\nsignal storm: the bench's kill(2)s while oomtrace watches ({}), bpf_stats on but \
             in the first row; the anchors, measured in the same run: the same kill(2)s with no \
             oomtrace running, and bpftrace's empty probe on the same tracepoint ({}), which \
             ran beside oomtrace",
            storm.program, storm.floor_program
        );
        let header = ["figure", "oomtrace", "anchor", "ratio"];
        render(&mut out, header, signal_rows(storm));
    }
    let _ = writeln!(
        out,
        "\nbudgets{}:",
        if r.config.smoke {
            " (a smoke run: not enforced)"
        } else {
            ""
        }
    );
    for b in budgets {
        let verdict = match b.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "  {verdict:<12} {}: {} (budget {})",
            b.name, b.value, b.limit
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_counts_and_durations_short() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_412), "1,000,412");
        assert_eq!(ns(32.14), "32.1 ns");
        assert_eq!(ns(3_210.0), "3.21 µs");
        assert_eq!(ns(32_100_000.0), "32.1 ms");
        assert_eq!(ns(f64::NAN), "–");
    }
}
