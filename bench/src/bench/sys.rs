//! The system facts the bench reads besides `/proc`: clocks, signals, file sizes, the kernel's
//! BPF run-time statistics.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub use libc::{SIGINT, SIGKILL};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_BOOTTIME`, the clock of oomtrace's `boot_ns` and of the kernel's
/// `bpf_ktime_get_boot_ns`.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Sends `sig` to `pid`; false if it no longer exists.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

pub fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("could not stat {}", path.display()))?
        .len())
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` on while it lives, then back to what it was: the kernel then
/// adds each program run's time to its `run_time_ns`. It costs every BPF program a clock read
/// per run, so the bench keeps it on only while it measures.
pub struct BpfStats {
    before: String,
}

impl BpfStats {
    pub fn enable() -> Result<Self> {
        let before =
            fs::read_to_string(BPF_STATS).with_context(|| format!("could not read {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("could not enable {BPF_STATS}"))?;
        Ok(Self {
            before: before.trim().to_string(),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.before);
    }
}

/// A program's accumulated run time, as `/proc/PID/fdinfo` or bpftool report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The `run_time_ns` and `run_cnt` of the BPF program the process `pid` holds as `fd`.
pub fn prog_stats(pid: u32, fd: u32) -> Result<ProgStats> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    let info = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    match (field("run_time_ns"), field("run_cnt")) {
        (Some(run_time_ns), Some(run_cnt)) => Ok(ProgStats {
            run_time_ns,
            run_cnt,
        }),
        _ => bail!("{path} has no run_time_ns/run_cnt: not a BPF program, or a kernel before 5.1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let (a, b) = (boottime_ns(), boottime_ns());
        assert!(b >= a && a > 0);
        assert!(monotonic_ns() > 0);
    }
}
