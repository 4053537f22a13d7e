//! What `/proc` says of a running process: its memory, its CPU time, the files it maps. The
//! bench reads oomtrace and bpftrace through it, the soak oomtrace.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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

/// How often [`rss_at_rest`] reads VmRSS.
const REST_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// VmRSS in KiB, read every [`REST_SAMPLE_EVERY`] until it is at most `budget` or `within` has
/// passed: the last reading, or `None` if the process is gone. oomtrace gives memory back once
/// it has been quiet for a while; this is how long that took, within a bound.
pub fn rss_at_rest(pid: u32, budget: u64, within: Duration) -> Option<u64> {
    let deadline = Instant::now() + within;
    loop {
        let rss = memory(pid).ok()?.rss;
        if rss <= budget || Instant::now() >= deadline {
            return Some(rss);
        }
        // The sampling period, not a wait for anything.
        std::thread::sleep(REST_SAMPLE_EVERY);
    }
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
    fn reads_proc_status_sizes() {
        let status = "Name:\toomtrace\nVmHWM:\t    9876 kB\nVmRSS:\t    5432 kB\n";
        let memory = parse_memory(status).expect("VmRSS and VmHWM");
        assert_eq!((memory.rss, memory.hwm), (5432, 9876));
        assert_eq!((memory.anon, memory.file, memory.shmem), (0, 0, 0));
        assert_eq!(parse_memory("Name:\toomtrace\nVmHWM:\t    9876 kB\n"), None);
    }
}
