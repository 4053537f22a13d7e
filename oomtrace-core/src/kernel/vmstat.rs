//! The kernel's own count of OOM kills, `oom_kill` in `/proc/vmstat`: one for each SIGKILL the
//! OOM killer sent, so a `memory.oom.group` kill's chosen victim counts twice. A watch's last
//! line, the end-to-end tests and the benchmarks all hold oomtrace against it.

use std::io;

/// The kernel's count of OOM kills since boot.
pub fn kernel_oom_kills() -> io::Result<u64> {
    let vmstat = std::fs::read_to_string("/proc/vmstat")?;
    parse_oom_kill(&vmstat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/vmstat has no oom_kill line",
        )
    })
}

/// The `oom_kill` counter of a `/proc/vmstat` text; `None` where the kernel has none (before
/// 4.13) or it does not parse.
pub fn parse_oom_kill(vmstat: &str) -> Option<u64> {
    vmstat
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oom_kill_counter() {
        let cases = [
            ("nr_free_pages 12345\noom_kill 42\nnuma_hit 1\n", Some(42)),
            ("nr_free_pages 12345\n", None),
            ("oom_kill x\n", None),
            ("oom_kill_x 1\n", None),
            ("oom_kills 3\noom_kill 7\n", Some(7)),
        ];
        for (vmstat, want) in cases {
            assert_eq!(parse_oom_kill(vmstat), want, "{vmstat:?}");
        }
    }
}
