//! `oomtrace`: attach (or open the kernel log), then turn every OOM kill into a report until
//! told to stop.

mod acted;
mod delivery;
mod feeds;
mod memory;
mod names;
mod naming;
mod pipeline;
mod protect;
mod signals;
mod stalls;
mod summary;
mod wakers;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use oomtrace_core::kernel::vmstat;

use crate::{
    attribution::{containerd, docker, runtime},
    cli::{Args, Backend},
    kernel::{attach::attach, loader::Attached, plan::Plan},
    output::{
        metrics::{self, BuildInfo, Metrics},
        sink::{SinkEvent, Sinks},
    },
    source::{
        host,
        killer_log::KillerLog,
        kmsg::{device as kmsg_device, follow::LogFollower},
        procfs,
    },
};
use oomtrace_core::{
    attribution::acted_on::LoggedKill,
    kernel::cgroups::{self, CgroupMode},
    output::{filter::Filter, human::HumanView},
};

use delivery::{Delivery, StdoutFormat};
use feeds::{Drained, EbpfFeed, EbpfSetup, KmsgFeed};
use pipeline::{Context, Pipeline};

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
fn open_feed(args: &Args) -> anyhow::Result<OpenedFeed> {
    let kmsg = || kmsg_device::open().map_err(|e| anyhow!(e));
    let kernel = args.kernel();
    match args.backend.unwrap_or(Backend::Auto) {
        Backend::Kmsg => Ok(OpenedFeed::Kmsg(kmsg()?)),
        Backend::Ebpf => Ok(OpenedFeed::Ebpf(Box::new(attach(&kernel)?))),
        Backend::Auto => match attach(&kernel) {
            Ok(attached) => Ok(OpenedFeed::Ebpf(Box::new(attached))),
            Err(err) if kernel.attach.is_none() && err.kernel_log_stands_in() => {
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

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        StdoutFormat::Json
    } else {
        StdoutFormat::Human
    };
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
    let containerd = (!args.no_enrich).then(|| {
        let address = std::env::var(containerd::ADDRESS_ENV).ok();
        containerd::start(containerd::socket_path(
            args.containerd_socket.as_deref(),
            address.as_deref(),
        ))
    });
    let mut signals = Signals::new()?;
    // Before the attach: an address that cannot be served ends the watch before it traces.
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(metrics::http::bind(addr).await.map_err(|e| anyhow!(e))?),
        None => None,
    };

    stalls::Stalls::check_named(&args.stall_cgroup)?;
    let opened = open_feed(&args)?;
    let mut killer_log = match &args.killer_log {
        Some(path) => {
            // Its kills are joined to the kernel's records of the killers' signals.
            let signals = match &opened {
                OpenedFeed::Ebpf(attached) => attached.1.records_signals(),
                OpenedFeed::Kmsg(_) => false,
            };
            if !signals {
                bail!(
                    "--killer-log needs the kernel's record of signals, which this mode does not give (`oomtrace check` says why)"
                );
            }
            Some(KillerLog::open(path).map_err(|e| anyhow!(e))?)
        }
        None => None,
    };
    // After the attach, so that a refusal (not root) is the only line, not a journal warning.
    let (sink_events_tx, mut sink_events) = mpsc::unbounded_channel();
    let journal = journal_path(&args).filter(|_| !args.no_journal_write);
    let sinks =
        Sinks::start(&args.outputs, journal.as_deref(), sink_events_tx).map_err(|e| anyhow!(e))?;
    let host = host::current();
    if host.name.is_none() {
        crate::say!("{}", host::NAME_UNKNOWN);
    }
    // After everything that can refuse to start: a refusal is the only line.
    if !args.no_oom_protect {
        protect::protect_self();
    }
    let cgroups = match &opened {
        OpenedFeed::Ebpf(attached) => attached.0.cgroup_mode,
        OpenedFeed::Kmsg(_) => CgroupMode::of_host(),
    };
    let cgroup_root = cgroups::host_memory_root(cgroups);
    // Served before the ready line, so a scrape right after it is answered.
    let metrics = metrics_listener.map(|listener| {
        let (backend, attach) = match &opened {
            OpenedFeed::Ebpf(attached) => ("ebpf", attached.1.mode.name()),
            OpenedFeed::Kmsg(_) => ("kmsg", ""),
        };
        let build = BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            backend,
            attach,
        };
        listener.serve(Metrics::new(build, sinks.loss_counters(), || {
            vmstat::kernel_oom_kills().ok()
        }))
    });
    let mut feed = match opened {
        OpenedFeed::Ebpf(attached) => {
            let (plan, attached) = *attached;
            explain_plan(&plan, &attached);
            let mode = attached.mode;
            let complete_from_proc = !plan.victim_is_complete(mode);
            let host_proc = proc_view_usable(complete_from_proc);
            let log = match LogFollower::open(page_size(plan.layout.page_shift)) {
                Ok(log) => Some(log),
                Err(why) => {
                    crate::say!(
                        "the kernel log cannot be followed ({why}); oom.memcg_stat and oom.top_tasks will be null"
                    );
                    None
                }
            };
            crate::say!("watching for OOM kills ({mode}, {})", cgroups.describe());
            let setup = EbpfSetup {
                cgroups,
                page_shift: plan.layout.page_shift,
                complete_from_proc,
                host_proc,
                cgroup_root: cgroup_root.clone(),
                log,
            };
            Feed::Ebpf(Box::new(EbpfFeed::new(attached, setup)?))
        }
        OpenedFeed::Kmsg(file) => {
            let feed = KmsgFeed::new(file, cgroups)?;
            crate::say!("watching for OOM kills (kmsg, {})", cgroups.describe());
            Feed::Kmsg(Box::new(feed))
        }
    };

    let mut stalls = stalls::Stalls::start(cgroups, cgroup_root.clone(), &args.stall_cgroup);
    let context = Context {
        docker,
        containerd,
        filter: Filter {
            containers: args.containers.clone(),
            pids: args.pids.clone(),
            comms: args.comms.clone(),
        },
        format,
        metrics,
        host,
        cgroup_root,
    };
    let mut docker_changes = context.docker.as_ref().map(|d| d.cache.subscribe());
    let mut docker_status = context.docker.as_ref().map(|d| d.status.clone());
    let mut containerd_changes = context.containerd.as_ref().map(|c| c.cache.subscribe());
    let mut name_check = names::NameCheck::default();
    let verbose = args.verbose || stdout_is_terminal();
    let mut pipeline = Pipeline::new(context, sinks, HumanView::new(verbose));
    pipeline.logged_kills.followed = killer_log.is_some();

    let kernel_count_before = vmstat::kernel_oom_kills().ok();
    let mut seen_before = match args.since {
        Some(since) => {
            let replayed = replay(
                &mut pipeline,
                &args,
                since.moment(std::time::SystemTime::now()),
            );
            name_check.also_known(replayed.containers);
            replayed.recent
        }
        None => Vec::new(),
    };
    let ends_at = args.timeout.map(|t| Instant::now() + t);
    // Start-up is activity too: its memory is given back once it has settled.
    let mut quiet_at = Some(Instant::now() + memory::SETTLES);
    let stop = loop {
        if args
            .count
            .is_some_and(|count| pipeline.delivery.tally.shown >= count)
        {
            break Stop::Signal;
        }
        let holding_until = pipeline.next_deadline();
        tokio::select! {
            biased;
            () = signals.stop() => break Stop::Signal,
            () = sleep_until(ends_at), if ends_at.is_some() => break Stop::Signal,
            Some(event) = sink_events.recv() => match event {
                SinkEvent::StdoutClosed => break Stop::StdoutClosed,
                SinkEvent::StdoutFailed(err) => break Stop::Failed(anyhow!("cannot write to stdout: {err}")),
            },
            drained = feed.next() => {
                let mut drained = drained?;
                // A kill both replayed and seen live is reported once: as replayed. The journal
                // still gets the live report, which it holds once whoever wrote it first.
                let (again, new): (Vec<_>, Vec<_>) =
                    drained.reports.into_iter().partition(|r| seen_before.take(r));
                drained.reports = new;
                for report in again {
                    pipeline.record_only(report);
                }
                // Signals are activity too: a stop of many containers brings them in bursts.
                if !drained.reports.is_empty() || !drained.signals.is_empty() {
                    settle(&mut quiet_at);
                }
                take(&mut pipeline, drained);
                // The kernel drops only while the ring is full, which wakes this drain.
                if let (Some(metrics), Feed::Ebpf(feed)) = (&pipeline.context.metrics, &feed) {
                    metrics.set_ring_buffer_full(feed.kernel_drops());
                }
            }
            Some(status) = status_changed(&mut docker_status) => {
                if let Some(docker) = &pipeline.context.docker {
                    name_check.on_status(status, &docker.cache, &args.containers);
                }
                if status == runtime::Status::Synced {
                    stalls.running(naming::caches(&pipeline.context));
                }
            }
            logged = logged_kills(&mut killer_log) => {
                match logged {
                    Ok(kills) => pipeline.logged(kills, Instant::now()),
                    Err(err) => {
                        crate::say!("stopped following --killer-log: {err}");
                        killer_log = None;
                        pipeline.logged_kills.followed = false;
                        pipeline.release(Instant::now());
                    }
                }
                settle(&mut quiet_at);
            }
            Some(stall) = stalls.next() => {
                pipeline.stall(stall, Instant::now());
                settle(&mut quiet_at);
            }
            Ok(()) = changed(&mut docker_changes), if pipeline.is_holding() => {
                pipeline.release(Instant::now());
            }
            Ok(()) = changed(&mut containerd_changes), if pipeline.is_holding() => {
                pipeline.release(Instant::now());
            }
            Some(event) = lifecycle(&mut pipeline) => {
                if let runtime::Lifecycle::Started { id } = &event {
                    stalls.started(id, naming::caches(&pipeline.context));
                }
                pipeline.lifecycle(event, Instant::now());
                settle(&mut quiet_at);
            }
            () = sleep_until(holding_until), if holding_until.is_some() => {
                pipeline.release(Instant::now());
            }
            () = sleep_until(quiet_at), if quiet_at.is_some() => {
                memory::release();
                quiet_at = None;
            }
        }
    };
    match stop {
        Stop::StdoutClosed => return Ok(ExitCode::SUCCESS),
        Stop::Failed(err) => return Err(err),
        Stop::Signal => {}
    }

    let kernel_count = kernel_count_before
        .zip(vmstat::kernel_oom_kills().ok())
        .map(|(before, after)| after.saturating_sub(before));
    // What the kernel wrote before the detach (or the log's last held line) is reported too.
    let (rest, kernel_drops, signal_drops) = match &mut feed {
        Feed::Ebpf(feed) => (feed.detach(), feed.kernel_drops(), feed.signal_drops()),
        Feed::Kmsg(feed) => (feed.finish(), 0, 0),
    };
    take(&mut pipeline, rest);
    pipeline.release_all();
    let Pipeline {
        delivery: Delivery { sinks, tally, .. },
        context,
        signals,
        ..
    } = pipeline;
    let pipeline_signals_dropped = signals.dropped;
    let losses = sinks.finish(Instant::now() + FLUSH_WAIT);
    let mut dropped = vec![
        (
            kernel_drops,
            "found the kernel's ring buffer full".to_owned(),
        ),
        (tally.undecodable, "could not be read".to_owned()),
    ];
    for (destination, lost) in losses.by_destination.iter().cloned() {
        dropped.push((lost, format!("not written to {destination}")));
    }
    let counts = summary::Counts {
        // What stdout wrote whole: a line queued but never written is dropped, not reported.
        reported: losses.kills_shown,
        past: tally.past,
        filtered: context.filter.is_active().then_some(tally.filtered),
        dropped,
        killed: tally.killed,
        marked: tally.marked,
        unknown_kind: tally.unknown_kind,
        group_kills: tally.group_kills,
        userspace_kills: tally.userspace_kills,
        signals_dropped: signal_drops + pipeline_signals_dropped,
    };
    crate::say!("{}", summary::line(&counts, kernel_count));
    if let Some(line) = summary::userspace_line(&counts) {
        crate::say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The journal a watch keeps, unless told to keep none.
pub fn journal_path(args: &Args) -> Option<std::path::PathBuf> {
    (!args.no_journal).then(|| {
        args.journal
            .clone()
            .unwrap_or_else(|| crate::output::journal::DEFAULT_PATH.into())
    })
}

fn page_size(page_shift: u32) -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(1 << (page_shift & 63)).unwrap_or(std::num::NonZeroU64::MIN)
}

/// Whether `/proc` shows the host's processes, saying once why not and what that costs.
fn proc_view_usable(victims_need_it: bool) -> bool {
    let Some(problem) = procfs::host_view_problem() else {
        return true;
    };
    if victims_need_it {
        crate::say!(
            "{problem}; process ids, names and cgroups the kernel did not give, and oom.top_tasks when the kernel log has none, stay null"
        );
    } else {
        crate::say!("{problem}; oom.top_tasks stays null when the kernel log has none");
    }
    false
}

/// What a replay learnt.
struct Replayed {
    /// Thread or process ids of kills so recent that the live feed may report them again.
    recent: Vec<u32>,
    /// The containers the journal and the kernel log name, for `--container` values that
    /// Docker no longer knows.
    containers: Vec<(String, Option<String>)>,
}

/// `--since`: the kills from before, from the journal and the kernel log, marked as past and
/// named as the journal named them.
fn replay(pipeline: &mut Pipeline, args: &Args, since: std::time::SystemTime) -> Replayed {
    let past = crate::source::past::gather(journal_path(args).as_deref(), Some(since));
    for gap in &past.gaps {
        crate::say!("{gap}");
    }
    crate::say!(
        "{} OOM kill{} from before; following live from here",
        past.kills.len(),
        oomtrace_core::output::format::plural(past.kills.len() as u64)
    );
    let recent = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let containers = past
        .kills
        .iter()
        .filter_map(|r| r.container.as_ref())
        .chain(past.exits.iter().map(|e| &e.container))
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    let now = Instant::now();
    for mut report in past.kills {
        report.past = true;
        if report.time.is_some_and(|t| t >= recent)
            && let Some(pid) = report.victim.pid.or(report.victim.tid)
        {
            seen.push(pid);
        }
        pipeline.push(report, now);
    }
    Replayed {
        recent: seen,
        containers,
    }
}

/// Thread or process ids of kills replayed that the live feed may report again.
trait SeenBefore {
    /// Whether `report` is one of them (then forgotten: a pid is killed once).
    fn take(&mut self, report: &oomtrace_core::report::Report) -> bool;
}

impl SeenBefore for Vec<u32> {
    fn take(&mut self, report: &oomtrace_core::report::Report) -> bool {
        let ids = [report.victim.tid, report.victim.pid];
        match self.iter().position(|pid| ids.contains(&Some(*pid))) {
            Some(at) => {
                self.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

fn take(pipeline: &mut Pipeline, drained: Drained) {
    pipeline.delivery.tally.undecodable += drained.undecodable;
    if let Some(metrics) = &pipeline.context.metrics {
        metrics.set_unreadable(pipeline.delivery.tally.undecodable);
    }
    let now = Instant::now();
    for report in drained.reports {
        pipeline.push(report, now);
    }
    for signal in drained.signals {
        pipeline.signal(signal, now);
    }
}

/// Arms the memory's release after activity: at most [`memory::SETTLES`] after the first
/// activity not yet followed by one, so a trickle of events (a stop of many containers, each
/// with its signals and its exit) cannot put it off for as long as the trickle lasts.
fn settle(quiet_at: &mut Option<Instant>) {
    quiet_at.get_or_insert(Instant::now() + memory::SETTLES);
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

/// Docker's status once it changes; never, without Docker (or once its task is gone).
async fn status_changed(
    receiver: &mut Option<tokio::sync::watch::Receiver<runtime::Status>>,
) -> Option<runtime::Status> {
    match receiver {
        Some(inner) => match inner.changed().await {
            Ok(()) => Some(*inner.borrow_and_update()),
            Err(_) => {
                *receiver = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// The next container start or death a runtime reports; never, without one.
async fn lifecycle(pipeline: &mut Pipeline) -> Option<runtime::Lifecycle> {
    let context = &mut pipeline.context;
    let docker = context.docker.as_mut().map(|d| &mut d.lifecycle);
    let containerd = context.containerd.as_mut().map(|c| &mut c.lifecycle);
    tokio::select! {
        Some(event) = next(docker) => Some(event),
        Some(event) = next(containerd) => Some(event),
        else => None,
    }
}

async fn next(
    receiver: Option<&mut mpsc::UnboundedReceiver<runtime::Lifecycle>>,
) -> Option<runtime::Lifecycle> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal()
}

/// The kills the killer's log tells next; never, without one followed.
async fn logged_kills(log: &mut Option<KillerLog>) -> std::io::Result<Vec<LoggedKill>> {
    match log {
        Some(log) => log.next().await,
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
