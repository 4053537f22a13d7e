//! `oomtrace-bench bench` (`cargo xtask bench`): oomtrace against a bpftrace one-liner on
//! `tracepoint:oom:mark_victim`, measured in the same run on real memory cgroups. Prints a
//! table, writes `target/bench/results.json`, and says of each budget whether it was met.
//! `--smoke` is the short version `cargo xtask test` runs so the bench cannot rot: a few runs of
//! everything, no budget enforced. `--only PHASE,...` runs those phases alone and judges only
//! their budgets. `--profile` records where oomtrace's start-up goes with perf.
//!
//! bpftrace, bpftool and perf must be installed: `cargo xtask bench` installs them.

mod bpf;
mod cgroups;
mod config;
mod kmsg;
mod phases;
mod procs;
mod report;
mod results;
mod signals;
mod stats;
mod sys;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::console::{progress, stdout_within};
use config::Config;
pub use config::Phase;

/// `oomtrace-bench bench [--smoke | --profile] [--only PHASE,...]`, with oomtrace and the hog
/// in `target`.
pub fn command(target: &Path, smoke: bool, profile: bool, only: &[Phase]) -> Result<ExitCode> {
    if profile {
        self::profile(target)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = if smoke {
        Config::smoke()
    } else {
        Config::full()
    }
    .only(only);
    let all_met = run(target, &config)?;
    if all_met || config.smoke {
        Ok(ExitCode::SUCCESS)
    } else {
        progress("bench: some budgets were missed (see above)");
        Ok(ExitCode::FAILURE)
    }
}

/// Runs every measurement; whether every budget was met.
fn run(target: &Path, config: &Config) -> Result<bool> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads BPF programs and creates memory cgroups: run it as root");
    }
    let mut paths = tools::Paths::find(target)?;
    // Both runtime clients connected, as on a node that runs Docker and containerd: the
    // host's Docker, and a containerd of the bench's own (never the host's).
    let containerd = oomtrace_tests::Containerd::start();
    paths.containerd_socket = Some(containerd.socket().to_owned());
    tools::both_runtimes_answer(&paths)?;
    let clock = tools::nsecs_clock(&paths.bpftrace)?;
    let supervisor = procs::Supervisor::new();
    let cgroups = cgroups::Cgroups::create(config.storm_cgroups);
    let bench = phases::Bench {
        supervisor: &supervisor,
        paths: &paths,
        clock,
        config,
        cgroups: &cgroups,
    };
    let mut results = report::Results {
        config: config.clone(),
        machine: report::Machine::here(),
        clock,
        ready: run_if(config, Phase::Ready, || phases::ready(&bench))?,
        memory: run_if(config, Phase::Memory, || phases::memory(&bench))?,
        latency: run_if(config, Phase::Latency, || phases::latency(&bench))?,
        storm: run_if(config, Phase::Storm, || phases::storm(&bench))?,
        signals: config
            .runs(Phase::Signals)
            .then(|| signals::storm(&bench))
            .transpose()?,
        binary: report::Binaries {
            oomtrace: sys::file_size(&paths.oomtrace)?,
            bpftrace: sys::file_size(&paths.bpftrace)?,
            image: phases::image_size(),
        },
    };
    results.machine.load_end = report::load_average();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    // A partial run keeps a file of its own, so that it never overwrites a whole run's.
    let file = dir.join(match (config.smoke, config.is_partial()) {
        (false, false) => "results.json".to_owned(),
        (true, false) => "smoke.json".to_owned(),
        (smoke, true) => {
            let phases: Vec<&str> = config.phases.iter().map(|p| p.name()).collect();
            let smoke = if smoke { "smoke-" } else { "" };
            format!("{smoke}only-{}.json", phases.join("-"))
        }
    });
    let budgets = report::budgets(&results);
    println!("{}", report::table(&results, &budgets));
    std::fs::write(&file, results::json(&results, &budgets)?)
        .with_context(|| format!("could not write {}", file.display()))?;
    progress(format_args!("wrote {}", file.display()));
    Ok(budgets.iter().all(|b| b.met == Some(true)))
}

/// `measure()`'s figures if `phase` is one this run takes, none otherwise.
fn run_if<T>(
    config: &Config,
    phase: Phase,
    measure: impl FnOnce() -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    if config.runs(phase) {
        measure()
    } else {
        Ok(Vec::new())
    }
}

/// Each perf run: a few seconds of starts, or of reading what they recorded.
const PERF_TIMEOUT: Duration = Duration::from_secs(300);

/// Where oomtrace's start-up goes: `perf stat` over 20 starts, and `perf record` over 10,
/// reported by symbol. Each start runs until ready and then 1 ms more (`--timeout 1ms`).
fn profile(target: &Path) -> Result<()> {
    let oomtrace = oomtrace_tests::oomtrace_bin();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let start = format!(
        "{} --json --no-journal --timeout 1ms >/dev/null 2>&1",
        oomtrace.display()
    );
    let stat = dir.join("profile-stat.txt");
    stdout_within(
        Command::new("perf")
            .args(["stat", "-r", "20", "-e"])
            .arg("task-clock,page-faults,context-switches,cpu-migrations")
            .arg("-o")
            .arg(&stat)
            .args(["--", "sh", "-c", &start]),
        PERF_TIMEOUT,
    )?;
    let data = dir.join("perf-startup.data");
    let runs = format!("for i in 1 2 3 4 5 6 7 8 9 10; do {start}; done");
    stdout_within(
        Command::new("perf")
            .args(["record", "-q", "-F", "20000", "-g", "-o"])
            .arg(&data)
            .args(["--", "sh", "-c", &runs]),
        PERF_TIMEOUT,
    )?;
    let report = stdout_within(
        Command::new("perf")
            .args(["report", "-i"])
            .arg(&data)
            .args([
                "--comm",
                "oomtrace",
                "--no-children",
                "--sort",
                "dso,symbol",
                "-g",
                "none",
                "--percent-limit",
                "0.7",
                "--stdio",
            ]),
        PERF_TIMEOUT,
    )?;
    let text = std::fs::read_to_string(&stat).unwrap_or_default();
    let out = dir.join("profile-startup.txt");
    std::fs::write(&out, format!("{text}\n{report}"))
        .with_context(|| format!("could not write {}", out.display()))?;
    println!("{text}");
    // perf pads each line with empty columns: only the percentage, object and symbol matter.
    for line in report
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        println!("{}", line.trim_end().trim_end_matches([' ', '-']));
    }
    progress(format_args!(
        "wrote {} and {}",
        out.display(),
        PathBuf::from(&data).display()
    ));
    Ok(())
}
