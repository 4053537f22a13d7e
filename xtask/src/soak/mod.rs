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

mod daemon;
mod process;
mod tracer;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cmd::progress;
use crate::host;
use crate::toolchain::ensure_build_toolchain;
use daemon::{Daemon, Docker};
use process::stdout_within;
use tracer::{Kill, Memory, Tracer};

/// The label every soak container carries; its value is the soak's pid.
const LABEL_KEY: &str = "oomtrace-soak";
const DEFAULT_CONTAINERS: usize = 300;
/// Containers per wave (fewer waves than two leave no middle to restart Docker in).
const WAVE: usize = 30;
/// `docker run`s in flight at once: enough to start a wave in a few seconds without a
/// hundred CLI processes at a time.
const PARALLEL: usize = 8;
/// A kill reaches oomtrace's stdout well within a second; this bounds a loaded host.
const REPORT_WAIT: Duration = Duration::from_secs(30);
/// Small enough that the lines of a few kills fill it.
const TMPFS_SIZE: &str = "64k";
/// The bench's budgets (xtask/src/bench/report.rs): peak RSS (VmHWM) and RSS at rest.
const PEAK_RSS_KIB: u64 = 12 * 1024;
const END_RSS_KIB: u64 = 4 * 1024;
/// oomtrace gives back what a burst of kills mapped once it has been quiet for 2 s; RSS at
/// rest is read until it is within budget, for at most this long after the last wave.
const SETTLE_WAIT: Duration = Duration::from_secs(6);
/// How much RSS may grow from the end of the first wave (every path warm: enrichment, both
/// outputs) to the end of the last. oomtrace's Docker cache keeps a removed container for five
/// minutes, so RSS rises until the first ones age out: by 0.3 MiB over 300 containers, and by
/// 0.9 MiB over 1500, where it stayed for the last 20 waves. A leak per container outgrows
/// this; the cache's bound does not.
const GROWTH_KIB: u64 = 2 * 1024;
/// tmpfs allocates whole pages: a file keeps taking lines into its last page after the
/// filler has taken every free one.
const PAGE: u64 = 4096;

/// The hog: allocates and touches 200 MiB at once, so it is OOM-killed in a 32 MiB container.
const HOG: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"];
const HOG_LIMIT: &str = "32m";
/// The others idle until stopped; the loop is the workload, and the trap lets `docker stop`
/// (and the daemon's own shutdown) end them at once rather than after 10 s.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

