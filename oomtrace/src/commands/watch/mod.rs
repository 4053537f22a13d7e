//! `oomtrace`: attach (or open the kernel log), then turn every OOM kill into a report until
//! told to stop.

mod feeds;
mod pipeline;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use crate::{
    attribution::docker,
    cli::{Backend, WatchArgs},
    kernel::{
        attach::attach,
        cgroups::{self, CgroupMode},
        loader::Attached,
        plan::Plan,
    },
    output::{
        filter::Filter,
        sink::{SinkEvent, Sinks},
    },
    source::{kmsg::device as kmsg_device, procfs},
};

use feeds::{Drained, EbpfFeed, KmsgFeed};
use pipeline::{Context, Pipeline, StdoutFormat};

/// At exit, how long the writer threads get to write what is queued.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Where reports come from in this run.
enum Feed {
    Ebpf(Box<EbpfFeed>),
    Kmsg(Box<KmsgFeed>),
}

impl Feed {
    async fn next(&mut self) -> anyhow::Result<Drained> {
        match self {
            Self::Ebpf(feed) => feed.next().await,
            Self::Kmsg(feed) => feed.next().await,
        }
    }
}

/// eBPF unless told otherwise; the kernel log when eBPF cannot be used for one of the reasons
/// the kernel log stands in for and no attach mode was forced, saying why in one line.
fn open_feed(args: &WatchArgs) -> anyhow::Result<OpenedFeed> {
    let kmsg = || kmsg_device::open().map_err(|e| anyhow!(e));
    match args.backend {
        Backend::Kmsg => Ok(OpenedFeed::Kmsg(kmsg()?)),
        Backend::Ebpf => Ok(OpenedFeed::Ebpf(Box::new(attach(&args.kernel)?))),
        Backend::Auto => match attach(&args.kernel) {
            Ok(attached) => Ok(OpenedFeed::Ebpf(Box::new(attached))),
            Err(err) if args.kernel.attach.is_none() && err.kernel_log_stands_in() => {
                match kmsg_device::open() {
                    Ok(file) => {
                        crate::say!(
                            "eBPF cannot be used here ({err}); reading OOM kills from {} instead",
                            kmsg_device::DEV_KMSG
                        );
                        Ok(OpenedFeed::Kmsg(file))
                    }
                    Err(_) => Err(err.into()),
                }
            }
            Err(err) => Err(err.into()),
        },
    }
}

enum OpenedFeed {
    Ebpf(Box<(Plan, Attached)>),
    Kmsg(std::fs::File),
}

