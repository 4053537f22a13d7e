//! The exit line: how the runtime (Docker, containerd) says a container ended, and the kill
//! before it.

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use super::{HumanView, container_name};
use crate::{
    output::{escape::visible_bytes, facts::retries_used_up, format::restarts_so_far},
    report::{ContainerExit, exact},
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
        if let Some(last) = &exit.last_kill {
            if let (Some(exited), Some(killed)) = (exit.time, last.time) {
                let _ = write!(out, " {} after", seconds(exited, killed));
            } else {
                out.push_str(" after");
            }
            let comm = exact(&last.comm, last.comm_bytes.as_deref());
            let _ = write!(out, " {} (pid ", visible_bytes(comm));
            match last.pid {
                Some(pid) => {
                    let _ = write!(out, "{pid}");
                }
                None => out.push('?'),
            }
            out.push_str(") was OOM-killed");
            match last.is_container_main {
                Some(false) => out.push_str("; its main process survived the kill"),
                Some(true) => out.push_str(", the container's main process"),
                None => {}
            }
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
