//! oomtrace's memory over a soak: VmRSS and VmHWM sampled from `/proc` all along, on a thread
//! of its own, and read again once oomtrace is at rest after each wave.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::proc;

/// How often the RSS is read: a spike shorter than this is still in VmHWM.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// oomtrace's memory over the run, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub samples: u64,
    pub peak_rss: u64,
    pub last_rss: u64,
    pub hwm: u64,
}

/// Reads VmRSS and VmHWM every [`SAMPLE_EVERY`] until stopped or the process is gone.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Memory>,
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let (stop, stopped) = mpsc::channel();
        let thread = thread::spawn(move || sample(pid, &stopped));
        Self { stop, thread }
    }

    /// The figures so far; the last reading is from just now.
    pub fn stop(self) -> Memory {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

fn sample(pid: u32, stop: &Receiver<()>) -> Memory {
    let mut memory = Memory::default();
    while let Ok(now) = proc::memory(pid) {
        memory.samples += 1;
        memory.last_rss = now.rss;
        memory.peak_rss = memory.peak_rss.max(now.rss);
        memory.hwm = now.hwm;
        // The sampling period, not a wait for anything.
        if !matches!(
            stop.recv_timeout(SAMPLE_EVERY),
            Err(RecvTimeoutError::Timeout)
        ) {
            break;
        }
    }
    memory
}
