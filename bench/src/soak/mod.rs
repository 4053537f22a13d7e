//! `cargo xtask soak [--containers N]`: oomtrace through the conditions it exists to watch.
//!
//! A release oomtrace watches (`--json` to a file, `--output` to a 64 KiB tmpfs) while N
//! containers (default 300) start and stop in waves, a third of them OOM-killed at once by a
//! `dd` into a 32 MiB limit. In the middle, Docker restarts (the soak's own daemon: see
//! `daemon`), and the `--output` disk fills up. At the end every kill must have been
//! reported exactly once, naming its container, and every container Docker flags OOMKilled
//! must be among them (the flag can miss a kill; oomtrace must not); no event may have been
//! dropped but the lines the full disk refused; oomtrace must have warned once about the
//! disk, kept writing stdout, never died, and kept its memory bounded and within the bench's
//! budget.
//!
//! Every check is about the soak's own containers (labelled, named `oomtrace-soak-<pid>-…`):
//! other kills on the host may come and go during the run.

mod checks;
mod daemon;
mod disk;
mod memory;
mod outcome;

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use oomtrace_tests::{Tracer, docker::IMAGE};
use serde_json::Value;

use crate::console::progress;
use crate::proc;
use daemon::{Daemon, Docker, LABEL_KEY};
use disk::{Scratch, Tmpfs, fill};
use memory::Sampler;
use outcome::{DockerHog, END_RSS_KIB, Outcome};

pub const DEFAULT_CONTAINERS: u64 = 300;
/// Containers per wave (fewer waves than two leave no middle to restart Docker in).
const WAVE: usize = 30;
/// `docker run`s in flight at once: enough to start a wave in a few seconds without a
/// hundred CLI processes at a time.
const PARALLEL: usize = 8;
/// A kill reaches oomtrace's stdout well within a second; this bounds a loaded host.
const REPORT_WAIT: Duration = Duration::from_secs(30);
/// oomtrace gives back what a burst of kills mapped once it has been quiet for 2 s; RSS at
/// rest is read until it is within budget, for at most this long after the last wave.
const SETTLE_WAIT: Duration = Duration::from_secs(6);

/// The hog: allocates and touches 200 MiB at once, so it is OOM-killed in a 32 MiB container.
const HOG: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"];
const HOG_LIMIT: &str = "32m";
/// The others idle until stopped; the loop is the workload, and the trap lets `docker stop`
/// (and the daemon's own shutdown) end them at once rather than after 10 s.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// `oomtrace-bench soak --containers N`: logs go to `target/soak`.
pub fn command(target: &Path, containers: usize) -> Result<ExitCode> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak loads eBPF, mounts a tmpfs and runs a dockerd: run it as root");
    }
    let logs = target.join("soak");
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;

    let started = Instant::now();
    let outcome = soak(containers, &logs)?;
    println!("{}", outcome.report(started.elapsed()));
    if outcome.passed() {
        println!("soak: logs in {}", logs.display());
        Ok(ExitCode::SUCCESS)
    } else {
        progress(format_args!("the soak failed (logs in {})", logs.display()));
        Ok(ExitCode::FAILURE)
    }
}

/// One container of the plan.
struct Planned {
    name: String,
    hog: bool,
}

/// `containers` in waves of about [`WAVE`], at least two; every third container a hog, spread
/// over the waves.
fn plan(run: u32, containers: usize) -> Vec<Vec<Planned>> {
    let waves = containers.div_ceil(WAVE).max(2);
    (0..waves)
        .map(|wave| {
            (wave..containers)
                .step_by(waves)
                .map(|n| {
                    let hog = n % 3 == 0;
                    let kind = if hog { "hog" } else { "idle" };
                    Planned {
                        name: format!("oomtrace-soak-{run}-{kind}-{n:03}"),
                        hog,
                    }
                })
                .collect()
        })
        .collect()
}

