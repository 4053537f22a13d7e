//! Where a watch gets its kills: the kernel program's ring buffers, or the kernel log. Each
//! waits until it has something to read (cancel-safe, so it can sit in a `select!` with
//! signals and timers: the ring buffers through [`Wakers`], the log through its fd) and then
//! drains everything waiting at once.

use std::{fs::File, os::fd::AsFd as _, time::Duration};

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use super::wakers::Wakers;
use crate::{
    kernel::{loader::Attached, symbols::Symbols},
    source::{
        kmsg::{
            device::{self as kmsg_device, Gaps, Read},
            follow::LogFollower,
        },
        procfs,
    },
};
use oomtrace_core::{
    attribution::killer::SignalFacts,
    attribution::oom::{self, Invocations},
    kernel::{cgroups::CgroupMode, stack::StackReading},
    report::Report,
    source::{
        ebpf::{self, Decoding},
        kmsg::KillAssembler,
        signal::{self, Origin},
    },
    time::ClockPair,
};

/// A line cut short in the kernel log is held this long for its rest.
const KMSG_PIECE_WAIT: Duration = Duration::from_millis(200);

/// What a drain found besides reports.
#[derive(Debug, Default)]
pub struct Drained {
    pub reports: Vec<Report>,
    /// Signals that can end a container's main process, or from a userspace OOM killer.
    pub signals: Vec<SignalFacts>,
    /// Records that could not be decoded, or log records lost before they were read.
    pub undecodable: u64,
}

/// What an eBPF feed needs besides the attached program.
pub struct EbpfSetup {
    pub cgroups: CgroupMode,
    pub page_shift: u32,
    /// Whether victims need completing from `/proc` (the mode does not read their process).
    pub complete_from_proc: bool,
    /// Whether `/proc` shows the host's pids and cgroups.
    pub host_proc: bool,
    pub cgroup_root: Option<std::path::PathBuf>,
    /// The kernel log followed beside the program, where it can be read.
    pub log: Option<LogFollower>,
}

/// The signals' ring buffer and its drop counter.
struct SignalFeed {
    ring: RingBuf<MapData>,
    dropped: PerCpuArray<MapData, u64>,
}

pub struct EbpfFeed {
    ring: RingBuf<MapData>,
    dropped: PerCpuArray<MapData, u64>,
    /// The signals' ring buffer and its drop counter, where `signal_generate` records them.
    signals: Option<SignalFeed>,
    /// Keeps the program attached; dropping it detaches.
    attached: Option<Attached>,
    kind_known: bool,
    setup: EbpfSetup,
    symbols: Symbols,
    invocations: Invocations,
    /// Wakes the event loop when either ring buffer is written.
    wakers: Wakers,
}

impl EbpfFeed {
    pub fn new(mut attached: Attached, setup: EbpfSetup) -> anyhow::Result<Self> {
        let events = attached.take_events().map_err(|e| anyhow!(e))?;
        let dropped = attached.take_dropped().map_err(|e| anyhow!(e))?;
        let signals = attached
            .take_signals()
            .transpose()
            .map_err(|e| anyhow!(e))?
            .map(|maps| SignalFeed {
                ring: maps.ring,
                dropped: maps.dropped,
            });
        let mut fds = vec![events.as_fd()];
        fds.extend(signals.as_ref().map(|feed| feed.ring.as_fd()));
        let wakers =
            Wakers::start(&fds).map_err(|e| anyhow!("cannot watch the ring buffers: {e}"))?;
        Ok(Self {
            ring: events,
            dropped,
            signals,
            kind_known: attached.signal_failure.is_none(),
            attached: Some(attached),
            setup,
            symbols: Symbols::load_in_background(),
            invocations: Invocations::default(),
            wakers,
        })
    }

    /// Waits for the kernel program's records, then decodes every one waiting.
    ///
    /// The kernel log is read in `drain`, never waited on: the kernel wakes a log reader as
    /// the OOM path writes its report, from the CPU busy with the kill. The report is logged
    /// before the victim is marked, so the record finds all of it written. The ring buffers
    /// themselves are waited on by [`Wakers`], for the same reason.
    pub async fn next(&mut self) -> anyhow::Result<Drained> {
        self.wakers.written.notified().await;
        Ok(self.drain())
    }

