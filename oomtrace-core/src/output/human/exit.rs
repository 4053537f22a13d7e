//! The exit line: how the runtime (Docker, containerd) says a container ended, and the kill
//! before it.

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use super::{HumanView, container_name};
use crate::{
    output::{escape::visible_bytes, facts::retries_used_up, format::restarts_so_far},
    report::{ContainerExit, KillSummary, KilledBy, exact},
};

impl HumanView {
    /// Appends a container exit's line: the facts its runtime gives, and the kill before it.
    pub fn exit(&mut self, exit: &ContainerExit, now: SystemTime, out: &mut String) {
        self.time(exit.time, now, out);
        out.push_str("  container ");
        out.push_str(&container_name(&exit.container));
        match exit.exit_code {
            Some(code) => {
                let _ = write!(out, " exited {code}");
            }
            None => out.push_str(" exited"),
        }
        // Only Docker keeps an OOMKilled flag; containerd's exits have none to tell.
        match (exit.container.runtime, exit.runtime_oom_killed) {
            ("docker", Some(flag)) => {
                let _ = write!(out, " (Docker: OOMKilled={flag})");
            }
            ("docker", None) => out.push_str(" (Docker's OOMKilled unknown)"),
            _ => {}
        }
        // The OOM killer's own kill is told by the kill it made, below.
        let killer = exit
            .killed_by
            .as_ref()
            .filter(|k| k.kind != Some("oom_killer"));
        if let Some(killer) = killer {
            out.push_str(": ");
            who_ended(killer, exit.container.runtime, visible_bytes, out);
        }
        let not_oom = "; not an OOM kill, although Docker says OOMKilled=true";
        match (killer, &exit.last_kill) {
            (Some(_), Some(last)) => {
                if exit.runtime_oom_killed_reason == Some("earlier_oom_kill") {
                    out.push_str(not_oom);
                    out.push(':');
                } else {
                    out.push(';');
                }
                out.push(' ');
                named_victim(last, visible_bytes, out);
                out.push_str(" was OOM-killed");
                if let (Some(exited), Some(killed)) = (exit.time, last.time) {
                    let _ = write!(out, " {} before", seconds(exited, killed));
                }
                out.push_str(" and the container lived on");
            }
            (None, Some(last)) => {
                if let (Some(exited), Some(killed)) = (exit.time, last.time) {
                    let _ = write!(out, " {} after ", seconds(exited, killed));
                } else {
                    out.push_str(" after ");
                }
                named_victim(last, visible_bytes, out);
                out.push_str(" was OOM-killed");
                match last.is_container_main {
                    Some(false) => out.push_str("; its main process survived the kill"),
                    Some(true) => out.push_str(", the container's main process"),
                    None => {}
                }
            }
            (_, None) => {}
        }
        match exit.runtime_oom_killed_reason {
            Some("oom_killer_disabled") => {
                out.push_str(not_oom);
                out.push_str(": ");
                out.push_str(OOM_KILLER_DISABLED);
                out.push_str(", and nothing was killed");
            }
            Some("oom_kill_not_flagged") => {
                out.push_str("; an OOM kill, although Docker says OOMKilled=false");
            }
            _ => {}
        }
        match (exit.restarting, exit.restart_count) {
            (Some(true), Some(count)) => {
                let _ = write!(out, "; Docker is restarting it (restart {count})");
            }
            (Some(true), None) => out.push_str("; Docker is restarting it"),
            (_, Some(count)) => match retries_used_up(
                &exit.container,
                Some(count),
                exit.restarting,
                exit.exit_code,
            ) {
                Some(used) => {
                    let _ = write!(out, "; Docker stopped restarting it: {used}");
                }
                None => {
                    out.push_str("; ");
                    out.push_str(&restarts_so_far(count));
                }
            },
            (_, None) => {}
        }
        out.push('\n');
    }
}

/// What Docker's `oom_killer_disabled` flag meant: its OOM event without a kill.
pub const OOM_KILLER_DISABLED: &str =
    "the container hit its memory limit with the OOM killer disabled";