fn soak(containers: usize, logs: &Path) -> Result<Outcome> {
    let run = std::process::id();
    let label = format!("{LABEL_KEY}={run}");
    let waves = plan(run, containers);
    let mut outcome = Outcome {
        containers,
        waves: waves.len(),
        restart_after: waves.len() / 2 - 1,
        fill_after: (waves.len() / 3).max(1) - 1,
        ..Outcome::default()
    };

    // Dropped in reverse: oomtrace, then the daemon and its containers, then the tmpfs, then
    // the directory they were in.
    let scratch = Scratch::create();
    let tmpfs = Tmpfs::mount(&scratch.path().join("output"))?;
    let output = tmpfs.path().join("oomtrace.jsonl");
    outcome.output_path = output.display().to_string();
    let mut daemon = Daemon::start(scratch.path(), &logs.join("dockerd.log"))?;
    daemon.load_image(IMAGE)?;
    let socket = daemon.socket.display().to_string();
    // `--json`, and `--no-journal`: the soak's kills do not belong in the host's journal.
    let mut tracer = Tracer::start_logged(
        &["--output", &outcome.output_path, "--docker-socket", &socket],
        logs,
    );
    let sampler = Sampler::start(tracer.pid());
    progress(format_args!(
        "soak: {containers} containers in {} waves, {} to be OOM-killed",
        waves.len(),
        waves.iter().flatten().filter(|c| c.hog).count()
    ));

    let mut filled = false;
    for (at, wave) in waves.iter().enumerate() {
        let wave_started = Instant::now();
        let ids = start_wave(&daemon.docker, &label, wave)?;
        let (hogs, idle): (Vec<_>, Vec<_>) = wave.iter().zip(ids).partition(|(c, _)| c.hog);
        outcome
            .idle_ids
            .extend(idle.iter().map(|(_, id)| id.clone()));
        let hog_names: Vec<&str> = hogs.iter().map(|(c, _)| c.name.as_str()).collect();
        if !hog_names.is_empty() {
            let mut wait = vec!["wait"];
            wait.extend(&hog_names);
            daemon.docker.run(&wait)?;
            outcome
                .hogs
                .extend(inspect(&daemon.docker, &hog_names, filled)?);
        }
        let awaited: Vec<String> = hogs.iter().map(|(_, id)| id.clone()).collect();
        let missing = await_reports(&tracer, &awaited);
        progress(format_args!(
            "soak: wave {}/{}: {} containers, {} OOM-killed, {} of their kills reported, in {:.1} s",
            at + 1,
            waves.len(),
            wave.len(),
            hogs.len(),
            hogs.len() - missing,
            wave_started.elapsed().as_secs_f64()
        ));

        // The daemon stops this wave's idle containers itself as it shuts down.
        if at == outcome.restart_after {
            progress("soak: restarting the soak's dockerd");
            outcome.downtime = daemon.restart()?;
        }
        if at == outcome.fill_after {
            outcome.output_at_fill = fs::metadata(&output).map_or(0, |m| m.len());
            outcome.filler_bytes = fill(&tmpfs.path().join("filler"))?;
            filled = true;
            progress(format_args!(
                "soak: --output's disk is full (filler of {} bytes)",
                outcome.filler_bytes
            ));
        }
        let idle_names: Vec<&str> = idle.iter().map(|(c, _)| c.name.as_str()).collect();
        if !idle_names.is_empty() {
            let mut stop = vec!["stop", "--time", "5"];
            stop.extend(&idle_names);
            daemon.docker.run(&stop)?;
        }
        let mut remove = vec!["rm", "--force"];
        remove.extend(wave.iter().map(|c| c.name.as_str()));
        daemon.docker.run(&remove)?;

        if tracer.exited().is_some() {
            outcome.died = Some(at + 1);
            break;
        }
        // Once quiet, as the settled figure is read: right after a wave the watch may or may
        // not have given back what the wave's events touched, which is not growth.
        outcome
            .rss_by_wave
            .extend(proc::rss_at_rest(tracer.pid(), END_RSS_KIB, SETTLE_WAIT));
    }

    if outcome.died.is_none() {
        outcome.settled_rss = proc::rss_at_rest(tracer.pid(), END_RSS_KIB, SETTLE_WAIT);
    }
    // Read last just before the signal.
    outcome.memory = sampler.stop();
    // Signals only an oomtrace still running; one already gone gives its status at once. Its
    // pipes are read to their end: a late duplicate report would be among the last lines.
    let stopped = tracer.stop();
    outcome.exit = stopped.status.to_string();
    outcome.exited_cleanly = stopped.status.success();
    for kill in &stopped.reports {
        if let Some((id, name)) = container_of(kill) {
            outcome.reports.entry(id).or_default().push(name);
        }
    }
    outcome.stderr = stopped.stderr;
    outcome.output = fs::read_to_string(&output).unwrap_or_default();
    let _ = fs::write(logs.join("output.jsonl"), &outcome.output);
    outcome.stdout_lines = fs::read_to_string(logs.join("stdout.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or_default();

    let removed = daemon.remove_labelled(&label)?;
    if removed > 0 {
        progress(format_args!("soak: removed {removed} leftover containers"));
    }
    daemon.stop()?;
    Ok(outcome)
}

/// Starts every container of the wave, [`PARALLEL`] at a time; their ids, in order.
fn start_wave(docker: &Docker, label: &str, wave: &[Planned]) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(wave.len());
    for batch in wave.chunks(PARALLEL) {
        let started: Vec<Result<String>> = thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .map(|c| scope.spawn(move || docker.run(&run_args(label, c))))
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .unwrap_or_else(|_| bail!("a `docker run` thread panicked"))
                })
                .collect()
        });
        for id in started {
            ids.push(id?);
        }
    }
    Ok(ids)
}

