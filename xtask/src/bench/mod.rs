//! `cargo xtask bench`: oomtrace against a bpftrace one-liner on `tracepoint:oom:mark_victim`,
//! measured in the same run on real memory cgroups. Prints a table, writes
//! `target/bench/results.json`, and says of each budget whether it was met. `--smoke` is the
//! short version `cargo xtask test` runs so the bench cannot rot: a few runs of everything,
//! no budget enforced. `--profile` records where oomtrace's start-up goes with perf.

mod cgroups;
mod install;
mod json;
mod phases;
mod procs;
mod report;
mod stats;
mod sys;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::progress;
use crate::toolchain::Toolchain;

/// How much of everything a run measures.
#[derive(Clone, Debug)]
pub struct Config {
    pub smoke: bool,
    /// Starts per tool and attach mode.
    pub ready_runs: usize,
    /// Idle time before RSS is read.
    pub idle_rss: Duration,
    /// The idle window CPU ticks are counted over, after `idle_rss`.
    pub idle_cpu: Duration,
    /// Kills before the first after-kills RSS reading, and in all.
    pub warm_kills: usize,
    pub memory_kills: usize,
    /// Kills timed per tool, and the rounds they are split into.
    pub latency_kills: usize,
    pub latency_rounds: usize,
    pub storm: Duration,
    /// Cgroups OOMing at once in the storm and in the memory phase's kills.
    pub storm_cgroups: usize,
}

impl Config {
    pub fn full() -> Self {
        Self {
            smoke: false,
            ready_runs: 20,
            idle_rss: Duration::from_secs(10),
            idle_cpu: Duration::from_secs(60),
            warm_kills: 100,
            memory_kills: 1000,
            latency_kills: 200,
            latency_rounds: 4,
            storm: Duration::from_secs(30),
            storm_cgroups: 8,
        }
    }

    /// A minute or so: enough to run every measurement, too little for any budget to mean
    /// anything.
    pub fn smoke() -> Self {
        Self {
            smoke: true,
            ready_runs: 3,
            idle_rss: Duration::from_secs(1),
            idle_cpu: Duration::from_secs(2),
            warm_kills: 5,
            memory_kills: 20,
            latency_kills: 10,
            latency_rounds: 2,
            storm: Duration::from_secs(3),
            storm_cgroups: 4,
        }
    }
}

enum Mode {
    Bench(Config),
    Profile,
}

fn parse_args(args: &[String]) -> Result<Mode> {
    match args {
        [] => Ok(Mode::Bench(Config::full())),
        [flag] if flag == "--smoke" => Ok(Mode::Bench(Config::smoke())),
        [flag] if flag == "--profile" => Ok(Mode::Profile),
        _ => bail!("usage: cargo xtask bench [--smoke | --profile]"),
    }
}

/// `cargo xtask bench [--smoke | --profile]`.
pub fn command(args: &[String]) -> Result<ExitCode> {
    let mode = parse_args(args)?;
    let toolchain = crate::toolchain::ensure_build_toolchain()?;
    let oomtrace = crate::cargo::build(&toolchain)?;
    crate::host::ensure_test_prerequisites()?;
    match mode {
        Mode::Profile => {
            install::ensure_tools()?;
            profile(&toolchain, &oomtrace)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Bench(config) => {
            let all_met = run(&toolchain, &oomtrace, &config)?;
            if all_met || config.smoke {
                Ok(ExitCode::SUCCESS)
            } else {
                progress("bench: some budgets were missed (see above)");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The step of `cargo xtask test`, after the build and the host setup it already did.
pub fn smoke(toolchain: &Toolchain, oomtrace: &Path) -> Result<()> {
    run(toolchain, oomtrace, &Config::smoke()).map(|_| ())
}

/// Runs every measurement; whether every budget was met.
fn run(toolchain: &Toolchain, oomtrace: &Path, config: &Config) -> Result<bool> {
    if !crate::host::is_root() {
        bail!("the bench loads BPF programs and creates memory cgroups: run it as root");
    }
    let bpftrace = install::ensure_tools()?;
    let target = crate::cargo::target_dir(toolchain)?;
    let hog = target.join("release").join("hog");
    if !hog.is_file() {
        bail!("{} is missing after the build", hog.display());
    }
    let paths = tools::Paths {
        oomtrace: oomtrace.to_path_buf(),
        hog,
        bpftrace,
    };
    let clock = tools::nsecs_clock(&paths.bpftrace)?;
    let supervisor = procs::Supervisor::new();
    let cgroups = cgroups::Cgroups::create(config.storm_cgroups)?;
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
        ready: phases::ready(&bench)?,
        memory: phases::memory(&bench)?,
        latency: phases::latency(&bench)?,
        storm: phases::storm(&bench)?,
        binary: report::Binaries {
            oomtrace: sys::file_size(&paths.oomtrace)?,
            bpftrace: sys::file_size(&paths.bpftrace)?,
            image: phases::image_size(),
        },
    };
    results.machine.load_end = report::load_average();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let file = dir.join(if config.smoke {
        "smoke.json"
    } else {
        "results.json"
    });
    let budgets = report::budgets(&results);
    println!("{}", report::table(&results, &budgets));
    std::fs::write(&file, report::json(&results, &budgets).pretty())
        .with_context(|| format!("could not write {}", file.display()))?;
    progress(format_args!("wrote {}", file.display()));
    Ok(budgets.iter().all(|b| b.met == Some(true)))
}

/// Where oomtrace's start-up goes: `perf stat` over 20 starts, and `perf record` over 10,
/// reported by symbol. Each start runs until ready and then 1 ms more (`--timeout 1ms`).
fn profile(toolchain: &Toolchain, oomtrace: &Path) -> Result<()> {
    let dir = crate::cargo::target_dir(toolchain)?.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let start = format!(
        "{} --json --no-journal --timeout 1ms >/dev/null 2>&1",
        oomtrace.display()
    );
    let stat = dir.join("profile-stat.txt");
    crate::cmd::run(
        Command::new("perf")
            .args(["stat", "-r", "20", "-e"])
            .arg("task-clock,page-faults,context-switches,cpu-migrations")
            .arg("-o")
            .arg(&stat)
            .args(["--", "sh", "-c", &start]),
    )?;
    let data = dir.join("perf-startup.data");
    let runs = format!("for i in 1 2 3 4 5 6 7 8 9 10; do {start}; done");
    crate::cmd::run(
        Command::new("perf")
            .args(["record", "-q", "-F", "20000", "-g", "-o"])
            .arg(&data)
            .args(["--", "sh", "-c", &runs])
            .stdout(Stdio::null()),
    )?;
    let report = crate::cmd::stdout_of(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_arguments() {
        assert!(matches!(parse_args(&[]), Ok(Mode::Bench(c)) if !c.smoke && c.ready_runs >= 20));
        assert!(matches!(parse_args(&["--smoke".into()]), Ok(Mode::Bench(c)) if c.smoke));
        assert!(matches!(
            parse_args(&["--profile".into()]),
            Ok(Mode::Profile)
        ));
        assert!(parse_args(&["--fast".into()]).is_err());
    }

    #[test]
    fn the_full_bench_measures_what_the_issue_asks() {
        let c = Config::full();
        assert!(c.ready_runs >= 20);
        assert_eq!(c.idle_rss, Duration::from_secs(10));
        assert_eq!(c.idle_cpu, Duration::from_secs(60));
        assert!(c.memory_kills >= 1000 && c.warm_kills < c.memory_kills);
        assert!(c.latency_kills >= 200);
        assert_eq!(c.storm, Duration::from_secs(30));
    }
}
