//! What a userspace OOM killer acted on, from its own log: the kernel's record of the signal
//! says who killed whom; only earlyoom's lines say how little memory it found, and at which of
//! its limits. A logged kill is joined to a signal only where both name the same victim, the
//! same signal and, when the log names its writer (a syslog line's `earlyoom[PID]: `), the
//! same killer: any other line is not the kill's.

use serde::{Deserialize, Serialize};

use super::userspace_killer::UserspaceOomKill;
use crate::source::userspace_log::{
    Percent,
    earlyoom::{EarlyoomKill, Limits, MemStats},
};

/// `userspace_oom_kill.acted_on`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActedOn {
    /// Where this came from: `earlyoom_log`.
    pub source: String,
    /// The machine's memory as earlyoom read it just before it chose the victim.
    pub memory: Option<MemoryFound>,
    /// The limits that memory was at or below.
    pub limits: Option<LimitsCrossed>,
}

/// earlyoom's `mem avail` line: MiB as it printed them (whole MiB, rounded down), percentages
/// to its two decimals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryFound {
    pub mem_avail_mib: u64,
    pub mem_total_mib: u64,
    pub mem_avail_percent: f64,
    pub swap_free_mib: u64,
    pub swap_total_mib: u64,
    pub swap_free_percent: f64,
}

/// earlyoom's `low memory!` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsCrossed {
    /// The signal those limits are for.
    pub signal: String,
    pub mem_percent: f64,
    pub swap_percent: f64,
}

/// A kill as earlyoom's log told it, and the pid its syslog prefix names, if it had one.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedKill {
    pub writer_pid: Option<u32>,
    pub kill: EarlyoomKill,
}

impl LoggedKill {
    /// Whether this logged kill is the one `kill` records.
    pub fn is_of(&self, kill: &UserspaceOomKill) -> bool {
        let sending = &self.kill.sending;
        kill.killer.name == "earlyoom"
            && !kill.killer.via_cgroup_kill
            && kill.victim.pid == Some(sending.pid)
            && kill.signal == Some(sending.signal.name())
            && self.writer_pid.is_none_or(|pid| pid == kill.killer.pid)
    }

    pub fn acted_on(&self) -> ActedOn {
        ActedOn {
            source: "earlyoom_log".into(),
            memory: self.kill.stats.as_ref().map(MemoryFound::from),
            limits: self.kill.limits.as_ref().map(LimitsCrossed::from),
        }
    }
}

fn percent(p: Percent) -> f64 {
    p.hundredths as f64 / 100.0
}

impl From<&MemStats> for MemoryFound {
    fn from(stats: &MemStats) -> Self {
        Self {
            mem_avail_mib: stats.mem_avail_mib,
            mem_total_mib: stats.mem_total_mib,
            mem_avail_percent: percent(stats.mem_avail),
            swap_free_mib: stats.swap_free_mib,
            swap_total_mib: stats.swap_total_mib,
            swap_free_percent: percent(stats.swap_free),
        }
    }
}

impl From<&Limits> for LimitsCrossed {
    fn from(limits: &Limits) -> Self {
        Self {
            signal: limits.signal.name().into(),
            mem_percent: percent(limits.mem),
            swap_percent: percent(limits.swap),
        }
    }
}

/// A line of earlyoom's log as a file holds it: its own stderr line, or a syslog line whose
/// tag is `earlyoom[PID]:`. Gives the pid the tag names, and the message (a line without the
/// tag whole, which earlyoom's parsers then read only if it is earlyoom's own); `None` for a
/// line whose tag only looks like earlyoom's.
pub fn earlyoom_message(line: &str) -> Option<(Option<u32>, &str)> {
    let Some(at) = line.find("earlyoom[") else {
        return Some((None, line));
    };
    let rest = &line[at + "earlyoom[".len()..];
    let (pid, message) = rest.split_once("]: ")?;
    // A tag is a program name at a word's start: `notearlyoom[1]:` is another program's.
    let starts_word = line[..at].is_empty() || line[..at].ends_with(' ');
    let pid = pid.parse().ok().filter(|_| starts_word)?;
    Some((Some(pid), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{source::userspace_log::earlyoom::EarlyoomLog, testing::userspace_kill};

    const LINES: [&str; 3] = [
        "mem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)",
        "low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%",
        "sending SIGTERM to process 900 uid 0 \"hog\": badness 1000, VmRSS 400 MiB",
    ];

    fn logged(writer_pid: Option<u32>) -> LoggedKill {
        let mut log = EarlyoomLog::default();
        let kill = LINES.iter().find_map(|l| log.feed(l)).expect("a kill");
        LoggedKill { writer_pid, kill }
    }

    fn signalled(killer: &str, pid: u32, signal: &'static str, victim: u32) -> UserspaceOomKill {
        let mut kill = userspace_kill(killer, signal, victim);
        kill.killer.pid = pid;
        kill
    }

    #[test]
    fn a_logged_kill_is_joined_only_to_the_same_victim_signal_and_killer() {
        let ours = signalled("earlyoom", 300, "SIGTERM", 900);
        for (logged, kill, joined) in [
            (logged(None), &ours, true),
            (logged(Some(300)), &ours, true),
            (logged(Some(301)), &ours, false),
            (
                logged(None),
                &signalled("earlyoom", 300, "SIGKILL", 900),
                false,
            ),
            (
                logged(None),
                &signalled("earlyoom", 300, "SIGTERM", 901),
                false,
            ),
            (
                logged(None),
                &signalled("systemd-oomd", 300, "SIGTERM", 900),
                false,
            ),
        ] {
            assert_eq!(logged.is_of(kill), joined, "{logged:?} {kill:?}");
        }
    }

    #[test]
    fn tells_what_earlyoom_acted_on_as_it_printed_it() {
        let acted = logged(None).acted_on();
        let json = serde_json::to_string(&acted).unwrap();
        assert_eq!(
            json,
            r#"{"source":"earlyoom_log","memory":{"mem_avail_mib":45,"mem_total_mib":481,"mem_avail_percent":9.48,"swap_free_mib":0,"swap_total_mib":0,"swap_free_percent":0.0},"limits":{"signal":"SIGTERM","mem_percent":10.0,"swap_percent":10.0}}"#
        );
        assert_eq!(serde_json::from_str::<ActedOn>(&json).unwrap(), acted);
    }

    #[test]
    fn reads_earlyoom_s_own_lines_and_its_syslog_lines_only() {
        for (line, want) in [
            ("sending SIGTERM to", Some((None, "sending SIGTERM to"))),
            (
                "Dec  7 21:00:00 node earlyoom[300]: sending SIGTERM to",
                Some((Some(300), "sending SIGTERM to")),
            ),
            ("earlyoom[300]: mem avail", Some((Some(300), "mem avail"))),
            ("Dec  7 21:00:00 node notearlyoom[300]: sending", None),
            ("Dec  7 21:00:00 node earlyoom[x]: sending", None),
            ("Dec  7 21:00:00 node earlyoom[300] sending", None),
        ] {
            assert_eq!(earlyoom_message(line), want, "{line}");
        }
    }
}
