//! systemd-oomd's record of a kill: the `Killed` line it logs at notice level when it has
//! written `cgroup.kill` (or signalled each process) of a cgroup, and the `Killed` signal it
//! emits on the system bus at the same time (`org.freedesktop.oom1.Manager.Killed`, two
//! strings: the cgroup and `memory-used` or `memory-pressure`). Its two reasons:
//!
//! ```text
//! Killed /user.slice/user-1000.slice/user@1000.service/app.slice/a.scope due to memory used (8108281856) / total (8327213056) and swap used (1932443648) / total (2147479552) being more than 90.00%
//! Killed /system.slice/press.service due to memory pressure for /system.slice being 62.11% > 50.00% for > 20s with reclaim activity
//! ```
//!
//! The formats are those of src/oom/oomd-manager.c from systemd 252 (Debian bookworm's) to 256,
//! quoted in `tests/fixtures/systemd-oomd-formats.txt`.

use std::time::Duration;

use super::{Percent, number, scan};

/// What systemd-oomd acted on, and the cgroup it killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomdKill {
    /// The killed cgroup's path below the cgroup2 root, `/`-led.
    pub cgroup: String,
    pub reason: OomdReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OomdReason {
    /// `ManagedOOMSwap=kill`: the machine's memory and swap were both used beyond
    /// `SwapUsedLimit=`, and the cgroup used the most swap. From /proc/meminfo, in bytes.
    Swap {
        mem_used_bytes: u64,
        mem_total_bytes: u64,
        swap_used_bytes: u64,
        swap_total_bytes: u64,
        limit: Percent,
    },
    /// `ManagedOOMMemoryPressure=kill`: the monitored cgroup's memory pressure (its `some`
    /// avg10) stayed above its limit for longer than the duration, with reclaim going on, and
    /// the killed cgroup below it reclaimed the most.
    Pressure {
        monitored: String,
        pressure: Percent,
        limit: Percent,
        /// `None` where systemd printed `infinity`, or a span this parser cannot read.
        duration: Option<Duration>,
    },
}

/// The bus signal's second string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusReason {
    MemoryUsed,
    MemoryPressure,
}

impl BusReason {
    pub fn from_bus(reason: &str) -> Option<Self> {
        match reason {
            "memory-used" => Some(Self::MemoryUsed),
            "memory-pressure" => Some(Self::MemoryPressure),
            _ => None,
        }
    }
}

const SWAP: &str = " due to memory used (";
const PRESSURE: &str = " due to memory pressure for ";
const BEING: &str = " being ";

/// The `Killed` line of either reason; `None` for any other message of systemd-oomd's.
pub fn parse_killed(message: &str) -> Option<OomdKill> {
    let rest = message
        .trim_end_matches(['\n', '\r'])
        .strip_prefix("Killed ")?;
    parse_swap(rest).or_else(|| parse_pressure(rest))
}

/// `%s due to memory used (%PRIu64) / total (%PRIu64) and swap used (%PRIu64) / total
/// (%PRIu64) being more than %i.%02i%%`. What follows the path is numbers to the end, so the
/// last occurrence of its start is where the path ends.
fn parse_swap(rest: &str) -> Option<OomdKill> {
    let at = rest.rfind(SWAP)?;
    let fields = scan(
        &rest[at..],
        &[
            SWAP,
            ") / total (",
            ") and swap used (",
            ") / total (",
            ") being more than ",
            "%",
        ],
    )?;
    Some(OomdKill {
        cgroup: cgroup(&rest[..at])?,
        reason: OomdReason::Swap {
            mem_used_bytes: number(fields[0])?,
            mem_total_bytes: number(fields[1])?,
            swap_used_bytes: number(fields[2])?,
            swap_total_bytes: number(fields[3])?,
            limit: Percent::parse(fields[4])?,
        },
    })
}

/// `%s due to memory pressure for %s being %lu.%02lu%% > %lu.%02lu%% for > %s with reclaim
/// activity`. Two paths: the monitored one ends at the last ` being ` (numbers and a time span
/// follow it), and the killed one lies below it, which decides where it ends should either
/// path hold the words between them.
fn parse_pressure(rest: &str) -> Option<OomdKill> {
    let being = rest.rfind(BEING)?;
    let fields = scan(
        &rest[being..],
        &[BEING, "% > ", "% for > ", " with reclaim activity"],
    )?;
    let paths = &rest[..being];
    let mut splits = paths.match_indices(PRESSURE).filter_map(|(at, sep)| {
        let (killed, monitored) = (&paths[..at], &paths[at + sep.len()..]);
        below(killed, monitored).then_some((killed, monitored))
    });
    let (killed, monitored) = splits.next()?;
    if splits.next().is_some() {
        return None;
    }
    Some(OomdKill {
        cgroup: cgroup(killed)?,
        reason: OomdReason::Pressure {
            monitored: cgroup(monitored)?,
            pressure: Percent::parse(fields[0])?,
            limit: Percent::parse(fields[1])?,
            duration: timespan(fields[2]),
        },
    })
}

