//! The kernel log beside the kernel program. The eBPF handler sees the victim as the kernel
//! marks it; the OOM report the kernel prints just before (which limit, its charge and
//! stats, every task's RSS) is only in the log. Following the log while watching lets an eBPF
//! report carry it, and lets tracepoint mode name the victim's cgroup where `/proc` no longer
//! can.
//!
//! The kernel stores the report and the `oom-kill:` summary before it marks the victim, so
//! reading everything the log holds when the handler's record arrives finds them, unless the
//! kernel's rate limit (10 reports per 5 s) left them out.

use std::{
    collections::VecDeque,
    fs::File,
    time::{Duration, Instant},
};

use oomtrace_core::source::kmsg::{KillAssembler, KmsgKill};

use super::device::{self, Gaps, Read};

/// Kills whose `Killed process` line came before their eBPF record are kept this long.
const KEEP: Duration = Duration::from_secs(30);
/// And at most this many.
const MAX_KEPT: usize = 256;

pub struct LogFollower {
    file: File,
    buffer: Vec<u8>,
    assembler: KillAssembler,
    gaps: Gaps,
    /// Kills the log completed, waiting for their eBPF record.
    completed: VecDeque<(Instant, KmsgKill)>,
}

impl LogFollower {
    /// Follows the log from now on; `None` (with the reason) if it cannot be read.
    pub fn open(page_size: std::num::NonZeroU64) -> Result<Self, String> {
        let file = device::open()?;
        device::seek_to_end(&file);
        Ok(Self {
            file,
            buffer: device::record_buffer(),
            assembler: KillAssembler::with_page_size(page_size),
            gaps: Gaps::default(),
            completed: VecDeque::new(),
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads everything logged since the last call, without waiting.
    pub fn catch_up(&mut self) {
        let now = Instant::now();
        loop {
            match device::read_record(&mut self.file, &mut self.buffer) {
                Ok(Read::Record(record)) => {
                    self.gaps.saw(&record);
                    let first = self.assembler.push_line(&record);
                    for kill in first
                        .into_iter()
                        .chain(std::iter::from_fn(|| self.assembler.pop()))
                    {
                        self.completed.push_back((now, kill));
                    }
                }
                Ok(Read::Overrun) => {}
                Ok(Read::Empty) | Err(_) => break,
            }
        }
        while self
            .completed
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > KEEP)
            || self.completed.len() > MAX_KEPT
        {
            self.completed.pop_front();
        }
    }

    /// What the log says about the kill of thread `tid`, named `comm`, just marked: its
    /// completed kill if its line has come (taken, so a later kill of a reused thread id does
    /// not get it), else what the invocation printed before marking it.
    pub fn context_for(&mut self, tid: u32, comm: Option<&str>) -> Option<KmsgKill> {
        // The log names the victim by thread id and thread name, as the tracepoint does.
        let same =
            |kill: &KmsgKill| kill.pid == tid && comm.is_none_or(|c| c == kill.comm.as_str());
        if let Some(at) = self.completed.iter().rposition(|(_, k)| same(k)) {
            return self.completed.remove(at).map(|(_, kill)| kill);
        }
        self.assembler.context_for(tid)
    }

    /// Log records lost to overruns so far.
    pub fn lost(&self) -> u64 {
        self.gaps.lost
    }
}
