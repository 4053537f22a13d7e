//! At the limit with nothing killed: a memory cgroup that stalls instead of killing.
//!
//! - **Stuck** (cgroup v1): its OOM killer is disabled (`memory.oom_control`:
//!   `oom_kill_disable 1`, Docker's `--oom-kill-disable`) and it sits in the OOM state
//!   (`under_oom 1`), its tasks waiting for memory that never comes. `under_oom` is the
//!   kernel's own word: set while a task of the cgroup waits in the memcg OOM path, cleared
//!   when the wait ends (memory freed, the limit raised, the killer enabled, the tasks gone).
//! - **Held** (cgroup v2): `memory.events` says the kernel throttled it over `memory.high`
//!   (`high`) or made it reclaim at `memory.max` (`max`) again and again for [`HELD_FOR`],
//!   never [`QUIET`] apart, with no OOM kill among them (`oom_kill` did not rise). It is no
//!   longer held once neither has risen for [`QUIET`]. Not "in every reading": a cgroup held
//!   hard sleeps up to 2 s between bursts of reclaim (the kernel's longest throttle).
//!
//! An `oom_stall` event says when such a stall starts, at most once a minute while it lasts
//! ([`REMIND_EVERY`]), and when it ends. Pure: the files' text and the time in, the event's
//! phase out.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{
    attribution::killer::SenderContainer,
    report::{Host, Label, from_rfc3339, known, known_option, rfc3339},
};

/// While a stall lasts, it is told again this often, never more.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);
/// How long `high` or `max` must keep rising for a v2 cgroup to be held: a burst of reclaim
/// is not a stall.
pub const HELD_FOR: Duration = Duration::from_secs(3);
/// The longest quiet that still counts as held: the kernel throttles a task over
/// `memory.high` for at most 2 s at a time, and the counters are read once a second.
pub const QUIET: Duration = Duration::from_secs(3);

/// `"event":"oom_stall"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OomStall {
    pub schema: u32,
    #[serde(deserialize_with = "known")]
    pub event: Label,
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: Option<SystemTime>,
    /// `started`, `continues` or `ended`.
    #[serde(deserialize_with = "known")]
    pub phase: Label,
    /// `oom_killer_disabled`: at its limit with the OOM killer off.
    #[serde(deserialize_with = "known_option")]
    pub reason: Option<Label>,
    /// When the stall started, as first seen.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub since: Option<SystemTime>,
    pub seconds: Option<f64>,
    /// The memory cgroup, relative to its hierarchy's root, and the hierarchy (`v1`, `v2`).
    pub cgroup: String,
    #[serde(deserialize_with = "known_option")]
    pub cgroup_mode: Option<Label>,
    pub container: Option<SenderContainer>,
    pub usage_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    #[serde(default)]
    pub host: Option<Host>,
}

/// What `memory.oom_control` (cgroup v1) says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomControl {
    pub oom_kill_disable: bool,
    pub under_oom: bool,
    /// Kills in the cgroup (kernels from 4.13).
    pub oom_kill: Option<u64>,
}

/// Reads `memory.oom_control`; `None` unless both flags are there.
pub fn parse_oom_control(text: &str) -> Option<OomControl> {
    let mut disable = None;
    let mut under = None;
    let mut kills = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "oom_kill_disable" => disable = Some(value == 1),
            "under_oom" => under = Some(value == 1),
            "oom_kill" => kills = Some(value),
            _ => {}
        }
    }
    Some(OomControl {
        oom_kill_disable: disable?,
        under_oom: under?,
        oom_kill: kills,
    })
}

/// The counters of v2's `memory.events` that say the cgroup was held back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub high: u64,
    pub max: u64,
    pub oom_kill: u64,
}

/// Reads `memory.events`; `None` unless `high`, `max` and `oom_kill` are all there.
pub fn parse_memory_events(text: &str) -> Option<MemoryEvents> {
    let mut counts = [None; 3];
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let slot = match key {
            "high" => 0,
            "max" => 1,
            "oom_kill" => 2,
            _ => continue,
        };
        counts[slot] = value.parse::<u64>().ok();
    }
    Some(MemoryEvents {
        high: counts[0]?,
        max: counts[1]?,
        oom_kill: counts[2]?,
    })
}

/// A phase of a stall, to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Started,
    Continues,
    Ended,
}

impl Phase {
    pub fn label(self) -> Label {
        match self {
            Self::Started => "started",
            Self::Continues => "continues",
            Self::Ended => "ended",
        }
    }
}

