//! `results.json`: every figure of a run and every run of every figure, the machine it ran on
//! and the budgets. Field names and order are the file's schema (1), which BENCHMARKS.md reads.

use std::path::PathBuf;

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};

use super::cgroups::LIMIT_MIB;
use super::phases::MemoryFigures;
use super::report::{Budget, Machine, Results, per_call_ns};
use super::signals::{PartFigures, SignalStorm, ns_per_call};
use super::stats::{max, median, percentile};
use super::sys;
use super::tools::bpftrace_program;
use crate::proc::Memory;

/// The file, built from a run and its budgets.
pub fn json(r: &Results, budgets: &[Budget]) -> serde_json::Result<String> {
    let c = &r.config;
    let file = File {
        schema: 1,
        smoke: c.smoke,
        machine: &r.machine,
        method: Method {
            peer: bpftrace_program(),
            bpftrace_nsecs_clock: r.clock.describe(),
            ready_runs: c.ready_runs,
            idle_rss_s: c.idle_rss.as_secs(),
            idle_cpu_s: c.idle_cpu.as_secs(),
            latency_rounds: c.latency_rounds,
            storm_s: c.storm.as_secs(),
            cgroups: c.storm_cgroups,
            cgroup_limit_bytes: LIMIT_MIB << 20,
            signals_non_fatal: c.signals_non_fatal,
            signals_fatal_to_host: c.signals_fatal_to_host,
            signals_to_container_init: c.signals_to_container_init,
            phases: c.phases.iter().map(|p| p.name()).collect(),
        },
        ready: Keyed(
            r.ready
                .iter()
                .map(|x| (x.tool.key(), Summary::of(&x.runs_ms, "ms")))
                .collect(),
        ),
        memory: r.memory.iter().map(MemoryJson::of).collect(),
        latency: Keyed(
            r.latency
                .iter()
                .map(|l| {
                    let latency = LatencyJson {
                        all: Summary::of(&l.us, "us"),
                        rounds: l.rounds.iter().map(|r| Summary::of(r, "us")).collect(),
                        kills_with_logged_report: l.logged,
                        of_which_with_every_log_field: l.log_fields_filled,
                    };
                    (l.tool.key(), latency)
                })
                .collect(),
        ),
        storm: Keyed(
            r.storm
                .iter()
                .map(|s| {
                    let storm = StormJson {
                        seconds: fixed(s.seconds, 2),
                        kernel_oom_kills: s.kernel,
                        kills_per_second: fixed(s.kills_per_second(), 2),
                        reports: s.reports,
                        killed_reports: s.killed_reports,
                        missing: s.missing(),
                        dropped: s.dropped,
                        summary: s.summary.as_deref(),
                    };
                    (s.tool.key(), storm)
                })
                .collect(),
        ),
        signals: r.signals.as_ref().map(SignalsJson::of),
        binary: BinaryJson {
            oomtrace_bytes: r.binary.oomtrace,
            bpftrace_bytes: r.binary.bpftrace,
            image_bytes: r.binary.image,
        },
        budgets: budgets
            .iter()
            .map(|b| BudgetJson {
                name: b.name,
                limit: &b.limit,
                value: &b.value,
                met: b.met,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    Ok(text)
}

#[derive(Serialize)]
struct File<'a> {
    schema: u32,
    smoke: bool,
    machine: &'a Machine,
    method: Method,
    ready: Keyed<Summary<'a>>,
    memory: Vec<MemoryJson<'a>>,
    latency: Keyed<LatencyJson<'a>>,
    storm: Keyed<StormJson<'a>>,
    signals: Option<SignalsJson<'a>>,
    binary: BinaryJson,
    budgets: Vec<BudgetJson<'a>>,
}

#[derive(Serialize)]
struct LatencyJson<'a> {
    all: Summary<'a>,
    rounds: Vec<Summary<'a>>,
    kills_with_logged_report: usize,
    of_which_with_every_log_field: Option<usize>,
}

#[derive(Serialize)]
struct Method {
    peer: String,
    bpftrace_nsecs_clock: &'static str,
    ready_runs: usize,
    idle_rss_s: u64,
    idle_cpu_s: u64,
    latency_rounds: usize,
    storm_s: u64,
    cgroups: usize,
    cgroup_limit_bytes: u64,
    signals_non_fatal: u64,
    signals_fatal_to_host: u64,
    signals_to_container_init: u64,
    phases: Vec<&'static str>,
}

#[derive(Serialize)]
struct MemoryJson<'a> {
    tool: String,
    idle: Kib,
    settled_after_warm_kills: Kib,
    after_kills: Kib,
    settled_after_kills: Kib,
    warm_kills: usize,
    kills: usize,
    reported: usize,
    idle_ticks: u64,
    oom_kills_elsewhere_while_idle: u64,
    first_kill_us: Option<f64>,
    mark_victim: Option<MarkVictim<'a>>,
    mapped_files: Vec<MappedFile>,
}