/// Says at start-up why the mode in the ready line is not a richer one, and which fields the
/// kernel cannot fill.
fn explain_plan(plan: &Plan, attached: &Attached) {
    let mode = attached.mode;
    for (skipped, why) in plan.unavailable_above(mode) {
        crate::say!("not using {skipped}: {why}");
    }
    for fallback in &attached.fallbacks {
        crate::say!("not using {fallback}");
    }
    let missing = plan.missing_for(mode);
    if !missing.is_empty() {
        let lacks: Vec<String> = missing
            .iter()
            .map(|m| format!("{} {} ({} will be null)", m.what, m.why, m.affects))
            .collect();
        crate::say!("this kernel's layout is incomplete: {}", lacks.join("; "));
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        StdoutFormat::Json
    } else {
        StdoutFormat::Human
    };
    let (sink_events_tx, mut sink_events) = mpsc::unbounded_channel();
    let sinks = Sinks::start(args.output.as_slice(), sink_events_tx).map_err(|e| anyhow!(e))?;
    // Docker is asked while the kernel program loads; nothing waits for it.
    let docker = if args.no_enrich {
        None
    } else {
        let docker_host = std::env::var("DOCKER_HOST").ok();
        match docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref()) {
            Ok(socket) => Some(docker::start(socket)),
            Err(why) => {
                crate::say!("Docker enrichment is unavailable: {why}");
                None
            }
        }
    };
    let mut signals = Signals::new()?;

    let opened = open_feed(&args)?;
    let cgroups = match &opened {
        OpenedFeed::Ebpf(attached) => attached.0.cgroup_mode,
        OpenedFeed::Kmsg(_) => CgroupMode::of_host(),
    };
    let cgroup_root = cgroups::host_memory_root(cgroups);
    let mut feed = match opened {
        OpenedFeed::Ebpf(attached) => {
            let (plan, attached) = *attached;
            explain_plan(&plan, &attached);
            let mode = attached.mode;
            let proc_usable = !plan.victim_is_complete(mode) && proc_view_usable();
            crate::say!("watching for OOM kills ({mode}, {})", cgroups.describe());
            Feed::Ebpf(Box::new(EbpfFeed::new(
                attached,
                cgroups,
                proc_usable,
                cgroup_root.as_deref(),
            )?))
        }
        OpenedFeed::Kmsg(file) => {
            let feed = KmsgFeed::new(file, cgroups)?;
            crate::say!("watching for OOM kills (kmsg, {})", cgroups.describe());
            Feed::Kmsg(Box::new(feed))
        }
    };

    let context = Context {
        docker,
        filter: Filter {
            containers: args.containers,
            pids: args.pids,
            comms: args.comms,
        },
        format,
    };
    let mut docker_changes = context.docker.as_ref().map(|d| d.cache.subscribe());
    let mut pipeline = Pipeline::new(context, sinks);

    let stop = loop {
        let holding_until = pipeline.next_deadline();
        tokio::select! {
            biased;
            () = signals.stop() => break Stop::Signal,
            Some(event) = sink_events.recv() => match event {
                SinkEvent::StdoutClosed => break Stop::StdoutClosed,
                SinkEvent::StdoutFailed(err) => break Stop::Failed(anyhow!("cannot write to stdout: {err}")),
            },
            drained = feed.next() => {
                let drained = drained?;
                take(&mut pipeline, drained);
            }
            Ok(()) = changed(&mut docker_changes), if pipeline.is_holding() => {
                pipeline.release(Instant::now());
            }
            () = sleep_until(holding_until), if holding_until.is_some() => {
                pipeline.release(Instant::now());
            }
        }
    };
    match stop {
        Stop::StdoutClosed => return Ok(ExitCode::SUCCESS),
        Stop::Failed(err) => return Err(err),
        Stop::Signal => {}
    }

    // What the kernel wrote before the detach (or the log's last held line) is reported too.
    let (rest, kernel_drops) = match &mut feed {
        Feed::Ebpf(feed) => (feed.detach(), feed.kernel_drops()),
        Feed::Kmsg(feed) => (feed.finish(), 0),
    };
    take(&mut pipeline, rest);
    pipeline.release_all();
    let Pipeline {
        sinks,
        tally,
        context,
        ..
    } = pipeline;
    let losses = sinks.finish(Instant::now() + FLUSH_WAIT);
    let filtered = if context.filter.is_active() {
        format!(", {} filtered out", tally.filtered)
    } else {
        String::new()
    };
    let dropped = kernel_drops + tally.undecodable + losses.total();
    let mut why = Vec::new();
    if kernel_drops > 0 {
        why.push(format!(
            "{kernel_drops} found the kernel's ring buffer full"
        ));
    }
    if tally.undecodable > 0 {
        why.push(format!("{} could not be read", tally.undecodable));
    }
    for (destination, lost) in &losses.by_destination {
        why.push(format!("{lost} not written to {destination}"));
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join(", "))
    };
    crate::say!(
        "{} OOM kills reported{filtered}, {dropped} events dropped{why}",
        tally.reported
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `/proc` can complete victims here, saying once why not.
fn proc_view_usable() -> bool {
    match procfs::host_view_problem() {
        None => true,
        Some(problem) => {
            crate::say!(
                "{problem}; process ids, names and cgroups the kernel did not give stay null"
            );
            false
        }
    }
}

fn take(pipeline: &mut Pipeline, drained: Drained) {
    pipeline.tally.undecodable += drained.undecodable;
    let now = Instant::now();
    for report in drained.reports {
        pipeline.push(report, now);
    }
}

enum Stop {
    Signal,
    StdoutClosed,
    Failed(anyhow::Error),
}

async fn changed(
    receiver: &mut Option<tokio::sync::watch::Receiver<u64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// SIGINT, SIGTERM and SIGHUP all end a watch the same way: detach, summary, exit 0.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    async fn stop(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}
