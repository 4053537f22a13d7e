//! Kills by userspace OOM killers (earlyoom, systemd-oomd, oomd): the kernel never marks their
//! victims, so their identity is the killer, the victim's pid and the signal's time, all from
//! the kernel's record of the signal. What the killer acted on comes from its own log line,
//! where that can be read.

use std::{collections::VecDeque, time::SystemTime};

use oomtrace_common::USERSPACE_OOM_KILLERS;
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{
        acted_on::ActedOn,
        killer::{SenderContainer, SignalFacts},
    },
    report::{Host, Label, from_rfc3339, hex, known, known_option, rfc3339},
    source::signal::signal_name,
};

/// `"event":"userspace_oom_kill"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserspaceOomKill {
    pub schema: u32,
    #[serde(deserialize_with = "known")]
    pub event: Label,
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: Option<SystemTime>,
    pub boot_ns: Option<u64>,
    pub killer: UserspaceKiller,
    #[serde(deserialize_with = "known_option")]
    pub signal: Option<Label>,
    pub victim: UserspaceVictim,
    /// The container the victim ran in, where its cgroup names one the runtimes know.
    pub container: Option<SenderContainer>,
    /// What the killer acted on, from its own log where the watch follows it.
    #[serde(default)]
    pub acted_on: Option<ActedOn>,
    #[serde(default)]
    pub host: Option<Host>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserspaceKiller {
    /// `earlyoom`, `systemd-oomd` or `oomd`: the killer's comm.
    pub name: String,
    pub pid: u32,
    pub uid: Option<u32>,
    /// True when it wrote `cgroup.kill` rather than signalling the victim itself.
    pub via_cgroup_kill: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserspaceVictim {
    pub pid: Option<u32>,
    pub tid: u32,
    /// The signalled thread's name.
    pub comm: Option<String>,
    #[serde(rename = "comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes: Option<Vec<u8>>,
    /// The victim's memory cgroup: its id and its kernfs name (the last part of its path).
    pub cgroup_id: Option<u64>,
    pub cgroup_name: Option<String>,
}

/// The kill a userspace OOM killer's signal is, or `None` for any other signal. A process
/// in a container that merely calls itself `earlyoom` is not taken for the host's killer.
pub fn kill_of(
    signal: &SignalFacts,
    container: Option<SenderContainer>,
) -> Option<UserspaceOomKill> {
    let seen = &signal.seen;
    let sender = &seen.sender;
    if !USERSPACE_OOM_KILLERS.contains(&sender.comm.as_str()) || sender.pid_level != Some(0) {
        return None;
    }
    Some(UserspaceOomKill {
        schema: crate::report::SCHEMA,
        event: "userspace_oom_kill",
        time: seen.time,
        boot_ns: Some(seen.boot_ns),
        killer: UserspaceKiller {
            name: sender.comm.clone(),
            pid: sender.pid,
            uid: sender.uid,
            via_cgroup_kill: signal.via_cgroup_kill,
        },
        signal: signal_name(seen.signal),
        victim: UserspaceVictim {
            pid: seen.target_pid,
            tid: seen.target_tid,
            comm: seen.target_comm.clone(),
            comm_bytes: None,
            cgroup_id: seen.target_cgroup_id,
            cgroup_name: seen.target_cgroup_name.clone(),
        },
        container,
        acted_on: None,
        host: None,
    })
}

/// What one kill is: the killer and its victim, the process, or with `cgroup.kill` the cgroup
/// (every task in it gets the signal).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KillKey {
    killer_pid: u32,
    victim: (bool, u64),
    boot_ns: u64,
}

/// A killer's later signals to the same victim (earlyoom's SIGKILL after its SIGTERM, the
/// other tasks of a cgroup it wrote `cgroup.kill` for) are the same kill, told once.
#[derive(Debug, Default)]
pub struct KillDedup {
    recent: VecDeque<KillKey>,
}