/// What is told of a stall: its phase, when it started, and why (`oom_killer_disabled`,
/// `memory_high`, `memory_max`).
pub type Told = (Phase, SystemTime, Label);

#[derive(Clone, Copy, Debug)]
struct Stalled {
    since: SystemTime,
    last_told: SystemTime,
    reason: Label,
}

/// A v2 cgroup's last reading, and how many readings in a row saw it held back.
#[derive(Clone, Copy, Debug)]
struct Pressed {
    last: MemoryEvents,
    /// When the counters started rising, never `QUIET` apart since, and when they last rose.
    rising: Option<(SystemTime, SystemTime)>,
    /// Which counter rose last.
    reason: Label,
}

/// The stalls under way, by cgroup.
#[derive(Debug, Default)]
pub struct StallTracker {
    stalled: HashMap<String, Stalled>,
    pressed: HashMap<String, Pressed>,
}

impl StallTracker {
    /// Takes a reading of a v1 `cgroup`'s `memory.oom_control` (`None`: the cgroup is gone)
    /// at `now`; what to tell, if anything.
    pub fn sample(
        &mut self,
        cgroup: &str,
        control: Option<OomControl>,
        now: SystemTime,
    ) -> Option<Told> {
        let stuck = control.is_some_and(|c| c.oom_kill_disable && c.under_oom);
        self.step(cgroup, stuck.then_some("oom_killer_disabled"), now)
    }

    /// Takes a one-second reading of a v2 `cgroup`'s `memory.events` (`None`: the cgroup is
    /// gone) at `now`; what to tell, if anything.
    pub fn sample_events(
        &mut self,
        cgroup: &str,
        events: Option<MemoryEvents>,
        now: SystemTime,
    ) -> Option<Told> {
        let held = match events {
            Some(events) => {
                let pressed = self.pressed.entry(cgroup.to_owned()).or_insert(Pressed {
                    last: events,
                    rising: None,
                    reason: "memory_high",
                });
                let high = events.high > pressed.last.high;
                let max = events.max > pressed.last.max;
                let killed = events.oom_kill > pressed.last.oom_kill;
                pressed.last = events;
                let quiet_since = |last: SystemTime| now.duration_since(last).unwrap_or_default();
                pressed.rising = match pressed.rising {
                    // An OOM kill is a kill, reported as one: not a stall.
                    _ if killed => None,
                    Some((first, last)) if quiet_since(last) <= QUIET => {
                        Some((first, if high || max { now } else { last }))
                    }
                    _ if high || max => Some((now, now)),
                    _ => None,
                };
                if high || max {
                    pressed.reason = if high { "memory_high" } else { "memory_max" };
                }
                let held = pressed.rising.is_some_and(|(first, last)| {
                    last.duration_since(first).unwrap_or_default() >= HELD_FOR
                        && quiet_since(last) <= QUIET
                });
                held.then_some(pressed.reason)
            }
            None => {
                self.pressed.remove(cgroup);
                None
            }
        };
        self.step(cgroup, held, now)
    }

    fn step(&mut self, cgroup: &str, stalled: Option<Label>, now: SystemTime) -> Option<Told> {
        match (self.stalled.get_mut(cgroup), stalled) {
            (None, Some(reason)) => {
                self.stalled.insert(
                    cgroup.to_owned(),
                    Stalled {
                        since: now,
                        last_told: now,
                        reason,
                    },
                );
                Some((Phase::Started, now, reason))
            }
            (Some(stall), Some(_)) => {
                let due = now
                    .duration_since(stall.last_told)
                    .is_ok_and(|d| d >= REMIND_EVERY);
                due.then(|| {
                    stall.last_told = now;
                    (Phase::Continues, stall.since, stall.reason)
                })
            }
            (Some(_), None) => self
                .stalled
                .remove(cgroup)
                .map(|stall| (Phase::Ended, stall.since, stall.reason)),
            (None, None) => None,
        }
    }

    /// Whether `cgroup` is to be read again in a second: rising lately, or stalled. A quiet
    /// one keeps its last reading, for the next wake-up to compare with.
    pub fn pressing(&self, cgroup: &str) -> bool {
        self.stalled.contains_key(cgroup)
            || self.pressed.get(cgroup).is_some_and(|p| p.rising.is_some())
    }

