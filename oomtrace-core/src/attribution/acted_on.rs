//! What a userspace OOM killer acted on, from its own log: the kernel's record of the signal
//! says who killed whom; only the killer's lines say why. earlyoom's say how little memory it
//! found and at which of its limits; systemd-oomd's `Killed` line names the cgroup and the
//! pressure or swap use it acted on. A logged kill is joined to a signal only where both name
//! the same victim (earlyoom: the same pid and signal; systemd-oomd: the cgroup the victim was
//! in, by name) and, when the log names its writer (a syslog tag's `[PID]`), the same killer:
//! any other line is not the kill's.

use serde::{Deserialize, Serialize};

use super::userspace_killer::UserspaceOomKill;
use crate::source::userspace_log::{
    Percent,
    earlyoom::{EarlyoomKill, Limits, MemStats},
    systemd_oomd::{OomdKill, OomdReason},
};

/// `userspace_oom_kill.acted_on`: the fields of the killer that logged it, the others `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActedOn {
    /// Where this came from: `earlyoom_log` or `systemd_oomd_log`.
    pub source: String,
    /// earlyoom: the machine's memory as it read it just before it chose the victim.
    pub memory: Option<MemoryFound>,
    /// earlyoom: the limits that memory was at or below.
    pub limits: Option<LimitsCrossed>,
    /// systemd-oomd: the cgroup it killed, as its line names it.
    pub cgroup: Option<String>,
    /// systemd-oomd, `ManagedOOMSwap=kill`: the machine's memory and swap use.
    pub swap_used: Option<SwapUsed>,
    /// systemd-oomd, `ManagedOOMMemoryPressure=kill`: the pressure of the cgroup it watched.
    pub pressure: Option<PressureFound>,
}

/// systemd-oomd's swap reason, in bytes as /proc/meminfo gave them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwapUsed {
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub swap_total_bytes: u64,
    /// `SwapUsedLimit=`, which both were above.
    pub limit_percent: f64,
}

/// systemd-oomd's pressure reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PressureFound {
    /// The cgroup whose pressure it watched (the killed one is it or below it).
    pub monitored: String,
    pub pressure_percent: f64,
    pub limit_percent: f64,
    /// How long the pressure stayed above the limit, at least; `null` where it printed
    /// `infinity`.
    pub for_seconds: Option<f64>,
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

/// A kill as a killer's log told it.
#[derive(Clone, Debug, PartialEq)]
pub enum Logged {
    Earlyoom(EarlyoomKill),
    SystemdOomd(OomdKill),
}

/// A logged kill, and the pid its syslog tag names, if it had one.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedKill {
    pub writer_pid: Option<u32>,
    pub kill: Logged,
}

impl LoggedKill {
    /// Whether this logged kill is the one `kill` records.
    pub fn is_of(&self, kill: &UserspaceOomKill) -> bool {
        if self.writer_pid.is_some_and(|pid| pid != kill.killer.pid) {
            return false;
        }
        let killer = Killer::named(&kill.killer.name);
        match &self.kill {
            Logged::Earlyoom(logged) => {
                let sending = &logged.sending;
                killer == Some(Killer::Earlyoom)
                    && !kill.killer.via_cgroup_kill
                    && kill.victim.pid == Some(sending.pid)
                    && kill.signal == Some(sending.signal.name())
            }
            // The signal's record names the victim's cgroup by its last part only.
            Logged::SystemdOomd(logged) => {
                killer == Some(Killer::SystemdOomd)
                    && logged.cgroup.rsplit('/').next().is_some_and(|name| {
                        !name.is_empty() && kill.victim.cgroup_name.as_deref() == Some(name)
                    })
            }
        }
    }