impl<'a> MemoryJson<'a> {
    fn of(f: &'a MemoryFigures) -> Self {
        Self {
            tool: f.tool.label(),
            idle: Kib::of(&f.idle),
            settled_after_warm_kills: Kib::of(&f.warm),
            after_kills: Kib::of(&f.after),
            settled_after_kills: Kib::of(&f.settled),
            warm_kills: f.warm_kills,
            kills: f.kills,
            reported: f.reported,
            idle_ticks: f.idle_ticks,
            oom_kills_elsewhere_while_idle: f.kills_while_idle,
            first_kill_us: f.first_kill_us.and_then(|x| fixed(x, 1)),
            mark_victim: f.prog.as_ref().map(|p| MarkVictim {
                name: &p.name,
                run_time_ns: p.stats.run_time_ns,
                run_cnt: p.stats.run_cnt,
                ns_per_call: per_call_ns(f).and_then(|x| fixed(x, 1)),
            }),
            mapped_files: f
                .mapped_files
                .iter()
                .map(|path| MappedFile {
                    path: path.clone(),
                    bytes: sys::file_size(path).ok(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct Kib {
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
}

impl Kib {
    fn of(m: &Memory) -> Self {
        Self {
            rss_kib: m.rss,
            hwm_kib: m.hwm,
            anon_kib: m.anon,
            file_kib: m.file,
            shmem_kib: m.shmem,
        }
    }
}

#[derive(Serialize)]
struct MarkVictim<'a> {
    name: &'a str,
    run_time_ns: u64,
    run_cnt: u64,
    ns_per_call: Option<f64>,
}

#[derive(Serialize)]
struct MappedFile {
    path: PathBuf,
    bytes: Option<u64>,
}

#[derive(Serialize)]
struct StormJson<'a> {
    seconds: Option<f64>,
    kernel_oom_kills: u64,
    kills_per_second: Option<f64>,
    reports: usize,
    killed_reports: usize,
    missing: u64,
    dropped: Option<u64>,
    summary: Option<&'a str>,
}

#[derive(Serialize)]
struct SignalsJson<'a> {
    program: &'a str,
    empty_probe_program: &'a str,
    /// kill(2)'s wall time per SIGUSR1: the anchor's passes with no oomtrace, and the pass
    /// with oomtrace watching and bpf_stats off.
    kill_ns_no_oomtrace: Vec<Option<f64>>,
    kill_ns_oomtrace_watching: Option<f64>,
    kill_ratio: Option<f64>,
    other_signal_generate_programs: usize,
    parts: Keyed<SignalPartJson>,
    total: RunsJson,
    empty_probe_total: RunsJson,
    ring_records_written: u64,
    ring_records_dropped: u64,
    ring_records_read: u64,
    oomtrace_before_host_parts: Kib,
    oomtrace_after_host_parts: Kib,
    oomtrace_ticks_over_host_parts: u64,
    docker_events_during_host_parts: Option<u64>,
    summary: Option<&'a str>,
    summary_dropped: Option<u64>,
}

impl<'a> SignalsJson<'a> {
    fn of(s: &'a SignalStorm) -> Self {
        Self {
            program: &s.program,
            empty_probe_program: &s.floor_program,
            kill_ns_no_oomtrace: s.unwatched_ns.iter().map(|ns| fixed(*ns, 1)).collect(),
            kill_ns_oomtrace_watching: fixed(s.watched_ns, 1),
            kill_ratio: fixed(s.watched_ns / s.unwatched_mean_ns(), 3),
            other_signal_generate_programs: s.others_attached,
            parts: Keyed(
                s.parts
                    .iter()
                    .map(|p| (p.part.key(), SignalPartJson::of(p)))
                    .collect(),
            ),
            total: RunsJson::of(s.total()),
            empty_probe_total: RunsJson::of(s.floor_total()),
            ring_records_written: s.written(),
            ring_records_dropped: s.dropped(),
            ring_records_read: s.read,
            oomtrace_before_host_parts: Kib::of(&s.memory_before),
            oomtrace_after_host_parts: Kib::of(&s.memory_after),
            oomtrace_ticks_over_host_parts: s.ticks,
            docker_events_during_host_parts: s.docker_events,
            summary: s.summary.as_deref(),
            summary_dropped: s.summary_dropped,
        }
    }
}

#[derive(Serialize)]
struct SignalPartJson {
    sent: u64,
    seconds: Option<f64>,
    #[serde(flatten)]
    runs: RunsJson,
    empty_probe: RunsJson,
    ring_records_written: u64,
    ring_records_of_the_bench_s_signals: Option<u64>,
    ring_records_dropped: u64,
}

impl SignalPartJson {
    fn of(p: &PartFigures) -> Self {
        Self {
            sent: p.sent,
            seconds: fixed(p.seconds, 4),
            runs: RunsJson::of(p.stats),
            empty_probe: RunsJson::of(p.floor),
            ring_records_written: p.written,
            ring_records_of_the_bench_s_signals: p.bench_records,
            ring_records_dropped: p.dropped,
        }
    }
}

#[derive(Serialize)]
struct RunsJson {
    run_cnt: u64,
    run_time_ns: u64,
    ns_per_call: Option<f64>,
}

impl RunsJson {
    fn of(stats: sys::ProgStats) -> Self {
        Self {
            run_cnt: stats.run_cnt,
            run_time_ns: stats.run_time_ns,
            ns_per_call: ns_per_call(&stats).and_then(|ns| fixed(ns, 1)),
        }
    }
}

#[derive(Serialize)]
struct BinaryJson {
    oomtrace_bytes: u64,
    bpftrace_bytes: u64,
    image_bytes: Option<u64>,
}

#[derive(Serialize)]
struct BudgetJson<'a> {
    name: &'a str,
    limit: &'a str,
    value: &'a str,
    met: Option<bool>,
}

/// An object keyed by tool (`bpftrace`, `default`, `tp_btf`...) in the order measured.
struct Keyed<T>(Vec<(&'static str, T)>);

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

/// A sample's size, median, p99, max and every run, in `unit` (`median_ms`, `runs_us`...).
struct Summary<'a> {
    sample: &'a [f64],
    unit: &'static str,
}

impl<'a> Summary<'a> {
    fn of(sample: &'a [f64], unit: &'static str) -> Self {
        Self { sample, unit }
    }
}

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (sample, unit) = (self.sample, self.unit);
        let runs: Vec<Option<f64>> = sample.iter().map(|x| fixed(*x, 3)).collect();
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("n", &sample.len())?;
        map.serialize_entry(&format!("median_{unit}"), &fixed(median(sample), 3))?;
        map.serialize_entry(&format!("p99_{unit}"), &fixed(percentile(sample, 99.0), 3))?;
        map.serialize_entry(&format!("max_{unit}"), &fixed(max(sample), 3))?;
        map.serialize_entry(&format!("runs_{unit}"), &runs)?;
        map.end()
    }
}

/// `x` to `decimals` places, as it is printed; `None` (JSON's null) if it is not finite.
fn fixed(x: f64, decimals: usize) -> Option<f64> {
    x.is_finite()
        .then(|| format!("{x:.decimals$}").parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tools_in_order_and_names_units() {
        let keyed = Keyed(vec![
            ("bpftrace", Summary::of(&[2.0, 1.0], "ms")),
            ("default", Summary::of(&[0.12345], "ms")),
            ("raw_tp", Summary::of(&[], "us")),
        ]);
        assert_eq!(
            serde_json::to_string(&keyed).unwrap(),
            r#"{"bpftrace":{"n":2,"median_ms":1.0,"p99_ms":2.0,"max_ms":2.0,"runs_ms":[2.0,1.0]},"#
                .to_owned()
                + r#""default":{"n":1,"median_ms":0.123,"p99_ms":0.123,"max_ms":0.123,"runs_ms":[0.123]},"#
                + r#""raw_tp":{"n":0,"median_us":null,"p99_us":null,"max_us":null,"runs_us":[]}}"#
        );
    }

    #[test]
    fn rounds_as_printed() {
        assert_eq!(fixed(1.25, 3), Some(1.25));
        assert_eq!(fixed(2.0 / 3.0, 2), Some(0.67));
        assert_eq!(fixed(f64::NAN, 1), None);
        assert_eq!(fixed(f64::INFINITY, 1), None);
    }
}
