//! Who ended a container: the sender of the signal its main process died of, from the
//! kernel's record of that signal, and what the runtime's OOMKilled flag meant that time.
//! Pure: the exit's facts and the signals in, `killed_by` and the flag's reason out.

use std::time::SystemTime;

use oomtrace_common::USERSPACE_OOM_KILLERS;
use serde::{Deserialize, Serialize};

use crate::{
    report::{KillSummary, Label, from_rfc3339, hex, known_option, rfc3339},
    source::signal::{Origin, SignalSeen, signal_name},
};

/// `"killed_by"` of a `container_exit`: who sent the signal the container's main process
/// died of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KilledBy {
    /// `oom_killer`, `runtime`, `userspace_oom_killer`, `cgroup_kill` or `process`; `null`
    /// where the record does not say (the kernel sent it for another reason, or the sender's
    /// pid namespace could not be read).
    #[serde(deserialize_with = "known_option")]
    pub kind: Option<Label>,
    #[serde(deserialize_with = "known_option")]
    pub signal: Option<Label>,
    /// When the kernel generated the signal.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: Option<SystemTime>,
    /// The OOM kill's `oom.id`, for `oom_killer`.
    pub oom_id: Option<u64>,
    /// The task that sent it; `null` for the kernel's OOM killer, whose "sender" is only the
    /// task that ran out of memory.
    pub sender: Option<Sender>,
    /// The signal the same kind of sender sent the main process before this one, as
    /// `docker stop` sends SIGTERM and, past its timeout, SIGKILL.
    pub after: Option<EarlierSignal>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    #[serde(rename = "comm_hex", with = "hex")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_bytes: Option<Vec<u8>>,
    pub uid: Option<u32>,
    /// True for a process of the host's pid namespace; false for one in a container's.
    pub host_process: Option<bool>,
    /// The container the sender ran in, where its cgroup names one the runtimes know.
    pub container: Option<SenderContainer>,
    pub parent: Option<SenderParent>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderContainer {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderParent {
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlierSignal {
    #[serde(deserialize_with = "known_option")]
    pub signal: Option<Label>,
    pub seconds_before: f64,
    /// The main process had no handler for it and the kernel dropped it, as a PID 1 does.
    pub ignored: bool,
}

/// A signal the main process received, with what user space worked out about its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalFacts {
    pub seen: SignalSeen,
    /// The kernel sent it for a write to `cgroup.kill`, as its stack shows.
    pub via_cgroup_kill: bool,
    /// The container the sender's cgroup names, if any the runtimes know.
    pub sender_container: Option<SenderContainer>,
}

/// What is known of a container's run when it ends.
#[derive(Clone, Copy, Debug)]
pub struct ExitFacts<'a> {
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled`; `None` from a runtime without it.
    pub runtime_oom_killed: Option<bool>,
    /// The host pid of the container's PID 1 in the run that ended.
    pub main_pid: Option<u32>,
    /// Signals the main process received in the run, oldest first.
    pub signals: &'a [SignalFacts],
    /// The run's OOM kills, oldest first, with their `oom.id`s.
    pub kills: &'a [(Option<u64>, KillSummary)],
    /// The runtime said the container hit its memory limit in the run (Docker's `oom` event).
    pub runtime_saw_oom: bool,
    /// Docker's `HostConfig.OomKillDisable` for the container.
    pub oom_kill_disabled: Option<bool>,
    /// The watch saw the run start, so a kill in it would have been seen.
    pub whole_run_watched: bool,
}

/// Names of the container runtimes' processes that signal containers: runc and its peers
/// (which `docker stop`, `docker kill` and a kubelet's stop all end in), the shims and daemons.
/// A comm is at most 15 bytes, so `containerd-shim-runc-v2` is `containerd-shim`.
const RUNTIME_COMMS: [&str; 9] = [
    "runc",
    "crun",
    "youki",
    "runsc",
    "containerd-shim",
    "containerd",
    "dockerd",
    "conmon",
    "crio",
];

pub const SIGKILL: u32 = 9;

/// Who ended the run: the sender of the signal the main process died of. `None` unless the
/// exit code says a signal (128 + its number) and the kernel recorded one reaching the main
/// process, or the kernel OOM-killed the main process.
pub fn killed_by(facts: &ExitFacts) -> Option<KilledBy> {
    let signal = exit_signal(facts.exit_code?)?;
    let to_main =
        |s: &&SignalFacts| facts.main_pid.is_some() && s.seen.target_pid == facts.main_pid;
    let ending = facts
        .signals
        .iter()
        .filter(to_main)
        .rfind(|s| s.seen.signal == signal && s.seen.landed());
    let Some(ending) = ending else {
        // The kernel's OOM killer ended the main process (or the app an init shim exits
        // with): the kill report is the kernel's record of that SIGKILL.
        return (signal == SIGKILL)
            .then(|| main_kill(facts))
            .flatten()
            .map(|(oom_id, kill)| KilledBy {
                kind: Some("oom_killer"),
                signal: signal_name(SIGKILL),
                time: kill.time,
                oom_id,
                sender: None,
                after: None,
            });
    };
    let (kind, oom_id) = sender_kind(ending, facts.kills);
    let after = facts
        .signals
        .iter()
        .filter(to_main)
        .take_while(|s| !std::ptr::eq(*s, ending))
        .filter(|s| s.seen.signal != signal && sender_kind(s, facts.kills).0 == kind)
        .last()
        .map(|earlier| EarlierSignal {
            signal: signal_name(earlier.seen.signal),
            seconds_before: ending.seen.boot_ns.saturating_sub(earlier.seen.boot_ns) as f64 / 1e9,
            ignored: earlier.seen.ignored,
        });
    Some(KilledBy {
        kind,
        signal: signal_name(signal),
        time: ending.seen.time,
        oom_id,
        sender: (kind != Some("oom_killer")).then(|| sender_of(ending)),
        after: after.filter(|_| kind.is_some()),
    })
}

/// The signal an exit code says the main process died of: 128 + its number, as runtimes and
/// shells report a death by signal. A process can also exit with such a code by itself.
pub fn exit_signal(code: i64) -> Option<u32> {
    u32::try_from(code.checked_sub(128)?)
        .ok()
        .filter(|s| (1..=64).contains(s))
}

/// The run's kill of its main process, if the kernel OOM-killed it.
fn main_kill<'a>(facts: &'a ExitFacts) -> Option<(Option<u64>, &'a KillSummary)> {
    facts
        .kills
        .iter()
        .rev()
        .find(|(_, kill)| kill.is_container_main == Some(true))
        .map(|(id, kill)| (*id, kill))
}

/// Which kind of sender a signal came from, and the OOM kill's id for the OOM killer's.
fn sender_kind(
    signal: &SignalFacts,
    kills: &[(Option<u64>, KillSummary)],
) -> (Option<Label>, Option<u64>) {
    let seen = &signal.seen;
    let sender = &seen.sender;
    let on_host = sender.pid_level.map(|level| level == 0);
    if seen.origin == Origin::Kernel {
        // Only the OOM killer's is named: the kernel sends SIGKILL for other reasons too.
        let oom = kills
            .iter()
            .rev()
            .find(|(_, kill)| kill.pid.is_some() && kill.pid == seen.target_pid);
        return match oom {
            Some((id, _)) if seen.signal == SIGKILL => (Some("oom_killer"), *id),
            _ => (None, None),
        };
    }
    let named = |names: &[&str]| names.contains(&sender.comm.as_str());
    let kind = if named(&USERSPACE_OOM_KILLERS) {
        // The writer of `cgroup.kill` is the killer as much as a sender of a signal is.
        on_host.map(|host| {
            if host {
                "userspace_oom_killer"
            } else {
                "process"
            }
        })
    } else if seen.origin == Origin::NoInfo && signal.via_cgroup_kill {
        Some("cgroup_kill")
    } else if named(&RUNTIME_COMMS) {
        on_host.map(|host| {
            if host && signal.sender_container.is_none() {
                "runtime"
            } else {
                "process"
            }
        })
    } else {
        Some("process")
    };
    (kind, None)
}

fn sender_of(signal: &SignalFacts) -> Sender {
    let sender = &signal.seen.sender;
    Sender {
        pid: sender.pid,
        tid: sender.tid,
        comm: sender.comm.clone(),
        comm_bytes: sender.comm_bytes.clone(),
        uid: sender.uid,
        host_process: sender.pid_level.map(|level| level == 0),
        container: signal.sender_container.clone(),
        parent: sender
            .parent_pid
            .zip(sender.parent_comm.clone())
            .map(|(pid, comm)| SenderParent { pid, comm }),
    }
}

/// Why the runtime's OOMKilled flag says what it says, where the facts tell:
/// - `oom_kill_ended_it`: the kernel OOM-killed the main process;
/// - `earlier_oom_kill`: true because another process was OOM-killed in the run, which is not
///   what ended it;
/// - `oom_killer_disabled`: true because the container hit its limit with the OOM killer
///   disabled, and the kernel killed nothing;
/// - `oom_kill_not_flagged`: false, though the kernel OOM-killed the main process.
pub fn flag_reason(facts: &ExitFacts, killed_by: Option<&KilledBy>) -> Option<Label> {
    let ended_by_oom = killed_by.is_some_and(|k| k.kind == Some("oom_killer"));
    match facts.runtime_oom_killed? {
        true if ended_by_oom => Some("oom_kill_ended_it"),
        // A kill of unknown role may be what ended it, unless the record names another sender.
        true if !facts.kills.is_empty()
            && (killed_by.is_some()
                || facts
                    .kills
                    .iter()
                    .all(|(_, kill)| kill.is_container_main == Some(false))) =>
        {
            Some("earlier_oom_kill")
        }
        true if facts.whole_run_watched
            && facts.runtime_saw_oom
            && facts.oom_kill_disabled == Some(true) =>
        {
            Some("oom_killer_disabled")
        }
        false if ended_by_oom => Some("oom_kill_not_flagged"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::source::signal::SenderSeen;

    const MAIN: u32 = 4100;

    fn signal(signal: u32, secs: u64, comm: &str, origin: Origin) -> SignalFacts {
        SignalFacts {
            seen: SignalSeen {
                boot_ns: secs * 1_000_000_000,
                time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                signal,
                origin,
                ignored: false,
                target_tid: MAIN,
                target_pid: Some(MAIN),
                target_comm: Some("sleep".into()),
                target_ns_pid: Some(1),
                target_pid_level: Some(1),
                target_cgroup_id: None,
                target_cgroup_name: None,
                sender: SenderSeen {
                    pid: 5000,
                    tid: 5000,
                    comm: comm.into(),
                    uid: Some(0),
                    pid_level: Some(0),
                    parent_pid: Some(4000),
                    parent_comm: Some("containerd-shim".into()),
                    ..SenderSeen::default()
                },
                stack: Vec::new(),
            },
            via_cgroup_kill: false,
            sender_container: None,
        }
    }

    fn user(sig: u32, secs: u64, comm: &str) -> SignalFacts {
        signal(sig, secs, comm, Origin::Siginfo { code: Some(0) })
    }

    fn kill(pid: u32, main: bool, secs: u64) -> (Option<u64>, KillSummary) {
        (
            Some(secs * 1000),
            KillSummary {
                comm: "dd".into(),
                comm_bytes: None,
                pid: Some(pid),
                time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                is_container_main: Some(main),
            },
        )
    }

    fn facts<'a>(
        code: i64,
        flag: Option<bool>,
        signals: &'a [SignalFacts],
        kills: &'a [(Option<u64>, KillSummary)],
    ) -> ExitFacts<'a> {
        ExitFacts {
            exit_code: Some(code),
            runtime_oom_killed: flag,
            main_pid: Some(MAIN),
            signals,
            kills,
            runtime_saw_oom: false,
            oom_kill_disabled: Some(false),
            whole_run_watched: true,
        }
    }

    #[test]
    fn each_death_is_told_by_its_sender() {
        let ignored_term = SignalFacts {
            seen: SignalSeen {
                ignored: true,
                ..user(15, 100, "runc").seen
            },
            ..user(15, 100, "runc")
        };
        let in_container = |mut s: SignalFacts| {
            s.seen.sender.pid_level = Some(1);
            s.sender_container = Some(SenderContainer {
                id: "c".repeat(64),
                name: Some("sidecar".into()),
            });
            s
        };
        let cgroup_kill = SignalFacts {
            via_cgroup_kill: true,
            ..signal(9, 50, "bash", Origin::NoInfo)
        };
        let no_level = |mut s: SignalFacts| {
            s.seen.sender.pid_level = None;
            s
        };
        let other_pid = |mut s: SignalFacts| {
            s.seen.target_pid = Some(MAIN + 1);
            s
        };
        // (what, exit code, signals, kills, kind, signal, oom id, after)
        type Row = (
            &'static str,
            i64,
            Vec<SignalFacts>,
            Vec<(Option<u64>, KillSummary)>,
            Option<Option<&'static str>>,
            Option<u64>,
            Option<(&'static str, f64, bool)>,
        );
        let rows: Vec<Row> = vec![
            (
                "docker stop past its timeout",
                137,
                vec![ignored_term.clone(), user(9, 110, "runc")],
                vec![],
                Some(Some("runtime")),
                None,
                Some(("SIGTERM", 10.0, true)),
            ),
            (
                "docker kill",
                137,
                vec![user(9, 50, "runc")],
                vec![],
                Some(Some("runtime")),
                None,
                None,
            ),
            (
                "docker stop, handled",
                143,
                vec![user(15, 50, "runc")],
                vec![],
                Some(Some("runtime")),
                None,
                None,
            ),
            (
                "kill -9 from a host shell",
                137,
                vec![user(9, 50, "bash")],
                vec![],
                Some(Some("process")),
                None,
                None,
            ),
            (
                "runc from inside a container is a process",
                137,
                vec![in_container(user(9, 50, "runc"))],
                vec![],
                Some(Some("process")),
                None,
                None,
            ),
            (
                "cgroup.kill",
                137,
                vec![cgroup_kill],
                vec![],
                Some(Some("cgroup_kill")),
                None,
                None,
            ),
            (
                "earlyoom",
                137,
                vec![user(9, 50, "earlyoom")],
                vec![],
                Some(Some("userspace_oom_killer")),
                None,
                None,
            ),
            (
                "the OOM killer's own SIGKILL",
                137,
                vec![signal(9, 50, "dd", Origin::Kernel)],
                vec![kill(MAIN, true, 50)],
                Some(Some("oom_killer")),
                Some(50_000),
                None,
            ),
            (
                "an OOM-killed app under an init shim",
                137,
                vec![],
                vec![kill(MAIN + 7, true, 50)],
                Some(Some("oom_killer")),
                Some(50_000),
                None,
            ),
            (
                "a kernel SIGKILL that is no OOM kill",
                137,
                vec![signal(9, 50, "dd", Origin::Kernel)],
                vec![],
                Some(None),
                None,
                None,
            ),
            (
                "a sender whose namespace is unread",
                137,
                vec![no_level(user(9, 50, "runc"))],
                vec![],
                Some(None),
                None,
                None,
            ),
            (
                "exit 0 after a SIGTERM",
                0,
                vec![user(15, 50, "runc")],
                vec![],
                None,
                None,
                None,
            ),
            (
                "137 with no record",
                137,
                vec![],
                vec![kill(MAIN + 7, false, 50)],
                None,
                None,
                None,
            ),
            (
                "the signal went to another pid",
                137,
                vec![other_pid(user(9, 50, "runc"))],
                vec![],
                None,
                None,
                None,
            ),
            (
                "the main process ignored it",
                143,
                vec![ignored_term.clone()],
                vec![],
                None,
                None,
                None,
            ),
            (
                "a SIGTERM from someone else is not its",
                137,
                vec![user(15, 40, "bash"), user(9, 50, "runc")],
                vec![],
                Some(Some("runtime")),
                None,
                None,
            ),
        ];
        for (what, code, signals, kills, kind, oom_id, after) in rows {
            let got = killed_by(&facts(code, Some(false), &signals, &kills));
            assert_eq!(got.as_ref().map(|k| k.kind), kind, "{what}");
            let Some(got) = got else { continue };
            assert_eq!(got.oom_id, oom_id, "{what}");
            assert_eq!(
                got.after
                    .as_ref()
                    .map(|a| (a.signal.unwrap(), a.seconds_before, a.ignored)),
                after,
                "{what}"
            );
            assert_eq!(
                got.sender.is_none(),
                got.kind == Some("oom_killer"),
                "{what}"
            );
            assert_eq!(got.signal, signal_name((code - 128) as u32), "{what}");
        }
    }

    #[test]
    fn the_sender_is_told_as_the_kernel_recorded_it() {
        let mut by_sibling = user(15, 50, "sh");
        by_sibling.seen.sender.pid_level = Some(1);
        by_sibling.sender_container = Some(SenderContainer {
            id: "a".repeat(64),
            name: Some("api".into()),
        });
        let got = killed_by(&facts(143, None, &[by_sibling], &[])).unwrap();
        let sender = got.sender.unwrap();
        assert_eq!(sender.comm, "sh");
        assert_eq!(sender.host_process, Some(false));
        assert_eq!(sender.container.unwrap().name.as_deref(), Some("api"));
        assert_eq!(
            sender.parent,
            Some(SenderParent {
                pid: 4000,
                comm: "containerd-shim".into()
            })
        );
    }

    #[test]
    fn the_flag_is_reconciled_with_the_facts() {
        let stop = [user(9, 110, "runc")];
        fn stall(mut f: ExitFacts<'_>) -> ExitFacts<'_> {
            f.runtime_saw_oom = true;
            f.oom_kill_disabled = Some(true);
            f
        }
        let child = [kill(MAIN + 7, false, 50)];
        let main = [kill(MAIN, true, 50)];
        let mut unknown_role = [kill(MAIN + 7, false, 50)];
        unknown_role[0].1.is_container_main = None;
        let none: &[(Option<u64>, KillSummary)] = &[];
        let rows: Vec<(&str, ExitFacts, Option<&str>)> = vec![
            (
                "a child OOM-killed, then docker kill",
                facts(137, Some(true), &stop, &child),
                Some("earlier_oom_kill"),
            ),
            (
                "the main process OOM-killed",
                facts(137, Some(true), &[], &main),
                Some("oom_kill_ended_it"),
            ),
            (
                "the flag missed it",
                facts(137, Some(false), &[], &main),
                Some("oom_kill_not_flagged"),
            ),
            (
                "stalled with the OOM killer off",
                stall(facts(137, Some(true), &stop, none)),
                Some("oom_killer_disabled"),
            ),
            (
                "stalled, but the run was not watched from its start",
                ExitFacts {
                    whole_run_watched: false,
                    ..stall(facts(137, Some(true), &stop, none))
                },
                None,
            ),
            (
                "true with nothing seen",
                facts(137, Some(true), &stop, none),
                None,
            ),
            (
                "false and right",
                facts(137, Some(false), &stop, none),
                None,
            ),
            ("no flag (containerd)", facts(137, None, &[], &main), None),
        ];
        for (what, facts, want) in rows {
            let killer = killed_by(&facts);
            assert_eq!(flag_reason(&facts, killer.as_ref()), want, "{what}");
        }
    }

    #[test]
    fn killed_by_keeps_its_words_through_json() {
        let killer = killed_by(&facts(
            137,
            None,
            &[user(15, 100, "runc"), user(9, 110, "runc")],
            &[],
        ))
        .unwrap();
        let json = serde_json::to_string(&killer).unwrap();
        assert!(json.contains(r#""kind":"runtime""#), "{json}");
        assert!(json.contains(r#""signal":"SIGKILL""#), "{json}");
        let back: KilledBy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, killer);
    }
}
