//! The system facts the bench reads: clocks, signals, `/proc`, the kernel's BPF run-time
//! statistics. The xtask links no libc crate, so the three C calls it needs are declared here.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_BOOTTIME: i32 = 7;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;

fn clock_ns(clock: i32) -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_BOOTTIME`, the clock of oomtrace's `boot_ns` and of the kernel's
/// `bpf_ktime_get_boot_ns`.
pub fn boottime_ns() -> u64 {
    clock_ns(CLOCK_BOOTTIME)
}

pub fn monotonic_ns() -> u64 {
    clock_ns(CLOCK_MONOTONIC)
}

/// Sends `sig` to `pid`; false if it no longer exists.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { kill(pid as i32, sig) == 0 }
}

/// What `/proc/PID/status` says of a process's memory, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    /// The high-water mark of `rss` over the process's life.
    pub hwm: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    parse_memory(&status).with_context(|| format!("{path} lacks VmRSS or VmHWM"))
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss: field("VmRSS")?,
        hwm: field("VmHWM")?,
        anon: field("RssAnon").unwrap_or(0),
        file: field("RssFile").unwrap_or(0),
        shmem: field("RssShmem").unwrap_or(0),
    })
}

/// utime + stime of the whole process, exited threads included, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    parse_ticks(&stat).with_context(|| format!("{path} is not what the bench expects"))
}

fn parse_ticks(stat: &str) -> Option<u64> {
    // The comm in parentheses may hold spaces and parentheses itself: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3 of the man page, utime 14 and stime 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's count of OOM kills so far (`oom_kill` in `/proc/vmstat`).
pub fn kernel_oom_kills() -> Result<u64> {
    let vmstat = fs::read_to_string("/proc/vmstat").context("could not read /proc/vmstat")?;
    vmstat
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .context("/proc/vmstat has no oom_kill line")
}

/// The files a process maps (its binary and shared objects), for the on-disk footprint.
pub fn mapped_files(pid: u32) -> Result<Vec<PathBuf>> {
    let path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let mut files: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|name| name.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
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
    fn reads_memory_from_status() {
        let status = "Name:\toomtrace\nVmHWM:\t   40820 kB\nVmRSS:\t    9332 kB\nRssAnon:\t    1172 kB\nRssFile:\t    8160 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss: 9332,
                hwm: 40820,
                anon: 1172,
                file: 8160,
                shmem: 0
            })
        );
        assert_eq!(parse_memory("Name:\tx\n"), None);
    }

    #[test]
    fn reads_ticks_past_a_comm_with_spaces_and_parentheses() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 123 0 0";
        assert_eq!(parse_ticks(stat), Some(12));
        assert_eq!(parse_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn clocks_move_forward() {
        let (a, b) = (boottime_ns(), boottime_ns());
        assert!(b >= a && a > 0);
        assert!(monotonic_ns() > 0);
    }
}