    pub fn acted_on(&self) -> ActedOn {
        match &self.kill {
            Logged::Earlyoom(logged) => ActedOn {
                source: "earlyoom_log".into(),
                memory: logged.stats.as_ref().map(MemoryFound::from),
                limits: logged.limits.as_ref().map(LimitsCrossed::from),
                ..ActedOn::default()
            },
            Logged::SystemdOomd(logged) => {
                let (swap_used, pressure) = match &logged.reason {
                    OomdReason::Swap {
                        mem_used_bytes,
                        mem_total_bytes,
                        swap_used_bytes,
                        swap_total_bytes,
                        limit,
                    } => (
                        Some(SwapUsed {
                            mem_used_bytes: *mem_used_bytes,
                            mem_total_bytes: *mem_total_bytes,
                            swap_used_bytes: *swap_used_bytes,
                            swap_total_bytes: *swap_total_bytes,
                            limit_percent: percent(*limit),
                        }),
                        None,
                    ),
                    OomdReason::Pressure {
                        monitored,
                        pressure,
                        limit,
                        duration,
                    } => (
                        None,
                        Some(PressureFound {
                            monitored: monitored.clone(),
                            pressure_percent: percent(*pressure),
                            limit_percent: percent(*limit),
                            for_seconds: duration.map(|d| d.as_secs_f64()),
                        }),
                    ),
                };
                ActedOn {
                    source: "systemd_oomd_log".into(),
                    cgroup: Some(logged.cgroup.clone()),
                    swap_used,
                    pressure,
                    ..ActedOn::default()
                }
            }
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

/// Whose log line it is: the killers whose logs are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Killer {
    Earlyoom,
    SystemdOomd,
}

impl Killer {
    /// In the order their tags are looked for in a line.
    pub const ALL: [Self; 2] = [Self::SystemdOomd, Self::Earlyoom];

    /// Its comm, as the kernel's record of its signal and its syslog tag name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Earlyoom => "earlyoom",
            Self::SystemdOomd => "systemd-oomd",
        }
    }