fn run_args<'a>(label: &'a str, c: &'a Planned) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--detach",
        "--network",
        "none",
        "--label",
        label,
        "--name",
        &c.name,
    ];
    if c.hog {
        args.extend(["--memory", HOG_LIMIT, IMAGE]);
        args.extend(HOG);
    } else {
        args.extend([IMAGE, "sh", "-c", IDLE]);
    }
    args
}

/// What Docker says about each hog, now that it has exited.
fn inspect(docker: &Docker, names: &[&str], after_fill: bool) -> Result<Vec<DockerHog>> {
    let mut args = vec![
        "inspect",
        "--format",
        "{{.Name}} {{.Id}} {{.State.OOMKilled}} {{.State.ExitCode}}",
    ];
    args.extend(names);
    docker
        .run(&args)?
        .lines()
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [name, id, oom_killed, exit_code] => Ok(DockerHog {
                    name: name.trim_start_matches('/').to_owned(),
                    id: id.to_owned(),
                    after_fill,
                    oom_killed: oom_killed == "true",
                    exit_code: exit_code.to_owned(),
                }),
                _ => bail!("`docker inspect` printed `{line}`"),
            },
        )
        .collect()
}

/// Waits until every one of `ids` has a kill report, for at most [`REPORT_WAIT`]; how many of
/// `ids` have none.
fn await_reports(tracer: &Tracer, ids: &[String]) -> usize {
    let missing = |kills: &[Value]| {
        ids.iter()
            .filter(|id| !kills.iter().any(|k| k["container"]["id"] == id.as_str()))
            .count()
    };
    missing(&tracer.wait_until(REPORT_WAIT, |kills| missing(kills) == 0))
}

/// The container a kill report names, its id and its name, if it is one and names one.
fn container_of(kill: &Value) -> Option<(String, Option<String>)> {
    if kill["event"] != "oom_kill" {
        return None;
    }
    let container = &kill["container"];
    Some((
        container["id"].as_str()?.to_owned(),
        container["name"].as_str().map(str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_a_third_hogs_over_at_least_two_waves() {
        let waves = plan(7, 300);
        assert_eq!(waves.len(), 10);
        assert!(waves.iter().all(|w| w.len() == 30));
        let hogs = waves.iter().flatten().filter(|c| c.hog).count();
        assert_eq!(hogs, 100);
        assert!(waves.iter().all(|w| w.iter().any(|c| c.hog)));

        let small = plan(7, 30);
        assert_eq!(small.len(), 2);
        assert_eq!(small.iter().flatten().count(), 30);
        assert_eq!(small.iter().flatten().filter(|c| c.hog).count(), 10);
        let mut names: Vec<&str> = small.iter().flatten().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 30);
    }

    #[test]
    fn reads_the_container_of_a_kill() {
        let kill = |line: &str| container_of(&serde_json::from_str(line).expect("JSON"));
        let line = r#"{"schema":1,"event":"oom_kill","victim":{"pid":4,"comm":"dd"},"cgroup":{"id":7,"path":"/docker/ab"},"container":{"runtime":"docker","id":"ab","name":"oomtrace-soak-1-hog-0","image":"i","pod":null},"oom":{"id":3}}"#;
        let (id, name) = kill(line).expect("a kill");
        assert_eq!(id, "ab");
        assert_eq!(name.as_deref(), Some("oomtrace-soak-1-hog-0"));

        let unnamed = line.replace(r#""name":"oomtrace-soak-1-hog-0""#, r#""name":null"#);
        assert_eq!(kill(&unnamed).expect("a kill").1, None);
        let exit = line.replace("oom_kill", "container_exit");
        assert!(kill(&exit).is_none());
        let host =
            r#"{"schema":1,"event":"oom_kill","cgroup":{"id":7,"path":"/x"},"container":null}"#;
        assert!(kill(host).is_none());
    }
}
