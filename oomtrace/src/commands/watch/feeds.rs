//! Where a watch gets its kills: the kernel program's ring buffer, or the kernel log. Each
//! waits for its file descriptor to be readable (cancel-safe, so it can sit in a `select!`
//! with signals and timers) and then drains everything waiting at once.

use std::{fs::File, path::Path, time::Duration};

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    kernel::{cgroups::CgroupMode, loader::Attached},
    report::Report,
    source::{
        ebpf,
        kmsg::{
            KillAssembler,
            device::{self as kmsg_device, Gaps, Read},
        },
        procfs,
    },
    time::ClockPair,
};

/// A line cut short in the kernel log is held this long for its rest.
const KMSG_PIECE_WAIT: Duration = Duration::from_millis(200);

/// What a drain found besides reports.
#[derive(Debug, Default)]
pub struct Drained {
    pub reports: Vec<Report>,
    /// Records that could not be decoded, or log records lost before they were read.
    pub undecodable: u64,
}

pub struct EbpfFeed {
    ring: AsyncFd<RingBuf<MapData>>,
    dropped: PerCpuArray<MapData, u64>,
    /// Keeps the program attached; dropping it detaches.
    attached: Option<Attached>,
    cgroups: CgroupMode,
    /// Whether `/proc` shows the host's pids and cgroups, so victims can be completed there.
    proc_usable: bool,
    cgroup_root: Option<std::path::PathBuf>,
}

impl EbpfFeed {
    pub fn new(
        mut attached: Attached,
        cgroups: CgroupMode,
        proc_usable: bool,
        cgroup_root: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let events = attached.take_events().map_err(|e| anyhow!(e))?;
        let dropped = attached.take_dropped().map_err(|e| anyhow!(e))?;
        // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged until the
        // AsyncFd, which owns the RingBuf, is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| anyhow!("cannot watch the ring buffer: {}", e.into_parts().1))?;
        Ok(Self {
            ring,
            dropped,
            attached: Some(attached),
            cgroups,
            proc_usable,
            cgroup_root: cgroup_root.map(Path::to_owned),
        })
    }

    /// Waits for records, then decodes every one waiting.
    pub async fn next(&mut self) -> anyhow::Result<Drained> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .context("cannot wait on the ring buffer")?;
        guard.clear_ready();
        Ok(self.drain())
    }

    /// Decodes every record waiting, without waiting.
    pub fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        let clock = ClockPair::boottime();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            let decoded = ebpf::read_event(&item)
                .and_then(|event| ebpf::decode(&event, &clock, self.cgroups));
            drop(item);
            match decoded {
                Ok(mut report) => {
                    if self.proc_usable {
                        procfs::complete(&mut report, self.cgroups, self.cgroup_root.as_deref());
                    }
                    drained.reports.push(report);
                }
                Err(err) => {
                    crate::say!("dropped an event: {err}");
                    drained.undecodable += 1;
                }
            }
        }
        drained
    }

    /// Detaches the program, then takes what the kernel wrote before the detach.
    pub fn detach(&mut self) -> Drained {
        self.attached = None;
        self.drain()
    }

    /// Records the kernel had no ring buffer room for, summed over CPUs.
    pub fn kernel_drops(&self) -> u64 {
        match self.dropped.get(&0, 0) {
            Ok(per_cpu) => per_cpu.iter().sum(),
            Err(err) => {
                crate::say!("cannot read the kernel's drop counter: {err}");
                0
            }
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
            undecodable: 0,
        }
    }
}