pub fn command(args: &[String]) -> Result<ExitCode> {
    let containers = parse_args(args)?;
    if !host::is_root() {
        bail!("the soak loads eBPF, mounts a tmpfs and runs a dockerd: run it as root");
    }
    let toolchain = ensure_build_toolchain()?;
    let bin = crate::cargo::build(&toolchain)?;
    host::ensure_test_prerequisites()?;
    let logs = crate::cargo::target_dir(&toolchain)?.join("soak");
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;

    let started = Instant::now();
    let outcome = soak(&bin, containers, &logs)?;
    let elapsed = started.elapsed();
    println!("{}", outcome.report(elapsed));
    println!("soak: logs in {}", logs.display());
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The containers of the soak `cargo xtask test` runs: two waves of 15, ten kills, a Docker
/// restart and a full disk in under a minute.
pub const CI_CONTAINERS: usize = 30;

/// The soak as a step of `cargo xtask test`, with `bin` already built and the host set up.
pub fn ci(toolchain: &crate::toolchain::Toolchain, bin: &std::path::Path) -> Result<()> {
    let logs = crate::cargo::target_dir(toolchain)?.join("soak");
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs).with_context(|| format!("could not create {}", logs.display()))?;
    let started = Instant::now();
    let outcome = soak(bin, CI_CONTAINERS, &logs)?;
    println!("{}", outcome.report(started.elapsed()));
    if !outcome.passed() {
        bail!("the soak failed (logs in {})", logs.display());
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<usize> {
    let containers = match args {
        [] => DEFAULT_CONTAINERS,
        [flag, n] if flag == "--containers" => n
            .parse()
            .with_context(|| format!("--containers takes a whole number, not `{n}`"))?,
        _ => bail!("usage: cargo xtask soak [--containers N]"),
    };
    if containers < 3 {
        bail!("--containers must be at least 3, so that one is OOM-killed");
    }
    Ok(containers)
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

/// A hog as Docker saw it.
struct Hog {
    name: String,
    id: String,
    /// Whether it ran after the `--output` disk had filled.
    after_fill: bool,
    oom_killed: bool,
    exit_code: String,
}

/// What the soak saw, for the checks and the report.
#[derive(Default)]
struct Outcome {
    containers: usize,
    waves: usize,
    hogs: Vec<Hog>,
    idle_ids: Vec<String>,
    /// Every kill report about a container, by container id: its names, in order.
    reports: HashMap<String, Vec<Option<String>>>,
    restart_after: usize,
    downtime: Duration,
    fill_after: usize,
    filler_bytes: u64,
    /// The `--output` file's length when its disk filled.
    output_at_fill: u64,
    output_path: String,
    /// The `--output` file as the disk filled it.
    output: String,
    /// The wave at whose end oomtrace was found gone, counted from 1.
    died: Option<usize>,
    exit: String,
    exited_cleanly: bool,
    stderr: Vec<String>,
    memory: Memory,
    /// VmRSS at the end of each wave, in KiB.
    rss_by_wave: Vec<u64>,
    /// VmRSS once oomtrace was quiet after the last wave (or [`SETTLE_WAIT`] passed), in KiB.
    settled_rss: Option<u64>,
    stdout_lines: usize,
}

fn soak(bin: &Path, containers: usize, logs: &Path) -> Result<Outcome> {
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
    let scratch = Scratch::create(&format!("oomtrace-soak-{run}"))?;
    let tmpfs = Tmpfs::mount(&scratch.0.join("output"))?;
    let output = tmpfs.0.join("oomtrace.jsonl");
    outcome.output_path = output.display().to_string();
    let mut daemon = Daemon::start(&scratch.0, &logs.join("dockerd.log"))?;
    daemon.load_image(host::TEST_IMAGE)?;
    let socket = daemon.socket.display().to_string();
    let mut tracer = Tracer::start(
        bin,
        &[
            "--json",
            "--output",
            &outcome.output_path,
            "--docker-socket",
            &socket,
            // The soak's kills do not belong in the host's journal.
            "--no-journal",
        ],
        &logs.join("stdout.jsonl"),
        &logs.join("stderr.log"),
    )?;
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
        let missing = await_reports(&mut tracer, &awaited, &mut outcome.reports);
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
            outcome.filler_bytes = fill(&tmpfs.0.join("filler"))?;
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
        outcome.rss_by_wave.extend(tracer.rss());
    }

    if outcome.died.is_none() {
        outcome.settled_rss = tracer.rss_at_rest(END_RSS_KIB, SETTLE_WAIT);
    }
    // Signals only an oomtrace still running; one already gone gives its status at once.
    let (status, memory) = tracer.stop()?;
    outcome.exit = crate::cmd::describe(status);
    outcome.exited_cleanly = status.success();
    outcome.memory = memory;
    // Reports still in the pipe: a late duplicate would be one of them. The stdout thread
    // ends at oomtrace's end of stdout, which ends this.
    let deadline = Instant::now() + REPORT_WAIT;
    while let Ok(kill) = tracer
        .kills
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        record(&mut outcome.reports, kill);
    }
    outcome.stderr = std::mem::take(&mut tracer.stderr);
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
        args.extend(["--memory", HOG_LIMIT, host::TEST_IMAGE]);
        args.extend(HOG);
    } else {
        args.extend([host::TEST_IMAGE, "sh", "-c", IDLE]);
    }
    args
}

