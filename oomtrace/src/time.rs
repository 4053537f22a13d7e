//! Clocks: the kernel stamps events on its own clocks, and a report says when in wall-clock
//! time. Every conversion goes through here.

use std::time::{Duration, SystemTime};

/// A reading of `clock` in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; the clocks used exist on every supported kernel.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A kernel clock and the wall clock, read together, so a stamp on the first converts into
/// the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPair {
    pub realtime: SystemTime,
    /// The kernel clock at `realtime`, in nanoseconds.
    pub kernel_ns: u64,
}

impl ClockPair {
    /// `CLOCK_BOOTTIME`, which the eBPF handler stamps with (`bpf_ktime_get_boot_ns`).
    pub fn boottime() -> Self {
        Self {
            kernel_ns: clock_ns(libc::CLOCK_BOOTTIME),
            realtime: SystemTime::now(),
        }
    }

    /// The wall-clock time of a stamp on the kernel clock; `None` if it would fall before the
    /// Unix epoch (a wall clock set far back).
    pub fn wall_time(&self, stamp_ns: u64) -> Option<SystemTime> {
        if stamp_ns <= self.kernel_ns {
            self.realtime
                .checked_sub(Duration::from_nanos(self.kernel_ns - stamp_ns))
                .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        } else {
            self.realtime
                .checked_add(Duration::from_nanos(stamp_ns - self.kernel_ns))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_stamps_before_and_after_the_reading() {
        let pair = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            kernel_ns: 5_000_000_000,
        };
        assert_eq!(
            pair.wall_time(4_000_000_000),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999))
        );
        assert_eq!(
            pair.wall_time(6_000_000_000),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_001))
        );
    }

    #[test]
    fn a_wall_clock_set_back_gives_no_time_instead_of_a_panic() {
        // Booted 5 s ago by the kernel's clock, but the wall clock says 1 s after the epoch.
        let pair = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            kernel_ns: 5_000_000_000,
        };
        assert_eq!(pair.wall_time(0), None);
        assert_eq!(pair.wall_time(4_000_000_000), Some(SystemTime::UNIX_EPOCH));
    }
}