/// How long later signals to the same victim count as the same kill: earlyoom waits for its
/// victim for up to 10 s before it sends SIGKILL.
const SAME_KILL_NS: u64 = 30_000_000_000;
const REMEMBERED: usize = 1024;

impl KillDedup {
    /// Whether `kill` is a kill not told yet, and remembers it.
    pub fn is_new(&mut self, kill: &UserspaceOomKill) -> bool {
        let boot_ns = kill.boot_ns.unwrap_or_default();
        let victim = match (kill.killer.via_cgroup_kill, kill.victim.cgroup_id) {
            (true, Some(cgroup)) => (true, cgroup),
            _ => (false, u64::from(kill.victim.pid.unwrap_or(kill.victim.tid))),
        };
        let key = KillKey {
            killer_pid: kill.killer.pid,
            victim,
            boot_ns,
        };
        self.recent
            .retain(|k| boot_ns.saturating_sub(k.boot_ns) < SAME_KILL_NS);
        if self
            .recent
            .iter()
            .any(|k| k.killer_pid == key.killer_pid && k.victim == key.victim)
        {
            return false;
        }
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::signal::{Origin, SenderSeen, SignalSeen};

    fn from(comm: &str, level: u32, target: u32, secs: u64) -> SignalFacts {
        SignalFacts {
            seen: SignalSeen {
                boot_ns: secs * 1_000_000_000,
                time: None,
                signal: 15,
                origin: Origin::Siginfo { code: Some(0) },
                ignored: false,
                target_tid: target,
                target_pid: Some(target),
                target_comm: Some("hog".into()),
                target_ns_pid: Some(target),
                target_pid_level: Some(0),
                target_cgroup_id: Some(77),
                target_cgroup_name: Some("session-1.scope".into()),
                sender: SenderSeen {
                    pid: 300,
                    tid: 300,
                    comm: comm.into(),
                    uid: Some(0),
                    pid_level: Some(level),
                    ..SenderSeen::default()
                },
                stack: Vec::new(),
            },
            via_cgroup_kill: false,
            sender_container: None,
        }
    }

    #[test]
    fn only_a_host_s_userspace_oom_killer_makes_one() {
        let cases = [
            ("earlyoom", 0, true),
            ("systemd-oomd", 0, true),
            ("oomd", 0, true),
            ("earlyoom", 1, false),
            ("bash", 0, false),
            ("earlyoomX", 0, false),
        ];
        for (comm, level, made) in cases {
            let kill = kill_of(&from(comm, level, 900, 1), None);
            assert_eq!(kill.is_some(), made, "{comm} at level {level}");
            if let Some(kill) = kill {
                assert_eq!(kill.killer.name, comm);
                assert_eq!(kill.victim.pid, Some(900));
                assert_eq!(kill.signal, Some("SIGTERM"));
                assert_eq!(kill.victim.cgroup_name.as_deref(), Some("session-1.scope"));
            }
        }
    }

    #[test]
    fn a_killer_s_later_signals_to_the_same_victim_are_the_same_kill() {
        let mut dedup = KillDedup::default();
        let kill = |target, secs, cgroup_kill: bool| {
            let mut signal = from("earlyoom", 0, target, secs);
            signal.via_cgroup_kill = cgroup_kill;
            kill_of(&signal, None).unwrap()
        };
        assert!(dedup.is_new(&kill(900, 1, false)));
        assert!(
            !dedup.is_new(&kill(900, 11, false)),
            "its SIGKILL after the SIGTERM"
        );
        assert!(dedup.is_new(&kill(901, 11, false)), "another victim");
        assert!(
            dedup.is_new(&kill(900, 60, false)),
            "long after: a new kill"
        );
        assert!(dedup.is_new(&kill(902, 70, true)));
        assert!(
            !dedup.is_new(&kill(903, 70, true)),
            "another task of the cgroup it wrote cgroup.kill for"
        );
    }
}