/// Whether `killed` is `monitored` or below it, as the cgroups oomd_kill_by_pgscan_rate picks
/// from are (by path prefix).
fn below(killed: &str, monitored: &str) -> bool {
    let monitored = monitored.trim_end_matches('/');
    killed
        .strip_prefix(monitored)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn cgroup(path: &str) -> Option<String> {
    path.starts_with('/').then(|| path.to_string())
}

/// A span as systemd's `format_timespan` writes it: parts like `1min 30s`, `20s`, `500ms`,
/// `1.500000s`, or `0`; `infinity` is no span.
pub fn timespan(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 9] = [
        ("y", 31_557_600_000_000),
        ("month", 2_629_800_000_000),
        ("w", 604_800_000_000),
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
        ("us", 1),
    ];
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut usec: u64 = 0;
    for part in text.split(' ') {
        let digits = part
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|&at| at > 0)?;
        let (value, suffix) = part.split_at(digits);
        let (_, per) = UNITS.iter().find(|(name, _)| *name == suffix)?;
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let mut part_usec = number(whole)?.checked_mul(*per)?;
        if !fraction.is_empty() {
            // Dot notation: the digits are a fraction of the unit.
            let scale = 10u64.checked_pow(u32::try_from(fraction.len()).ok()?)?;
            part_usec = part_usec.checked_add(number(fraction)?.checked_mul(*per)? / scale)?;
        }
        usec = usec.checked_add(part_usec)?;
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: &str = include_str!("../../../tests/fixtures/systemd-oomd-formats.txt");

    fn pct(hundredths: u64) -> Percent {
        Percent { hundredths }
    }

    /// Each line the fixture renders from a format of systemd's source, read back.
    #[test]
    fn reads_every_format_of_its_source() {
        let lines: Vec<&str> = FORMATS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        let swap = OomdKill {
            cgroup:
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope"
                    .into(),
            reason: OomdReason::Swap {
                mem_used_bytes: 8_108_281_856,
                mem_total_bytes: 8_327_213_056,
                swap_used_bytes: 1_932_443_648,
                swap_total_bytes: 2_147_479_552,
                limit: pct(9000),
            },
        };
        let pressure = |duration| OomdKill {
            cgroup: "/system.slice/press.service".into(),
            reason: OomdReason::Pressure {
                monitored: "/system.slice".into(),
                pressure: pct(6211),
                limit: pct(5000),
                duration,
            },
        };
        let want = [
            swap.clone(),
            pressure(Some(Duration::from_secs(20))),
            swap,
            pressure(Some(Duration::from_secs(90))),
        ];
        assert_eq!(lines.len(), want.len(), "{lines:#?}");
        for (line, want) in lines.iter().zip(want) {
            assert_eq!(parse_killed(line), Some(want), "{line}");
        }
        assert_eq!(
            BusReason::from_bus("memory-used"),
            Some(BusReason::MemoryUsed)
        );
        assert_eq!(
            BusReason::from_bus("memory-pressure"),
            Some(BusReason::MemoryPressure)
        );
        assert_eq!(BusReason::from_bus("swap"), None);
    }

    /// The killed cgroup and, for pressure, the monitored one.
    type Paths<'a> = Option<(&'a str, Option<&'a str>)>;

    /// A path may hold the words of the format; what is read is right, or nothing is.
    #[test]
    fn paths_holding_the_format_s_words_are_read_right_or_not_at_all() {
        let cases: [(&str, Paths); 6] = [
            (
                "Killed /a due to memory used (1).scope due to memory used (1) / total (2) and swap used (3) / total (4) being more than 90.00%",
                Some(("/a due to memory used (1).scope", None)),
            ),
            (
                "Killed /m being 1/k.scope due to memory pressure for /m being 1 being 62.11% > 50.00% for > 20s with reclaim activity",
                Some(("/m being 1/k.scope", Some("/m being 1"))),
            ),
            (
                "Killed /m/x due to memory pressure for /m/k due to memory pressure for /m being 62.11% > 50.00% for > 20s with reclaim activity",
                Some(("/m/x due to memory pressure for /m/k", Some("/m"))),
            ),
            // Two splits put the killed cgroup below the monitored one: no telling which.
            (
                "Killed /b due to memory pressure for /x due to memory pressure for /b due to memory pressure for / being 62.11% > 50.00% for > 20s with reclaim activity",
                None,
            ),
            // No split does.
            (
                "Killed /m due to memory pressure for /m due to memory pressure for /m being 62.11% > 50.00% for > 20s with reclaim activity",
                None,
            ),
            (
                "Killed /x due to memory pressure for /m being 62.11% > 50.00% for > 20s with reclaim activity",
                None,
            ),
        ];
        for (line, want) in cases {
            let got = parse_killed(line).map(|kill| {
                let monitored = match kill.reason {
                    OomdReason::Pressure { monitored, .. } => Some(monitored),
                    OomdReason::Swap { .. } => None,
                };
                (kill.cgroup, monitored)
            });
            let want = want.map(|(c, m)| (c.to_string(), m.map(String::from)));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn other_messages_are_no_kill() {
        for line in [
            "",
            "Considered 62 cgroups for killing, top candidates were:",
            "Memory pressure for /user.slice is 62.11% > 50.00% for > 20s with reclaim activity",
            "Marked /a.scope for killing due to memory pressure for / being 62.11% > 50.00% for > 20s with reclaim activity",
            "Killed /a due to memory used (x) / total (2) and swap used (3) / total (4) being more than 90.00%",
            "Killed a.scope due to memory pressure for / being 62.11% > 50.00% for > 20s with reclaim activity",
            "Failed to kill any cgroups based on swap: Permission denied",
        ] {
            assert_eq!(parse_killed(line), None, "{line:?}");
        }
    }

    #[test]
    fn reads_systemd_s_time_spans() {
        let cases = [
            ("20s", Some(Duration::from_secs(20))),
            ("1min 30s", Some(Duration::from_secs(90))),
            ("1h 2min", Some(Duration::from_secs(3720))),
            ("1d", Some(Duration::from_secs(86_400))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.500000s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("infinity", None),
            ("20", None),
            ("s", None),
            ("20 s", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(timespan(text), want, "{text:?}");
        }
    }
}