/// What Docker says about each hog, now that it has exited.
fn inspect(docker: &Docker, names: &[&str], after_fill: bool) -> Result<Vec<Hog>> {
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
                [name, id, oom_killed, exit_code] => Ok(Hog {
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

/// Takes kill reports as they arrive until every one of `ids` has one, for at most
/// [`REPORT_WAIT`]; how many of `ids` have none.
fn await_reports(
    tracer: &mut Tracer,
    ids: &[String],
    reports: &mut HashMap<String, Vec<Option<String>>>,
) -> usize {
    let deadline = Instant::now() + REPORT_WAIT;
    let missing = |reports: &HashMap<String, Vec<Option<String>>>| {
        ids.iter().filter(|id| !reports.contains_key(*id)).count()
    };
    while missing(reports) > 0 {
        match tracer
            .kills
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(kill) => record(reports, kill),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    missing(reports)
}

fn record(reports: &mut HashMap<String, Vec<Option<String>>>, kill: Kill) {
    reports.entry(kill.id).or_default().push(kill.name);
}

/// Fills the disk `path` is on, as another writer would; how many bytes it took.
fn fill(path: &Path) -> Result<u64> {
    let mut file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let chunk = [0u8; 4096];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => bail!("{} took no more bytes but said no error", path.display()),
            Ok(n) => written += n as u64,
            Err(err) if err.kind() == ErrorKind::StorageFull => return Ok(written),
            Err(err) => return Err(err).context(format!("could not fill {}", path.display())),
        }
    }
}

/// One check: what it asks, whether it held, and what was seen.
struct Check {
    what: &'static str,
    passed: bool,
    seen: String,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.passed)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let mut check = |what, passed, seen: String| checks.push(Check { what, passed, seen });

        // The hog's own end is the ground truth: SIGKILL (137) is what the OOM killer sends
        // and nothing else here does. Docker's OOMKilled flag is not: it comes from a
        // separate OOM event that can lose the race with the exit and stay false.
        let not_killed: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| h.exit_code != "137")
            .map(|h| format!("{} exited {}", h.name, h.exit_code))
            .collect();
        check(
            "every hog was killed (exit 137)",
            not_killed.is_empty(),
            summarise(self.hogs.len(), &not_killed),
        );

        let count = |id: &str| self.reports.get(id).map_or(0, Vec::len);
        let not_once: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| count(&h.id) != 1)
            .map(|h| format!("{} reported {} times", h.name, count(&h.id)))
            .collect();
        check(
            "every kill reported exactly once",
            not_once.is_empty(),
            summarise(self.hogs.len(), &not_once),
        );

        let misnamed: Vec<String> = self
            .hogs
            .iter()
            .flat_map(|h| {
                let reported = self.reports.get(&h.id).into_iter().flatten();
                reported
                    .filter(|name| name.as_deref() != Some(h.name.as_str()))
                    .map(|name| format!("{} reported as {name:?}", h.name))
            })
            .collect();
        check(
            "every report names the killed container",
            misnamed.is_empty(),
            summarise(self.hogs.len(), &misnamed),
        );

        let flagged_unreported: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| h.oom_killed && count(&h.id) == 0)
            .map(|h| h.name.clone())
            .collect();
        let flagged = self.hogs.iter().filter(|h| h.oom_killed).count();
        check(
            "every container Docker says was OOM-killed was reported",
            flagged_unreported.is_empty(),
            format!(
                "{}; Docker's OOMKilled was true for {flagged} of the {} killed",
                summarise(flagged, &flagged_unreported),
                self.hogs.len()
            ),
        );

        let idle_reported: Vec<&String> = self
            .idle_ids
            .iter()
            .filter(|id| self.reports.contains_key(*id))
            .collect();
        check(
            "no kill reported in a container that had none",
            idle_reported.is_empty(),
            format!(
                "{} of {} idle containers",
                idle_reported.len(),
                self.idle_ids.len()
            ),
        );

        let after_fill: Vec<&Hog> = self.hogs.iter().filter(|h| h.after_fill).collect();
        let reported_after = after_fill.iter().filter(|h| count(&h.id) > 0).count();
        check(
            "stdout kept reporting after the --output disk filled",
            !after_fill.is_empty() && reported_after == after_fill.len(),
            format!("{reported_after} of {} later kills", after_fill.len()),
        );

        check(
            "oomtrace ran to the end and exited 0 on SIGINT",
            self.died.is_none() && self.exited_cleanly,
            match self.died {
                Some(wave) => format!("gone after wave {wave} ({})", self.exit),
                None => self.exit.clone(),
            },
        );

        let panics: Vec<&String> = self
            .stderr
            .iter()
            .filter(|l| l.contains("panicked"))
            .collect();
        check(
            "no panic",
            panics.is_empty(),
            panics.first().map_or("none".into(), |l| l.to_string()),
        );

        let full = format!("cannot write to {}", self.output_path);
        let warnings = self.stderr.iter().filter(|l| l.contains(&full)).count();
        let again = format!("writing to {} again", self.output_path);
        let recovered = self.stderr.iter().filter(|l| l.contains(&again)).count();
        check(
            "one warning about the full --output disk, which stayed full",
            warnings == 1 && recovered == 0,
            format!("{warnings} `cannot write`, {recovered} `writing again`"),
        );

        let (dropped_ok, dropped) = self.drops();
        check(
            "no event dropped but the lines the full disk refused",
            dropped_ok,
            dropped,
        );

        let (output_ok, output) = self.output_check();
        check(
            "--output held whole lines up to the fill",
            output_ok,
            output,
        );

        let m = self.memory;
        let (warm, end) = (
            self.rss_by_wave.first().copied(),
            self.rss_by_wave.last().copied(),
        );
        check(
            "RSS did not grow with the containers",
            warm.zip(end)
                .is_some_and(|(warm, end)| end <= warm + GROWTH_KIB),
            format!(
                "{} after the first wave, {} after the last (slack {}); by wave: {}",
                warm.map_or("?".into(), mib),
                end.map_or("?".into(), mib),
                mib(GROWTH_KIB),
                self.rss_by_wave
                    .iter()
                    .map(|&kib| format!("{:.1}", kib as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        check(
            "RSS within the bench's budget",
            m.samples > 0
                && m.hwm <= PEAK_RSS_KIB
                && self.settled_rss.is_some_and(|rss| rss <= END_RSS_KIB),
            format!(
                "VmHWM {} (budget {}), VmRSS at rest after the last wave {} (budget {}); highest sampled {} in {} samples",
                mib(m.hwm),
                mib(PEAK_RSS_KIB),
                self.settled_rss.map_or("?".into(), mib),
                mib(END_RSS_KIB),
                mib(m.peak_rss),
                m.samples
            ),
        );
        checks
    }

    /// The summary line's drops: only `not written to <--output>` may be there.
    fn drops(&self) -> (bool, String) {
        let Some(summary) = self
            .stderr
            .iter()
            .rev()
            .find(|l| l.contains("reported") && l.contains("dropped"))
        else {
            return (false, "no summary line".into());
        };
        let refused = format!("not written to {}", self.output_path);
        let ok = match summary.split_once(" dropped (") {
            None => summary.contains(" 0 events dropped"),
            Some((_, why)) => why
                .split_once(')')
                .map(|(why, _)| why)
                .unwrap_or(why)
                .split(", ")
                .all(|part| part.split_once(' ').is_some_and(|(_, why)| why == refused)),
        };
        (ok, summary.trim_start_matches("oomtrace: ").to_owned())
    }

    /// The `--output` file: whole JSON lines, the soak's kills from before the fill in it, and
    /// after the fill no more than its last page took.
    fn output_check(&self) -> (bool, String) {
        let whole = self
            .output
            .split_terminator('\n')
            .all(|l| l.starts_with('{') && l.ends_with('}'))
            && (self.output.is_empty() || self.output.ends_with('\n'));
        let held = |h: &&Hog| self.output.contains(&format!("\"id\":\"{}\"", h.id));
        let before = self
            .hogs
            .iter()
            .filter(|h| !h.after_fill)
            .filter(held)
            .count();
        let after = self
            .hogs
            .iter()
            .filter(|h| h.after_fill)
            .filter(held)
            .count();
        let length = self.output.len() as u64;
        let room = self.output_at_fill.next_multiple_of(PAGE);
        (
            whole && before > 0 && length <= room,
            format!(
                "{} lines, {}; {before} of the soak's kills before the fill, {after} after in \
                 the last page's room ({} bytes at the fill, {length} at the end)",
                self.output.lines().count(),
                if whole { "all whole" } else { "NOT all whole" },
                self.output_at_fill,
            ),
        )
    }

    fn report(&self, elapsed: Duration) -> String {
        let named_once = self
            .hogs
            .iter()
            .filter(|h| {
                self.reports.get(&h.id).is_some_and(|names| {
                    names.len() == 1 && names[0].as_deref() == Some(h.name.as_str())
                })
            })
            .count();
        let mut out = format!(
            "soak: {} containers in {} waves, {} OOM-killed, in {:.0} s\n",
            self.containers,
            self.waves,
            self.hogs.len(),
            elapsed.as_secs_f64()
        );
        out += &format!(
            "soak: Docker restarted after wave {} (down {:.1} s); --output's disk filled after wave {}\n",
            self.restart_after + 1,
            self.downtime.as_secs_f64(),
            self.fill_after + 1
        );
        out += &format!(
            "soak: {named_once} of {} kills reported once and named; {} lines on stdout\n",
            self.hogs.len(),
            self.stdout_lines
        );
        for check in self.checks() {
            let verdict = if check.passed { "ok  " } else { "FAIL" };
            out += &format!("soak: {verdict} {}: {}\n", check.what, check.seen);
        }
        out += if self.passed() {
            "soak: passed"
        } else {
            "soak: FAILED"
        };
        out
    }
}

/// `all N` or the first few problems and how many there were.
fn summarise(total: usize, problems: &[String]) -> String {
    if problems.is_empty() {
        return format!("all {total}");
    }
    let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
    format!("{} of {total}: {}", problems.len(), shown.join("; "))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The soak's scratch directory (the daemon's state, the tmpfs), removed at the end unless
/// something is still mounted below it.
struct Scratch(PathBuf);

impl Scratch {
    fn create(name: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(name);
        // A leftover of an earlier run with the same pid is stale by definition.
        if !mounted_below(&path) {
            let _ = fs::remove_dir_all(&path);
        }
        fs::create_dir_all(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if mounted_below(&self.0) {
            progress(format_args!(
                "soak: left {} in place: something is still mounted below it",
                self.0.display()
            ));
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether any mount point lies below `dir`: removing it would reach into that filesystem.
fn mounted_below(dir: &Path) -> bool {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|point| point.starts_with(&prefix))
    })
}

/// The small tmpfs `--output` writes to.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Result<Self> {
        fs::create_dir_all(at).with_context(|| format!("could not create {}", at.display()))?;
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={TMPFS_SIZE},mode=0755"))
            .arg("oomtrace-soak")
            .arg(at);
        stdout_within(&mut mount, MOUNT_TIMEOUT)?;
        Ok(Self(at.to_owned()))
    }
}

const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(err) = stdout_within(Command::new("umount").arg(&self.0), MOUNT_TIMEOUT) {
            progress(format_args!("soak: could not unmount the tmpfs: {err:#}"));
        }
    }
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
    fn reads_the_drops_of_the_summary() {
        let outcome = |summary: &str| Outcome {
            output_path: "/t/out.jsonl".into(),
            stderr: vec![summary.into()],
            ..Outcome::default()
        };
        let clean = "oomtrace: 12 OOM kills reported, 0 events dropped; the kernel counted 12";
        assert!(outcome(clean).drops().0);
        let full = "oomtrace: 12 OOM kills reported, 7 events dropped (7 not written to /t/out.jsonl); the kernel counted 12";
        assert!(outcome(full).drops().0);
        let ring = "oomtrace: 12 OOM kills reported, 9 events dropped (2 found the kernel's ring buffer full, 7 not written to /t/out.jsonl)";
        assert!(!outcome(ring).drops().0);
        assert!(!outcome("oomtrace: watching for OOM kills").drops().0);
    }
}
