//! Stuck at the limit with nothing killed: a memory cgroup whose OOM killer is disabled (cgroup
//! v1 `memory.oom_control`: `oom_kill_disable 1`, Docker's `--oom-kill-disable`) sitting in
//! the OOM state (`under_oom 1`), its tasks waiting for memory that never comes.
//!
//! An `oom_stall` event says when such a stall starts, at most once a minute while it lasts
//! ([`REMIND_EVERY`]), and when it ends. "Stuck" is the kernel's own word for it: `under_oom`
//! is set while a task of the cgroup waits in the memcg OOM path, and cleared when the wait
//! ends (memory freed, the limit raised, the killer enabled, or the tasks gone). Pure: the
//! file's text and the time in, the event's phase out.

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

#[derive(Clone, Copy, Debug)]
struct Stalled {
    since: SystemTime,
    last_told: SystemTime,
}

/// The stalls under way, by cgroup.
#[derive(Debug, Default)]
pub struct StallTracker {
    stalled: HashMap<String, Stalled>,
}

impl StallTracker {
    /// Takes a reading of `cgroup`'s `memory.oom_control` (`None`: the cgroup is gone) at
    /// `now`; the phase to tell, if any, and when the stall started.
    pub fn sample(
        &mut self,
        cgroup: &str,
        control: Option<OomControl>,
        now: SystemTime,
    ) -> Option<(Phase, SystemTime)> {
        let stuck = control.is_some_and(|c| c.oom_kill_disable && c.under_oom);
        match (self.stalled.get_mut(cgroup), stuck) {
            (None, true) => {
                self.stalled.insert(
                    cgroup.to_owned(),
                    Stalled {
                        since: now,
                        last_told: now,
                    },
                );
                Some((Phase::Started, now))
            }
            (Some(stall), true) => {
                let due = now
                    .duration_since(stall.last_told)
                    .is_ok_and(|d| d >= REMIND_EVERY);
                due.then(|| {
                    stall.last_told = now;
                    (Phase::Continues, stall.since)
                })
            }
            (Some(_), false) => self
                .stalled
                .remove(cgroup)
                .map(|stall| (Phase::Ended, stall.since)),
            (None, false) => None,
        }
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
                .map(|(phase, since)| (phase, since.duration_since(t(0)).unwrap().as_secs()))
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
}