/// `dd (pid 12839)`, the name shown by `show`: escaped for a terminal, or as JSON has it.
pub fn named_victim(kill: &KillSummary, show: fn(&[u8]) -> String, out: &mut String) {
    let comm = exact(&kill.comm, kill.comm_bytes.as_deref());
    let _ = write!(out, "{} (pid ", show(comm));
    match kill.pid {
        Some(pid) => {
            let _ = write!(out, "{pid})");
        }
        None => out.push_str("?)"),
    }
}

/// `SIGKILL from the runtime (runc, pid 5120) 10.0 s after its SIGTERM, which PID 1 ignored, as
/// docker stop does when its timeout runs out`: who sent the signal the main process died of,
/// its names shown by `show`.
pub fn who_ended(killer: &KilledBy, runtime: &str, show: fn(&[u8]) -> String, out: &mut String) {
    out.push_str(killer.signal.unwrap_or("a signal"));
    out.push_str(" from ");
    let sender = killer.sender.as_ref();
    let named = |out: &mut String| {
        if let Some(sender) = sender {
            let comm = exact(&sender.comm, sender.comm_bytes.as_deref());
            let _ = write!(out, "{} (pid {}", show(comm), sender.pid);
            if let Some(uid) = sender.uid {
                let _ = write!(out, ", uid {uid}");
            }
            out.push(')');
        } else {
            out.push_str("a sender the kernel did not name");
        }
    };
    match killer.kind {
        Some("runtime") => {
            out.push_str("the runtime (");
            if let Some(sender) = sender {
                let comm = exact(&sender.comm, sender.comm_bytes.as_deref());
                let _ = write!(out, "{}, pid {}", show(comm), sender.pid);
            }
            out.push(')');
        }
        Some("userspace_oom_killer") => {
            out.push_str("the userspace OOM killer ");
            named(out);
        }
        Some("cgroup_kill") => {
            out.push_str("a write to cgroup.kill by ");
            named(out);
        }
        _ => {
            named(out);
            if let Some(sender) = sender {
                match (&sender.container, sender.host_process) {
                    (Some(container), _) => {
                        let name = container.name.as_deref().unwrap_or(&container.id);
                        let _ = write!(out, " in container {}", show(name.as_bytes()));
                    }
                    (None, Some(true)) => out.push_str(", a process on the host"),
                    (None, Some(false)) => out.push_str(", a process in a container"),
                    (None, None) => {}
                }
                if let Some(parent) = &sender.parent {
                    let _ = write!(
                        out,
                        ", child of {} (pid {})",
                        show(parent.comm.as_bytes()),
                        parent.pid
                    );
                }
            }
        }
    }
    if let Some(after) = &killer.after {
        let _ = write!(
            out,
            " {:.1} s after its {}",
            after.seconds_before,
            after.signal.unwrap_or("earlier signal")
        );
        if after.ignored {
            out.push_str(", which PID 1 ignored");
        }
    }
    if runtime == "docker" && killer.kind == Some("runtime") {
        match (killer.signal, &killer.after) {
            (Some("SIGKILL"), Some(after)) if after.signal == Some("SIGTERM") => {
                out.push_str(", as docker stop does when its timeout runs out");
            }
            (Some("SIGKILL"), None) => out.push_str(", as docker kill does"),
            (Some("SIGTERM"), None) => out.push_str(", as docker stop does"),
            _ => {}
        }
    }
}

