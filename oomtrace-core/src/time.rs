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

/// `--since`: a point in time, as `docker events --since` and `journalctl --since` take one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// That long before now.
    Ago(Duration),
    /// That moment.
    At(SystemTime),
}

impl Since {
    /// A duration (`10m`, `2h30m`, `1d`), an RFC 3339 time (`2026-11-25T14:00:00Z`), a local
    /// date or date and time (`2026-11-25`, `2026-11-25T14:00:00`, `2026-11-25 14:00`), or a
    /// Unix timestamp (`1764079200`, `1764079200.5`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_in(text, &jiff::tz::TimeZone::system())
    }

    pub fn parse_in(text: &str, tz: &jiff::tz::TimeZone) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<f64>()
            && seconds.is_finite()
            && seconds >= 0.0
        {
            return Ok(Self::At(
                SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds),
            ));
        }
        if let Ok(ago) = humantime::parse_duration(text) {
            return Ok(Self::Ago(ago));
        }
        if let Ok(at) = text.parse::<jiff::Timestamp>() {
            return Ok(Self::At(at.into()));
        }
        let civil = text.parse::<jiff::civil::DateTime>().or_else(|_| {
            text.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        });
        if let Ok(civil) = civil
            && let Ok(zoned) = tz.to_zoned(civil)
        {
            return Ok(Self::At(zoned.timestamp().into()));
        }
        Err(format!(
            "{text:?} is not a time: give a duration (10m, 2h, 1d), an RFC 3339 time (2026-11-25T14:00:00Z), a local date or date and time (2026-11-25, 2026-11-25T14:00:00), or a Unix timestamp (1764079200)"
        ))
    }

    /// The moment it names, `now` being now.
    pub fn moment(self, now: SystemTime) -> SystemTime {
        match self {
            Self::Ago(ago) => now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH),
            Self::At(at) => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_the_forms_docker_and_journalctl_take() {
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let at = |rfc3339: &str| Since::At(humantime::parse_rfc3339(rfc3339).unwrap());
        let cases = [
            ("10m", Ok(Since::Ago(Duration::from_secs(600)))),
            ("2h30m", Ok(Since::Ago(Duration::from_secs(9000)))),
            ("1d", Ok(Since::Ago(Duration::from_secs(86_400)))),
            ("2026-11-25T14:00:00Z", Ok(at("2026-11-25T14:00:00Z"))),
            ("2026-11-25T14:00:00+01:00", Ok(at("2026-11-25T13:00:00Z"))),
            // Local: Berlin is UTC+1 in November.
            ("2026-11-25T14:00:00", Ok(at("2026-11-25T13:00:00Z"))),
            ("2026-11-25 14:00", Ok(at("2026-11-25T13:00:00Z"))),
            ("2026-11-25", Ok(at("2026-11-24T23:00:00Z"))),
            ("1764079200", Ok(at("2025-11-25T14:00:00Z"))),
            (
                "1764079200.5",
                Ok(Since::At(
                    humantime::parse_rfc3339("2025-11-25T14:00:00Z").unwrap()
                        + Duration::from_millis(500),
                )),
            ),
            ("banana", Err("is not a time")),
            ("-5", Err("is not a time")),
            ("", Err("is not a time")),
        ];
        for (text, want) in cases {
            match (Since::parse_in(text, &tz), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(part)) => {
                    assert!(
                        got.contains(part) && got.contains("duration"),
                        "{text}: {got}"
                    )
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            Since::Ago(Duration::from_secs(600)).moment(now),
            SystemTime::UNIX_EPOCH + Duration::from_secs(9_400)
        );
    }

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
