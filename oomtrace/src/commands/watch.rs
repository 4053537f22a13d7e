//! `oomtrace`: attach (or open the kernel log), then turn every OOM kill into a report until
//! told to stop.

use std::{fs::File, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

use crate::{
    attribution::{docker, enrich},
    cli::{Backend, WatchArgs},
    kernel::{attach::attach, cgroups::CgroupMode, loader::Attached, plan::Plan},
    output::{
        filter::Filter,
        sink::{SinkError, Sinks, StdoutFormat},
    },
    report::Report,
    source::{
        ebpf,
        kmsg::{
            KillAssembler, KmsgKill,
            device::{self as kmsg_source, Read},
        },
        procfs,
    },
    time::ClockPair,
};

/// Counts for the summary printed at exit.
#[derive(Debug, Default)]
struct Tally {
    reported: u64,
    /// Kills seen but not shown, because of `--container`, `--pid` or `--comm`.
    filtered: u64,
    /// Records that could not be decoded, or log records overwritten before they were read;
    /// added to the kernel's own drop count.
    lost: u64,
}

/// Where reports come from in this run.
enum Feed {
    Ebpf(Box<(Plan, Attached)>),
    Kmsg(File),
}

/// eBPF unless told otherwise; the kernel log when eBPF cannot be used and no attach mode
/// was forced, saying why in one line.
fn open_source(args: &WatchArgs) -> anyhow::Result<Feed> {
    match args.backend {
        Backend::Kmsg => Ok(Feed::Kmsg(kmsg_source::open().map_err(|e| anyhow!(e))?)),
        Backend::Ebpf => Ok(Feed::Ebpf(Box::new(attach(&args.kernel)?))),
        Backend::Auto => match attach(&args.kernel) {
            Ok(attached) => Ok(Feed::Ebpf(Box::new(attached))),
            Err(err) if args.kernel.attach.is_none() => match kmsg_source::open() {
                Ok(file) => {
                    eprintln!(
                        "oomtrace: eBPF cannot be used here ({err:#}); reading OOM kills from {} instead",
                        kmsg_source::DEV_KMSG
                    );
                    Ok(Feed::Kmsg(file))
                }
                Err(_) => Err(err),
            },
            Err(err) => Err(err),
        },
    }
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
    let source = open_source(&args)?;
    let cgroups = match &source {
        Feed::Ebpf(attached) => attached.0.cgroup_mode,
        Feed::Kmsg(_) => CgroupMode::of_host(),
    };
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
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let context = Context {
        cgroups,
        cgroup_root: crate::kernel::cgroups::memory_hierarchy_root(&mountinfo, cgroups),
        docker: docker.as_ref().map(|d| d.cache.clone()),
        filter: Filter {
            containers: args.containers,
            pids: args.pids,
            comms: args.comms,
        },
    };
    let mut signals = Signals {
        interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
    };
    let mut tally = Tally::default();
    let outcome = match source {
        Feed::Ebpf(attached) => {
            let (plan, attached) = *attached;
            watch_ebpf(
                plan,
                attached,
                &context,
                &mut sinks,
                &mut tally,
                &mut signals,
            )
            .await?
        }
        Feed::Kmsg(file) => {
            watch_kmsg(file, &context, &mut sinks, &mut tally, &mut signals).await?
        }
    };
    match outcome {
        Ok(()) => {}
        Err(SinkError::StdoutClosed) => return Ok(ExitCode::SUCCESS),
        Err(err) => return Err(err.into()),
    }
    let filtered = if context.filter.is_active() {
        format!(", {} filtered out", tally.filtered)
    } else {
        String::new()
    };
    eprintln!(
        "oomtrace: {} OOM kills reported{filtered}, {} events dropped",
        tally.reported, tally.lost
    );
    Ok(ExitCode::SUCCESS)
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The eBPF source: reports every ring buffer record until a signal, then detaches and takes
/// what the kernel wrote before the detach.
async fn watch_ebpf(
    plan: Plan,
    mut attached: Attached,
    context: &Context,
    sinks: &mut Sinks,
    tally: &mut Tally,
    signals: &mut Signals,
) -> anyhow::Result<Result<(), SinkError>> {
    let events = attached.take_events().map_err(|e| anyhow!(e))?;
    let dropped = attached.take_dropped().map_err(|e| anyhow!(e))?;
    let mode = attached.mode;
    // Why the mode in the ready line is not a richer one.
    for (skipped, why) in plan.unavailable_above(mode) {
        eprintln!("oomtrace: not using {skipped}: {why}");
    }
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
    eprintln!(
        "oomtrace: watching for OOM kills ({mode}, {})",
        plan.cgroup_mode.describe()
    );

    // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged until the AsyncFd,
    // which owns the RingBuf, is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|e| anyhow!("cannot watch the ring buffer: {}", e.into_parts().1))?;
    let outcome = loop {
        tokio::select! {
            ready = ring.readable_mut() => {
                let mut guard = ready.context("cannot wait on the ring buffer")?;
                let drained = drain_ring(guard.get_inner_mut(), context, sinks, tally);
                guard.clear_ready();
                if let Err(err) = drained {
                    break Err(err);
                }
            }
            () = signals.stop() => break Ok(()),
        }
    };
    drop(attached);
    let outcome = outcome.and_then(|()| drain_ring(ring.get_mut(), context, sinks, tally));
    tally.lost += kernel_drops(&dropped);
    Ok(outcome)
}

/// The kernel-log source: new records only, each kill reported when its authoritative
/// `Killed process` line completes it.
async fn watch_kmsg(
    file: File,
    context: &Context,
    sinks: &mut Sinks,
    tally: &mut Tally,
    signals: &mut Signals,
) -> anyhow::Result<Result<(), SinkError>> {
    kmsg_source::seek_to_end(&file);
    eprintln!(
        "oomtrace: watching for OOM kills (kmsg, {})",
        context.cgroups.describe()
    );
    // SAFETY: the File owns its fd until the AsyncFd, which owns the File, is dropped.
    let mut log =
        unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.map_err(|e| {
            anyhow!(
                "cannot watch {}: {}",
                kmsg_source::DEV_KMSG,
                e.into_parts().1
            )
        })?;
    let mut buffer = kmsg_source::record_buffer();
    let mut assembler = KillAssembler::default();
    let outcome = loop {
        // A line cut short is held for its rest; if none comes soon, report what is whole.
        let idle = tokio::time::sleep(if assembler.has_pending() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(3600)
        });
        tokio::select! {
            ready = log.readable_mut() => {
                let mut guard = ready.context("cannot wait on the kernel log")?;
                let mut kills = Vec::new();
                loop {
                    match kmsg_source::read_record(guard.get_inner_mut(), &mut buffer).map_err(|e| anyhow!(e))? {
                        Read::Record(record) => {
                            kills.extend(assembler.push_line(&record));
                            kills.extend(std::iter::from_fn(|| assembler.pop()));
                        }
                        Read::Lost => tally.lost += 1,
                        Read::Empty => break,
                    }
                }
                guard.clear_ready();
                if let Err(err) = report_kills(kills, context, sinks, tally) {
                    break Err(err);
                }
            }
            () = idle => {
                if let Err(err) = report_kills(assembler.flush(), context, sinks, tally) {
                    break Err(err);
                }
            }
            () = signals.stop() => break Ok(()),
        }
    };
    Ok(outcome.and_then(|()| report_kills(assembler.flush(), context, sinks, tally)))
}

fn report_kills(
    kills: Vec<KmsgKill>,
    context: &Context,
    sinks: &mut Sinks,
    tally: &mut Tally,
) -> Result<(), SinkError> {
    let clock = kmsg_source::log_clock();
    for kill in kills {
        let report = kmsg_source::report_from_kill(&kill, &clock, context.cgroups);
        context.emit(report, sinks, tally)?;
    }
    Ok(())
}

/// What turning a record into a report needs besides the record.
struct Context {
    cgroups: CgroupMode,
    cgroup_root: Option<PathBuf>,
    docker: Option<docker::Cache>,
    filter: Filter,
}

impl Context {
    /// Attributes, filters and writes one report.
    fn emit(
        &self,
        mut report: Report,
        sinks: &mut Sinks,
        tally: &mut Tally,
    ) -> Result<(), SinkError> {
        enrich::annotate(&mut report, self.docker.as_ref());
        if !self.filter.accepts(&report) {
            tally.filtered += 1;
            return Ok(());
        }
        sinks.write(&report)?;
        tally.reported += 1;
        Ok(())
    }
}

/// Reports every record waiting in the ring buffer.
fn drain_ring(
    ring: &mut RingBuf<MapData>,
    context: &Context,
    sinks: &mut Sinks,
    tally: &mut Tally,
) -> Result<(), SinkError> {
    while let Some(item) = ring.next() {
        let event = ebpf::read_event(&item);
        drop(item);
        match event.and_then(|event| ebpf::decode(&event, &ClockPair::boottime(), context.cgroups))
        {
            Ok(mut report) => {
                procfs::complete_pid_only(
                    &mut report,
                    context.cgroups,
                    context.cgroup_root.as_deref(),
                );
                context.emit(report, sinks, tally)?;
            }
            Err(err) => {
                eprintln!("oomtrace: dropped an event: {err}");
                tally.lost += 1;
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