/// `4.2 s`: how long `later` came after `earlier`.
fn seconds(later: SystemTime, earlier: SystemTime) -> String {
    let d = later.duration_since(earlier).unwrap_or(Duration::ZERO);
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{seed0, today, utc};
    use super::*;
    use crate::report::KillSummary;

    #[test]
    fn a_container_exit_is_told_from_docker_s_facts() {
        let report = seed0(false);
        let killed = report.time.unwrap();
        let exit = ContainerExit {
            schema: 1,
            event: "container_exit",
            time: Some(killed + Duration::from_millis(4200)),
            container: report.container.clone().unwrap(),
            exit_code: Some(0),
            runtime_oom_killed: Some(true),
            restart_count: Some(0),
            restarting: Some(false),
            kills: vec![Some(5)],
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: Some(KillSummary::of(&report)),
        };
        let mut out = String::new();
        utc().exit(&exit, today(), &mut out);
        assert_eq!(
            out,
            "04:47:34  container seed0 exited 0 (Docker: OOMKilled=true) 4.2 s after dd (pid \
             10390) was OOM-killed; its main process survived the kill; 0 restarts so far\n"
        );
    }

    #[test]
    fn who_ended_it_is_told_with_docker_s_flag_reconciled() {
        use crate::report::{EarlierSignal, Sender, SenderContainer, SenderParent};
        let report = seed0(false);
        let killed = report.time.unwrap();
        let sender = |comm: &str, host| Sender {
            pid: 5120,
            tid: 5120,
            comm: comm.into(),
            uid: Some(0),
            host_process: Some(host),
            ..Sender::default()
        };
        let by = |kind, signal, sender, after| KilledBy {
            kind,
            signal: Some(signal),
            time: Some(killed),
            oom_id: None,
            sender: Some(sender),
            after,
        };
        let term_ignored = Some(EarlierSignal {
            signal: Some("SIGTERM"),
            seconds_before: 10.0,
            ignored: true,
        });
        let mut sibling = sender("sh", false);
        sibling.container = Some(SenderContainer {
            id: "ab".repeat(32),
            name: Some("seed0".into()),
        });
        let mut shell = sender("bash", true);
        shell.parent = Some(SenderParent {
            pid: 4000,
            comm: "sshd\x1b[2J".into(),
        });
        let mut evil = sender("ru\nnc", true);
        evil.comm_bytes = None;
        // (killed_by, exit code, flag, reason, a kill before, the line after "exited")
        type Row = (
            KilledBy,
            i64,
            bool,
            Option<&'static str>,
            bool,
            &'static str,
        );
        let rows: Vec<Row> = vec![
            (
                by(
                    Some("runtime"),
                    "SIGKILL",
                    sender("runc", true),
                    term_ignored.clone(),
                ),
                137,
                false,
                None,
                false,
                "137 (Docker: OOMKilled=false): SIGKILL from the runtime (runc, pid 5120) 10.0 s after its SIGTERM, which PID 1 ignored, as docker stop does when its timeout runs out",
            ),
            (
                by(Some("runtime"), "SIGKILL", sender("runc", true), None),
                137,
                true,
                Some("earlier_oom_kill"),
                true,
                "137 (Docker: OOMKilled=true): SIGKILL from the runtime (runc, pid 5120), as docker kill does; not an OOM kill, although Docker says OOMKilled=true: dd (pid 10390) was OOM-killed 4.2 s before and the container lived on",
            ),
            (
                by(
                    Some("runtime"),
                    "SIGKILL",
                    sender("runc", true),
                    term_ignored.clone(),
                ),
                137,
                true,
                Some("oom_killer_disabled"),
                false,
                "137 (Docker: OOMKilled=true): SIGKILL from the runtime (runc, pid 5120) 10.0 s after its SIGTERM, which PID 1 ignored, as docker stop does when its timeout runs out; not an OOM kill, although Docker says OOMKilled=true: the container hit its memory limit with the OOM killer disabled, and nothing was killed",
            ),
            (
                by(Some("process"), "SIGKILL", shell, None),
                137,
                false,
                None,
                false,
                "137 (Docker: OOMKilled=false): SIGKILL from bash (pid 5120, uid 0), a process on the host, child of sshd\\x1b[2J (pid 4000)",
            ),
            (
                by(Some("process"), "SIGTERM", sibling, None),
                143,
                false,
                None,
                false,
                "143 (Docker: OOMKilled=false): SIGTERM from sh (pid 5120, uid 0) in container seed0",
            ),
            (
                by(Some("cgroup_kill"), "SIGKILL", sender("bash", true), None),
                137,
                false,
                None,
                false,
                "137 (Docker: OOMKilled=false): SIGKILL from a write to cgroup.kill by bash (pid 5120, uid 0)",
            ),
            (
                by(
                    Some("userspace_oom_killer"),
                    "SIGKILL",
                    sender("earlyoom", true),
                    None,
                ),
                137,
                false,
                None,
                false,
                "137 (Docker: OOMKilled=false): SIGKILL from the userspace OOM killer earlyoom (pid 5120, uid 0)",
            ),
            (
                by(None, "SIGKILL", evil, None),
                137,
                false,
                None,
                false,
                "137 (Docker: OOMKilled=false): SIGKILL from ru\\x0anc (pid 5120, uid 0), a process on the host",
            ),
        ];
        for (killer, code, flag, reason, kill_before, want) in rows {
            let exit = ContainerExit {
                schema: 1,
                event: "container_exit",
                time: Some(killed + Duration::from_millis(4200)),
                container: report.container.clone().unwrap(),
                exit_code: Some(code),
                runtime_oom_killed: Some(flag),
                restart_count: None,
                restarting: Some(false),
                kills: vec![],
                killed_by: Some(killer),
                runtime_oom_killed_reason: reason,
                host: None,
                last_kill: kill_before.then(|| KillSummary::of(&report)),
            };
            let mut out = String::new();
            utc().exit(&exit, today(), &mut out);
            assert_eq!(out, format!("04:47:34  container seed0 exited {want}\n"));
        }
    }

    #[test]
    fn an_oom_kill_docker_did_not_flag_is_said_to_be_one() {
        let report = seed0(true);
        let killed = report.time.unwrap();
        let exit = ContainerExit {
            schema: 1,
            event: "container_exit",
            time: Some(killed),
            container: report.container.clone().unwrap(),
            exit_code: Some(137),
            runtime_oom_killed: Some(false),
            restart_count: None,
            restarting: Some(false),
            kills: vec![Some(5)],
            killed_by: Some(KilledBy {
                kind: Some("oom_killer"),
                signal: Some("SIGKILL"),
                time: Some(killed),
                oom_id: Some(5),
                sender: None,
                after: None,
            }),
            runtime_oom_killed_reason: Some("oom_kill_not_flagged"),
            host: None,
            last_kill: Some(KillSummary::of(&report)),
        };
        let mut out = String::new();
        utc().exit(&exit, today(), &mut out);
        assert_eq!(
            out,
            "04:47:30  container seed0 exited 137 (Docker: OOMKilled=false) 0.0 s after dd (pid \
             10390) was OOM-killed, the container's main process; an OOM kill, although Docker \
             says OOMKilled=false\n"
        );
    }

    #[test]
    fn a_containerd_exit_claims_no_docker_flag() {
        let report = seed0(true);
        let mut container = report.container.clone().unwrap();
        container.runtime = "containerd";
        container.name = Some("job".into());
        container.restart_policy = None;
        let exit = |restart_count| ContainerExit {
            schema: 1,
            event: "container_exit",
            time: report.time,
            container: container.clone(),
            exit_code: Some(137),
            runtime_oom_killed: None,
            restart_count,
            restarting: None,
            kills: vec![Some(5)],
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: Some(KillSummary::of(&report)),
        };
        for (count, tail) in [
            (None, ", the container's main process\n"),
            // kubelet's count, where containerd's record of the container holds it.
            (
                Some(2),
                ", the container's main process; 2 restarts so far\n",
            ),
        ] {
            let mut out = String::new();
            utc().exit(&exit(count), today(), &mut out);
            assert_eq!(
                out,
                format!(
                    "04:47:30  container job exited 137 0.0 s after dd (pid 10390) was OOM-killed{tail}"
                )
            );
        }
    }

    #[test]
    fn a_restart_is_told_as_docker_states_it() {
        let report = seed0(true);
        let exit = |restarting, restart_count| ContainerExit {
            schema: 1,
            event: "container_exit",
            time: report.time,
            container: report.container.clone().unwrap(),
            exit_code: Some(137),
            runtime_oom_killed: Some(true),
            restart_count,
            restarting,
            kills: vec![Some(5)],
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: None,
        };
        let cases = [
            (
                Some(true),
                Some(2),
                "; Docker is restarting it (restart 2)\n",
            ),
            (Some(true), None, "; Docker is restarting it\n"),
            (Some(false), Some(3), "; 3 restarts so far\n"),
            (None, Some(1), "; 1 restart so far\n"),
            (None, None, "(Docker: OOMKilled=true)\n"),
        ];
        for (restarting, count, tail) in cases {
            let mut out = String::new();
            utc().exit(&exit(restarting, count), today(), &mut out);
            assert!(out.ends_with(tail), "{restarting:?} {count:?}: {out}");
        }
    }

    #[test]
    fn a_restart_loop_s_end_is_docker_s_own_fact_and_only_when_its_state_says_so() {
        let report = seed0(true);
        let exit = |policy: Option<&str>, max, count, restarting, code| {
            let mut container = report.container.clone().unwrap();
            container.restart_policy = policy.map(str::to_owned);
            container.restart_max_retries = max;
            ContainerExit {
                schema: 1,
                event: "container_exit",
                time: report.time,
                container,
                exit_code: code,
                runtime_oom_killed: Some(true),
                restart_count: count,
                restarting,
                kills: vec![Some(5)],
                killed_by: None,
                runtime_oom_killed_reason: None,
                host: None,
                last_kill: None,
            }
        };
        let gave_up = "; Docker stopped restarting it: on-failure:3 used all 3 retries\n";
        let on_failure = Some("on-failure");
        let cases = [
            // Docker's state: not restarting, every retry used, after a failed run.
            (
                on_failure,
                Some(3),
                Some(3),
                Some(false),
                Some(137),
                gave_up,
            ),
            (on_failure, Some(3), Some(4), Some(false), Some(1), gave_up),
            (
                on_failure,
                Some(1),
                Some(1),
                Some(false),
                Some(137),
                "; Docker stopped restarting it: on-failure:1 used its 1 retry\n",
            ),
            // Retries left: a count, never what Docker will do.
            (
                on_failure,
                Some(3),
                Some(2),
                Some(false),
                Some(137),
                "; 2 restarts so far\n",
            ),
            // The last retry under way.
            (
                on_failure,
                Some(3),
                Some(3),
                Some(true),
                Some(137),
                "; Docker is restarting it (restart 3)\n",
            ),
            // Whether it restarts is not known, or exit 0 stops on-failure whatever the count.
            (
                on_failure,
                Some(3),
                Some(3),
                None,
                Some(137),
                "; 3 restarts so far\n",
            ),
            (
                on_failure,
                Some(3),
                Some(3),
                Some(false),
                Some(0),
                "; 3 restarts so far\n",
            ),
            (
                on_failure,
                Some(3),
                Some(3),
                Some(false),
                None,
                "; 3 restarts so far\n",
            ),
            // No maximum, or another policy: nothing is used up.
            (
                on_failure,
                Some(0),
                Some(3),
                Some(false),
                Some(137),
                "; 3 restarts so far\n",
            ),
            (
                Some("always"),
                Some(3),
                Some(3),
                Some(false),
                Some(137),
                "; 3 restarts so far\n",
            ),
            (
                None,
                None,
                Some(3),
                Some(false),
                Some(137),
                "; 3 restarts so far\n",
            ),
        ];
        for (policy, max, count, restarting, code, tail) in cases {
            let mut out = String::new();
            utc().exit(
                &exit(policy, max, count, restarting, code),
                today(),
                &mut out,
            );
            assert!(
                out.ends_with(tail),
                "{policy:?}:{max:?} count {count:?} restarting {restarting:?} exit {code:?}: {out}"
            );
            assert!(!out.contains("will"), "no forecast: {out}");
        }
    }
}