    /// Whether any stall is under way: then its cgroup is read again until it ends.
    pub fn any(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// The cgroups stalled now.
    pub fn cgroups(&self) -> Vec<String> {
        self.stalled.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: &str = "oom_kill_disable 1\nunder_oom 1\noom_kill 0\n";
    const FREE: &str = "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n";
    const KILLER_ON: &str = "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n";

    #[test]
    fn oom_control_is_read_as_the_kernel_writes_it() {
        assert_eq!(
            parse_oom_control(STUCK),
            Some(OomControl {
                oom_kill_disable: true,
                under_oom: true,
                oom_kill: Some(0)
            })
        );
        // Before 4.13 there is no oom_kill line.
        assert_eq!(
            parse_oom_control("oom_kill_disable 0\nunder_oom 0\n").map(|c| c.oom_kill),
            Some(None)
        );
        assert_eq!(parse_oom_control("under_oom 1\n"), None);
        assert_eq!(parse_oom_control("garbage"), None);
    }

    #[test]
    fn a_stall_is_told_when_it_starts_once_a_minute_and_when_it_ends() {
        let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs);
        let mut tracker = StallTracker::default();
        let mut sample = |text: Option<&str>, secs| {
            tracker
                .sample("/docker/a", text.and_then(parse_oom_control), t(secs))
                .map(|(phase, since, reason)| {
                    assert_eq!(reason, "oom_killer_disabled");
                    (phase, since.duration_since(t(0)).unwrap().as_secs())
                })
        };
        // (reading, seconds, what is told)
        let rows = [
            (Some(FREE), 0, None),
            (Some(KILLER_ON), 1, None),
            (Some(STUCK), 2, Some((Phase::Started, 2))),
            (Some(STUCK), 3, None),
            (Some(STUCK), 61, None),
            (Some(STUCK), 62, Some((Phase::Continues, 2))),
            (Some(STUCK), 100, None),
            (Some(STUCK), 122, Some((Phase::Continues, 2))),
            (Some(FREE), 130, Some((Phase::Ended, 2))),
            (Some(FREE), 131, None),
            (Some(STUCK), 140, Some((Phase::Started, 140))),
            (None, 141, Some((Phase::Ended, 140))),
            (None, 142, None),
        ];
        for (text, secs, want) in rows {
            assert_eq!(sample(text, secs), want, "at {secs} s");
        }
    }

    #[test]
    fn memory_events_are_read_as_the_kernel_writes_them() {
        let text = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(
            parse_memory_events(text),
            Some(MemoryEvents {
                high: 12,
                max: 3,
                oom_kill: 1
            })
        );
        assert_eq!(parse_memory_events("high 1\nmax 2\n"), None);
    }

    #[test]
    fn a_v2_cgroup_is_held_while_its_counters_keep_rising_and_freed_after_a_quiet_spell() {
        let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs);
        let mut tracker = StallTracker::default();
        let events = |high, max, oom_kill| {
            Some(MemoryEvents {
                high,
                max,
                oom_kill,
            })
        };
        // (reading, seconds, what is told)
        let mut rows = vec![
            (events(0, 0, 0), 0, None),
            (events(5, 0, 0), 1, None),
            (events(9, 0, 0), 2, None),
            // An OOM kill among them: that is a kill, reported as one, not a stall.
            (events(12, 0, 1), 3, None),
            (events(20, 0, 1), 4, None),
            // Throttled 2 s at a time: quiet readings between bursts are still held.
            (events(20, 0, 1), 5, None),
            (events(30, 0, 1), 6, None),
            (events(30, 0, 1), 7, None),
            (
                events(40, 0, 1),
                8,
                Some((Phase::Started, 8, "memory_high")),
            ),
        ];
        // A minute on, rising every other second: told again once.
        for secs in 9..=68u64 {
            let high = 40 + (secs - 8) / 2 * 10;
            let want = (secs == 68).then_some((Phase::Continues, 8, "memory_high"));
            rows.push((events(high, 0, 1), secs, want));
        }
        rows.extend([
            (events(340, 0, 1), 69, None),
            (events(340, 0, 1), 71, None),
            (
                events(340, 0, 1),
                72,
                Some((Phase::Ended, 8, "memory_high")),
            ),
            (events(340, 1, 1), 80, None),
            (events(340, 2, 1), 82, None),
            (
                events(340, 3, 1),
                83,
                Some((Phase::Started, 83, "memory_max")),
            ),
            (None, 84, Some((Phase::Ended, 83, "memory_max"))),
        ]);
        for (reading, secs, want) in rows {
            let told = tracker
                .sample_events("/kubepods/pod1/c", reading, t(secs))
                .map(|(phase, since, reason)| {
                    (phase, since.duration_since(t(0)).unwrap().as_secs(), reason)
                });
            assert_eq!(told, want, "at {secs} s");
        }
        assert!(!tracker.pressing("/kubepods/pod1/c"));
    }
}
