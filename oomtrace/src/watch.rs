//! `oomtrace`: attach, then turn every ring buffer record into a report until told to stop.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::{KernelArgs, WatchArgs},
    docker, enrich,
    filter::Filter,
    layout::cgroup_mode_name,
    loader::{self, AttachMode, Attached, Targets},
    plan::{self, Plan},
    preflight,
    report::{self, Clock},
    sink::{SinkError, Sinks, StdoutFormat},
};

/// Counts for the summary printed at exit.
#[derive(Debug, Default)]
struct Tally {
    reported: u64,
    /// Kills seen but not shown, because of `--container`, `--pid` or `--comm`.
    filtered: u64,
    /// Records that could not be decoded; added to the kernel's own drop count.
    undecodable: u64,
}

/// Checks privileges, plans, loads and attaches; shared by `oomtrace` and `oomtrace check`.
pub fn attach(kernel: &KernelArgs) -> anyhow::Result<(Plan, Attached)> {
    preflight::check_privileges().map_err(|problem| anyhow!(problem))?;
    if let Some(problem) = preflight::lockdown_problem() {
        bail!(problem);
    }
    let plan = plan::build(kernel.attach, kernel.btf.as_deref());
    if plan.modes.is_empty() {
        let reasons: Vec<String> = plan
            .unavailable
            .iter()
            .map(|(mode, why)| format!("{mode}: {why}"))
            .collect();
        bail!(
            "cannot trace OOM kills on this host: {}",
            reasons.join("; ")
        );
    }
    // aya needs its own parse of the kernel's BTF only to find tp_btf's attach target.
    let aya_btf = if plan.modes.contains(&AttachMode::TpBtf) {
        match &kernel.btf {
            Some(path) => aya::Btf::parse_file(path, aya::Endianness::default()).ok(),
            None => aya::Btf::from_sys_fs().ok(),
        }
    } else {
        None
    };
    preflight::raise_memlock_limit();
    let targets = Targets {
        aya_btf: aya_btf.as_ref(),
        tracepoint_available: plan.tracepoint_available,
    };
    let attached = loader::load_and_attach(&plan.layout, &plan.modes, &targets)?;
    Ok((plan, attached))
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        StdoutFormat::Json
    } else {
        StdoutFormat::Human
    };
    let mut sinks = Sinks::open(format, args.output.as_deref()).map_err(|e| anyhow!(e))?;
    // Connecting to Docker starts now and never holds up a report.
    let docker = (!args.no_enrich).then(|| docker::start(args.docker_socket.clone()));
    let (plan, mut attached) = attach(&args.kernel)?;
    let events = attached.take_events().map_err(|e| anyhow!(e))?;
    let dropped = attached.take_dropped().map_err(|e| anyhow!(e))?;
    let mode = attached.mode;

    for fallback in &attached.fallbacks {
        eprintln!("oomtrace: not using {fallback}");
    }
    let missing = plan.missing_for(mode);
    if !missing.is_empty() {
        let lacks: Vec<String> = missing
            .iter()
            .map(|m| format!("{} {} ({} will be null)", m.what, m.why, m.affects))
            .collect();
        eprintln!(
            "oomtrace: this kernel's layout is incomplete: {}",
            lacks.join("; ")
        );
    }
    if let Some(docker) = &docker {
        // A healthy daemon answers in milliseconds; waiting that long means the first kills are
        // named. An absent one fails at once, and a slow one is not waited for.
        let mut status = docker.status.clone();
        let _ = tokio::time::timeout(
            Duration::from_millis(300),
            status.wait_for(|s| *s != docker::Status::Connecting),
        )
        .await;
    }
    let context = Context {
        cgroups: plan.cgroup_mode,
        docker: docker.as_ref().map(|d| d.cache.clone()),
        filter: Filter {
            containers: args.containers,
            pids: args.pids,
            comms: args.comms,
        },
    };
    eprintln!(
        "oomtrace: watching for OOM kills ({mode}, {})",
        cgroup_mode_name(plan.cgroup_mode)
    );

    // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged until the AsyncFd,
    // which owns the RingBuf, is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|e| anyhow!("cannot watch the ring buffer: {}", e.into_parts().1))?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut tally = Tally::default();

    let outcome = loop {
        tokio::select! {
            ready = ring.readable_mut() => {
                let mut guard = ready.context("cannot wait on the ring buffer")?;
                let drained = drain(guard.get_inner_mut(), &context, &mut sinks, &mut tally);
                guard.clear_ready();
                if let Err(err) = drained {
                    break Err(err);
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };

    // Detach first, then take what the kernel wrote before it was detached.
    drop(attached);
    let outcome = outcome.and_then(|()| drain(ring.get_mut(), &context, &mut sinks, &mut tally));
    match outcome {
        Ok(()) => {}
        Err(SinkError::StdoutClosed) => return Ok(ExitCode::SUCCESS),
        Err(err) => return Err(err.into()),
    }
    let dropped = kernel_drops(&dropped) + tally.undecodable;
    let filtered = if context.filter.is_active() {
        format!(", {} filtered out", tally.filtered)
    } else {
        String::new()
    };
    eprintln!(
        "oomtrace: {} OOM kills reported{filtered}, {dropped} events dropped",
        tally.reported
    );
    Ok(ExitCode::SUCCESS)
}

/// What turning a record into a report needs besides the record.
struct Context {
    cgroups: u32,
    docker: Option<docker::Cache>,
    filter: Filter,
}

/// Reports every record waiting in the ring buffer.
fn drain(
    ring: &mut RingBuf<MapData>,
    context: &Context,
    sinks: &mut Sinks,
    tally: &mut Tally,
) -> Result<(), SinkError> {
    while let Some(item) = ring.next() {
        let event = report::read_event(&item);
        drop(item);
        let decoded =
            event.and_then(|event| report::decode(&event, &Clock::now(), context.cgroups));
        match decoded {
            Ok(mut report) => {
                enrich::annotate(&mut report, context.docker.as_ref());
                if !context.filter.accepts(&report) {
                    tally.filtered += 1;
                    continue;
                }
                sinks.write(&report)?;
                tally.reported += 1;
            }
            Err(err) => {
                eprintln!("oomtrace: dropped an event: {err}");
                tally.undecodable += 1;
            }
        }
    }
    Ok(())
}

/// Records the kernel had no ring buffer room for, summed over CPUs.
fn kernel_drops(dropped: &PerCpuArray<MapData, u64>) -> u64 {
    match dropped.get(&0, 0) {
        Ok(per_cpu) => per_cpu.iter().sum(),
        Err(err) => {
            eprintln!("oomtrace: cannot read the kernel's drop counter: {err}");
            0
        }
    }
}