    /// The killer named `name`, if its log is read.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A line of a killer's log as a file holds it: earlyoom's own stderr line (untagged), or a
/// syslog line whose tag is `earlyoom[PID]:` or `systemd-oomd[PID]:`. Gives the killer, the
/// pid the tag names and the message; `None` for a line whose tag only looks like theirs.
/// An untagged line is taken whole as earlyoom's, whose parsers read only its own shapes.
pub fn killer_message(line: &str) -> Option<(Killer, Option<u32>, &str)> {
    for killer in Killer::ALL {
        let tag = format!("{}[", killer.name());
        let Some(at) = line.find(&tag) else {
            continue;
        };
        let rest = &line[at + tag.len()..];
        let (pid, message) = rest.split_once("]: ")?;
        // A tag is a program name at a word's start: `notearlyoom[1]:` is another program's.
        let starts_word = line[..at].is_empty() || line[..at].ends_with(' ');
        let pid = pid.parse().ok().filter(|_| starts_word)?;
        return Some((killer, Some(pid), message));
    }
    Some((Killer::Earlyoom, None, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        source::userspace_log::{earlyoom::EarlyoomLog, systemd_oomd::parse_killed},
        testing::userspace_kill,
    };

    const LINES: [&str; 3] = [
        "mem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)",
        "low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%",
        "sending SIGTERM to process 900 uid 0 \"hog\": badness 1000, VmRSS 400 MiB",
    ];

    fn logged(writer_pid: Option<u32>) -> LoggedKill {
        let mut log = EarlyoomLog::default();
        let kill = LINES.iter().find_map(|l| log.feed(l)).expect("a kill");
        LoggedKill {
            writer_pid,
            kill: Logged::Earlyoom(kill),
        }
    }

    const PRESSURE: &str = "Killed /system.slice/press.service due to memory pressure for /system.slice being 62.11% > 50.00% for > 20s with reclaim activity";
    const SWAP: &str = "Killed /user.slice/app.scope due to memory used (8108281856) / total (8327213056) and swap used (1932443648) / total (2147479552) being more than 90.00%";

    fn oomd(line: &str, writer_pid: Option<u32>) -> LoggedKill {
        LoggedKill {
            writer_pid,
            kill: Logged::SystemdOomd(parse_killed(line).expect("a Killed line")),
        }
    }

    fn in_cgroup(killer: &str, cgroup: &str) -> UserspaceOomKill {
        let mut kill = userspace_kill(killer, "SIGKILL", 700);
        kill.killer.via_cgroup_kill = true;
        kill.victim.cgroup_name = Some(cgroup.into());
        kill
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
        let press = in_cgroup("systemd-oomd", "press.service");
        for (logged, kill, joined) in [
            (oomd(PRESSURE, Some(300)), &press, true),
            (oomd(PRESSURE, None), &press, true),
            (oomd(PRESSURE, Some(301)), &press, false),
            (
                oomd(PRESSURE, Some(300)),
                &in_cgroup("systemd-oomd", "other.service"),
                false,
            ),
            (
                oomd(PRESSURE, Some(300)),
                &in_cgroup("earlyoom", "press.service"),
                false,
            ),
            (
                oomd(SWAP, Some(300)),
                &in_cgroup("systemd-oomd", "app.scope"),
                true,
            ),
            (logged(None), &press, false),
        ] {
            assert_eq!(logged.is_of(kill), joined, "{logged:?} {kill:?}");
        }
    }

    #[test]
    fn tells_what_systemd_oomd_acted_on_as_it_logged_it() {
        let json = |line| serde_json::to_string(&oomd(line, None).acted_on()).unwrap();
        assert_eq!(
            json(PRESSURE),
            r#"{"source":"systemd_oomd_log","memory":null,"limits":null,"cgroup":"/system.slice/press.service","swap_used":null,"pressure":{"monitored":"/system.slice","pressure_percent":62.11,"limit_percent":50.0,"for_seconds":20.0}}"#
        );
        assert_eq!(
            json(SWAP),
            r#"{"source":"systemd_oomd_log","memory":null,"limits":null,"cgroup":"/user.slice/app.scope","swap_used":{"mem_used_bytes":8108281856,"mem_total_bytes":8327213056,"swap_used_bytes":1932443648,"swap_total_bytes":2147479552,"limit_percent":90.0},"pressure":null}"#
        );
    }

    #[test]
    fn tells_what_earlyoom_acted_on_as_it_printed_it() {
        let acted = logged(None).acted_on();
        let json = serde_json::to_string(&acted).unwrap();
        assert_eq!(
            json,
            r#"{"source":"earlyoom_log","memory":{"mem_avail_mib":45,"mem_total_mib":481,"mem_avail_percent":9.48,"swap_free_mib":0,"swap_total_mib":0,"swap_free_percent":0.0},"limits":{"signal":"SIGTERM","mem_percent":10.0,"swap_percent":10.0},"cgroup":null,"swap_used":null,"pressure":null}"#
        );
        assert_eq!(serde_json::from_str::<ActedOn>(&json).unwrap(), acted);
    }

    #[test]
    fn reads_the_killers_own_lines_and_their_syslog_lines_only() {
        use Killer::{Earlyoom, SystemdOomd};
        for (line, want) in [
            (
                "sending SIGTERM to",
                Some((Earlyoom, None, "sending SIGTERM to")),
            ),
            (
                "Dec  7 21:00:00 node earlyoom[300]: sending SIGTERM to",
                Some((Earlyoom, Some(300), "sending SIGTERM to")),
            ),
            (
                "earlyoom[300]: mem avail",
                Some((Earlyoom, Some(300), "mem avail")),
            ),
            (
                "Dec  7 21:00:00 node systemd-oomd[42]: Killed /a.service due to",
                Some((SystemdOomd, Some(42), "Killed /a.service due to")),
            ),
            ("Dec  7 21:00:00 node notearlyoom[300]: sending", None),
            ("Dec  7 21:00:00 node earlyoom[x]: sending", None),
            ("Dec  7 21:00:00 node earlyoom[300] sending", None),
            ("Dec  7 21:00:00 node my-systemd-oomd[42]: Killed", None),
        ] {
            assert_eq!(killer_message(line), want, "{line}");
        }
    }
}