    /// Decodes every record waiting, without waiting.
    pub fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        let decoding = Decoding {
            clock: ClockPair::boottime(),
            cgroups: self.setup.cgroups,
            page_shift: self.setup.page_shift,
            kind_known: self.kind_known,
        };
        // The kernel logs an OOM's report before it marks the victim: read it first.
        if let Some(log) = &mut self.setup.log {
            log.catch_up();
        }
        while let Some(item) = self.ring.next() {
            let decoded = ebpf::read_event(&item).and_then(|event| ebpf::decode(&event, &decoding));
            drop(item);
            match decoded {
                Ok(report) => drained.reports.push(report),
                Err(err) => {
                    crate::say!("dropped an event: {err}");
                    drained.undecodable += 1;
                }
            }
        }
        for report in &mut drained.reports {
            self.complete(report);
        }
        drained.signals = self.drain_signals(&decoding.clock);
        drained
    }

    /// Every signal record waiting, without waiting.
    fn drain_signals(&mut self, clock: &ClockPair) -> Vec<SignalFacts> {
        let Some(feed) = &mut self.signals else {
            return Vec::new();
        };
        let mut signals = Vec::new();
        while let Some(item) = feed.ring.next() {
            if let Some(record) = signal::read_signal(&item) {
                let seen = signal::decode_signal(&record, clock);
                let via_cgroup_kill =
                    seen.origin == Origin::NoInfo && self.symbols.via_cgroup_kill(&seen.stack);
                signals.push(SignalFacts {
                    seen,
                    via_cgroup_kill,
                    sender_container: None,
                });
            }
        }
        signals
    }

    /// What the kernel program could not read itself: from `/proc`, the kernel log and the
    /// kernel stack.
    fn complete(&mut self, report: &mut Report) {
        let setup = &mut self.setup;
        if setup.complete_from_proc && setup.host_proc {
            procfs::complete(report, setup.cgroups, setup.cgroup_root.as_deref());
        }
        let log = match (&mut setup.log, report.victim.tid) {
            (Some(log), Some(tid)) => log.context_for(tid, report.victim.thread_comm.as_deref()),
            _ => None,
        };
        let stack = match report.facts.as_deref() {
            Some(facts) if !facts.stack.is_empty() => self.symbols.read(&facts.stack),
            _ => StackReading::default(),
        };
        if let Some(log) = &log {
            log.complete(report);
        }
        oom::complete(report, stack, 1 << setup.page_shift);
        // A cgroup named only by the kernel log (tracepoint mode, where /proc no longer could)
        // gets its id from its directory, as one named by /proc does.
        if report.cgroup.id.is_none()
            && let (Some(root), Some(path)) = (&setup.cgroup_root, &report.cgroup.path)
        {
            use std::os::unix::fs::MetadataExt as _;
            report.cgroup.id =
                std::fs::metadata(oomtrace_core::kernel::cgroups::cgroup_dir(root, path))
                    .ok()
                    .map(|m| m.ino());
            report.cgroup.mode = setup.cgroups.json_name();
        }
        let id = self.invocations.id_for(report, stack);
        let Some(oom) = report.oom.as_mut() else {
            return;
        };
        oom.id = id;
        // Without the kernel log's report, `memcg_stat` and `top_tasks` stay null: by the time
        // a record is read the victim may already have freed its memory (on a host without a
        // slow console it exits within microseconds), and a breakdown read then is not the
        // kill's.
    }

    /// Detaches the program, then takes what the kernel wrote before the detach.
    pub fn detach(&mut self) -> Drained {
        self.attached = None;
        self.drain()
    }

    /// Records the kernel had no ring buffer room for, summed over CPUs.
    pub fn kernel_drops(&self) -> u64 {
        sum_per_cpu(&self.dropped)
    }

    /// Signal records the kernel had no room for: exits they would have told go out with
    /// `killed_by` unknown.
    pub fn signal_drops(&self) -> u64 {
        self.signals
            .as_ref()
            .map_or(0, |feed| sum_per_cpu(&feed.dropped))
    }
}

fn sum_per_cpu(counter: &PerCpuArray<MapData, u64>) -> u64 {
    match counter.get(&0, 0) {
        Ok(per_cpu) => per_cpu.iter().sum(),
        Err(err) => {
            crate::say!("cannot read the kernel's drop counter: {err}");
            0
        }
    }
}

pub struct KmsgFeed {
    log: AsyncFd<File>,
    buffer: Vec<u8>,
    assembler: KillAssembler,
    gaps: Gaps,
    cgroups: CgroupMode,
    clock: ClockPair,
}

impl KmsgFeed {
    /// Follows new records only: everything already logged is skipped.
    pub fn new(file: File, cgroups: CgroupMode) -> anyhow::Result<Self> {
        kmsg_device::seek_to_end(&file);
        // SAFETY: the File owns its fd until the AsyncFd, which owns the File, is dropped.
        let log =
            unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.map_err(|e| {
                anyhow!(
                    "cannot watch {}: {}",
                    kmsg_device::DEV_KMSG,
                    e.into_parts().1
                )
            })?;
        Ok(Self {
            log,
            buffer: kmsg_device::record_buffer(),
            assembler: KillAssembler::default(),
            gaps: Gaps::default(),
            cgroups,
            clock: kmsg_device::log_clock(),
        })
    }

    /// Waits for records (or, while a line cut short is held, for its rest to be overdue),
    /// then reports every kill they complete.
    pub async fn next(&mut self) -> anyhow::Result<Drained> {
        let pieces_overdue = tokio::time::sleep(if self.assembler.has_pending() {
            KMSG_PIECE_WAIT
        } else {
            Duration::from_secs(3600)
        });
        let mut drained = Drained::default();
        let mut kills = Vec::new();
        tokio::select! {
            ready = self.log.readable_mut() => {
                let mut guard = ready.context("cannot wait on the kernel log")?;
                loop {
                    match kmsg_device::read_record(guard.get_inner_mut(), &mut self.buffer)
                        .map_err(|e| anyhow!(e))?
                    {
                        Read::Record(record) => {
                            self.gaps.saw(&record);
                            kills.extend(self.assembler.push_line(&record));
                            kills.extend(std::iter::from_fn(|| self.assembler.pop()));
                        }
                        // The next read starts at the oldest record left; the gap counts it.
                        Read::Overrun => {}
                        Read::Empty => break,
                    }
                }
                guard.clear_ready();
            }
            () = pieces_overdue => kills.extend(self.assembler.flush()),
        }
        drained.reports = kills
            .iter()
            .map(|kill| kmsg_device::report_from_kill(kill, &self.clock, self.cgroups))
            .collect();
        drained.undecodable = std::mem::take(&mut self.gaps.lost);
        Ok(drained)
    }

    /// Whatever is held at the end.
    pub fn finish(&mut self) -> Drained {
        Drained {
            reports: self
                .assembler
                .flush()
                .iter()
                .map(|kill| kmsg_device::report_from_kill(kill, &self.clock, self.cgroups))
                .collect(),
            ..Drained::default()
        }
    }
}
